"""Adversarial input to the worker protocol (docs/format.md §8, "Malformed input"), Python's side.

Every malformed request gets a well-formed ``{reply, Id, {error, {bad_request, Message}}}``
whose message is a typed error's (never ``IndexError: ...``-style text from a bare
exception), the worker goes on answering, and memory follows the bytes that arrive.
A real ``python -m tether.worker`` where the pipe matters; ``Worker.handle`` and a
``Channel`` over an ``os.pipe`` in-process where many inputs are tried.
"""

from __future__ import annotations

import os
import re
import select
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

import beam_handlers
import tether
from tether import Atom as A
from tether import worker as tw

ROOT = Path(__file__).resolve().parent.parent
_WORKER = tw.Worker({"beam_handlers": beam_handlers})  # in-process: many inputs, no pipe
ENV = {**os.environ, "PYTHONPATH": f"{ROOT / 'tests'}{os.pathsep}{ROOT / 'src'}"}
HELLO = {A("tether"): tether.__version__, A("otp"): "27", A("frame_versions"): [1], A("formats"): ["etf"],
         A("compressions"): ["none", "gzip"], A("checksums"): ["none", "crc32"]}
M = b"beam_handlers"
# What Worker.bad_request writes for an exception that is not a TetherError: "IndexError: ...".
BARE = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?[A-Z]\w*(?:Error|Exception|Invalid|Warning): |^error: ")


def body_message(body: bytes) -> bytes:
    """A compact message around ``body`` (any bytes), its CRC-32 right: only the term is wrong."""
    return tw.COMPACT_MAGIC + struct.pack("<I", zlib.crc32(body)) + body


def answer(message: bytes) -> Any:
    """The in-process worker's reply to ``message``, decoded as the tests' peer reads it."""
    return tw.decode(_WORKER.handle(message), {"binaries": "tagged"})


def call(args: Any = None, opts: Any = None, mod: Any = M, fun: Any = b"echo", ident: Any = 1) -> bytes:
    return tw.compact((A("call"), ident, mod, fun, [] if args is None else args, {} if opts is None else opts))


class Peer:
    """A real worker and the BEAM's half of the pipe ({packet, 4}), requests as compact messages."""

    def __init__(self, *argv: str):
        cmd = [sys.executable, "-m", "tether.worker", "--module", "beam_handlers", *argv]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=ENV, cwd=ROOT)
        self.buf = b""
        self.send(tether.dumps((A("hello"), HELLO), format="etf", checksum="crc32"))
        assert self.recv()[0] == "ready"

    def send(self, message: bytes) -> None:
        os.write(self.proc.stdin.fileno(), len(message).to_bytes(4, "big") + message)

    def _need(self, n: int, deadline: float) -> bool:
        fd = self.proc.stdout.fileno()
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError("the worker did not answer")
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                return False
            self.buf += chunk
        return True

    def recv(self, timeout: float = 10.0) -> Any:
        """The next message that is not a log record, decoded; None when the worker closed its end."""
        deadline = time.monotonic() + timeout
        while True:
            if not self._need(4, deadline):
                return None
            n = int.from_bytes(self.buf[:4], "big")
            if not self._need(4 + n, deadline):
                return None
            raw, self.buf = self.buf[4 : 4 + n], self.buf[4 + n :]
            msg = tw.decode(raw, {"binaries": "tagged"})
            if not (type(msg) is tuple and msg and msg[0] == "log"):
                return msg

    def add(self) -> Any:
        self.send(call([1, 2], fun=b"add", ident=99))
        return self.recv()

    def close(self) -> int:
        if self.proc.poll() is None:
            self.proc.stdin.close()
        try:
            return self.proc.wait(10)
        finally:
            self.proc.stdout.close()
            self.proc.stderr.close()


@pytest.fixture(scope="module")
def peer():
    p = Peer()
    yield p
    assert p.close() == 0


def bad_request(reply: Any, ident: Any = -1) -> str:
    """The message of a ``{reply, Id, {error, {bad_request, Message}}}``: its shape checked, typed text."""
    assert type(reply) is tuple and len(reply) == 3 and reply[:2] == (A("reply"), ident), reply
    assert type(reply[2]) is tuple and reply[2][0] == "error" and reply[2][1][0] == "bad_request", reply
    message = reply[2][1][1]
    assert type(message) is str and 10 < len(message) <= 4096, message
    assert not BARE.match(message), f"a bare exception reached the BEAM: {message!r}"
    return message


# ------------------------------------------------------------------ malformed terms, real worker

# (compact message body, words the message must hold): lengths that lie, bombs, atoms over limits.
TERMS = [
    (b"\x83", "version byte"),
    (b"\x82a\x01", "131"),
    (b"\x83a\x01junk", "trailing"),
    (b"\x83l\xff\xff\xff\xffa\x01", "4294967295 elements"),
    (b"\x83m\xff\xff\xff\xf0ab", "4294967280 bytes"),
    (b"\x83t\xff\xff\xff\xffa\x01", "4294967295 pairs"),
    (b"\x83i\xff\xff\xff\xffa\x01", "4294967295 elements"),
    (b"\x83o\xff\xff\xff\xff\x00ab", "4294967295 bytes"),
    (b"\x83k\xff\xffab", "65535 bytes"),
    (b"\x83P\xff\xff\xff\xff" + zlib.compress(b"a\x01"), "inflates to"),
    (b"\x83P\x00\x00\x00\x10garbagegarbage", "corrupted"),
    (b"\x83P\x00\x00\x00\x02" + zlib.compress(b"a\x01" + bytes(10 << 20)), "tag 80"),
    (b"\x83v\x01\x00" + b"a" * 256, "at most 255"),
    (b"\x83d\xff\xff" + b"a" * 65535, "at most 255"),
    (b"\x83w\x02\xff\xfe", "UTF-8"),
    (b"\x83\x01", "tag 1"),
    (b"\x83F" + struct.pack(">d", float("nan")), "finite"),
    (b"\x83M\x00\x00\x00\x02\x09ab", "bit binary"),
    (b"\x83D\x00", "distribution"),
    (b"\x83R\x00", "ATOM_CACHE_REF"),
    (b"\x83t\x00\x00\x00\x02a\x01a\x01a\x01a\x02", "collide"),
    (b"\x83" + b"l\x00\x00\x00\x01" * 20 + b"a\x01", "ends"),  # a deep list cut short
]


def test_malformed_terms_are_answered_with_their_cause_and_the_worker_goes_on(peer):
    for body, words in TERMS:
        peer.send(body_message(body))
        assert words in bad_request(peer.recv()), body[:20]
    assert peer.add() == (A("reply"), 99, (A("ok"), 3))


def test_compact_envelopes_that_are_not_one(peer):
    good = call([1])
    for message, words in [
        (b"TTMC", "not a compact message"),
        (b"TTMC\0\0\0\0", "not a compact message"),
        (good[:4] + b"\0\0\0\0" + good[8:], "CRC-32"),
        (good[:-1], "CRC-32"),  # cut: the CRC no longer matches
        (good + b"\x00", "CRC-32"),
        (b"TTMX" + good[4:], "frame"),  # another magic: read as a frame
        (_PICKLE, "unpickling runs arbitrary code"),  # a request that is a pickle frame: refused, not run
    ]:
        peer.send(message)
        assert words in bad_request(peer.recv()), message[:12]
    assert peer.add()[2] == (A("ok"), 3)


def test_memory_follows_the_bytes_present_not_the_lengths_declared(peer):
    before = vm_kib(peer.proc.pid, "VmHWM")
    for body in [b"\x83m\xff\xff\xff\xf0" + bytes(64), b"\x83l\x10\x00\x00\x00" + b"a\x01" * 32,
                 b"\x83t\x10\x00\x00\x00" + b"a\x01" * 32, b"\x83o\x7f\xff\xff\xff\x00" + bytes(64),
                 b"\x83P\xff\xff\xff\xff" + zlib.compress(bytes(1 << 20))]:
        peer.send(body_message(body))
        bad_request(peer.recv())
    assert vm_kib(peer.proc.pid, "VmHWM") - before < 32 << 10  # KiB: nothing near the 4 GiB declared


def vm_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(field)


# ------------------------------------------------------------------ calls of the wrong shape

SHAPES = [
    (call([1], opts=[1]), 1, "Opts must be a map"),
    (call([1], opts=(A("tables"), A("rows"))), 1, "Opts must be a map"),
    (call([1], opts={A("tables"): 5}), 1, "Opts tables must be arrow, rows or columns"),
    (call([1], opts={A("tables"): A("rowz")}), 1, "'rowz'"),
    (call([1], opts={A("tables"): b"\xff" * 5000}), 1, "Opts tables"),
    (call([1], opts={A("tables"): [[[]]]}), 1, "Opts tables"),
    (call(12), 1, "Args must be a list or {shm, Path, Len}"),
    (call({1: 2}), 1, "Args must be a list"),
    (call((A("shm"), b"/tmp/tether-x")), 1, "Args must be a list"),
    (call([1], mod=5), 1, "expected a name"),
    (call([1], mod=[b"beam_handlers"]), 1, "expected a name"),
    (call([1], mod=b"\xff\xfe"), 1, "UTF-8"),
    (call([1], fun=b"\xc3("), 1, "UTF-8"),
    (call([1], fun=(1, 2)), 1, "expected a name"),
    (call([1], ident=[[[A("deep")]]], opts=[]), [[[A("deep")]]], "Opts must be a map"),  # the Id as it came
    (tw.compact((A("call"), 7, M, b"echo", [1])), 7, "got a tuple of 5 elements"),
    (tw.compact((A("call"), 7, M, b"echo", [1], {}, 8)), 7, "got a tuple of 7 elements"),
    (tw.compact((A("stats"),)), -1, "expected {call"),
    (tw.compact((A("echo"), 1, 2)), -1, "expected {call"),
    (tw.compact([A("call"), 1, M, b"echo", [1], {}]), -1, "got a list of 6 elements"),
]


def test_calls_of_the_wrong_shape_name_the_part_and_keep_their_id(peer):
    for message, ident, words in SHAPES:
        peer.send(message)
        assert words in bad_request(peer.recv(), ident), words
    assert peer.add()[2] == (A("ok"), 3)


def test_calls_the_allow_list_refuses_are_undefined_functions(peer):
    for fun in (b"_private", b"__class__", b"__init__", b"nope", b"np.zeros", b"os", b""):
        peer.send(call([], fun=fun, ident=3))
        assert peer.recv() == (A("reply"), 3, (A("error"), (A("undefined_function"), "beam_handlers", fun.decode())))
    peer.send(call([], mod=b"tether.worker", fun=b"main", ident=4))  # a module the worker was not started with
    assert peer.recv()[2][1][0] == "undefined_function"
    peer.send(call([1, 2, 3], fun=b"add", ident=5))  # wrong arity: the handler's own TypeError, as a python error
    reply = peer.recv()
    assert reply[:2] == (A("reply"), 5) and reply[2][1][:2] == (A("python"), "TypeError")


class _Unpicklable:
    pass


_PICKLE = tether.dumps(_Unpicklable(), format="pickle", checksum="crc32")
EMBEDDED = [
    ([(A("$tether"), b"garbage")], "$[0]: Not a tether frame"),
    ([{b"k": (A("$tether"), 5)}], "$[0][b'k']: $tether must be"),
    ([(A("$tether"), tether.dumps(1)[:-1])], "truncated"),
    ([(A("$tether_table"), b"garbage")], "$[0]: Not an ETF value"),
    ([(A("$tether_table"), tether.etf.encode(5))], "from_etf needs a list of maps"),
    ([(A("$tether_table"), tether.etf.encode({b"a": [1, 2], b"b": [1]}))], "equal-length"),
    ([(A("$tether_table"), tether.etf.encode([{b"a": 1}, {b"a": b"x"}]))], "one kind per column"),
    ([(A("$tether_table"), tether.etf.encode([{(1, 2): 1}]))], "not text"),
    ([(A("$tether_table"), tether.etf.encode([{b"a": 1}])[:-2])], "ends inside"),
    ([[(A("$tether_shm"), b"/x/tether-a", 1)]], "$[0][0]: $tether_shm must be"),
    ([(A("$tether_shm"), b"/x/tether-a", -1, 2)], "non-negative integers"),
    ([(A("$tether_shm"), b"/etc/passwd", 0, 8)], "must be tether- files"),
    ([(A("$tether_shm"), b"/nonexistent/tether-a", 0, 8)], "No such file"),
    ([(A("$tether_shm"), b"/x/tether-\xff", 0, 8)], "UTF-8"),
    ([(A("$tether"), _PICKLE)], "$[0]: frame (pickle"),  # never unpickled: it would run the sender's code
    ([_PICKLE], "$[0]: frame (pickle"),  # a binary that is a whole frame is decoded as one, with the same refusal
    ((A("shm"), b"/nonexistent/tether-args", 10), "No such file"),
    ((A("shm"), b"/etc/passwd", 10), "must be tether- files"),
    ((A("shm"), 5, 10), "expected a name"),
    ((A("shm"), b"/x/tether-a", b"10"), "non-negative integers"),
]


def test_embedded_frames_with_bad_contents_are_bad_requests_at_their_path(peer):
    for args, words in EMBEDDED:
        peer.send(call(args, ident=11))
        assert words in bad_request(peer.recv(), 11), words
    assert peer.add()[2] == (A("ok"), 3)


def test_an_arguments_file_the_beam_could_not_have_written_is_refused(peer, tmp_path):
    short = tmp_path / "tether-short"
    short.write_bytes(b"\x00" * 10)
    peer.send(call((A("shm"), str(short).encode(), 1000), ident=12))
    assert "fewer than the 1000 bytes" in bad_request(peer.recv(), 12)
    peer.send(call((A("shm"), str(short).encode(), 10), ident=13))
    assert "Not a tether frame" in bad_request(peer.recv(), 13)


# ------------------------------------------------------------------ the bugs: shm paths that are not files

def test_a_shm_path_with_a_nul_byte_is_a_typed_bad_request():
    reply = answer(call((A("shm"), b"/tmp/tether-\x00x", 10)))
    assert "tether-" in bad_request(reply, 1)  # today: 'ValueError: embedded null byte'


def test_a_shm_path_that_is_a_directory_is_a_typed_bad_request(tmp_path):
    (tmp_path / "tether-dir").mkdir()
    reply = answer(call([(A("$tether_shm"), str(tmp_path / "tether-dir"), 0, 64)]))
    assert "regular file" in bad_request(reply, 1)  # today: 'OSError: [Errno 19] No such device'


def test_a_shm_path_that_is_a_fifo_is_refused_not_waited_on(tmp_path):
    fifo = tmp_path / "tether-fifo"
    os.mkfifo(fifo)
    p = Peer()
    try:
        p.send(call((A("shm"), str(fifo).encode(), 64), ident=21))
        reply = p.recv(timeout=3)  # today: TimeoutError, open() waits for a writer that never comes
        assert "regular file" in bad_request(reply, 21)
        assert p.add()[2] == (A("ok"), 3)
    finally:
        p.proc.kill()
        p.close()


SYSFS = Path("/sys/kernel/mm/transparent_hugepage/enabled")  # a regular file that cannot be mapped


@pytest.mark.skipif(not SYSFS.is_file(), reason="needs a sysfs attribute file")
def test_a_shm_path_that_cannot_be_mapped_is_a_typed_bad_request(tmp_path):
    (tmp_path / "tether-sysfs").symlink_to(SYSFS)
    reply = answer(call((A("shm"), str(tmp_path / "tether-sysfs").encode(), 8)))
    assert "Cannot map" in bad_request(reply, 1)  # today: 'OSError: [Errno 19] No such device'


# ------------------------------------------------------------------ nesting, in-process

def test_a_request_nested_100000_deep_is_answered_without_recursion():
    deep = b"\x83" + b"l\x00\x00\x00\x01" * 100_000 + b"a\x01" + b"j" * 100_000
    assert "a list of 1 elements" in bad_request(answer(body_message(deep)))
    inner = deep[1:]  # the same list as a call's Id, as its Opts' tables, and echoed
    names = b"m\x00\x00\x00\x0dbeam_handlersm\x00\x00\x00\x04echoj"
    reply = answer(body_message(b"\x83h\x06w\x04call" + inner + names + inner))
    assert reply[0] == "reply" and "Opts must be a map, got a list of 1 elements" in reply[2][1][1]
    tables = b"t\x00\x00\x00\x01w\x06tables" + inner
    assert "Opts tables" in bad_request(answer(body_message(b"\x83h\x06w\x04calla\x05" + names + tables)), 5)
    reply = answer(body_message(b"\x83h\x02w\x04echo" + inner))
    assert reply[0] == "echo" and type(reply[1]) is list


# ------------------------------------------------------------------ hypothesis, in-process

_VALID = call([{b"k": [1, 2.5, A("nan"), b"x" * 10]}, (A("$tether"), tether.dumps([1, 2], checksum="crc32"))],
              opts={A("tables"): A("rows")}, fun=b"describe")


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_compact_calls_get_typed_replies(data):
    """Flip, cut and insert bytes of a valid call's term, CRC made right: the reply is always a reply."""
    body = bytearray(_VALID[8:])
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["set", "cut", "insert"]))
        at = data.draw(st.integers(0, len(body)))
        if op == "set" and at < len(body):
            body[at] = data.draw(st.integers(0, 255))
        elif op == "cut":
            del body[at : at + data.draw(st.integers(1, 16))]
        else:
            body[at:at] = data.draw(st.binary(min_size=1, max_size=8))
    reply = answer(body_message(bytes(body)))
    assert type(reply) is tuple and reply[0] in ("reply", "echo"), reply
    if reply[0] == "reply" and reply[2][0] == "error" and reply[2][1][0] == "bad_request":
        assert not BARE.match(reply[2][1][1]), reply[2][1][1]



@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, (1 << 32) - 1) | st.integers(0, 300),
                          st.sampled_from([b"", b"TTMC", b"TTHR", b"PING", tw.COMPACT_MAGIC + b"\0" * 4]),
                          st.binary(max_size=300)), max_size=6))
def test_any_byte_stream_ends_in_messages_or_message_errors(chunks):
    """The channel as serve() drives it, over a pipe whose writer closed: it ends, raising only MessageError."""
    stream = b"".join(n.to_bytes(4, "big") + head + rest for n, head, rest in chunks)
    r, w = os.pipe()
    os.write(w, stream)  # at most 6 x 312 bytes: the pipe holds them all
    os.close(w)
    channel = tw.Channel(r, os.open(os.devnull, os.O_WRONLY), max_message=1 << 16)
    try:
        for _ in range(len(stream) // 4 + 2):  # every message takes at least its 4-byte prefix
            try:
                message = channel.read_message()
            except tw.MessageError as exc:
                if exc.fatal or not channel.discard(exc.remaining):
                    break
                continue
            if message is None:
                break
            assert len(message) <= 1 << 16
        else:
            pytest.fail("more messages than were sent")
    finally:
        os.close(r)
        os.close(channel.fd_out)



# ------------------------------------------------------------------ the handshake

def handshake(hello: Any) -> tuple[Any, int, bytes]:
    """A fresh worker's answer to ``hello`` (a term, sent as a frame), its exit status and its stderr."""
    cmd = [sys.executable, "-m", "tether.worker", "--module", "beam_handlers"]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV,
                            cwd=ROOT)
    data = tether.dumps(hello, format="etf", checksum="crc32")
    out, err = proc.communicate(len(data).to_bytes(4, "big") + data, timeout=20)
    answer_ = tw.decode(out[4 : 4 + int.from_bytes(out[:4], "big")], {"binaries": "tagged"}) if out else None
    return answer_, proc.returncode, err


@pytest.mark.parametrize("info", [{A("tether"): 5}, [1], {A("tether"): "9.9.9"},
                                  {A("tether"): tether.__version__, A("frame_versions"): 1}])
def test_a_hello_of_the_wrong_shape_is_refused_with_exit_2(info):
    reply, status, _ = handshake((A("hello"), info))
    assert (reply[0], reply[1][0], status) == ("refused", "incompatible", 2), reply


def test_a_hello_with_garbage_capabilities_is_still_ready():
    info = {A("tether"): tether.__version__, A("frame_versions"): [1],
            A("format_schemas"): {b"ndarray": [1, "x"], 5: 6, b"\xff": None}, A("types"): {b"\xff": 1, (1,): [2]}}
    reply, status, _ = handshake((A("hello"), info))
    assert reply[0] == "ready" and status == 0  # stdin closed after the hello: a clean exit


def test_a_hello_whose_version_is_not_utf8_is_refused_not_a_traceback():
    reply, status, err = handshake((A("hello"), {A("tether"): b"\xff\xfe1.0"}))
    # today: no answer, exit 1, stderr ends "tether._errors.DecodeError: b'\xff\xfe1.0' is not UTF-8; module and ..."
    assert reply is not None and (reply[0], reply[1][0], status) == ("refused", "incompatible", 2), (status, err[-200:])


def test_compact_messages_over_one_read_are_checked_alike(peer):
    """Over 64 KiB a message is read in steps (a memoryview, not bytes): the same checks, the same answers."""
    big = call([b"x" * (200 << 10), (A("$tether"), b"garbage")], ident=31)
    peer.send(big)
    assert "$[1]: Not a tether frame" in bad_request(peer.recv(), 31)
    peer.send(big[:-1] + bytes([big[-1] ^ 1]))
    assert "CRC-32" in bad_request(peer.recv())
    peer.send(body_message(b"\x83l\x00\x01\x00\x00" + b"a\x01" * (40 << 10)))  # 65,536 elements, then no tail
    assert "ends" in bad_request(peer.recv())
    peer.send(call([b"y" * (200 << 10)], ident=32))
    reply = peer.recv()  # 64 KiB and more come back as an embedded raw frame
    assert reply[:2] == (A("reply"), 32) and reply[2][1][0] == "$tether"
    assert bytes(tether.loads(reply[2][1][1])) == b"y" * (200 << 10)


def test_names_a_handler_module_merely_imported_are_not_callable():
    import facade_handlers

    worker = tw.Worker({"facade_handlers": facade_handlers})
    try:
        def reply(fun: bytes, args: list = [20]) -> Any:
            message = tw.compact((A("call"), 9, b"facade_handlers", fun, args, {}))
            return tw.decode(worker.handle(message), {"binaries": "tagged"})[2]

        # Its own functions, one its package re-exports from a submodule, and one its __all__ lists.
        assert [reply(f) for f in (b"local", b"unlisted", b"double")] == [(A("ok"), 21), (A("ok"), 19), (A("ok"), 40)]
        assert reply(b"which", [b"no-such-command-here"]) == (A("ok"), None)
        # Values it built from other modules' code: a partial and a fitted model's method.
        assert [reply(f) for f in (b"triple", b"predict")] == [(A("ok"), 60), (A("ok"), 60)]
        # Imported from os (without __all__ naming them): refused before anything runs.
        for fun in (b"getcwd", b"system"):
            assert reply(fun) == (A("error"), (A("undefined_function"), "facade_handlers", fun.decode()))
    finally:
        worker.close()
