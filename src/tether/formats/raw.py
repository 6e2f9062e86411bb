"""raw: bytes, bytearray and memoryview, written as they are and read as zero-copy views."""

from __future__ import annotations

from typing import Any, Mapping

from .. import frame
from .._buffers import flat_bytes
from .._errors import DecodeError
from ._base import DecodeContext, EncodeContext, Format, Payload

# Up to this size a payload comes back as bytes; larger ones as read-only views.
VIEW_THRESHOLD = 64 << 10
# Up to this size dumps writes bytes in one step (larger ones keep the general path's single copy into place).
PLAIN_MAX = 64 << 10
_BYTES = {"kind": "bytes"}


class RawFormat(Format):
    id = 1
    name = "raw"
    option_keys = frozenset()
    intos = ("bytes", "memoryview", "numpy")
    auto_priority = 10

    def can_encode(self, obj: Any) -> bool:
        """bytes, bytearray and memoryview (subclasses included)."""
        return isinstance(obj, (bytes, bytearray, memoryview))

    def auto_pick(self, obj: Any, transport: str) -> tuple[str, int | None] | None:
        """Claim exactly bytes, bytearray and memoryview; the size is the byte count.

        Examples
        --------
        >>> FORMAT.auto_pick(bytearray(b"abc"), "pipe")
        ('bytearray is written as is', 3)
        """
        t = type(obj)
        if t is bytes or t is bytearray or t is memoryview:
            return f"{t.__name__} is written as is", memoryview(obj).nbytes
        return None

    def dumps_plain(
        self, obj: Any, kind: int, transport: str, stamp: Mapping[str, Any] | None = None
    ) -> tuple[bytes, int] | None:
        """A whole plain frame around small ``bytes`` and its payload size; None for anything else.

        The bytes :func:`tether.frame.build` would write, without its machinery
        (see :meth:`tether.formats.etf.EtfFormat.dumps_plain`).

        Examples
        --------
        >>> import tether
        >>> frame, size = FORMAT.dumps_plain(b"abc", -1, "memory")
        >>> size, tether.loads(frame)
        (3, b'abc')
        >>> FORMAT.dumps_plain(bytearray(b"abc"), -1, "memory") is None  # the general path keeps its kind
        True
        """
        if type(obj) is not bytes or len(obj) > PLAIN_MAX:
            return None
        kind = frame.checksum.kind_for(kind, len(obj), transport, False)
        return frame.plain(self, _BYTES, obj, kind, type_key="bytes", stamp=stamp), len(obj)

    def encode(self, obj: Any, ctx: EncodeContext) -> Payload:
        """The bytes as they are, and which of bytes, bytearray or memoryview (with format and shape) they were."""
        kind = "bytes" if isinstance(obj, bytes) else "bytearray" if isinstance(obj, bytearray) else "memoryview"
        info: dict[str, Any] = {"kind": kind}
        mv = memoryview(obj)
        if kind == "memoryview" and (mv.format != "B" or mv.ndim != 1):
            info["itemformat"] = mv.format
            info["shape"] = list(mv.shape)
        p = Payload(info)
        flat = flat_bytes(mv)  # strided or F-ordered views: row-major, as decode casts them back
        if flat.obj is mv.obj:
            p.add(flat)
        else:  # such a view was copied
            p.add_temporary(flat)
        return p

    def decode(self, payload: memoryview, type_info: dict[str, Any], ctx: DecodeContext) -> Any:
        """The bytes as the kind they were written as, or as ``into=`` ("bytes", "memoryview", "numpy") asks.

        Examples
        --------
        >>> import tether
        >>> tether.loads(tether.dumps(b"abc"), into="numpy").tolist()
        [97, 98, 99]
        """
        kind = type_info.get("kind", "bytes")
        into = ctx.into
        if into == "numpy":
            import numpy as np

            arr = np.frombuffer(payload, dtype=np.uint8)
            return arr.copy() if ctx.copy else arr
        if into == "bytes":
            return bytes(payload)
        if into == "memoryview":
            return memoryview(bytearray(payload)) if ctx.copy else payload  # copy=True: writable, as promised
        if kind == "bytearray":
            return bytearray(payload) if ctx.copy or len(payload) <= VIEW_THRESHOLD else payload
        if kind == "memoryview":
            view = memoryview(bytearray(payload)) if ctx.copy else payload
            fmt, shape = type_info.get("itemformat"), type_info.get("shape")
            if fmt is not None:
                try:
                    view = view.cast(fmt, shape)
                except (TypeError, ValueError) as exc:
                    raise DecodeError(f"raw frame: cannot view payload as format {fmt!r} shape {shape}: {exc}") from exc
            return view
        if ctx.copy or len(payload) <= VIEW_THRESHOLD:
            return bytes(payload)
        return payload


FORMAT = RawFormat()
