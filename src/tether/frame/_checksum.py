"""Checksum kinds a frame may carry for its payload, and the policy that picks one.

Header and metadata are always covered by CRC-32 (which BEAM computes natively
with ``erlang:crc32/1``). The payload checksum kind is chosen per frame by
:func:`kind_for`, the one place the ``checksum="auto"`` rule is written.

CRC-32 is also the default payload checksum, so that a frame written with
default options is one the BEAM verifies natively. It is computed with ISA-L
(``isal``, about 10 GB/s here, against about 2 GB/s for the stdlib's
``zlib.crc32``); xxh3-64 stays an explicit choice, and frames written with it
read as before.
"""

from __future__ import annotations

from typing import Any, Callable

import xxhash

try:
    from isal.isal_zlib import crc32 as _crc32_impl

    CRC32_LIBRARY = "isal"
except ImportError:  # pragma: no cover - isal is a dependency; zlib computes the same value, slower
    from zlib import crc32 as _crc32_impl

    CRC32_LIBRARY = "zlib"

from .._errors import UnsupportedFormatError, ValidationError
from .._transport import LEAVING

NONE = 0
XXH3_64 = 1
CRC32 = 2

NAMES = {NONE: "none", XXH3_64: "xxh3-64", CRC32: "crc32"}
IDS = {v: k for k, v in NAMES.items()}

# Payloads at or below this size are always checksummed: the pass is cheap.
SMALL_PAYLOAD = 1 << 20

CHOICES = ("auto", True, False, "xxh3-64", "crc32", "none")
# The kind checksum=True and checksum="auto" give: the one both runtimes verify natively.
DEFAULT = CRC32
# The choices by (type, value): checksum=1 is not checksum=True. -1 is "auto".
_REQUESTED = {
    (str, "auto"): -1, (bool, True): DEFAULT, (str, "xxh3-64"): XXH3_64,
    (str, "crc32"): CRC32, (bool, False): NONE, (str, "none"): NONE,
}


def crc32(data: Any) -> int:
    """The CRC-32 of ``data`` (any contiguous buffer): what ``erlang:crc32/1`` and ``zlib.crc32`` compute.

    Examples
    --------
    >>> crc32(b"tether") == __import__("zlib").crc32(b"tether")
    True
    """
    return _crc32_impl(data) & 0xFFFFFFFF


# crc32 without its wrapper, for the frame layer's own per-frame calls (header, metadata, small payloads),
# where a Python call costs as much as the CRC itself. Both libraries return the unsigned value.
crc32_native: Callable[[Any], int] = _crc32_impl

_FUNCS: dict[int, Callable[[memoryview], int]] = {
    XXH3_64: xxhash.xxh3_64_intdigest,
    CRC32: crc32_native,
}


def requested(checksum: Any) -> int:
    """The kind ``checksum=`` asks for (-1 for ``"auto"``); a ValidationError lists the choices."""
    try:
        return _REQUESTED[type(checksum), checksum]
    except (KeyError, TypeError):
        raise ValidationError(
            f"Invalid checksum {checksum!r}. Valid options are: {', '.join(map(str, CHOICES))}."
        ) from None


def kind_for(kind: int, stored_length: int, transport: str, compressed: bool, unchecked_inside: bool = False) -> int:
    """The payload checksum kind of a frame, from :func:`requested`'s answer.

    ``"auto"`` covers payloads up to :data:`SMALL_PAYLOAD` always, and larger
    ones when the frame leaves memory or is compressed (decompression is O(n)
    anyway, and a corrupted compressed stream must never decode silently).
    Large frames in memory or shared memory rely on their region's commit
    protocol, so ``loads`` stays O(1). ``unchecked_inside``: the format
    compressed inside its payload, where no codec checksum can catch a
    flipped bit (Arrow's IPC buffers): such a payload gets :data:`DEFAULT`
    even when no checksum was asked for, as lz4 and zstd payloads then get
    their codec's.

    Examples
    --------
    >>> kind_for(requested("auto"), 10, "memory", False) == CRC32
    True
    >>> kind_for(requested("auto"), 1 << 30, "shm", False) == NONE
    True
    >>> kind_for(requested("none"), 1 << 30, "memory", True, unchecked_inside=True) == CRC32
    True
    """
    if kind == NONE and unchecked_inside:
        return DEFAULT
    if kind >= 0:
        return kind
    if stored_length <= SMALL_PAYLOAD or compressed or transport in LEAVING:
        return DEFAULT
    return NONE


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
