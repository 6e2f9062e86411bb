"""``python -m tether.worker`` driven through its pipes by a Python client speaking docs/format.md §8.

A real worker subprocess every time; the client below is a protocol peer
(what the BEAM does), not a mock of the BEAM.
"""

from __future__ import annotations

import math
import logging
import contextlib
import os
import select
import signal
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

import tether
from tether import Atom as A
from tether import worker as tw

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": f"{ROOT / 'tests'}{os.pathsep}{ROOT / 'src'}"}
HELLO_INFO = {A("tether"): tether.__version__, A("otp"): "27", A("frame_versions"): [1], A("formats"): ["etf"],
              A("compressions"): ["none", "gzip"], A("checksums"): ["none", "crc32"]}


TAGGED = {"binaries": "tagged"}  # compact replies read as tether.loads reads the same term in a frame


def frame(term: Any) -> bytes:
    return tether.dumps(term, format="etf", checksum="crc32")


class Client:
    """One worker subprocess and the BEAM's half of the protocol."""

    def __init__(self, *args: str, modules: tuple[str, ...] = ("beam_handlers",), hello: Any = HELLO_INFO,
                 form: str = "frame"):
        self.form = form  # how requests go out: etf frames, or compact messages as the BEAM sends its calls
        cmd = [sys.executable, "-m", "tether.worker", *(x for m in modules for x in ("--module", m)), *args]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=ENV, cwd=ROOT)
        self.buf = b""
        self.logs: list[tuple] = []
        self.ready: Any = None
        self.next_id = 0
        if hello is not None:
            self.send((A("hello"), hello))
            self.ready = self.recv()

    # -- the pipe

    def send_raw(self, data: bytes) -> None:
        os.write(self.proc.stdin.fileno(), data)

    def send(self, term: Any) -> None:
        data = tw.compact(term) if self.form == "compact" and term[0] != "hello" else frame(term)
        self.send_raw(len(data).to_bytes(4, "big") + data)

    def _read(self, n: int, deadline: float) -> bool:
        fd = self.proc.stdout.fileno()
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError(f"no message from the worker; stderr: {self.stderr_now()!r}")
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                return False
            self.buf += chunk
        return True

    def recv_raw(self, timeout: float = 10.0) -> bytes | None:
        deadline = time.monotonic() + timeout
        if not self._read(4, deadline):
            return None
        n = int.from_bytes(self.buf[:4], "big")
        if not self._read(4 + n, deadline):
            return None
        msg, self.buf = self.buf[4 : 4 + n], self.buf[4 + n :]
        return msg

    def recv(self, timeout: float = 10.0, *, logs: bool = False) -> Any:
        """The next message decoded; log messages are kept in ``self.logs`` unless ``logs``."""
        while True:
            raw = self.recv_raw(timeout)
            if raw is None:
                return None
            msg = tw.decode(raw, TAGGED)
            if raw[:4] != tw.COMPACT_MAGIC:
                assert tether.inspect(raw).checksum == "crc32" and tether.inspect(raw).compression == "none"
            if type(msg) is tuple and msg[0] == "log" and not logs:
                self.logs.append(msg)
                continue
            return msg

    def await_logs(self, count: int, timeout: float = 5.0) -> None:
        """Read messages until ``count`` log messages are kept (a non-log message is an error)."""
        deadline = time.monotonic() + timeout
        while len(self.logs) < count:
            msg = self.recv(max(0.01, deadline - time.monotonic()), logs=True)
            assert type(msg) is tuple and msg[0] == "log", msg
            self.logs.append(msg)

    def stderr_now(self) -> bytes:
        fd = self.proc.stderr.fileno()
        out = b""
        while select.select([fd], [], [], 0)[0]:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            out += chunk
        return out

    # -- calls

    def request(self, fun: str, *args: Any, opts: dict | None = None, ident: int | None = None) -> int:
        if ident is None:
            self.next_id += 1
            ident = self.next_id
        self.send((A("call"), ident, b"beam_handlers", fun.encode(), list(args), opts or {}))
        return ident

    def call(self, fun: str, *args: Any, opts: dict | None = None, timeout: float = 10.0) -> Any:
        """``{ok, Value}`` or ``{error, Reason}`` of one call."""
        ident = self.request(fun, *args, opts=opts)
        reply = self.recv(timeout)
        assert reply is not None and reply[0] == "reply" and reply[1] == ident, reply
        return reply[2]

    def ok(self, fun: str, *args: Any, **kw: Any) -> Any:
        result = self.call(fun, *args, **kw)
        assert result[0] == "ok", result
        return result[1]

    def wait(self, timeout: float = 10.0) -> int:
        return self.proc.wait(timeout)

    def close(self) -> int:
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            return self.proc.wait(10)
        finally:
            self.proc.stdout.close()
            self.proc.stderr.close()


@pytest.fixture
def client():
    c = Client()
    yield c
    if c.proc.poll() is None:
        assert c.close() == 0
    else:
        c.close()


def embedded(value: Any) -> Any:
    """An embedded frame from the worker, decoded as the BEAM would: inline, or read from the region file."""
    assert type(value) is tuple, value
    if value[0] == "$tether":
        info = tether.inspect(value[1])
        assert info.checksum == "crc32" and info.compression == "none"
        return tether.loads(value[1])
    assert value[0] == "$tether_shm", value
    _, path, offset, length = value
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read(length)
    assert tether.inspect(data).compression == "none" and tether.inspect(data).checksum in ("crc32", "none")
    return tether.loads(data)


# ------------------------------------------------------------------ handshake


def test_handshake_answers_ready_with_versions_modules_and_capabilities(client):
    tag, info = client.ready
    assert tag == "ready"
    assert info[A("tether")] == tether.__version__ and info[A("python")] == ".".join(map(str, sys.version_info[:3]))
    assert info[A("pid")] == client.proc.pid
    assert info[A("modules")] == ["beam_handlers"] and info[A("frame_versions")] == [1]
    assert {"etf", "ndarray", "arrow", "raw"} <= set(info[A("formats")])
    assert {"none", "gzip"} <= set(info[A("compressions")]) and "crc32" in info[A("checksums")]
    assert isinstance(info[A("speedups")], bool)
    assert client.ok("add", 1, 2) == 3


def test_import_error_is_refused_with_the_traceback_and_exit_2():
    c = Client(modules=("beam_handlers", "no_such_module_here"))
    tag, (kind, module, etype, message, tb) = c.ready
    assert (tag, kind, module, etype) == ("refused", "import_error", "no_such_module_here", "ModuleNotFoundError")
    assert "no_such_module_here" in message and "Traceback" in tb
    # Not found at all: where Python looked, and the fixes (an Elixir user's trial found no hint).
    assert "Python looked in its sys.path (" in message and 'env: [{"PYTHONPATH", dir}]' in message
    assert c.wait() == 2
    c.close()


@pytest.mark.parametrize("beam_version", ["9.0.0", "0.2.0", "garbage"])
def test_incompatible_versions_are_refused_before_importing(beam_version):
    c = Client(modules=("no_such_module_here",), hello={**HELLO_INFO, A("tether"): beam_version})
    tag, (kind, versions) = c.ready
    assert (tag, kind) == ("refused", "incompatible")  # not import_error: nothing was imported
    assert versions == {A("python"): tether.__version__, A("beam"): beam_version}
    assert c.wait() == 2
    c.close()


def test_a_compatible_patch_release_is_ready():
    major, minor, _ = tether.__version__.split(".")
    c = Client(hello={**HELLO_INFO, A("tether"): f"{major}.{minor}.99"})
    assert c.ready[0] == "ready"
    assert c.close() == 0


def test_a_first_message_that_is_not_a_hello_exits_cleanly():
    c = Client(hello=None)
    c.send((A("call"), 1, b"beam_handlers", b"add", [1, 2], {}))
    assert c.recv() is None and c.wait() == 1
    assert b"hello" in c.proc.stderr.read()
    c.close()


def test_ping_is_echoed_before_and_after_the_handshake():
    c = Client(hello=None)
    c.send_raw(b"\x00\x00\x00\x08PINGpong")
    assert c.recv_raw() == b"PINGpong"
    c.send((A("hello"), HELLO_INFO))
    assert c.recv()[0] == "ready"
    c.send_raw(b"\x00\x00\x00\x05PING!")
    assert c.recv_raw() == b"PING!"
    assert c.close() == 0


# ------------------------------------------------------------------ values both ways


def test_a_dict_holding_an_array_and_a_list(client):
    value = client.ok("nested_arrays")
    assert value["ids"] == [1, 2, 3]
    np.testing.assert_array_equal(embedded(value["emb"]), np.arange(12, dtype=np.float32).reshape(3, 4))
    first, second = (embedded(v) for v in value["pair"])
    assert first.dtype == np.int64 and second.tolist() == [0.5]


def test_a_tuple_of_two_arrays(client):
    a, b = client.ok("two_arrays")
    np.testing.assert_array_equal(embedded(a), np.arange(3, dtype=np.int32))
    np.testing.assert_array_equal(embedded(b), np.ones((2, 2)))


def test_a_transposed_array_arrives_row_major_with_the_same_values(client):
    value = client.ok("transposed")
    info = tether.inspect(value[1])
    assert info.type["order"] == "C" and info.type["shape"] == [3, 2]
    # What Nx.from_binary |> Nx.reshape does: the payload read row-major.
    flat = np.frombuffer(tether.loads(value[1], into="bytes"), dtype=np.float32).reshape(3, 2)
    np.testing.assert_array_equal(flat, np.arange(6, dtype=np.float32).reshape(2, 3).T)


def test_nan_and_infinities_are_atoms_both_ways(client):
    assert client.ok("non_finite") == [A("nan"), A("infinity"), A("neg_infinity"), 1.5]
    assert client.ok("is_nan", A("nan")) is True
    assert client.ok("types_of", [A("infinity"), {b"k": (A("neg_infinity"),)}]) == \
        [("float", "inf"), {b"k": (("float", "-inf"),)}]
    assert client.ok("echo", A("nan_not")) == A("nan_not")  # only the three atoms


def test_async_handlers_are_awaited(client):
    assert client.ok("async_add", 2, 3) == 5
    assert client.ok("async_add", 4, 5) == 9  # the same loop, kept


def test_a_result_that_cannot_be_encoded_is_an_encode_error(client):
    kind, (tag, etype, message, tb) = client.call("unencodable")
    assert (kind, tag, etype) == ("error", "python", "EncodeError")
    assert "object" in message and "Traceback" in tb
    assert client.ok("add", 1, 1) == 2


@pytest.mark.parametrize("fun", ["table", "dataframe"])
def test_tables_come_back_as_arrow_rows_or_columns(client, fun):
    arrow = embedded(client.ok(fun, 3))
    assert arrow.num_rows == 3 if isinstance(arrow, pa.Table) else len(arrow) == 3
    assert tether.inspect(client.ok(fun, 3)[1]).format == "arrow"
    rows = client.ok(fun, 3, opts={A("tables"): A("rows")})
    assert type(rows) is list and len(rows) == 3 and all(type(r) is dict for r in rows)
    columns = client.ok(fun, 3, opts={A("tables"): A("columns")})
    assert type(columns) is dict and all(len(v) == 3 for v in columns.values())
    assert columns["id"] == [0, 1, 2] == [r["id"] for r in rows]
    kind, (tag, message) = client.call(fun, 3, opts={A("tables"): A("excel")})
    assert (kind, tag) == ("error", "bad_request") and "arrow, rows or columns" in message


def test_unknown_opts_are_ignored(client):
    assert client.ok("add", 1, 2, opts={A("trace"): True, b"x": 1}) == 3


def test_large_binaries_are_embedded_and_small_ones_plain(client):
    assert client.ok("big_binary", 100) == b"\xab" * 100
    value = client.ok("big_binary", 64 << 10)
    assert value[0] == "$tether" and tether.inspect(value[1]).format == "raw"
    assert bytes(embedded(value)) == b"\xab" * (64 << 10)


def test_several_frames_per_reply_through_shared_memory():
    c = Client("--shm-threshold", "4096")
    value = c.ok("many_arrays", 5, 10_000)
    assert [v[0] for v in value] == ["$tether_shm"] * 5
    assert len({v[1] for v in value}) == 1 and len({v[2] for v in value}) == 5  # one region, five frames
    for i, v in enumerate(value):
        np.testing.assert_array_equal(embedded(v), np.full(10_000, i))
    big = c.ok("big_binary", 1 << 16)  # the region is reused by the next call
    assert big[0] == "$tether_shm" and bytes(embedded(big)) == b"\xab" * (1 << 16)
    small = c.ok("two_arrays")  # under the threshold: inline
    assert [v[0] for v in small] == ["$tether", "$tether"]
    assert c.close() == 0


def test_a_large_plain_result_travels_as_one_frame_in_shared_memory():
    c = Client("--shm-threshold", "4096")
    value = c.ok("rows", 500)
    assert value[0] == "$tether_shm" and tether.inspect(embedded_bytes(value)).format == "etf"
    assert embedded(value)[499] == {"id": 499, "name": "row499", "score": 249.5}
    assert c.close() == 0


def embedded_bytes(value: tuple) -> bytes:
    with open(value[1], "rb") as f:
        f.seek(value[2])
        return f.read(value[3])


def test_arguments_decode_embedded_frames_tables_and_whole_frame_binaries(client):
    arr = np.arange(6, dtype=np.float64).reshape(2, 3)
    rows = [{A("id"): 1, A("name"): b"a"}, {A("id"): 2, A("name"): b"b"}]
    args = {
        b"tensor": (A("$tether"), tether.dumps(arr, checksum="crc32")),
        b"bare": [tether.dumps(arr.T)],  # a binary that is a whole frame
        b"table": (A("$tether_table"), tether.etf.encode(rows)),
        b"not_a_frame": b"TTHR" + b"\x00" * 100,
    }
    got = client.ok("types_of", args)
    assert got[b"tensor"] == ("ndarray", "float64", [2, 3], False)
    assert got[b"bare"] == [("ndarray", "float64", [3, 2], False)]
    assert got[b"table"] == ("Table", 2, ["id", "name"])
    assert got[b"not_a_frame"] == "bytes"


def test_arguments_through_shared_memory(client, tmp_path):
    path = Path("/dev/shm") / f"tether-test-{os.getpid()}-args"
    data = frame([[2.5, (A("$tether"), tether.dumps(np.ones(3)))]])
    path.write_bytes(data)
    try:
        client.send((A("call"), 7, b"beam_handlers", b"types_of", (A("shm"), str(path).encode(), len(data)), {}))
        assert client.recv()[2] == (A("ok"), [("float", "2.5"), ("ndarray", "float64", [3], False)])
    finally:
        path.unlink()
    client.send((A("call"), 8, b"beam_handlers", b"echo", (A("shm"), b"/etc/passwd", 10), {}))
    assert client.recv()[2][1][0] == "bad_request"


def test_handler_errors_and_the_allow_list(client):
    kind, (tag, etype, message, tb) = client.call("fail", "boom")
    assert (kind, tag, etype, message) == ("error", "python", "ValueError", "boom") and "Traceback" in tb
    assert client.call("_private") == (A("error"), (A("undefined_function"), "beam_handlers", "_private"))
    client.send((A("call"), 3, b"os", b"getcwd", [], {}))
    assert client.recv()[2] == (A("error"), (A("undefined_function"), "os", "getcwd"))


# ------------------------------------------------------------------ cancelling


@pytest.mark.parametrize("fun", ["sleep_announced", "async_sleep_announced"])
def test_sigusr1_cancels_the_running_call_and_the_next_is_immediate(client, fun):
    ident = client.request(fun, 5)
    # The handler's own "started" log, not a fixed delay: on a busy box a signal sent
    # before the call began was ignored (between calls) and the 5 s sleep ran out.
    assert client.recv(timeout=10, logs=True)[2:4] == ("beam_handlers.started", "started")
    t0 = time.monotonic()
    os.kill(client.proc.pid, signal.SIGUSR1)
    reply = client.recv(timeout=3)
    assert reply == (A("reply"), ident, (A("error"), A("cancelled")))
    assert time.monotonic() - t0 < 0.2
    t0 = time.monotonic()
    assert client.ok("add", 1, 2) == 3
    assert time.monotonic() - t0 < 0.2


def test_a_handler_catches_the_cancel_as_tether_worker_cancelled(client):
    # python -m tether.worker ran the module as __main__: a second copy, whose Cancelled was not the one a
    # handler imports, so `except tether.worker.Cancelled` never matched (an Elixir user's trial).
    ident = client.request("sleep_catching_cancel", 5)
    assert client.recv(timeout=10, logs=True)[2:4] == ("beam_handlers.started", "started")
    os.kill(client.proc.pid, signal.SIGUSR1)
    assert client.recv(timeout=3) == (A("reply"), ident, (A("error"), A("cancelled")))
    assert client.ok("caught_cancels") == ["tether.worker.Cancelled"]


def test_sigusr1_between_calls_is_ignored(client):
    os.kill(client.proc.pid, signal.SIGUSR1)
    time.sleep(0.1)
    assert client.proc.poll() is None
    assert client.ok("sleep", 0.05) == 0.05


# ------------------------------------------------------------------ logging


def test_log_level_sets_the_root_logger_before_imports_and_keeps_tethers_own_at_warning():
    quiet = Client()
    try:
        assert quiet.ok("log_info", "dropped") == "logged" and not quiet.logs  # Python's default: WARNING
    finally:
        quiet.close()
    chatty = Client("--log-level", "info")
    try:
        assert chatty.ok("log_info", "kept") == "logged"
        chatty.await_logs(1)
        assert [(m[1], m[2], m[3]) for m in chatty.logs] == [(A("info"), "beam_handlers.audit", "kept")]
        assert chatty.ok("echo", list(range(100))) == list(range(100))  # tether's own INFO stays in Python
        assert len(chatty.logs) == 1
    finally:
        chatty.close()


def test_log_records_and_stderr_lines_are_forwarded(client):
    assert client.ok("log_warning", "disk almost full") == "logged"
    (log,) = [m for m in client.logs if m[2] == "beam_handlers.audit"]
    _, level, logger, message, meta = log
    assert (level, message) == (A("warning"), "disk almost full")
    assert meta[A("function")] == "log_warning" and meta[A("line")] > 0
    client.logs.clear()
    assert client.ok("write_stderr", "hello") == "written"
    client.await_logs(3)  # lines arrive from the stderr thread, before or after the reply
    lines = sorted(m[3] for m in client.logs)
    assert lines == ["fd1: hello", "fd2: hello", "print: hello"]
    assert all(m[1:3] == (A("warning"), "stderr") and m[4] == {} for m in client.logs)


def test_a_long_stderr_line_is_cut_once_not_sent_in_pieces(client):
    huge = "z" * (5 << 20)  # a 5 MiB line: 80 warnings in 64 KiB pieces before
    assert client.ok("write_stderr", huge) == "written"
    client.await_logs(3)
    with pytest.raises(TimeoutError):
        client.await_logs(4, timeout=0.5)
    note = f" ... [line cut at {tw.LINE_MAX} bytes: the rest is not forwarded]"
    heads = sorted(m[3] for m in client.logs)
    assert heads == [f"{source}: {huge}"[:tw.LINE_MAX] + note for source in ("fd1", "fd2", "print")]


def test_a_line_that_grows_past_the_cut_across_reads_is_cut_too():
    # Only the unfinished tail was measured: a line ending in the next read went whole (125 KB).
    lines = tw.StderrLines()
    out = lines.feed(b"x" * tw.LINE_MAX) + lines.feed(b"y" * 60_000 + b"\n")
    assert out == ["x" * tw.LINE_MAX + f" ... [line cut at {tw.LINE_MAX} bytes: the rest is not forwarded]"]


def test_a_python_warning_is_one_record_with_its_source_line(client):
    assert client.ok("warn", "the old API is going away") == "warned"
    client.await_logs(1)
    with pytest.raises(TimeoutError):  # a second line, if there were one, would come from the stderr thread
        client.await_logs(2, timeout=0.5)
    (log,) = client.logs
    _, level, logger, message, _meta = log
    assert (level, logger) == (A("warning"), "py.warnings")
    assert "UserWarning: the old API is going away" in message and "warnings.warn(" in message


# ------------------------------------------------------------------ malformed input (issue #14 G)


def bad_request(reply: Any, ident: Any = -1) -> str:
    """The message of a ``{reply, Id, {error, {bad_request, Message}}}``, checking its shape."""
    assert type(reply) is tuple and reply[:2] == (A("reply"), ident), reply
    (kind, (tag, message)) = reply[2]
    assert (kind, tag) == ("error", "bad_request"), reply
    return message


def test_names_that_are_not_utf8_are_bad_requests(client):
    client.send((A("call"), 1, b"\xff\xfe", b"echo", [1], {}))
    assert "UTF-8" in bad_request(client.recv(), 1)
    client.send((A("call"), 2, b"beam_handlers", b"\xc3\x28", [1], {}))
    assert "UTF-8" in bad_request(client.recv(), 2)
    assert client.ok("add", 1, 2) == 3


def test_a_request_nested_5000_deep(client):
    deep: Any = []
    for _ in range(5000):
        deep = [deep]
    client.send(deep)  # not a call: answered without repr
    assert "a list of 1 elements" in bad_request(client.recv())
    client.send((A("call"), deep, b"beam_handlers", b"add", [1, 2], {}))  # an Id 5,000 deep is echoed
    assert client.recv()[2] == (A("ok"), 3)
    nan: Any = A("nan")
    for _ in range(5000):
        nan = [nan]
    value = client.ok("echo", nan)  # walked both ways: the atom becomes a float and back
    for _ in range(5000):
        (value,) = value
    assert value == A("nan")
    assert client.ok("add", 1, 2) == 3


@pytest.mark.parametrize("garbage", [b"", b"hello world", b"\x00" * 100, b"TTHR" + b"\x01" * 100,
                                     bytes(range(256)) * 3, b"PING" * (1 << 18) + b"!"])
def test_garbage_gets_an_error_reply_and_the_next_call_works(client, garbage):
    client.send_raw(len(garbage).to_bytes(4, "big") + garbage)
    assert bad_request(client.recv())
    assert client.ok("add", 1, 2) == 3


def test_frames_that_are_not_calls_get_error_replies(client):
    data = tether.dumps(np.ones(3))
    client.send_raw(len(data).to_bytes(4, "big") + data)
    assert "expected {call, Id, Module, Function, Args, Opts}, got a ndarray" in bad_request(client.recv())
    client.send((A("call"), 5, b"beam_handlers", b"add", [1, 2]))  # the 5-tuple of before the handshake
    assert "got a tuple of 5 elements" in bad_request(client.recv(), 5)
    client.send((A("call"), 6, b"beam_handlers", b"add", 12, {}))
    assert "Args must be a list" in bad_request(client.recv(), 6)
    client.send((A("call"), 7, b"beam_handlers", b"add", [1, 2], [1]))
    assert "Opts must be a map" in bad_request(client.recv(), 7)
    broken = bytearray(frame((A("call"), 8, b"beam_handlers", b"add", [1, 2], {})))
    broken[-3] ^= 0xFF
    client.send_raw(len(broken).to_bytes(4, "big") + bytes(broken))
    assert "checksum" in bad_request(client.recv())
    assert client.ok("add", 1, 2) == 3


def test_garbage_under_a_large_dishonest_prefix_is_answered_at_once(client):
    client.send_raw((100 << 20).to_bytes(4, "big") + b"garbage!" * 10)
    t0 = time.monotonic()
    assert "not a tether frame" in bad_request(client.recv(timeout=2))
    assert time.monotonic() - t0 < 1


@pytest.mark.parametrize("skew", [1000, 1, -1, -10])
def test_a_length_prefix_that_disagrees_with_its_frame_is_answered_then_exit_1(client, skew):
    data = frame((A("call"), 1, b"beam_handlers", b"add", [1, 2], {}))
    client.send_raw((len(data) + skew).to_bytes(4, "big") + data)  # nothing follows: no waiting for it
    assert "out of step" in bad_request(client.recv(timeout=2))
    assert client.wait(5) == 1


def test_a_message_over_max_message_is_refused_then_exit_1():
    c = Client("--max-message", "1000")
    assert c.ok("echo", b"x" * 500) == b"x" * 500
    data = frame((A("call"), 1, b"beam_handlers", b"echo", [b"x" * 2000], {}))
    c.send_raw(len(data).to_bytes(4, "big") + data)
    assert "--max-message" in bad_request(c.recv())
    assert c.wait(5) == 1
    c.close()
    c = Client("--max-message", "1000", form="compact")  # a compact message that arrives in one read, too
    assert c.ok("echo", b"x" * 500) == b"x" * 500
    data = tw.compact((A("call"), 1, b"beam_handlers", b"echo", [b"x" * 2000], {}))
    c.send_raw(len(data).to_bytes(4, "big") + data)
    assert "--max-message" in bad_request(c.recv())
    assert c.wait(5) == 1
    c.close()
    c = Client()
    c.send_raw(b"\xff\xff\xff\xff" + b"\x00" * 64)  # 4 GiB - 1 declared, over the default 256 MiB
    assert "shared memory" in bad_request(c.recv(timeout=2))
    assert c.wait(5) == 1
    c.close()


def vm_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(field)


def test_memory_follows_the_bytes_that_arrive_not_the_declared_length(client):
    enc = tether.encode(np.zeros(25 << 20), checksum=False)  # a 200 MiB frame, never written
    before = vm_kib(client.proc.pid, "VmRSS")
    client.send_raw(enc.nbytes.to_bytes(4, "big") + enc.header.pack() + b"\x00" * 8192)
    time.sleep(0.5)
    assert client.proc.poll() is None  # waiting for the rest, as {packet, 4} must
    assert vm_kib(client.proc.pid, "VmHWM") - before < 16 << 10
    assert client.close() == 0  # the port closed mid-message: a clean exit


def test_a_cancel_that_lands_while_a_log_message_is_written_keeps_the_stream_whole(client):
    for _ in range(3):
        ident = client.request("log_for", 5)
        assert client.recv(timeout=10, logs=True)[0] == "log"  # the call is running (a fixed delay raced it)
        time.sleep(0.3)  # unread: the worker writes into a full pipe when the cancel lands
        os.kill(client.proc.pid, signal.SIGUSR1)
        deadline = time.monotonic() + 3
        while True:  # every message decodes: none was cut by the cancel
            msg = client.recv(max(0.01, deadline - time.monotonic()), logs=True)
            if msg[0] == "reply":
                break
            assert msg[0] == "log" and msg[2] in ("beam_handlers.chatty", "stderr")
        assert msg == (A("reply"), ident, (A("error"), A("cancelled")))
    assert client.ok("add", 1, 2) == 3


def test_more_large_frames_than_region_slots_go_inline_with_their_crc():
    c = Client("--shm-threshold", "1024")
    value = c.ok("many_arrays", 130, 200)  # 130 frames over the threshold; a region has 126 slots
    routes = [v[0] for v in value]
    assert routes.count("$tether_shm") == 126 and routes.count("$tether") == 4
    for i, v in enumerate(value):
        np.testing.assert_array_equal(embedded(v), np.full(200, i))
    assert c.close() == 0


# ------------------------------------------------------------------ compact messages


@pytest.fixture
def compact_client():
    c = Client(form="compact")
    yield c
    if c.proc.poll() is None:
        assert c.close() == 0
    else:
        c.close()


def test_ready_says_the_worker_reads_compact_messages(client):
    assert client.ready[1][A("messages")] == ["frame", "compact"]


def test_a_compact_call_gets_a_compact_reply_and_a_frame_call_a_frame(compact_client):
    c = compact_client
    value = {A("id"): 1, A("name"): b"small", A("price"): 9.5, A("tags"): [A("a"), A("b")], A("ok"): True}
    ident = c.request("echo", value)
    raw = c.recv_raw()
    assert raw[:4] == tw.COMPACT_MAGIC and tw.read_compact(raw, TAGGED) == (A("reply"), ident, (A("ok"), value))
    c.form = "frame"
    ident = c.request("echo", value)
    raw = c.recv_raw()
    assert raw[:4] == tether.frame.MAGIC and tether.loads(raw) == (A("reply"), ident, (A("ok"), value))


def test_compact_calls_carry_arrays_nan_errors_and_stats(compact_client):
    c = compact_client
    value = c.ok("nested_arrays")
    np.testing.assert_array_equal(embedded(value["emb"]), np.arange(12, dtype=np.float32).reshape(3, 4))
    assert c.ok("non_finite") == [A("nan"), A("infinity"), A("neg_infinity"), 1.5]
    assert c.ok("is_nan", A("nan")) is True
    err = c.call("fail", "no")
    assert err[0] == "error" and err[1][0] == "python" and "Traceback" in err[1][3]
    c.send((A("stats"), 77))
    reply = c.recv()
    assert reply[:2] == (A("reply"), 77) and reply[2][1]["worker"]["calls"] >= 3
    c.send((A("echo"), [1, b"two"]))
    assert c.recv() == (A("echo"), [1, b"two"])


def _raw_compact(term_bytes: bytes, crc: int | None = None) -> bytes:
    body = tw.COMPACT_MAGIC + (zlib.crc32(term_bytes) if crc is None else crc).to_bytes(4, "little") + term_bytes
    return len(body).to_bytes(4, "big") + body


@pytest.mark.parametrize("case", ["crc", "short", "not_etf", "trailing", "bomb"])
def test_bad_compact_messages_get_typed_error_replies_and_the_worker_goes_on(compact_client, case):
    c = compact_client
    call = tether.etf.encode((A("call"), 5, b"beam_handlers", b"echo", [1], {}))
    data = {"crc": _raw_compact(call, zlib.crc32(call) ^ 1),
            "short": _raw_compact(b""),
            "not_etf": _raw_compact(b"\x00\x01\x02"),
            "trailing": _raw_compact(call + b"\x00"),
            # a term compressed with a declared size of 3 GiB: refused by the limits, nothing inflated
            "bomb": _raw_compact(b"\x83\x50" + (3 << 30).to_bytes(4, "big") + b"\x78\x9c\x03\x00")}[case]
    c.send_raw(data)
    reply = c.recv()
    assert reply[0] == "reply" and reply[2][0] == "error" and reply[2][1][0] == "bad_request", reply
    text = reply[2][1][1]
    if case == "crc":
        assert "CRC-32" in text and "send it again" in text
    assert c.ok("echo", 2) == 2


def test_compact_messages_round_trip_what_frames_carry():
    w = tw.Worker({"beam_handlers": __import__("beam_handlers")})
    try:
        for term in [(A("echo"), {b"k": [1, 2.5, None, True]}), (A("echo"), (A("ok"), b"\x00" * 100, "text"))]:
            message = tw.compact(term)
            assert tw.decode(message, TAGGED) == tw.decode(tether.dumps(term, format="etf")) == term
            assert tw.decode(w.handle(message), TAGGED) == tw.decode(w.handle(tether.dumps(term, format="etf")))
    finally:
        w.close()


def test_compact_messages_two_in_one_read_and_one_in_two_pieces(compact_client):
    c = compact_client
    one, two = (tw.compact((A("call"), i, b"beam_handlers", b"add", [i, 1], {})) for i in (41, 42))
    c.send_raw(b"".join(len(m).to_bytes(4, "big") + m for m in (one, two)))
    assert [c.recv()[1:] for _ in range(2)] == [(41, (A("ok"), 42)), (42, (A("ok"), 43))]
    whole = len(one).to_bytes(4, "big") + one
    c.send_raw(whole[:7])
    time.sleep(0.05)  # the worker has read the first piece by now
    c.send_raw(whole[7:])
    assert c.recv()[1:] == (41, (A("ok"), 42))


def test_a_message_that_is_none_is_answered_as_a_frame_after_compact_calls(compact_client):
    c = compact_client
    assert c.ok("add", 1, 2) == 3  # the last request was compact
    junk = b"JUNK" * 20
    c.send_raw(len(junk).to_bytes(4, "big") + junk)
    raw = c.recv_raw()
    assert raw[:4] == tether.frame.MAGIC and "not a tether frame" in bad_request(tether.loads(raw))
    assert c.ok("add", 2, 2) == 4


def test_public_helpers_given_wrong_values_raise_typed_errors():
    message = tw.compact((A("echo"), 1))
    for bad in (None, 5, "TTMC...."):
        with pytest.raises(tether.ValidationError, match="Expected bytes, memoryview"):
            tw.decode(bad)
    for options in (5, [("binaries", "tagged")]):
        with pytest.raises(tether.ValidationError, match="options must be a dict of ETF decode options"):
            tw.read_compact(message, options)
    assert tw.decode(message, {"binaries": "tagged"}) == (A("echo"), 1)
    with pytest.raises(tether.ValidationError, match="visit must be a function of one value, got int"):
        tw.transform([1], 5)
    with pytest.raises(tether.ValidationError, match="error must be a subclass of tether.TetherError"):
        tw.transform([1], lambda v: v, error=ValueError)
    with pytest.raises(tether.ValidationError, match="modules must be a dict of module name to module"):
        tw.ready_info(None)
    with pytest.raises(tether.ValidationError, match="channel must be a tether.worker.Channel, got NoneType"):
        tw.handshake(None, ["math"])
    for fds in ((None, 1), (0, -1)):
        with pytest.raises(tether.ValidationError, match=r"must be an open file descriptor \(an int >= 0\)"):
            tw.Channel(*fds)
    with pytest.raises(tether.ValidationError, match="max_message must be an int of at least 64"):
        tw.Channel(0, 1, max_message=8)
    with pytest.raises(tether.ValidationError, match="serve takes a tether.worker.Worker and a Channel"):
        tw.serve(None, None)


# ---------------------------------------------------------------- spinning for the next message


@pytest.fixture
def pipe():
    r, w = os.pipe()
    yield r, w
    os.close(r)
    os.close(w)


def test_spin_backs_off_1_2_4_to_64_waits_after_misses_and_a_hit_ends_it(pipe):
    r, w = pipe
    spin = tw.Spin(r, 50)
    for _ in range(200):  # nothing arrives: miss, skip 1, miss, skip 2, ... skip 64, miss, skip 64, miss
        spin.wait()
    assert (spin.misses, spin.skipped, spin.hits) == (9, 191, 0)
    assert spin.spent >= 9 * 50e-6
    os.write(w, b"x")
    while spin.hits == 0:  # the back-off runs out, then the byte is found at once
        spin.wait()
    assert spin.misses == 9
    os.read(r, 1)
    spin.wait()  # a miss after the hit: the back-off starts again at one wait
    spin.wait()
    spin.wait()  # so this one spins (had the hit not ended the back-off, 64 waits would be skipped)
    assert (spin.misses, spin.stats()["skipped"] - 191) == (11, 64 + 1)


def test_spin_returns_when_a_message_arrives_within_its_window(pipe):
    r, w = pipe
    for _attempt in range(3):  # a loaded host may hold the writing thread back past the 10 ms window
        spin = tw.Spin(r, tw.SPIN_US_MAX)
        writer = threading.Timer(0.001, os.write, (w, b"x"))
        writer.start()
        spin.wait()
        writer.join()
        os.read(r, 1)
        if spin.hits == 1:
            break
    assert (spin.hits, spin.misses) == (1, 0)


def test_spin_zero_never_polls_and_bad_settings_are_refused(pipe):
    r, w = pipe
    spin = tw.Spin(r, 0)
    spin.wait()
    assert spin.stats() == {"us": 0, "hits": 0, "misses": 0, "skipped": 0, "seconds": 0.0}
    for bad in (-1, tw.SPIN_US_MAX + 1, 1.5, True, "200"):
        with pytest.raises(tether.ValidationError, match=r"spin_us must be an int from 0 to 10000"):
            tw.Spin(r, bad)
    assert tw.Channel(r, w).spin.us == 0  # a Channel built by hand does not spin unless asked
    with pytest.raises(tether.ValidationError, match=r"Spin needs an open file descriptor"):
        tw.Channel(2**40, w, spin_us=100)


@pytest.mark.parametrize("value", ["-1", str(tw.SPIN_US_MAX + 1)])
def test_the_worker_refuses_a_spin_out_of_range(value):
    out = subprocess.run([sys.executable, "-m", "tether.worker", "--module", "math", "--spin-us", value],
                         capture_output=True, text=True, env=ENV, timeout=60, stdin=subprocess.DEVNULL)
    assert out.returncode == 2 and "--spin-us must be from 0 to 10000" in out.stderr


@pytest.mark.parametrize("spin", [None, "0", str(tw.SPIN_US_MAX)])
def test_the_worker_reports_its_spin_in_stats(spin):
    c = Client(*(("--spin-us", spin) if spin else ()), form="compact")
    try:
        for _ in range(20):
            assert c.ok("add", 1, 2) == 3
        c.send((A("stats"), 99))
        reply = c.recv()
        assert reply[:2] == (A("reply"), 99) and reply[2][0] == A("ok")
        got = reply[2][1]["worker"]["spin"]
        waits = got["hits"] + got["misses"] + got["skipped"]
        if spin == "0":
            assert got == {"us": 0, "hits": 0, "misses": 0, "skipped": 0, "seconds": 0.0}
        elif spin is None:  # the default: how many calls it finds depends on the host; every wait is counted
            assert got["us"] == tw.SPIN_US and waits >= 22
        else:  # 10 ms: calls sent one after another arrive while the worker still polls
            assert got["us"] == tw.SPIN_US_MAX and waits >= 22 and got["hits"] >= 12
    finally:
        c.close()


@pytest.mark.parametrize(("role", "offset", "index", "spinners", "allowed", "expected"), [
    ("spinner", 0, 0, 1, {0, 1}, {0}),
    ("sleeper", 0, 0, 1, {0, 1}, {1}),
    ("spinner", 1, 0, 1, {0, 1}, {1}),  # a second pool's polling member starts on the next CPU
    ("sleeper", 1, 0, 1, {0, 1}, {0}),
    ("spinner", 0, 2, 3, {4, 5, 6, 7}, {6}),
    ("sleeper", 2, 0, 3, {4, 5, 6, 7}, {5}),  # slots 2, 3, 0 poll: CPUs 6, 7, 4
    ("sleeper", 0, 0, 2, {0, 1}, None),  # every CPU would poll: nothing is pinned
    ("spinner", 0, 0, 0, {0, 1}, None),
    ("spinner", 0, 0, 1, {3}, None),
    ("poller", 0, 0, 1, {0, 1}, None),
])
def test_pinned_cpus_keep_polling_and_sleeping_members_apart(role, offset, index, spinners, allowed, expected):
    got = tw.pinned_cpus(role, offset, index, spinners, frozenset(allowed))
    assert got == (None if expected is None else frozenset(expected))


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="no CPU affinity on this OS")
def test_a_pin_spec_that_cannot_apply_warns_and_leaves_the_worker_where_it_is(caplog):
    before = os.sched_getaffinity(0)
    with caplog.at_level(logging.WARNING, logger="tether.worker"):
        tw._pin("spinner:zero:0:1")
    assert os.sched_getaffinity(0) == before
    assert "--pin spinner:zero:0:1 not applied" in caplog.text
    assert tw._arguments(["--module", "m", "--pin", "sleeper:0:0:1"]).pin == "sleeper:0:0:1"


def test_what_the_modules_log_and_alert_while_importing_is_sent_after_ready():
    # (Stray prints are read back from the BEAM's stderr file: this client's stderr is a pipe. ExUnit covers them.)
    c = Client("--log-level", "info", modules=("early_handlers",))
    try:
        assert c.ready[0] == "ready"
        c.await_logs(4)
        texts = [(m[1], m[2], m[3]) for m in c.logs]
        assert texts[:2] == [("warning", "early_handlers", "loading the model at import"),
                             ("info", "early_handlers", "an info record at import")]
        assert texts[2][1] == "py.warnings" and "an old API at import" in texts[2][2]  # one record, as after ready
        assert texts[3][1] == "tether.alerts" and "at_import" in texts[3][2]
        alert = c.recv()
        assert alert[:3] == ("alert", "at_import", "firing"), alert
        # Their text is on stderr too, for a start that fails (a pipe here: nothing is read back from it).
        err = c.stderr_now()
        assert b"WARNING:early_handlers:loading the model at import" in err and b"a stray print at import" in err
    finally:
        c.close()


def test_a_start_that_fails_writes_what_the_modules_logged_to_stderr():
    c = Client(modules=("early_handlers", "no_such_module_at_all"))
    try:
        assert c.ready[0] == "refused"
        assert c.wait() == 2
        err = c.stderr_now()
        assert b"WARNING:early_handlers:loading the model at import" in err and b"a stray print at import" in err
    finally:
        c.close()


def test_a_module_that_calls_basicconfig_at_import_still_sets_the_root_level():
    # Capturing the imports' records must not take basicConfig's place: it configures only a bare root logger.
    c = Client(modules=("early_basicconfig",))
    try:
        c.send((A("call"), 1, b"early_basicconfig", b"log_info", ["at call time"], {}))
        reply = c.recv()
        assert reply[:3] == ("reply", 1, (A("ok"), "logged")), reply
        c.await_logs(1)
        assert ("info", "early_basicconfig", "at call time") in [(m[1], m[2], m[3]) for m in c.logs]
    finally:
        c.close()


def test_records_from_before_ready_pass_the_loggers_filters_as_those_after_it_do():
    c = Client(modules=("early_filtered",))
    try:
        c.await_logs(1)
        assert [(m[2], m[3]) for m in c.logs] == [("early_filtered", "a public warning")]
        c.send((A("call"), 1, b"early_filtered", b"ping", [], {}))
        assert c.recv()[:3] == ("reply", 1, (A("ok"), "pong"))  # nothing else came before the reply
    finally:
        c.close()


def test_a_thread_logging_across_ready_loses_and_repeats_nothing():
    # Records before ready beyond what is kept are counted in a notice; every other one arrives once.
    for _ in range(3):
        c = Client(modules=("early_threads",))
        try:
            c.send((A("call"), 1, b"early_threads", b"join", [], {}))
            assert c.recv(timeout=30)[:2] == ("reply", 1)  # logs meanwhile go to c.logs
            with contextlib.suppress(TimeoutError):
                c.recv(timeout=0.5)  # the records written just before the reply
        finally:
            c.close()
        texts = [m[3] for m in c.logs if m[2] == "early_threads"]
        notices = [m[3] for m in c.logs if m[2] == "tether.worker" and "not sent" in m[3]]
        dropped = int(notices[0].split()[0]) if notices else 0
        assert len(texts) == len(set(texts)), "a record arrived twice"
        assert len(texts) + dropped == 4000, (len(texts), notices)


def test_what_extra_adds_to_a_record_is_forwarded_bounded_and_as_valid_text():
    fields = {f"f{i}": i for i in range(tw.EXTRA_FIELDS + 8)}
    record = logging.makeLogRecord({"msg": "m", "_private": 1, "long": "x" * (tw.EXTRA_TEXT + 50),
                                    "bad": "a\udcff", "obj": {"k": [1]}, "inf": float("inf"), **fields})
    extra = tw._record_parts(record)[1]["extra"]
    assert len(extra) == tw.EXTRA_FIELDS and "_private" not in extra and "msg" not in extra
    assert extra["long"] == "x" * tw.EXTRA_TEXT and extra["bad"] == "a?" and extra["obj"] == "{'k': [1]}"
    assert extra["inf"] == "inf" and extra["f0"] == 0
    assert "extra" not in tw._record_parts(logging.makeLogRecord({"msg": "plain"}))[1]

    class BadRepr:
        def __repr__(self):
            raise RuntimeError("no")
    # A key that is not a string, a key with a lone surrogate, a repr that raises: the record still goes.
    odd = logging.makeLogRecord({"msg": "m"})
    odd.__dict__.update({1: 2, "k\udcff": "v", "obj": BadRepr()})
    extra = tw._record_parts(odd)[1]["extra"]
    assert extra == {"k?": "v", "obj": "<BadRepr: repr failed>"}
    tether.loads(tw._log_frame(tw._level(logging.WARNING), "x", "m", tw._record_parts(odd)[1]))
    tether.loads(tw._log_frame(tw._level(logging.WARNING), "x", "m", tw._record_parts(record)[1]))  # it encodes
