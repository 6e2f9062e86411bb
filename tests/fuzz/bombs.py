"""The bomb catalogue: inputs built to make a reader allocate far more than they hold.

Each bomb names the limits it runs under, the input it builds and the call
that reads it. ``python -m fuzz.bombs`` (run by ``tests/test_hardening.py``)
runs every one in this process, one after another: before each call it
resets the kernel's high-water mark of resident memory (``/proc/self/clear_refs``),
and afterwards it reports how the call ended and how far resident memory
(``VmHWM``) and address space (``VmPeak``) rose during it, as JSON.

The contract: every bomb ends in a :class:`tether.TetherError`, resident
memory rises by at most 2x the configured ``max_uncompressed_size`` + 16 MiB,
and no call reserves address space for what a header merely declares.
"""

from __future__ import annotations

import gc
import io
import json
import os
import struct
import sys
import time
import zlib
from typing import Any, Callable

import lz4.frame
import zstandard

import tether
from tether.stream import StreamReader

from . import mutate

GOLDEN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "golden")
MIB = 1 << 20
LIMIT = 8 * MIB  # the max_uncompressed_size every bomb below runs under, unless it says otherwise
REAL = 64 * MIB  # what the inflating bombs really expand to


def _zeros_stream(codec: str, size: int) -> bytes:
    """``size`` zero bytes compressed by ``codec``, built a MiB at a time."""
    chunk = bytes(MIB)
    if codec == "lz4":
        c = lz4.frame.LZ4FrameCompressor()
        return b"".join([c.begin()] + [c.compress(chunk) for _ in range(size // MIB)] + [c.flush()])
    if codec == "zstd":  # without a content size, as a peer may write it: only the tether header claims one
        co = zstandard.ZstdCompressor(level=3, write_content_size=False).compressobj()
        return b"".join([co.compress(chunk) for _ in range(size // MIB)] + [co.flush()])
    wbits = {"gzip": 31, "zlib": 15}[codec]
    co = zlib.compressobj(1, zlib.DEFLATED, wbits)
    return b"".join([co.compress(chunk) for _ in range(size // MIB)] + [co.flush()])


def _with_raw_length(frame: bytes, raw_length: int) -> bytes:
    """``frame`` with its header's raw_length set, every checksum recomputed (as any peer can)."""
    out = bytearray(frame)
    struct.pack_into("<Q", out, 32, raw_length)
    mutate.fix(out)
    return bytes(out)


def _compressed_frame(codec: str, stored: bytes, raw_length: int) -> bytes:
    """A raw frame whose payload is ``stored``, claiming ``codec`` compression and ``raw_length``."""
    template = tether.dumps(b"x" * 100_000, format="raw", compression=codec, checksum="crc32")
    mlen = struct.unpack_from("<I", template, 16)[0]
    start = (64 + mlen + 63) & ~63
    head = bytearray(template[:start])
    struct.pack_into("<QQ", head, 24, len(stored), raw_length)
    frame = bytearray(head + stored)
    mutate.fix(frame)
    return bytes(frame)


def _etf_frame(payload: bytes) -> bytes:
    """An etf frame (as the BEAM writes one) holding ``payload`` as its ETF bytes."""
    with open(os.path.join(GOLDEN, "beam", "etf_term.tthr"), "rb") as f:
        template = f.read()
    mlen = struct.unpack_from("<I", template, 16)[0]
    start = (64 + mlen + 63) & ~63
    head = bytearray(template[:start])
    struct.pack_into("<QQ", head, 24, len(payload), len(payload))
    frame = bytearray(head + payload)
    mutate.fix(frame)
    return bytes(frame)


def _tag80(body_size: int, declared: int) -> bytes:
    """A compressed ETF term (tag 80) whose body is a ``body_size``-byte binary, declaring ``declared`` bytes."""
    head = b"m" + (body_size - 5).to_bytes(4, "big")
    co = zlib.compressobj(1)
    parts = [co.compress(head)] + [co.compress(bytes(MIB)) for _ in range((body_size - 5) // MIB)]
    parts.append(co.compress(bytes((body_size - 5) % MIB)))
    return b"\x83P" + declared.to_bytes(4, "big") + b"".join(parts + [co.flush()])


class _Pipe(io.RawIOBase):
    """A pipe-like source: not seekable, and it ends after ``data``."""

    def __init__(self, data: bytes):
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        return self._data.readinto(b)


def _big_frame_header(size: int) -> bytes:
    """The first bytes of a frame that declares a ``size``-byte payload, then stop."""
    frame = bytearray(tether.dumps(b"abc", format="raw", checksum="crc32"))
    struct.pack_into("<QQ", frame, 24, size, size)
    mutate.fix(frame)
    return bytes(frame[:4096])


def _arrow_ipc_frame(codec: str, size: int) -> bytes:
    """An arrow frame whose one column is ``size`` bytes of zeros, compressed by Arrow inside the IPC stream.

    The frame header says "none": only the IPC stream's per-buffer length prefixes say what it expands to.
    """
    import numpy as np
    import pyarrow as pa

    return tether.dumps(pa.table({"z": np.zeros(size // 8)}), compression=codec)


def catalogue() -> list[tuple[str, dict[str, int], Callable[[], Callable[[], Any]]]]:
    """(name, limits, build): ``build()`` makes the input and returns the call that reads it."""
    bombs: list = [
        # Issue 14 B: a 10,000-byte lz4 payload whose header claims 4 GiB - 1.
        ("lz4 header claims 4 GiB", {},
         lambda: (lambda f=_with_raw_length(tether.dumps(b"a" * 10000, compression="lz4"), 2**32 - 1):
                  tether.loads(f))),
        # Issue 14 F (Python side): a gzip payload declaring 2**40 bytes.
        ("gzip header claims 2**40", {},
         lambda: (lambda f=_compressed_frame("gzip", _zeros_stream("gzip", MIB), 2**40): tether.loads(f))),
        ("etf tag 80 claims 4 GiB", {"max_uncompressed_size": LIMIT},
         lambda: (lambda d=_tag80(MIB, 2**32 - 1): tether.etf.decode(d))),
        ("etf tag 80 inflates past its claim", {"max_uncompressed_size": LIMIT},
         lambda: (lambda d=_tag80(REAL, LIMIT): tether.etf.decode(d))),
        ("etf frame, tag 80 inflates past its claim", {"max_uncompressed_size": LIMIT},
         lambda: (lambda f=_etf_frame(_tag80(REAL, LIMIT)): tether.loads(f))),
        ("etf list claims 2**32 elements", {}, lambda: (lambda: tether.etf.decode(b"\x83l\xff\xff\xff\xff"))),
        ("etf binary claims 4 GiB", {}, lambda: (lambda: tether.etf.decode(b"\x83m\xff\xff\xff\xffab"))),
        ("etf big integer claims 4 GiB", {}, lambda: (lambda: tether.etf.decode(b"\x83o\xff\xff\xff\xff\x00"))),
        ("etf map claims 2**31 pairs", {}, lambda: (lambda: tether.etf.decode(b"\x83t\x7f\xff\xff\xff"))),
        ("frame claims a 512 GiB payload", {},
         lambda: (lambda f=_big_frame_header(1 << 39): tether.loads(f))),
        ("stream from a pipe, a frame claims 512 GiB", {},
         lambda: (lambda f=_big_frame_header(1 << 39): list(StreamReader(_Pipe(f))))),
    ]
    for codec in ("lz4", "zstd", "gzip"):
        bombs.append((f"{codec} inflates past its claim", {"max_uncompressed_size": LIMIT},
                      lambda codec=codec: (lambda f=_compressed_frame(codec, _zeros_stream(codec, REAL), LIMIT):
                                           tether.loads(f))))
        bombs.append((f"{codec} claims more than the limit", {"max_uncompressed_size": LIMIT},
                      lambda codec=codec: (lambda f=_compressed_frame(codec, _zeros_stream(codec, REAL), REAL):
                                           tether.loads(f))))
    # Trial 18 C: a 13,048-byte frame loaded as a 400 MB table under a 1 MiB limit.
    for codec in ("lz4", "zstd"):
        bombs.append((f"arrow IPC {codec} inflates past the limit", {"max_uncompressed_size": LIMIT},
                      lambda codec=codec: (lambda f=_arrow_ipc_frame(codec, REAL): tether.loads(f))))
    return bombs


def _status() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "VmPeak", "VmSize"):
                out[key] = int(value.split()[0]) * 1024
    return out


def run_one(name: str, limits: dict[str, int], build: Callable[[], Callable[[], Any]]) -> dict[str, Any]:
    tether.set_limits(tether.Limits(**limits))
    call = build()
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current resident size
    before = _status()
    started = time.perf_counter()
    try:
        call()
        outcome = "no error"
    except tether.TetherError as exc:
        outcome = type(exc).__name__
    except BaseException as exc:  # the finding
        outcome = f"untyped {type(exc).__name__}: {exc}"
    after = _status()
    tether.set_limits(tether.Limits())
    return {"name": name, "outcome": outcome, "limit": tether.Limits(**limits).max_uncompressed_size,
            "rss_rise": after["VmHWM"] - before["VmRSS"], "vm_rise": after["VmPeak"] - before["VmPeak"],
            "seconds": round(time.perf_counter() - started, 3)}


def main() -> int:
    json.dump([run_one(*bomb) for bomb in catalogue()], sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
