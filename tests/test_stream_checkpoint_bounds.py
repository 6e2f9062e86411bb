"""Stored checkpoints out of the 64-bit range, or with keys a checkpoint does not have (trial 18 C).

``seq=2**64`` passed ``Checkpoint.from_dict`` and then failed in the writer with
``struct.error``; a writer resumed at the very end of the range wrote a chunk
before failing. Every such case is now a ``ValidationError`` naming the field,
raised before a byte goes out.
"""

from __future__ import annotations

import io

import numpy as np
import pytest

import tether
from tether.stream import Checkpoint, StreamReader, StreamWriter

SID = "ab" * 16
BASE = {"stream_id": SID, "seq": 1, "offset": 8, "digest": 5, "ended": False}


@pytest.mark.parametrize("field", ["seq", "offset", "digest"])
@pytest.mark.parametrize("value", [2**64, 2**64 + 5, 10**40, -1])
def test_numbers_outside_0_to_2_64_are_refused_naming_the_field(field, value):
    with pytest.raises(tether.ValidationError, match=rf"Checkpoint {field} must be in 0\.\.2\*\*64-1"):
        Checkpoint.from_dict({**BASE, field: value})
    for make in (lambda: StreamWriter(io.BytesIO(), resume={**BASE, field: value}),
                 lambda: StreamReader(b"", resume={**BASE, field: value})):
        with pytest.raises(tether.ValidationError, match=field):
            make()


@pytest.mark.parametrize("field", ["seq", "offset", "digest"])
def test_the_largest_64_bit_values_are_accepted(field):
    assert getattr(Checkpoint.from_dict({**BASE, field: 2**64 - 1}), field) == 2**64 - 1
    assert getattr(Checkpoint.from_dict({**BASE, field: np.uint64(2**64 - 1)}), field) == 2**64 - 1


def test_a_built_checkpoint_is_checked_as_its_dict_is():
    with pytest.raises(tether.ValidationError, match="Checkpoint seq must be in"):
        StreamWriter(io.BytesIO(), resume=Checkpoint(SID, 2**64, 0, 0))


@pytest.mark.parametrize("extra", [{"end": True}, {"Ended": True}, {"id": 3, "saved_at": "2026-01-01"}])
def test_unknown_keys_are_refused_naming_them(extra):
    # A misspelt "ended" must not read as a stream still open: resuming after an end frame breaks the stream.
    with pytest.raises(tether.ValidationError, match="unknown key") as info:
        Checkpoint.from_dict({**BASE, **extra})
    for key in extra:
        assert repr(key) in str(info.value)
    assert "stream_id, seq, offset, digest, ended" in str(info.value)


def test_many_unknown_keys_are_listed_briefly():
    with pytest.raises(tether.ValidationError, match=r"unknown key\(s\) 'k0', 'k1', 'k2', 'k3', 'k4' and 45 more\. "):
        Checkpoint.from_dict({**BASE, **{f"k{i}": i for i in range(50)}})


def test_what_as_dict_returns_and_legacy_dicts_still_load():
    cp = Checkpoint(SID, 3, 4096, 7)
    assert Checkpoint.from_dict(cp.as_dict()) == cp
    legacy = {k: v for k, v in cp.as_dict().items() if k != "ended"}  # stored before ended existed
    assert Checkpoint.from_dict(legacy) == cp
    assert Checkpoint.from_dict({tether.Atom(k): v for k, v in cp.as_dict().items()}) == cp  # decoded from ETF


def test_a_writer_at_the_last_chunk_number_refuses_before_writing():
    sink = io.BytesIO()
    w = StreamWriter(sink, resume={**BASE, "seq": 2**64 - 1})
    with pytest.raises(tether.ValidationError, match="the most a stream holds"):
        w.write(b"x")
    assert sink.getvalue() == b""  # nothing went out
    w.abort()


def test_a_writer_at_the_last_offset_refuses_before_writing():
    sink = io.BytesIO()
    w = StreamWriter(sink, resume={**BASE, "offset": 2**64 - 10})
    with pytest.raises(tether.ValidationError, match=r"past 2\*\*64-1 bytes"):
        w.write(b"x" * 100)
    assert sink.getvalue() == b""
    w.write(b"x")  # one byte still fits
    assert w.checkpoint().offset == 2**64 - 9
