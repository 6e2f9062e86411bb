"""The fixed 64-byte frame header (frame version 1). See docs/format.md."""

from __future__ import annotations

import struct
from typing import NamedTuple

from .._errors import ChecksumError, DecodeError, LimitError, TruncatedError, UnsupportedVersionError
from .._limits import Limits
from ._checksum import NAMES as CHECKSUM_NAMES, crc32_native

MAGIC = b"TTHR"
FRAME_VERSION = 1
HEADER_SIZE = 64
ALIGN = 64

# Payload filters (header field filter_id): applied before compression.
FILTER_NONE = 0
FILTER_SHUFFLE = 1  # byte-shuffle, in elements of filter_size bytes
FILTER_NAMES = {FILTER_NONE: "none", FILTER_SHUFFLE: "byte-shuffle"}
# The element sizes (filter_size) a byte-shuffle may use; writers and readers keep to these alone.
SHUFFLE_SIZES = (2, 4, 8, 16)

# Flags: the low 16 bits must be understood by a reader; the high 16 may be ignored.
FLAG_STREAM_CHUNK = 1 << 0
KNOWN_REQUIRED_FLAGS = FLAG_STREAM_CHUNK
REQUIRED_FLAG_MASK = 0xFFFF

# The header, field by field (little-endian struct codes). This table is the
# one definition of the layout in Python: the structs below are built from it,
# and tests compare it with beam/include/tether.hrl.
FIELDS = (
    ("magic", "4s"),
    ("version", "H"),
    ("header_size", "H"),
    ("format_id", "H"),
    ("compression_id", "B"),
    ("checksum_kind", "B"),
    ("flags", "I"),
    ("metadata_length", "I"),
    ("metadata_crc32", "I"),
    ("payload_length", "Q"),
    ("raw_length", "Q"),
    ("payload_checksum", "Q"),
    ("schema_version", "H"),
    ("compression_level", "b"),
    ("filter_id", "B"),
    ("filter_size", "B"),
    ("reserved", "7x"),
    ("header_crc32", "I"),
)
_LAYOUT = struct.Struct("<" + "".join(code for _, code in FIELDS[:-1]))
assert _LAYOUT.size == 60
_CRC = struct.Struct("<I")
_VERSION = struct.Struct("<HH")  # version and header size, readable from the first 8 bytes
_FULL = struct.Struct("<" + "".join(code for _, code in FIELDS))  # the layout and header_crc32
assert _FULL.size == HEADER_SIZE



def align(n: int) -> int:
    """Round ``n`` up to the payload alignment."""
    return (n + ALIGN - 1) & ~(ALIGN - 1)


class Header(NamedTuple):
    """The decoded fixed header of one frame (immutable; a named tuple, cheap to build per read)."""

    format_id: int
    compression_id: int
    checksum_kind: int
    flags: int
    metadata_length: int
    metadata_crc32: int
    payload_length: int
    raw_length: int
    payload_checksum: int
    schema_version: int
    compression_level: int
    version: int = FRAME_VERSION
    filter_id: int = 0
    filter_size: int = 0

    @property
    def payload_offset(self) -> int:
        """Where the payload starts: the first 64-byte boundary after header and metadata."""
        return (HEADER_SIZE + self.metadata_length + ALIGN - 1) & ~(ALIGN - 1)

    @property
    def frame_size(self) -> int:
        return self.payload_offset + self.payload_length

    def pack(self, payload_checksum: int | None = None) -> bytes:
        """The 64 header bytes; ``payload_checksum`` overrides the stored value."""
        (fmt, comp, ck, flags, mlen, mcrc, plen, rlen, pck, schema, level, version, filt, fsize) = self
        if payload_checksum is not None:
            pck = payload_checksum
        return pack(fmt, comp, ck, flags, mlen, mcrc, plen, rlen, pck, schema, level, filt, fsize, version)


def pack(
    format_id: int, compression_id: int, checksum_kind: int, flags: int, metadata_length: int, metadata_crc32: int,
    payload_length: int, raw_length: int, payload_checksum: int, schema_version: int, compression_level: int = 0,
    filter_id: int = FILTER_NONE, filter_size: int = 0, version: int = FRAME_VERSION,
) -> bytes:
    """The 64 header bytes for these field values, header CRC-32 included (see :data:`FIELDS`)."""
    body = _LAYOUT.pack(
        MAGIC, version, HEADER_SIZE, format_id, compression_id, checksum_kind, flags, metadata_length,
        metadata_crc32, payload_length, raw_length, payload_checksum, schema_version, compression_level,
        filter_id, filter_size,
    )
    return body + _CRC.pack(crc32_native(body))


_new_header = tuple.__new__  # Header(*fields) without the keyword-handling constructor


def unpack(buf: memoryview, limits: Limits, *, offset: int = 0) -> Header:
    """Read and verify the header at ``buf[offset:]``; check every length against ``buf`` and limits."""
    if len(buf) - offset < HEADER_SIZE:
        _refuse(buf, offset)
    (magic, version, header_size, fmt, comp, ck, flags, mlen, mcrc, plen, rlen, pck, schema, level, filt, fsize,
     stored) = _FULL.unpack_from(buf, offset)
    if magic != MAGIC or version != FRAME_VERSION or header_size != HEADER_SIZE:
        _refuse(buf, offset)
    computed = crc32_native(buf[offset : offset + _LAYOUT.size])
    if stored != computed:
        raise ChecksumError(
            f"Frame header checksum mismatch: stored crc32 {stored:#010x}, computed {computed:#010x}. "
            "The header is corrupted; resend the frame.",
            stored=stored,
            computed=computed,
        )
    unknown = flags & REQUIRED_FLAG_MASK & ~KNOWN_REQUIRED_FLAGS
    if unknown:
        raise UnsupportedVersionError(
            f"Frame sets required flags {unknown:#06x} that this tether does not know; upgrade tether."
        )
    if ck not in CHECKSUM_NAMES:  # refused unverified too: a newer writer's kind may come with a layout of its own
        raise UnsupportedVersionError(
            f"Frame uses payload checksum kind {ck}; this tether knows 0 (none), 1 (xxh3-64) and 2 (crc32): "
            "upgrade tether to read it."
        )
    if mlen > limits.max_metadata_size:
        raise LimitError(
            f"Frame metadata declares {mlen} bytes, over the limit of {limits.max_metadata_size} "
            "(Limits.max_metadata_size)."
        )
    if filt != FILTER_NONE or fsize:
        _check_filter(comp, filt, fsize, rlen)
    size = ((HEADER_SIZE + mlen + ALIGN - 1) & ~(ALIGN - 1)) + plen
    if size > limits.max_frame_size:
        raise LimitError(
            f"Frame declares {size} bytes, over the limit of {limits.max_frame_size} (Limits.max_frame_size)."
        )
    if comp == 0 and rlen != plen:
        raise DecodeError(f"Uncompressed frame declares raw length {rlen} != payload length {plen}.")
    if rlen > limits.max_uncompressed_size and comp != 0:
        raise LimitError(
            f"Frame declares {rlen} uncompressed bytes, over the limit of {limits.max_uncompressed_size} "
            "(Limits.max_uncompressed_size)."
        )
    return _new_header(Header, (fmt, comp, ck, flags, mlen, mcrc, plen, rlen, pck, schema, level, version, filt, fsize))


def _refuse(buf: memoryview, offset: int) -> None:
    """Raise the error for a header that is short, not tether's, or of another version (most useful first)."""
    avail = len(buf) - offset
    if avail < 4 or bytes(buf[offset : offset + 4]) != MAGIC:
        if avail >= 4:
            raise DecodeError(
                f"Not a tether frame: magic is {bytes(buf[offset:offset + 4])!r}, expected {MAGIC!r}. "
                "Pass the bytes tether.dumps or Tether.encode produced."
            )
        raise TruncatedError(f"Not a tether frame: {avail} bytes, a header needs {HEADER_SIZE}.")
    if avail < 8:
        raise TruncatedError(f"Frame truncated: {avail} bytes, a header needs {HEADER_SIZE}.")
    version, header_size = _VERSION.unpack_from(buf, offset + 4)
    if version != FRAME_VERSION:
        if avail >= HEADER_SIZE and _v1_crc_fails(buf, offset):
            # A version-1-sized header whose CRC fails where version 1 keeps it: far more often one
            # flipped bit than a newer frame, so upgrading would not help.
            raise ChecksumError(
                f"Frame version {version} with a corrupted header (its CRC-32 does not match): the frame "
                "is damaged, or comes from a newer tether. Resend it; if the sender runs a newer tether, "
                f"upgrade this side to one that reads frame version {version}."
            )
        raise UnsupportedVersionError(
            f"Frame version {version} is not supported: this tether reads frame version "
            f"{FRAME_VERSION}. Upgrade tether to a release that reads frame version {version}."
        )
    if header_size != HEADER_SIZE:
        raise DecodeError(f"Frame header size is {header_size}, frame version 1 requires {HEADER_SIZE}.")
    raise TruncatedError(f"Frame truncated: {avail} bytes, a header needs {HEADER_SIZE}.")


def _v1_crc_fails(buf: memoryview, offset: int) -> bool:
    """Whether the header at ``offset`` fails the CRC-32 check where a version-1 header keeps it."""
    stored = _FULL.unpack_from(buf, offset)[-1]
    return stored != crc32_native(buf[offset : offset + _LAYOUT.size])


def _check_filter(comp: int, filt: int, fsize: int, rlen: int) -> None:
    """Refuse a header whose ``filter_id``/``filter_size`` pair this reader cannot undo (docs/format.md §1).

    A filter id this tether does not know may come from a newer writer: upgrading helps. A pair of known
    values that the spec forbids (a size with filter 0, a shuffle without compression, a shuffle size other
    than 2, 4, 8 or 16 or that does not divide raw_length) no writer produces: the header is corrupt.
    """
    if filt not in FILTER_NAMES:
        raise UnsupportedVersionError(
            f"Frame uses payload filter {filt} (element size {fsize}), which this tether does not read; "
            "upgrade tether."
        )
    if filt == FILTER_NONE:
        why = "filter 0 (none) takes filter_size 0"
    elif comp == 0:
        why = "byte-shuffle is applied only to a compressed payload (compression_id not 0)"
    elif fsize not in SHUFFLE_SIZES:
        why = f"byte-shuffle takes filter_size {', '.join(map(str, SHUFFLE_SIZES[:-1]))} or {SHUFFLE_SIZES[-1]}"
    elif rlen % fsize:
        why = "raw_length must be a multiple of filter_size"
    else:
        return
    raise DecodeError(
        f"Frame header is inconsistent: filter_id {filt}, filter_size {fsize}, compression_id {comp}, "
        f"raw_length {rlen}: {why}. The frame is corrupt; resend it."
    )
