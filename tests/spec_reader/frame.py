"""A tether frame reader written from docs/format.md alone (§1 header, §2 metadata, §5 compression).

Nothing here imports tether: every number comes from the spec's tables.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

import lz4.frame
import xxhash
import zstandard

from . import etf

# §1 header, in field order: (name, struct code).
HEADER_FIELDS = (
    ("magic", "4s"),
    ("frame_version", "H"),
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
    ("reserved", "7s"),
    ("header_crc32", "I"),
)
HEADER = struct.Struct("<" + "".join(code for _, code in HEADER_FIELDS))
HEADER_SIZE = 64
MAGIC = b"TTHR"
FRAME_VERSION = 1
CRC_SPAN = 60
FLAG_STREAM = 1 << 0
KNOWN_REQUIRED_FLAGS = FLAG_STREAM
REQUIRED_FLAG_MASK = 0xFFFF
CHECKSUM_NONE, CHECKSUM_XXH3, CHECKSUM_CRC32 = 0, 1, 2
CHECKSUM_NAMES = {CHECKSUM_NONE: "none", CHECKSUM_XXH3: "xxh3-64", CHECKSUM_CRC32: "crc32"}
COMP_NONE, COMP_LZ4, COMP_ZSTD, COMP_GZIP = 0, 1, 2, 3
COMPRESSION_NAMES = {COMP_NONE: "none", COMP_LZ4: "lz4", COMP_ZSTD: "zstd", COMP_GZIP: "gzip"}
FILTER_NONE, FILTER_SHUFFLE = 0, 1
SHUFFLE_SIZES = (2, 4, 8, 16)
ALIGN = 64
# §4: format ids tether reserves.
FORMAT_NAMES = {1: "raw", 2: "scalar", 3: "ndarray", 4: "etf", 5: "arrow", 6: "pickle", 7: "sparse"}

assert HEADER.size == HEADER_SIZE


class SpecError(ValueError):
    """A frame the spec says a reader must refuse; `what` names the rule."""

    def __init__(self, what: str, detail: str = "") -> None:
        super().__init__(f"{what}: {detail}" if detail else what)
        self.what = what


@dataclass
class Frame:
    header: dict[str, Any]
    meta: dict[str, Any]
    payload_offset: int
    stored: bytes
    frame_size: int
    raw: bytes = field(default=b"", repr=False)

    @property
    def format_name(self) -> str:
        return self.meta["format"]

    @property
    def type(self) -> dict:
        return self.meta.get("type", {})


def align64(n: int) -> int:
    return (n + ALIGN - 1) & ~(ALIGN - 1)


def parse_header(buf: bytes) -> dict[str, Any]:
    """The 64 header bytes, every check §1 states."""
    if len(buf) < HEADER_SIZE:
        raise SpecError("truncated", f"{len(buf)} bytes, a header is {HEADER_SIZE}")
    h = dict(zip((n for n, _ in HEADER_FIELDS), HEADER.unpack_from(buf, 0)))
    if h["magic"] != MAGIC:
        raise SpecError("magic", repr(h["magic"]))
    if h["frame_version"] != FRAME_VERSION:
        raise SpecError("frame_version", str(h["frame_version"]))
    if h["header_size"] != HEADER_SIZE:
        raise SpecError("header_size", str(h["header_size"]))
    if zlib.crc32(buf[:CRC_SPAN]) != h["header_crc32"]:
        raise SpecError("header_crc32")
    unknown = h["flags"] & REQUIRED_FLAG_MASK & ~KNOWN_REQUIRED_FLAGS
    if unknown:
        raise SpecError("required_flag", hex(unknown))
    if h["checksum_kind"] not in CHECKSUM_NAMES:
        raise SpecError("checksum_kind", str(h["checksum_kind"]))
    if h["compression_id"] not in COMPRESSION_NAMES:
        raise SpecError("compression_id", str(h["compression_id"]))
    _check_filter(h)
    if h["compression_id"] == COMP_NONE and h["raw_length"] != h["payload_length"]:
        raise SpecError("raw_length", "differs from payload_length without compression")
    return h


def _check_filter(h: dict[str, Any]) -> None:
    fid, size = h["filter_id"], h["filter_size"]
    if fid not in (FILTER_NONE, FILTER_SHUFFLE):
        raise SpecError("filter_id", str(fid))
    if fid == FILTER_NONE and size != 0:
        raise SpecError("filter_size", "non-zero without a filter")
    if fid == FILTER_SHUFFLE:
        if h["compression_id"] == COMP_NONE:
            raise SpecError("filter_id", "a filter without compression")
        if size not in SHUFFLE_SIZES or h["raw_length"] % size:
            raise SpecError("filter_size", str(size))


def payload_checksum(kind: int, data: bytes) -> int:
    """§1 payload_checksum: xxh3-64 seed 0 as a u64, crc32 zero-extended, 0 for none."""
    if kind == CHECKSUM_XXH3:
        return xxhash.xxh3_64_intdigest(data, seed=0)
    if kind == CHECKSUM_CRC32:
        return zlib.crc32(data)
    return 0


def read_frame(buf: bytes, verify: bool = True, whole: bool = True) -> Frame:
    """Parse and check one frame at the start of `buf`; `whole`: the buffer must end where the frame does."""
    buf = bytes(buf)
    h = parse_header(buf)
    m = h["metadata_length"]
    meta_bytes = buf[HEADER_SIZE : HEADER_SIZE + m]
    if len(meta_bytes) != m:
        raise SpecError("truncated", "metadata")
    if zlib.crc32(meta_bytes) != h["metadata_crc32"]:
        raise SpecError("metadata_crc32")
    p = align64(HEADER_SIZE + m)
    end = p + h["payload_length"]
    if len(buf) < end:
        raise SpecError("truncated", f"frame is {end} bytes, buffer {len(buf)}")
    if whole and len(buf) != end:
        raise SpecError("trailing_bytes", f"{len(buf) - end} after the frame")
    if any(buf[HEADER_SIZE + m : p]):
        raise SpecError("padding", "non-zero bytes between metadata and payload")
    stored = buf[p:end]
    # With checksum_kind 0 the field is meaningless: writers put 0 there, readers ignore it.
    kind = h["checksum_kind"]
    if verify and kind != CHECKSUM_NONE and payload_checksum(kind, stored) != h["payload_checksum"]:
        raise SpecError("payload_checksum")
    meta = read_metadata(meta_bytes)
    _check_metadata(h, meta)
    return Frame(h, meta, p, stored, end)


def read_metadata(meta_bytes: bytes) -> dict[str, Any]:
    """§2: a map with binary keys, strings as binaries, Python bytes as 8-bit BIT_BINARY."""
    meta = etf.decode(meta_bytes, binaries="tagged")
    if not isinstance(meta, dict) or not all(isinstance(k, str) for k in meta):
        raise SpecError("metadata", "not a map with binary keys")
    return meta


def user_metadata(meta: dict[str, Any], max_size: int | None = None) -> dict[str, Any]:
    """§2.2: `user`, or `user_packed` unpacked (bounded by its `size`), or {} when neither."""
    if "user_packed" not in meta:
        return meta.get("user", {})
    if "user" in meta:
        raise SpecError("user_packed", "a frame has user or user_packed, never both")
    packed = meta["user_packed"]
    size = packed["size"]
    if max_size is not None and size > max_size:
        raise SpecError("limit", f"user_packed size {size} above {max_size}")
    if packed["encoding"] != "etf":
        raise SpecError("user_packed", f"encoding {packed['encoding']!r}")
    data = packed["data"]
    if packed["compression"] == "zlib":
        d = zlib.decompressobj()
        data = d.decompress(data, size + 1)
    elif packed["compression"] != "none":
        raise SpecError("user_packed", f"compression {packed['compression']!r}")
    if len(data) != size:
        raise SpecError("user_packed", f"{len(data)} bytes, size says {size}")
    user = etf.decode(data, binaries="tagged")
    if not isinstance(user, dict):
        raise SpecError("user_packed", "not a map")
    return user


def check_atoms(value: Any) -> None:
    """§2: no atoms but true, false and nil (which decode as True, False, None)."""
    if isinstance(value, etf.SAtom):
        raise SpecError("metadata", f"atom {value.name!r}")
    if isinstance(value, dict):
        for k, v in value.items():
            check_atoms(k)
            check_atoms(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            check_atoms(v)


def _check_metadata(h: dict[str, Any], meta: dict[str, Any]) -> None:
    name = meta.get("format")
    known = FORMAT_NAMES.get(h["format_id"])
    if known is not None and name != known:
        raise SpecError("format", f"metadata says {name!r}, format_id {h['format_id']} is {known!r}")
    if "schema" in meta and meta["schema"] != h["schema_version"]:
        raise SpecError("schema", f"metadata {meta['schema']} header {h['schema_version']}")


def decompress(frame: Frame, limit: int | None = None) -> bytes:
    """§5: undo compression (never more than raw_length bytes), then the byte-shuffle filter."""
    h = frame.header
    raw_len = h["raw_length"]
    if limit is not None and raw_len > limit:
        raise SpecError("limit", f"raw_length {raw_len} above {limit}")
    cid = h["compression_id"]
    if content_size(cid, frame.stored) not in (None, raw_len):
        raise SpecError("raw_length", f"the codec's content size is not raw_length {raw_len}")
    if cid == COMP_NONE:
        out = frame.stored
    elif cid == COMP_LZ4:
        out = _lz4(frame.stored, raw_len)
    elif cid == COMP_ZSTD:
        out = _zstd(frame.stored, raw_len)
    else:
        out = _gzip(frame.stored, raw_len)
    if len(out) != raw_len:
        raise SpecError("raw_length", f"decompressed to {len(out)}, header says {raw_len}")
    if h["filter_id"] == FILTER_SHUFFLE:
        out = unshuffle(out, h["filter_size"])
    return out


def content_size(compression_id: int, data: bytes) -> int | None:
    """The content size an lz4 or zstd frame declares (§5: writers set it), None when absent."""
    if compression_id == COMP_LZ4:
        return lz4.frame.get_frame_info(data).get("content_size") or None
    if compression_id == COMP_ZSTD:
        size = zstandard.get_frame_parameters(data).content_size
        return None if size == zstandard.CONTENTSIZE_UNKNOWN else size
    return None


def _lz4(data: bytes, raw_len: int) -> bytes:
    # raw_length, not the frame's own content size, bounds the output (§5).
    d = lz4.frame.LZ4FrameDecompressor()
    out = d.decompress(data, max_length=raw_len)
    if not d.eof or d.unused_data:
        raise SpecError("lz4", "not exactly one LZ4 frame of raw_length bytes")
    return out


def _zstd(data: bytes, raw_len: int) -> bytes:
    d = zstandard.ZstdDecompressor().decompressobj()
    out = d.decompress(data)
    if d.unused_data or not d.eof:
        raise SpecError("zstd", "not exactly one Zstandard frame")
    if len(out) > raw_len:
        raise SpecError("raw_length", f"zstd frame inflates past raw_length {raw_len}")
    return out


def _gzip(data: bytes, raw_len: int) -> bytes:
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = d.decompress(data, raw_len + 1)
    if not d.eof or d.unused_data or d.unconsumed_tail:
        raise SpecError("gzip", "not exactly one gzip member of raw_length bytes")
    return out


def shuffle(data: bytes, size: int) -> bytes:
    """§5 filter 1: the N x S byte matrix stored column-major."""
    n = len(data) // size
    return b"".join(data[j::size] for j in range(size)) if n else data


def unshuffle(data: bytes, size: int) -> bytes:
    n = len(data) // size
    out = bytearray(len(data))
    for j in range(size):
        out[j::size] = data[j * n : (j + 1) * n]
    return bytes(out)


def gzip_member_count(data: bytes) -> int:
    """How many gzip members `data` holds (§5: one)."""
    count = 0
    while data:
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        d.decompress(data)
        count += 1
        data = d.unused_data
    return count
