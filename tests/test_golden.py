"""Every release still reads the frames earlier releases wrote."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

import tether
from golden_values import streams, values
from samples import assert_same

GOLDEN = pathlib.Path(__file__).parent / "golden"
VALUES = values()
STREAMS = streams()


def test_every_golden_value_has_a_file():
    assert {p.stem for p in GOLDEN.glob("*.tthr")} == set(VALUES)
    assert {p.stem for p in GOLDEN.glob("*.tthrs")} == set(STREAMS)


@pytest.mark.parametrize("name", sorted(VALUES))
def test_golden_frames_decode(name):
    value, kw = VALUES[name]
    frame = (GOLDEN / f"{name}.tthr").read_bytes()
    tether.verify(frame)
    assert_same(tether.loads(frame, allow_pickle=True), value)
    info = tether.inspect(frame)
    assert info.compression == kw.get("compression", "none") or info.type.get("ipc_compression") == kw["compression"]
    assert info.user == kw.get("metadata", {})
    assert info.checksum == kw.get("checksum", "xxh3-64")


def _golden_infos() -> list[tether.FrameInfo]:
    return [tether.inspect((GOLDEN / f"{name}.tthr").read_bytes()) for name in VALUES]


def test_every_format_has_a_golden_frame(every_format):
    assert every_format in {info.format for info in _golden_infos()}, (
        f"format {every_format!r} has no golden frame: add one to tests/golden_values.py and write it once "
        "with `python tests/golden_values.py`"
    )


def test_every_compressor_has_a_golden_frame(every_compressor):
    used = {info.compression for info in _golden_infos()}
    used |= {info.type.get("ipc_compression") for info in _golden_infos()}
    assert every_compressor in used, f"compressor {every_compressor!r} has no golden frame"


@pytest.mark.parametrize("name", sorted(STREAMS))
def test_golden_streams_read_whole(name):
    chunks, kw = STREAMS[name]
    data = (GOLDEN / f"{name}.tthrs").read_bytes()
    reader = tether.stream.StreamReader(data)
    out = list(reader)
    assert reader.complete and len(out) == len(chunks)
    for got, want in zip(out, chunks):
        if isinstance(want, np.ndarray):
            np.testing.assert_array_equal(got, want)
        else:
            assert (bytes(got) if isinstance(got, memoryview) else got) == want
    assert tether.stream.verify_stream(data)["chunks"] == len(chunks)


def test_golden_header_bytes():
    frame = (GOLDEN / "raw_bytes.tthr").read_bytes()
    # magic "TTHR", version 1, header size 64, format 1 (raw), compression 0, xxh3-64, flags 0
    assert frame[:16].hex() == "54544852010040000100000100000000"
    assert frame[:4] == b"TTHR" and frame[4:6] == b"\x01\x00" and frame[6:8] == b"\x40\x00"
