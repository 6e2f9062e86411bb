"""Where a broken or stopped stream resumes, and what a writer appending to a file checks first.

From the streaming trial of 2026-11-27: a rounded checkpoint digest was
accepted on append (every reader then failed at the end frame), `inspect`'s
checkpoint past a damaged last chunk was accepted, `verify` said nothing of
where the stream still checked out, a reader had no position to resume a file
at, a BEAM checkpoint read from an etf frame was refused, and misused file
objects raised bare errors.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest

import tether
from tether.stream import Checkpoint, StreamReader, StreamWriter, verify_stream


def _stream(path, n: int = 4, end: bool = False) -> Checkpoint:
    with open(path, "wb") as f:
        w = StreamWriter(f, compression="none")
        for i in range(n):
            w.write({"i": i, "pad": "p" * 500})
        if end:
            w.close()
            return w.checkpoint()
        return w.abort()


def _values(path) -> list[int]:
    with open(path, "rb") as f:
        return [v["i"] for v in StreamReader(f)]


def test_an_append_from_a_rounded_digest_is_refused_and_an_exact_one_taken(tmp_path):
    path = tmp_path / "s.tthr"
    cp = _stream(path, 3).as_dict()
    rounded = {**cp, "digest": int(float(cp["digest"]))}  # what a store of doubles (jq, JavaScript) gives back
    assert rounded["digest"] != cp["digest"]
    with pytest.raises(tether.StreamError, match="digest .* is not the one chained over the 3 chunks"):
        StreamWriter(open(path, "ab"), resume=rounded)
    with open(path, "ab") as f, StreamWriter(f, resume=cp) as w:
        w.write({"i": 3, "pad": ""})
    assert _values(path) == [0, 1, 2, 3]


def test_appending_to_a_continuation_file_checks_what_it_can(tmp_path):
    # A continuation's digest chains from a checkpoint the file does not hold: not checked, and not refused.
    first, rest = tmp_path / "a.tthr", tmp_path / "b.tthr"
    cp = _stream(first, 2)
    with open(rest, "wb") as f:
        w = StreamWriter(f, resume=cp)
        w.write({"i": 2, "pad": ""})
        cp2 = w.abort()
    with open(rest, "ab") as f, StreamWriter(f, resume=cp2) as w:
        w.write({"i": 3, "pad": ""})
    with open(rest, "rb") as f:
        assert [v["i"] for v in StreamReader(f, resume=cp)] == [2, 3]


def test_a_damaged_last_chunk_is_found_before_anything_is_appended(tmp_path):
    path = tmp_path / "s.tthr"
    _stream(path, 4)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # the last chunk's payload: its header and metadata still check out
    path.write_bytes(bytes(data))
    summary = tether.stream.summarize_stream(bytes(data))
    with pytest.raises(tether.StreamError, match="its last chunk, at byte .* does not check out"):
        StreamWriter(open(path, "ab"), resume=summary["checkpoint"])
    assert path.read_bytes() == bytes(data)  # nothing written


def test_verify_says_where_the_stream_still_checks_out_and_that_point_resumes(tmp_path):
    path = tmp_path / "s.tthr"
    _stream(path, 4)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(tether.ChecksumError) as exc:
        verify_stream(bytes(data))
    cp, good = exc.value.checkpoint, exc.value.good_bytes
    assert cp.seq == 3 and 0 < good < len(data)
    out = subprocess.run([sys.executable, "-m", "tether", "verify", "--json", str(path)], capture_output=True,
                         text=True)
    assert out.returncode == 1
    report = json.loads(out.stdout)
    assert report["resume"] == {"checkpoint": cp.as_dict(), "good_bytes": good, "first_chunk": 0}
    assert f"truncate the file to {good} bytes" in out.stderr
    # Down a pipe there is no file to truncate: the bytes to keep (an operator's trial).
    piped = subprocess.run([sys.executable, "-m", "tether", "verify", "-"], input=bytes(data), capture_output=True)
    assert f"keep those {good} bytes (`head -c {good}`)".encode() in piped.stderr
    with open(path, "r+b") as f:
        f.truncate(good)
    # Cut where the good part ends, the file is to be kept as it is, not "truncated" to its own size.
    out = subprocess.run([sys.executable, "-m", "tether", "verify", str(path)], capture_output=True, text=True)
    assert out.returncode == 1 and "the file ends there: keep it as it is" in out.stderr, out.stderr
    with open(path, "ab") as f, StreamWriter(f, resume=report["resume"]["checkpoint"]) as w:
        w.write({"i": 3, "pad": "again"})
    assert _values(path) == [0, 1, 2, 3]


def test_a_reader_stopped_in_a_file_resumes_there_from_its_position(tmp_path):
    path = tmp_path / "s.tthr"
    _stream(path, 5, end=True)
    with open(path, "rb") as f:
        reader = StreamReader(f)
        it = iter(reader)
        seen = [next(it)["i"], next(it)["i"]]
        saved, position = reader.checkpoint().as_dict(), reader.position
    assert position != saved["offset"]  # frames, not data bytes
    with open(path, "rb") as f:
        with pytest.raises(tether.StreamError, match=r"starts before the checkpoint.*reader.position"):
            StreamReader(f, resume=saved).read_all()
    with open(path, "rb") as f:
        f.seek(position)
        resumed = StreamReader(f, resume=saved)
        seen += [v["i"] for v in resumed]
        assert resumed.complete and resumed.position == path.stat().st_size - position
    assert seen == [0, 1, 2, 3, 4]


def test_a_beam_checkpoint_read_from_an_etf_frame_resumes():
    sink = io.BytesIO()
    w = StreamWriter(sink)
    w.write("a")
    cp = w.abort().as_dict()
    as_beam_sent = {**cp, "stream_id": cp["stream_id"].encode()}  # an Elixir string read back as bytes
    assert Checkpoint.from_dict(as_beam_sent) == Checkpoint.from_dict(cp)
    with pytest.raises(tether.ValidationError, match="stream_id"):
        Checkpoint.from_dict({**cp, "stream_id": "é".encode() * 16})


def _closed(f):
    f.close()
    return f


@pytest.mark.parametrize("side, mode, match", [
    ("source", "r", "text mode"), ("source", "wb", "cannot read"), ("source", "closed", "closed"),
    ("sink", "w", "text mode"), ("sink", "rb", "cannot write"), ("sink", "closed", "closed"),
])
def test_a_file_that_cannot_move_bytes_that_way_is_refused_with_the_fix(tmp_path, side, mode, match):
    path = tmp_path / "s.tthr"
    _stream(path, 1, end=True)
    f = _closed(open(path, "rb")) if mode == "closed" else open(path, mode)
    try:
        with pytest.raises(tether.ValidationError, match=match):
            StreamReader(f) if side == "source" else StreamWriter(f)
    finally:
        f.close()


def test_an_unknown_compression_is_refused_before_any_chunk():
    with pytest.raises(tether.ValidationError, match="Invalid compression 'brotli'"):
        StreamWriter(io.BytesIO(), compression="brotli")
    with pytest.raises(tether.ValidationError):
        StreamWriter(io.BytesIO(), compression="zstd", level=99)


def test_verify_and_inspect_check_a_continuation_file_given_its_checkpoint(tmp_path):
    first, rest = tmp_path / "a.tthr", tmp_path / "b.tthr"
    cp = _stream(first, 2)
    with open(rest, "wb") as f, StreamWriter(f, resume=cp) as w:
        w.write({"i": 2, "pad": ""})
    cli = [sys.executable, "-m", "tether"]
    alone = subprocess.run([*cli, "verify", "--json", str(rest)], capture_output=True, text=True)
    assert alone.returncode == 1 and "starts at chunk 2" in alone.stderr
    assert "truncate" not in alone.stderr and "resume" not in json.loads(alone.stdout)  # no chunk checked out
    (tmp_path / "cp.json").write_text(json.dumps(cp.as_dict()))
    for how in (json.dumps(cp.as_dict()), f"@{tmp_path / 'cp.json'}"):
        out = subprocess.run([*cli, "verify", "--json", str(rest), "--resume", how], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["verified_stream"]["chunks"] == 3
    out = subprocess.run([*cli, "inspect", "--json", str(rest), "--resume", json.dumps(cp.as_dict())],
                         capture_output=True, text=True)
    assert out.returncode == 0 and json.loads(out.stdout)["stream_summary"]["state"] == "complete"
    # A --resume that is no checkpoint is a usage error naming the option (exit 1 blamed the file before).
    for value in ("{not json", "null", f"@{tmp_path / 'missing.json'}"):
        bad = subprocess.run([*cli, "verify", str(rest), "--resume", value], capture_output=True, text=True)
        assert bad.returncode == 2 and "tether: verify: --resume takes a checkpoint" in bad.stderr, bad.stderr
    # verify --json's "resume" object is taken whole, for the checkpoint it holds.
    whole = json.dumps({"checkpoint": cp.as_dict(), "good_bytes": 0, "first_chunk": 0})
    out = subprocess.run([*cli, "verify", str(rest), "--resume", whole], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    # A checkpoint that does not fit the file says the checkpoint may be at fault before telling to truncate.
    wrong = json.dumps({**cp.as_dict(), "digest": (cp.as_dict()["digest"] + 1) % 2**64})
    out = subprocess.run([*cli, "verify", str(rest), "--resume", wrong], capture_output=True, text=True)
    assert out.returncode == 1 and "first check the --resume checkpoint" in out.stderr, out.stderr
    # On a single frame --resume means nothing: said, not ignored.
    single = tmp_path / "one.tthr"
    single.write_bytes(tether.dumps(b"x"))
    out = subprocess.run([*cli, "inspect", str(single), "--resume", json.dumps(cp.as_dict())], capture_output=True,
                         text=True)
    assert out.returncode == 2 and "holds a single frame: leave --resume out" in out.stderr
