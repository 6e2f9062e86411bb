"""An Erlang external term format decoder written from OTP's "External Term Format" page.

Independent of tether: it knows nothing of tether's Python types. Values:
integers, floats, lists, tuples and dicts as Python's own; atoms as `SAtom`
(but `true`/`false` as bools and the `none_atom`, `nil` by default, as None);
binaries as `str` or `bytes` by the `binaries` mode (docs/format.md §4, etf
row: "tagged" reads BINARY_EXT as str and 8-bit BIT_BINARY_EXT as bytes,
"beam" reads both as bytes); other bit strings as `SBits`; an improper list
as `SImproper`; pids, ports, references and funs as `SOpaque`.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Any


class ETFError(ValueError):
    """Bytes that are not one well-formed external term."""


@dataclass(frozen=True)
class SAtom:
    name: str


@dataclass(frozen=True)
class SBits:
    data: bytes
    bits: int  # bits used in the last byte, 1..8


@dataclass(frozen=True)
class SImproper:
    items: tuple
    tail: Any


@dataclass(frozen=True)
class SOpaque:
    tag: int
    body: bytes


@dataclass(frozen=True)
class HKey:
    """A map key Python cannot hash as decoded (a list or a map)."""

    value: Any

    def __hash__(self) -> int:
        return hash(repr(self.value))


VERSION = 131
COMPRESSED = 80
# Tags whose body is kept opaque: pids, references, ports, funs.
_OPAQUE = {88, 103, 90, 114, 89, 120, 102, 113, 112}


def decode(data: bytes, binaries: str = "tagged", none_atom: str = "nil", whole: bool = True) -> Any:
    """Decode one term that starts with the version byte 131; `whole` refuses bytes after it."""
    buf = memoryview(bytes(data))
    if len(buf) < 2 or buf[0] != VERSION:
        raise ETFError("no version byte 131")
    if buf[1] == COMPRESSED:
        if len(buf) < 6:
            raise ETFError("truncated compressed term")
        (size,) = struct.unpack_from(">I", buf, 2)
        d = zlib.decompressobj()
        inner = d.decompress(bytes(buf[6:]), size + 1)
        if len(inner) != size or not d.eof:
            raise ETFError("compressed term does not inflate to its declared size")
        buf, pos, end_ok = memoryview(inner), 0, not d.unused_data
    else:
        pos, end_ok = 1, True
    reader = _Reader(buf, binaries, none_atom)
    value, pos = reader.term(pos)
    if whole and (pos != len(buf) or not end_ok):
        raise ETFError(f"{len(buf) - pos} bytes after the term")
    return value


def decode_prefix(data: bytes, binaries: str = "tagged", none_atom: str = "nil") -> Any:
    """Decode one term and ignore any bytes after it (binary_to_term/1 does)."""
    return decode(data, binaries, none_atom, whole=False)


class _Reader:
    def __init__(self, buf: memoryview, binaries: str, none_atom: str) -> None:
        if binaries not in ("tagged", "beam"):
            raise ETFError(f"unknown binaries mode {binaries!r}")
        self.buf, self.binaries, self.none_atom = buf, binaries, none_atom

    def take(self, pos: int, n: int) -> tuple[bytes, int]:
        if n < 0 or pos + n > len(self.buf):
            raise ETFError(f"truncated at byte {pos}")
        return bytes(self.buf[pos : pos + n]), pos + n

    def unpack(self, fmt: str, pos: int) -> tuple[tuple, int]:
        raw, pos = self.take(pos, struct.calcsize(fmt))
        return struct.unpack(fmt, raw), pos

    def term(self, pos: int) -> tuple[Any, int]:
        (tag,), pos = self.unpack(">B", pos)
        handler = _HANDLERS.get(tag)
        if handler is not None:
            return handler(self, pos)
        if tag in _OPAQUE:
            return self.opaque(tag, pos)
        raise ETFError(f"unknown tag {tag} at byte {pos - 1}")

    def atom(self, name: str) -> Any:
        if name == "true":
            return True
        if name == "false":
            return False
        if name == self.none_atom:
            return None
        return SAtom(name)

    def opaque(self, tag: int, pos: int) -> tuple[Any, int]:
        # Walk the body by the documented layouts only to find its end.
        start = pos
        if tag in (88, 103):  # pid: node atom, ID, Serial, Creation
            _, pos = self.term(pos)
            pos += 12 if tag == 88 else 9
        elif tag in (90, 114):  # new(er) reference: Len:16, node, creation, Len ids
            (n,), pos = self.unpack(">H", pos)
            _, pos = self.term(pos)
            pos += (4 if tag == 90 else 1) + 4 * n
        elif tag in (89, 120, 102):  # port
            _, pos = self.term(pos)
            pos += {89: 8, 120: 12, 102: 5}[tag]
        elif tag == 113:  # export: three terms
            for _ in range(3):
                _, pos = self.term(pos)
        else:  # NEW_FUN_EXT: Size counts itself and the rest, not the tag
            (size,), _ = self.unpack(">I", pos)
            pos = start + size
        body, pos = self.take(start, pos - start)
        return SOpaque(tag, body), pos


def _small_int(r: _Reader, pos: int) -> tuple[Any, int]:
    (v,), pos = r.unpack(">B", pos)
    return v, pos


def _int(r: _Reader, pos: int) -> tuple[Any, int]:
    (v,), pos = r.unpack(">i", pos)
    return v, pos


def _big(r: _Reader, pos: int, fmt: str) -> tuple[Any, int]:
    (n, sign), pos = r.unpack(fmt, pos)
    digits, pos = r.take(pos, n)
    v = int.from_bytes(digits, "little")
    return (-v if sign else v), pos


def _new_float(r: _Reader, pos: int) -> tuple[Any, int]:
    (v,), pos = r.unpack(">d", pos)
    return v, pos


def _old_float(r: _Reader, pos: int) -> tuple[Any, int]:
    raw, pos = r.take(pos, 31)
    return float(raw.split(b"\x00", 1)[0].decode("ascii")), pos


def _atom(r: _Reader, pos: int, lenfmt: str, enc: str) -> tuple[Any, int]:
    (n,), pos = r.unpack(lenfmt, pos)
    raw, pos = r.take(pos, n)
    return r.atom(raw.decode(enc)), pos


def _tuple(r: _Reader, pos: int, lenfmt: str) -> tuple[Any, int]:
    (n,), pos = r.unpack(lenfmt, pos)
    items = []
    for _ in range(n):
        v, pos = r.term(pos)
        items.append(v)
    return tuple(items), pos


def _string(r: _Reader, pos: int) -> tuple[Any, int]:
    (n,), pos = r.unpack(">H", pos)
    raw, pos = r.take(pos, n)
    return list(raw), pos


def _list(r: _Reader, pos: int) -> tuple[Any, int]:
    (n,), pos = r.unpack(">I", pos)
    items = []
    for _ in range(n):
        v, pos = r.term(pos)
        items.append(v)
    tail, pos = r.term(pos)
    if tail == []:
        return items, pos
    return SImproper(tuple(items), tail), pos


def _binary(r: _Reader, pos: int) -> tuple[Any, int]:
    (n,), pos = r.unpack(">I", pos)
    raw, pos = r.take(pos, n)
    if r.binaries == "tagged":
        return raw.decode("utf-8"), pos
    return raw, pos


def _bit_binary(r: _Reader, pos: int) -> tuple[Any, int]:
    (n, bits), pos = r.unpack(">IB", pos)
    raw, pos = r.take(pos, n)
    if (n == 0 and bits != 0) or (n and not 1 <= bits <= 8):
        raise ETFError(f"bad bit count {bits}")
    if bits == 8 or n == 0:
        return raw, pos
    return SBits(raw, bits), pos


def _map(r: _Reader, pos: int) -> tuple[Any, int]:
    (n,), pos = r.unpack(">I", pos)
    out: dict = {}
    for _ in range(n):
        k, pos = r.term(pos)
        v, pos = r.term(pos)
        try:
            hash(k)
        except TypeError:
            k = HKey(k)
        out[k] = v
    return out, pos


_HANDLERS = {
    97: _small_int,
    98: _int,
    110: lambda r, p: _big(r, p, ">BB"),
    111: lambda r, p: _big(r, p, ">IB"),
    70: _new_float,
    99: _old_float,
    100: lambda r, p: _atom(r, p, ">H", "latin-1"),
    115: lambda r, p: _atom(r, p, ">B", "latin-1"),
    118: lambda r, p: _atom(r, p, ">H", "utf-8"),
    119: lambda r, p: _atom(r, p, ">B", "utf-8"),
    104: lambda r, p: _tuple(r, p, ">B"),
    105: lambda r, p: _tuple(r, p, ">I"),
    106: lambda r, p: ([], p),
    107: _string,
    108: _list,
    109: _binary,
    77: _bit_binary,
    116: _map,
}
