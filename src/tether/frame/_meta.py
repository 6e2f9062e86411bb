"""Frame metadata: an ETF map with binary keys, readable by ``binary_to_term(M, [safe])``."""

from __future__ import annotations

from typing import Any, Callable

from .. import _etf
from .._errors import DecodeError, EncodeError, MappingError, TetherError
from .._limits import Limits

# Keys written by tether itself; user fields live under "user".
KEYS = ("format", "schema", "created_at", "type", "lineage", "user", "producer")


_OPTIONS = _etf.Options(structs=False)
_PAIRS: dict[tuple, bytes] = {}


def pairs(mapping: dict[str, Any]) -> bytes:
    """The encoded key-value pairs of a metadata map, without its header: pieces :func:`splice` joins."""
    return _etf.encode(mapping, _OPTIONS, bytes_tag=_etf.BIT_BINARY)[6:]  # without 131 + MAP header


def cached_pairs(key: Any, make: Callable[[], dict[str, Any]]) -> bytes:
    """:func:`pairs` of ``make()``, encoded once per ``key`` (values that repeat from frame to frame)."""
    cached = _PAIRS.get(key)
    if cached is None:
        cached = pairs(make())
        if len(_PAIRS) > 256:
            _PAIRS.clear()
        _PAIRS[key] = cached
    return cached


def splice(count: int, *parts: bytes) -> bytes:
    """A metadata map of ``count`` pairs from encoded pieces; an ETF map may list its pairs in any order."""
    return b"\x83t" + count.to_bytes(4, "big") + b"".join(parts)


def encode(meta: dict[str, Any], *, constant: tuple[str, ...] = (), key: Any = None) -> bytes:
    """Encode metadata. ``str`` is written as binaries, ``bytes`` as 8-bit bitstrings (both binaries on BEAM).

    The pairs named in ``constant`` have values that repeat from frame to
    frame (format, producer, lineage...): their encoding is cached and spliced
    in. ``key`` identifies their values; without one, they are keyed by their repr.
    """
    try:
        if not constant:
            return _etf.encode(meta, _OPTIONS, bytes_tag=_etf.BIT_BINARY)
        fixed = {k: meta[k] for k in constant}
        if key is None:
            key = tuple((k, repr(v)) for k, v in fixed.items())
        rest = {k: v for k, v in meta.items() if k not in fixed}
        return splice(len(meta), cached_pairs(key, lambda: fixed), pairs(rest))
    except MappingError as exc:
        raise MappingError(
            f"Metadata cannot be stored: {exc} Metadata values must be str, bytes, int, float, bool, "
            "None, lists, tuples or dicts of those."
        ) from exc
    except EncodeError as exc:
        raise EncodeError(f"Metadata cannot be stored: {exc}") from exc


_decode_options: list[Any] = [None, None]  # limits, options


def options(limits: Limits) -> _etf.Options:
    """The decoder options for metadata under ``limits`` (kept while the limits object stays the same)."""
    # By identity: hashing a Limits value costs more than decoding small metadata.
    if _decode_options[0] is not limits:
        _decode_options[:] = [limits, _etf.Options(binaries="tagged", limits=limits, structs=False)]
    return _decode_options[1]


def decode(data: bytes, limits: Limits) -> dict[str, Any]:
    """Decode a metadata block; binaries become ``str`` when they are valid UTF-8."""
    try:
        meta = _etf.decode(data, options(limits))
    except TetherError as exc:
        raise DecodeError(f"Frame metadata is not a valid ETF map: {exc}") from exc
    if not isinstance(meta, dict):
        raise DecodeError(f"Frame metadata must be an ETF map, got {type(meta).__name__}.")
    fmt = meta.get("format")
    if not isinstance(fmt, str):
        raise DecodeError("Frame metadata has no 'format' binary.")
    return meta
