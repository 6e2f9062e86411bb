"""The one-step writers of raw and scalar write the very bytes of the general path, and are counted."""

from __future__ import annotations

import pytest

import tether
import tether.metrics as m
from tether.frame import _meta

VALUES = [0, -1, 255, 2**70, -(2**70), 1.5, float("inf"), True, False, None, "", "héllo", "\ud800",
          b"", b"abc", bytes(range(256)) * 10]


@pytest.mark.parametrize("value", VALUES, ids=repr)
@pytest.mark.parametrize("checksum", ["auto", True, False, "xxh3-64"])
def test_plain_frames_equal_general_frames(value, checksum, monkeypatch):
    monkeypatch.setattr(_meta.time, "time_ns", lambda: 1_795_000_000_000_000_000)
    plain = tether.dumps(value, checksum=checksum)
    general = bytes(tether.encode(value, checksum=checksum))
    assert plain == general
    back = tether.loads(plain)
    assert back == value and type(back) is type(value)


def test_plain_writers_keep_the_decision_and_its_estimate():
    tether.dumps(b"abcd")
    d = tether.last_decision()
    assert (d.format, d.estimated_size, d.payload_size) == ("raw", 4, 4)
    tether.dumps(7)
    assert tether.last_decision().format == "scalar"


def test_large_bytes_and_other_buffers_take_the_general_path():
    from tether.formats import raw

    assert raw.FORMAT.dumps_plain(bytes(raw.PLAIN_MAX + 1), -1, "memory") is None
    assert raw.FORMAT.dumps_plain(bytearray(3), -1, "memory") is None
    assert tether.loads(tether.dumps(bytearray(b"xy"))) == bytearray(b"xy")
    assert tether.loads(tether.dumps(tether.Atom("ok"))) == tether.Atom("ok")


def test_plain_path_is_counted_with_sizes():
    m.reset()
    tether.dumps(b"x" * 100)
    (row,) = m.snapshot()["operations"]
    assert (row["op"], row["format"], row["bytes_in"]) == ("dumps", "raw", 100)
    assert row["bytes_out"] == len(tether.dumps(b"x" * 100))
