"""Spec-conformance trial 22: the byte-shuffle element sizes, filter errors, and etf runs past the term.

Each test forges a frame from a valid one (``tether.dumps``) and re-seals the
header CRC-32 as docs/format.md §1 says, then checks what Python's reader does:

1. A byte-shuffle ``filter_size`` other than 2, 4, 8 or 16 is refused, and no
   writer produces one, whatever element size a registered format reports.
2. An invalid pair of known filter values is a corrupt header (``DecodeError``
   naming the fields), not a newer frame (``UnsupportedVersionError``); an
   unknown filter id still says to upgrade.
3. An etf frame whose ``type.bytearrays`` names more tagged binaries than the
   term holds is a ``DecodeError`` naming the field, the count and the runs.
"""

from __future__ import annotations

import struct
import warnings
import zlib
from typing import Any

import numpy as np
import pytest

import tether
from tether.compression import _policy
from test_format_spec import patch_header

# Header offsets of filter_id and filter_size (docs/format.md §1).
FILTER_AT = 51


def dumps(value: Any, **kw: Any) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return tether.dumps(value, **kw)


def filter_of(frame: bytes) -> tuple[int, int]:
    """The frame's (filter_id, filter_size) as stored."""
    return frame[FILTER_AT], frame[FILTER_AT + 1]


def shuffled_frame() -> bytes:
    """A valid byte-shuffled frame: 40 000 float64 (raw_length 320 000, a multiple of 5, 16 and 32)."""
    frame = dumps(np.sin(np.arange(40_000)) * 1000, compression="zstd")
    assert filter_of(frame) == (1, 8)
    return frame


# ---------------------------------------------------------------- 1. byte-shuffle element sizes


@pytest.mark.parametrize("size", [5, 32, 10, 64])
def test_shuffle_with_a_size_other_than_2_4_8_16_is_refused(size):
    frame = shuffled_frame()
    assert len(np.sin(np.arange(40_000))) * 8 % size == 0  # only the size breaks the spec, not raw_length
    bad = patch_header(frame, filter_size=size)
    with pytest.raises(tether.DecodeError, match="inconsistent") as caught:
        tether.loads(bad)
    assert not isinstance(caught.value, tether.UnsupportedVersionError)
    assert f"filter_size {size}" in str(caught.value) and "2, 4, 8 or 16" in str(caught.value)


@pytest.mark.parametrize("size", [2, 4, 8, 16])
def test_shuffle_sizes_the_spec_allows_still_read(size):
    value = np.arange(1 << 16, dtype=f"<u{min(size, 8)}")  # a ramp: shuffling pays at every width
    if size == 16:
        value = np.arange(1 << 16, dtype="<c16")
    frame = dumps(value, compression="zstd")
    assert filter_of(frame) == (1, size)
    assert np.array_equal(tether.loads(frame), value)


class _Payload:
    """What :func:`tether.compression._policy._shuffle_size` looks at: the byte count and the type information."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = nbytes
        self.type_info: dict[str, Any] = {}


class _Width:
    """A format whose elements are ``width`` bytes wide (a registered plugin's answer)."""

    def __init__(self, width: int) -> None:
        self.width = width

    def element_size(self, type_info: dict[str, Any]) -> int:
        return self.width


@pytest.mark.parametrize("width", [3, 5, 6, 10, 12, 32])
def test_the_writer_never_shuffles_by_a_size_the_spec_forbids(width):
    assert _policy._shuffle_size(_Payload(width * 1000), _Width(width), "python") == 0


@pytest.mark.parametrize("width", [2, 4, 8, 16])
def test_the_writer_still_shuffles_by_the_sizes_the_spec_allows(width):
    assert _policy._shuffle_size(_Payload(width * 1000), _Width(width), "python") == width
    assert _policy._shuffle_size(_Payload(width * 1000 + 1), _Width(width), "python") == 0  # not whole elements


def test_a_plugin_with_3_byte_elements_writes_unshuffled_frames_that_read():
    class Pixels(tether.formats.Format):
        id, name, auto_priority = 222, "test-rgb-trial22", None

        def element_size(self, type_info):
            return 3  # RGB

        def encode(self, obj, ctx):
            p = tether.formats.Payload({})
            p.add(obj.tobytes())
            return p

        def decode(self, payload, type_info, ctx):
            return np.frombuffer(bytes(payload), dtype="u1").reshape(-1, 3)

    tether.formats.register(Pixels)
    try:
        ramp = np.arange(200_000)
        pixels = np.stack([ramp % 256, ramp // 256 % 256, ramp // 65536], axis=1).astype("u1")
        for compression in ("zstd", "lz4", "gzip", "auto"):
            frame = dumps(pixels, format="test-rgb-trial22", compression=compression, transport="network")
            assert filter_of(frame) == (0, 0), compression
            assert np.array_equal(tether.loads(frame), pixels)
    finally:
        tether.formats.unregister("test-rgb-trial22")


def test_writer_and_reader_agree_on_the_shuffle_sizes():
    from tether.frame import _header

    assert _policy.SHUFFLE_SIZES == _header.SHUFFLE_SIZES == (2, 4, 8, 16)
    assert set(_policy.SHUFFLE_SPEED) == set(_policy.SHUFFLE_SIZES)  # the cost model knows each one


# ---------------------------------------------------------------- 2. invalid filter pairs are corrupt headers


def _corrupt(frame: bytes, **fields: Any) -> tether.DecodeError:
    with pytest.raises(tether.DecodeError) as caught:
        tether.loads(patch_header(frame, **fields))
    assert not isinstance(caught.value, tether.UnsupportedVersionError), caught.value
    assert "upgrade" not in str(caught.value)
    assert "header is inconsistent" in str(caught.value)
    return caught.value


def test_filter_none_with_a_size_is_a_corrupt_header():
    exc = _corrupt(dumps(b"hello world"), filter_size=4)
    assert "filter_id 0, filter_size 4" in str(exc)


def test_shuffle_without_compression_is_a_corrupt_header():
    exc = _corrupt(dumps(b"hello world" * 4), filter_id=1, filter_size=4)
    assert "filter_id 1, filter_size 4, compression_id 0" in str(exc)


def test_shuffle_with_a_bad_size_or_length_is_a_corrupt_header():
    frame = shuffled_frame()
    assert "filter_size 0" in str(_corrupt(frame, filter_size=0))
    assert "filter_size 1" in str(_corrupt(frame, filter_size=1))
    exc = _corrupt(frame, raw_length=320_004)  # a multiple of 4, not of 8
    assert "raw_length 320004" in str(exc) and "multiple of filter_size" in str(exc)


@pytest.mark.parametrize("filter_id", [2, 255])
def test_an_unknown_filter_still_says_upgrade(filter_id):
    with pytest.raises(tether.UnsupportedVersionError, match="upgrade tether"):
        tether.loads(patch_header(shuffled_frame(), filter_id=filter_id))


# ---------------------------------------------------------------- 3. etf bytearray runs past the term


def _with_runs(frame: bytes, old: bytes, new: bytes) -> bytes:
    """``frame`` with its ``type.bytearrays`` rewritten in place (an ETF string of small ints), both CRCs re-sealed."""
    mlen = struct.unpack_from("<I", frame, 16)[0]
    meta = frame[64 : 64 + mlen]
    field = b"m\x00\x00\x00\x0abytearrays"
    assert meta.count(field + old) == 1, meta
    meta = meta.replace(field + old, field + new)
    forged = frame[:64] + meta + frame[64 + mlen :]
    return patch_header(forged, metadata_crc32=zlib.crc32(meta))


FOUR = [bytearray(b"a"), b"b", b"c", b"d"]  # four tagged binaries, the first a bytearray: runs [0, 1]


@pytest.mark.parametrize("into", [None, "pylist"])
def test_runs_naming_more_tagged_binaries_than_the_term_holds_are_refused(into):
    frame = dumps(FOUR)
    assert tether.inspect(frame).type["bytearrays"] == [0, 1]
    bad = _with_runs(frame, b"k\x00\x02\x00\x01", b"k\x00\x02\x05\x01")
    assert tether.inspect(bad).type["bytearrays"] == [5, 1]
    with pytest.raises(tether.DecodeError) as caught:
        tether.loads(bad, into=into)
    msg = str(caught.value)
    assert "type.bytearrays [5, 1]" in msg and "4 tagged binaries" in msg and "ordinal 5" in msg
    assert "metadata is corrupt" in msg and "options={'binaries': 'bytes'}" in msg
    assert msg.startswith("frame")  # names the frame, as bytearray_runs' own error does
    # The way out the message gives reads the frame.
    assert tether.loads(bad, options={"binaries": "bytes"}) == [b"a", b"b", b"c", b"d"]


def test_a_run_that_ends_one_past_the_last_binary_is_refused():
    bad = _with_runs(dumps(FOUR), b"k\x00\x02\x00\x01", b"k\x00\x02\x03\x02")  # ordinals 3 and 4 of 0-3
    with pytest.raises(tether.DecodeError, match=r"\[3, 2\] names tagged binaries up to ordinal 4, but the term "
                                                 r"holds 4 tagged binaries"):
        tether.loads(bad)


def test_a_run_that_ends_on_the_last_binary_reads():
    good = _with_runs(dumps(FOUR), b"k\x00\x02\x00\x01", b"k\x00\x02\x03\x01")
    value = tether.loads(good)
    assert value == [b"a", b"b", b"c", b"d"] and type(value[3]) is bytearray and type(value[0]) is bytes


def test_runs_past_a_compressed_term_are_refused_too():
    frame = dumps([bytearray(b"x" * 100_000), b"y"], compression="zstd")
    assert tether.inspect(frame).type["bytearrays"] == [0, 1]
    bad = _with_runs(frame, b"k\x00\x02\x00\x01", b"k\x00\x02\x01\x02")
    with pytest.raises(tether.DecodeError, match="2 tagged binaries"):
        tether.loads(bad)


def test_the_etf_decoder_refuses_runs_past_the_term_without_a_frame():
    from tether import _etf

    found: list[int] = []
    data = _etf.encode([b"a", bytearray(b"b")], bytes_tag=_etf.BIT_BINARY, bytearrays=found)
    assert found == [1]
    tagged = _etf.Options(binaries="tagged")
    assert _etf.decode(data, tagged, bytearrays=[1, 1]) == [b"a", bytearray(b"b")]
    with pytest.raises(tether.DecodeError, match=r"runs \[1, 2\] name tagged binaries up to ordinal 2, but the "
                                                 r"term holds 2 tagged binaries"):
        _etf.decode(data, tagged, bytearrays=[1, 2])



@pytest.mark.parametrize("verify", [True, False])
def test_an_unknown_checksum_kind_is_refused_verified_or_not(verify):
    # Python read it with verify=False (the BEAM companion refuses it either way, as the spec says).
    frame = patch_header(tether.dumps(b"abc"), checksum_kind=7)
    with pytest.raises(tether.UnsupportedVersionError, match="payload checksum kind 7"):
        tether.loads(frame, verify=verify)
