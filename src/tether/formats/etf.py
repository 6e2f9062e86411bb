"""etf: BEAM terms as Erlang External Term Format, the payload ``binary_to_term/1`` reads.

Frames written by Python record ``type.binaries = "tagged"``: ``str`` is written
as BINARY_EXT and ``bytes`` as BIT_BINARY_EXT with all 8 bits of the last byte
used (0 for an empty binary). BEAM reads both as ordinary binaries; Python
reads them back as ``str`` and ``bytes``. Frames written by BEAM carry
``"binaries" => "beam"``, where binaries decode as ``bytes`` unless the caller
asks for ``options={"binaries": "str"}``.

Small terms are the most common frames there are (a worker call, a message
between processes), so this format also writes whole plain frames in one step
(:meth:`EtfFormat.dumps_plain`), from the frame layer's own pieces: the same
bytes and the same decision record as the general path.

Whatever the writer sent, the reader chooses the Python form: ``loads(frame,
into="arrow" | "pandas" | "polars")`` reads rows (a list of maps) or columns
(a map of equal-length lists) as a table, through :func:`tether.arrow.from_etf`
(clean columns go from ETF straight into Arrow buffers, in C), and
``into="pylist"`` reads a list.
"""

from __future__ import annotations

import sys
from functools import partial
from typing import Any, Mapping

from .. import _etf, _structs, frame, memory
from .._etf import tags
from .. import arrow as arrow_api
from .._errors import ColumnError, DecodeError, EncodeError, LimitError, MappingError, ValidationError
from .._limits import Limits, get_limits
from .._types import (FLOAT_ATOMS, Atom, BitBinary, FrozenList, FrozenMap, ImproperList, OpaqueTerm, Pid, Port,
                      Reference, floats_for_atoms)
from ._arrow_cost import pylist_rows_cost
from ._base import DecodeContext, EncodeContext, Format, Payload

DECODE_OPTIONS = ("binaries", "charlists", "atoms", "none_atom", "views")
# Binaries at least this large decode as views into the frame unless copy=True.
VIEW_MIN = 64 << 10
ENCODE_OPTIONS = ("minor_version", "none_atom", "nan")

_TYPE = {"binaries": "tagged"}
# Non-finite floats as the atoms Nx writes for them (FLOAT_ATOMS); a frame whose type says "nan": "atoms"
# gives them back to Python as floats (the BEAM reads the atoms, as Tether.Worker does).
_BEAM_TYPES = (Atom, BitBinary, FrozenList, FrozenMap, ImproperList, OpaqueTerm, Pid, Port, Reference)
# auto_pick's answer for the exact container types, built once: most values asked about are one of these.
_CLAIMS = {t: (f"{t.__name__} of BEAM-representable values", None) for t in (dict, list, tuple)}


# Under memory pressure, lists of at least this many elements are encoded in batches straight into the frame.
BATCH_MIN = 4096
# The first batch's element count; later batches aim at memory.PIECE bytes each.
FIRST_BATCH = 1024
# While the batches add up to less than this they are kept, and joined if that is all: a small
# list is not encoded twice. (Keeping more would raise the peak of a large list by as much.)
KEEP_MAX = 1 << 20
_LIST_HEAD = 6  # LIST_EXT and its 4-byte length, after the version byte


class _NotBatchable(Exception):
    """A list whose batches do not concatenate to its whole encoding: it is encoded whole."""


# The into= forms that read the term as a table.
TABLE_INTOS = ("arrow", "pandas", "polars")


class EtfFormat(Format):
    id = 4
    name = "etf"
    option_keys = frozenset(ENCODE_OPTIONS + DECODE_OPTIONS)
    plain_temporary = True  # dumps_plain encodes the term, then copies it into the frame
    intos = (*TABLE_INTOS, "pylist")
    auto_priority = 50
    fallback = "pickle"  # a part ETF cannot map: the decision says which

    def __init__(self) -> None:
        self._encode_options: tuple[Limits | None, _etf.Options | None] = (None, None)
        self._decode_options: dict[tuple, _etf.Options] = {}
        self._decode_limits: Limits | None = None
        self._given_options: dict[tuple, _etf.Options] = {}

    def warns_on_fallback(self, exc: Exception) -> bool:
        """Warn when ETF refused a value it maps (a NaN, say), not when a part has no mapping at all.

        A type with no mapping going to pickle is the documented rule (the
        decision says why); a float dict going to pickle because one value is
        NaN is a surprise the caller learns about only when ``loads`` refuses
        the pickle, so it warns.

        Examples
        --------
        >>> FORMAT.warns_on_fallback(EncodeError("nan")), FORMAT.warns_on_fallback(MappingError("no mapping"))
        (True, False)
        """
        return isinstance(exc, EncodeError) and not isinstance(exc, MappingError)

    def can_encode(self, obj: Any) -> bool:
        """Always True: whether a value maps to ETF shows only in :meth:`encode` (a MappingError)."""
        return True  # attempted; unsupported types raise MappingError

    def auto_pick(self, obj: Any, transport: str) -> tuple[str, int | None] | None:
        """Claim containers, BEAM types and values with a registered struct mapping.

        Examples
        --------
        >>> FORMAT.auto_pick({"id": 1}, "pipe")
        ('dict of BEAM-representable values', None)
        >>> FORMAT.auto_pick(frozenset([1]), "pipe") is None  # would come back a set: pickle takes it
        True
        """
        claim = _CLAIMS.get(type(obj))
        if claim is not None:
            return claim
        t = type(obj)
        if isinstance(obj, (dict, list, tuple)) or isinstance(obj, _BEAM_TYPES):
            return f"{t.__name__} of BEAM-representable values", None
        if t is not frozenset and _structs.has_mapping(obj):  # a frozenset would come back a set
            return f"{t.__name__} maps to an Elixir struct", None
        return None

    def auto_pick_for(self, obj: Any, transport: str, reader: str) -> tuple[str, int | None] | None:
        """:meth:`auto_pick`, and a frozenset for the BEAM, which reads it as the MapSet it is (Python keeps
        it from pickle, which would give it back as a frozenset, not a set).

        Examples
        --------
        >>> FORMAT.auto_pick_for(frozenset([1]), "pipe", "beam")
        ('frozenset (a MapSet for the BEAM)', None)
        """
        if reader == "beam" and type(obj) is frozenset:
            return "frozenset (a MapSet for the BEAM)", None
        return self.auto_pick(obj, transport)

    def encode(self, obj: Any, ctx: EncodeContext) -> Payload:
        """The term in tagged mode (``bytes`` as BIT_BINARY, so ``str`` and ``bytes`` both round-trip).

        Large lists are written in batches straight into the frame.
        """
        kwargs = {k: v for k, v in ctx.options.items() if k in ENCODE_OPTIONS}
        opts = self._options_given(kwargs) if kwargs else self.encode_options()
        convert = _type_versions(ctx.options)
        info: dict[str, Any] = {"binaries": "tagged"}
        if opts.none_atom != "nil":
            info["none_atom"] = opts.none_atom
        p = Payload(info)
        batched = _batched(obj, opts, convert) if _large_list(obj) else None
        found: list[int] = []
        try:
            data = batched if batched is not None else _etf.encode(obj, opts, bytes_tag=_etf.BIT_BINARY,
                                                                   convert=convert, bytearrays=found)
        except EncodeError as exc:
            nonfinite, blocker = _floats_as_atoms(obj)
            if "nan" in kwargs or not nonfinite:
                raise
            if blocker:
                raise EncodeError(
                    f"{exc} It could go as Nx's atoms (nan, infinity, neg_infinity) read back as floats, but the "
                    f"value also holds {blocker}, which would then read back as a float too, or stay an atom: "
                    "replace one of them (the floats with None, or the atom with a string)."
                ) from None
            # NaN or infinity (an ML metric, say): written as Nx's atoms, marked so that Python reads floats.
            found.clear()
            data = _etf.encode(obj, _etf.Options(**kwargs, nan="marked", limits=opts.limits),
                               bytes_tag=_etf.BIT_BINARY, convert=convert, bytearrays=found)
            info["nan"] = "atoms"
        if found:
            info["bytearrays"] = _runs(found)
        if isinstance(data, memory.Chunked):  # batches written straight into the frame
            p.add(data)
        else:  # the whole encoding (or, under memory pressure, the batches joined)
            p.add_temporary(data)
        return p

    def dumps_plain(
        self, obj: Any, kind: int, transport: str, stamp: Mapping[str, Any] | None = None
    ) -> tuple[bytes, int] | None:
        """A whole plain frame (default options, no compression) and its payload size, or None.

        None means the general path must take the value (it raises, or falls
        back, with its own message). ``kind`` is
        :func:`tether.frame.checksum.requested`'s answer; ``stamp`` the
        frame's user metadata, lineage and step (:func:`tether.frame.plain`).

        Examples
        --------
        >>> import tether
        >>> frame, size = FORMAT.dumps_plain({"a": 1}, -1, "memory")
        >>> size, tether.loads(frame)
        (14, {'a': 1})
        >>> FORMAT.dumps_plain({"a": object()}, -1, "memory") is None
        True
        """
        if _large_list(obj):
            return None  # the general path writes it in batches, straight into the frame
        found: list[int] = []
        try:
            data = _etf.encode(obj, self.encode_options(), bytes_tag=_etf.BIT_BINARY, bytearrays=found)
        except Exception:
            return None
        if found:
            return None  # the general path records where the bytearrays are
        kind = frame.checksum.kind_for(kind, len(data), transport, False)
        return frame.plain(self, _TYPE, data, kind, type_key="tagged", stamp=stamp), len(data)

    def _options_given(self, kwargs: dict[str, Any]) -> _etf.Options:
        """The ETF options for a dumps' ``options=`` (cached: a new Options also parses its C copy anew)."""
        limits = get_limits()
        try:
            key = (limits, tuple(sorted(kwargs.items())))
            cached = self._given_options.get(key)
        except TypeError:  # an unhashable value: Options names it
            return _etf.Options(**kwargs)
        if cached is None:
            if len(self._given_options) > 64:
                self._given_options.clear()
            cached = self._given_options[key] = _etf.Options(**kwargs, limits=limits)
        return cached

    def encode_options(self) -> _etf.Options:
        """The ETF options an etf payload is written with by default, under the current limits (cached).

        Examples
        --------
        >>> from tether import formats
        >>> formats.get("etf").encode_options() is formats.get("etf").encode_options()
        True
        """
        limits = get_limits()
        if self._encode_options[0] is not limits:
            self._encode_options = (limits, _etf.Options(limits=limits))
        return self._encode_options[1]  # type: ignore[return-value]

    def _decoded(self, payload: Any, type_info: dict, ctx: DecodeContext) -> Any:
        """The term, with its bytearrays' places when the frame records them (named in an error only then)."""
        runs = bytearray_runs(type_info, ctx.frame_id) if "bytearrays" in type_info else None
        return _etf.decode(payload, self.decode_options(type_info, ctx), bytearrays=runs,
                           where=f"{ctx.frame_id}: type.bytearrays" if runs else None)

    def decode(self, payload: memoryview, type_info: dict[str, Any], ctx: DecodeContext) -> Any:
        """The term; with ``into=`` a list as ``"pylist"``, or rows or columns as a table form.

        Examples
        --------
        >>> import tether
        >>> frame = tether.dumps([{"id": 1}, {"id": 2}], format="etf")
        >>> tether.loads(frame, into="arrow").num_rows
        2
        """
        if ctx.into is None:
            value = self._decoded(payload, type_info, ctx)
            return floats_for_atoms(value) if type_info.get("nan") == "atoms" else value
        if ctx.into == "pylist":
            value = self._decoded(payload, type_info, ctx)
            value = floats_for_atoms(value) if type_info.get("nan") == "atoms" else value
            if type(value) is dict and value and _table_shaped(value):
                # Columns read as rows, as an Arrow frame's into="pylist" reads a table.
                return _rows_of(value, ctx)
            if type(value) is not list:
                raise ValidationError(
                    f"{ctx.frame_id}: into='pylist' needs an etf frame holding a list, or columns (a map of "
                    f"equal-length lists); this one holds {_kind(value)}. Leave into unset to get the value as it is."
                )
            return value
        return self._decode_table(payload, type_info, ctx)

    def _decode_table(self, payload: memoryview, type_info: dict[str, Any], ctx: DecodeContext) -> Any:
        """The term as a table in the form ``ctx.into`` names (see :data:`TABLE_INTOS`)."""
        from .arrow import convert

        shape = "rows (a list of maps) or columns (a map of equal-length lists)"
        try:
            table = arrow_api.from_etf(payload, limits=ctx.limits, float_atoms=type_info.get("nan") == "atoms")
        except ColumnError as exc:
            value = _etf.decode(payload, self.decode_options(type_info, ctx._replace(into=None)))
            if _table_shaped(value):  # the right shape; a column Arrow cannot hold
                raise ColumnError(f"{ctx.frame_id}: into={ctx.into!r}: {exc}") from exc
            what = _kind(value) + (" that is neither" if type(value) in (list, dict) else "")
            raise ValidationError(
                f"{ctx.frame_id}: into={ctx.into!r} needs {shape}; this frame holds {what}. "
                "Leave into unset to get the value as it is."
            ) from None
        return convert(table, ctx.into, copy=ctx.copy)

    def decode_options(self, type_info: dict[str, Any], ctx: DecodeContext) -> _etf.Options:
        """The decoder options for a frame's type information and a ``loads`` call (cached).

        Examples
        --------
        Frames Python writes are tagged (``str`` and ``bytes`` kept apart); the BEAM's are not:

        >>> from tether.formats import DecodeContext
        >>> FORMAT.decode_options({"binaries": "tagged"}, DecodeContext()).binaries
        'tagged'
        >>> FORMAT.decode_options({}, DecodeContext()).binaries
        'bytes'
        """
        if self._decode_limits is not ctx.limits:  # by identity: hashing Limits costs more than small decodes
            self._decode_options.clear()
            self._decode_limits = ctx.limits
        mode = type_info.get("binaries", "beam")
        none_atom = type_info.get("none_atom", "nil")
        options = ctx.options
        try:
            key = (mode, none_atom, ctx.copy, tuple(options.items()) if options else ())
            cached = self._decode_options.get(key)
        except TypeError:
            key = cached = None
        if cached is None:
            cached = _options(ctx.limits, mode, none_atom, ctx.copy, options)
            if key is not None:
                if len(self._decode_options) > 64:
                    self._decode_options.clear()
                self._decode_options[key] = cached
        return cached


def _floats_as_atoms(obj: Any) -> tuple[bool, str]:
    """Whether ``obj`` holds a non-finite float, and what stops reading the atoms back as floats from giving
    ``obj`` again ("" when nothing): one of the atoms that would stand for one, or a non-finite float in a
    map key or set member, which are read back as written (an atom stays an atom there).
    Each container is looked into once, so a value that contains itself ends the walk (the encoder
    then names the cycle)."""
    stack, found, seen = [obj], False, set()
    while stack:
        value = stack.pop()
        t = type(value)
        if t is float:
            found = found or value - value != 0.0  # inf - inf and nan are nan
        elif t is Atom:
            if value in FLOAT_ATOMS:
                return True, f"the atom {str(value)!r}"
        elif isinstance(value, (set, frozenset)):
            if _nonfinite_in_keys(value):
                return True, "a non-finite float in a set"
        elif isinstance(value, (list, tuple, dict, ImproperList)) and id(value) not in seen:  # subclasses too
            seen.add(id(value))
            if isinstance(value, dict):
                if _nonfinite_in_keys(value.keys()):
                    return True, "a non-finite float in a map key"
                stack.extend(value.values())
            elif isinstance(value, ImproperList):
                stack.extend(value.items)
                stack.append(value.tail)
            else:
                stack.extend(value)
        elif _written_as_float(value):
            found = found or float(value) - float(value) != 0.0
    return found, ""


def _nonfinite_in_keys(keys: Any) -> bool:
    """Whether map keys (or set members) hold a non-finite float at any depth: hashable, so acyclic."""
    stack = list(keys)
    while stack:
        value = stack.pop()
        if _written_as_float(value):
            if float(value) - float(value) != 0.0:
                return True
        elif isinstance(value, (tuple, frozenset)):
            stack.extend(value)
        elif isinstance(value, dict):  # a FrozenMap
            stack.extend(value.keys())
            stack.extend(value.values())
    return False


def _written_as_float(value: Any) -> bool:
    """Whether the encoder writes ``value`` as a float: a float subclass (np.float64), or a NumPy float scalar."""
    np = sys.modules.get("numpy")  # a NumPy scalar means NumPy is imported: no import here
    return isinstance(value, float) or (np is not None and isinstance(value, np.floating))


def _large_list(obj: Any) -> bool:
    """A list long enough to encode in batches, under memory pressure (checked only for such lists)."""
    return type(obj) is list and len(obj) >= BATCH_MIN and memory.under_pressure()


def _batch_bodies(obj: list, opts: _etf.Options, convert: Any) -> Any:
    """The elements of ``obj`` as ETF, a batch at a time: each batch's encoding without its list head and tail.

    Raises `_NotBatchable` when a batch is not a plain list encoding.
    """
    count, i = FIRST_BATCH, 0
    while i < len(obj):
        found: list[int] = []
        data = _etf.encode(obj[i : i + count], opts, bytes_tag=_etf.BIT_BINARY, convert=convert, bytearrays=found)
        if found:  # their places count from the whole list's start: the whole encode records them
            raise _NotBatchable
        i += count
        if data[1] == tags.STRING_EXT:  # small ints packed as a string; in a longer list each is an element
            body = bytearray(2 * (len(data) - 4))
            body[0::2] = bytes((tags.SMALL_INTEGER_EXT,)) * (len(data) - 4)
            body[1::2] = memoryview(data)[4:]
            yield memoryview(body)
        elif data[1] == tags.LIST_EXT and data[-1] == tags.NIL_EXT:
            yield memoryview(data)[_LIST_HEAD:-1]
        else:
            raise _NotBatchable
        count = max(1, min(1 << 16, count * memory.PIECE // len(data)))
        del data  # not alive while the next batch is encoded


def _list_pieces(obj: list, opts: _etf.Options, convert: Any, n: int = 0) -> Any:
    """``obj``'s whole ETF encoding, piece by piece (``n`` is unused: batches aim at memory.PIECE bytes)."""
    yield bytes((tags.VERSION_MAGIC, tags.LIST_EXT)) + len(obj).to_bytes(4, "big")
    yield from _batch_bodies(obj, opts, convert)
    yield bytes((tags.NIL_EXT,))


def _batched(obj: list, opts: _etf.Options, convert: Any) -> memory.Chunked | bytes | None:
    """Under pressure: a large list encoded twice, once to learn its size and once straight into the frame.

    An encoding under `KEEP_MAX` comes back whole (bytes), as without
    pressure. None when the list is better encoded whole after all: its
    encoding is under memory.LOW_PEAK_MIN, a batch failed (the whole encode
    then raises or falls back with its usual message, naming the whole
    list's place), or it may be one STRING_EXT.
    """
    size, kept = 0, []
    try:
        for piece in _list_pieces(obj, opts, convert):
            size += len(piece)
            if kept is not None:  # while small, keep the pieces: joined they are the whole encoding
                kept.append(piece)
                if size >= KEEP_MAX:
                    kept = None
    except Exception:  # noqa: BLE001 - any failure: the whole encode reports it, with the right path
        return None
    if kept is not None:
        # Up to 65535 small ints the whole list is one STRING_EXT, which the batches are not.
        return b"".join(kept) if len(obj) > 0xFFFF else None
    if size < memory.LOW_PEAK_MIN:
        return None  # a second, whole encode costs less than batches here

    def write(dest: memoryview) -> None:
        pos = 0
        for piece in _list_pieces(obj, opts, convert):
            if pos + len(piece) > size:
                break
            dest[pos : pos + len(piece)] = piece
            pos += len(piece)
            del piece  # not alive while the next batch is encoded
        if pos != size:
            raise EncodeError(f"The list of {len(obj)} elements encoded to a different size on the second pass "
                              f"({size} B before); was it changed while it was written?")

    memory.decide("dumps", f"memory pressure: a list of {len(obj)} elements encoded twice in batches, the second "
                  f"time straight into the frame ({size} B; the encoded payload is never held whole)",
                  path="etf in place", nbytes=size, elements=len(obj))
    return memory.Chunked(size, write, partial(_list_pieces, obj, opts, convert))


def _runs(ordinals: list[int]) -> list[int]:
    """Rising ordinals as runs ``[start, count, ...]``: a list of a million bytearrays is one run.

    Examples
    --------
    >>> _runs([0, 1, 2, 5, 7, 8])
    [0, 3, 5, 1, 7, 2]
    """
    runs: list[int] = []
    for k in ordinals:
        if runs and runs[-2] + runs[-1] == k:
            runs[-1] += 1
        else:
            runs += [k, 1]
    return runs


def bytearray_runs(type_info: Mapping[str, Any], frame_id: str) -> list[int] | None:
    """A frame's ``type.bytearrays``, checked: runs ``[start, count, ...]`` rising and apart, or None.

    Examples
    --------
    >>> bytearray_runs({"bytearrays": [0, 2, 5, 1]}, "frame")
    [0, 2, 5, 1]
    >>> bytearray_runs({"bytearrays": [3, 0]}, "frame")
    Traceback (most recent call last):
    ...
    tether._errors.DecodeError: frame: type.bytearrays must be runs [start, count, ...] of tagged binaries, ...
    """
    runs = type_info.get("bytearrays")
    if runs is None:
        return None
    ok = type(runs) is list and len(runs) % 2 == 0 and all(type(x) is int and x >= 0 for x in runs)
    end = 0
    for start, count in zip(runs[0::2], runs[1::2]) if ok else ():
        ok = ok and count > 0 and start >= end
        end = start + count
    if not ok:
        raise DecodeError(f"{frame_id}: type.bytearrays must be runs [start, count, ...] of tagged binaries, "
                          f"rising and apart, with counts above 0; got {str(runs)[:200]}. The metadata is corrupt: "
                          "read the frame with options={'binaries': 'bytes'} to get those binaries as bytes.")
    return runs


def _type_versions(options: Any) -> Any:
    """The encoder hook for a reader that knows older user-type versions (``options["versions"]["types"]``), or None.

    None keeps the default hook (:func:`tether._structs.convert` at each type's own version).
    """
    versions = options.get("versions") if options else None
    types = versions.get("types") if isinstance(versions, Mapping) else None
    if not types:
        return None
    if not isinstance(types, Mapping):
        raise ValidationError(f"options['versions']['types'] maps type names to versions, got {types!r}.")
    return partial(_structs.convert, versions=types)


def _rows_of(columns: dict[Any, list], ctx: DecodeContext) -> list[dict[Any, Any]]:
    """Columns as rows, within the limit an Arrow frame's ``into="pylist"`` keeps: the row dicts are new memory.

    Examples
    --------
    >>> import tether
    >>> tether.loads(tether.dumps({"a": [1, 2], "b": ["x", "y"]}, format="etf"), into="pylist")
    [{'a': 1, 'b': 'x'}, {'a': 2, 'b': 'y'}]
    """
    rows = len(next(iter(columns.values())))
    cost = pylist_rows_cost(rows, len(columns))
    if cost > ctx.limits.max_uncompressed_size:
        raise LimitError(
            f"{ctx.frame_id}: into='pylist' of {len(columns)} columns of {rows} values would build {rows} row "
            f"dicts, about {cost} bytes, over Limits.max_uncompressed_size ({ctx.limits.max_uncompressed_size}). "
            "Leave into unset to get the columns, or raise the limit with tether.set_limits(...)."
        )
    return [dict(zip(columns, row)) for row in zip(*columns.values())]


def _table_shaped(value: Any) -> bool:
    """Whether a decoded term is rows (a list of maps) or columns (a map of equal-length lists)."""
    if type(value) is list:
        return all(type(row) is dict for row in value)
    if type(value) is dict:
        return all(type(col) is list for col in value.values()) and len({len(c) for c in value.values()}) <= 1
    return False


def _kind(value: Any) -> str:
    """What a decoded term is, for messages: "a tuple", "an int"."""
    name = type(value).__name__
    return f"{'an' if name[:1] in 'aeiou' else 'a'} {name}"


def _options(limits: Limits, mode: Any, none_atom: Any, copy: bool, options: dict[str, Any]) -> _etf.Options:
    # Python wrote lists of small ints as lists: no charlist warning for them.
    kwargs: dict[str, Any] = {"binaries": "tagged" if mode == "tagged" else "bytes", "warn_charlists": mode != "tagged"}
    if none_atom != "nil":
        kwargs["none_atom"] = none_atom
    if not copy:
        kwargs["views"] = VIEW_MIN  # large binaries: read-only views into the frame
    for key in DECODE_OPTIONS:
        if key in options:
            kwargs[key] = options[key]
    try:
        hash(tuple(kwargs.values()))
    except TypeError:
        bad = {k: v for k, v in kwargs.items() if not isinstance(v, (str, int, type(None)))}
        raise ValidationError(f"Invalid etf decode options {bad!r}: option values are str, int or None.") from None
    return _etf.Options(limits=limits, **kwargs)


FORMAT = EtfFormat()
