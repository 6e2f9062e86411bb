"""Reading frames: header and metadata checks, payload checksums, and :class:`FrameInfo`."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field, fields
from typing import Any

from .._errors import ChecksumError, DecodeError, TruncatedError
from .._limits import Limits
from . import _checksum, _header, _meta
from ._checksum import crc32_native
from ._header import ALIGN, HEADER_SIZE, Header

_PADS = tuple(bytes(n) for n in range(ALIGN))  # the zero padding before a payload, by length
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
# Metadata may nest as deep as Limits.max_depth allows, deeper than repr's recursion: str() and repr() of a
# FrameInfo show containers to this depth ("..." below it) and otherwise as repr would.
SHOWN_DEPTH = 64


def shown(value: Any, depth: int = 0) -> str:
    """``repr(value)``, with dicts, lists and tuples nested below :data:`SHOWN_DEPTH` levels shown as ``...``.

    Examples
    --------
    >>> shown({"a": [1, (2,)]})
    "{'a': [1, (2,)]}"
    >>> shown([[[1]]], depth=SHOWN_DEPTH - 1)
    '[...]'
    """
    t = type(value)
    if t is not dict and t is not list and t is not tuple:
        try:
            return repr(value)
        except ValueError:  # an int past sys.get_int_max_str_digits(): metadata may hold one of any size
            return f"<int of {value.bit_length()} bits>" if isinstance(value, int) else f"<{t.__name__}>"
    if depth >= SHOWN_DEPTH:
        return "..."
    if t is dict:
        return "{" + ", ".join(f"{shown(k, depth + 1)}: {shown(v, depth + 1)}" for k, v in value.items()) + "}"
    inner = ", ".join(shown(v, depth + 1) for v in value)
    return f"[{inner}]" if t is list else f"({inner}{',' if len(value) == 1 else ''})"
# created_at values (microseconds since 1970) that a datetime can hold: years 1 to 9999.
_CREATED_MIN = (_dt.datetime(1, 1, 1, tzinfo=_dt.timezone.utc) - _EPOCH) // _dt.timedelta(microseconds=1)
_CREATED_MAX = (_dt.datetime.max.replace(tzinfo=_dt.timezone.utc) - _EPOCH) // _dt.timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class FrameInfo:
    """What a frame's header and metadata say, read without touching the payload.

    Fields read from metadata are informational and never fail a read:
    ``created_at`` is None when the metadata has no integer ``created_at``
    or one outside the years 1-9999 that ``datetime`` holds (a frame from a
    broken clock or a crafted one), and ``type``, ``lineage``, ``user`` and
    ``stream`` are empty when they are not a map (a list for ``lineage``).

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
    user: dict[str, Any]  # held packed (see _Packed) until first read
    producer: str | None
    details: dict[str, Any] = field(default_factory=dict)
    stream: dict[str, Any] = field(default_factory=dict)

    def __getattribute__(self, name: str) -> Any:
        # Large user metadata stays packed until ``user`` is read (by attribute, asdict, repr or ==).
        value = object.__getattribute__(self, name)
        if name == "user" and type(value) is _Packed:
            from .._limits import get_limits

            value = _meta.unpack_user(value.packed, get_limits())
            object.__setattr__(self, "user", value)
        return value

    def as_dict(self) -> dict[str, Any]:
        """Every field as plain data (``user`` decoded, ``created_at`` as ISO text).

        Examples
        --------
        >>> import tether
        >>> tether.inspect(tether.dumps(1, metadata={"k": 1})).as_dict()["user"]
        {'k': 1}
        """
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["created_at"] = self.created_at.isoformat() if self.created_at else None
        return out

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
        # Text details (dtype, order, nx type) read as before, unquoted; containers go through shown().
        rows += [(k, v if type(v) is str else shown(v)) for k, v in self.details.items()]
        for label, value in (("type", self.type), ("lineage", self.lineage), ("user metadata", self.user),
                             ("stream", self.stream)):
            if value:
                rows.append((label, shown(value)))
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)

    def __repr__(self) -> str:
        return "FrameInfo(" + ", ".join(f"{f.name}={shown(getattr(self, f.name))}" for f in fields(self)) + ")"


class _Packed:
    """User metadata as stored (packed), until someone reads ``FrameInfo.user``."""

    __slots__ = ("packed",)

    def __init__(self, packed: Any):
        self.packed = packed

    def __repr__(self) -> str:
        return f"<packed user metadata, {self.packed.get('size') if isinstance(self.packed, dict) else '?'} B>"


def read(mv: memoryview, limits: Limits, *, whole: bool = True) -> tuple[Header, dict[str, Any], memoryview]:
    """Read and check header and metadata: (header, metadata, the stored payload as a read-only view).

    ``whole`` requires ``mv`` to hold exactly one whole frame; without it only
    header and metadata need be there, and the payload view is empty.
    """
    header = _header.unpack(mv, limits)
    start = header.payload_offset
    end = start + header.payload_length
    size = end if whole else start
    have = len(mv)
    if have < size:
        raise TruncatedError(
            f"Frame truncated: header declares {header.frame_size} bytes ({header.metadata_length} metadata, "
            f"{header.payload_length} payload), buffer has {have}."
        )
    if whole and have > size:
        raise trailing(have - size, header)
    mend = HEADER_SIZE + header.metadata_length
    mbytes = mv[HEADER_SIZE:mend]  # read in place: the CRC and the decoder take the view as it is
    computed = crc32_native(mbytes)
    if computed != header.metadata_crc32:
        raise ChecksumError(
            f"Frame metadata checksum mismatch: stored crc32 {header.metadata_crc32:#010x}, computed "
            f"{computed:#010x}. The metadata is corrupted; resend the frame.",
            stored=header.metadata_crc32,
            computed=computed,
        )
    if mend < start and mv[mend:start].tobytes() != _PADS[start - mend]:
        raise DecodeError("Frame padding before the payload is not zero; the frame is corrupted.")
    meta = _meta.decode(mbytes, limits)
    return header, meta, mv[start:size].toreadonly()


def trailing(extra: int, header: Header) -> DecodeError:
    """The error for ``extra`` bytes after a whole frame (whose header is ``header``): one frame was expected.

    Examples
    --------
    >>> import tether
    >>> from tether import frame
    >>> head = frame.unpack(memoryview(bytes(tether.dumps(1))), tether.get_limits())
    >>> str(trailing(3, head)).startswith(f"3 bytes after the end of the frame ({head.frame_size} bytes)")
    True
    """
    size = header.payload_offset + header.payload_length
    if header.flags & _header.FLAG_STREAM_CHUNK:
        return DecodeError(
            f"{extra} bytes after the end of the frame ({size} bytes): this is the first chunk of a "
            "tether stream. Read the stream with tether.stream.StreamReader, or check it with "
            "`tether verify FILE`."
        )
    return DecodeError(
        f"{extra} bytes after the end of the frame ({size} bytes). Pass exactly one frame, "
        "or slice the buffer to FrameInfo.frame_size."
    )


def _covers(header: Header) -> str:
    if header.checksum_kind != _checksum.NONE:
        return "header, metadata, payload"
    if header.compression_id:
        return ("header, metadata; the payload has no frame checksum (checksum='none' was asked for), only its "
                "codec's own check when loads decompresses it: gzip's CRC-32, and lz4's or zstd's content checksum "
                "in frames tether wrote since 2026-11-27")
    if header.payload_length <= _checksum.SMALL_PAYLOAD:
        return "header, metadata; NOT the payload, which carries no checksum (checksum='none' was asked for)"
    return ("header, metadata; NOT the payload, which carries no checksum (checksum='auto' leaves payloads "
            "over 1 MiB in memory and shared memory to a region's commit protocol, or checksum='none' was asked "
            "for: write frames that leave the process with transport='disk' or 'network', or checksum='crc32')")


def frame_name(frame_id: Any) -> str:
    """A frame's name in messages: ``frame_id`` itself, or "frame (<format>, <size> B)" from such a pair.

    Examples
    --------
    >>> frame_name(("etf", 384))
    'frame (etf, 384 B)'
    """
    if type(frame_id) is tuple:
        return f"frame ({frame_id[0]}, {frame_id[1]} B)"
    return str(frame_id)


def verify_payload(stored: memoryview, header: Header, frame_id: Any) -> None:
    """Check the checksum of a frame's stored payload, the view :func:`read` returns (if it carries one).

    ``frame_id`` names the frame in the error: a str, or a (format, size) pair.
    """
    if header.checksum_kind == _checksum.NONE:
        return
    computed = _checksum.compute(header.checksum_kind, stored)
    if computed != header.payload_checksum:
        name = _checksum.NAMES[header.checksum_kind]
        raise ChecksumError(
            f"Payload checksum mismatch in {frame_name(frame_id)}: stored {name} {header.payload_checksum:#x}, "
            f"computed {computed:#x}. The payload is corrupted; resend the frame.",
            stored=header.payload_checksum,
            computed=computed,
        )


def info(header: Header, meta: dict[str, Any], fmt: Any = None, compression: Any = None) -> FrameInfo:
    """What ``header`` and ``meta`` say, as a :class:`FrameInfo`.

    ``fmt`` and ``compression`` are the registered format and compressor of the
    frame's ids, or None when this reader has none under those ids.
    """
    name = fmt.name if fmt is not None else str(meta.get("format"))
    comp = compression.name if compression is not None else f"unknown ({header.compression_id})"
    created = meta.get("created_at")
    created_at = (
        _EPOCH + _dt.timedelta(microseconds=created)
        if type(created) is int and _CREATED_MIN <= created <= _CREATED_MAX else None
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
    if user is None and _meta.PACKED_KEY in meta:
        user = _Packed(meta[_meta.PACKED_KEY])
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
        user=user if isinstance(user, (dict, _Packed)) else {},
        producer=meta.get("producer") if isinstance(meta.get("producer"), str) else None,
        details=details,
        stream=meta["stream"] if isinstance(meta.get("stream"), dict) else {},
    )
