"""Python still reads the frames the BEAM wrote (tests/golden/beam/*.tthr).

The files were written once by ``tether:encode/2`` and ``tether:tensor/4`` on
an Erlang node (little-endian, node ``nonode@nohost``) and are never
regenerated: the values below are what they must decode to for ever.
"""

from __future__ import annotations

import datetime as dt
import pathlib
from typing import Any

import numpy as np
import pytest

import tether
from tether import Atom

GOLDEN = pathlib.Path(__file__).parent / "golden" / "beam"


def _at(second: int, micro: int) -> dt.datetime:
    return dt.datetime(2026, 11, 25, 15, 6, second, micro, tzinfo=dt.timezone.utc)


# name -> (value, inspect fields). Every frame: producer tether-beam/0.1.0,
# schema 1, no compression, no flags.
EXPECTED: dict[str, tuple[Any, dict[str, Any]]] = {
    "etf_term": (
        {  # in the order the BEAM wrote the pairs: atoms first
            Atom("name"): b"n",
            Atom("nested"): {Atom("k"): [b"\x00\xff", -7, 2**70, [], ()]},
            Atom("none"): None,
            Atom("ok"): True,
            Atom("pos"): (1, 2.5),
            Atom("tags"): [Atom("a"), Atom("b")],
            b"id": 1,
        },
        {"format": "etf", "format_id": 4, "checksum": "crc32", "payload_checksum": 0x9A71726D,
         "metadata_size": 279, "payload_offset": 384, "payload_size": 133, "raw_size": 133, "frame_size": 517,
         "type": {"binaries": "beam"}, "user": {"source": "beam golden"}, "created_at": _at(23, 528558)},
    ),
    "etf_compressed": (
        list(range(1, 1001)),
        {"format": "etf", "format_id": 4, "checksum": "crc32", "payload_checksum": 0xAE7473E7,
         "metadata_size": 262, "payload_offset": 384, "payload_size": 1827, "raw_size": 1827, "frame_size": 2211,
         "type": {"binaries": "beam"}, "user": {"run": 7}, "created_at": _at(23, 528948)},
    ),
    "etf_no_checksum": (
        (Atom("reply"), 3, (Atom("ok"), [b"x", 1.5])),
        {"format": "etf", "format_id": 4, "checksum": "none", "payload_checksum": 0,
         "metadata_size": 238, "payload_offset": 320, "payload_size": 39, "raw_size": 39, "frame_size": 359,
         "type": {"binaries": "beam"}, "user": {}, "created_at": _at(23, 528960)},
    ),
    "raw_bytes": (
        bytes(range(256)),
        {"format": "raw", "format_id": 1, "checksum": "crc32", "payload_checksum": 0x29058C73,
         "metadata_size": 235, "payload_offset": 320, "payload_size": 256, "raw_size": 256, "frame_size": 576,
         "type": {"kind": "bytes"}, "user": {}, "created_at": _at(23, 529340)},
    ),
    "ndarray_f32": (
        np.arange(1, 7, dtype="<f4").reshape(2, 3),
        {"format": "ndarray", "format_id": 3, "checksum": "crc32", "payload_checksum": 0x1939E524,
         "metadata_size": 323, "payload_offset": 448, "payload_size": 24, "raw_size": 24, "frame_size": 472,
         "type": {"dtype": "<f4", "nx": ["f", 32], "order": "C", "shape": [2, 3]}, "user": {"unit": "m"},
         "created_at": _at(23, 529375)},
    ),
    "ndarray_s64": (
        np.array([-1, 2, -3], dtype="<i8"),
        {"format": "ndarray", "format_id": 3, "checksum": "crc32", "payload_checksum": 0x8E36B9E6,
         "metadata_size": 293, "payload_offset": 384, "payload_size": 24, "raw_size": 24, "frame_size": 408,
         "type": {"dtype": "<i8", "nx": ["s", 64], "order": "C", "shape": [3]}, "user": {},
         "created_at": _at(23, 529396)},
    ),
    "ndarray_bf16": (
        np.array([0x3F80, 0xC000], dtype="<u2"),  # NumPy has no bfloat16: the raw bits
        {"format": "ndarray", "format_id": 3, "checksum": "crc32", "payload_checksum": 0x784E093A,
         "metadata_size": 294, "payload_offset": 384, "payload_size": 4, "raw_size": 4, "frame_size": 388,
         "type": {"dtype": "<u2", "nx": ["bf", 16], "order": "C", "shape": [2]}, "user": {},
         "created_at": _at(23, 529404)},
    ),
}


def test_every_beam_golden_file_has_expected_values():
    assert {p.stem for p in GOLDEN.glob("*.tthr")} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_beam_golden_frames_decode(name):
    value, fields = EXPECTED[name]
    frame = (GOLDEN / f"{name}.tthr").read_bytes()
    tether.verify(frame)
    out = tether.loads(frame)
    if isinstance(value, np.ndarray):
        assert out.dtype == value.dtype and out.shape == value.shape and out.flags.c_contiguous
        np.testing.assert_array_equal(out, value)
    elif isinstance(value, bytes):
        assert bytes(out) == value
    else:
        assert out == value
        assert repr(out) == repr(value)  # same types all the way down (tuple vs list, bytes vs str)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_beam_golden_frames_inspect(name):
    _, fields = EXPECTED[name]
    frame = (GOLDEN / f"{name}.tthr").read_bytes()
    info = tether.inspect(frame)
    assert {k: getattr(info, k) for k in fields} == fields
    assert (info.frame_version, info.schema_version, info.flags) == (1, 1, 0)
    assert (info.compression, info.compression_level) == ("none", 0)
    assert info.producer == "tether-beam/0.1.0"
    assert info.lineage == [{"format": info.format, "node": "nonode@nohost", "producer": "tether-beam/0.1.0"}]
    assert len(frame) == info.frame_size


def test_beam_golden_etf_reads_as_str():
    frame = (GOLDEN / "etf_no_checksum.tthr").read_bytes()
    assert tether.loads(frame, options={"binaries": "str"}) == (Atom("reply"), 3, (Atom("ok"), ["x", 1.5]))


def test_beam_golden_corruption_is_caught():
    frame = bytearray((GOLDEN / "raw_bytes.tthr").read_bytes())
    frame[-1] ^= 1
    with pytest.raises(tether.ChecksumError):
        tether.verify(bytes(frame))
