"""StreamWriter at its edges: sinks that take a frame in parts or not at once, and arrays and tables with no rows."""

from __future__ import annotations

import io
import os
import pathlib
import socket
import subprocess
import threading
import time

import numpy as np
import pyarrow as pa
import pytest

import tether
from tether.stream import StreamError, StreamReader, StreamWriter, summarize_stream, verify_stream

BEAM = pathlib.Path(__file__).resolve().parent.parent / "beam"


@pytest.fixture
def short_stall(monkeypatch):
    """A sink that takes nothing fails the chunk after 0.3 s, not the default wait."""
    monkeypatch.setattr(tether.stream, "_STALL_SECONDS", 0.3, raising=False)


def _drain(fd: int, into: bytearray, delay: float = 0.05) -> threading.Thread:
    """Read ``fd`` to its end in a thread, starting late so the writer meets a full pipe."""
    def run() -> None:
        time.sleep(delay)
        while chunk := os.read(fd, 1 << 16):
            into.extend(chunk)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _nonblocking_pipe() -> tuple[int, int]:
    r, w = os.pipe()
    os.set_blocking(w, False)
    return r, w


# -- sinks: a frame goes out whole, or the writer says what happened


@pytest.mark.parametrize("wrap", [lambda fd: io.FileIO(fd, "wb"), lambda fd: open(fd, "wb")],
                         ids=["raw FileIO", "buffered"])
def test_a_nonblocking_pipe_gets_every_byte_of_the_stream(wrap):
    # FileIO.write returns None for "would block" and a buffered file raises BlockingIOError: neither is written.
    r, w = _nonblocking_pipe()
    data, got = os.urandom(4 << 20), bytearray()
    reader = _drain(r, got)
    sink = wrap(w)
    with StreamWriter(sink, chunk_size=1 << 20, compression="none") as writer:
        writer.write_buffer(data)
    sink.close()
    reader.join(30)
    os.close(r)
    assert writer.checkpoint().offset == len(data)
    assert b"".join(bytes(v) for v in StreamReader(bytes(got))) == data


# socket.send raises BlockingIOError with no characters_written: it took nothing, and the writer waits.
@pytest.mark.parametrize("as_sink", [lambda a: a.makefile("wb", buffering=0), lambda a: a.send],
                         ids=["unbuffered socket file", "socket.send"])
def test_a_nonblocking_socket_gets_every_byte_of_the_stream(as_sink):
    a, b = socket.socketpair()
    a.setblocking(False)
    got = bytearray()
    reader = _drain(b.fileno(), got)
    data = os.urandom(2 << 20)
    with a, b:
        with StreamWriter(as_sink(a), chunk_size=1 << 19, compression="none") as writer:
            writer.write_buffer(data)
        a.shutdown(socket.SHUT_WR)
        reader.join(30)
    assert verify_stream(bytes(got))["bytes"] == len(data)


def test_a_nonblocking_pipe_nobody_drains_fails_with_the_checkpoint_at_the_last_whole_frame(short_stall):
    r, w = _nonblocking_pipe()
    sink = io.FileIO(w, "wb")
    writer = StreamWriter(sink, chunk_size=1 << 14, compression="none")
    with pytest.raises(StreamError, match="non-blocking") as caught:
        writer.write_buffer(os.urandom(1 << 20))  # 64 chunks; the pipe holds 64 KiB
    assert "resume=" in str(caught.value)
    sink.close()
    got = bytearray()
    while chunk := os.read(r, 1 << 16):
        got += chunk
    os.close(r)
    # The pipe holds whole frames and part of the next: the checkpoint is after the whole ones, never ahead.
    summary = summarize_stream(bytes(got))
    assert summary["state"] == "incomplete" and summary["chunks"] == writer.checkpoint().seq > 0
    assert summary["checkpoint"] == writer.checkpoint().as_dict()
    with pytest.raises(tether.ValidationError, match="closed"):  # more would follow a partial frame
        writer.write(b"more")


class _Stingy:
    """A sink that takes ``first`` bytes, then returns 0 forever (and fails the test if written to in a loop)."""

    def __init__(self, first: int = 0):
        self.data, self.first, self.calls = bytearray(), first, 0

    def write(self, view) -> int:
        self.calls += 1
        if self.calls > 1000:
            raise AssertionError("the writer spins on a sink that takes nothing")
        n = min(self.first - len(self.data), len(view))
        self.data += view[:n]
        return n


def test_a_sink_that_takes_nothing_raises_instead_of_spinning(short_stall):
    sink = _Stingy()
    writer = StreamWriter(sink)
    with pytest.raises(StreamError, match="took none of"):
        writer.write({"a": 1})
    assert writer.checkpoint().seq == 0 and writer.checkpoint().offset == 0 and not sink.data
    assert not writer.closed  # nothing of the frame went out: the sink still ends at a frame boundary


def test_a_sink_that_stops_mid_frame_raises_and_closes_the_writer(short_stall):
    sink = _Stingy(first=10)
    writer = StreamWriter(sink)
    with pytest.raises(StreamError, match="took 10 of"):
        writer.write({"a": 1})
    assert writer.checkpoint().seq == 0 and writer.closed and len(sink.data) == 10


def test_a_negative_write_count_is_a_stream_error():
    calls = []

    def bad(view):
        calls.append(1)
        assert len(calls) < 1000, "the writer spins on a sink that returns -1"
        return -1

    writer = StreamWriter(bad)
    with pytest.raises(StreamError, match="returned -1"):
        writer.write(1)


def test_sinks_whose_write_returns_none_still_count_as_written():
    # Custom writers and plain functions that return nothing wrote everything; only a raw sink's None waits.
    class Quiet:
        def __init__(self):
            self.data = bytearray()

        def write(self, view):
            self.data += view

    quiet, frames = Quiet(), []
    for sink in (quiet, frames.append):
        with StreamWriter(sink, chunk_size=100) as w:
            w.write_buffer(b"x" * 1000)
    assert verify_stream(bytes(quiet.data))["bytes"] == 1000
    assert verify_stream(b"".join(bytes(f) for f in frames))["bytes"] == 1000


# -- arrays and tables with no rows, and 0-d arrays


def _through(write: str, read: str, value, **kw):
    sink = io.BytesIO()
    with StreamWriter(sink, **kw) as w:
        getattr(w, write)(value)
    return getattr(StreamReader(sink.getvalue()), read)(), sink.getvalue()


@pytest.mark.parametrize("value", [np.array(5.0), np.array(-3, np.int16), np.array("abc"), np.array(True)])
def test_a_zero_d_array_comes_back_zero_d(value):
    got, _ = _through("write_array", "read_array", value)
    assert got.shape == () and got.dtype == value.dtype and got == value


@pytest.mark.parametrize("value", [np.zeros((0, 4), np.float32), np.zeros(0, "U3"), np.zeros((0, 2, 3), np.int8)])
def test_an_empty_array_comes_back_with_its_dtype_and_shape(value):
    got, data = _through("write_array", "read_array", value)
    assert got.shape == value.shape and got.dtype == value.dtype
    assert verify_stream(data)["chunks"] == 1


def test_an_empty_table_comes_back_with_its_schema():
    table = pa.table({"id": pa.array([], pa.int64()), "name": pa.array([], pa.string())})
    got, _ = _through("write_table", "read_table", table)
    assert got.schema == table.schema and got.num_rows == 0
    sliced, _ = _through("write_table", "read_table", pa.table({"x": [1.5, 2.5]}).slice(2))
    assert sliced.schema.names == ["x"] and sliced.num_rows == 0


def test_chunks_that_do_not_join_are_a_stream_error():
    sink = io.BytesIO()
    with StreamWriter(sink) as w:
        w.write_array(np.ones((2, 3)))
        w.write_array(np.ones((2, 4)))
    with pytest.raises(StreamError, match="read_array"):
        StreamReader(sink.getvalue()).read_array()
    sink = io.BytesIO()
    with StreamWriter(sink) as w:
        w.write_table(pa.table({"a": [1]}))
        w.write_table(pa.table({"b": ["x"]}))
    with pytest.raises(StreamError, match="read_table"):
        StreamReader(sink.getvalue()).read_table()


def test_the_beam_reads_the_chunks_of_empty_arrays_and_tables(tmp_path):
    sink = io.BytesIO()
    with StreamWriter(sink, reader="beam") as w:
        w.write_array(np.zeros((0, 4)))
        w.write_array(np.array(5.0))
        w.write_table(pa.table({"a": pa.array([], pa.int64())}))
    data = sink.getvalue()
    subprocess.run(["erlc", "-o", str(tmp_path), *map(str, (BEAM / "src").glob("*.erl"))], check=True)
    expr = f"""
        {{ok, R0}} = tether_stream:open(<<16#{data.hex()}:{len(data) * 8}>>),
        {{ok, #{{shape := {{0, 4}}}}, R1}} = tether_stream:next(R0),
        {{ok, #{{shape := {{}}}}, R2}} = tether_stream:next(R1),
        {{ok, Arrow, R3}} = tether_stream:next(R2), true = is_binary(Arrow),
        {{done, _}} = tether_stream:next(R3),
        io:format("beam ok~n"), halt()."""
    proc = subprocess.run(["erl", "-noshell", "-pa", str(tmp_path), "-eval", expr],
                          capture_output=True, text=True, timeout=120)
    assert "beam ok" in proc.stdout, proc.stdout + proc.stderr


def test_a_hand_written_raw_sink_whose_write_returns_none_gets_each_frame_once():
    """A RawIOBase subclass without a non-blocking fd: its None means all written, as before."""
    class Sink(io.RawIOBase):
        def __init__(self):
            self.got = bytearray()

        def writable(self):
            return True

        def write(self, b):
            self.got += b

    sink = Sink()
    with StreamWriter(sink) as w:
        w.write(b"abc")
    assert [bytes(v) for v in StreamReader(bytes(sink.got))] == [b"abc"]


def test_write_table_takes_a_record_batch():
    batch = pa.record_batch({"a": [1, 2]})
    sink = io.BytesIO()
    with StreamWriter(sink) as w:
        w.write_table(batch)
    assert StreamReader(sink.getvalue()).read_table().to_pylist() == [{"a": 1}, {"a": 2}]


def test_copy_to_writes_every_byte_through_partial_and_would_block_writes():
    data = os.urandom(3 << 20)
    stream = io.BytesIO()
    with StreamWriter(stream, chunk_size=1 << 20, compression="none") as w:
        w.write_buffer(data)
    r, wfd = os.pipe()
    os.set_blocking(wfd, False)
    got = bytearray()
    reader = _drain(r, got)
    with io.FileIO(wfd, "wb") as sink:  # raw: None when the pipe is full, counts below a chunk's size
        assert StreamReader(stream.getvalue()).copy_to(sink) == len(data)
    reader.join(30)
    os.close(r)
    assert bytes(got) == data


def test_verify_stream_checks_a_continuation_file_from_its_checkpoint():
    first, rest = io.BytesIO(), io.BytesIO()
    with StreamWriter(first) as w:
        w.write(b"a")
        cp = w.abort()
    with StreamWriter(rest, resume=cp) as w:
        w.write(b"b")
    assert verify_stream(rest.getvalue(), resume=cp)["chunks"] == 2
    with pytest.raises(tether.StreamError, match="chunk 1 instead: chunk 0 is missing|starts at chunk 1"):
        verify_stream(rest.getvalue())


def test_a_summary_counts_the_end_frame_when_bytes_follow_it():
    """A file with junk after its end frame left the end frame out of frame_bytes, which says it is counted
    (the same stream down a pipe counted it)."""
    sink = io.BytesIO()
    with StreamWriter(sink) as w:
        w.write(b"abc")
    good = summarize_stream(sink.getvalue())
    bad = summarize_stream(sink.getvalue() + b"junk")
    assert bad["state"] == "damaged" and bad["frame_bytes"] == good["frame_bytes"] == len(sink.getvalue())
