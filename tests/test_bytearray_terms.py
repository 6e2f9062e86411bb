"""A bytearray inside a term comes back a bytearray (docs/format.md, etf's ``bytearrays``).

The BEAM has one binary for ``bytes`` and ``bytearray``: the frame records
where the bytearrays are among its tagged binaries, counted as they are
written, and Python's reader gives those back as bytearrays. The BEAM reads
them as the binaries they are.
"""

from __future__ import annotations

import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tether
from tether import BitBinary, OpaqueTerm
from tether.formats.etf import bytearray_runs
from tether.stream import StreamReader, StreamWriter

binaries = st.one_of(st.binary(max_size=8), st.binary(max_size=8).map(bytearray), st.text(max_size=4),
                     st.binary(min_size=1, max_size=4).map(lambda b: BitBinary(b, 8)))
keys = st.one_of(st.text(max_size=4), st.binary(max_size=4), st.integers(-3, 3))
terms = st.recursive(
    binaries | st.integers(-5, 5) | st.none(),
    lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner) | st.dictionaries(keys, inner, max_size=3)
    | st.frozensets(st.binary(max_size=3), max_size=3).map(lambda s: {"set": set(s)}),
    max_leaves=20,
)


def same(a, b) -> bool:
    """``b`` (read back) equals ``a`` (written) and has its types all the way down (``b"x" == bytearray(b"x")``
    is not enough); a whole-byte BitBinary reads back as the bytes it holds (docs/types.md)."""
    if type(a) is not type(b):
        return isinstance(a, BitBinary) and type(b) is bytes and a.bits == 8 and a.data == b
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def round_trip(value, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return tether.loads(tether.dumps(value, **kw))


@settings(max_examples=150, deadline=None)
@given(value=terms, compression=st.sampled_from(["none", "zstd", "gzip"]))
def test_any_mix_of_binaries_keeps_each_ones_type(value, compression):
    assert same(value, round_trip(value, format="etf", compression=compression))


@pytest.mark.parametrize("wrap", [lambda v: [v], lambda v: {"k": v}, lambda v: (v,), lambda v: {"a": [(1, v)]}])
def test_a_large_bytearray_in_a_term_is_a_bytearray_not_a_view(wrap):
    value = wrap(bytearray(range(256)) * 512)  # 128 KiB: binaries this large otherwise come back as views
    assert same(value, round_trip(value))


def test_the_frame_records_runs_of_bytearrays_among_the_tagged_binaries():
    value = [b"a", bytearray(b"b"), bytearray(b"c"), "text", b"d", bytearray(b"e")]
    assert tether.inspect(tether.dumps(value)).type["bytearrays"] == [1, 2, 4, 1]  # "text" is not tagged
    assert "bytearrays" not in tether.inspect(tether.dumps([b"a", "b"])).type
    many = [bytearray(b"x")] * 100_000
    assert tether.inspect(tether.dumps(many)).type["bytearrays"] == [0, 100_000]
    assert round_trip(many) == many and type(round_trip(many)[-1]) is bytearray


def test_pylist_and_a_stream_keep_them_too(tmp_path):
    value = [bytearray(b"x"), b"y"]
    assert same(value, tether.loads(tether.dumps(value), into="pylist"))
    path = tmp_path / "s.tthr"
    with open(path, "wb") as f, StreamWriter(f) as writer:
        writer.write(value)
        writer.write({"k": bytearray(b"z")})
    with open(path, "rb") as f:
        back = list(StreamReader(f))
    assert [same(a, b) for a, b in zip([value, {"k": bytearray(b"z")}], back)] == [True, True] and len(back) == 2


def test_binaries_asked_for_as_bytes_or_str_are_not_counted():
    frame = tether.dumps([bytearray(b"x"), b"y"])
    assert tether.loads(frame, options={"binaries": "bytes"}) == [b"x", b"y"]
    assert type(tether.loads(frame, options={"binaries": "bytes"})[0]) is bytes


def test_a_bytearray_after_an_opaque_term_warns_that_it_comes_back_as_bytes():
    inner = bytes([77, 0, 0, 0, 5, 8]) + b"inner"  # a tagged binary, counted by a reader, not by the writer
    opaque = OpaqueTerm(inner[0], inner)
    with pytest.warns(tether.LossyConversionWarning, match=r"bytearray at \$\[1\] comes back as bytes"):
        frame = tether.dumps([opaque, bytearray(b"x")], format="etf")
    assert tether.loads(frame) == [b"inner", b"x"] and type(tether.loads(frame)[1]) is bytes
    first = round_trip([bytearray(b"x"), opaque], format="etf")
    assert type(first[0]) is bytearray and first[1] == b"inner" and type(first[1]) is bytes


@pytest.mark.parametrize("runs", [[0], [1, 0], [-1, 1], [3, 1, 2, 1], [0, 2, 1, 1], "0,1", [0, True], [0.0, 1]])
def test_corrupt_runs_are_a_decode_error_naming_the_field(runs):
    with pytest.raises(tether.DecodeError, match="type.bytearrays must be runs"):
        bytearray_runs({"bytearrays": runs}, "frame 1")


def test_runs_past_the_binaries_there_are_change_nothing_else():
    assert bytearray_runs({"bytearrays": [0, 1, 2, 10**30]}, "f") == [0, 1, 2, 10**30]
    assert bytearray_runs({}, "f") is None
