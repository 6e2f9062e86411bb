"""The fixed 64-byte frame header (frame version 1). See docs/format.md."""

from __future__ import annotations

import struct
import zlib
from typing import NamedTuple

from .._errors import ChecksumError, DecodeError, LimitError, TruncatedError, UnsupportedVersionError
from .._limits import Limits

MAGIC = b"TTHR"
FRAME_VERSION = 1
HEADER_SIZE = 64
ALIGN = 64

# Flags: the low 16 bits must be understood by a reader; the high 16 may be ignored.
FLAG_STREAM_CHUNK = 1 << 0
KNOWN_REQUIRED_FLAGS = FLAG_STREAM_CHUNK
REQUIRED_FLAG_MASK = 0xFFFF

# magic, version, header size, format id, compression id, checksum kind, flags,
# metadata length, metadata crc32, payload length, raw length, payload checksum,
# schema version, compression level, filter id, filter element size, reserved (7 bytes)
_LAYOUT = struct.Struct("<4sHHHBBIIIQQQHbBB7x")
assert _LAYOUT.size == 60
_CRC = struct.Struct("<I")
_FULL = struct.Struct("<4sHHHBBIIIQQQHbBB7xI")  # the layout and header_crc32


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
        body = _LAYOUT.pack(
            MAGIC,
            self.version,
            HEADER_SIZE,
            self.format_id,
            self.compression_id,
            self.checksum_kind,
            self.flags,
            self.metadata_length,
            self.metadata_crc32,
            self.payload_length,
            self.raw_length,
            self.payload_checksum if payload_checksum is None else payload_checksum,
            self.schema_version,
            self.compression_level,
            self.filter_id,
            self.filter_size,
        )
        return body + _CRC.pack(zlib.crc32(body) & 0xFFFFFFFF)


def unpack(buf: memoryview, limits: Limits, *, offset: int = 0) -> Header:
    """Read and verify the header at ``buf[offset:]``; check every length against ``buf`` and limits."""
    avail = len(buf) - offset
    if avail < 4 or bytes(buf[offset : offset + 4]) != MAGIC:
        if avail >= 4:
            raise DecodeError(
                f"Not a tether frame: magic is {bytes(buf[offset:offset + 4])!r}, expected {MAGIC!r}. "
                "Pass the bytes tether.dumps or Tether.encode produced."
            )
        raise TruncatedError(f"Not a tether frame: {avail} bytes, a header needs {HEADER_SIZE}.")
    if avail >= HEADER_SIZE:
        # One unpack of the whole header; the version checks below come first
        # only for the messages they give.
        (_, version, header_size, fmt, comp, ck, flags, mlen, mcrc, plen, rlen, pck, schema, level, filt, fsize,
         stored) = _FULL.unpack_from(buf, offset)
    elif avail < 8:
        raise TruncatedError(f"Frame truncated: {avail} bytes, a header needs {HEADER_SIZE}.")
    else:
        version, header_size = struct.unpack_from("<HH", buf, offset + 4)
    if version != FRAME_VERSION:
        raise UnsupportedVersionError(
            f"Frame version {version} is not supported: this tether reads frame version "
            f"{FRAME_VERSION}. Upgrade tether to a release that reads frame version {version}."
        )
    if header_size != HEADER_SIZE:
        raise DecodeError(f"Frame header size is {header_size}, frame version 1 requires {HEADER_SIZE}.")
    if avail < HEADER_SIZE:
        raise TruncatedError(f"Frame truncated: {avail} bytes, a header needs {HEADER_SIZE}.")
    computed = zlib.crc32(buf[offset : offset + 60])
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
    if mlen > limits.max_metadata_size:
        raise LimitError(
            f"Frame metadata declares {mlen} bytes, over the limit of {limits.max_metadata_size} "
            "(Limits.max_metadata_size)."
        )
    if filt not in (0, 1) or (filt == 0 and fsize) or (filt == 1 and (comp == 0 or fsize < 2 or rlen % fsize)):
        raise UnsupportedVersionError(
            f"Frame uses payload filter {filt} (element size {fsize}), which this tether does not read; "
            "upgrade tether."
        )
    header = Header(fmt, comp, ck, flags, mlen, mcrc, plen, rlen, pck, schema, level, FRAME_VERSION, filt, fsize)
    if header.frame_size > limits.max_frame_size:
        raise LimitError(
            f"Frame declares {header.frame_size} bytes, over the limit of {limits.max_frame_size} "
            "(Limits.max_frame_size)."
        )
    if comp == 0 and rlen != plen:
        raise DecodeError(f"Uncompressed frame declares raw length {rlen} != payload length {plen}.")
    if rlen > limits.max_uncompressed_size and comp != 0:
        raise LimitError(
            f"Frame declares {rlen} uncompressed bytes, over the limit of {limits.max_uncompressed_size} "
            "(Limits.max_uncompressed_size)."
        )
    return header
