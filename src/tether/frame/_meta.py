"""Frame metadata: an ETF map with binary keys, readable by ``binary_to_term(M, [safe])``."""

from __future__ import annotations

import os
import time
from typing import Any, Mapping, Sequence

from .. import _etf
from .._version import __version__
from .._errors import DecodeError, EncodeError, MappingError, ValidationError, foreign
from .._limits import Limits

# Keys written by tether itself; user fields live under "user".
KEYS = ("format", "schema", "created_at", "type", "lineage", "user", "producer")
PRODUCER = f"tether-py/{__version__}"


_OPTIONS = _etf.Options(structs=False)
_PAIRS: dict[tuple, bytes] = {}
_MAP_HEAD = _etf.encode({}, _OPTIONS)[:2]  # version byte and map tag, as the encoder writes them


def pairs(mapping: dict[str, Any]) -> bytes:
    """The encoded key-value pairs of a metadata map, without its header: pieces :func:`splice` joins."""
    return _etf.encode(mapping, _OPTIONS, bytes_tag=_etf.BIT_BINARY)[6:]  # without 131 + MAP header


def _cache(key: Any, mapping: dict[str, Any]) -> bytes:
    """Encode the pairs of ``mapping`` and keep them under ``key`` (values that repeat from frame to frame)."""
    encoded = _pairs(mapping)
    if len(_PAIRS) > 256:
        _PAIRS.clear()
    _PAIRS[key] = encoded
    return encoded


def splice(count: int, *parts: bytes) -> bytes:
    """A metadata map of ``count`` pairs from encoded pieces; an ETF map may list its pairs in any order."""
    return _MAP_HEAD + count.to_bytes(4, "big") + b"".join(parts)


def build(
    fmt: str,
    schema: int,
    type_info: dict[str, Any],
    *,
    type_key: Any = None,
    user: Mapping[str, Any] | None = None,
    lineage: Sequence[Mapping[str, Any]] | None = None,
    stream: Mapping[str, Any] | None = None,
) -> bytes:
    """The metadata block of a new frame: the one place tether writes it.

    Format, schema, producer and the default lineage repeat from frame to
    frame, so their encoding is cached (keyed by pid too, for forked
    children); so is the type information when the format names it with a
    hashable ``type_key``. See docs/format.md, "Metadata", for the keys.

    Examples
    --------
    >>> meta = decode(build("raw", 1, {"kind": "bytes"}), __import__("tether").get_limits())
    >>> meta["format"], meta["type"], meta["producer"].startswith("tether-py/")
    ('raw', {'kind': 'bytes'}, True)
    """
    pid = os.getpid()
    # The pid is in the key, for forked children; a caller's lineage by its repr.
    key = (fmt, schema, pid, repr(lineage) if lineage else None)
    fixed = _PAIRS.get(key) or _cache(key, _fixed(fmt, schema, pid, lineage))
    if type_key is None:
        typed = _pairs({"type": type_info})
    else:
        tkey = ("type", fmt, schema, type_key)
        typed = _PAIRS.get(tkey) or _cache(tkey, {"type": type_info})
    parts = [fixed, _created_pair(time.time_ns() // 1000), typed]
    if user:
        for name in user:
            if not isinstance(name, str):
                raise ValidationError(f"metadata keys must be str, got {name!r}.")
        parts.append(_pairs({"user": dict(user)}))
    if stream is not None:  # a chunk of a tether.stream: see docs/format.md, "Streams"
        parts.append(_pairs({"stream": dict(stream)}))
    return splice(len(parts) + 3, *parts)  # the fixed part holds four pairs


def _fixed(fmt: str, schema: int, pid: int, lineage: Sequence[Mapping[str, Any]] | None) -> dict[str, Any]:
    trail = [{"producer": PRODUCER, "pid": pid, "format": fmt}, *(dict(x) for x in lineage or ())]
    return {"format": fmt, "schema": schema, "producer": PRODUCER, "lineage": trail}


_CREATED_KEY = pairs({"created_at": 0})[:-2]  # the key as the map writes it, without the value 0


def _created_pair(micros: int) -> bytes:
    # Microseconds since 1970 need 7 bytes until the year 4254: SMALL_BIG_EXT,
    # as the ETF encoder writes every integer beyond 32 bits.
    n = (micros.bit_length() + 7) // 8
    return _CREATED_KEY + b"n" + bytes((n, 0)) + micros.to_bytes(n, "little")


def _pairs(mapping: dict[str, Any]) -> bytes:
    try:
        return pairs(mapping)
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
    except Exception as exc:  # typed or not, the message says it is the metadata; a LimitError stays one
        typed = foreign(exc, "ETF")
        cls = type(typed) if isinstance(typed, DecodeError) else DecodeError
        raise cls(f"Frame metadata is not a valid ETF map: {typed}") from exc
    if not isinstance(meta, dict):
        raise DecodeError(f"Frame metadata must be an ETF map, got {type(meta).__name__}.")
    fmt = meta.get("format")
    if not isinstance(fmt, str):
        raise DecodeError("Frame metadata has no 'format' binary.")
    return meta
