"""Forged or hostile values in stream maps, lineage and metadata: typed errors, or the exact value written.

Found by fuzzing the reading paths added on 2026-11-26: ints past Python's digit limit and deep nesting made
str()/repr() raise bare errors, a lineage cache keyed by repr() wrote another lineage's bytes, and a Mapping
whose iterations differ slipped a non-str key past the check.
"""

from __future__ import annotations

import collections.abc as abc
import subprocess
import sys

import pytest

import tether
from tether._api import prepare
from tether._request import Request
from tether.stream import StreamReader, summarize_stream, verify_stream

HUGE = 10**5000  # str() refuses it (sys.get_int_max_str_digits)


def _deep(n: int) -> list:
    v: list = []
    for _ in range(n):
        v = [v]
    return v


def _chunk(value, stream, fmt: str = "etf") -> bytes:
    return bytes(prepare(value, Request.of(format=fmt, checksum="crc32", transport="stream"), stream=stream))


@pytest.mark.parametrize("stream", [
    {"id": "ab" * 16, "seq": HUGE, "offset": 0},
    {"id": "ab" * 16, "seq": 0, "offset": HUGE},
    {"id": HUGE, "seq": 0, "offset": 0},
    {"id": _deep(5000), "seq": 0, "offset": 0},
    {"id": None, "seq": False, "offset": 0.0},
    {"id": "AB" * 16, "seq": 0, "offset": 0},
], ids=["huge-seq", "huge-offset", "huge-id", "deep-id", "wrong-types", "upper-hex"])
def test_a_forged_stream_map_is_a_stream_error_everywhere(stream, tmp_path):
    data = _chunk(1, stream)
    with pytest.raises(tether.StreamError, match="needs an id of 32 lowercase hex digits"):
        list(StreamReader(data))
    with pytest.raises(tether.StreamError):
        verify_stream(data)
    s = summarize_stream(data)
    assert s["state"] == "damaged" and s["problem"]["error"] == "StreamError"
    path = tmp_path / "forged.tthrs"
    path.write_bytes(data)
    for extra in ([], ["--json"]):
        out = subprocess.run([sys.executable, "-m", "tether", "inspect", *extra, str(path)], capture_output=True,
                             text=True)
        assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr


def test_an_end_frame_declaring_a_huge_count_is_shown_bounded():
    sid = "cd" * 16
    first = _chunk(1, {"id": sid, "seq": 0, "offset": 0})
    size = summarize_stream(first)["raw_bytes"]  # where the end frame must say the stream is
    data = first + _chunk(None, {"id": sid, "seq": 1, "offset": size, "end": True, "count": HUGE, "bytes": size,
                                 "digest": 0}, "scalar")  # empty, as a writer's end frame
    s = summarize_stream(data)
    assert s["state"] == "damaged" and s["declared"]["count"] == "int of 16610 bits"
    assert "int of 16610 bits" in s["problem"]["message"]


def test_frame_info_shows_a_huge_int_in_metadata():
    text = str(tether.inspect(tether.dumps(1, metadata={"k": HUGE})))
    assert "<int of 16610 bits>" in text


def test_lineage_is_written_as_given_even_when_reprs_collide():
    class Same(str):
        def __repr__(self) -> str:
            return "'same'"

    first = tether.inspect(tether.dumps(1, lineage=[{"v": Same("first")}])).lineage[1]
    second = tether.inspect(tether.dumps(1, lineage=[{"v": Same("second")}])).lineage[1]
    assert (first, second) == ({"v": "first"}, {"v": "second"})
    blob = memoryview(bytearray(b"SECOND"))  # a memoryview's repr is its address, which the next one may reuse
    assert tether.inspect(tether.dumps(1, lineage=[{"b": blob}])).lineage[1] == {"b": b"SECOND"}


@pytest.mark.parametrize("lineage", [[{"a": HUGE}], [{"a": _deep(5000)}]], ids=["huge-int", "deep"])
def test_a_lineage_repr_cannot_write_is_encoded_or_refused_typed(lineage):
    try:
        frame = tether.dumps(1, lineage=lineage)
    except tether.TetherError:
        return
    assert tether.loads(frame) == 1


def test_a_mapping_that_iterates_differently_each_time_writes_what_was_checked():
    class Shifty(abc.Mapping):
        calls = 0

        def __len__(self) -> int:
            return 1

        def __iter__(self):
            Shifty.calls += 1
            return iter(["a"] if Shifty.calls % 2 else [1])

        def __getitem__(self, key):
            return "v"

    assert tether.inspect(tether.dumps(1, metadata=Shifty())).user == {"a": "v"}
    with pytest.raises(tether.ValidationError, match="metadata keys must be str, got an int"):
        tether.dumps(1, metadata={HUGE: 1})


def test_a_forged_pickle_type_name_is_shown_quoted_and_bounded():
    frame = bytearray(tether.dumps(__import__("fractions").Fraction(1, 3)))
    info = tether.inspect(bytes(frame))
    assert info.details == {"python type": "fractions.Fraction"}
    fmt = tether.formats.get("pickle")
    assert fmt.describe({"python_type": "x\x1b[2J\nformat        ndarray"})["python type"].startswith("'x\\x1b")
    assert len(fmt.describe({"python_type": "a" * 10_000})["python type"]) <= 258


def test_a_checkpoint_built_by_hand_is_checked_before_a_writer_resumes_from_it():
    import io

    from tether.stream import Checkpoint, StreamWriter

    with pytest.raises(tether.ValidationError, match="32 lowercase hex digits"):
        StreamWriter(io.BytesIO(), resume=Checkpoint("abc", 1, 3, 0))  # its chunks would be refused on read
    StreamWriter(io.BytesIO(), resume=Checkpoint("ab" * 16, 1, 3, 0)).abort()
