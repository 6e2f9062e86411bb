"""The reference ETF decoder, in Python: complete, bounded, iterative.

BEAM legitimately sends lists nested a million deep, so the decoder never
recurses: ``decode_term`` keeps an explicit stack of open containers and a
depth limit instead of the C stack. Each tag has one small handler, found in
``HANDLERS`` by the tag byte. A handler reads its term at ``pos`` (just past
the tag) and returns ``(value, end)``, or opens a container on the stack and
returns ``(OPENED, end)``; the loop in ``decode_term`` hands every finished
value to the innermost open container.

Errors carry the path of the value at fault (``$.rows[3].price``) and the
offset, so every read is bounds-checked before it happens.
"""

from __future__ import annotations

import math
import os
import struct
import sys
import threading
import warnings
from typing import Any, Callable, Sequence

from .._bounded import bounded, check_declared, zlib_steps
from .._errors import DecodeError, LimitError, LossyConversionWarning, TetherError, TruncatedError
from .._limits import Limits
from .._structs import to_python as struct_to_python
from .._types import Atom, BitBinary, ImproperList, OpaqueTerm, Pid, Port, Reference
from .keys import MAX_KEY_DEPTH, MAX_SAME_HASH, SMALL_INT, TRUSTED, count, freeze, tuple_depth_ok
from .options import Options
from .tags import (
    ATOM_CACHE_REF, ATOM_EXT, ATOM_UTF8_EXT, BINARY_EXT, BIT_BINARY_EXT, COMPRESSED, EXPORT_EXT, FLOAT_EXT,
    FUN_EXT, INTEGER_EXT, LARGE_BIG_EXT, LARGE_TUPLE_EXT, LIST_EXT, LOCAL_EXT, MAP_EXT, NEW_FLOAT_EXT,
    NEW_FUN_EXT, NEW_PID_EXT, NEW_PORT_EXT, NEW_REFERENCE_EXT, NEWER_REFERENCE_EXT, NIL_EXT, PID_EXT, PORT_EXT,
    REFERENCE_EXT, SMALL_ATOM_EXT, SMALL_ATOM_UTF8_EXT, SMALL_BIG_EXT, SMALL_INTEGER_EXT, SMALL_TUPLE_EXT,
    STRING_EXT, V4_PORT_EXT,
)

_u32 = struct.Struct(">I").unpack_from
_i32 = struct.Struct(">i").unpack_from
_f64 = struct.Struct(">d").unpack_from
_u32_pair = struct.Struct(">II").unpack_from

# Open containers on the stack: [kind, items, terms left, ...].
K_LIST, K_TAIL, K_TUPLE, K_MAP = 0, 1, 2, 3
NOKEY = object()  # a map frame waiting for its next key
OPENED = object()  # a handler's value when it opened a container

# Width in bytes of the fields that differ between the versions of a tag.
_PID_CREATION = {NEW_PID_EXT: 4, PID_EXT: 1}
_PORT_ID = {V4_PORT_EXT: 8, NEW_PORT_EXT: 4, PORT_EXT: 4}
_PORT_CREATION = {V4_PORT_EXT: 4, NEW_PORT_EXT: 4, PORT_EXT: 1}
_REF_CREATION = {NEWER_REFERENCE_EXT: 4, NEW_REFERENCE_EXT: 1}
_REF_MAX_IDS = 5


class Reader:
    """One call's input, options and open containers, shared by the tag handlers."""

    __slots__ = (
        "buf", "end", "stack", "atoms", "textlike", "base", "views", "max_depth", "max_atoms", "atoms_as_str",
        "binaries", "chars_str", "warn_chars", "none_atom", "structs", "terms", "max_terms", "runs", "run", "tagged",
    )

    def __init__(self, buf: bytes, opts: Options, source: Any, bytearrays: Sequence[int] | None = None) -> None:
        self.buf = buf
        # Tagged binaries read so far, and the runs [start, count, ...] of those that are bytearrays.
        self.runs = bytearrays if opts.binaries == "tagged" else None
        self.run = 0
        self.tagged = 0
        self.end = len(buf)
        self.stack: list[list] = []
        self.atoms: dict[bytes, Any] = {}
        self.textlike: list[str] = []  # paths of charlists that look like text, for one warning
        self.views = opts.views
        self.base = readonly_view(source if source is not None else buf) if opts.views else None
        self.max_depth = opts.limits.max_depth
        self.max_atoms = opts.limits.max_atoms
        # Terms are counted where they are declared: a container counts its elements (a map its keys
        # and values) when it opens, one add per container and before any is read; the value itself is
        # the first term. See Limits.max_terms for what counts.
        self.terms = 1
        self.max_terms = opts.limits.max_terms
        self.atoms_as_str = opts.atoms == "str"
        self.binaries = opts.binaries
        self.chars_str = opts.charlists == "str"
        self.warn_chars = opts.warn_charlists
        self.none_atom = opts.none_atom
        self.structs = opts.structs

    def next_is_bytearray(self) -> bool:
        """Count a tagged binary; whether it falls in a run of bytearrays (the runs rise: one pass over them)."""
        k, runs, i = self.tagged, self.runs, self.run
        self.tagged = k + 1
        while i < len(runs) and runs[i] + runs[i + 1] <= k:
            i += 2
        self.run = i
        return i < len(runs) and runs[i] <= k

    def fail(self, msg: str, pos: int, cls: type = DecodeError) -> DecodeError:
        """The error for ``msg`` at ``pos``, with the path of the value being decoded."""
        return cls(f"{msg} at {path(self.stack)} (offset {pos}).")

    def need(self, pos: int, n: int) -> None:
        if pos + n > self.end:
            raise self.fail(f"ETF input ends early: {n} bytes needed, {self.end - pos} left", pos, TruncatedError)

    def too_many_terms(self, what: str, at: int) -> LimitError:
        """The error for a value whose count of terms passed ``max_terms`` at the ``what`` at offset ``at``."""
        return LimitError(
            f"More than {self.max_terms} ETF terms in one value (Limits.max_terms): with the {what} at "
            f"{path(self.stack)} (offset {at}) it has at least {self.terms}. Raise the limit with "
            "tether.set_limits(max_terms=...) if such values are expected."
        )

    def open(self, frame: list, pos: int) -> tuple[Any, int]:
        if len(self.stack) >= self.max_depth:
            raise self.fail(f"Nesting deeper than {self.max_depth} (Limits.max_depth)", pos, LimitError)
        self.stack.append(frame)
        return OPENED, pos


def plural(n: int, noun: str) -> str:
    """``n`` and ``noun``, plural unless ``n`` is 1: for messages (only ever built on the error path)."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def readonly_view(buf: Any) -> memoryview:
    view = memoryview(buf)
    return view if view.readonly else view.toreadonly()


def path(stack: list) -> str:
    """Render the decoder stack as a JSON-path-like location, e.g. ``$[3].price``."""
    out = ["$"]
    for frame in stack:
        kind = frame[0]
        if kind in (K_LIST, K_TUPLE):
            out.append(f"[{len(frame[1])}]")
        elif kind == K_TAIL:
            out.append(".<tail>")
        elif kind == K_MAP:
            key = frame[3]
            if key is NOKEY:
                out.append(f".<key {len(frame[1])}>")
            else:
                out.append(f".{key}" if isinstance(key, str) and key.isidentifier() else f"[{_key_text(key)}]")
    return "".join(out)


# A key in a path shows at most this many characters of its repr.
KEY_SHOWN = 80


def _key_text(key: Any) -> str:
    """A key as a path shows it: its repr, cut short (a key may be a megabyte of bytes, or nest thousands deep)."""
    try:
        text = repr(key)
    except RecursionError:
        return f"<a {type(key).__name__} nested too deep to show>"
    return text if len(text) <= KEY_SHOWN else f"{text[:KEY_SHOWN]}…"


def decode_term(buf: bytes, pos: int, opts: Options, source: Any = None,
                bytearrays: Sequence[int] | None = None, where: str | None = None) -> tuple[Any, int]:
    """Decode the term whose tag is at ``buf[pos]``; return it and the offset after it.

    ``source`` is the caller's buffer when ``buf`` is a copy of it: large
    binaries become views of ``source`` when ``opts.views`` asks for them.
    ``bytearrays`` and ``where`` as for :func:`tether._etf.decode`.
    """
    r = Reader(buf, opts, source, bytearrays)
    stack = r.stack
    end = r.end
    handlers = HANDLERS
    while True:
        if pos >= end:
            raise r.fail("ETF input ends before a term", pos, TruncatedError)
        value, pos = handlers[buf[pos]](r, buf, pos + 1)
        if value is OPENED:
            continue
        # A value is complete: hand it to the innermost open container, and
        # close every container that this completes.
        while stack:
            top = stack[-1]
            kind = top[0]
            if kind == K_LIST:
                top[1].append(value)
                top[2] -= 1
                if top[2]:
                    break
                if pos < end and buf[pos] == NIL_EXT:
                    pos += 1
                    stack.pop()
                    value = top[1]
                    continue
                top[0] = K_TAIL  # a non-NIL tail follows the elements: one more term
                r.terms += 1
                if r.terms > r.max_terms:
                    raise r.too_many_terms("improper tail", pos)
                break
            if kind == K_MAP:
                key = top[3]
                if key is NOKEY:
                    top[3] = value
                else:
                    if type(key) in TRUSTED or (type(key) is int and -SMALL_INT < key < SMALL_INT):
                        top[1][key] = value
                    else:
                        put_counted(r, top, key, value, pos)
                    top[3] = NOKEY
                top[2] -= 1
                if top[2]:
                    break
                stack.pop()
                value = close_map(r, top, pos)
                continue
            if kind == K_TUPLE:
                top[1].append(value)
                top[2] -= 1
                if top[2]:
                    break
                stack.pop()
                value = tuple(top[1])
                continue
            stack.pop()  # K_TAIL: value is the tail of a list whose elements are done
            value = join_tail(r, top, value, pos)
        else:
            if r.runs:
                check_runs_ended(r, where)
            if r.textlike:
                report_charlists(r.textlike)
            return value, pos


def check_runs_ended(r: Reader, where: str | None) -> None:
    """Refuse runs of bytearrays that name more tagged binaries than the term held.

    Counting only marks the binaries that are there: a run past the last one would otherwise be
    ignored, and metadata that disagrees with its payload read as if it agreed.
    """
    runs, count = r.runs, r.tagged
    last = runs[-2] + runs[-1]  # the runs rise (checked by their reader): the last one ends last
    if last <= count:
        return
    held = f"{count} tagged binary" if count == 1 else f"{count} tagged binaries"
    shown = str(list(runs))[:200]
    if where is None:
        raise DecodeError(f"The bytearrays runs {shown} name tagged binaries up to ordinal {last - 1}, but the term "
                          f"holds {held}: pass the ordinals encode found for this term.")
    raise DecodeError(f"{where} {shown} names tagged binaries up to ordinal {last - 1}, but the term holds {held}. "
                      "The metadata is corrupt: read the frame with options={'binaries': 'bytes'} to get those "
                      "binaries as bytes.")


def put_counted(r: Reader, frame: list, key: Any, value: Any, pos: int) -> None:
    """Store a key the key-safety rule counts (see ``keys``): made hashable, and bounded per hash value."""
    if type(key) is memoryview:  # a large binary decoded as a view: as a key, its bytes (keys.freeze)
        key = key.tobytes()
    if isinstance(key, tuple) and not tuple_depth_ok(key):
        raise r.fail(f"Map key nests tuples deeper than {MAX_KEY_DEPTH} levels, which Python cannot hash; send "
                     "such data as a value, not a key", pos)
    try:
        try:
            h = hash(key)
        except TypeError:  # lists, maps or sets inside the key
            key = freeze(key)
            h = hash(key)
    except Exception as exc:  # a struct's Python type that cannot be hashed, or whose hash fails
        raise r.fail(
            f"Map key cannot be hashed in Python ({type(exc).__name__}: {exc}); decode with structs=False, or "
            "register the struct with a hashable Python type",
            pos,
        ) from None
    if frame[5] is None:
        frame[5] = {}
    if not count(frame[5], h):
        raise r.fail(
            f"Map has more than {MAX_SAME_HASH} keys with one Python hash value ({h}), as in a hash-flooding "
            "attack (integers that differ by multiples of 2**61 - 1); decoding it would take quadratic time",
            pos,
            LimitError,
        )
    frame[1][key] = value


def close_map(r: Reader, frame: list, pos: int) -> Any:
    """The finished map of ``frame``: checked for colliding keys, and made a struct when it is one."""
    value = frame[1]
    if len(value) != frame[4]:
        raise r.fail(
            f"Map declares {frame[4]} pairs but keys collide in Python ({len(value)} distinct): "
            "duplicate keys, or keys such as 1, 1.0 and true that Python treats as equal",
            pos,
        )
    if r.structs and "__struct__" in value:
        try:
            return struct_to_python(value)
        except TetherError as exc:  # typed already (a type's version, a user's decoder): keep it, add the place
            exc.args = (f"{exc.args[0] if exc.args else exc} (at {path(r.stack)}, offset {pos})", *exc.args[1:])
            raise
        except (TypeError, ValueError, KeyError, ArithmeticError) as exc:
            raise r.fail(f"Struct {value.get('__struct__')} does not convert: {exc}", pos) from exc
    return value


def join_tail(r: Reader, frame: list, tail: Any, pos: int) -> Any:
    """The list whose elements are in ``frame``, ended by ``tail`` instead of NIL."""
    value = improper(frame[1], tail)
    if value is None:
        raise r.fail("List with no elements and a non-list tail", pos)
    return value


def improper(items: list, tail: Any) -> Any:
    """Join list items and a non-NIL tail as binary_to_term does; None for no items and a non-list tail."""
    if isinstance(tail, list):
        items.extend(tail)
        return items
    if isinstance(tail, ImproperList):
        return ImproperList(items + tail.items, tail.tail)
    return ImproperList(items, tail) if items else None


# ---------------------------------------------------------------- scalars


def _small_integer(r: Reader, buf: bytes, pos: int) -> tuple[Any, int]:
    if pos >= r.end:
        raise r.fail("ETF input ends inside an integer", pos, TruncatedError)
    return buf[pos], pos + 1


def _integer(r: Reader, buf: bytes, pos: int) -> tuple[Any, int]:
    r.need(pos, 4)
    return _i32(buf, pos)[0], pos + 4


def _new_float(r: Reader, buf: bytes, pos: int) -> tuple[Any, int]:
    r.need(pos, 8)
    (value,) = _f64(buf, pos)
    if not math.isfinite(value):
        raise r.fail("Non-finite float; Erlang floats are always finite", pos + 8)
    return value, pos + 8


def _float(r: Reader, buf: bytes, pos: int) -> tuple[Any, int]:
    r.need(pos, 31)
    text = buf[pos : pos + 31].split(b"\x00", 1)[0]
    pos += 31
    try:
        value = float(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise r.fail(f"Invalid FLOAT_EXT text {text!r}", pos) from exc
    if not math.isfinite(value):
        raise r.fail("Non-finite float; Erlang floats are always finite", pos)
    return value, pos


def _big(r: Reader, buf: bytes, pos: int) -> tuple[Any, int]:
    if buf[pos - 1] == SMALL_BIG_EXT:
        r.need(pos, 2)
        n = buf[pos]
        pos += 1
    else:
        r.need(pos, 5)
        (n,) = _u32(buf, pos)
        pos += 4
    sign = buf[pos]
    pos += 1
    end = pos + n
    if end > r.end:
        raise r.fail(f"Big integer declares {n} bytes but {r.end - pos} remain", pos, TruncatedError)
    if sign > 1:
        raise r.fail(f"Big integer sign byte is {sign}, expected 0 or 1", pos)
    value = int.from_bytes(buf[pos:end], "little")
    return (-value if sign else value), end


# ---------------------------------------------------------------- atoms


def atom_at(r: Reader, buf: bytes, p: int, tag: int, at: int) -> tuple[Any, int]:
    """The atom with tag ``tag`` whose length starts at ``p``; errors report offset ``at``."""
    if tag == SMALL_ATOM_UTF8_EXT or tag == SMALL_ATOM_EXT:
        if p >= r.end:
            raise r.fail("ETF input ends inside an atom", at, TruncatedError)
        n = buf[p]
        p += 1
    elif tag == ATOM_UTF8_EXT or tag == ATOM_EXT:
        if p + 2 > r.end:
            raise r.fail("ETF input ends inside an atom", at, TruncatedError)
        n = (buf[p] << 8) | buf[p + 1]
        p += 2
    else:
        raise r.fail(f"Expected an atom, found tag {tag}", at)
    end = p + n
    if end > r.end:
        raise r.fail("ETF input ends inside an atom", at, TruncatedError)
    raw = buf[p:end]
    # The same bytes name different atoms in Latin-1 and in UTF-8: Latin-1 keys are marked.
    key = raw if tag == SMALL_ATOM_UTF8_EXT or tag == ATOM_UTF8_EXT else b"\x00" + raw
    value = r.atoms.get(key)
    if value is None:
        value = _new_atom(r, key, raw, at)
    return value, end


def _new_atom(r: Reader, key: bytes, raw: bytes, at: int) -> Any:
    try:
        name = raw.decode("utf-8") if key is raw else raw.decode("latin-1")
    except UnicodeDecodeError as exc:
        raise r.fail(f"Atom is not valid UTF-8 ({exc.reason})", at) from exc
    if len(name) > 255:
        raise r.fail(f"Atom of {len(name)} characters; Erlang allows at most 255", at)
    if name == "true":
        value: Any = True
    elif name == "false":
        value = False
    elif r.none_atom is not None and name == r.none_atom:
        value = None
    else:
        value = name if r.atoms_as_str else Atom(name)
    if len(r.atoms) >= r.max_atoms:
        raise r.fail(f"More than {r.max_atoms} distinct atoms (Limits.max_atoms)", at, LimitError)
    r.atoms[key] = value
    return value


def _atom(r: Reader, buf: bytes, pos: int) -> tuple[Any, int]:
    return atom_at(r, buf, pos, buf[pos - 1], pos)


def node_at(r: Reader, buf: bytes, p: int, at: int) -> tuple[Any, int]:
    """The node name (an atom, always an Atom) at ``p``; errors report offset ``at``."""
    if p >= r.end:
        raise r.fail("ETF input ends before a node name", at, TruncatedError)
    node, p = atom_at(r, buf, p + 1, buf[p], at)
    if not isinstance(node, str) or node is None:
        node = Atom("true" if node is True else "false" if node is False else str(r.none_atom))
    return node, p


# ---------------------------------------------------------------- binaries and charlists


def _binary(r: Reader, buf: bytes, pos: int) -> tuple[Any, int]:
    tag = buf[pos - 1]
    if tag == BINARY_EXT:
        r.need(pos, 4)
        (n,) = _u32(buf, pos)
        pos += 4
        bits = 8
    else:
        r.need(pos, 5)
        (n,) = _u32(buf, pos)
        bits = buf[pos + 4]
        pos += 5
        if (n == 0 and bits != 0) or (n and not 1 <= bits <= 8):
            raise r.fail(f"Invalid bit binary: {bits} bits in the last of {n} bytes", pos)
        if n == 0:
            bits = 8
    end = pos + n
    if end > r.end:
        raise r.fail(f"Binary declares {n} bytes but {r.end - pos} remain", pos, TruncatedError)
    binaries = r.binaries
    if bits != 8:
        return BitBinary(buf[pos:end], bits), end
    if binaries == "bytes" or (tag == BIT_BINARY_EXT and binaries == "tagged"):
        if r.runs is not None and tag == BIT_BINARY_EXT and r.next_is_bytearray():
            return bytearray(memoryview(buf)[pos:end]), end
        if r.views and n >= r.views:
            return r.base[pos:end], end  # a large binary: a view of the input, no copy
        return buf[pos:end], end
    if binaries == "tagged":
        raw = buf[pos:end]
        try:
            return raw.decode("utf-8"), end
        except UnicodeDecodeError:
            return raw, end
    try:
        return buf[pos:end].decode("utf-8"), end
    except UnicodeDecodeError as exc:
        raise r.fail(f"Binary is not valid UTF-8 ({exc.reason}); decode with binaries='bytes'", pos) from exc


def _string(r: Reader, buf: bytes, pos: int) -> tuple[Any, int]:
    r.need(pos, 2)
    n = (buf[pos] << 8) | buf[pos + 1]
    pos += 2
    end = pos + n
    if end > r.end:
        raise r.fail(f"String declares {n} bytes but {r.end - pos} remain", pos, TruncatedError)
    r.terms += n  # a charlist is a list of n integers, whatever it decodes to
    if r.terms > r.max_terms:
        raise r.too_many_terms(f"charlist of {plural(n, 'character')}", pos - 3)
    raw = buf[pos:end]
    if r.chars_str:
        return raw.decode("latin-1"), end
    if r.warn_chars and n >= 2 and raw.isascii() and raw.decode("ascii").isprintable():
        r.textlike.append(f"{path(r.stack)} ({raw[:20].decode('ascii')!r})")
    return list(raw), end


class CharlistSink:
    """Where one thread's decoders put the text-like charlists they find, instead of warning.

    ``paths`` is a list (each entry ``"$[1].name ('abc')"``: the path, then the start of the
    text), or None to warn (:func:`warn_charlists`); it takes the charlists of decodes on thread
    ``thread`` (a ``threading.get_ident()``) only: other threads' decodes warn. Set and cleared
    around a decode by a caller that words its own warning, as the worker does for a call's
    arguments (once per function and argument, with the argument's path). A plain object, not a
    ``threading.local``: the worker sets it twice a call, and each step through a thread-local
    costs ~30 ns.
    """

    __slots__ = ("paths", "thread")

    def __init__(self) -> None:
        self.paths: list[str] | None = None
        self.thread = 0


CHARLIST_SINK = CharlistSink()


def report_charlists(paths: list[str]) -> None:
    """Hand the text-like charlists of one decoded value to the sink, when it is this thread's; or warn."""
    sink = CHARLIST_SINK
    found = sink.paths
    if found is not None and sink.thread == threading.get_ident():
        found.extend(paths)
    else:
        warn_charlists(paths)


# The call sites (file, line) that have had their charlist warning: at most WARNED_SITES_MAX of them.
_warned_sites: set[tuple[str, int]] = set()
WARNED_SITES_MAX = 256
_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def warn_charlists(paths: list[str]) -> None:
    """One LossyConversionWarning for the text-like charlists of one decoded value, once per call site.

    The call site is the first caller outside tether (the line that called ``tether.etf.decode`` or
    ``tether.loads``). Each site warns once in the process's life, naming the first charlist's path
    and text and how many more the value held; the first :data:`WARNED_SITES_MAX` sites do, later
    ones stay silent. Python's own registries cannot do this: each distinct message (every new path
    or text) is a new entry in the caller's ``__warningregistry__``, and a service decoding varied
    data grew it, and its log, by one per value. The warning goes through ``warnings.warn_explicit``
    without a registry: the set of sites here is the only record, and it is bounded.
    """
    frame = _caller_outside_tether()
    site = (frame.f_code.co_filename, frame.f_lineno) if frame is not None else ("<tether>", 0)
    if site in _warned_sites or len(_warned_sites) >= WARNED_SITES_MAX:
        return
    _warned_sites.add(site)
    more = f" (and {len(paths) - 1} more in this value)" if len(paths) > 1 else ""
    warnings.warn_explicit(
        f"Charlist at {paths[0]}{more} looks like text but decodes as a list of ints, as Erlang cannot tell "
        "them apart. Pass charlists='str' for text, or send Elixir strings (binaries). "
        "(Warned once for this line.)",
        LossyConversionWarning, site[0], site[1],
        # No module_globals: for `python -c` code, __main__'s loader raises ImportError when asked for source.
        module=frame.f_globals.get("__name__") if frame is not None else None,
    )


def _caller_outside_tether() -> Any:
    """The innermost frame whose code is not tether's own (the outermost one when all are)."""
    frame = sys._getframe(1)
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame = frame.f_back
    return frame


# ---------------------------------------------------------------- containers


def _nil(r: Reader, buf: bytes, pos: int) -> tuple[Any, int]:
    return [], pos


def _list(r: Reader, buf: bytes, pos: int) -> tuple[Any, int]:
    r.need(pos, 4)
    (n,) = _u32(buf, pos)
    pos += 4
    if n + 1 > r.end - pos:
        raise r.fail(f"List declares {n} elements but only {r.end - pos} bytes remain", pos, TruncatedError)
    r.terms += n or 1  # with no elements, the tail that follows is its one term
    if r.terms > r.max_terms:
        raise r.too_many_terms(f"list of {plural(n, 'element')}", pos - 5)
    return r.open([K_LIST, [], n] if n else [K_TAIL, []], pos)


def _tuple(r: Reader, buf: bytes, pos: int) -> tuple[Any, int]:
    start = pos - 1  # the tag's offset, for the error
    if buf[start] == SMALL_TUPLE_EXT:
        r.need(pos, 1)
        n = buf[pos]
        pos += 1
    else:
        r.need(pos, 4)
        (n,) = _u32(buf, pos)
        pos += 4
    if n == 0:
        return (), pos
    if n > r.end - pos:
        raise r.fail(f"Tuple declares {n} elements but only {r.end - pos} bytes remain", pos, TruncatedError)
    r.terms += n
    if r.terms > r.max_terms:
        raise r.too_many_terms(f"tuple of {plural(n, 'element')}", start)
    return r.open([K_TUPLE, [], n], pos)


def _map(r: Reader, buf: bytes, pos: int) -> tuple[Any, int]:
    r.need(pos, 4)
    (n,) = _u32(buf, pos)
    pos += 4
    if n == 0:
        return {}, pos
    if 2 * n > r.end - pos:
        raise r.fail(f"Map declares {n} pairs but only {r.end - pos} bytes remain", pos, TruncatedError)
    r.terms += 2 * n  # each key and each value is a term
    if r.terms > r.max_terms:
        raise r.too_many_terms(f"map of {plural(n, 'pair')}", pos - 5)
    return r.open([K_MAP, {}, 2 * n, NOKEY, n, None], pos)  # None: the counts of the key-safety rule


# ---------------------------------------------------------------- pids, ports, references, funs


def _pid(r: Reader, buf: bytes, pos: int) -> tuple[Any, int]:
    tag = buf[pos - 1]
    node, pos = node_at(r, buf, pos, pos)
    width = _PID_CREATION[tag]
    r.need(pos, 8 + width)
    pid_id, serial = _u32_pair(buf, pos)
    pos += 8
    creation = int.from_bytes(buf[pos : pos + width], "big")
    return Pid(node, pid_id, serial, creation, tag), pos + width


def _port(r: Reader, buf: bytes, pos: int) -> tuple[Any, int]:
    tag = buf[pos - 1]
    node, pos = node_at(r, buf, pos, pos)
    id_width = _PORT_ID[tag]
    cr_width = _PORT_CREATION[tag]
    r.need(pos, id_width + cr_width)
    port_id = int.from_bytes(buf[pos : pos + id_width], "big")
    pos += id_width
    creation = int.from_bytes(buf[pos : pos + cr_width], "big")
    return Port(node, port_id, creation, tag), pos + cr_width


def _new_reference(r: Reader, buf: bytes, pos: int) -> tuple[Any, int]:
    tag = buf[pos - 1]
    r.need(pos, 2)
    n = (buf[pos] << 8) | buf[pos + 1]
    pos += 2
    if n > _REF_MAX_IDS:
        raise r.fail(f"Reference with {n} id words; at most {_REF_MAX_IDS} are defined", pos)
    node, pos = node_at(r, buf, pos, pos)
    cr_width = _REF_CREATION[tag]
    r.need(pos, cr_width + 4 * n)
    creation = int.from_bytes(buf[pos : pos + cr_width], "big")
    pos += cr_width
    ids = struct.unpack_from(">%dI" % n, buf, pos)
    return Reference(node, creation, tuple(ids), tag), pos + 4 * n


def _reference(r: Reader, buf: bytes, pos: int) -> tuple[Any, int]:
    node, pos = node_at(r, buf, pos, pos)
    r.need(pos, 5)
    (ref_id,) = _u32(buf, pos)
    return Reference(node, buf[pos + 4], (ref_id,), REFERENCE_EXT), pos + 5


def _new_fun(r: Reader, buf: bytes, pos: int) -> tuple[Any, int]:
    r.need(pos, 4)
    (size,) = _u32(buf, pos)
    start = pos - 1
    end = start + 1 + size
    if size < 4 or end > r.end:
        raise r.fail(f"Fun declares {size} bytes but {r.end - pos} remain", pos, TruncatedError)
    return OpaqueTerm(NEW_FUN_EXT, buf[start:end]), end


def _export(r: Reader, buf: bytes, pos: int) -> tuple[Any, int]:
    start = pos - 1
    for _ in range(2):  # module and function name
        if pos >= r.end:
            raise r.fail("ETF input ends inside an export", pos, TruncatedError)
        _, pos = atom_at(r, buf, pos + 1, buf[pos], pos)
    r.need(pos, 2)
    if buf[pos] != SMALL_INTEGER_EXT:
        raise r.fail("Export arity must be a small integer", pos)
    pos += 2
    return OpaqueTerm(EXPORT_EXT, buf[start:pos]), pos


# ---------------------------------------------------------------- refused tags


def _refuse(message: str) -> Callable[[Reader, bytes, int], tuple[Any, int]]:
    def refuse(r: Reader, buf: bytes, pos: int) -> tuple[Any, int]:
        raise r.fail(message, pos)

    return refuse


def _unknown(r: Reader, buf: bytes, pos: int) -> tuple[Any, int]:
    raise r.fail(f"Unknown ETF tag {buf[pos - 1]}", pos)


HANDLERS: list[Callable[[Reader, bytes, int], tuple[Any, int]]] = [_unknown] * 256
for _tags, _handler in (
    ((SMALL_INTEGER_EXT,), _small_integer),
    ((INTEGER_EXT,), _integer),
    ((NEW_FLOAT_EXT,), _new_float),
    ((FLOAT_EXT,), _float),
    ((SMALL_BIG_EXT, LARGE_BIG_EXT), _big),
    ((SMALL_ATOM_UTF8_EXT, ATOM_UTF8_EXT, SMALL_ATOM_EXT, ATOM_EXT), _atom),
    ((BINARY_EXT, BIT_BINARY_EXT), _binary),
    ((STRING_EXT,), _string),
    ((NIL_EXT,), _nil),
    ((LIST_EXT,), _list),
    ((SMALL_TUPLE_EXT, LARGE_TUPLE_EXT), _tuple),
    ((MAP_EXT,), _map),
    ((NEW_PID_EXT, PID_EXT), _pid),
    ((NEW_PORT_EXT, V4_PORT_EXT, PORT_EXT), _port),
    ((NEWER_REFERENCE_EXT, NEW_REFERENCE_EXT), _new_reference),
    ((REFERENCE_EXT,), _reference),
    ((NEW_FUN_EXT,), _new_fun),
    ((EXPORT_EXT,), _export),
    ((COMPRESSED,), _refuse(f"Compressed term (tag {COMPRESSED}) is only valid right after the version byte")),
    ((LOCAL_EXT,), _refuse(
        f"LOCAL_EXT (tag {LOCAL_EXT}) terms are only meaningful inside the node that wrote them; "
        "encode with term_to_binary/1 without the local option"
    )),
    ((ATOM_CACHE_REF,), _refuse(
        f"ATOM_CACHE_REF (tag {ATOM_CACHE_REF}) belongs to the distribution protocol, not term_to_binary output"
    )),
    ((FUN_EXT,), _refuse(f"FUN_EXT (tag {FUN_EXT}) was removed in OTP R16 and is not supported")),
):
    for _tag in _tags:
        HANDLERS[_tag] = _handler
del _tags, _handler, _tag


# ---------------------------------------------------------------- compressed terms (tag 80)


# zlib's window bits for the zlib wrapper term_to_binary writes (the largest window).
ZLIB_WBITS = 15


def inflate(buf: Any, pos: int, limits: Limits, prefix: bytes = b"") -> memoryview:
    """The uncompressed body of a tag-80 value whose size field is at ``buf[pos]``, after ``prefix``.

    The zlib stream runs through the bounded loop every tether decompressor
    uses (:mod:`tether._bounded`): memory grows with the bytes the stream
    really produces, up to the declared size, so the peak is the body once.

    Examples
    --------
    >>> import zlib, tether
    >>> term = b"\\x83P" + (2).to_bytes(4, "big") + zlib.compress(b"a\\x07")
    >>> bytes(inflate(term, 2, tether.get_limits(), prefix=b"\\x83"))
    b'\\x83a\\x07'
    """
    if len(buf) < pos + 4:
        raise TruncatedError(f"Compressed ETF (tag {COMPRESSED}) ends before its uncompressed size.")
    (size,) = _u32(buf, pos)
    what = f"Compressed ETF (tag {COMPRESSED})"
    check_declared(size, limits, what)
    step = zlib_steps(memoryview(buf)[pos + 4 :], ZLIB_WBITS, what)
    if prefix:
        step = _after(prefix, step)
    return bounded(step, len(prefix) + size, what)


def _after(prefix: bytes, step: Callable[[int], Any]) -> Callable[[int], Any]:
    """``step`` whose output starts with ``prefix``."""
    sent = [False]

    def first(n: int) -> Any:
        if sent[0]:
            return step(n)
        sent[0] = True
        return prefix

    return first
