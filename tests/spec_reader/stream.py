"""Stream reading (docs/format.md §9) and compact messages (§8), from the spec alone."""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass
from typing import Any

import xxhash

from . import etf
from .formats import decode_payload
from .frame import FLAG_STREAM, HEADER_SIZE, SpecError, align64, parse_header, read_frame

_ID = re.compile(r"[0-9a-f]{32}\Z", re.IGNORECASE)


def chain(digest: int, seq: int, checksum: int) -> int:
    """§9: xxh3_64(pack("<QQQ", digest, seq, c)), seed 0."""
    return xxhash.xxh3_64_intdigest(struct.pack("<QQQ", digest, seq, checksum), seed=0)


@dataclass
class StreamResult:
    stream_id: str
    chunks: list
    digest: int
    end: dict


def split_frames(buf: bytes) -> list[bytes]:
    """Frames back to back: frame k starts where frame k-1 ends (align64(64 + M) + L)."""
    out, pos = [], 0
    while pos < len(buf):
        h = parse_header(buf[pos : pos + HEADER_SIZE])
        size = align64(HEADER_SIZE + h["metadata_length"]) + h["payload_length"]
        if pos + size > len(buf):
            raise SpecError("truncated", f"frame {len(out)} needs {size} bytes")
        out.append(buf[pos : pos + size])
        pos += size
    return out


def read_stream(buf: bytes) -> StreamResult:
    """Check every §9 rule and return the decoded chunks."""
    frames = split_frames(bytes(buf))
    if not frames:
        raise SpecError("empty")
    digest, seq, offset, sid, chunks = 0, 0, 0, None, []
    for k, raw in enumerate(frames):
        f = read_frame(raw)
        if not f.header["flags"] & FLAG_STREAM or "stream" not in f.meta:
            raise SpecError("not_a_chunk", f"frame {k}")
        if f.header["checksum_kind"] == 0:
            raise SpecError("no_checksum", f"frame {k}")
        s = f.meta["stream"]
        sid = s["id"] if sid is None else sid
        if s["id"] != sid or not _ID.match(s["id"]):
            raise SpecError("foreign_chunk", f"frame {k}: id {s['id']!r}")
        if s["seq"] != seq:
            why = "missing_chunk" if s["seq"] > seq else "out_of_order"
            raise SpecError(why, f"frame {k}: seq {s['seq']}, expected {seq}")
        if s["offset"] != offset:
            raise SpecError("bad_offset", f"frame {k}: offset {s['offset']}, expected {offset}")
        if s.get("end") is True:
            _check_end(f, s, k, len(frames), digest, seq, offset)
            return StreamResult(sid, chunks, digest, s)
        chunks.append(decode_payload(f))
        digest = chain(digest, seq, f.header["payload_checksum"])
        seq, offset = seq + 1, offset + f.header["raw_length"]
    raise SpecError("incomplete", f"no end frame after {seq} chunks")


def _check_end(f: Any, s: dict, k: int, n: int, digest: int, seq: int, offset: int) -> None:
    # The end frame is known by `end`; its value (a scalar None when written) is not checked.
    if (s.get("count"), s.get("bytes"), s.get("digest")) != (seq, offset, digest):
        raise SpecError("end_mismatch", f"end {s} against count {seq} bytes {offset} digest {digest}")
    if k != n - 1:
        raise SpecError("trailing_bytes", f"{n - 1 - k} frames after the end frame")


COMPACT_MAGIC = b"TTMC"
_COMPACT = struct.Struct("<4sI")


def read_compact(msg: bytes, binaries: str = "beam") -> Any:
    """§8 compact message: "TTMC", CRC-32 LE of bytes 8.., one ETF term; no bytes after it."""
    msg = bytes(msg)
    if len(msg) < _COMPACT.size + 1:
        raise SpecError("truncated", "compact message")
    magic, crc = _COMPACT.unpack_from(msg)
    if magic != COMPACT_MAGIC:
        raise SpecError("magic", repr(magic))
    if zlib.crc32(msg[_COMPACT.size :]) != crc:
        raise SpecError("compact_crc32")
    return etf.decode(msg[_COMPACT.size :], binaries=binaries)

