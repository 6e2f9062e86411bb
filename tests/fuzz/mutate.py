"""Mutations of tether frames and streams, as an OTP-style corrupter makes them.

Three passes over every seed:

* ``truncations``: the frame cut after every byte;
* ``flips``: every byte XORed with 0x01, 0x80 and 0xFF, checksums left alone
  (what a broken link does: a checksummed frame must refuse every one);
* ``crafted``: the same flips with every CRC and payload checksum recomputed
  afterwards, as any peer can (past the first 4 KiB of a frame, every third
  byte with one mask in turn, which keeps large payloads affordable), plus hostile header
  fields and hostile metadata values; these reach the decoders behind the
  checksums.

Only the header layout is known here (``FIELDS`` is restated, so a change on
the library side fails the corrupter loudly instead of silently mutating
the wrong bytes).
"""

from __future__ import annotations

import struct
import zlib
from typing import Any, Iterator

import xxhash

import tether

HEADER = struct.Struct("<4sHHHBBIIIQQQHbBB7xI")
HEADER_SIZE = 64
CRC_COVERS = 60
MASKS = (0x01, 0x80, 0xFF)
# Header fields a peer may set to anything (byte offset, struct code) and the values tried.
FIELD_AT = {"format_id": (8, "<H"), "compression_id": (10, "<B"), "checksum_kind": (11, "<B"),
            "flags": (12, "<I"), "metadata_length": (16, "<I"), "payload_length": (24, "<Q"),
            "raw_length": (32, "<Q"), "schema_version": (48, "<H"), "filter_id": (51, "<B"),
            "filter_size": (52, "<B")}
EDGES = (0, 1, 2, 3, 7, 8, 63, 64, 255, 256, 65535, 2**31 - 1, 2**32 - 1, 2**40, 2**63 - 1, 2**64 - 1)
HOSTILE = (
    -1, 0, 1, 2**31, 2**63, 2**64 + 5, -(2**63) - 1, 10**40, -(10**40), 1.5e308, 0.5, "", "x" * 300,
    "\u00ff", b"\xff\xfe", [], [[]], [-1], [2**40, 2**40], [0, -5], ["a", "b"], [1.5], {}, {"a": 1},
    None, True, (1, 2), tether.Atom("nil"), [[1, 2], [3]], "<f8", "|V0", "O", "<U2000000000",
)


def _payload_checksum(kind: int, data: bytes) -> int | None:
    if kind == 1:
        return xxhash.xxh3_64_intdigest(data)
    if kind == 2:
        return zlib.crc32(data)
    return None


def fix(buf: bytearray, off: int = 0) -> None:
    """Recompute the metadata CRC, the payload checksum and the header CRC of the frame at ``off``.

    Whatever the header now declares is believed; a part that the buffer
    does not hold keeps its stored checksum.
    """
    if len(buf) - off < HEADER_SIZE:
        return
    mlen, plen, kind = (struct.unpack_from("<I", buf, off + 16)[0], struct.unpack_from("<Q", buf, off + 24)[0],
                        buf[off + 11])
    mend = off + HEADER_SIZE + mlen
    if mend <= len(buf):
        struct.pack_into("<I", buf, off + 20, zlib.crc32(buf[off + HEADER_SIZE : mend]))
    start = off + ((HEADER_SIZE + mlen + 63) & ~63)
    if start + plen <= len(buf):
        value = _payload_checksum(kind, bytes(buf[start : start + plen]))
        if value is not None:
            struct.pack_into("<Q", buf, off + 40, value)
    struct.pack_into("<I", buf, off + CRC_COVERS, zlib.crc32(buf[off : off + CRC_COVERS]))


def frame_offsets(data: bytes) -> list[int]:
    """Where each frame of a stream (frames back to back) starts, as far as the headers say."""
    out, pos = [], 0
    while len(data) - pos >= HEADER_SIZE:
        out.append(pos)
        mlen, plen = struct.unpack_from("<I", data, pos + 16)[0], struct.unpack_from("<Q", data, pos + 24)[0]
        pos += ((HEADER_SIZE + mlen + 63) & ~63) + plen
    return out


def truncations(data: bytes) -> Iterator[bytes]:
    for cut in range(len(data)):
        yield data[:cut]


def flips(data: bytes) -> Iterator[bytes]:
    for pos in range(len(data)):
        for mask in MASKS:
            broken = bytearray(data)
            broken[pos] ^= mask
            yield bytes(broken)


# Past this many bytes into a frame (deep in a large payload), crafted flips hit every third byte,
# with one mask each, in turn: decoding a large payload per mutant is what costs.
EVERY_MASK = 4096
DEEP_STRIDE = 3


def crafted(data: bytes) -> Iterator[bytes]:
    """Flips with checksums recomputed (for the frame holding the byte), header fields, hostile metadata."""
    starts = frame_offsets(data) or [0]
    seen = {data}
    for pos in range(len(data)):
        off = max((s for s in starts if s <= pos), default=0)
        deep = pos - off >= EVERY_MASK
        if deep and (pos - off) % DEEP_STRIDE:
            continue
        for mask in (MASKS[pos // DEEP_STRIDE % len(MASKS)],) if deep else MASKS:
            broken = bytearray(data)
            broken[pos] ^= mask
            fix(broken, off)
            out = bytes(broken)
            if out not in seen:
                seen.add(out)
                yield out
    for off in starts:
        yield from _fields(data, off)
        yield from _metadata(data, off)


def _fields(data: bytes, off: int) -> Iterator[bytes]:
    for at, code in FIELD_AT.values():
        size = struct.calcsize(code)
        for value in EDGES:
            if value >= 1 << (8 * size):
                continue
            broken = bytearray(data)
            struct.pack_into(code, broken, off + at, value)
            fix(broken, off)
            yield bytes(broken)


def _paths(value: Any, path: tuple = (), depth: int = 0) -> Iterator[tuple]:
    yield path
    if depth >= 3:
        return
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, path + (key,), depth + 1)
    elif isinstance(value, list):
        for i, item in enumerate(value[:4]):
            yield from _paths(item, path + (i,), depth + 1)


def _replace(value: Any, path: tuple, new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        out = dict(value)
        out[head] = _replace(value[head], rest, new)
        return out
    out = list(value)
    out[head] = _replace(value[head], rest, new)
    return out


def rebuild(data: bytes, off: int, meta: bytes) -> bytes:
    """The frame at ``off`` with ``meta`` as its metadata block, checksums fixed."""
    (_, _, _, _, _, _, _, mlen, _, plen, *_rest) = HEADER.unpack_from(data, off)
    old_start = off + ((HEADER_SIZE + mlen + 63) & ~63)
    payload = data[old_start : old_start + plen]
    pad = (-(HEADER_SIZE + len(meta))) & 63
    head = bytearray(data[off : off + HEADER_SIZE])
    struct.pack_into("<I", head, 16, len(meta))
    frame = bytearray(head + meta + bytes(pad) + payload)
    fix(frame)
    return data[:off] + bytes(frame) + data[old_start + plen :]


def _metadata(data: bytes, off: int) -> Iterator[bytes]:
    try:
        (_, _, _, _, _, _, _, mlen, *_rest) = HEADER.unpack_from(data, off)
        meta = tether.etf.decode(data[off + HEADER_SIZE : off + HEADER_SIZE + mlen], binaries="tagged",
                                 structs=False)
    except (tether.TetherError, struct.error):
        return
    for path in list(_paths(meta))[1:]:
        for new in HOSTILE:
            try:
                yield rebuild(data, off, tether.etf.encode(_replace(meta, path, new)))
            except tether.TetherError:
                continue
        try:
            yield rebuild(data, off, tether.etf.encode(_delete(meta, path)))
        except (tether.TetherError, KeyError, IndexError, TypeError):
            continue


def _delete(value: Any, path: tuple) -> Any:
    if len(path) == 1:
        out = dict(value) if isinstance(value, dict) else list(value)
        del out[path[0]]
        return out
    out = dict(value) if isinstance(value, dict) else list(value)
    out[path[0]] = _delete(value[path[0]], path[1:])
    return out
