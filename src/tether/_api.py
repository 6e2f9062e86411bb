"""dumps / loads / encode / inspect: the small surface users touch."""

from __future__ import annotations

import ctypes
import dataclasses
import datetime as _dt
import os
import platform
import struct
import time
import warnings
import zlib
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from . import __version__, _small, compression as _compression, formats as _formats
from ._errors import (
    ChecksumError,
    DecodeError,
    EncodeError,
    FallbackWarning,
    TetherError,
    TruncatedError,
    UnsupportedFormatError,
    ValidationError,
)
from ._limits import Limits, get_limits
from ._select import Decision, choose, record
from .formats import DecodeContext, EncodeContext, Segment
from .compression import _shuffle
from .frame import _checksum, _header, _meta
from .frame._header import HEADER_SIZE, Header

try:
    from . import _speedups
except ImportError:  # built without a compiler: memoryview copies
    _speedups = None
# Above this size payload copies go through the alignment-aware bulk copy.
_BULK_MIN = 1 << 20

TRANSPORTS = ("memory", "shm", "network", "disk", "stream")
# Transports where a frame leaves this process's memory: large payloads get checksums.
LEAVING = ("network", "disk", "stream")
CHECKSUM_CHOICES = ("auto", True, False, "xxh3-64", "crc32", "none")

_PRODUCER = f"tether-py/{__version__}"
# checksum= values the plain-etf fast path takes, by (type, value): -1 is "auto".
_SMALL_KINDS = {
    (str, "auto"): -1, (bool, True): _checksum.XXH3_64, (str, "xxh3-64"): _checksum.XXH3_64,
    (str, "crc32"): _checksum.CRC32, (bool, False): _checksum.NONE, (str, "none"): _checksum.NONE,
}


@dataclass(frozen=True, slots=True)
class FrameInfo:
    """What a frame's header and metadata say, read without touching the payload.

    Examples
    --------
    >>> import numpy as np, tether
    >>> info = tether.inspect(tether.dumps(np.zeros((2, 3), "f4")))
    >>> info.format, info.type["shape"], info.payload_size
    ('ndarray', [2, 3], 24)
    """

    frame_version: int
    format: str
    format_id: int
    schema_version: int
    compression: str
    compression_level: int
    checksum: str
    checksum_covers: str
    flags: int
    created_at: _dt.datetime | None
    metadata_size: int
    payload_offset: int
    payload_size: int
    raw_size: int
    frame_size: int
    payload_checksum: int
    type: dict[str, Any]
    lineage: list[Any]
    user: dict[str, Any]
    producer: str | None
    details: dict[str, Any] = field(default_factory=dict)
    stream: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        rows = [
            ("frame version", self.frame_version),
            ("format", f"{self.format} (id {self.format_id}, schema {self.schema_version})"),
            ("compression", self.compression if self.compression == "none" else f"{self.compression} level {self.compression_level}"),
            ("checksum", f"{self.checksum}; covers {self.checksum_covers}"),
            ("created at", self.created_at.isoformat() if self.created_at else "unknown"),
            ("producer", self.producer or "unknown"),
            ("frame size", f"{self.frame_size} B (metadata {self.metadata_size} B, payload at offset {self.payload_offset})"),
            ("payload", f"{self.payload_size} B stored, {self.raw_size} B uncompressed"),
        ]
        rows += [(k, v) for k, v in self.details.items()]
        if self.type:
            rows.append(("type", self.type))
        if self.lineage:
            rows.append(("lineage", self.lineage))
        if self.user:
            rows.append(("user metadata", self.user))
        if self.stream:
            rows.append(("stream", self.stream))
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


class Encoded:
    """A frame ready to be written: its exact size is known before any byte is written.

    Large buffers (array data, bytes) are referenced, never joined or copied,
    until :meth:`write_into` copies them once into their final place.

    Examples
    --------
    >>> import tether
    >>> enc = tether.encode(b"hello")
    >>> buf = bytearray(enc.nbytes)
    >>> enc.write_into(buf) == enc.nbytes
    True
    >>> tether.loads(buf) == b"hello"
    True
    """

    __slots__ = ("_header", "_meta", "_segments", "nbytes", "decision", "_checksum_kind", "_checksum")

    def __init__(self, header: Header, meta: bytes, segments: list[Any], checksum_kind: int, decision: Decision):
        self._header = header
        self._meta = meta
        self._segments = segments
        self._checksum_kind = checksum_kind
        self._checksum: int | None = None
        self.nbytes: int = header.frame_size
        self.decision = decision

    @property
    def header(self) -> Header:
        """The frame header; its payload checksum is filled in by the first write."""
        if self._checksum is None:
            return self._header
        return self._header._replace(payload_checksum=self._checksum)

    def write_into(self, buffer: Any, offset: int = 0) -> int:
        """Write the frame into ``buffer[offset:]``; return the number of bytes written.

        ``buffer`` is any writable buffer (bytearray, mmap, memoryview, a shared
        memory region). The payload lands 64-byte aligned relative to ``offset``.
        """
        try:
            dest = memoryview(buffer)
        except TypeError:
            raise ValidationError(f"write_into needs a writable buffer, got {type(buffer).__name__}.") from None
        if dest.readonly:
            raise ValidationError("write_into needs a writable buffer; this one is read-only.")
        if not dest.contiguous:
            raise ValidationError("write_into needs a contiguous buffer.")
        if dest.format != "B" or dest.ndim != 1:
            dest = dest.cast("B")
        if type(offset) is not int or offset < 0 or offset + self.nbytes > len(dest):
            raise ValidationError(
                f"Frame of {self.nbytes} bytes does not fit at offset {offset} of a {len(dest)}-byte buffer."
            )
        h = self._header
        mstart = offset + HEADER_SIZE
        pstart = offset + h.payload_offset
        dest[mstart : mstart + len(self._meta)] = self._meta
        pad_from = mstart + len(self._meta)
        if pstart > pad_from:
            dest[pad_from:pstart] = bytes(pstart - pad_from)
        pos = pstart
        for seg in self._segments:
            if isinstance(seg, Segment):
                seg.write(dest[pos : pos + seg.nbytes])
                pos += seg.nbytes
            else:
                n = seg.nbytes
                if n >= _BULK_MIN and _speedups is not None:
                    _speedups.copy(dest, pos, seg)
                else:
                    dest[pos : pos + n] = seg
                pos += n
        if pos != pstart + h.payload_length:  # a format lied about its size
            raise EncodeError(f"Format wrote {pos - pstart} payload bytes, declared {h.payload_length}.")
        if self._checksum_kind != _checksum.NONE:
            self._checksum = _checksum.compute(self._checksum_kind, dest[pstart:pos])
        dest[offset : offset + HEADER_SIZE] = h.pack(self._checksum)
        return self.nbytes

    def __bytes__(self) -> bytes:
        out, view = _new_bytes(self.nbytes)
        try:
            self.write_into(view)
        finally:
            view.release()
        return out if isinstance(out, bytes) else bytes(out)

    def __len__(self) -> int:
        return self.nbytes

    def __repr__(self) -> str:
        return f"<tether.Encoded {self.decision.format} {self.nbytes} B>"


# When a format cannot take a value under format="auto", the next one tries.
_FALLBACK = {"arrow": "etf", "etf": "pickle"}


def _arrow_ipc_compression(compression: str, level: int | None, transport: str, ectx: EncodeContext, decision: Decision) -> str:
    """Arrow payloads compress per buffer inside the IPC stream, so readers still get Arrow buffers."""
    from .formats.arrow import IPC_CODECS

    codec = compression
    if compression == "auto":
        codec = "lz4" if transport in LEAVING else "none"
    if codec in IPC_CODECS:
        ectx.options["ipc_compression"] = codec
        decision.notes.append(f"Arrow IPC buffer compression: {codec}")
        return "none"
    return compression


def _join(segments: list[Any], n: int) -> memoryview:
    """One contiguous buffer of the payload (a view when it already is one)."""
    if len(segments) == 1 and not isinstance(segments[0], Segment):
        return segments[0]
    out = bytearray(n)
    view = memoryview(out)
    pos = 0
    for seg in segments:
        if isinstance(seg, Segment):
            seg.write(view[pos : pos + seg.nbytes])
        else:
            view[pos : pos + seg.nbytes] = seg
        pos += seg.nbytes
    return view


# A frame's bytes object is allocated uninitialised and filled in place, so
# dumps copies the payload once instead of twice (bytearray -> bytes).
_BYTES_DIRECT = platform.python_implementation() == "CPython"
if _BYTES_DIRECT:
    _from_size = ctypes.pythonapi.PyBytes_FromStringAndSize
    _from_size.restype = ctypes.py_object
    _from_size.argtypes = (ctypes.c_void_p, ctypes.c_ssize_t)
    _BYTES_DATA_OFFSET = bytes.__basicsize__ - 1
_DIRECT_MIN = 1 << 16
# Faulting in fresh 4 KiB pages costs more than the copy itself; numpy asks for
# transparent huge pages on large arrays, and so do we for large frames.
_HUGE = 2 << 20
_MADV_HUGEPAGE = 14
try:
    _libc = ctypes.CDLL(None, use_errno=True)
    _madvise = _libc.madvise
    _madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    _madvise.restype = ctypes.c_int
except (OSError, AttributeError):  # pragma: no cover - not Linux/glibc
    _madvise = None


def _advise_huge(addr: int, n: int) -> None:
    if _madvise is None or n < 2 * _HUGE or not hasattr(os, "sched_getaffinity"):
        return
    start = (addr + _HUGE - 1) & ~(_HUGE - 1)
    end = (addr + n) & ~(_HUGE - 1)
    if end > start:
        _madvise(start, end - start, _MADV_HUGEPAGE)  # advice only: failure is harmless


def _new_bytes(n: int) -> tuple[Any, memoryview]:
    """A new object of ``n`` bytes and a writable view of it, to be filled before it is shared."""
    if _BYTES_DIRECT and n >= _DIRECT_MIN:
        obj = _from_size(None, n)
        addr = id(obj) + _BYTES_DATA_OFFSET
        _advise_huge(addr, n)
        raw = (ctypes.c_char * n).from_address(addr)
        return obj, memoryview(raw).cast("B")
    buf = bytearray(n)
    return buf, memoryview(buf)


def _check_choice(name: str, value: Any, valid: Sequence[Any]) -> None:
    # Equal and of the same type: checksum=1 is not checksum=True.
    if not any(type(value) is type(v) and value == v for v in valid):
        raise ValidationError(f"Invalid {name} {value!r}. Valid options are: {', '.join(map(str, valid))}.")


def encode(
    obj: Any,
    *,
    format: str = "auto",
    compression: str = "none",
    level: int | None = None,
    metadata: Mapping[str, Any] | None = None,
    checksum: bool | str = "auto",
    transport: str = "memory",
    bandwidth: float | None = None,
    lineage: Sequence[Mapping[str, Any]] | None = None,
    options: Mapping[str, Any] | None = None,
    _stream: Mapping[str, Any] | None = None,
) -> Encoded:
    """Prepare ``obj`` as a frame without writing it: see :class:`Encoded`.

    Parameters
    ----------
    obj : Any
        The value.
    format : str
        ``"auto"`` or a registered format name (``raw``, ``scalar``, ``ndarray``,
        ``etf``, ``pickle``, ...).
    compression : str
        ``"none"``, ``"auto"`` or a registered compressor name.
    level : int, optional
        Compression level; the compressor's default when None.
    metadata : mapping, optional
        User fields stored in the frame metadata (str keys; str, bytes, numbers,
        bools, None, lists and dicts of those).
    checksum : {"auto", True, False, "xxh3-64", "crc32"}
        ``"auto"`` covers payloads up to 1 MiB always and larger payloads when
        ``transport`` leaves memory; large in-memory frames rely on their
        region's commit protocol so ``loads`` stays O(1). True forces xxh3-64.
        Header and metadata are always covered by CRC-32.
    transport : {"memory", "shm", "network", "disk", "stream"}
        Where the frame goes; steers ``checksum="auto"`` and ``compression="auto"``.
    bandwidth : float, optional
        Bytes per second of the link, overriding the transport's assumed
        bandwidth in ``compression="auto"``.
    lineage : sequence of mappings, optional
        Where the value came from; stored as a list after tether's own entry.
    options : mapping, optional
        Format options, e.g. ``{"none_atom": "undefined"}`` for etf.

    Returns
    -------
    Encoded

    Examples
    --------
    >>> import tether
    >>> enc = tether.encode([1, 2, 3])
    >>> enc.decision.format, enc.nbytes == len(bytes(enc))
    ('etf', True)
    """
    _check_choice("transport", transport, TRANSPORTS)
    _check_choice("checksum", checksum, CHECKSUM_CHOICES)
    if metadata is not None and not isinstance(metadata, Mapping):
        raise ValidationError(f"metadata must be a mapping of str to values, got {type(metadata).__name__}.")
    ectx = EncodeContext(dict(options or {}))
    if format == "auto":
        ectx.options["_auto"] = True

    if format == "auto":
        name, reason, estimate = choose(obj, transport)
        decision = Decision(name, reason, estimate, requested="auto")
    else:
        if not isinstance(format, str):
            raise ValidationError(f"format must be a str, got {type(format).__name__}.")
        fmt = _formats.get(format)
        decision = Decision(fmt.name, "requested by the caller", None, requested=format)

    fmt = _formats.get(decision.format)
    if fmt.name == "arrow":
        compression = _arrow_ipc_compression(compression, level, transport, ectx, decision)
    payload = None
    while payload is None:
        try:
            payload = fmt.encode(obj, ectx)
        except EncodeError as exc:
            nxt = _FALLBACK.get(fmt.name)
            if format != "auto" or nxt is None:
                raise
            # Retry with the next format that can hold the value, and say why.
            decision.notes.append(str(exc))
            decision.fallback_from = decision.fallback_from or fmt.name
            decision.reason = f"{fmt.name} could not take the value: {exc}"
            decision.format = nxt
            if fmt.name == "arrow":
                warnings.warn(f"Sent as {nxt} instead of arrow: {exc}", FallbackWarning, stacklevel=3)
            fmt = _formats.get(nxt)
        except TetherError:
            raise
        except (TypeError, ValueError, OverflowError) as exc:
            raise EncodeError(f"{fmt.name} cannot encode {type(obj).__qualname__}: {exc}") from exc
    decision.payload_size = payload.nbytes

    codec, clevel, creason = _compression.resolve(compression, level, payload, transport, fmt, bandwidth=bandwidth)
    decision.compression, decision.compression_reason = codec.name, creason
    if "ipc_compression" in ectx.options:
        decision.compression = f"arrow-ipc/{ectx.options['ipc_compression']}"
        decision.compression_reason = "Arrow compresses per buffer inside the IPC stream"
    segments = payload.segments
    raw_len = payload.nbytes
    stored_len = raw_len
    filter_size = 0
    if codec.id != 0:
        filter_size = _compression.choose_filter(codec, clevel, payload, fmt)
        if filter_size:
            segments = [_shuffle.shuffle(_join(segments, raw_len), filter_size)]
            decision.compression_reason += f"; byte-shuffled ({filter_size}-byte elements)"
        packed = codec.compress(segments, raw_len, clevel, fmt=fmt, type_info=payload.type_info)
        if packed is None:  # did not pay: fall back to raw, as the policy promises
            decision.compression_reason += "; compressed output was not smaller, stored uncompressed"
            decision.compression = "none"
            codec, clevel = _compression.get("none"), 0
            segments, filter_size = payload.segments, 0
        else:
            segments = [memoryview(part) for part in packed if part]
            stored_len = sum(len(part) for part in packed)

    if checksum == "auto":
        # Compressed payloads are always covered: decompression is O(n) anyway,
        # and a corrupted compressed stream must never decode silently.
        leaves = transport in LEAVING or codec.id != 0
        kind = _checksum.XXH3_64 if (stored_len <= _checksum.SMALL_PAYLOAD or leaves) else _checksum.NONE
    elif checksum is True or checksum == "xxh3-64":
        kind = _checksum.XXH3_64
    elif checksum == "crc32":
        kind = _checksum.CRC32
    else:
        kind = _checksum.NONE

    meta: dict[str, Any] = {
        "format": fmt.name,
        "schema": fmt.schema_version,
        "created_at": time.time_ns() // 1000,
        "producer": _PRODUCER,
        "type": payload.type_info,
        "lineage": [{"producer": _PRODUCER, "pid": os.getpid(), "format": fmt.name}, *(dict(x) for x in (lineage or ()))],
    }
    # Format, schema, producer and a default lineage repeat from frame to
    # frame: their encoding is cached (keyed by pid too, for forked children).
    const_key = None if lineage else (fmt.name, fmt.schema_version, os.getpid())
    if metadata:
        for key in metadata:
            if not isinstance(key, str):
                raise ValidationError(f"metadata keys must be str, got {key!r}.")
        meta["user"] = dict(metadata)
    if _stream is not None:  # a chunk of a tether.stream: see docs/format.md, "Streams"
        meta["stream"] = dict(_stream)
    meta_bytes = _meta.encode(meta, constant=("format", "schema", "producer", "lineage"), key=const_key)
    header = Header(
        format_id=fmt.id,
        compression_id=codec.id,
        checksum_kind=kind,
        flags=_header.FLAG_STREAM_CHUNK if _stream is not None else 0,
        metadata_length=len(meta_bytes),
        metadata_crc32=zlib.crc32(meta_bytes) & 0xFFFFFFFF,
        payload_length=stored_len,
        raw_length=raw_len,
        payload_checksum=0,
        schema_version=fmt.schema_version,
        compression_level=clevel,
        filter_id=_shuffle.FILTER_SHUFFLE if filter_size else _shuffle.FILTER_NONE,
        filter_size=filter_size,
    )
    record(decision)
    return Encoded(header, meta_bytes, segments, kind, decision)


def dumps(
    obj: Any,
    *,
    format: str = "auto",
    compression: str = "none",
    level: int | None = None,
    metadata: Mapping[str, Any] | None = None,
    checksum: bool | str = "auto",
    transport: str = "memory",
    bandwidth: float | None = None,
    lineage: Sequence[Mapping[str, Any]] | None = None,
    options: Mapping[str, Any] | None = None,
) -> bytes:
    """Encode ``obj`` as one complete frame. Options as :func:`encode`.

    Examples
    --------
    >>> import tether
    >>> frame = tether.dumps({"id": 1, "tags": ("a", b"b")})
    >>> tether.loads(frame)
    {'id': 1, 'tags': ('a', b'b')}
    """
    if (compression == "none" and level is None and metadata is None and lineage is None and not options
            and bandwidth is None and type(transport) is str and transport in TRANSPORTS):
        kind = _SMALL_KINDS.get((type(checksum), checksum))
        if kind == -1 and transport in LEAVING:  # "auto" covers every payload that leaves memory
            kind = _checksum.XXH3_64
        if kind is not None:
            frame = None
            if format == "etf":
                frame = _small.dumps_etf(obj, kind, "requested by the caller", "etf")
            elif format == "auto" and type(obj) in (dict, list, tuple):
                name, reason, _ = choose(obj, transport)
                if name == "etf":
                    frame = _small.dumps_etf(obj, kind, reason, "auto")
            if frame is not None:
                return frame
    return bytes(
        encode(
            obj, format=format, compression=compression, level=level, metadata=metadata,
            checksum=checksum, transport=transport, bandwidth=bandwidth, lineage=lineage, options=options,
        )
    )


def dump_into(obj: Any, region: Any, **options: Any) -> Any:
    """Write ``obj`` as a frame straight into a shared-memory region, with no intermediate buffer.

    Options are those of :func:`encode`; ``transport`` defaults to ``"shm"``.
    The frame is visible to readers once this returns.

    Returns
    -------
    tether.shm.FrameRef
        Where the frame lives; ``region.view(ref)`` or ``tether.loads(region)`` reads it.

    Examples
    --------
    >>> import tether
    >>> from tether.shm import Region
    >>> with Region.create(1 << 16) as region:
    ...     ref = tether.dump_into({"k": [1, 2]}, region)
    ...     tether.loads(region)
    {'k': [1, 2]}
    """
    options.setdefault("transport", "shm")
    enc = encode(obj, **options)
    slot, _offset, view = region.reserve(enc.nbytes)
    try:
        enc.write_into(view)
    except BaseException:
        view.release()
        region.release(slot)
        raise
    view.release()
    return region.commit(slot)


def _as_view(buf: Any) -> memoryview:
    region_view = getattr(buf, "__tether_buffer__", None)
    if region_view is not None:
        buf = region_view()
    try:
        mv = memoryview(buf)
    except TypeError:
        raise ValidationError(
            f"Expected bytes, memoryview, mmap or another buffer, got {type(buf).__name__}."
        ) from None
    if not mv.contiguous:
        raise ValidationError("Frame buffer must be contiguous.")
    if mv.format != "B" or mv.ndim != 1:
        mv = mv.cast("B")
    return mv


def _read(mv: memoryview, limits: Limits, *, whole: bool = True) -> tuple[Header, dict[str, Any]]:
    """Read and check header and metadata; ``whole`` also requires exactly one whole frame."""
    header = _header.unpack(mv, limits)
    size = header.frame_size if whole else header.payload_offset
    if len(mv) < size:
        raise TruncatedError(
            f"Frame truncated: header declares {header.frame_size} bytes ({header.metadata_length} metadata, "
            f"{header.payload_length} payload), buffer has {len(mv)}."
        )
    if whole and len(mv) > size:
        raise DecodeError(
            f"{len(mv) - size} bytes after the end of the frame ({size} bytes). Pass exactly one frame, "
            "or slice the buffer to FrameInfo.frame_size."
        )
    mend = HEADER_SIZE + header.metadata_length
    mbytes = mv[HEADER_SIZE:mend]
    computed = zlib.crc32(mbytes) & 0xFFFFFFFF
    if computed != header.metadata_crc32:
        raise ChecksumError(
            f"Frame metadata checksum mismatch: stored crc32 {header.metadata_crc32:#010x}, computed "
            f"{computed:#010x}. The metadata is corrupted; resend the frame.",
            stored=header.metadata_crc32,
            computed=computed,
        )
    if any(mv[mend : header.payload_offset]):
        raise DecodeError("Frame padding before the payload is not zero; the frame is corrupted.")
    meta = _meta.decode(bytes(mbytes), limits)
    return header, meta


def _covers(header: Header) -> str:
    if header.checksum_kind == _checksum.NONE:
        return "header, metadata (payload guarded by its region's commit protocol, or unchecked)"
    return "header, metadata, payload"


def inspect(buf: Any) -> FrameInfo:
    """Read a frame's header and metadata, never its payload.

    Accepts the same inputs as :func:`loads`. The metadata checksum is verified.

    Examples
    --------
    >>> import tether
    >>> print(tether.inspect(tether.dumps("hi")).format)
    scalar
    """
    header, meta = _read(_as_view(buf), get_limits(), whole=False)
    return _info(header, meta)


def _info(header: Header, meta: dict[str, Any]) -> FrameInfo:
    try:
        fmt = _formats.get(header.format_id)
        name = fmt.name
    except UnsupportedFormatError:
        fmt, name = None, str(meta.get("format"))
    try:
        comp = _compression.get(header.compression_id).name
    except UnsupportedFormatError:
        comp = f"unknown ({header.compression_id})"
    created = meta.get("created_at")
    created_at = (
        _dt.datetime.fromtimestamp(created / 1e6, tz=_dt.timezone.utc) if type(created) is int else None
    )
    type_info = meta.get("type") if isinstance(meta.get("type"), dict) else {}
    details: dict[str, Any] = {}
    if fmt is not None:
        try:
            details = fmt.describe(type_info)
        except Exception:  # describing is best effort; inspect must not fail on it
            details = {}
    lineage = meta.get("lineage")
    user = meta.get("user")
    return FrameInfo(
        frame_version=header.version,
        format=name,
        format_id=header.format_id,
        schema_version=header.schema_version,
        compression=comp,
        compression_level=header.compression_level,
        checksum=_checksum.NAMES.get(header.checksum_kind, f"unknown ({header.checksum_kind})"),
        checksum_covers=_covers(header),
        flags=header.flags,
        created_at=created_at,
        metadata_size=header.metadata_length,
        payload_offset=header.payload_offset,
        payload_size=header.payload_length,
        raw_size=header.raw_length,
        frame_size=header.frame_size,
        payload_checksum=header.payload_checksum,
        type=type_info,
        lineage=lineage if isinstance(lineage, list) else [],
        user=user if isinstance(user, dict) else {},
        producer=meta.get("producer") if isinstance(meta.get("producer"), str) else None,
        details=details,
        stream=meta["stream"] if isinstance(meta.get("stream"), dict) else {},
    )


def verify(buf: Any) -> FrameInfo:
    """Check a frame's header, metadata and payload checksums without decoding the payload.

    Raises :class:`tether.ChecksumError` on a mismatch; returns the frame's info.
    """
    mv = _as_view(buf)
    header, meta = _read(mv, get_limits())
    _verify_payload(mv, header, "frame")
    return _info(header, meta)


def _verify_payload(mv: memoryview, header: Header, frame_id: str) -> None:
    if header.checksum_kind == _checksum.NONE:
        return
    start = header.payload_offset
    computed = _checksum.compute(header.checksum_kind, mv[start : start + header.payload_length])
    if computed != header.payload_checksum:
        name = _checksum.NAMES[header.checksum_kind]
        raise ChecksumError(
            f"Payload checksum mismatch in {frame_id}: stored {name} {header.payload_checksum:#x}, "
            f"computed {computed:#x}. The payload is corrupted; resend the frame.",
            stored=header.payload_checksum,
            computed=computed,
        )


def loads(
    buf: Any,
    *,
    into: str | None = None,
    copy: bool = False,
    allow_pickle: bool = False,
    verify: bool = True,
    options: Mapping[str, Any] | None = None,
) -> Any:
    """Decode one frame.

    Parameters
    ----------
    buf : bytes-like
        bytes, bytearray, memoryview, mmap, a shared-memory region, or anything
        with the buffer protocol, holding exactly one frame.
    into : str, optional
        Another representation where one fits: ``"numpy"``, ``"bytes"``,
        ``"memoryview"`` (and the Arrow formats' ``"arrow"``, ``"pandas"``...).
    copy : bool
        False (default) returns read-only views into ``buf`` for arrays and
        large binaries. A view keeps ``buf`` alive (it holds a reference to
        it), so the memory stays valid for as long as any view exists.
        True returns independent, writable copies.
    allow_pickle : bool
        Allow pickle frames. Unpickling runs arbitrary code: only for trusted frames.
    verify : bool
        Verify the payload checksum when the frame has one. The header and
        metadata checksums are always verified.
    options : mapping, optional
        Format options, e.g. ``{"binaries": "str"}`` for etf frames from BEAM.

    Examples
    --------
    >>> import numpy as np, tether
    >>> a = tether.loads(tether.dumps(np.arange(4.0)))
    >>> a, a.flags.writeable
    (array([0., 1., 2., 3.]), False)
    """
    if type(buf) is bytes and into is None:
        value = _small.loads_etf(buf, copy, verify, options)
        if value is not _small.MISS:
            return value
    return _decode(_as_view(buf), into, copy, allow_pickle, verify, options)[0]


def _decode(
    mv: memoryview, into: str | None, copy: bool, allow_pickle: bool, verify: bool, options: Mapping[str, Any] | None
) -> tuple[Any, Header, dict[str, Any]]:
    """Decode one whole frame held in ``mv``: (value, header, metadata)."""
    limits = get_limits()
    header, meta = _read(mv, limits)
    fmt_name = meta.get("format")
    frame_id = f"frame ({fmt_name}, {header.frame_size} B)"
    try:
        fmt = _formats.get(header.format_id)
    except UnsupportedFormatError as exc:
        raise UnsupportedFormatError(
            f"{frame_id} uses format id {header.format_id} ({fmt_name!r}), which is not registered here. {exc}"
        ) from None
    if verify:
        _verify_payload(mv, header, frame_id)
    start = header.payload_offset
    payload = mv[start : start + header.payload_length].toreadonly()
    type_info = meta.get("type")
    if not isinstance(type_info, dict):
        raise DecodeError(f"{frame_id} metadata has no 'type' map.")
    type_info = fmt.migrate(type_info, header.schema_version)
    if header.compression_id != 0:
        codec = _compression.get(header.compression_id)
        payload = codec.decompress(payload, header.raw_length, limits, fmt=fmt, type_info=type_info, frame_id=frame_id)
        if header.filter_id == _shuffle.FILTER_SHUFFLE:
            payload = _shuffle.unshuffle(payload, header.filter_size)
    ctx = DecodeContext(
        into=into,
        copy=copy,
        allow_pickle=allow_pickle,
        options=dict(options or {}),
        limits=limits,
        frame_id=frame_id,
    )
    try:
        return fmt.decode(payload, type_info, ctx), header, meta
    except TetherError:
        raise
    except (ValueError, TypeError, IndexError, KeyError, OverflowError, struct.error, RecursionError, UnicodeError) as exc:
        raise DecodeError(f"{frame_id}: payload does not match its metadata: {type(exc).__name__}: {exc}") from exc
