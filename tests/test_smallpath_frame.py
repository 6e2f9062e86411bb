"""The small-frame fast paths write and read the same bytes as the general ones.

The plain metadata assembly (cached head + created_at + cached type pair), the
CRC-32 the frame layer calls directly, and the auto-pick shortcuts each stand in
for a general rule; these tests hold them to it.
"""

from __future__ import annotations

import time
import zlib

import numpy as np
import pytest

import tether
from tether import arrow as arrow_api
from tether import formats
from tether._limits import get_limits
from tether.frame import _checksum, _header, _meta

VALUE = {"a": 1, "b": 2.5, "c": "hello", "d": [1, 2, 3], "e": b"xy"}


@pytest.fixture
def frozen_clock(monkeypatch):
    monkeypatch.setattr(time, "time_ns", lambda: 1_795_000_000_123_456_789)


@pytest.mark.parametrize("type_info", [{"binaries": "tagged"}, {"dtype": "<f4", "shape": [2, 3], "order": "C"}])
def test_plain_metadata_is_the_general_assembly(frozen_clock, type_info):
    # type_key=None takes the general assembly; a key takes the cached head and type pair.
    general = _meta.build("etf", 1, type_info)
    for _ in range(2):  # first call fills the caches, second reads them
        assert _meta.build("etf", 1, type_info, type_key=repr(type_info)) == general


def test_plain_metadata_matches_after_the_caches_are_cleared(frozen_clock):
    first = _meta.build("raw", 1, {"kind": "bytes"}, type_key="bytes")
    _meta._HEADS.clear()
    _meta._TYPED.clear()
    assert _meta.build("raw", 1, {"kind": "bytes"}, type_key="bytes") == first


def test_created_at_is_this_calls_time(monkeypatch):
    for ns in (1_795_000_000_123_456_789, 1_000_000, 2**62):
        monkeypatch.setattr(time, "time_ns", lambda ns=ns: ns)
        meta = _meta.decode(_meta.build("etf", 1, {"binaries": "tagged"}, type_key="tagged"), get_limits())
        assert meta["created_at"] == ns // 1000


def test_plain_dumps_is_the_general_frame(frozen_clock):
    plain = tether.dumps(VALUE)
    general = bytes(tether.encode(VALUE))  # the Encoded path: build(), Header.pack, write_into
    assert plain == general


def test_header_crc_is_zlibs():
    head = _header.pack(4, 0, 2, 0, 222, 0x1234, 71, 71, 0xDEADBEEF, 1)
    assert int.from_bytes(head[60:], "little") == zlib.crc32(head[:60])


@pytest.mark.parametrize("data", [b"", b"tether", bytes(range(256)) * 5])
def test_native_crc32_is_the_documented_one(data):
    assert _checksum.crc32_native(data) == _checksum.crc32(data) == zlib.crc32(data)
    assert _checksum.compute(_checksum.CRC32, memoryview(data)) == zlib.crc32(data)


def test_metadata_read_in_place_refuses_a_flipped_bit():
    frame = bytearray(tether.dumps(VALUE))
    frame[_header.HEADER_SIZE + 10] ^= 1
    with pytest.raises(tether.ChecksumError, match="metadata checksum"):
        tether.loads(bytes(frame))


def test_padding_must_still_be_zero():
    frame = tether.dumps(VALUE)
    info = tether.inspect(frame)
    pad_at = _header.HEADER_SIZE + info.metadata_size
    assert pad_at < info.payload_offset  # this frame has padding to corrupt
    bad = bytearray(frame)
    bad[pad_at] = 1
    with pytest.raises(tether.DecodeError, match="padding"):
        tether.loads(bytes(bad))


@pytest.mark.parametrize(
    "value",
    [
        {"a": 1, "b": [1, 2]},  # first value no column: settled at once
        {"a": [1, 2], "b": 3},  # first value a column, the next not
        {"a": [1] * 300, "b": [2] * 300},
        {"a": [1] * 300, 2: [2] * 300},  # a key that is not str
        {"a": np.arange(300), "b": np.arange(300.0)},
        {"a": np.zeros((2, 2)), "b": [1, 2]},  # a 2-D array is no column
        {"a": [1] * 300, "b": [2] * 299},
        {},
    ],
)
def test_columnar_shape_shortcut_answers_as_the_full_pass(value):
    expected = None
    if value and all(type(k) is str for k in value):
        cols = list(value.values())
        if all(type(c) is list or arrow_api._numpy_column_like(c) for c in cols) and len({len(c) for c in cols}) == 1:
            expected = ("dict of columns", len(cols[0]))
    assert arrow_api.columnar_shape(value) == expected


class _Dict(dict):
    pass


@pytest.mark.parametrize("value", [{"k": 1}, [1], (1,), _Dict(k=1), tether.Atom("ok")])
def test_etf_claims_keep_their_reasons(value):
    reason, size = formats.get("etf").auto_pick(value, "memory")
    assert size is None and reason.startswith(type(value).__name__)


def test_auto_choice_of_plain_data_is_unchanged():
    assert tether.dumps(VALUE) and tether.last_decision().format == "etf"
    assert formats.get("arrow").auto_pick(VALUE, "memory") is None
    big = {"a": list(range(300)), "b": [0.5] * 300}
    tether.dumps(big)
    assert tether.last_decision().format == "arrow"
