"""Fuzz targets: one function per public reader, each taking the fuzzer's bytes.

A target returns normally for every input, or raises a
:class:`tether.TetherError`, which it swallows: anything else escaping is
the finding (atheris reports it with the input that caused it). Frame
targets recompute every checksum of their input first, as any peer can, so
that mutations reach the decoders behind the checksums instead of stopping
at the header CRC. ``fuzz.run`` drives them with atheris (``make fuzz``);
``tests/test_hardening.py`` runs each once on its seeds, so they stay
importable and correct without atheris.
"""

from __future__ import annotations

import io
import types
import zlib
from typing import Any, Callable

import tether
from tether import _etf
from tether.stream import StreamReader, verify_stream

from . import mutate

# Small enough that a legitimate bomb ends in a LimitError long before the fuzzer's memory limit.
LIMITS = tether.Limits(max_uncompressed_size=64 << 20, max_depth=100_000, max_atoms=100_000)
_OPTIONS = [_etf.Options(limits=LIMITS, binaries=b, atoms=a, structs=s)
            for b in ("bytes", "tagged") for a in ("atom", "str") for s in (True, False)]


def _crafted(data: bytes) -> bytes:
    """``data`` with the checksums of every frame in it recomputed."""
    out = bytearray(data)
    for off in mutate.frame_offsets(bytes(out)) or [0]:
        mutate.fix(out, off)
    return bytes(out)


def _compact_crafted(data: bytes) -> bytes:
    """A compact message (docs/format.md §8) with its CRC-32 recomputed, so the term itself gets fuzzed."""
    out = bytearray(data.ljust(8, b"\0"))
    out[4:8] = zlib.crc32(out[8:]).to_bytes(4, "little")
    return bytes(out)


def _outcome(call: Callable[[], Any]) -> tuple[str, str]:
    try:
        return "ok", repr(call())
    except tether.TetherError as exc:
        return type(exc).__name__, str(exc)


def _python_only(call: Callable[[], Any]) -> Callable[[], Any]:
    """``call`` with the C fast path switched off, so that the Python decoder does everything."""

    def run() -> Any:
        saved, _etf._c = _etf._c, None
        try:
            return call()
        finally:
            _etf._c = saved

    return run


def etf_decode(data: bytes) -> None:
    """``tether.etf.decode``: the C fast path and the Python decoder must agree on every input."""
    if not data:
        return
    opts = _OPTIONS[data[0] % len(_OPTIONS)]
    term = b"\x83" + data[1:]
    fast = _outcome(lambda: _etf.decode(term, opts))
    slow = _outcome(_python_only(lambda: _etf.decode(term, opts)))
    if fast != slow:
        raise AssertionError(f"C and Python decoders disagree on {term.hex()}: {fast} vs {slow}")


def loads(data: bytes) -> None:
    """``tether.loads`` of one crafted frame (pickle frames are refused: unpickling runs code by design)."""
    try:
        tether.loads(_crafted(data))
    except tether.TetherError:
        pass


def inspect_verify(data: bytes) -> None:
    """``tether.inspect`` and ``tether.verify`` of one crafted frame: both typed, and they agree on the info."""
    frame = _crafted(data)
    try:
        info = tether.inspect(frame)
        str(info)
    except tether.TetherError:
        info = None
    try:
        checked = tether.verify(frame)
    except tether.TetherError:
        return
    if info is None or checked.frame_size != info.frame_size:
        raise AssertionError(f"verify accepted a frame inspect refused, or read it differently: {frame.hex()}")


def stream(data: bytes) -> None:
    """``StreamReader`` over a buffer and a file, and ``verify_stream``, on crafted streams."""
    crafted = _crafted(data)
    for source in (crafted, io.BytesIO(crafted)):
        try:
            for value in StreamReader(source):
                pass
        except tether.TetherError:
            pass
    try:
        verify_stream(crafted)
    except tether.TetherError:
        pass


def worker(data: bytes) -> None:
    """``tether.worker.Worker.handle``: every request, frame or compact message, however malformed, gets a reply.

    The reply is a message of the request's form, never an exception; only the ``{release_shm}`` notice
    gets none. The message loop's own parsing (length prefixes on a pipe) is covered by
    tests/test_worker.py's garbage tests.
    """
    from tether.worker import COMPACT_MAGIC, NOTICES, decode

    request = _compact_crafted(data) if data[:4] == COMPACT_MAGIC else _crafted(data)
    reply = _worker().handle(request)
    if reply is None:
        notice = decode(request)
        if not (type(notice) is tuple and len(notice) == 1 and notice[0] in NOTICES):
            raise AssertionError(f"the worker did not answer {notice!r}: {data.hex()}")
        return
    if reply[:4] != request[:4] and request[:4] in (COMPACT_MAGIC, tether.frame.MAGIC):
        raise AssertionError(f"the worker answered in another form than {request[:4]!r}: {data.hex()}")
    value = decode(reply)
    echoed = type(value) is tuple and len(value) == 2 and value[0] == "echo"  # the benchmark's echo
    if not (echoed or type(value) is tuple and len(value) == 3 and value[0] == "reply"):
        raise AssertionError(f"the worker answered {value!r} to {data.hex()}")


_WORKERS: list[Any] = []


def _worker() -> Any:
    if not _WORKERS:
        from tether.worker import Worker

        handlers = types.ModuleType("fuzz_handlers")  # cheap handlers: the fuzzer must not find slow math
        handlers.echo = lambda *args: args
        handlers.fail = lambda *args: 1 / 0
        _WORKERS.append(Worker({"fuzz_handlers": handlers}))
    return _WORKERS[0]


TARGETS: dict[str, Callable[[bytes], None]] = {
    "etf_decode": etf_decode,
    "loads": loads,
    "inspect_verify": inspect_verify,
    "stream": stream,
    "worker": worker,
}


def seeds(name: str) -> list[bytes]:
    """Starting inputs for a target: the golden frames and streams (for etf_decode, their ETF payloads too)."""
    from .corrupter import seeds as golden

    files = list(golden().values())
    if name == "worker":
        from tether.worker import compact

        call = (tether.Atom("call"), 1, b"fuzz_handlers", b"echo", [{tether.Atom("k"): [1.5, b"v"]}], {})
        return files + [compact(call), compact((tether.Atom("echo"), [1, 2])), compact((tether.Atom("release_shm"),))]
    if name != "etf_decode":
        return files
    out = [b"\x00" + tether.etf.encode(v)[1:] for v in
           ([1, 2.5, b"x", "s", (tether.Atom("ok"), [])], {1: [2**70, -1]}, {(1, 2): {b"k": None}}, [[[[]]]])]
    for frame in files:
        try:
            info = tether.inspect(frame)
        except tether.TetherError:
            continue
        if info.format == "etf":
            out.append(b"\x00" + frame[info.payload_offset + 1 : info.frame_size])
    return out
