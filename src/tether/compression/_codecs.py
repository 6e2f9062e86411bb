"""The built-in compressors: lz4 (frame format), zstd and gzip, from their own libraries."""

from __future__ import annotations

import zlib
from typing import Any, Sequence

import lz4.frame
import zstandard

from .._errors import DecodeError, LimitError
from .._limits import Limits
from .._buffers import Segment
from ._base import Compressor


def _chunks(segments: Sequence[Any]) -> Any:
    """Yield the payload as buffers; writer segments are materialised one at a time."""
    for seg in segments:
        if isinstance(seg, Segment):
            tmp = bytearray(seg.nbytes)
            seg.write(memoryview(tmp))
            yield memoryview(tmp)
        else:
            yield seg


# Large payloads compress in chunks of this many input bytes: each output
# chunk is small and still in cache when the frame copies it, and the whole
# compressed stream never exists as one fresh buffer.
CHUNK = 1 << 20


def _input_chunks(segments: Sequence[Any]) -> Any:
    for buf in _chunks(segments):
        view = memoryview(buf).cast("B")
        for pos in range(0, len(view), CHUNK):
            yield view[pos : pos + CHUNK]


def _bounded(raw_length: int, limits: Limits, name: str, frame_id: str) -> None:
    if raw_length > limits.max_uncompressed_size:
        raise LimitError(
            f"{frame_id}: {name} payload declares {raw_length} uncompressed bytes, over the limit of "
            f"{limits.max_uncompressed_size} (Limits.max_uncompressed_size)."
        )


def _check_size(out: Any, raw_length: int, name: str, frame_id: str) -> None:
    if len(out) != raw_length:
        raise DecodeError(
            f"{frame_id}: {name} payload inflates to {len(out)} bytes, the header declares {raw_length}. "
            "The frame is corrupted."
        )


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
        if raw_length <= CHUNK and len(segments) == 1 and not isinstance(segments[0], Segment):
            out = lz4.frame.compress(segments[0], compression_level=level, store_size=True)
            return [out] if len(out) < raw_length else None
        c = lz4.frame.LZ4FrameCompressor(compression_level=level, content_checksum=False)
        parts = [c.begin(source_size=raw_length)]
        size = len(parts[0])
        for chunk in _input_chunks(segments):
            part = c.compress(chunk)
            size += len(part)
            if size >= raw_length:
                return None  # already no smaller: stop early
            parts.append(part)
        parts.append(c.flush())
        return parts if size + len(parts[-1]) < raw_length else None

    def decompress(self, data: memoryview, raw_length: int, limits: Limits, **context: Any) -> Any:
        frame_id = context.get("frame_id", "frame")
        _bounded(raw_length, limits, self.name, frame_id)
        d = lz4.frame.LZ4FrameDecompressor()
        try:
            # max_length bounds the output: a bomb stops at the declared size.
            out = d.decompress(data, max_length=raw_length)
        except RuntimeError as exc:
            raise DecodeError(f"{frame_id}: lz4 payload is corrupted: {exc}") from exc
        if not d.eof or d.unused_data:
            raise DecodeError(
                f"{frame_id}: lz4 payload does not end where the header says "
                f"({'more output than declared' if not d.eof else 'trailing bytes'}). The frame is corrupted."
            )
        _check_size(out, raw_length, self.name, frame_id)
        return memoryview(out)


class ZstdCompressor(Compressor):
    id = 2
    name = "zstd"
    default_level = 3
    levels = range(-7, 23)

    def compress(self, segments: Sequence[Any], raw_length: int, level: int, **context: Any) -> list[bytes] | None:
        c = zstandard.ZstdCompressor(level=level, write_content_size=True)
        if raw_length <= CHUNK and len(segments) == 1 and not isinstance(segments[0], Segment):
            out = c.compress(segments[0])
            return [out] if len(out) < raw_length else None
        co = c.compressobj(size=raw_length)
        parts = [co.compress(chunk) for chunk in _input_chunks(segments)]
        parts.append(co.flush())
        return parts if sum(map(len, parts)) < raw_length else None

    def decompress(self, data: memoryview, raw_length: int, limits: Limits, **context: Any) -> Any:
        frame_id = context.get("frame_id", "frame")
        _bounded(raw_length, limits, self.name, frame_id)
        try:
            declared = zstandard.frame_content_size(data)
        except zstandard.ZstdError as exc:
            raise DecodeError(f"{frame_id}: zstd payload has no valid frame header: {exc}") from exc
        if declared >= 0 and declared != raw_length:
            raise DecodeError(
                f"{frame_id}: zstd frame declares {declared} bytes, the tether header {raw_length}. "
                "The frame is corrupted."
            )
        try:
            out = zstandard.ZstdDecompressor().decompress(data, max_output_size=raw_length)
        except zstandard.ZstdError as exc:
            raise DecodeError(f"{frame_id}: zstd payload is corrupted: {exc}") from exc
        _check_size(out, raw_length, self.name, frame_id)
        return memoryview(out)


class GzipCompressor(Compressor):
    id = 3
    name = "gzip"
    default_level = 6
    levels = range(0, 10)

    def compress(self, segments: Sequence[Any], raw_length: int, level: int, **context: Any) -> list[bytes] | None:
        c = zlib.compressobj(level, zlib.DEFLATED, 31)
        parts = [c.compress(chunk) for chunk in _input_chunks(segments)]
        parts.append(c.flush())
        return parts if sum(map(len, parts)) < raw_length else None

    def decompress(self, data: memoryview, raw_length: int, limits: Limits, **context: Any) -> Any:
        frame_id = context.get("frame_id", "frame")
        _bounded(raw_length, limits, self.name, frame_id)
        d = zlib.decompressobj(31)
        try:
            out = d.decompress(data, raw_length)
        except zlib.error as exc:
            raise DecodeError(f"{frame_id}: gzip payload is corrupted: {exc}") from exc
        if not d.eof or d.unused_data or d.unconsumed_tail:
            raise DecodeError(
                f"{frame_id}: gzip payload does not end where the header says "
                f"({'more output than declared, or incomplete' if not d.eof else 'trailing bytes'}). "
                "The frame is corrupted."
            )
        _check_size(out, raw_length, self.name, frame_id)
        return memoryview(out)
