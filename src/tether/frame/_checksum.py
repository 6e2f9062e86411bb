"""Checksum kinds a frame may carry for its payload.

Header and metadata are always covered by CRC-32 (which BEAM computes natively
with ``erlang:crc32/1``). The payload checksum kind is chosen per frame.
"""

from __future__ import annotations

import zlib
from typing import Callable

import xxhash

from .._errors import UnsupportedFormatError

NONE = 0
XXH3_64 = 1
CRC32 = 2

NAMES = {NONE: "none", XXH3_64: "xxh3-64", CRC32: "crc32"}
IDS = {v: k for k, v in NAMES.items()}

# Payloads at or below this size are always checksummed: the pass is cheap.
SMALL_PAYLOAD = 1 << 20


def _crc32(data: memoryview) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


_FUNCS: dict[int, Callable[[memoryview], int]] = {
    XXH3_64: xxhash.xxh3_64_intdigest,
    CRC32: _crc32,
}


def compute(kind: int, data: memoryview) -> int:
    """Return the checksum of ``data`` for ``kind`` (0 for ``NONE``)."""
    if kind == NONE:
        return 0
    try:
        return _FUNCS[kind](data)
    except KeyError:
        raise UnsupportedFormatError(
            f"Unknown checksum kind {kind}. Known kinds: "
            + ", ".join(f"{k} ({n})" for k, n in NAMES.items())
            + ". The frame may come from a newer tether; upgrade to read it."
        ) from None
