"""Building frames: :class:`Encoded` (a frame whose size is known before any byte is written) and :func:`plain`."""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Mapping, NamedTuple, Sequence

from .._buffers import new_bytes, to_bytes, write_parts
from .._errors import EncodeError, ValidationError
from . import _checksum, _header, _meta
from ._header import HEADER_SIZE, Header

_ZEROS = bytes(_header.ALIGN)
_PADS = tuple(bytes(n) for n in range(_header.ALIGN))  # the zero padding before a payload, by length
_crc32 = _checksum.crc32_native
_new_header = tuple.__new__  # a Header from all its fields in order, without the keyword-handling constructor
# Small frames: bytes(Encoded) joins them in one step, and dumps writes them with metadata through a
# format's one-step writer. From this size on a frame is written in place into bytes
# (tether._buffers.new_bytes) instead, by the general path.
JOIN_BELOW = 64 << 10
_NO_STAMP: Mapping[str, Any] = {}


class Stored(NamedTuple):
    """A payload as the frame stores it: its parts, sizes and the compression that made them."""

    parts: Sequence[Any]
    raw_length: int
    stored_length: int
    compression_id: int = 0
    level: int = 0
    filter_id: int = 0
    filter_size: int = 0


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

    __slots__ = ("_header", "_meta", "_parts", "nbytes", "decision", "_checksum", "_on_written")

    def __init__(self, header: Header, meta: bytes, parts: Sequence[Any], decision: Any = None):
        self._header = header
        self._meta = meta
        self._parts = parts
        self._checksum: int | None = None
        self.nbytes: int = header.frame_size
        self.decision = decision
        self._on_written: Callable[[Encoded, int, bool], None] | None = None

    def when_written(self, callback: Callable[[Encoded, int, bool], None] | None) -> None:
        """Call ``callback(self, write_ns, copied)`` once, after the first whole write.

        ``write_ns`` is how long that write took (nanoseconds); ``copied`` is True
        for ``bytes()`` (a new bytes object) and False for :meth:`write_into`
        (the caller's buffer). :func:`tether.encode` counts the frame for
        :mod:`tether.metrics` so: a frame holds one callback, and one given here
        replaces that one (None takes it back, for a caller that counts the frame
        itself). An exception the callback raises is logged, never raised: the
        frame is written by then.

        Examples
        --------
        >>> import tether
        >>> seen = []
        >>> enc = tether.encode(b"x")
        >>> enc.when_written(lambda e, ns, copied: seen.append((e.nbytes, copied)))
        >>> _ = bytes(enc); _ = bytes(enc)
        >>> seen == [(enc.nbytes, True)]
        True
        """
        self._on_written = callback

    def _written(self, started: int, copied: bool) -> None:
        callback, self._on_written = self._on_written, None
        if callback is not None:
            try:
                callback(self, time.perf_counter_ns() - started, copied)
            except Exception:  # noqa: BLE001 - an observer's failure must not fail a write already done
                logging.getLogger("tether").exception("a frame's when_written callback raised")

    @property
    def header(self) -> Header:
        """The frame header; its payload checksum is filled in by the first write."""
        h = self._header
        if self._checksum is None or h.payload_checksum == self._checksum:
            return h
        # Kept: _replace costs microseconds, and callers (metrics, streams) read the header after each write.
        h = self._header = h._replace(payload_checksum=self._checksum)
        return h

    @property
    def raw_length(self) -> int:
        """The payload's bytes before compression (``header.raw_length``, without rebuilding the header)."""
        return self._header.raw_length

    def write_into(self, buffer: Any, offset: int = 0) -> int:
        """Write the frame into ``buffer[offset:]``; return the number of bytes written.

        ``buffer`` is any writable buffer (bytearray, mmap, memoryview, a shared
        memory region). The payload lands 64-byte aligned relative to ``offset``.
        """
        started = time.perf_counter_ns() if self._on_written is not None else 0
        self._write(_writable(buffer), offset)
        if self._on_written is not None:
            self._written(started, False)
        return self.nbytes

    def _write(self, dest: memoryview, offset: int) -> None:
        if type(offset) is not int or offset < 0 or offset + self.nbytes > len(dest):
            raise ValidationError(
                f"Frame of {self.nbytes} bytes does not fit at offset {offset} of a {len(dest)}-byte buffer."
            )
        h = self._header
        mstart = offset + HEADER_SIZE
        pstart = offset + h.payload_offset
        dest[mstart : mstart + len(self._meta)] = self._meta
        pad_from = mstart + len(self._meta)
        dest[pad_from:pstart] = _ZEROS[: pstart - pad_from]
        end = write_parts(dest, pstart, self._parts)
        if end != pstart + h.payload_length:  # a format lied about its size
            raise EncodeError(f"Format wrote {end - pstart} payload bytes, declared {h.payload_length}.")
        if h.checksum_kind != _checksum.NONE:
            self._checksum = _checksum.compute(h.checksum_kind, dest[pstart:end])
        dest[offset : offset + HEADER_SIZE] = h.pack(self._checksum)

    def __bytes__(self) -> bytes:
        started = time.perf_counter_ns() if self._on_written is not None else 0
        joined = self._joined() if self.nbytes < JOIN_BELOW else None
        if joined is None:
            out, view = new_bytes(self.nbytes)
            try:
                self._write(view, 0)
            finally:
                view.release()
            joined = to_bytes(out)
        if self._on_written is not None:
            self._written(started, True)
        return joined

    def _joined(self) -> bytes | None:
        """The frame as :meth:`write_into` lays it out, by one join; None when a part is a writer (a Segment).

        A small frame's buffer, views and slices cost more than its bytes: this writes the same bytes.
        """
        parts = self._parts
        for part in parts:
            # Only flat byte views: write_into refuses other shapes and formats, and copies strided views.
            if type(part) is not memoryview or not part.c_contiguous or part.format != "B" or part.ndim != 1:
                return None
        data = parts[0] if len(parts) == 1 else memoryview(b"".join(parts))
        h = self._header
        if data.nbytes != h.payload_length:  # a format lied about its size
            raise EncodeError(f"Format wrote {data.nbytes} payload bytes, declared {h.payload_length}.")
        if h.checksum_kind != _checksum.NONE:
            self._checksum = _checksum.compute(h.checksum_kind, data)
        meta = self._meta
        return b"".join((h.pack(self._checksum), meta, _PADS[-(HEADER_SIZE + len(meta)) % _header.ALIGN], data))

    def __len__(self) -> int:
        return self.nbytes

    def __repr__(self) -> str:
        name = getattr(self.decision, "format", self._header.format_id)
        return f"<tether.Encoded {name} {self.nbytes} B>"


def _writable(buffer: Any) -> memoryview:
    try:
        dest = memoryview(buffer)
    except TypeError:
        raise ValidationError(f"write_into needs a writable buffer, got {type(buffer).__name__}.") from None
    if dest.readonly:
        raise ValidationError("write_into needs a writable buffer; this one is read-only.")
    if not dest.c_contiguous:
        raise ValidationError("write_into needs a C-contiguous buffer (a flat bytearray, mmap or region).")
    return dest if dest.format == "B" and dest.ndim == 1 else dest.cast("B")


def build(
    fmt: Any,
    type_info: dict[str, Any],
    stored: Stored,
    kind: int,
    *,
    user: Mapping[str, Any] | None = None,
    lineage: Sequence[Mapping[str, Any]] | None = None,
    stream: Mapping[str, Any] | None = None,
    decision: Any = None,
    step: str | None = None,
) -> Encoded:
    """An :class:`Encoded` frame of format ``fmt`` holding ``stored``, with payload checksum ``kind``.

    ``step`` names this write in the frame's own lineage entry (see :func:`tether.frame._meta.build`).
    """
    meta = _meta.build(fmt.name, fmt.schema_version, type_info, user=user, lineage=lineage, stream=stream, step=step)
    flags = _header.FLAG_STREAM_CHUNK if stream is not None else 0
    _, raw, size, comp, level, filter_id, filter_size = stored
    # Header's fields in order (format_id ... compression_level, version, filter_id, filter_size); the payload
    # checksum is filled in when the frame is written.
    header = _new_header(Header, (fmt.id, comp, kind, flags, len(meta), _crc32(meta), size, raw, 0, fmt.schema_version,
                                  level, _header.FRAME_VERSION, filter_id, filter_size))
    return Encoded(header, meta, stored.parts, decision)


def plain(
    fmt: Any, type_info: dict[str, Any], data: bytes, kind: int, type_key: Any,
    stamp: Mapping[str, Any] | None = None,
) -> bytes:
    """A whole uncompressed frame around one ``bytes`` payload.

    The same bytes :func:`build` writes for such a frame, for small values where
    building an :class:`Encoded` costs more than the value; ``type_key`` names
    ``type_info`` for the metadata cache. ``stamp`` holds :func:`build`'s
    ``user``, ``lineage`` and ``step`` when the frame carries them.

    Examples
    --------
    >>> import tether
    >>> frame = plain(tether.formats.get("raw"), {"kind": "bytes"}, b"abc", 2, "bytes", {"user": {"k": "v"}})
    >>> tether.loads(frame), tether.inspect(frame).user
    (b'abc', {'k': 'v'})
    """
    schema = fmt.schema_version
    meta = _meta.build(fmt.name, schema, type_info, type_key=type_key, **(stamp or _NO_STAMP))
    n = len(data)
    mlen = len(meta)
    head = _header.pack(fmt.id, 0, kind, 0, mlen, _crc32(meta), n, n, _checksum.compute(kind, data), schema)
    return b"".join((head, meta, _PADS[-(HEADER_SIZE + mlen) % _header.ALIGN], data))
