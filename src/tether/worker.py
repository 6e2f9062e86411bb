"""The Python worker that BEAM drives: ``python -m tether.worker --module my_handlers``.

BEAM starts it as a port with ``{packet, 4}`` and ``binary``; every message is
a tether frame. The worker calls only the public functions of the modules it
was started with (an explicit allow-list).

Requests (etf frames, from BEAM)::

    {call, Id, Module, Function, Args}              Args: a list of terms
    {call, Id, Module, Function, {shm, Path, Len}}  Args: an etf frame in Path[0:Len]

Replies (frames, to BEAM)::

    {reply, Id, {ok, Value}}                       Value as an ETF term
    {reply, Id, {ok_frame, Frame}}                 Value in its own frame (tensor, Arrow, ...)
    {reply, Id, {ok_shm, Path, Offset, Len}}       that frame in a shared-memory region
    {reply, Id, {error, {python, Type, Message, Traceback}}}
    {reply, Id, {error, {undefined_function, Module, Function}}}

Arguments that are binaries holding a tether frame (``Tether.tensor/3``) arrive
decoded, e.g. as NumPy arrays. Arguments passed through shared memory are
valid during the call: copy what you keep. Handlers' ``print`` goes to stderr,
because stdout carries the protocol.
"""

from __future__ import annotations

import argparse
import importlib
import mmap
import os
import sys
import traceback
from types import ModuleType
from typing import Any

import tether
from tether import Atom, TetherError, frame
from tether._buffers import new_bytes, to_bytes
from tether.shm import RegionPool

# Values whose frame is larger than this travel through shared memory.
SHM_THRESHOLD = 1 << 20
_REPLY, _OK, _OK_FRAME, _OK_SHM, _ERROR = (Atom(a) for a in ("reply", "ok", "ok_frame", "ok_shm", "error"))


class Worker:
    """Dispatches framed calls to an allow-list of modules."""

    def __init__(self, modules: dict[str, ModuleType], *, shm_threshold: int = SHM_THRESHOLD, binaries: str = "bytes"):
        self.modules = modules
        self.shm_threshold = shm_threshold
        self.binaries = binaries
        # "str": Elixir binaries that are valid UTF-8 arrive as str, the rest as bytes
        # (the decoder's lenient "tagged" mode, applied while decoding).
        self._decode_options = {"binaries": "tagged" if binaries == "str" else "bytes"}
        self.pool = RegionPool(max_regions=2, prefault=False, sweep=True)
        self.region = None

    def handle(self, frame: bytes) -> bytes:
        request = tether.loads(frame, options=self._decode_options)
        if not (isinstance(request, tuple) and len(request) == 5 and request[0] == "call"):
            raise TetherError(f"Expected {{call, Id, Module, Function, Args}}, got {request!r:.200}")
        _, ident, mod, fun, args = request
        mod_name = mod.decode() if isinstance(mod, bytes) else str(mod)
        fun_name = fun.decode() if isinstance(fun, bytes) else str(fun)
        target = self._lookup(mod_name, fun_name)
        if target is None:
            return self._envelope(ident, (_ERROR, (Atom("undefined_function"), mod_name, fun_name)))
        try:
            result = target(*self._args(args))
        except Exception as exc:
            tb = traceback.format_exc()
            return self._envelope(ident, (_ERROR, (Atom("python"), type(exc).__name__, str(exc), tb)))
        return self._result(ident, result)

    def _lookup(self, mod: str, fun: str) -> Any:
        module = self.modules.get(mod)
        if module is None or fun.startswith("_"):
            return None
        target = getattr(module, fun, None)
        return target if callable(target) else None

    def _args(self, args: Any) -> list:
        if isinstance(args, tuple) and len(args) == 3 and args[0] == "shm":
            _, path, length = args
            args = self._read_shm(path.decode() if isinstance(path, bytes) else path, length)
        if not isinstance(args, list):
            raise TetherError(f"Args must be a list, got {type(args).__name__}.")
        out = []
        for arg in args:
            if isinstance(arg, (bytes, memoryview)) and bytes(arg[:4]) == frame.MAGIC:
                try:
                    arg = tether.loads(arg, options=self._decode_options)
                except TetherError:
                    pass
            out.append(arg)
        return out

    def _read_shm(self, path: str, length: int) -> Any:
        if not os.path.basename(path).startswith("tether-"):
            raise TetherError(f"Refusing to read {path}: shared-memory args must be tether- files.")
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            if os.fstat(fd).st_size < length:
                raise TetherError(f"{path} holds fewer than the {length} bytes announced.")
            mm = mmap.mmap(fd, length, access=mmap.ACCESS_READ)
        finally:
            os.close(fd)
        return tether.loads(memoryview(mm)[:length], options=self._decode_options)

    def _result(self, ident: int, result: Any) -> bytes:
        if isinstance(result, (dict, list, tuple, str, int, float, bool, type(None))):
            # Most results are small terms: one encode, straight into the reply.
            try:
                reply = self._envelope(ident, (_OK, result))
            except tether.EncodeError:
                pass
            else:
                if len(reply) <= self.shm_threshold:
                    return reply
        # Preparing a frame copies nothing for raw, ndarray and Arrow values,
        # so the size decides the route before any data moves.
        enc = tether.encode(result, checksum=False, transport="shm")
        if enc.decision.format == "pickle":
            try:  # BEAM cannot read pickle: etf, with struct mappings, may still hold it
                enc = tether.encode(result, format="etf", checksum=False, transport="shm")
            except tether.EncodeError:
                pass
        if enc.decision.format == "pickle":
            return self._envelope(ident, (_ERROR, (Atom("python"), "TypeError",
                                  f"a {type(result).__qualname__} result cannot be sent to BEAM; return "
                                  "lists, dicts, tuples, numbers, strings, bytes, arrays or tables", "")))
        if enc.nbytes <= self.shm_threshold:
            if enc.decision.format in ("etf", "scalar"):
                return self._envelope(ident, (_OK, result))
            # Inline frames carry CRC-32, which BEAM verifies natively.
            return self._envelope(ident, (_OK_FRAME, tether.dumps(result, checksum="crc32", transport="shm")))
        # Through shared memory the region's commit protocol guards the frame.
        if self.region is None or self.region.capacity < enc.nbytes + 8192:
            if self.region is not None:
                self.pool.release(self.region)
            self.region = self.pool.acquire(enc.nbytes)
        self.region.reset()  # BEAM read the previous result before sending this call
        slot, offset, view = self.region.reserve(enc.nbytes)
        enc.write_into(view)
        view.release()
        self.region.commit(slot)
        return self._envelope(ident, (_OK_SHM, self.region.path, offset, enc.nbytes))

    @staticmethod
    def _envelope(ident: int, payload: Any) -> bytes:
        return tether.dumps((_REPLY, ident, payload), format="etf", checksum="crc32")

    def close(self) -> None:
        if self.region is not None:
            self.region.close()
            self.region.unlink()
        self.pool.close()


class _Channel:
    """The port's pipes as raw file descriptors: few reads per message, one writev per reply."""

    def __init__(self, fd_in: int, fd_out: int):
        self.fd_in = fd_in
        self.fd_out = fd_out
        self.buf = bytearray()

    def _fill(self) -> bool:
        chunk = os.read(self.fd_in, 1 << 16)
        if not chunk:
            return False
        self.buf += chunk
        return True

    def read_message(self) -> bytes | None:
        """The next {packet, 4} message, or None when BEAM closed the port."""
        while len(self.buf) < 4:
            if not self._fill():
                return None
        n = int.from_bytes(self.buf[:4], "big")
        limit = tether.get_limits().max_frame_size
        if n > limit:
            raise tether.LimitError(
                f"BEAM sent a {n}-byte message, over Limits.max_frame_size ({limit}); large arguments "
                "belong in shared memory (the BEAM client does this above shm_threshold)."
            )
        have = len(self.buf) - 4
        if have < n and n > (1 << 16):
            # A large message: read the rest straight into the bytes object it becomes.
            out, view = new_bytes(n)
            view[:have] = self.buf[4:]
            self.buf.clear()
            try:
                while have < n:
                    got = os.readv(self.fd_in, [view[have:]])
                    if got == 0:
                        return None
                    have += got
            finally:
                view.release()
            return to_bytes(out)
        while len(self.buf) - 4 < n:
            if not self._fill():
                return None
        msg = bytes(self.buf[4 : 4 + n])
        del self.buf[: 4 + n]
        return msg

    def write_message(self, payload: bytes) -> None:
        data = [len(payload).to_bytes(4, "big"), payload]
        sent = os.writev(self.fd_out, data)
        if sent < len(payload) + 4:  # interrupted part way: finish the rest
            rest = memoryview(b"".join(data))[sent:]
            while rest:
                rest = rest[os.write(self.fd_out, rest):]


def serve(worker: Worker, channel: _Channel) -> None:
    """Answer framed calls until the input closes."""
    while True:
        try:
            frame = channel.read_message()
        except TetherError as exc:  # the stream is out of step: nothing after it can be trusted
            print(f"tether.worker: {exc}", file=sys.stderr)
            return
        if frame is None:
            return
        if frame[:4] == b"PING":  # the benchmark's minimal {packet, 4} echo baseline
            channel.write_message(frame)
            continue
        try:
            reply = worker.handle(frame)
        except TetherError as exc:
            reply = tether.dumps((_REPLY, -1, (_ERROR, (Atom("bad_request"), str(exc)))), format="etf", checksum="crc32")
        channel.write_message(reply)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tether.worker", description=__doc__.split("\n\n")[0])
    parser.add_argument("--module", action="append", required=True, help="module whose public functions BEAM may call")
    parser.add_argument("--shm-threshold", type=int, default=SHM_THRESHOLD)
    parser.add_argument("--binaries", choices=("bytes", "str"), default="bytes",
                        help="how Elixir binaries arrive in handler arguments")
    args = parser.parse_args(argv)
    # stdout carries the protocol: keep a private descriptor for it and send
    # everything else printed to stderr.
    out = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    modules = {name: importlib.import_module(name) for name in args.module}
    worker = Worker(modules, shm_threshold=args.shm_threshold, binaries=args.binaries)
    try:
        serve(worker, _Channel(0, out))
    finally:
        worker.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
