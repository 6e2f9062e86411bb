"""dumps with options writes the bytes of the general path, however it gets there.

A small value with metadata, lineage or a step is written by its format's
one-step writer (``dumps_plain`` with a ``stamp``, through ``frame.plain``); a small
Encoded frame is joined in one step (``bytes(Encoded)``); type information is
cached by its items. Each stands in for the general assembly
(``prepare`` → ``frame.build`` → ``Encoded.write_into``): these tests hold
them to its bytes, its decisions and its errors.
"""

from __future__ import annotations

import datetime
import time

import numpy as np
import pytest

import tether
from tether import frame, formats
from tether._buffers import Segment
from tether._errors import EncodeError, MappingError, ValidationError
from tether._limits import get_limits
from tether.frame import _header, _meta

SMALL = {
    "map": {"a": 1, "b": [2.5, "s", b"b", None, True]},
    "list": [1, 2, 3],
    "str": "héllo",
    "bytes": b"abc",
    "empty bytes": b"",
    "int": -7,
    "float": 1.5,
    "none": None,
    "array": np.arange(10),
    "f4 matrix": np.zeros((3, 4), "f4"),
    "empty array": np.zeros((0, 3)),
}
OPTIONS = {
    "metadata": {"metadata": {"k": "v"}},
    "nested metadata": {"metadata": {"k": [1, {"z": b"q"}], "n": None, "f": 2.5}},
    "lineage": {"lineage": [{"step": "load", "n": 1}]},
    "step": {"step": "normalize"},
    "everything": {"metadata": {"a": 1}, "lineage": [{"x": 1}], "step": "s"},
    "xxh3 + metadata": {"metadata": {"k": "v"}, "checksum": "xxh3-64"},
    "no checksum + step": {"step": "s", "checksum": "none"},
    "network + lineage": {"lineage": [{"x": 1}], "transport": "network"},
    "beam reader + metadata": {"metadata": {"k": "v"}, "reader": "beam"},
    "explicit format + metadata": {"metadata": {"k": "v"}, "format": "auto", "compression": "none"},
    "large metadata": {"metadata": {"blob": "x" * 20000}},
}


@pytest.fixture
def frozen_clock(monkeypatch):
    monkeypatch.setattr(time, "time_ns", lambda: 1_795_000_000_123_456_789)


def written_into(value, **options) -> bytes:
    """The general path's frame, written by write_into into a buffer (never the one-step join)."""
    enc = tether.encode(value, **options)
    buf = bytearray(enc.nbytes + 64)
    assert enc.write_into(buf, 64) == enc.nbytes
    return bytes(buf[64:])


@pytest.mark.parametrize("opts", OPTIONS.values(), ids=OPTIONS.keys())
@pytest.mark.parametrize("value", SMALL.values(), ids=SMALL.keys())
def test_dumps_with_options_is_the_general_frame(frozen_clock, value, opts):
    out = tether.dumps(value, **opts)
    assert out == written_into(value, **opts)
    assert out == bytes(tether.encode(value, **opts))
    back, info = tether.loads(out, with_info=True)
    assert info.user == opts.get("metadata", {})


def _spy_plain(monkeypatch) -> list:
    """The stamps frame.plain is called with (the one-step writers' frame builder)."""
    calls = []
    real = frame.plain
    monkeypatch.setattr(frame, "plain", lambda *a, **k: calls.append(k.get("stamp")) or real(*a, **k))
    return calls


def test_the_stamped_path_is_taken_and_its_frame_reads(frozen_clock, monkeypatch):
    calls = _spy_plain(monkeypatch)
    out = tether.dumps({"a": 1}, metadata={"k": "v"}, step="s", lineage=[{"x": 1}])
    assert calls == [{"user": {"k": "v"}, "lineage": [{"x": 1}], "step": "s"}]
    value, info = tether.loads(out, with_info=True)
    assert value == {"a": 1} and info.user == {"k": "v"}
    assert [e.get("step") for e in info.lineage] == ["s", None] and info.lineage[1] == {"x": 1}
    # The step's time is the frame's created_at, as the general assembly writes it.
    assert info.lineage[0]["at"] == 1_795_000_000_123_456
    tether.verify(out)


def test_a_large_payload_with_metadata_takes_the_general_path(frozen_clock, monkeypatch):
    # The general path writes a payload that may be large in place, as it does without metadata.
    calls = _spy_plain(monkeypatch)
    data = b"x" * frame.JOIN_BELOW
    assert tether.dumps(data, metadata={"k": "v"}) == written_into(data, metadata={"k": "v"})
    assert calls == []


def test_a_declined_one_step_write_falls_back_to_the_general_path(frozen_clock, monkeypatch):
    monkeypatch.setattr(formats.get("etf"), "dumps_plain", lambda *a, **k: None)
    assert tether.dumps([1, 2], metadata={"k": "v"}) == written_into([1, 2], metadata={"k": "v"})
    assert tether.last_decision().format == "etf"


@pytest.mark.parametrize("value", [{"a": 1}, b"abc", 3, np.arange(4)], ids=["etf", "raw", "scalar", "ndarray"])
def test_options_that_change_nothing_write_the_plain_frame(frozen_clock, value):
    plain = tether.dumps(value)
    assert tether.dumps(value, metadata={}) == plain
    assert tether.dumps(value, lineage=[]) == plain
    assert tether.dumps(value, options={}) == plain
    assert written_into(value) == plain


def test_the_decision_is_the_general_paths(frozen_clock):
    tether.encode({"a": 1}, metadata={"k": "v"})
    general = tether.last_decision()
    tether.dumps({"a": 1}, metadata={"k": "v"})
    stamped = tether.last_decision()
    for field in ("format", "reason", "estimated_size", "payload_size", "requested", "fallback_from", "compression",
                  "compression_reason", "notes"):
        assert getattr(stamped, field) == getattr(general, field), field


BAD = {
    "metadata key": ({"metadata": {1: "v"}}, ValidationError, "metadata keys must be str"),
    "metadata value": ({"metadata": {"k": object()}}, MappingError, "Metadata cannot be stored"),
    "metadata type": ({"metadata": [("k", "v")]}, ValidationError, "metadata must be a mapping"),
    "lineage entry": ({"lineage": ["load"]}, ValidationError, r"lineage\[0\] must be a map"),
    "lineage str": ({"lineage": "load"}, ValidationError, "lineage must be a list of maps"),
    "lineage value": ({"lineage": [{"k": object()}]}, MappingError, "Metadata cannot be stored"),
    "empty step": ({"step": ""}, ValidationError, "step must be a non-empty str"),
    "parent": ({"parent": 1}, ValidationError, "parent must be the FrameInfo"),
    "checksum": ({"metadata": {"k": 1}, "checksum": 1}, ValidationError, "Invalid checksum"),
    "transport": ({"step": "s", "transport": "pigeon"}, ValidationError, "Invalid transport"),
    "reader": ({"step": "s", "reader": "erlang"}, ValidationError, "Invalid reader"),
    "format": ({"step": "s", "format": 3}, ValidationError, "format must be a str"),
}


@pytest.mark.parametrize("opts, error, message", BAD.values(), ids=BAD.keys())
@pytest.mark.parametrize("value", [{"a": 1}, b"abc", np.arange(3)], ids=["etf", "raw", "ndarray"])
def test_every_check_still_refuses(value, opts, error, message):
    with pytest.raises(error, match=message) as stamped:
        tether.dumps(value, **opts)
    with pytest.raises(error) as general:
        tether.encode(value, **opts)
    assert str(stamped.value) == str(general.value)


def test_an_unreadable_format_for_the_beam_is_refused_before_any_writing():
    with pytest.raises(EncodeError, match="reader='beam' cannot read pickle"):
        tether.dumps(datetime.timedelta(seconds=1), reader="beam", metadata={"k": "v"})  # pickle alone takes it


def test_type_information_cache_keeps_equal_values_of_other_types_apart(frozen_clock):
    # 1 == True and {"a": 1} == {"a": True}: the cache key holds the types, so each keeps its own encoding.
    for info in ({"a": 1}, {"a": True}, {"a": 1}, {"a": None}, {"a": "1"}, {"b": 1, "a": 1}, {"a": 1, "b": 1}):
        meta = _meta.decode(_meta.build("etf", 1, info, user={"u": 1}), get_limits())
        assert meta["type"] == info and [type(v) for v in meta["type"].values()] == [type(v) for v in info.values()]
        assert list(meta["type"]) == list(info)


def test_type_information_not_pinned_by_its_items_is_encoded_each_time(frozen_clock):
    for info in ({"shape": [2, 3]}, {"x": 0.0}, {"x": -0.0}, {1: "a"}):
        cached = len(_meta._TYPED)
        meta = _meta.build("etf", 1, info, user={"u": 1})
        assert len(_meta._TYPED) == cached  # nothing cached under a key that could not tell them apart
        if 1 not in info:
            assert _meta.decode(meta, get_limits())["type"] == info


def test_the_one_step_join_is_write_into(frozen_clock):
    for value in (b"", b"abc", {"a": 1}, np.arange(100.0)):
        enc = tether.encode(value, metadata={"k": "v"}, checksum="xxh3-64")
        assert bytes(enc) == written_into(value, metadata={"k": "v"}, checksum="xxh3-64")
        assert enc.header.payload_checksum == _header.unpack(memoryview(bytes(enc)), get_limits()).payload_checksum


def test_the_join_takes_several_parts_and_leaves_writers_to_write_into():
    fmt = formats.get("raw")
    parts = [memoryview(b"ab"), memoryview(b"cde")]
    joined = frame.build(fmt, {"kind": "bytes"}, frame.Stored(parts, 5, 5), 2)
    assert tether.loads(bytes(joined)) == b"abcde"
    segment = Segment(5, lambda dest: dest.__setitem__(slice(None), b"abcde"))
    written = frame.build(fmt, {"kind": "bytes"}, frame.Stored([segment], 5, 5), 2)
    assert tether.loads(bytes(written)) == b"abcde"
    # A non-byte view is left to write_into, which refuses it as before.
    doubles = memoryview(np.arange(2.0)).cast("B").cast("d")
    odd = frame.build(fmt, {"kind": "bytes"}, frame.Stored([doubles], 16, 16), 2)
    with pytest.raises(ValueError):
        bytes(odd)


def test_a_format_that_lies_about_its_size_is_an_encode_error():
    lying = frame.build(formats.get("raw"), {"kind": "bytes"}, frame.Stored([memoryview(b"abc")], 4, 4), 2)
    with pytest.raises(EncodeError, match="Format wrote 3 payload bytes, declared 4"):
        bytes(lying)


def test_a_refused_metadata_leaves_the_decision_of_its_value():
    # prepare records the decision once the payload is written, before the metadata: the stamped path too.
    for write in (tether.dumps, tether.encode):
        tether.dumps(b"other")
        with pytest.raises(MappingError):
            write({"a": 1}, metadata={"k": object()})
        assert tether.last_decision().format == "etf"


def test_a_stamped_frame_is_counted_as_the_general_path_counts_its_frames():
    import tether.metrics as m

    for data in (b"x" * 100, b"x" * frame.JOIN_BELOW):  # stamped, then general
        m.reset()
        out = tether.dumps(data, metadata={"k": "v"})
        (row,) = m.snapshot()["operations"]
        assert (row["op"], row["format"], row["compression"], row["bytes_in"], row["bytes_out"]) == (
            "dumps", "raw", "none", len(data), len(out))
