"""Pure-Python Erlang External Term Format codec: iterative, complete, bounded.

This is the reference implementation. ``tether._speedups`` accelerates the same
contract; both are tested against each other and against a real ``erl``.

Neither coder recurses: BEAM legitimately sends lists nested a million deep, so
decoding and encoding keep an explicit stack and a depth limit instead of the
C stack.
"""

from __future__ import annotations

import math
import struct
import zlib
from typing import Any

from ._errors import DecodeError, EncodeError, LimitError, MappingError, TruncatedError
from ._limits import Limits, get_limits
from ._types import (
    Atom,
    BitBinary,
    FrozenList,
    FrozenMap,
    ImproperList,
    OpaqueTerm,
    Pid,
    Port,
    Reference,
)

VERSION = 131

# Tags from erl_ext_dist.
NEW_FLOAT = 70
BIT_BINARY = 77
COMPRESSED = 80
ATOM_CACHE_REF = 82
DIST_HEADER = 68
DIST_FRAG_HEADER = 69
DIST_FRAG_CONT = 70
NEW_PID = 88
NEW_PORT = 89
NEWER_REFERENCE = 90
SMALL_INTEGER = 97
INTEGER = 98
FLOAT = 99
ATOM = 100
REFERENCE = 101
PORT = 102
PID = 103
SMALL_TUPLE = 104
LARGE_TUPLE = 105
NIL = 106
STRING = 107
LIST = 108
BINARY = 109
SMALL_BIG = 110
LARGE_BIG = 111
NEW_FUN = 112
EXPORT = 113
NEW_REFERENCE = 114
SMALL_ATOM = 115
MAP = 116
FUN = 117
ATOM_UTF8 = 118
SMALL_ATOM_UTF8 = 119
V4_PORT = 120
LOCAL = 121

BINARY_MODES = ("bytes", "str", "tagged")
CHARLIST_MODES = ("list", "str")
ATOM_MODES = ("atom", "str")
NAN_MODES = ("error", "atom")

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_I32 = struct.Struct(">i")
_F64 = struct.Struct(">d")
_u16 = _U16.unpack_from
_u32 = _U32.unpack_from
_i32 = _I32.unpack_from
_f64 = _F64.unpack_from

# Stack frame kinds while decoding.
_K_LIST, _K_TAIL, _K_TUPLE, _K_MAP = 0, 1, 2, 3
_NOKEY = object()

_TAG_NAMES = {
    value: name
    for name, value in globals().items()
    if name.isupper() and isinstance(value, int) and name not in ("VERSION",)
}


class Options:
    """Resolved decode/encode options, validated once per call."""

    __slots__ = (
        "binaries", "charlists", "atoms", "none_atom", "nan", "minor_version", "limits", "structs",
        "warn_charlists", "views",
    )

    def __init__(
        self,
        *,
        binaries: str = "bytes",
        charlists: str = "list",
        atoms: str = "atom",
        none_atom: str | None = "nil",
        nan: str = "error",
        minor_version: int = 2,
        limits: Limits | None = None,
        structs: bool = True,
        warn_charlists: bool = True,
        views: int = 0,
    ):
        from ._errors import ValidationError

        for name, value, modes in (
            ("binaries", binaries, BINARY_MODES),
            ("charlists", charlists, CHARLIST_MODES),
            ("atoms", atoms, ATOM_MODES),
            ("nan", nan, NAN_MODES),
        ):
            if value not in modes:
                raise ValidationError(
                    f"Invalid {name} {value!r}. Valid options are: {', '.join(modes)}."
                )
        if minor_version not in (0, 1, 2):
            raise ValidationError(f"Invalid minor_version {minor_version!r}. Valid options are: 0, 1, 2.")
        if none_atom is not None and not isinstance(none_atom, str):
            raise ValidationError(f"none_atom must be an atom name or None, got {none_atom!r}.")
        self.binaries = binaries
        self.charlists = charlists
        self.atoms = atoms
        self.none_atom = none_atom
        self.nan = nan
        self.minor_version = minor_version
        self.limits = limits if limits is not None else get_limits()
        self.structs = structs
        self.warn_charlists = warn_charlists
        # Binaries of at least this many bytes decode as read-only views of the input (0: never).
        self.views = views


# ---------------------------------------------------------------- decoding


def _path(stack: list) -> str:
    """Render the decoder stack as a JSON-path-like location, e.g. ``$[3].price``."""
    out = ["$"]
    for frame in stack:
        kind = frame[0]
        if kind in (_K_LIST, _K_TUPLE):
            out.append(f"[{len(frame[1])}]")
        elif kind == _K_TAIL:
            out.append(".<tail>")
        elif kind == _K_MAP:
            key = frame[3]
            if key is _NOKEY:
                out.append(f".<key {len(frame[1])}>")
            else:
                out.append(f".{key}" if isinstance(key, str) and key.isidentifier() else f"[{key!r}]")
    return "".join(out)


def _freeze(value: Any) -> Any:
    """Make a decoded map key hashable, iteratively, wrapping lists and maps."""
    if isinstance(value, (set, frozenset)):
        return frozenset(_freeze(v) for v in value)
    if isinstance(value, (list, dict, tuple, ImproperList)):
        # Post-order rebuild with an explicit stack, as keys may nest deeply too.
        work: list[tuple[Any, bool]] = [(value, False)]
        results: list[Any] = []
        while work:
            node, done = work.pop()
            if isinstance(node, dict) and not isinstance(node, FrozenMap):
                children = [c for kv in node.items() for c in kv]
            elif isinstance(node, (list, tuple)) and not isinstance(node, FrozenList):
                children = list(node)
            elif isinstance(node, ImproperList):
                children = [*node.items, node.tail]
            else:
                results.append(node)
                continue
            if not done:
                work.append((node, True))
                work.extend((c, False) for c in reversed(children))
                continue
            n = len(children)
            vals = results[len(results) - n :] if n else []
            del results[len(results) - n :]
            if isinstance(node, dict):
                results.append(FrozenMap(zip(vals[0::2], vals[1::2])))
            elif isinstance(node, tuple):
                results.append(tuple(vals))
            elif isinstance(node, list):
                results.append(FrozenList(vals))
            else:
                results.append(ImproperList(vals[:-1], vals[-1]))
        return results[0]
    return value


def decode(data: Any, opts: Options | None = None) -> Any:
    """Decode one complete ETF value (starting with byte 131)."""
    opts = opts or Options()
    # The C decoder reads any buffer in place; only the Python fallback needs bytes.
    buf = data
    if not isinstance(data, bytes):
        buf = memoryview(data)
        if buf.format != "B" or buf.ndim != 1:
            buf = buf.cast("B")
    if not len(buf):
        raise TruncatedError("Empty input: an ETF value starts with byte 131.")
    if buf[0] != VERSION:
        raise DecodeError(
            f"Not an ETF value: first byte is {buf[0]}, expected 131 (as written by term_to_binary)."
        )
    if len(buf) < 2:
        raise TruncatedError("ETF value ends after the version byte.")
    tag = buf[1]
    if tag == COMPRESSED:
        buf = _inflate(buf, 2, opts.limits)
        value, pos = decode_term(buf, 0, opts)
    elif tag in (DIST_HEADER, DIST_FRAG_HEADER) or tag == 72:
        raise DecodeError(
            "This is a distribution header (tag %d), not a term: strip the distribution "
            "protocol framing and pass the term that follows it." % tag
        )
    else:
        value, pos = decode_term(buf, 1, opts)
    end = len(buf)
    if pos != end:
        raise DecodeError(
            f"{end - pos} trailing bytes after the ETF value at offset {pos}: "
            "pass exactly one term_to_binary result."
        )
    return value


def _inflate(buf: bytes, pos: int, limits: Limits) -> bytes:
    if len(buf) < pos + 4:
        raise TruncatedError("Compressed ETF (tag 80) ends before its uncompressed size.")
    (size,) = _u32(buf, pos)
    if size > limits.max_uncompressed_size:
        raise LimitError(
            f"Compressed ETF declares {size} uncompressed bytes, over the limit of "
            f"{limits.max_uncompressed_size}; raise Limits.max_uncompressed_size if this is expected."
        )
    d = zlib.decompressobj()
    try:
        # max_length bounds the output: a bomb cannot allocate past the declared size.
        out = d.decompress(buf[pos + 4 :], size + 1)
    except zlib.error as exc:
        raise DecodeError(f"Compressed ETF (tag 80) is not valid zlib data: {exc}.") from exc
    if len(out) != size or not d.eof:
        raise DecodeError(
            f"Compressed ETF (tag 80) declares {size} bytes but inflates to "
            f"{'more than ' if len(out) > size else ''}{len(out)}{'' if d.eof else ' (stream incomplete)'}."
        )
    if d.unused_data:
        raise DecodeError(f"{len(d.unused_data)} trailing bytes after the compressed ETF value.")
    return out


_BIN_CODES = {"bytes": 0, "str": 1, "tagged": 2}


_HOOK: list[Any] = []


def _struct_hook() -> Any:
    if not _HOOK:  # imported on first use: _structs imports this module
        from ._structs import to_python

        _HOOK.append(to_python)
    return _HOOK[0]


def decode_term(buf: bytes, pos: int, opts: Options) -> tuple[Any, int]:
    """Decode the term whose tag is at ``buf[pos]``; return it and the end offset.

    The C fast path runs first; on anything it does not handle (rare tags,
    malformed input, limits) the Python decoder takes the whole term, so
    errors always carry the Python decoder's path and message.
    """
    if _c is not None:
        limits = opts.limits
        views = opts.views
        try:
            return _c.decode(
                buf, pos, _BIN_CODES[opts.binaries], 1 if opts.charlists == "str" else 0 if opts.warn_charlists else 2,
                opts.atoms == "str",
                opts.none_atom, limits.max_depth, limits.max_atoms, _struct_hook() if opts.structs else None,
                _readonly_view(buf) if views else None, views,
            )
        except _c.Fallback:
            pass
    try:
        return _decode_term(buf if isinstance(buf, bytes) else bytes(buf), pos, opts, buf)
    except (IndexError, struct.error) as exc:  # pragma: no cover - every read is bounds-checked
        raise TruncatedError(f"ETF input ends early: {exc}.") from exc


def _readonly_view(buf: Any) -> memoryview:
    view = memoryview(buf)
    return view if view.readonly else view.toreadonly()


def _decode_term(buf: bytes, pos: int, opts: Options, source: Any = None) -> tuple[Any, int]:
    n_buf = len(buf)
    views = opts.views
    base = _readonly_view(source if source is not None else buf) if views else None
    limits = opts.limits
    max_depth = limits.max_depth
    max_atoms = limits.max_atoms
    atoms_as_str = opts.atoms == "str"
    binaries = opts.binaries
    bin_str = binaries == "str"
    tagged = binaries == "tagged"
    chars_str = opts.charlists == "str"
    none_atom = opts.none_atom
    structs = opts.structs
    warn_chars = opts.warn_charlists
    if structs:
        from ._structs import to_python as struct_hook
    textlike: list[str] = []  # paths of charlists that look like text, for one warning
    atom_cache: dict[bytes, Any] = {}
    stack: list[list] = []
    append_frame = stack.append

    def fail(msg: str, cls: type = DecodeError) -> DecodeError:
        return cls(f"{msg} at {_path(stack)} (offset {pos}).")

    def need(n: int) -> None:
        if pos + n > n_buf:
            raise fail(f"ETF input ends early: {n} bytes needed, {n_buf - pos} left", TruncatedError)

    def atom_at(p: int, tag: int) -> tuple[Any, int]:
        if tag == SMALL_ATOM_UTF8 or tag == SMALL_ATOM:
            if p >= n_buf:
                raise fail("ETF input ends inside an atom", TruncatedError)
            n = buf[p]
            p += 1
        elif tag == ATOM_UTF8 or tag == ATOM:
            if p + 2 > n_buf:
                raise fail("ETF input ends inside an atom", TruncatedError)
            n = (buf[p] << 8) | buf[p + 1]
            p += 2
        else:
            raise fail(f"Expected an atom, found tag {tag}")
        end = p + n
        if end > n_buf:
            raise fail("ETF input ends inside an atom", TruncatedError)
        raw = buf[p:end]
        key = raw if tag in (SMALL_ATOM_UTF8, ATOM_UTF8) else b"\x00" + raw
        value = atom_cache.get(key)
        if value is None:
            try:
                name = raw.decode("utf-8") if key is raw else raw.decode("latin-1")
            except UnicodeDecodeError as exc:
                raise fail(f"Atom is not valid UTF-8 ({exc.reason})") from exc
            if len(name) > 255:
                raise fail(f"Atom of {len(name)} characters; Erlang allows at most 255")
            if name == "true":
                value = True
            elif name == "false":
                value = False
            elif none_atom is not None and name == none_atom:
                value = None
            else:
                value = name if atoms_as_str else Atom(name)
            if len(atom_cache) >= max_atoms:
                raise fail(f"More than {max_atoms} distinct atoms (Limits.max_atoms)", LimitError)
            atom_cache[key] = value
        return value, end

    def node_at(p: int) -> tuple[Any, int]:
        if p >= n_buf:
            raise fail("ETF input ends before a node name", TruncatedError)
        node, p = atom_at(p + 1, buf[p])
        if not isinstance(node, str) or node is None:
            node = Atom("true" if node is True else "false" if node is False else str(none_atom))
        return node, p

    while True:
        if pos >= n_buf:
            raise fail("ETF input ends before a term", TruncatedError)
        tag = buf[pos]
        pos += 1
        # Most frequent tags first: the chain is the dispatch.
        if tag == SMALL_INTEGER:
            if pos >= n_buf:
                raise fail("ETF input ends inside an integer", TruncatedError)
            value = buf[pos]
            pos += 1
        elif tag == SMALL_ATOM_UTF8 or tag == ATOM_UTF8 or tag == ATOM or tag == SMALL_ATOM:
            value, pos = atom_at(pos, tag)
        elif tag == BINARY or tag == BIT_BINARY:
            if tag == BINARY:
                need(4)
                (n,) = _u32(buf, pos)
                pos += 4
                bits = 8
            else:
                need(5)
                (n,) = _u32(buf, pos)
                bits = buf[pos + 4]
                pos += 5
                if (n == 0 and bits != 0) or (n and not 1 <= bits <= 8):
                    raise fail(f"Invalid bit binary: {bits} bits in the last of {n} bytes")
                if n == 0:
                    bits = 8
            end = pos + n
            if end > n_buf:
                raise fail(f"Binary declares {n} bytes but {n_buf - pos} remain", TruncatedError)
            if views and n >= views and bits == 8 and (binaries == "bytes" or (tagged and tag == BIT_BINARY)):
                value = base[pos:end]  # a large binary: a view of the input, no copy
            elif bits != 8:
                value = BitBinary(buf[pos:end], bits)
            elif tagged and tag == BINARY:
                raw = buf[pos:end]
                try:
                    value = raw.decode("utf-8")
                except UnicodeDecodeError:
                    value = raw
            elif bin_str:
                value = _to_str(buf[pos:end], fail)
            else:
                value = buf[pos:end]
            pos = end
        elif tag == MAP:
            need(4)
            (n,) = _u32(buf, pos)
            pos += 4
            if n == 0:
                value = {}
            else:
                if 2 * n > n_buf - pos:
                    raise fail(f"Map declares {n} pairs but only {n_buf - pos} bytes remain", TruncatedError)
                if len(stack) >= max_depth:
                    raise fail(f"Nesting deeper than {max_depth} (Limits.max_depth)", LimitError)
                append_frame([_K_MAP, {}, 2 * n, _NOKEY, n])
                continue
        elif tag == INTEGER:
            need(4)
            (value,) = _i32(buf, pos)
            pos += 4
        elif tag == NEW_FLOAT:
            need(8)
            (value,) = _f64(buf, pos)
            pos += 8
            if not math.isfinite(value):
                raise fail("Non-finite float; Erlang floats are always finite")
        elif tag == SMALL_TUPLE or tag == LARGE_TUPLE:
            if tag == SMALL_TUPLE:
                need(1)
                n = buf[pos]
                pos += 1
            else:
                need(4)
                (n,) = _u32(buf, pos)
                pos += 4
            if n == 0:
                value = ()
            else:
                if n > n_buf - pos:
                    raise fail(f"Tuple declares {n} elements but only {n_buf - pos} bytes remain", TruncatedError)
                if len(stack) >= max_depth:
                    raise fail(f"Nesting deeper than {max_depth} (Limits.max_depth)", LimitError)
                append_frame([_K_TUPLE, [], n])
                continue
        elif tag == LIST:
            need(4)
            (n,) = _u32(buf, pos)
            pos += 4
            if n + 1 > n_buf - pos:
                raise fail(f"List declares {n} elements but only {n_buf - pos} bytes remain", TruncatedError)
            if len(stack) >= max_depth:
                raise fail(f"Nesting deeper than {max_depth} (Limits.max_depth)", LimitError)
            if n == 0:
                append_frame([_K_TAIL, []])
            else:
                append_frame([_K_LIST, [], n])
            continue
        elif tag == NIL:
            value = []
        elif tag == STRING:
            need(2)
            n = (buf[pos] << 8) | buf[pos + 1]
            pos += 2
            end = pos + n
            if end > n_buf:
                raise fail(f"String declares {n} bytes but {n_buf - pos} remain", TruncatedError)
            raw = buf[pos:end]
            pos = end
            if chars_str:
                value = raw.decode("latin-1")
            else:
                value = list(raw)
                if warn_chars and n >= 2 and raw.isascii() and raw.decode("ascii").isprintable():
                    textlike.append(f"{_path(stack)} ({raw[:20].decode('ascii')!r})")
        elif tag == SMALL_BIG or tag == LARGE_BIG:
            if tag == SMALL_BIG:
                need(2)
                n = buf[pos]
                pos += 1
            else:
                need(5)
                (n,) = _u32(buf, pos)
                pos += 4
            sign = buf[pos]
            pos += 1
            end = pos + n
            if end > n_buf:
                raise fail(f"Big integer declares {n} bytes but {n_buf - pos} remain", TruncatedError)
            if sign > 1:
                raise fail(f"Big integer sign byte is {sign}, expected 0 or 1")
            value = int.from_bytes(buf[pos:end], "little")
            if sign:
                value = -value
            pos = end
        elif tag == FLOAT:
            need(31)
            text = buf[pos : pos + 31].split(b"\x00", 1)[0]
            pos += 31
            try:
                value = float(text.decode("ascii"))
            except (UnicodeDecodeError, ValueError) as exc:
                raise fail(f"Invalid FLOAT_EXT text {text!r}") from exc
            if not math.isfinite(value):
                raise fail("Non-finite float; Erlang floats are always finite")
        elif tag == NEW_PID or tag == PID:
            node, pos = node_at(pos)
            width = 4 if tag == NEW_PID else 1
            need(8 + width)
            pid_id, serial = struct.unpack_from(">II", buf, pos)
            pos += 8
            creation = int.from_bytes(buf[pos : pos + width], "big")
            pos += width
            value = Pid(node, pid_id, serial, creation, tag)
        elif tag == NEW_PORT or tag == V4_PORT or tag == PORT:
            node, pos = node_at(pos)
            id_width = 8 if tag == V4_PORT else 4
            cr_width = 1 if tag == PORT else 4
            need(id_width + cr_width)
            port_id = int.from_bytes(buf[pos : pos + id_width], "big")
            pos += id_width
            creation = int.from_bytes(buf[pos : pos + cr_width], "big")
            pos += cr_width
            value = Port(node, port_id, creation, tag)
        elif tag == NEWER_REFERENCE or tag == NEW_REFERENCE:
            need(2)
            n = (buf[pos] << 8) | buf[pos + 1]
            pos += 2
            if n > 5:
                raise fail(f"Reference with {n} id words; at most 5 are defined")
            node, pos = node_at(pos)
            cr_width = 4 if tag == NEWER_REFERENCE else 1
            need(cr_width + 4 * n)
            creation = int.from_bytes(buf[pos : pos + cr_width], "big")
            pos += cr_width
            ids = struct.unpack_from(">%dI" % n, buf, pos)
            pos += 4 * n
            value = Reference(node, creation, tuple(ids), tag)
        elif tag == REFERENCE:
            node, pos = node_at(pos)
            need(5)
            (ref_id,) = _u32(buf, pos)
            creation = buf[pos + 4]
            pos += 5
            value = Reference(node, creation, (ref_id,), tag)
        elif tag == NEW_FUN:
            need(4)
            (size,) = _u32(buf, pos)
            start = pos - 1
            end = start + 1 + size
            if size < 4 or end > n_buf:
                raise fail(f"Fun declares {size} bytes but {n_buf - pos} remain", TruncatedError)
            value = OpaqueTerm(tag, buf[start:end])
            pos = end
        elif tag == EXPORT:
            start = pos - 1
            for _ in range(2):
                if pos >= n_buf:
                    raise fail("ETF input ends inside an export", TruncatedError)
                _, pos = atom_at(pos + 1, buf[pos])
            need(2)
            if buf[pos] != SMALL_INTEGER:
                raise fail("Export arity must be a small integer")
            pos += 2
            value = OpaqueTerm(tag, buf[start:pos])
        elif tag == COMPRESSED:
            raise fail("Compressed term (tag 80) is only valid right after the version byte")
        elif tag == LOCAL:
            raise fail(
                "LOCAL_EXT (tag 121) terms are only meaningful inside the node that wrote them; "
                "encode with term_to_binary/1 without the local option"
            )
        elif tag == ATOM_CACHE_REF:
            raise fail("ATOM_CACHE_REF (tag 82) belongs to the distribution protocol, not term_to_binary output")
        elif tag == FUN:
            raise fail("FUN_EXT (tag 117) was removed in OTP R16 and is not supported")
        else:
            raise fail(f"Unknown ETF tag {tag}")

        # A value is complete: hand it to the innermost open container, and
        # close every container that this completes.
        while True:
            if not stack:
                if textlike:
                    _warn_charlists(textlike)
                return value, pos
            top = stack[-1]
            kind = top[0]
            if kind == _K_LIST:
                top[1].append(value)
                top[2] -= 1
                if top[2]:
                    break
                if pos < n_buf and buf[pos] == NIL:
                    pos += 1
                    stack.pop()
                    value = top[1]
                    continue
                top[0] = _K_TAIL
                break
            if kind == _K_MAP:
                key = top[3]
                if key is _NOKEY:
                    top[3] = value
                else:
                    d = top[1]
                    try:
                        d[key] = value
                    except TypeError:
                        d[_freeze(key)] = value
                    top[3] = _NOKEY
                top[2] -= 1
                if top[2]:
                    break
                stack.pop()
                value = top[1]
                if len(value) != top[4]:
                    raise fail(
                        f"Map declares {top[4]} pairs but keys collide in Python ({len(value)} distinct): "
                        "duplicate keys, or keys such as 1, 1.0 and true that Python treats as equal"
                    )
                if structs and "__struct__" in value:
                    try:
                        value = struct_hook(value)
                    except (TypeError, ValueError, KeyError, ArithmeticError) as exc:
                        raise fail(f"Struct {value.get('__struct__')} does not convert: {exc}") from exc
                continue
            if kind == _K_TUPLE:
                top[1].append(value)
                top[2] -= 1
                if top[2]:
                    break
                stack.pop()
                value = tuple(top[1])
                continue
            # _K_TAIL: value is the tail of a list whose elements are done.
            stack.pop()
            items = top[1]
            if isinstance(value, list):
                items.extend(value)
                value = items
            elif isinstance(value, ImproperList):
                value = ImproperList(items + value.items, value.tail)
            elif not items:
                raise fail("List with no elements and a non-list tail")
            else:
                value = ImproperList(items, value)
            continue


def _warn_charlists(paths: list[str]) -> None:
    import warnings

    from ._errors import LossyConversionWarning

    more = f" (and {len(paths) - 1} more)" if len(paths) > 1 else ""
    warnings.warn(
        f"Charlist at {paths[0]}{more} looks like text but decodes as a list of ints, as Erlang cannot tell "
        "them apart. Pass charlists='str' for text, or send Elixir strings (binaries).",
        LossyConversionWarning,
        stacklevel=5,
    )


def _make_improper(items: list, tail: Any) -> Any:
    """Join list items and a non-NIL tail the way binary_to_term does (C fast path helper)."""
    if isinstance(tail, list):
        items.extend(tail)
        return items
    if isinstance(tail, ImproperList):
        return ImproperList(items + tail.items, tail.tail)
    if not items:
        raise _c.Fallback("empty list with a non-list tail")
    return ImproperList(items, tail)


try:
    from . import _speedups as _c
except ImportError:  # no compiler at install time: the Python decoder does everything
    _c = None
else:
    _c.configure(Atom, _make_improper, _freeze)


def _to_str(raw: bytes, fail: Any) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise fail(f"Binary is not valid UTF-8 ({exc.reason}); decode with binaries='bytes'") from exc


# ---------------------------------------------------------------- encoding

_P_U16 = _U16.pack
_P_U32 = _U32.pack
_P_I32 = _I32.pack
_P_F64 = _F64.pack
_P_B_U32 = struct.Struct(">BI").pack
_P_B_I32 = struct.Struct(">Bi").pack
_P_B_F64 = struct.Struct(">Bd").pack


def _epath(stack: list) -> str:
    out = ["$"]
    for kind, container, index in stack:
        if kind == "tail":
            out.append(".<tail>")
        elif kind == "map":
            out.append(f".{container}" if isinstance(container, str) and container.isidentifier() else f"[{container!r}]")
        else:
            out.append(f"[{index}]")
    return "".join(out)


_ATOM_CACHES: dict[int, dict[str, bytes]] = {0: {}, 1: {}, 2: {}}
_ATOM_CACHE_MAX = 65536


class _AtomWriter:
    """The encoded bytes of each atom name, cached across calls (bounded)."""

    __slots__ = ("cache", "minor")

    def __init__(self, minor: int):
        cache = _ATOM_CACHES[minor]
        if len(cache) > _ATOM_CACHE_MAX:
            cache.clear()
        self.cache = cache
        self.minor = minor

    def __call__(self, name: str) -> bytes:
        b = self.cache.get(name)
        if b is not None:
            return b
        raw = name.encode("utf-8")
        if len(name) > 255:
            raise EncodeError(f"Atom {name[:20]!r}... has {len(name)} characters; Erlang allows at most 255.")
        latin = None
        if self.minor < 2:
            try:
                latin = name.encode("latin-1")
            except UnicodeEncodeError:
                pass
        if latin is not None:
            b = bytes((ATOM,)) + _P_U16(len(latin)) + latin
        elif len(raw) < 256:
            b = bytes((SMALL_ATOM_UTF8, len(raw))) + raw
        else:
            b = bytes((ATOM_UTF8,)) + _P_U16(len(raw)) + raw
        self.cache[name] = b
        return b


def _int_bytes(value: int) -> bytes:
    if 0 <= value <= 255:
        return bytes((SMALL_INTEGER, value))
    if -2147483648 <= value <= 2147483647:
        return _P_B_I32(INTEGER, value)
    mag = -value if value < 0 else value
    n = (mag.bit_length() + 7) // 8
    digits = mag.to_bytes(n, "little")
    sign = 1 if value < 0 else 0
    if n < 256:
        return bytes((SMALL_BIG, n, sign)) + digits
    return _P_B_U32(LARGE_BIG, n) + bytes((sign,)) + digits


def encode(term: Any, opts: Options | None = None, *, bytes_tag: int = BINARY, convert: Any = None) -> bytes:
    """Encode ``term`` as one ETF value starting with byte 131.

    ``bytes_tag`` selects how ``bytes`` are written (BIT_BINARY marks them in
    tether's tagged mode); ``convert`` maps otherwise unknown objects to terms.
    """
    opts = opts or Options()
    if _c is not None and opts.nan == "error":
        # Lists mutated while encoding are the caller's bug; the C path reads
        # containers in place, and anything it does not know goes to Python.
        try:
            return _c.encode(term, opts.minor_version, opts.none_atom, bytes_tag == BIT_BINARY, opts.limits.max_depth)
        except _c.Fallback:
            pass
    if convert is None and opts.structs:
        from ._structs import convert
    out = bytearray(b"\x83")
    _encode_into(out, term, opts, bytes_tag, convert)
    return bytes(out)


def _encode_into(out: bytearray, term: Any, opts: Options, bytes_tag: int, convert: Any) -> None:
    atom = _AtomWriter(opts.minor_version)
    true_b, false_b = atom("true"), atom("false")
    none_b = atom(opts.none_atom) if opts.none_atom is not None else None
    nan_atom = opts.nan == "atom"
    minor = opts.minor_version
    max_depth = opts.limits.max_depth
    write = out.extend
    # Each frame: [kind, iterator, label, index]; kinds: "list", "tuple", "map".
    stack: list[list] = []
    path_stack: list[tuple[str, Any, int]] = []

    def where() -> str:
        return _epath(path_stack)

    value = term
    while True:
        t = type(value)
        if t is str:
            raw = value.encode("utf-8")
            write(_P_B_U32(BINARY, len(raw)))
            write(raw)
        elif t is int:
            if 0 <= value <= 255:
                out.append(SMALL_INTEGER)
                out.append(value)
            elif -2147483648 <= value <= 2147483647:
                write(_P_B_I32(INTEGER, value))
            else:
                write(_int_bytes(value))
        elif t is Atom:
            write(atom(value))
        elif t is float:
            if value != value or value in (math.inf, -math.inf):
                if not nan_atom:
                    raise EncodeError(
                        f"Cannot encode {value!r} at {where()}: Erlang floats are finite. "
                        "Pass nan='atom' to write nan/infinity/neg_infinity atoms, or replace the value."
                    )
                name = "nan" if value != value else "infinity" if value > 0 else "neg_infinity"
                import warnings

                from ._errors import LossyConversionWarning

                warnings.warn(
                    f"{value!r} at {where()} is sent as the atom {name!r}: Erlang floats are finite, "
                    "and it decodes back as an atom, not a float.",
                    LossyConversionWarning,
                    stacklevel=3,
                )
                write(atom(name))
            elif minor == 0:
                text = ("%.20e" % value).encode("ascii")
                out.append(FLOAT)
                write(text.ljust(31, b"\x00"))
            else:
                write(_P_B_F64(NEW_FLOAT, value))
        elif t is bool:
            write(true_b if value else false_b)
        elif value is None:
            if none_b is None:
                raise MappingError(
                    f"Cannot encode None at {where()}: none_atom is disabled. Pass none_atom='nil' or 'undefined'."
                )
            write(none_b)
        elif t is dict or t is FrozenMap:
            if len(stack) >= max_depth:
                raise EncodeError(f"Nesting deeper than {max_depth} at {where()} (Limits.max_depth).")
            write(_P_B_U32(MAP, len(value)))
            if value:
                stack.append(["map", iter(value.items()), _NOVAL, 0])
                path_stack.append(("map", "<key>", 0))
        elif t is list or t is FrozenList:
            n = len(value)
            if n == 0:
                out.append(NIL)
            elif n < 65536 and _is_bytes_list(value):
                write(bytes((STRING,)) + _P_U16(n))
                write(bytes(value))
            else:
                if len(stack) >= max_depth:
                    raise EncodeError(f"Nesting deeper than {max_depth} at {where()} (Limits.max_depth).")
                write(_P_B_U32(LIST, n))
                stack.append(["list", iter(value), None, 0])
                path_stack.append(("list", None, 0))
        elif t is tuple:
            n = len(value)
            if n < 256:
                out.append(SMALL_TUPLE)
                out.append(n)
            else:
                write(_P_B_U32(LARGE_TUPLE, n))
            if n:
                if len(stack) >= max_depth:
                    raise EncodeError(f"Nesting deeper than {max_depth} at {where()} (Limits.max_depth).")
                stack.append(["tuple", iter(value), None, 0])
                path_stack.append(("tuple", None, 0))
        elif t is bytes or t is bytearray or t is memoryview:
            mv = memoryview(value).cast("B") if t is memoryview else value
            if bytes_tag == BIT_BINARY:
                # Tagged mode: 8 used bits in the last byte (0 when empty) marks Python bytes.
                write(_P_B_U32(BIT_BINARY, len(mv)))
                out.append(8 if len(mv) else 0)
            else:
                write(_P_B_U32(BINARY, len(mv)))
            write(mv)
        else:
            value = _encode_other(out, value, atom, where, stack, path_stack, convert)
            if value is not _DONE:
                continue

        # Advance to the next value to write, closing finished containers.
        while stack:
            frame = stack[-1]
            kind = frame[0]
            if kind == "map":
                if frame[2] is not _NOVAL:
                    value = frame[2]
                    frame[2] = _NOVAL
                    path_stack[-1] = ("map", frame[3], 0)
                    break
                nxt = next(frame[1], _DONE)
                if nxt is _DONE:
                    stack.pop()
                    path_stack.pop()
                    continue
                value, frame[2] = nxt
                frame[3] = value
                path_stack[-1] = ("map", "<key>", 0)
                break
            nxt = next(frame[1], _DONE)
            if nxt is _DONE:
                stack.pop()
                path_stack.pop()
                if kind == "list":
                    out.append(NIL)
                elif kind == "improper":
                    # The tail takes the place of the closing NIL.
                    value = frame[2]
                    stack.append(["tail", iter(()), _NOVAL, 0])
                    path_stack.append(("tail", None, 0))
                    break
                continue
            path_stack[-1] = (kind, None, frame[3])
            frame[3] += 1
            value = nxt
            break
        else:
            return


_DONE = object()
_NOVAL = object()


def _is_bytes_list(value: list) -> bool:
    for x in value:
        if type(x) is not int or not 0 <= x <= 255:
            return False
    return True


def _encode_other(out, value, atom, where, stack, path_stack, convert):  # noqa: ANN001
    """Encode the rarer types; return a replacement value to encode, or _DONE."""
    write = out.extend
    if isinstance(value, ImproperList):
        if not value.items:
            return value.tail
        write(_P_B_U32(LIST, len(value.items)))
        # Items first, then the tail in place of the closing NIL.
        stack.append(["improper", iter(value.items), value.tail, 0])
        path_stack.append(("list", None, 0))
        return _DONE
    if isinstance(value, BitBinary):
        if not 1 <= value.bits <= 8 or not value.data:
            raise EncodeError(f"Invalid BitBinary at {where()}: bits must be 1..8 and data non-empty.")
        write(_P_B_U32(BIT_BINARY, len(value.data)))
        out.append(value.bits)
        write(value.data)
        return _DONE
    if isinstance(value, Pid):
        write(bytes((value.tag,)))
        write(atom(value.node))
        width = 4 if value.tag == NEW_PID else 1
        write(struct.pack(">II", value.id, value.serial) + value.creation.to_bytes(width, "big"))
        return _DONE
    if isinstance(value, Port):
        write(bytes((value.tag,)))
        write(atom(value.node))
        id_width = 8 if value.tag == V4_PORT else 4
        cr_width = 1 if value.tag == PORT else 4
        write(value.id.to_bytes(id_width, "big") + value.creation.to_bytes(cr_width, "big"))
        return _DONE
    if isinstance(value, Reference):
        if value.tag == REFERENCE:
            write(bytes((REFERENCE,)))
            write(atom(value.node))
            write(_P_U32(value.ids[0]) + bytes((value.creation,)))
        else:
            write(bytes((value.tag,)) + _P_U16(len(value.ids)))
            write(atom(value.node))
            width = 4 if value.tag == NEWER_REFERENCE else 1
            write(value.creation.to_bytes(width, "big") + b"".join(_P_U32(i) for i in value.ids))
        return _DONE
    if isinstance(value, OpaqueTerm):
        write(value.data)
        return _DONE
    # Subclasses and numpy scalars map to their base type.
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, Atom):
        return Atom(str(value))
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, list):
        return list(value)
    if isinstance(value, tuple):
        return tuple(value)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    np_value = _numpy_scalar(value)
    if np_value is not _DONE:
        return np_value
    if convert is not None:
        replaced = convert(value, where())
        if replaced is not _DONE and replaced is not value:
            return replaced
    raise MappingError(
        f"Cannot encode {type(value).__module__}.{type(value).__qualname__} at {where()} as ETF: "
        "no mapping for this type. Convert it to a dict/list/tuple of basic values, register a struct "
        "mapping with tether.etf.register_struct, or use format='pickle' for Python-only data."
    )


def _numpy_scalar(value: Any) -> Any:
    try:
        import numpy as np
    except ImportError:  # pragma: no cover
        return _DONE
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return _DONE
