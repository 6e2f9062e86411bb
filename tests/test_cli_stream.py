"""`tether inspect` of a stream summarises every chunk from headers and metadata, never reading a payload."""

from __future__ import annotations

import io
import json
import pathlib
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest

import tether
from conftest import split_stream
from golden_values import streams as golden_streams
from tether.stream import StreamReader, StreamWriter, summarize_stream

GOLDEN = pathlib.Path(__file__).parent / "golden"


def run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tether", *args], input=stdin, capture_output=True, timeout=120)


def _stream(**kw) -> bytes:
    """A mixed stream: one etf chunk, five raw chunks (lz4 where it pays), three ndarray chunks, the end frame."""
    sink = io.BytesIO()
    with StreamWriter(sink, chunk_size=1 << 16, **kw) as w:
        w.write({"table": "events"})
        w.write_buffer(bytes(300_000))
        w.write_array(np.arange(20_000.0))
    return sink.getvalue()



def _truth(data: bytes) -> dict:
    """What every frame's header says, tallied by reading each frame whole (the expected summary)."""
    infos = [tether.inspect(f) for f in split_stream(data)]
    chunks = [i for i in infos if not i.stream.get("end")]
    tally = lambda attr: {v: [getattr(i, attr) for i in chunks].count(v) for v in {getattr(i, attr) for i in chunks}}  # noqa: E731
    return {"chunks": len(chunks), "payload_bytes": sum(i.payload_size for i in chunks),
            "raw_bytes": sum(i.raw_size for i in chunks), "formats": tally("format"),
            "compressions": tally("compression"), "checksums": tally("checksum")}


def _write(tmp_path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def test_a_complete_stream_is_summarised_whole(tmp_path):
    data = _stream()
    path = _write(tmp_path, "s.tthrs", data)
    out = run("inspect", "--json", path)
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["format"] == "etf" and info["stream"]["seq"] == 0  # chunk 0's frame info, as before
    s = info["stream_summary"]
    truth = _truth(data)
    assert {k: s[k] for k in truth} == truth
    assert truth["chunks"] == 9 and truth["formats"] == {"etf": 1, "raw": 5, "ndarray": 3}
    # None for the small etf chunk and a codec for the zeros: lz4 usually, though auto weighs codecs by their
    # measured speed, and a loaded host once had it pick zstd for one chunk (the tally must hold either way).
    assert "none" in truth["compressions"] and len(truth["compressions"]) >= 2
    assert s["state"] == "complete" and s["end_frame"] is True and s["problem"] is None
    assert s["frame_bytes"] == len(data) and s["payloads_checked"] is False
    reader = StreamReader(data)
    reader.read_all()
    assert s["checkpoint"] == reader.checkpoint().as_dict()
    assert s["declared"] == {"count": 9, "bytes": truth["raw_bytes"], "digest": reader.checkpoint().digest}
    text = run("inspect", path)
    assert text.returncode == 0
    lines = text.stdout.decode().splitlines()
    assert "stream summary (headers and metadata only)" in lines
    assert any(line.split()[:2] == ["chunks", "9"] for line in lines)
    assert any(line.split() == ["formats", "etf", "1,", "ndarray", "3,", "raw", "5"] for line in lines)
    assert any(line.strip().startswith("state") and "complete: the end frame is there" in line for line in lines)


def test_a_pipe_gives_the_same_summary():
    data = _stream()
    piped = json.loads(run("inspect", "--json", "-", stdin=data).stdout)
    whole = summarize_stream(data)
    whole.pop("first_chunk")
    assert piped["stream_summary"] == json.loads(json.dumps(whole))
    assert piped["format"] == "etf" and piped["stream"]["seq"] == 0


@pytest.mark.parametrize("name", sorted(golden_streams()))
def test_golden_streams(name):
    chunks, _ = golden_streams()[name]
    s = summarize_stream((GOLDEN / f"{name}.tthrs").read_bytes())
    assert s["state"] == "complete" and s["chunks"] == len(chunks)


def test_a_stream_cut_at_a_frame_boundary_is_incomplete_with_its_checkpoint(tmp_path):
    data = _stream()
    frames = split_stream(data)
    cut = b"".join(frames[:6])  # chunks 0-5, no end frame: a writer that stopped
    out = run("inspect", "--json", _write(tmp_path, "cut.tthrs", cut))
    assert out.returncode == 0, out.stderr  # a described state, not a failure (verify fails it)
    s = json.loads(out.stdout)["stream_summary"]
    assert (s["state"], s["end_frame"], s["problem"], s["chunks"]) == ("incomplete", False, None, 6)
    assert s["frame_bytes"] == len(cut) and s["declared"] is None
    # The checkpoint is the one a reader stops at, and a writer resumed from it completes the stream.
    reader = StreamReader(cut)
    with pytest.raises(tether.StreamError, match="without its end frame"):
        reader.read_all()
    assert s["checkpoint"] == reader.checkpoint().as_dict()
    rest = io.BytesIO()
    with StreamWriter(rest, resume=s["checkpoint"]) as w:
        w.write("tail")
    assert StreamReader(rest.getvalue(), resume=s["checkpoint"]).read_all() == ["tail"]
    assert summarize_stream(cut + rest.getvalue())["state"] == "complete"
    text = run("inspect", _write(tmp_path, "cut2.tthrs", cut)).stdout.decode()
    assert "INCOMPLETE: no end frame" in text and "checkpoint    seq 6" in text
    assert run("verify", _write(tmp_path, "cut3.tthrs", cut)).returncode == 1


@pytest.mark.parametrize("via", ["file", "pipe"])
def test_a_stream_cut_inside_a_payload_names_the_chunk(tmp_path, via):
    data = _stream(compression="none")
    frames = split_stream(data)
    start = sum(len(f) for f in frames[:4])
    cut = data[: start + len(frames[4]) // 2]  # inside chunk 4's payload
    out = (run("inspect", "--json", _write(tmp_path, "c.tthrs", cut)) if via == "file"
           else run("inspect", "--json", "-", stdin=cut))
    assert out.returncode == 0, out.stderr
    s = json.loads(out.stdout)["stream_summary"]
    assert (s["state"], s["chunks"], s["frame_bytes"]) == ("incomplete", 4, start)
    assert s["problem"]["error"] == "TruncatedError" and s["problem"]["chunk"] == 4
    assert "chunk 4" in s["problem"]["message"]


def _flip(data: bytes, frame_index: int, at: int) -> bytes:
    frames = split_stream(data)
    pos = sum(len(f) for f in frames[:frame_index]) + at
    out = bytearray(data)
    out[pos] ^= 0x40
    return bytes(out)


def test_a_corrupted_chunk_stops_the_summary_there_with_exit_status_1(tmp_path):
    data = _stream()
    bad = _flip(data, 3, 70)  # a byte of chunk 3's metadata
    out = run("inspect", "--json", _write(tmp_path, "bad.tthrs", bad))
    assert out.returncode == 1
    s = json.loads(out.stdout)["stream_summary"]
    assert (s["state"], s["chunks"], s["end_frame"]) == ("damaged", 3, False)
    assert s["problem"]["chunk"] == 3 and s["problem"]["error"] == "ChecksumError"
    assert s["checkpoint"]["seq"] == 3  # the chunks before it checked out
    assert b"ChecksumError" in out.stderr and b"Traceback" not in out.stderr
    text = run("inspect", _write(tmp_path, "bad2.tthrs", bad))
    assert text.returncode == 1 and b"DAMAGED" in text.stdout and b"problem       at chunk 3" in text.stdout


def test_a_missing_chunk_is_damage_named_by_the_reader(tmp_path):
    frames = split_stream(_stream())
    out = run("inspect", "--json", _write(tmp_path, "gap.tthrs", b"".join(frames[:2] + frames[3:])))
    assert out.returncode == 1
    s = json.loads(out.stdout)["stream_summary"]
    assert s["state"] == "damaged" and s["chunks"] == 2 and s["problem"]["error"] == "StreamError"
    assert "chunk 2 is missing" in s["problem"]["message"]


def test_a_corrupted_payload_is_not_seen_by_inspect_and_is_by_verify(tmp_path):
    data = _stream(compression="none")
    bad = _flip(data, 2, tether.inspect(split_stream(data)[2]).payload_offset + 5)
    path = _write(tmp_path, "payload.tthrs", bad)
    out = run("inspect", "--json", path)
    s = json.loads(out.stdout)["stream_summary"]
    assert out.returncode == 0 and s["state"] == "complete" and s["payloads_checked"] is False
    assert b"payloads not read: `tether verify` checks them" in run("inspect", path).stdout
    verify = run("verify", path)
    assert verify.returncode == 1 and b"chunk 2" in verify.stderr


class _Counting(io.RawIOBase):
    """A file that counts what it hands out; ``seekable=False`` makes it a pipe."""

    def __init__(self, data: bytes, seekable: bool):
        self._f, self._seekable = io.BytesIO(data), seekable
        self.read_bytes = self.largest = 0

    def readable(self):
        return True

    def seekable(self):
        return self._seekable

    def seek(self, pos, whence=0):
        if not self._seekable:
            raise io.UnsupportedOperation("seek")
        return self._f.seek(pos, whence)

    def tell(self):
        return self._f.tell()

    def readinto(self, b):
        self.largest = max(self.largest, len(b))
        n = self._f.readinto(b)
        self.read_bytes += n
        return n


def test_payloads_are_sought_past_in_a_file_and_read_in_bounded_blocks_from_a_pipe():
    sink = io.BytesIO()
    with StreamWriter(sink, chunk_size=4 << 20, compression="none") as w:
        w.write_buffer(np.random.default_rng(1).bytes(12 << 20))  # three 4 MiB chunks
    data = sink.getvalue()
    heads = sum(tether.inspect(f).payload_offset for f in split_stream(data))
    f = _Counting(data, seekable=True)
    s = summarize_stream(f)
    assert s["state"] == "complete" and s["chunks"] == 3 and s["raw_bytes"] == 12 << 20
    assert f.read_bytes == heads  # headers and metadata only: under 2 KiB of a 12 MiB stream
    pipe = _Counting(data, seekable=False)
    assert summarize_stream(pipe)["state"] == "complete"
    assert pipe.read_bytes == len(data) and pipe.largest <= 1 << 20  # dropped in 1 MiB blocks, never held


def test_a_forged_frame_size_is_refused_by_the_limit_before_anything_is_read(tmp_path):
    frames = split_stream(_stream())
    head = bytearray(frames[1][:64])
    struct.pack_into("<QQ", head, 24, 512 << 30, 512 << 30)  # payload and raw length: 512 GiB
    struct.pack_into("<I", head, 60, zlib.crc32(head[:60]))
    forged = frames[0] + bytes(head) + frames[1][64:]
    for out in (run("inspect", "--json", _write(tmp_path, "forged.tthrs", forged)),
                run("inspect", "--json", "-", stdin=forged)):
        assert out.returncode == 1, out.stderr
        s = json.loads(out.stdout)["stream_summary"]
        assert s["state"] == "damaged" and s["chunks"] == 1 and s["problem"]["error"] == "LimitError"


def test_a_single_frame_is_inspected_as_before(tmp_path):
    frame = tether.dumps({"a": [1, 2]}, metadata={"k": "v"})
    path = _write(tmp_path, "one.tthr", frame)
    out = run("inspect", path)
    assert out.returncode == 0 and out.stdout.decode() == str(tether.inspect(frame)) + "\n"
    info = json.loads(run("inspect", "--json", path).stdout)
    assert "stream_summary" not in info and info["user"] == {"k": "v"}
    assert json.loads(run("inspect", "--json", "-", stdin=frame).stdout) == info


def test_a_continuation_file_is_summarised_from_where_it_starts(tmp_path):
    first = io.BytesIO()
    w = StreamWriter(first)
    w.write("a")
    w.write("b")
    cp = w.abort()
    rest = io.BytesIO()
    with StreamWriter(rest, resume=cp) as w2:  # the documented way to finish a stream in a new sink
        w2.write("c")
    s = summarize_stream(rest.getvalue())
    assert s["state"] == "complete" and s["chunks"] == 1 and s["continues_from"] == {"seq": 2, "offset": 2}
    with_cp = summarize_stream(rest.getvalue(), resume=cp)  # the digest chain is checked too
    assert with_cp["state"] == "complete" and with_cp["continues_from"] is None
    path = tmp_path / "rest.tthrs"
    path.write_bytes(rest.getvalue())
    out = subprocess.run([sys.executable, "-m", "tether", "inspect", "--json", str(path)], capture_output=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["stream_summary"]["state"] == "complete"
    text = subprocess.run([sys.executable, "-m", "tether", "inspect", str(path)], capture_output=True, text=True)
    assert text.returncode == 0 and "from chunk 2, offset 2" in text.stdout


def test_a_stream_cut_inside_chunk_0s_metadata_is_a_stream_cut_short(tmp_path):
    # inspect said TruncatedError, status 1, where the README says a stream cut short is incomplete, status 0.
    buf = io.BytesIO()
    with StreamWriter(buf) as w:
        w.write("first")
    path = tmp_path / "cut.tthr"
    path.write_bytes(buf.getvalue()[:100])  # the header whole, the metadata not
    out = subprocess.run([sys.executable, "-m", "tether", "inspect", str(path)], capture_output=True, text=True)
    assert out.returncode == 0 and "incomplete" in out.stdout.lower(), (out.stdout, out.stderr)
    out = subprocess.run([sys.executable, "-m", "tether", "verify", str(path)], capture_output=True, text=True)
    assert out.returncode == 1 and "chunk 0" in out.stderr
    single = tmp_path / "single.tthr"
    single.write_bytes(tether.dumps(b"x" * 100)[:80])  # a single frame cut short stays one
    out = subprocess.run([sys.executable, "-m", "tether", "inspect", str(single)], capture_output=True, text=True)
    assert out.returncode == 1 and "TruncatedError" in out.stderr
