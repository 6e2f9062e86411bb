"""One tag table per language, and they agree; the C extension's internal API holds its shape."""

from __future__ import annotations

import pytest

import tether
from tether import _etf
from tether._etf import decoder, native, tags

c = native.c


def test_python_table_names_every_tag_once():
    assert len(set(tags.TAGS.values())) == len(tags.TAGS)
    assert tags.TAGS["NEW_FLOAT_EXT"] == tags.DIST_TAGS["DIST_FRAG_CONT"]  # why dist tags live apart
    assert not set(tags.DIST_TAGS) & set(tags.TAGS)


def test_every_term_tag_has_a_handler():
    term_tags = set(tags.TAGS.values()) - {tags.VERSION_MAGIC}
    unknown = decoder.HANDLERS[0]
    assert all(decoder.HANDLERS[t] is not unknown for t in term_tags)


@pytest.mark.skipif(c is None, reason="C fast path not built")
def test_c_tag_table_matches_python():
    assert c.TAGS == tags.TAGS


@pytest.mark.skipif(c is None, reason="C fast path not built")
def test_codec_options_are_parsed_once_and_kept():
    opts = _etf.Options(binaries="tagged")
    first = native.options(opts)
    assert native.options(opts) is first
    assert type(first) is c.CodecOptions
    with pytest.raises(ValueError):
        c.CodecOptions(binaries="nope", max_depth=1, max_atoms=1)
    with pytest.raises(ValueError):
        c.CodecOptions()  # limits are required
    with pytest.raises(TypeError):
        c.decode(b"\x83a\x01", 1, opts)  # an Options is not a CodecOptions


@pytest.mark.skipif(c is None, reason="C fast path not built")
def test_column_decoders_fall_back_with_none():
    opts = _etf.Options()
    rows = [{tether.Atom("a"): 1}, {tether.Atom("a"): 2.5}]
    data = tether.etf.encode(rows)
    assert _etf.decode_typed_columns(data, opts) is None  # mixed kinds: not a clean typed column
    cols = _etf.decode_columns(data, opts)
    assert cols == _etf.Columns([tether.Atom("a")], [[1, 2.5]], 2)
    assert _etf.decode_columns(tether.etf.encode([1, 2]), opts) is None
    assert _etf.decode_columns(data + b"\x00", opts) is None  # trailing bytes: decode reports them
    assert _etf.decode_columns(tether.etf.encode(rows, compressed=6), opts) == cols
