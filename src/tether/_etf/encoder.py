"""The reference ETF encoder, in Python: every type tether maps, iterative.

``encode_into`` walks the term with an explicit stack (no recursion, bounded
by ``Limits.max_depth``) and writes exactly the bytes ``term_to_binary``
would. The commonest types (str, Atom, int, finite float, bool) are written
inline in its loop, the other builtins by one writer per exact type in
``WRITERS``; anything else goes to ``encode_other``, which writes BEAM-only
values (pids, references, improper lists...) or maps the value to one the
loop knows.
"""

from __future__ import annotations

import collections.abc
import math
import struct
import warnings
from typing import Any, Callable

from .._buffers import flat_bytes
from .._errors import EncodeError, LossyConversionWarning, MappingError, warn_at_caller
from .._types import Atom, BitBinary, FrozenList, FrozenMap, ImproperList, OpaqueTerm, Pid, Port, Reference
from .options import Options
from .tags import (
    ATOM_EXT, ATOM_UTF8_EXT, BINARY_EXT, BIT_BINARY_EXT, FLOAT_EXT, INTEGER_EXT, LARGE_BIG_EXT, LARGE_TUPLE_EXT,
    LIST_EXT, MAP_EXT, NEW_FLOAT_EXT, NEW_PID_EXT, NEWER_REFERENCE_EXT, NIL_EXT, PORT_EXT, REFERENCE_EXT,
    SMALL_ATOM_UTF8_EXT, SMALL_BIG_EXT, SMALL_INTEGER_EXT, SMALL_TUPLE_EXT, STRING_EXT, V4_PORT_EXT,
)

_P_U16 = struct.Struct(">H").pack
_P_U32 = struct.Struct(">I").pack
_P_B_U32 = struct.Struct(">BI").pack
# What Options(plain=True) refuses: atoms, and terms that name a node or module by an atom.
_NOT_PLAIN = (Atom, Pid, Port, Reference, OpaqueTerm)
_P_B_I32 = struct.Struct(">Bi").pack
_P_B_F64 = struct.Struct(">Bd").pack
_P_U32_PAIR = struct.Struct(">II").pack

_I32_MIN, _I32_MAX = -(2**31), 2**31 - 1
_STRING_MAX = 65535  # STRING_EXT has a 16-bit length
_SMALL_MAX = 255  # one-byte lengths and SMALL_INTEGER_EXT values
DONE = object()  # a writer wrote the value; also the end of a container's iterator
_NOVAL = object()  # a map frame with no value waiting


# A path shows at most this many steps (the outermost and innermost halves): a term nested
# 4,000,000 deep would otherwise make its error message megabytes long.
PATH_STEPS = 20


def epath(stack: list) -> str:
    """Render the encoder's path stack as a JSON-path-like location, e.g. ``$[3].price``."""
    steps = []
    for kind, container, index in _outer_and_inner(stack):
        if kind == "tail":
            steps.append(".<tail>")
        elif kind == "map":
            steps.append(step(container))
        else:
            steps.append(f"[{index}]")
    return _joined(steps, len(stack))


def _outer_and_inner(steps: list) -> list:
    """The first and last ``PATH_STEPS // 2`` of ``steps`` (all of them when there are no more than PATH_STEPS)."""
    half = PATH_STEPS // 2
    return steps if len(steps) <= PATH_STEPS else steps[:half] + steps[-half:]


def _joined(shown: list[str], total: int) -> str:
    """``$`` and the steps :func:`_outer_and_inner` kept, saying how many are left out between them."""
    if total <= PATH_STEPS:
        return "$" + "".join(shown)
    half = PATH_STEPS // 2
    return f"${''.join(shown[:half])}...({total - PATH_STEPS} more steps)...{''.join(shown[half:])}"


def step(key: Any) -> str:
    """One map step of a path: ``.name`` for an identifier, else ``[repr]``."""
    return f".{key}" if isinstance(key, str) and key.isidentifier() else f"[{key!r}]"


class Where:
    """Where a walk stands, rendered (O(depth)) only when a message or log line formats it.

    The conversion hooks get one on every value they convert; rendering the
    path for each made deep terms of user types quadratic. ``render`` turns
    the walk's stack into the path text (:func:`epath` for the encoder's).
    """

    __slots__ = ("stack", "render")

    def __init__(self, stack: list, render: Callable[[list], str] = epath) -> None:
        self.stack = stack
        self.render = render

    def __str__(self) -> str:
        return self.render(self.stack)

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


_ATOM_CACHES: dict[int, dict[str, bytes]] = {}
_ATOM_CACHE_MAX = 65536


class AtomWriter:
    """The encoded bytes of each atom name, cached across calls (bounded)."""

    __slots__ = ("cache", "minor")

    def __init__(self, minor: int):
        cache = _ATOM_CACHES.setdefault(minor, {})
        if len(cache) > _ATOM_CACHE_MAX:
            cache.clear()
        self.cache = cache
        self.minor = minor

    def __call__(self, name: str) -> bytes:
        b = self.cache.get(name)
        if b is not None:
            return b
        raw = name.encode("utf-8")
        if len(name) > _SMALL_MAX:
            raise EncodeError(f"Atom {name[:20]!r}... has {len(name)} characters; Erlang allows at most 255.")
        latin = None
        if self.minor < 2:  # minor versions 0 and 1 write Latin-1 atoms when they can
            try:
                latin = name.encode("latin-1")
            except UnicodeEncodeError:
                pass
        if latin is not None:
            b = bytes((ATOM_EXT,)) + _P_U16(len(latin)) + latin
        elif len(raw) <= _SMALL_MAX:
            b = bytes((SMALL_ATOM_UTF8_EXT, len(raw))) + raw
        else:
            b = bytes((ATOM_UTF8_EXT,)) + _P_U16(len(raw)) + raw
        self.cache[name] = b
        return b


def int_bytes(value: int) -> bytes:
    """The ETF bytes of any integer: small, 32-bit, or big."""
    if 0 <= value <= _SMALL_MAX:
        return bytes((SMALL_INTEGER_EXT, value))
    if _I32_MIN <= value <= _I32_MAX:
        return _P_B_I32(INTEGER_EXT, value)
    mag = -value if value < 0 else value
    n = (mag.bit_length() + 7) // 8
    digits = mag.to_bytes(n, "little")
    sign = 1 if value < 0 else 0
    if n <= _SMALL_MAX:
        return bytes((SMALL_BIG_EXT, n, sign)) + digits
    return _P_B_U32(LARGE_BIG_EXT, n) + bytes((sign,)) + digits


class Writer:
    """One call's output, options and open containers, shared by the encoder's helpers."""

    __slots__ = ("out", "atom", "true_b", "false_b", "none_b", "nan_atom", "minor", "max_depth", "bytes_tag",
                 "convert", "stack", "path_stack", "here", "plain", "nan_warn", "tagged", "bytearrays")

    def __init__(self, out: bytearray, opts: Options, bytes_tag: int, convert: Any,
                 bytearrays: list[int] | None = None) -> None:
        self.out = out
        # Tagged binaries written so far (None once an OpaqueTerm, whose binaries are not counted, is
        # written), and where the bytearrays among them are: see encode_into.
        self.tagged: int | None = 0
        self.bytearrays = bytearrays
        self.atom = atom = AtomWriter(opts.minor_version)
        self.true_b, self.false_b = atom("true"), atom("false")
        self.none_b = atom(opts.none_atom) if opts.none_atom is not None else None
        self.nan_atom = opts.nan != "error"
        self.nan_warn = opts.nan == "atom"
        self.minor = opts.minor_version
        self.max_depth = opts.limits.max_depth
        self.bytes_tag = bytes_tag
        self.convert = convert
        self.plain = opts.plain
        # Each frame: [kind, iterator, label, index]; kinds: "list", "tuple", "map", "improper", "tail".
        self.stack: list[list] = []
        self.path_stack: list[tuple[str, Any, int]] = []
        self.here = Where(self.path_stack)

    def where(self) -> str:
        return epath(self.path_stack)

    def too_deep(self) -> EncodeError:
        return EncodeError(f"Nesting deeper than {self.max_depth} at {self.where()} (Limits.max_depth).")


def encode_into(out: bytearray, term: Any, opts: Options, bytes_tag: int, convert: Any,
                bytearrays: list[int] | None = None) -> None:
    """Append the ETF bytes of ``term`` (without the version byte) to ``out``.

    In tagged mode, ``bytearrays`` (a list) gets the ordinal of each
    ``bytearray`` among the binaries written with 8 bits in the last byte,
    counted from 0 in the order they are written: what a reader needs to give
    them back as bytearrays (docs/format.md, etf's ``bytearrays``).
    """
    w = Writer(out, opts, bytes_tag, convert, bytearrays)
    try:
        _walk(w, term)
    except UnicodeEncodeError as exc:  # a lone surrogate (from surrogateescape, say): no UTF-8 for it
        bad = exc.object[exc.start : exc.end]
        raise EncodeError(
            f"The text at {w.where()} holds {bad!r}, which UTF-8 cannot encode (a lone surrogate, as "
            "os.fsdecode or errors='surrogateescape' leave for undecodable bytes): send those bytes as bytes, "
            "or clean the text first (text.encode('utf-8', 'replace').decode())."
        ) from None


# Values check_finite never looks into.
_SCALARS = frozenset((str, Atom, int, float, bool, type(None), bytes, bytearray, memoryview))


def check_finite(term: Any, max_depth: int, give_up: int | None = None) -> int:
    """How deeply ``term`` nests lists, tuples and maps; EncodeError when it contains itself or nests deeper
    than ``max_depth``; -1 when it nests deeper than ``give_up`` (no answer: the caller decides). Depth
    counts as the encoders count it: ``max_depth`` containers below the top one.

    The encoders meet a container that contains itself as endless nesting: before this check, such a term
    was written ``max_depth`` (4,000,000) levels deep, twice, before the depth limit stopped it (18 s and
    2 GB for ``l.append(l)``). This walk keeps the containers on the current path, so a cycle is found where
    it closes. Map keys are not searched: hashable keys cannot contain themselves.

    Examples
    --------
    >>> check_finite({"a": [1, (2, 3)]}, 100), check_finite([[[1]]], 100, give_up=1)
    (3, -1)
    >>> l = [1]; l.append({"again": l})
    >>> check_finite(l, 100)
    Traceback (most recent call last):
    ...
    tether._errors.EncodeError: The list at $[1].again is the list that holds it at $: ...
    """
    items = _items_of(term)
    if items is None:
        return 0
    stack: list[list] = [[term, items, None]]  # container, its (label, child) pairs, its label in its parent
    on_path = {id(term)}
    deepest = 1
    limit = max_depth if give_up is None else min(max_depth, give_up)
    scalars = _SCALARS
    while stack:
        top = stack[-1]
        for label, child in top[1]:
            if type(child) in scalars:
                continue
            items = _items_of(child)
            if items is None:
                continue
            if id(child) in on_path:
                raise _cycle(stack, label, child)
            if len(stack) > limit:  # as the encoders count: max_depth containers below the top one
                if limit < max_depth:
                    return -1
                raise EncodeError(f"Nesting deeper than {max_depth} at {_probe_path(stack, label)} (Limits.max_depth).")
            on_path.add(id(child))
            stack.append([child, items, label])
            deepest = max(deepest, len(stack))
            break
        else:
            stack.pop()
            on_path.discard(id(top[0]))
    return deepest


def _items_of(value: Any) -> Any:
    """A container's (label, child) pairs as the encoder walks them, or None for a value it does not open."""
    t = type(value)
    if t is list or t is tuple or t is FrozenList:
        return enumerate(value)
    if t is dict or t is FrozenMap:
        return iter(value.items())
    if isinstance(value, ImproperList):
        return enumerate((*value.items, value.tail))
    if isinstance(value, (list, tuple)):  # subclasses: the encoder writes them as their base type
        return enumerate(value)
    if isinstance(value, dict):
        return iter(value.items())
    return None


def _cycle(stack: list, label: Any, child: Any) -> EncodeError:
    depth = next(i for i, frame in enumerate(stack) if frame[0] is child)
    kind = type(child).__name__
    return EncodeError(
        f"The {kind} at {_probe_path(stack, label)} is the {kind} that holds it at {_probe_path(stack[:depth + 1])}: "
        "a term that contains itself has no finite ETF form. Break the cycle (copy the data without the "
        "back-reference) before sending it."
    )


def _probe_path(stack: list, label: Any = DONE) -> str:
    """The path of ``label`` under the containers on ``stack`` (``DONE``: of the innermost container itself)."""
    labels = [frame[2] for frame in stack[1:]] + ([] if label is DONE else [label])
    return _joined([f"[{x}]" if type(x) is int else step(x) for x in _outer_and_inner(labels)], len(labels))


def _walk(w: Writer, term: Any) -> None:
    out = w.out
    atom = w.atom
    write = out.extend
    stack = w.stack
    path_stack = w.path_stack
    writers = WRITERS
    true_b, false_b = w.true_b, w.false_b
    new_floats = w.minor != 0
    atom_type = None if w.plain else Atom  # plain: atoms go to encode_other, which refuses them
    value = term
    while True:
        # The commonest types inline; the others through WRITERS, by exact type.
        t = type(value)
        if t is str:
            raw = value.encode("utf-8")
            write(_P_B_U32(BINARY_EXT, len(raw)))
            write(raw)
        elif t is atom_type:
            write(atom(value))
        elif t is int:
            if 0 <= value <= _SMALL_MAX:
                out.append(SMALL_INTEGER_EXT)
                out.append(value)
            elif _I32_MIN <= value <= _I32_MAX:
                write(_P_B_I32(INTEGER_EXT, value))
            else:
                write(int_bytes(value))
        elif t is float and new_floats and value - value == 0.0:  # finite: inf - inf and nan are nan
            write(_P_B_F64(NEW_FLOAT_EXT, value))
        elif t is bool:
            write(true_b if value else false_b)
        else:
            value = writers.get(t, encode_other)(w, value)
            if value is not DONE:
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
                nxt = next(frame[1], DONE)
                if nxt is DONE:
                    stack.pop()
                    path_stack.pop()
                    continue
                value, frame[2] = nxt
                frame[3] = value
                path_stack[-1] = ("map", "<key>", 0)
                break
            nxt = next(frame[1], DONE)
            if nxt is DONE:
                stack.pop()
                path_stack.pop()
                if kind == "list":
                    out.append(NIL_EXT)
                elif kind == "improper":
                    value = frame[2]  # the tail takes the place of the closing NIL
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


# Each writer writes one value of its exact type and returns DONE, or
# returns a replacement value for the loop to encode instead.


def write_float(w: Writer, value: float) -> Any:
    if value != value or value in (math.inf, -math.inf):
        if not w.nan_atom:
            raise EncodeError(
                f"Cannot encode {value!r} at {w.where()}: Erlang floats are finite. "
                "Pass nan='atom' (tether.dumps: options={'nan': 'atom'}) to write nan/infinity/neg_infinity "
                "atoms, which decode as atoms, not floats; or replace the value (e.g. with None)."
            )
        name = "nan" if value != value else "infinity" if value > 0 else "neg_infinity"
        if w.nan_warn:
            warnings.warn(
                f"{value!r} at {w.where()} is sent as the atom {name!r}: Erlang floats are finite, "
                "and it decodes back as an atom, not a float.",
                LossyConversionWarning,
                stacklevel=4,
            )
        w.out.extend(w.atom(name))
    elif w.minor == 0:  # minor version 0 writes floats as text
        text = ("%.20e" % value).encode("ascii")
        w.out.append(FLOAT_EXT)
        w.out.extend(text.ljust(31, b"\x00"))
    else:
        w.out.extend(_P_B_F64(NEW_FLOAT_EXT, value))
    return DONE


def write_none(w: Writer, value: None) -> Any:
    if w.none_b is None:
        raise MappingError(
            f"Cannot encode None at {w.where()}: none_atom is disabled. Pass none_atom='nil' or 'undefined'."
        )
    w.out.extend(w.none_b)
    return DONE


def write_map(w: Writer, value: dict) -> Any:
    if len(w.stack) >= w.max_depth:
        raise w.too_deep()
    w.out.extend(_P_B_U32(MAP_EXT, len(value)))
    if value:
        w.stack.append(["map", iter(value.items()), _NOVAL, 0])
        w.path_stack.append(("map", "<key>", 0))
    return DONE


def write_list(w: Writer, value: list) -> Any:
    n = len(value)
    if n == 0:
        w.out.append(NIL_EXT)
    elif n <= _STRING_MAX and _is_bytes_list(value):
        w.out.extend(bytes((STRING_EXT,)) + _P_U16(n))  # as term_to_binary writes a list of bytes
        w.out.extend(bytes(value))
    else:
        if len(w.stack) >= w.max_depth:
            raise w.too_deep()
        w.out.extend(_P_B_U32(LIST_EXT, n))
        w.stack.append(["list", iter(value), None, 0])
        w.path_stack.append(("list", None, 0))
    return DONE


def write_tuple(w: Writer, value: tuple) -> Any:
    n = len(value)
    if n <= _SMALL_MAX:
        w.out.append(SMALL_TUPLE_EXT)
        w.out.append(n)
    else:
        w.out.extend(_P_B_U32(LARGE_TUPLE_EXT, n))
    if n:
        if len(w.stack) >= w.max_depth:
            raise w.too_deep()
        w.stack.append(["tuple", iter(value), None, 0])
        w.path_stack.append(("tuple", None, 0))
    return DONE


def write_bytes(w: Writer, value: Any) -> Any:
    if type(value) is memoryview:
        if value.format != "B" or value.ndim != 1:
            warn_flattened(w, value)
        mv = flat_bytes(value)
    else:
        mv = value
    if w.bytes_tag == BIT_BINARY_EXT:
        # Tagged mode: 8 used bits in the last byte (0 when empty) marks Python bytes.
        if type(value) is bytearray and w.bytearrays is not None:
            note_bytearray(w)
        w.tagged = None if w.tagged is None else w.tagged + 1
        w.out.extend(_P_B_U32(BIT_BINARY_EXT, len(mv)))
        w.out.append(8 if len(mv) else 0)
    else:
        w.out.extend(_P_B_U32(BINARY_EXT, len(mv)))
    w.out.extend(mv)
    return DONE


def note_bytearray(w: Writer) -> None:
    """Record the bytearray about to be written as the next tagged binary, or say that it comes back as bytes."""
    if w.tagged is not None:
        w.bytearrays.append(w.tagged)
        return
    warn_at_caller(
        f"The bytearray at {w.where()} comes back as bytes: it follows an OpaqueTerm, whose binaries a reader "
        "counts and this writer cannot, so its place among the binaries is unknown. Put the OpaqueTerm after "
        "it, or convert it back (bytearray(value)) after loads.",
        LossyConversionWarning,
    )


def warn_flattened(w: Writer, view: memoryview) -> None:
    """Say that a typed or multi-dimensional memoryview goes as its bytes: a binary has no format or shape.

    Read back, the bytes do not compare equal to the view (a ``'d'`` view compares doubles), so this is
    said, not silent; no other format keeps the view inside a term (pickle refuses memoryviews).
    """
    warn_at_caller(
        f"A memoryview at {w.where()} (format {view.format!r}, shape {list(view.shape)}) is written as its "
        f"{view.nbytes} bytes and comes back as plain bytes, without its format and shape. Send it alone (the "
        "raw format keeps both), or as a NumPy array (np.asarray(view)).",
        LossyConversionWarning,
    )


def _is_bytes_list(value: list) -> bool:
    for x in value:
        if type(x) is not int or not 0 <= x <= _SMALL_MAX:
            return False
    return True


def encode_other(w: Writer, value: Any) -> Any:
    """Encode the rarer types; return a replacement value to encode, or DONE."""
    if w.plain and isinstance(value, _NOT_PLAIN):
        hint = f"pass the str {str(value)!r}" if isinstance(value, Atom) else "pass plain data"
        raise MappingError(f"{type(value).__name__} at {w.where()}: this data holds no atoms or other BEAM terms "
                           f"(docs/format.md §2: every node decodes it with [safe]); {hint}.")
    if isinstance(value, ImproperList):
        if not value.items:
            return value.tail
        w.out.extend(_P_B_U32(LIST_EXT, len(value.items)))
        # Items first, then the tail in place of the closing NIL.
        w.stack.append(["improper", iter(value.items), value.tail, 0])
        w.path_stack.append(("list", None, 0))
        return DONE
    if isinstance(value, BitBinary):
        if not 1 <= value.bits <= 8 or not value.data:
            raise EncodeError(f"Invalid BitBinary at {w.where()}: bits must be 1..8 and data non-empty.")
        if value.bits == 8 and w.bytes_tag == BIT_BINARY_EXT and w.tagged is not None:
            w.tagged += 1  # read back as a tagged binary: counted as one
        w.out.extend(_P_B_U32(BIT_BINARY_EXT, len(value.data)))
        w.out.append(value.bits)
        w.out.extend(value.data)
        return DONE
    if isinstance(value, (Pid, Port, Reference)):
        write_identifier(w, value)
        return DONE
    if isinstance(value, OpaqueTerm):
        w.tagged = None  # its binaries are not counted: bytearrays after it cannot be placed
        w.out.extend(value.data)
        return DONE
    replaced = coerce(value)
    if replaced is not DONE:
        return replaced
    if type(value).__name__ == "NaTType":  # a datetime subclass: the DateTime mapping would write NaN fields
        raise MappingError(
            f"Cannot encode pandas NaT (a missing time) at {w.where()}: it has no date or time, and Elixir's "
            "DateTime has no missing value. Send None (nil) in its place: `None if pd.isna(v) else v`, or "
            "df.astype(object).where(df.notna(), None) for a whole DataFrame."
        )
    if w.convert is not None:
        replaced = w.convert(value, w.here)
        if replaced is not DONE and replaced is not value:
            return replaced
    name = f"{type(value).__module__}.{type(value).__qualname__}"
    if name in _NUMPY_REFUSED:
        raise MappingError(f"Cannot encode {name} at {w.where()} as ETF: {_NUMPY_REFUSED[name]}")
    if name == "numpy.ndarray" and value.dtype.hasobject:  # a numeric one is an embedded frame, not ETF
        raise MappingError(
            f"Cannot encode a numpy.ndarray of dtype {value.dtype} at {w.where()} as ETF: an array of Python "
            "objects has no BEAM form. Return value.tolist() (its items must map, docs/types.md), or an array "
            "of a numeric, bool or string dtype."
        )
    if isinstance(value, (collections.abc.Iterator, collections.abc.AsyncIterator)):
        collect = "[x async for x in it]" if isinstance(value, collections.abc.AsyncIterator) else "list(it)"
        raise MappingError(
            f"Cannot encode {name} at {w.where()} as ETF: an iterator (a generator, map, zip...) is read once, "
            f"not a value: collect its items first, e.g. return {collect} instead of the iterator it."
        )
    raise MappingError(
        f"Cannot encode {name} at {w.where()} as ETF: "
        "no mapping for this type. Convert it to a dict/list/tuple of basic values, register a struct "
        "mapping with tether.etf.register_struct, or use format='pickle' for Python-only data."
    )


# NumPy scalars with no ETF form: docs/types.md maps none of them to a BEAM type (as datetime.timedelta is
# not), so they are refused by name, with the conversion that does map; under format="auto" they go to
# pickle. Floats wider than a double are refused only where they are (x86-64 and aarch64 Linux; elsewhere
# np.longdouble is a double, written as a float like np.float64).
_WIDER = ("is wider than a double, the widest float Python and the BEAM have: written as one, a value with more "
          "digits would come back a different number. Send {fix} if a double is enough, or use format='pickle' "
          "(the default format='auto' does) to keep every digit.")
_NUMPY_REFUSED = {
    "numpy.timedelta64": "the BEAM has no duration type, and the integer inside is in the scalar's own unit. "
                         "Send a count in a unit you name, e.g. int(v // np.timedelta64(1, 'us')), or use "
                         "format='pickle' for Python-only data.",
    "numpy.datetime64": "no mapping for NumPy datetimes. Send v.item() (a datetime.datetime, which maps to "
                        "NaiveDateTime, for units down to us), or use format='pickle' for Python-only data.",
    "numpy.longdouble": "its type " + _WIDER.format(fix="float(v)"),
    "numpy.clongdouble": "each part's type " + _WIDER.format(fix="complex(v)"),
}


def write_identifier(w: Writer, value: Pid | Port | Reference) -> None:
    """A pid, port or reference, in the version of its tag that it was read with."""
    write = w.out.extend
    tag = value.tag
    if isinstance(value, Pid):
        write(bytes((tag,)))
        write(w.atom(value.node))
        write(_P_U32_PAIR(value.id, value.serial) + value.creation.to_bytes(4 if tag == NEW_PID_EXT else 1, "big"))
    elif isinstance(value, Port):
        write(bytes((tag,)))
        write(w.atom(value.node))
        id_width = 8 if tag == V4_PORT_EXT else 4
        cr_width = 1 if tag == PORT_EXT else 4
        write(value.id.to_bytes(id_width, "big") + value.creation.to_bytes(cr_width, "big"))
    elif tag == REFERENCE_EXT:
        write(bytes((REFERENCE_EXT,)))
        write(w.atom(value.node))
        write(_P_U32(value.ids[0]) + bytes((value.creation,)))
    else:
        write(bytes((tag,)) + _P_U16(len(value.ids)))
        write(w.atom(value.node))
        width = 4 if tag == NEWER_REFERENCE_EXT else 1
        write(value.creation.to_bytes(width, "big") + b"".join(_P_U32(i) for i in value.ids))


def coerce(value: Any) -> Any:
    """Subclasses and numpy scalars as their base type, or DONE when ``value`` is none of those.

    A NumPy number becomes the Python number of equal value (``np.float32(2.5)`` is written as ``2.5``,
    ``np.complex64`` as a ``complex``); one no Python number holds exactly (``np.longdouble`` wider than a
    double) is DONE, and refused by name.
    """
    # The base type's own methods, not the subclass's: a subclass may override __str__ (an Enum whose
    # str() is 'Color.RED', not its value 'red'), __int__, __iter__..., and what is written is its data.
    if isinstance(value, bool):
        return value is True
    if isinstance(value, Atom):
        return Atom(str.__str__(value))
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int.__index__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, dict):
        return dict.copy(value)
    if isinstance(value, list):
        return list.copy(value)
    if isinstance(value, tuple):
        return tuple.__getitem__(value, slice(None))
    if isinstance(value, (bytes, bytearray)):
        return bytes(memoryview(value))
    return _numpy_scalar(value)


def _numpy_scalar(value: Any) -> Any:
    try:
        import numpy as np
    except ImportError:  # pragma: no cover
        return DONE
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.timedelta64):  # an np.integer too: int() would drop its unit, or refuse it (unit s)
        return DONE
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        # Wider than a double: x87 80-bit, IEEE quad or double-double; no Python number holds it, so it is
        # refused by name (_NUMPY_REFUSED). By size, as np.finfo costs four times the conversion.
        return DONE if value.itemsize > 8 else float(value)
    if isinstance(value, np.complexfloating):
        return DONE if value.itemsize > 16 else complex(value)
    return DONE


WRITERS: dict[type, Callable[[Writer, Any], Any]] = {
    float: write_float,
    type(None): write_none,
    dict: write_map,
    FrozenMap: write_map,
    list: write_list,
    FrozenList: write_list,
    tuple: write_tuple,
    bytes: write_bytes,
    bytearray: write_bytes,
    memoryview: write_bytes,
}
