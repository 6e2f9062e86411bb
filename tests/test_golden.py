"""Every release still reads the frames earlier releases wrote."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

import tether
from golden_values import values

GOLDEN = pathlib.Path(__file__).parent / "golden"
VALUES = values()


def test_every_golden_value_has_a_file():
    assert {p.stem for p in GOLDEN.glob("*.tthr")} == set(VALUES)


@pytest.mark.parametrize("name", sorted(VALUES))
def test_golden_frames_decode(name):
    value, kw = VALUES[name]
    frame = (GOLDEN / f"{name}.tthr").read_bytes()
    tether.verify(frame)
    out = tether.loads(frame, allow_pickle=True)
    if isinstance(value, np.ndarray):
        assert out.dtype == value.dtype and out.shape == value.shape
        assert out.flags.f_contiguous == value.flags.f_contiguous
        np.testing.assert_array_equal(out, value)
    else:
        assert out == value
        if not isinstance(out, memoryview):  # large binaries come back as views
            assert repr(out)[:200] == repr(value)[:200]
    info = tether.inspect(frame)
    assert info.compression == kw.get("compression", "none")
    assert info.user == kw.get("metadata", {})


def test_golden_header_bytes():
    frame = (GOLDEN / "raw_bytes.tthr").read_bytes()
    # magic "TTHR", version 1, header size 64, format 1 (raw), compression 0, xxh3-64, flags 0
    assert frame[:16].hex() == "54544852010040000100000100000000"
    assert frame[:4] == b"TTHR" and frame[4:6] == b"\x01\x00" and frame[6:8] == b"\x40\x00"
