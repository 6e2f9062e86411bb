"""The built-in compressors: lz4 (frame format), zstd and gzip, from their own libraries."""

from __future__ import annotations

import os
import threading
import zlib
from typing import Any, Callable, Iterator, Sequence

import lz4.frame
import zstandard

from .._bounded import STEP, bounded, check_declared, stream_end, zlib_steps
from .._errors import DecodeError
from .._limits import Limits
from .._buffers import Segment
from ..memory import Chunked, compression_chunk, note_temporary
from ._base import Compressor


def _chunks(segments: Sequence[Any], chunk: int) -> Any:
    """Yield the payload as buffers; a Chunked writer piece by piece, other writers whole, one at a time."""
    for seg in segments:
        if isinstance(seg, Chunked):
            yield from seg.pieces(chunk)  # the whole payload never exists at once
        elif isinstance(seg, Segment):
            tmp = bytearray(seg.nbytes)
            seg.write(memoryview(tmp))
            yield memoryview(tmp)
        else:
            yield seg


# zlib's window bits for a gzip wrapper: the largest window (15) + 16.
GZIP_WBITS = 31

# Large payloads compress in chunks of this many input bytes: each output
# chunk is small and still in cache when the frame copies it, and the whole
# compressed stream never exists as one fresh buffer.
CHUNK = 1 << 20


# zstd compresses a payload of this many bytes or more on its own worker threads,
# at most ZSTD_THREADS_MAX of them and one per CPU this process may run on. On the
# 2-core host of 2026-11-26, 64 MiB of text-like bytes at level 3 took 88 ms on
# one thread and 53 ms on two (lz4: 79 ms); the workers' buffers came to 49-67 MiB
# by zstd's count, and the peak RSS rose 33-42 MiB more. On one CPU a worker
# thread only slows it (135 against 87 ms), so none is started. zstd writes the
# same stream for any number of worker threads, however the input is cut, but
# another one without any: the values read back the same, the bytes differ
# between a threaded and an unthreaded run.
ZSTD_THREADS_MIN = 8 << 20
ZSTD_THREADS_MAX = 4
# 88 / 53 ms above. Only two threads were measured: more are counted as two, so the automatic
# choice may underrate zstd on a larger host, never overrate it.
ZSTD_THREADS_GAIN = 1.66


def zstd_threads(raw_length: int, chunk: int = CHUNK) -> int:
    """zstd worker threads for a ``raw_length``-byte payload read ``chunk`` bytes at a time (0: compress inline).

    Parameters
    ----------
    raw_length : int
        The payload's size; below :data:`ZSTD_THREADS_MIN`, none.
    chunk : int
        The input's piece size. A smaller one than :data:`CHUNK` means memory
        pressure: the workers' jobs hold several MiB each, in and out, so then none.

    Returns
    -------
    int
        One per CPU this process may run on, at most :data:`ZSTD_THREADS_MAX`; 0 on one CPU.

    Examples
    --------
    >>> zstd_threads(1 << 20), zstd_threads(64 << 20, chunk=1 << 16)
    (0, 0)
    >>> zstd_threads(64 << 20) in (0, *range(2, ZSTD_THREADS_MAX + 1))  # 0 on a single CPU
    True
    """
    if raw_length < ZSTD_THREADS_MIN or chunk < CHUNK:
        return 0
    try:
        cpus = len(os.sched_getaffinity(0))  # a pinned worker may run on fewer than the host has
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return min(cpus, ZSTD_THREADS_MAX) if cpus > 1 else 0


def _input_chunks(segments: Sequence[Any], chunk: int = CHUNK) -> Any:
    for buf in _chunks(segments, chunk):
        view = memoryview(buf).cast("B")
        for pos in range(0, len(view), chunk):
            yield view[pos : pos + chunk]


def lz4_steps(data: Any) -> Callable[[int], bytes]:
    """The steps of :func:`bounded` over one LZ4 frame; trailing bytes fail the last step.

    Examples
    --------
    >>> bytes(bounded(lz4_steps(lz4.frame.compress(b"abc" * 3)), 9, "example"))
    b'abcabcabc'
    """
    d = lz4.frame.LZ4FrameDecompressor()
    src = [data]

    def step(n: int) -> bytes:
        if d.eof:
            return stream_end(d, "the lz4 frame")
        out = d.decompress(src[0], max_length=n)
        src[0] = b""  # the decompressor keeps what it has not consumed
        return out

    return step


def zstd_steps(data: Any) -> Callable[[int], bytes]:
    """The steps of :func:`bounded` over one Zstandard frame; bytes after it are read as a frame, and fail.

    Examples
    --------
    >>> bytes(bounded(zstd_steps(zstandard.ZstdCompressor().compress(b"xyz")), 3, "example"))
    b'xyz'
    """
    return zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True).read


def _once(data: Any, raw_length: int) -> Callable[[int], bytes]:
    """One zstd step that decompresses the whole (small) frame, then reports its end."""
    done = [False]

    def step(n: int) -> bytes:
        if done[0]:
            return b""
        done[0] = True
        end = _zstd_frame_end(data)
        if end != len(data):
            raise DecodeError(f"the zstd frame is {end} bytes long, the payload {len(data)}")
        # max_output_size bounds frames without a content size; ours always declare it
        return zstandard.ZstdDecompressor().decompress(data, max_output_size=raw_length)

    return step


# A zstd block header: 3 bytes, little-endian: last-block bit, 2 type bits, 21 size bits (RFC 8878 3.1.1.2).
_ZSTD_BLOCK_RLE = 1
_ZSTD_CHECKSUM_SIZE = 4


def _zstd_frame_end(data: Any) -> int:
    """Where the zstd frame at the start of ``data`` ends (past the input when it is cut short)."""
    pos = zstandard.frame_header_size(data)
    while pos + 3 <= len(data):
        head = int.from_bytes(data[pos : pos + 3], "little")
        pos += 3 + (1 if (head >> 1) & 3 == _ZSTD_BLOCK_RLE else head >> 3)
        if head & 1:
            return pos + (_ZSTD_CHECKSUM_SIZE if zstandard.get_frame_parameters(data).has_checksum else 0)
    return len(data) + 1


class NoCompressor(Compressor):
    id = 0
    name = "none"

    def compress(self, segments: Sequence[Any], raw_length: int, level: int, **context: Any) -> list[bytes] | None:
        return None

    def decompress(self, data: memoryview, raw_length: int, limits: Limits, **context: Any) -> Any:
        return data


class Lz4Compressor(Compressor):
    id = 1
    name = "lz4"
    default_level = 0
    levels = range(0, 17)

    def compress(self, segments: Sequence[Any], raw_length: int, level: int, **context: Any) -> list[bytes] | None:
        own = bool(context.get("own_checksum"))  # the frame carries no checksum: lz4's content checksum instead
        if raw_length <= CHUNK and len(segments) == 1 and not isinstance(segments[0], Segment):
            out = lz4.frame.compress(segments[0], compression_level=level, store_size=True, content_checksum=own)
            return [out] if len(out) < raw_length else None
        parts, size = [], 0
        for part in self.pieces(segments, raw_length, level, own_checksum=own):
            size += len(part)
            if size >= raw_length:
                return None  # already no smaller: stop early
            parts.append(part)
        return parts

    def pieces(self, segments: Sequence[Any], raw_length: int, level: int, chunk: int = CHUNK,
               own_checksum: bool = False) -> Iterator[bytes]:
        """The compressed stream piece by piece, from input read ``chunk`` bytes at a time; with
        ``own_checksum`` (a frame without a payload checksum), lz4's content checksum at its end."""
        c = lz4.frame.LZ4FrameCompressor(compression_level=level, content_checksum=own_checksum)
        yield c.begin(source_size=raw_length)
        for piece in _input_chunks(segments, chunk):
            yield c.compress(piece)
        yield c.flush()

    def decompress(self, data: memoryview, raw_length: int, limits: Limits, **context: Any) -> Any:
        what = f"{context.get('frame_id', 'frame')}: lz4 payload"
        check_declared(raw_length, limits, what)
        return bounded(lz4_steps(data), raw_length, what)


# One-shot zstd contexts kept per thread for these levels (the default, and auto's candidates, which
# compress three 16 KiB samples per level on every choice): setting one up cost 15-25 µs here, as much as
# compressing a 16 KiB sample. Other levels' contexts are not kept: one holds a few MiB once it has
# compressed a 1 MiB input.
ZSTD_KEPT_LEVELS = (1, 3)
_zstd_local = threading.local()  # zstandard compressors must not be shared between threads


def _zstd_one_shot(level: int, own_checksum: bool = False) -> Any:
    """This thread's compressor for whole inputs at ``level`` (a new one for a level not kept), writing zstd's
    own checksum when the frame carries none."""
    if level not in ZSTD_KEPT_LEVELS:
        return zstandard.ZstdCompressor(level=level, write_content_size=True, write_checksum=own_checksum)
    kept = getattr(_zstd_local, "by_level", None)
    if kept is None:
        kept = _zstd_local.by_level = {}
    c = kept.get((level, own_checksum))
    if c is None:
        c = kept[(level, own_checksum)] = zstandard.ZstdCompressor(level=level, write_content_size=True,
                                                                   write_checksum=own_checksum)
    return c


class ZstdCompressor(Compressor):
    id = 2
    name = "zstd"
    default_level = 3
    levels = range(-7, 23)

    def compress(self, segments: Sequence[Any], raw_length: int, level: int, **context: Any) -> list[bytes] | None:
        own = bool(context.get("own_checksum"))  # the frame carries no checksum: zstd's own instead
        if raw_length <= CHUNK and len(segments) == 1 and not isinstance(segments[0], Segment):
            out = _zstd_one_shot(level, own).compress(segments[0])
            return [out] if len(out) < raw_length else None
        parts = list(self.pieces(segments, raw_length, level, own_checksum=own))
        return parts if sum(map(len, parts)) < raw_length else None

    def speedup(self, raw_length: int) -> float:
        """:data:`ZSTD_THREADS_GAIN` when the payload goes to worker threads now (:func:`zstd_threads`), else 1."""
        return ZSTD_THREADS_GAIN if zstd_threads(raw_length, compression_chunk(CHUNK)) > 1 else 1.0

    def pieces(self, segments: Sequence[Any], raw_length: int, level: int, chunk: int = CHUNK,
               own_checksum: bool = False) -> Iterator[bytes]:
        """The compressed stream piece by piece, from input read ``chunk`` bytes at a time; with
        ``own_checksum``, zstd's checksum at its end."""
        threads = zstd_threads(raw_length, chunk)
        compressor = zstandard.ZstdCompressor(level=level, write_content_size=True, threads=threads,
                                              write_checksum=own_checksum)
        co = compressor.compressobj(size=raw_length)
        for piece in _input_chunks(segments, chunk):
            yield co.compress(piece)
        yield co.flush()
        if threads:  # the workers' buffers, for tether.memory.stats(): 49-67 MiB for 64 MiB
            note_temporary("zstd workers", compressor.memory_size())

    def decompress(self, data: memoryview, raw_length: int, limits: Limits, **context: Any) -> Any:
        what = f"{context.get('frame_id', 'frame')}: zstd payload"
        check_declared(raw_length, limits, what)
        try:
            declared = zstandard.frame_content_size(data)
        except zstandard.ZstdError as exc:
            raise DecodeError(f"{what} has no valid frame header: {exc}") from exc
        if declared >= 0 and declared != raw_length:
            raise DecodeError(
                f"{what}: the zstd frame declares {declared} bytes, the tether header {raw_length}. "
                "The frame is corrupted."
            )
        if raw_length < STEP:
            # Small enough for one step: zstd's one-shot call, which skips the streaming
            # window (3x faster on small frames), with the same bound as a step.
            return bounded(_once(data, raw_length), raw_length, what)
        return bounded(zstd_steps(data), raw_length, what)


class GzipCompressor(Compressor):
    id = 3
    name = "gzip"
    default_level = 6
    levels = range(0, 10)

    def compress(self, segments: Sequence[Any], raw_length: int, level: int, **context: Any) -> list[bytes] | None:
        parts = list(self.pieces(segments, raw_length, level))
        return parts if sum(map(len, parts)) < raw_length else None

    def pieces(self, segments: Sequence[Any], raw_length: int, level: int, chunk: int = CHUNK,
               own_checksum: bool = False) -> Iterator[bytes]:
        """The compressed stream piece by piece, from input read ``chunk`` bytes at a time (gzip's CRC-32 is
        always there: ``own_checksum`` asks for nothing more)."""
        c = zlib.compressobj(level, zlib.DEFLATED, GZIP_WBITS)
        for piece in _input_chunks(segments, chunk):
            yield c.compress(piece)
        yield c.flush()

    def decompress(self, data: memoryview, raw_length: int, limits: Limits, **context: Any) -> Any:
        what = f"{context.get('frame_id', 'frame')}: gzip payload"
        check_declared(raw_length, limits, what)
        return bounded(zlib_steps(data, GZIP_WBITS, what), raw_length, what)
