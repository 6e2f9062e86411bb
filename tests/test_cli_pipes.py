"""`tether inspect` and `tether verify` reading a pipe (`-`, /dev/stdin, `<(...)`) as they read a file.

Every command runs as a subprocess fed through a real pipe, with a timeout, so that a hang fails the test.
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import threading
import zlib

import numpy as np
import pytest

import tether
from tether import _cli
from tether.stream import StreamWriter

TIMEOUT = 30


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "tether", *args]


def run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(_cmd(*args), input=stdin, capture_output=True, timeout=TIMEOUT)


def run_fd(data: bytes, *args: str) -> subprocess.CompletedProcess:
    """The command with ``/dev/fd/N``, a pipe's read end, as its file: what `tether inspect <(...)` gets."""
    r, w = os.pipe()
    try:
        proc = subprocess.Popen(_cmd(*args, f"/dev/fd/{r}"), pass_fds=(r,), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
    finally:
        os.close(r)  # the child's copy is the only reader: it ending gives the writer EPIPE, not a hang
    feeder = threading.Thread(target=_feed, args=(w, data, False), daemon=True)
    feeder.start()
    out, err = proc.communicate(timeout=TIMEOUT)
    feeder.join(TIMEOUT)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def run_endless(data: bytes, *args: str) -> subprocess.CompletedProcess:
    """The command reading ``data`` and then zeros without end from standard input (`(cat f; cat /dev/zero) |`)."""
    r, w = os.pipe()
    try:
        proc = subprocess.Popen(_cmd(*args, "-"), stdin=r, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    finally:
        os.close(r)
    threading.Thread(target=_feed, args=(w, data, True), daemon=True).start()
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"`tether {' '.join(args)} -` read endless input for {TIMEOUT} s without ending")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _feed(fd: int, data: bytes, endless: bool) -> None:
    zeros = bytes(1 << 16)
    with os.fdopen(fd, "wb") as f:
        try:
            f.write(data)
            while endless:
                f.write(zeros)
        except BrokenPipeError:  # the command stopped reading: what it should do, sooner or later
            pass


def _stream() -> bytes:
    """A small stream of several frames: an etf chunk, raw chunks, an ndarray chunk, the end frame."""
    sink = io.BytesIO()
    with StreamWriter(sink, chunk_size=1000, compression="none") as w:
        w.write({"table": "events"})
        w.write_buffer(bytes(range(256)) * 10)
        w.write_array(np.arange(50.0))
    return sink.getvalue()


def _declaring(frame: bytes, payload_length: int) -> bytes:
    """``frame``'s header and metadata with a header (its CRC redone) declaring ``payload_length`` stored bytes."""
    head = bytearray(frame[:64])
    struct.pack_into("<QQ", head, 24, payload_length, payload_length)
    struct.pack_into("<I", head, 60, zlib.crc32(head[:60]))
    return bytes(head) + frame[64 : tether.inspect(frame).payload_offset]


def _json(out: subprocess.CompletedProcess) -> dict:
    assert b"Traceback" not in out.stderr, out.stderr.decode()[-2000:]
    return json.loads(out.stdout)


# A: a good stream down a pipe is verified as a stream, as a file is.

def test_verify_checks_a_piped_stream_as_it_checks_the_file(tmp_path):
    data = _stream()
    path = tmp_path / "s.tthrs"
    path.write_bytes(data)
    from_file = _json(run("verify", "--json", str(path)))
    for out in (run("verify", "--json", "-", stdin=data), run("verify", "--json", "/dev/stdin", stdin=data),
                run_fd(data, "verify", "--json")):
        assert out.returncode == 0, out.stderr.decode()
        assert _json(out) == from_file and from_file["verified_stream"]["chunks"] == 5
    text = run("verify", "-", stdin=data)
    assert text.returncode == 0 and b"5 chunks" in text.stdout and b"complete" in text.stdout


def test_a_piped_stream_has_its_payloads_checked_not_only_its_headers():
    data = bytearray(_stream())
    data[-200] ^= 0xFF  # inside the last chunk's payload, which only a payload check reads
    out = run("verify", "--json", "-", stdin=bytes(data))
    assert out.returncode == 1 and _json(out)["error"]["type"] == "ChecksumError", out.stderr.decode()


def test_a_piped_stream_verifies_in_memory_bounded_by_a_frame_not_the_stream():
    status = "/proc/self/status"
    if not os.path.exists(status):
        pytest.skip("peak memory is read from /proc")
    code = ("import sys; from tether._cli import main; rc = main(['verify', '-']); "
            f"print([l for l in open({status!r}) if l.startswith('VmHWM')][0].split()[1], file=sys.stderr); "
            "sys.exit(rc)")
    peaks = []
    for size in (1 << 20, 48 << 20):
        sink = io.BytesIO()
        with StreamWriter(sink, chunk_size=1 << 20, compression="none") as w:
            w.write_buffer(np.random.default_rng(0).bytes(size))
        out = subprocess.run([sys.executable, "-c", code], input=sink.getvalue(), capture_output=True, timeout=TIMEOUT)
        assert out.returncode == 0, out.stderr.decode()[-2000:]
        peaks.append(int(out.stderr.split()[-1]))  # kB
    assert peaks[1] - peaks[0] < 16 << 10, peaks  # 47 MiB more stream, well under 16 MiB more memory


# B: /dev/stdin and <(...) of a stream are summarised, not a closed file's traceback.

def test_inspect_summarises_a_stream_named_by_dev_stdin_or_process_substitution(tmp_path):
    data = _stream()
    path = tmp_path / "s.tthrs"
    path.write_bytes(data)
    from_file = _json(run("inspect", "--json", str(path)))
    for out in (run("inspect", "--json", "/dev/stdin", stdin=data), run_fd(data, "inspect", "--json")):
        assert out.returncode == 0, out.stderr.decode()
        assert _json(out) == from_file and from_file["stream_summary"]["state"] == "complete"


# C: a header declaring a huge frame allocates for the bytes that arrive; the cut is a typed error.

@pytest.mark.parametrize("cmd", ["verify", "inspect"])
def test_a_piped_header_declaring_a_huge_frame_is_a_truncated_frame_not_a_memory_error(cmd):
    forged = _declaring(bytes(tether.dumps(b"x" * 48, compression="none")), (1 << 40) - (1 << 12)) + bytes(1000)
    out = run(cmd, "--json", "-", stdin=forged)
    assert out.returncode == 1 and _json(out)["error"]["type"] == "TruncatedError", out.stderr.decode()[-2000:]


def test_a_piped_stream_chunk_declaring_a_huge_frame_fails_verify_as_truncated():
    forged = _declaring(_stream(), (1 << 40) - (1 << 12)) + bytes(1000)
    out = run("verify", "--json", "-", stdin=forged)
    assert out.returncode == 1 and _json(out)["error"]["type"] == "TruncatedError", out.stderr.decode()[-2000:]


class RecordingPipe(io.RawIOBase):
    """A pipe in memory that records the largest read asked of it."""

    def __init__(self, data: bytes):
        self.data, self.at, self.largest = data, 0, 0

    def read(self, n: int = -1) -> bytes:
        assert n is not None and n >= 0, "read to the end"
        self.largest = max(self.largest, n)
        chunk = self.data[self.at : self.at + n]
        self.at += len(chunk)
        return chunk


def test_a_piped_frame_is_read_in_steps_whatever_its_header_declares():
    frame = bytes(tether.dumps(b"x" * 48, compression="none"))
    pipe = RecordingPipe(_declaring(frame, (1 << 40) - (1 << 12)) + bytes(3 << 20))
    data = _cli._read_pipe(pipe)
    assert pipe.largest <= 1 << 20 and pipe.at == len(pipe.data) == len(data)
    with pytest.raises(tether.TruncatedError):
        tether.verify(data)


# D: what follows a frame or a stream is counted up to a bound, so endless input ends the command.

@pytest.mark.parametrize("cmd", ["verify", "inspect"])
def test_a_frame_followed_by_endless_bytes_is_refused_not_read_forever(cmd):
    out = run_endless(bytes(tether.dumps({"a": 1})), cmd, "--json")
    error = _json(out)["error"]
    assert out.returncode == 1 and error["type"] == "DecodeError", out.stderr.decode()
    assert error["message"].startswith(f"more than {_cli._TAIL_COUNTED} bytes after the end of the frame")


@pytest.mark.parametrize("cmd", ["verify", "inspect"])
def test_a_stream_followed_by_endless_bytes_is_refused_not_read_forever(cmd):
    out = run_endless(_stream(), cmd, "--json")
    assert out.returncode == 1 and b"Traceback" not in out.stderr, out.stderr.decode()
    assert f"more than {_cli._TAIL_COUNTED} bytes follow the end frame".encode() in out.stderr


def test_bytes_after_a_piped_frame_are_counted_exactly_up_to_the_bound():
    frame = bytes(tether.dumps({"a": 1}))
    for extra, said in ((_cli._TAIL_COUNTED, f"^{_cli._TAIL_COUNTED} bytes after"),
                        (_cli._TAIL_COUNTED + 1, f"^more than {_cli._TAIL_COUNTED} bytes after")):
        pipe = RecordingPipe(frame + bytes(extra))
        with pytest.raises(tether.DecodeError, match=said):
            _cli._read_pipe(pipe)
        assert pipe.largest <= 1 << 20


def test_bytes_after_a_piped_stream_fail_it_as_they_fail_the_file(tmp_path):
    data = _stream() + b"junk"
    path = tmp_path / "s.tthrs"
    path.write_bytes(data)
    for cmd in ("verify", "inspect"):
        from_file = run(cmd, str(path))
        piped = run(cmd, "-", stdin=data)
        assert piped.returncode == from_file.returncode == 1, piped.stderr.decode()
        assert piped.stderr.replace(b"tether: -:", b"") == from_file.stderr.replace(f"tether: {path}:".encode(), b"")
        assert b"4 bytes follow the end frame" in piped.stderr
    summary = _json(run("inspect", "--json", "-", stdin=data))["stream_summary"]
    assert summary["state"] == "damaged" and summary["problem"]["error"] == "StreamError"
    assert summary["checkpoint"]["ended"] is False
    sink = io.BytesIO()
    StreamWriter(sink).close()  # a stream of no chunk: its end frame alone, and no checkpoint
    out = run("inspect", "--json", "-", stdin=sink.getvalue() + b"junk")
    summary = _json(out)["stream_summary"]
    assert out.returncode == 1 and summary["state"] == "damaged" and summary["checkpoint"] is None
