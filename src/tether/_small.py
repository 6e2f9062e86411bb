"""The plain-etf fast path of ``dumps`` and ``loads``.

A small call (a worker round trip, a message between processes) spends more
time in frame bookkeeping than in its term: options, a decision record, a
header object, a context per format. Plain etf frames (uncompressed, no user
metadata or lineage) are by far the most common small frames, so they get a
straight path here.

The contract with the general path in ``_api``:

* ``dumps_etf`` writes exactly the bytes the general path writes (the tests
  compare them with the clock pinned), and records the same decision.
* ``loads_etf`` makes the same checks. Whenever a frame is anything but
  plain, or any check fails, it returns :data:`MISS` and the general path
  runs, so every error and its message still have one source.
"""

from __future__ import annotations

import os
import struct
import time
import zlib
from typing import Any, Mapping

from . import __version__, _etf
from ._errors import TetherError
from ._limits import get_limits
from ._select import record_lazy
from .formats import etf as _etf_format
from .frame import _checksum, _header, _meta

MISS = object()

_ETF_ID = 4
_SCHEMA = 1
_PRODUCER = f"tether-py/{__version__}"
_TYPE = {"binaries": "tagged"}
_HEAD = _header._LAYOUT
_FULL = _header._FULL
_CRC = struct.Struct("<I")
_MAGIC = _header.MAGIC
_ZEROS = bytes(64)
_CREATED_KEY = _meta.pairs({"created_at": 0})[:-2]  # the key, as the map writes it (without the value 0)
_crc32 = zlib.crc32
_xxh3 = _checksum._FUNCS[_checksum.XXH3_64]


def _metadata(micros: int) -> bytes:
    """The metadata the general path writes for a plain etf frame, from the same cached pairs."""
    pid = os.getpid()
    fixed = _meta.cached_pairs(("etf", _SCHEMA, pid), lambda: {  # the general path's key and pairs
        "format": "etf",
        "schema": _SCHEMA,
        "producer": _PRODUCER,
        "lineage": [{"producer": _PRODUCER, "pid": pid, "format": "etf"}],
    })
    type_pair = _meta.cached_pairs(("type", "etf", _SCHEMA), lambda: {"type": _TYPE})
    return _meta.splice(6, fixed, _created_pair(micros), type_pair)


def _created_pair(micros: int) -> bytes:
    # Microseconds since 1970 need 7 bytes until the year 4254: SMALL_BIG_EXT,
    # as the ETF encoder writes every integer beyond 32 bits.
    n = (micros.bit_length() + 7) // 8
    return _CREATED_KEY + b"n" + bytes((n, 0)) + micros.to_bytes(n, "little")


def dumps_etf(obj: Any, kind: int, reason: str, requested: str) -> bytes | None:
    """One plain etf frame, or None when the general path must take the value."""
    try:
        data = _etf.encode(obj, _etf_format._default_options(get_limits()), bytes_tag=_etf.BIT_BINARY)
    except Exception:  # the general path raises (or falls back) with its own message
        return None
    n = len(data)
    if kind < 0:  # checksum="auto": small payloads always, large ones rely on their region
        kind = _checksum.XXH3_64 if n <= _checksum.SMALL_PAYLOAD else _checksum.NONE
    if kind == _checksum.XXH3_64:
        pck = _xxh3(data)
    elif kind == _checksum.CRC32:
        pck = _crc32(data)
    else:
        pck = 0
    meta = _metadata(time.time_ns() // 1000)
    mlen = len(meta)
    pad = -(_header.HEADER_SIZE + mlen) % _header.ALIGN
    body = _HEAD.pack(_MAGIC, 1, 64, _ETF_ID, 0, kind, 0, mlen, _crc32(meta), n, n, pck, _SCHEMA, 0, 0, 0)
    record_lazy("etf", reason, requested, n)
    return b"".join((body, _CRC.pack(_crc32(body)), meta, _ZEROS[:pad], data))


_decode_cache: dict[tuple, Any] = {}
_decode_limits: Any = None


def loads_etf(buf: bytes, copy: bool, verify: bool, options: Mapping[str, Any] | None) -> Any:
    """Decode a plain etf frame held in ``buf``, or return :data:`MISS`."""
    global _decode_limits
    n = len(buf)
    if n < 64:
        return MISS
    (magic, version, hsize, fid, comp, ck, flags, mlen, mcrc, plen, rlen, pck, schema, level, filt, fsize,
     hcrc) = _FULL.unpack_from(buf)
    if (magic != _MAGIC or version != 1 or hsize != 64 or fid != _ETF_ID or comp or flags or filt or fsize
            or schema != _SCHEMA or rlen != plen or ck > 2):
        return MISS
    if _crc32(buf[:60]) != hcrc:
        return MISS
    off = (64 + mlen + 63) & ~63
    limits = get_limits()
    if off + plen != n or mlen > limits.max_metadata_size or n > limits.max_frame_size:
        return MISS
    mbytes = buf[64 : 64 + mlen]
    if _crc32(mbytes) != mcrc or buf[64 + mlen : off].strip(b"\0"):
        return MISS
    view = memoryview(buf)[off:]
    if verify and ck:
        if (_xxh3(view) if ck == _checksum.XXH3_64 else _crc32(view)) != pck:
            return MISS
    try:
        meta = _etf.decode(mbytes, _meta.options(limits))
        type_info = meta["type"]
        mode = type_info.get("binaries", "beam")
        none_atom = type_info.get("none_atom", "nil")
        if len(type_info) > (1 if "none_atom" not in type_info else 2) or meta["format"] != "etf":
            return MISS
    except (TetherError, KeyError, AttributeError, TypeError):
        return MISS
    if _decode_limits is not limits:
        _decode_cache.clear()
        _decode_limits = limits
    key = (mode, none_atom, copy, tuple(options.items()) if options else ())
    try:
        opts = _decode_cache.get(key)
    except TypeError:  # unhashable option values: the general path says what is wrong
        return MISS
    if opts is None:
        kwargs: dict[str, Any] = {"binaries": "tagged" if mode == "tagged" else "bytes",
                                  "warn_charlists": mode != "tagged"}
        if none_atom != "nil":
            kwargs["none_atom"] = none_atom
        if not copy:
            kwargs["views"] = _etf_format.VIEW_MIN
        for name in _etf_format.DECODE_OPTIONS:
            if options and name in options:
                kwargs[name] = options[name]
        try:
            opts = _etf_format.decode_options(limits, kwargs)
        except TetherError:
            return MISS
        if len(_decode_cache) > 64:
            _decode_cache.clear()
        _decode_cache[key] = opts
    try:
        return _etf.decode(view, opts)
    except TetherError:
        raise
    except Exception:
        return MISS
