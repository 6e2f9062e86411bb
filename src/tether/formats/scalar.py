"""scalar: int (any size), float, bool, None and str in a compact binary payload.

Payloads (the type is the metadata's ``type.kind``):

- ``int``: two's complement, little-endian, as few bytes as hold the value;
- ``float``: IEEE 754 binary64, little-endian;
- ``bool``: one byte, 0 or 1;
- ``none``: empty;
- ``str``: UTF-8.
"""

from __future__ import annotations

import struct
from typing import Any, Mapping

from .. import frame
from .._errors import DecodeError, EncodeError, LimitError
from .._types import Atom
from ._base import DecodeContext, EncodeContext, Format, Payload

_F64 = struct.Struct("<d")
# Ints beyond this many bytes are refused on read: int() of them is quadratic.
MAX_INT_BYTES = 1 << 20
_TYPES = {kind: {"kind": kind} for kind in ("int", "float", "bool", "none", "str")}


class ScalarFormat(Format):
    id = 2
    name = "scalar"
    option_keys = frozenset()
    auto_priority = 20

    def can_encode(self, obj: Any) -> bool:
        """None, and exactly int, float, bool and str (not subclasses such as :class:`tether.Atom`)."""
        return obj is None or (type(obj) in (int, float, bool, str))

    def auto_pick(self, obj: Any, transport: str) -> tuple[str, int | None] | None:
        """Claim None, int, float, bool and str of exactly those types.

        Examples
        --------
        >>> import tether
        >>> FORMAT.auto_pick("text", "pipe"), FORMAT.auto_pick(tether.Atom("ok"), "pipe")
        (('str scalar', None), None)
        """
        t = type(obj)
        if obj is None or t is int or t is float or t is str or t is bool:
            return f"{t.__name__} scalar", None  # exact types: an Atom (a str) is a BEAM term
        return None

    def dumps_plain(
        self, obj: Any, kind: int, transport: str, stamp: Mapping[str, Any] | None = None
    ) -> tuple[bytes, int] | None:
        """A whole plain frame around a scalar and its payload size; None when the general path must take it.

        The bytes :func:`tether.frame.build` would write, without its machinery.

        Examples
        --------
        >>> import tether
        >>> frame, size = FORMAT.dumps_plain(-2, -1, "memory")
        >>> size, tether.loads(frame)
        (1, -2)
        """
        t = type(obj)
        if t is int:
            name, data = "int", obj.to_bytes((obj + (obj < 0)).bit_length() // 8 + 1, "little", signed=True)
        elif t is float:
            name, data = "float", _F64.pack(obj)
        elif t is str:
            try:
                name, data = "str", obj.encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate: the general path decides, by reader
                return None
        elif t is bool:
            name, data = "bool", b"\x01" if obj else b"\x00"
        elif obj is None:
            name, data = "none", b""
        else:
            return None
        kind = frame.checksum.kind_for(kind, len(data), transport, False)
        return frame.plain(self, _TYPES[name], data, kind, type_key=name, stamp=stamp), len(data)

    def encode(self, obj: Any, ctx: EncodeContext) -> Payload:
        """The value's bytes: a minimal little-endian two's-complement int, an IEEE double, UTF-8, one byte.

        Examples
        --------
        >>> from tether.formats import EncodeContext
        >>> p = FORMAT.encode(-2, EncodeContext())
        >>> p.type_info, [bytes(s) for s in p.segments]
        ({'kind': 'int'}, [b'\\xfe'])
        """
        if obj is None:
            return Payload({"kind": "none"})
        if isinstance(obj, bool):
            p = Payload({"kind": "bool"})
            p.add(b"\x01" if obj else b"\x00")
        elif isinstance(obj, int):
            p = Payload({"kind": "int"})
            p.add(obj.to_bytes((obj + (obj < 0)).bit_length() // 8 + 1, "little", signed=True))
        elif isinstance(obj, float):
            p = Payload({"kind": "float"})
            p.add(_F64.pack(obj))
        elif isinstance(obj, str) and not isinstance(obj, Atom):
            p = Payload({"kind": "str"})
            p.add(_text(obj, ctx.options.get("reader", "python")))
        else:
            raise EncodeError(f"The scalar format takes int, float, bool, None and str; got {type(obj).__name__}: "
                              "use format=\"auto\".")
        return p

    def decode(self, payload: memoryview, type_info: dict[str, Any], ctx: DecodeContext) -> Any:
        """The scalar of ``type_info["kind"]``; a payload of the wrong size is a DecodeError.

        Examples
        --------
        >>> from tether.formats import DecodeContext
        >>> FORMAT.decode(memoryview(b"\\xfe"), {"kind": "int"}, DecodeContext())
        -2
        """
        kind = type_info.get("kind")
        n = len(payload)
        if kind == "int":
            if n == 0:
                raise DecodeError("scalar int payload is empty; at least one byte is expected.")
            if n > MAX_INT_BYTES:
                raise LimitError(f"scalar int of {n} bytes exceeds {MAX_INT_BYTES}.")
            return int.from_bytes(payload, "little", signed=True)
        if kind == "float":
            if n != 8:
                raise DecodeError(f"scalar float payload has {n} bytes, expected 8.")
            return _F64.unpack(payload)[0]
        if kind == "bool":
            if n != 1 or payload[0] > 1:
                raise DecodeError("scalar bool payload must be one byte, 0 or 1.")
            return bool(payload[0])
        if kind == "none":
            if n:
                raise DecodeError(f"scalar none payload has {n} bytes, expected 0.")
            return None
        if kind == "str":
            try:
                return str(payload, "utf-8", "surrogatepass")
            except UnicodeDecodeError as exc:
                raise DecodeError(f"scalar str payload is not valid UTF-8 at byte {exc.start}.") from exc
        raise DecodeError(f"scalar frame has unknown kind {kind!r}; expected int, float, bool, none or str.")

    def describe(self, type_info: dict[str, Any]) -> dict[str, Any]:
        """The Python type the scalar was written from.

        Examples
        --------
        >>> import tether
        >>> tether.inspect(tether.dumps(1.5)).details
        {'python type': 'float'}
        """
        return {"python type": type_info.get("kind")}


FORMAT = ScalarFormat()


def _text(obj: str, reader: str) -> bytes:
    r"""``obj`` as UTF-8. A lone surrogate (what ``surrogateescape`` leaves of undecodable bytes) is kept for a
    Python reader, as ``surrogatepass`` writes it, and refused for the BEAM, which reads only UTF-8.

    Examples
    --------
    >>> _text("a\ud800", "python")
    b'a\xed\xa0\x80'
    """
    try:
        return obj.encode("utf-8")
    except UnicodeEncodeError as exc:
        if reader == "python":
            return obj.encode("utf-8", "surrogatepass")
        bad = exc.object[exc.start : exc.end]
        raise EncodeError(f"The text at $ holds {bad!r}, which UTF-8 cannot encode (a lone surrogate, as "
                          "os.fsdecode or errors='surrogateescape' leave for undecodable bytes), and the BEAM reads "
                          "only UTF-8: send those bytes as bytes, or clean the text first "
                          "(text.encode('utf-8', 'replace').decode()).") from None
