"""Frame metadata: an ETF map with binary keys, readable by ``binary_to_term(M, [safe])``."""

from __future__ import annotations

import functools
from typing import Any

from .. import _etf
from .._errors import DecodeError, EncodeError, MappingError, TetherError
from .._limits import Limits

# Keys written by tether itself; user fields live under "user".
KEYS = ("format", "schema", "created_at", "type", "lineage", "user", "producer")


def encode(meta: dict[str, Any]) -> bytes:
    """Encode metadata. ``str`` is written as binaries, ``bytes`` as 8-bit bitstrings (both binaries on BEAM)."""
    try:
        return _etf.encode(meta, _etf.Options(structs=False), bytes_tag=_etf.BIT_BINARY)
    except MappingError as exc:
        raise MappingError(
            f"Metadata cannot be stored: {exc} Metadata values must be str, bytes, int, float, bool, "
            "None, lists, tuples or dicts of those."
        ) from exc
    except EncodeError as exc:
        raise EncodeError(f"Metadata cannot be stored: {exc}") from exc


@functools.lru_cache(maxsize=8)
def _options(limits: Limits) -> _etf.Options:
    return _etf.Options(binaries="tagged", limits=limits, structs=False)


def decode(data: bytes, limits: Limits) -> dict[str, Any]:
    """Decode a metadata block; binaries become ``str`` when they are valid UTF-8."""
    try:
        meta = _etf.decode(data, _options(limits))
    except TetherError as exc:
        raise DecodeError(f"Frame metadata is not a valid ETF map: {exc}") from exc
    if not isinstance(meta, dict):
        raise DecodeError(f"Frame metadata must be an ETF map, got {type(meta).__name__}.")
    fmt = meta.get("format")
    if not isinstance(fmt, str):
        raise DecodeError("Frame metadata has no 'format' binary.")
    return meta
