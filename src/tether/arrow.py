"""Columnar conversion between BEAM/Python data and Arrow.

Schema inference, per column (every non-null value is looked at):

==========================================  ===================================
values                                      Arrow type
==========================================  ===================================
integers                                    int64; uint64 when above 2**63 - 1
floats                                      float64
integers and floats mixed                   float64, with a LossyConversionWarning
binaries (bytes) all valid UTF-8            utf8; otherwise binary (strict: binary)
Python str                                  utf8
atoms (:class:`tether.Atom`)                dictionary<int32, utf8> (strict: refused)
booleans                                    bool
``nil`` / None                              null (or the column's nulls)
lists                                       list<inferred>
maps                                        struct<inferred>
tuples of one arity (not under auto)       struct<"0": inferred, "1": inferred, ...>
Elixir ``DateTime`` structs                 timestamp[us, tz]
Elixir ``Date`` / ``Time`` structs          date32 / time64[us]
Elixir ``Decimal`` structs                  decimal128(38, scale) when it fits
Python datetime / decimal.Decimal           timestamp / decimal128 (strict: one zone
                                            Arrow restores as it was / one scale)
NumPy arrays (1-d)                          Arrow's type for the dtype; byte-swapped,
                                            str, bytes and object arrays are converted
                                            and their dtype recorded for ``loads``
Python date / time                          date32 / time64[us]
==========================================  ===================================

A column Arrow cannot hold (integers beyond 64 bits, pids, mixed kinds, and
tuples from Python, which would come back as dicts) raises :class:`ColumnError`; ``tether.dumps`` then falls back to etf
(or pickle) with a warning, and the decision record says which column and why.

``strict`` (what ``format="auto"`` uses) also refuses, as a :class:`ColumnError`,
every value that would come back different from Python's point of view: atoms
(they would come back as str), bytes (kept binary instead of becoming str),
datetimes in several zones or in a zone Arrow names otherwise
(``timezone.utc`` comes back as ``ZoneInfo("UTC")``), decimals of several
scales (``1.5`` beside ``2.25`` would come back as ``1.50``), maps whose rows
have different or non-str keys, Elixir structs (dicts with ``__struct__``),
NumPy StringDType columns (they would come back as object arrays), and pandas
column labels the pandas metadata does not restore as they were
(``{1: ..., "1": ...}``). CategoricalIndex column labels are refused in both
modes: pandas could not read such a frame back.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import itertools
import operator
import warnings
from typing import Any

import pyarrow as pa

from . import _etf
from ._buffers import as_view
from ._errors import ColumnError, LossyConversionWarning, ValidationError, warn_at_caller
from ._types import FLOAT_ATOMS, Atom, floats_for_atoms

__all__ = ["VALUES", "ColumnError", "columnar_shape", "from_etf", "is_dataframe", "is_numpy", "is_series",
           "is_text_type", "missing_markers", "numpy_dtype_recorded", "pandas_numpy_type_in",
           "pandas_series_frame", "to_table"]

# The column's name in the table when a one-column value has no str name of its own (a pyarrow array, a
# Series named None or by an int).
VALUES = "values"

_INT53 = 1 << 53
_NoneType = type(None)


def _module_name(obj: Any) -> str:
    return type(obj).__module__.split(".", 1)[0]


def is_dataframe(obj: Any) -> str | None:
    """'pandas' or 'polars' when ``obj`` is such a DataFrame (without importing either).

    Examples
    --------
    >>> is_dataframe([1]) is None
    True
    """
    mod = _module_name(obj)
    if mod in ("pandas", "polars") and type(obj).__name__ == "DataFrame":
        return mod
    return None


def is_series(obj: Any) -> str | None:
    """'pandas' or 'polars' when ``obj`` is such a Series (without importing either).

    Parameters
    ----------
    obj : Any

    Returns
    -------
    str or None

    Examples
    --------
    >>> import pandas as pd
    >>> is_series(pd.Series([1])), is_series(pd.DataFrame({"a": [1]}))
    ('pandas', None)
    """
    mod = _module_name(obj)
    if mod in ("pandas", "polars") and type(obj).__name__ == "Series":
        return mod
    return None


def is_numpy(obj: Any) -> bool:
    """Whether ``obj`` is a NumPy array (without importing NumPy).

    Parameters
    ----------
    obj : Any

    Returns
    -------
    bool
        True for ``numpy.ndarray`` itself, not for subclasses or array-likes.

    Examples
    --------
    >>> import numpy as np
    >>> is_numpy(np.zeros(3)), is_numpy([0.0, 0.0, 0.0])
    (True, False)
    """
    return type(obj).__name__ == "ndarray" and _module_name(obj) == "numpy"


def _col_name(key: Any) -> str:
    if isinstance(key, str):
        return str(key)
    if isinstance(key, bytes):
        try:
            return key.decode("utf-8")
        except UnicodeDecodeError:
            pass
    raise ColumnError(f"Column name {key!r} is not text; Arrow column names must be strings or UTF-8 binaries.")


def _first_index(values: list, kind: type) -> int:
    for i, v in enumerate(values):
        if type(v) is kind:
            return i
    return -1


def _is_struct(value: Any, name: str) -> bool:
    return isinstance(value, dict) and value.get(Atom("__struct__")) == name


def _datetime_us(v: dict) -> int:
    """Microseconds since the epoch of an Elixir DateTime struct decoded from ETF."""
    g = v.get
    micro = g(Atom("microsecond"), (0, 0))
    us = micro[0] if isinstance(micro, tuple) else int(micro)
    naive = _dt.datetime(g(Atom("year")), g(Atom("month")), g(Atom("day")), g(Atom("hour")), g(Atom("minute")), g(Atom("second")))
    offset = (g(Atom("utc_offset")) or 0) + (g(Atom("std_offset")) or 0)
    epoch = _dt.datetime(1970, 1, 1)
    return ((naive - epoch).days * 86400 + (naive - epoch).seconds - offset) * 1_000_000 + us


def _decimal(v: dict) -> decimal.Decimal:
    sign, coef, exp = v.get(Atom("sign")), v.get(Atom("coef")), v.get(Atom("exp"))
    if not isinstance(coef, int):
        raise ColumnError(f"Decimal with coefficient {coef!r} (NaN or infinity) has no decimal128 form.")
    return decimal.Decimal((0 if sign == 1 else 1, tuple(int(d) for d in str(coef)), exp))


# Lists, maps and tuples nest Arrow types; deeper than this is a ColumnError
# (the value stays etf), not a Python recursion overflow.
MAX_NESTING = 64


def column_to_arrow(name: str, values: list, *, strict: bool = False, _depth: int = 0) -> pa.Array:
    """Build one Arrow array from Python/BEAM values following the inference table.

    ``strict`` raises :class:`ColumnError` where a lossy conversion would only warn.

    Examples
    --------
    >>> column_to_arrow("n", [1, None, 3]).to_pylist()
    [1, None, 3]
    """
    if _depth == 0 and (not isinstance(name, str) or isinstance(values, (str, bytes, dict))
                        or not hasattr(values, "__len__")):
        # An iterator would be used up by the type scan and arrive empty; a str would become one row per character.
        raise ValidationError(
            f"column_to_arrow takes a column name (str) and its values as a list, got name={name!r:.60} and "
            f"values of type {type(values).__name__}; pass list(values)."
        )
    if _depth > MAX_NESTING:
        raise ColumnError(
            f"Column {name.split('.')[0].split('[')[0]!r} nests lists, maps or tuples more than {MAX_NESTING} "
            "levels deep; Arrow types that deep are not practical. Keep such values as etf."
        )
    kinds = set(map(type, values))
    nulls = _NoneType in kinds
    kinds.discard(_NoneType)
    try:
        return _column(name, values, kinds, strict, nulls, _depth)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError) as exc:
        if isinstance(exc, ColumnError):
            raise
        raise ColumnError(f"Column {name!r} cannot be represented in Arrow: {exc}.") from exc


def _mask(values: list, nulls: bool) -> pa.Array | None:
    """The null mask of a nested column, or None when nothing is null (the common case)."""
    if not nulls:
        return None
    return pa.array([v is None for v in values])


def _lossy(name: str, row: int, what: str, fix: str, strict: bool) -> None:
    message = f"Column {name!r} row {row}: {what}. {fix}"
    if strict:
        raise ColumnError(message)
    warn_at_caller(message, LossyConversionWarning)


def _column(name: str, values: list, kinds: set, strict: bool, nulls: bool, depth: int = 0) -> pa.Array:
    """The Arrow array of one column whose values are of ``kinds`` (None aside), by the inference table."""
    if not kinds:
        return pa.nulls(len(values))
    simple = _SIMPLE.get(frozenset(kinds))
    if simple is not None:
        if strict and kinds == {bytes}:  # Python bytes stay bytes; BEAM binaries are text, hence utf8 otherwise
            return pa.array(values, pa.binary())
        return simple(values)
    if kinds == {int}:
        return _int_column(name, values)
    if kinds <= {int, float}:
        return _float_column(name, values, kinds, strict)
    if kinds == {Atom}:
        if strict:
            raise ColumnError(f"Column {name!r} holds atoms; Arrow stores them as strings, which come back as str, "
                              "not tether.Atom. Send them as str, or keep such data as etf.")
        return _atom_column(values, nulls)
    if kinds == {_dt.datetime}:
        arr = pa.array(values)
        if strict:
            _check_zones(name, values, arr, nulls)
        else:
            _warn_zones(name, values)
        return arr
    if kinds == {decimal.Decimal}:
        arr = pa.array(values)
        if strict:
            _check_scale(name, values, arr, nulls)
        return arr
    if kinds == {_dt.date}:  # exact types: a datetime is a date too, and takes the timestamp branch above
        return pa.array(values, pa.date32())
    if kinds == {_dt.time}:
        return _time_column(name, values, strict)
    if kinds == {dict}:
        return _map_column(name, values, strict, nulls, depth)
    if kinds == {list}:
        present = [v or () for v in values] if nulls else values
        flat = list(itertools.chain.from_iterable(present))
        offsets = pa.array(list(itertools.accumulate(map(len, present), initial=0)), pa.int32())
        inner = column_to_arrow(f"{name}[]", flat, strict=strict, _depth=depth + 1)
        return pa.ListArray.from_arrays(offsets, inner, mask=_mask(values, nulls))
    if kinds == {tuple} and not strict:
        arities = {len(v) for v in values if v is not None} if nulls else set(map(len, values))
        if len(arities) == 1:
            return _tuple_column(name, values, arities.pop(), strict, nulls, depth)
    names = ", ".join(sorted(t.__name__ for t in kinds))
    raise ColumnError(
        f"Column {name!r} holds {names}; Arrow needs one kind per column "
        "(tuples, pids and mixed kinds have no Arrow type). Keep such data as etf."
    )


def _time_column(name: str, values: list, strict: bool) -> pa.Array:
    """time64[us] (Elixir's Time holds microseconds at most, as Python's does); a time zone is dropped, as
    the ETF mapping drops it (docs/types.md), with the same warning."""
    row = next((i for i, v in enumerate(values) if v is not None and v.tzinfo is not None), -1)
    if row >= 0:
        _lossy(name, row, f"time {values[row]} is stored without its time zone (time64 has none, nor Elixir's Time)",
               "Send datetimes when the zone matters.", strict)
        values = [v if v is None else v.replace(tzinfo=None) for v in values]
    return pa.array(values, pa.time64("us"))


def _warn_zones(name: str, values: list) -> None:
    """Say so when a column's datetimes are in several zones (naive counts as one): Arrow keeps one zone per
    column, so the others come back in the first one's, and a naive one as an instant in it."""
    first = next((v for v in values if v is not None), None)
    row = next((i for i, v in enumerate(values) if v is not None and v.tzinfo != first.tzinfo), -1)
    if row >= 0:
        _lossy(name, row, f"datetime {values[row]} is in another time zone than row "
               f"{values.index(first)}'s ({first.tzinfo!r}); Arrow keeps one zone per column (or none), so it "
               "comes back as that row's kind: in its zone, a naive time taken as an instant there, or an aware "
               "one without its zone",
               "Convert the datetimes to one zone first (.astimezone(zone)), or read with into='pylist'.", False)


def _check_zones(name: str, values: list, arr: pa.Array, nulls: bool) -> None:
    """Refuse datetimes that would come back in another zone: Arrow keeps one zone per column, by name.

    One pass over the column's values (``pa.array`` made one already); the
    round trip of one value tells whether Arrow names the zone so that it comes back as it was.
    """
    present = [v for v in values if v is not None] if nulls else values
    zones = set(map(_TZINFO, present))
    if len(zones) > 1:
        shown = sorted(map(repr, zones))[:2]
        raise ColumnError(f"Column {name!r} holds datetimes in {len(zones)} time zones (naive counts as one), e.g. "
                          f"{shown[0]} and {shown[1]}; Arrow keeps one zone per column, so each would come back "
                          "in the first one's. Convert them to one zone (.astimezone(zone)), or keep such data as etf.")
    zone = zones.pop()
    if zone is None:
        return
    row = next(i for i, v in enumerate(values) if v is not None) if nulls else 0
    back = arr[row].as_py()
    # A fixed offset's display name (timezone(+9h, "JST")) is not kept, but compares equal; etf would shift it to UTC.
    if type(back.tzinfo) is not type(zone) or back.tzinfo != zone:
        raise ColumnError(f"Column {name!r}: time zone {zone!r} comes back from Arrow as {back.tzinfo!r}. Use "
                          "zoneinfo.ZoneInfo zones (ZoneInfo('UTC') for UTC), or keep such data as etf.")


def _check_scale(name: str, values: list, arr: pa.Array, nulls: bool) -> None:
    """Refuse decimals Arrow would rescale: decimal128 has one scale per column, and no negative zero.

    ``Decimal("1.5")`` beside ``Decimal("2.25")`` would come back as ``Decimal("1.50")``: equal, but
    not the same number of places (``str``, ``as_tuple``, and what Elixir's Decimal shows).
    ``same_quantum`` compares exponents in C (a tenth of ``as_tuple``'s cost).
    """
    present = [v for v in values if v is not None] if nulls else values
    quantum = decimal.Decimal((0, (1,), -arr.type.scale))
    if all(map(quantum.same_quantum, present)) and (_ZERO not in present or not any(map(_negative_zero, present))):
        return
    row = next(i for i, v in enumerate(values) if v is not None and (not quantum.same_quantum(v) or _negative_zero(v)))
    raise ColumnError(f"Column {name!r} row {row}: decimal {values[row]} would come back as {arr[row].as_py()} "
                      f"(Arrow keeps one scale per column, {arr.type}). Quantize the column to one scale "
                      "(d.quantize(Decimal('0.01'))), or keep such data as etf.")


def _negative_zero(v: decimal.Decimal) -> bool:
    return v.is_zero() and v.is_signed()


_ZERO = decimal.Decimal(0)
_TZINFO = operator.attrgetter("tzinfo")


def _utf8_if_valid(values: list) -> pa.Array:
    arr = pa.array(values, pa.binary())
    try:
        return arr.cast(pa.utf8())  # Arrow validates the UTF-8 in C
    except pa.ArrowInvalid:
        return arr


_SIMPLE = {
    frozenset({bool}): lambda values: pa.array(values, pa.bool_()),
    frozenset({str}): lambda values: pa.array(values, pa.utf8()),
    frozenset({bytes}): _utf8_if_valid,
}


def _int_column(name: str, values: list) -> pa.Array:
    try:
        return pa.array(values, pa.int64())
    except (OverflowError, pa.ArrowInvalid):
        pass
    lo = min(v for v in values if v is not None)
    hi = max(v for v in values if v is not None)
    if lo >= 0 and hi < (1 << 64):
        return pa.array(values, pa.uint64())
    if lo < -(1 << 63) or hi >= (1 << 64):
        row = next(i for i, v in enumerate(values) if v is not None and not -(1 << 63) <= v < (1 << 64))
        raise ColumnError(
            f"Column {name!r} row {row}: integer {values[row]} is beyond 64 bits; Arrow has no such type. "
            "Send it as a binary or string, or keep the value as etf."
        )
    # Every value fits 64 bits, but negatives rule out uint64 and large ones int64.
    row = next(i for i, v in enumerate(values) if v is not None and v >= (1 << 63))
    raise ColumnError(
        f"Column {name!r} row {row}: integer {values[row]} needs uint64, but the column also holds "
        f"negative integers (e.g. {lo}), which need int64. Split the column, or send the large values "
        "as strings."
    )


def _float_column(name: str, values: list, kinds: set, strict: bool) -> pa.Array:
    if int in kinds:
        if kinds == {int, float}:
            row = _first_index(values, int if type(values[_first_index(values, float)]) is float else float)
            _lossy(name, row, "integers mixed with floats are stored as float64",
                   "Send every value as a float (5.0), or split the column.", strict)
        big = next((i for i, v in enumerate(values) if type(v) is int and abs(v) > _INT53), -1)
        if big >= 0:
            _lossy(name, big, f"integer {values[big]} above 2**53 loses precision as float64",
                   "Send the column as integers only, or as strings.", strict)
        # The warning has been given: convert, as Arrow refuses inexact ints itself.
        values = [float(v) if type(v) is int else v for v in values]
    return pa.array(values, pa.float64())


def _atom_column(values: list, nulls: bool) -> pa.Array:
    # Atoms are interned per decode: index them directly instead of
    # converting every one to UTF-8 and hashing it again.
    categories = list(dict.fromkeys(values))
    if nulls:
        categories.remove(None)
    index = {a: i for i, a in enumerate(categories)}
    if nulls:
        index[None] = None
    codes = pa.array(list(map(index.__getitem__, values)), pa.int32())
    return pa.DictionaryArray.from_arrays(codes, pa.array(categories, pa.utf8()))


def _map_column(name: str, values: list, strict: bool, nulls: bool, depth: int) -> pa.Array:
    sample = next(v for v in values if v is not None)
    if strict:  # structs first: their keys are atoms, which _check_keys would blame instead
        _check_structs(name, values)
        _check_keys(name, values)
    if _is_struct(sample, "Elixir.DateTime"):
        tz = sample.get(Atom("time_zone"), b"Etc/UTC")
        tz = tz.decode() if isinstance(tz, bytes) else str(tz)
        if tz != "Etc/UTC":
            _lossy(name, 0, f"DateTime in zone {tz!r} is stored as UTC microseconds with zone {tz!r}",
                   "Shift it to UTC in Elixir first if the zone matters.", False)
        return pa.array([None if v is None else _datetime_us(v) for v in values], pa.timestamp("us", tz="UTC"))
    if _is_struct(sample, "Elixir.Decimal"):
        arr = pa.array([None if v is None else _decimal(v) for v in values])
        if not pa.types.is_decimal128(arr.type) and not pa.types.is_decimal(arr.type):
            raise ColumnError(f"Column {name!r}: decimals do not fit decimal128.")
        return arr
    keys: dict[Any, None] = {}
    for v in values:
        if v is not None:
            keys.update(dict.fromkeys(v))
    if not keys:  # maps with no keys: a struct with no fields still has one slot per row
        return pa.array([None if v is None else {} for v in values], pa.struct([]))
    names = [_col_name(k) for k in keys]
    arrays = [
        column_to_arrow(f"{name}.{col}", [None if v is None else v.get(k) for v in values], strict=strict,
                        _depth=depth + 1)
        for k, col in zip(keys, names)
    ]
    return pa.StructArray.from_arrays(arrays, names=names, mask=_mask(values, nulls))


_STRUCT = Atom("__struct__")
# What Arrow makes of a struct column (_map_column): none keeps the struct as etf does.
_STRUCTS_AS = {
    "Elixir.DateTime": "as a UTC timestamp, which comes back as a datetime in ZoneInfo('UTC'), not in its own zone",
    "Elixir.Decimal": "as decimal128 with one scale for the column",
}


def _check_structs(name: str, values: list) -> None:
    """Refuse Elixir structs (dicts with a ``__struct__`` key, as ETF decodes unknown structs, or any with
    ``structs=False``): Arrow keeps no struct name, so none comes back as etf would give it back."""
    row = next((i for i, v in enumerate(values) if v is not None and _STRUCT in v), -1)
    if row < 0:
        return
    struct = values[row][_STRUCT]
    stored = _STRUCTS_AS.get(struct, "as a struct of str fields, which comes back as dicts without __struct__")
    raise ColumnError(f"Column {name!r} row {row}: an Elixir struct ({struct}, a dict with __struct__) would be "
                      f"stored {stored}. Convert the structs to Python values first (datetime, Decimal, plain "
                      "dicts), or keep such data as etf.")


def _check_keys(name: str, values: list) -> None:
    """Refuse maps a struct column would change: every row gets every key (None where it had none), as str."""
    keys: dict[Any, None] = {}
    for v in values:
        if v is not None:
            keys.update(dict.fromkeys(v))
    bad = next((k for k in keys if type(k) is not str), None)
    if bad is not None:
        raise ColumnError(f"Column {name!r}: map key {bad!r} is not a str; Arrow field names are strings, so it "
                          "would come back as one. Use str keys, or keep such data as etf.")
    row = next((i for i, v in enumerate(values) if v is not None and len(v) != len(keys)), -1)
    if row >= 0:
        missing = [k for k in keys if k not in values[row]][:3]
        raise ColumnError(f"Column {name!r} row {row}: the map lacks keys {missing} other rows have; Arrow would "
                          "add them with None. Give every row the same keys, or keep such data as etf.")


def _tuple_column(name: str, values: list, arity: int, strict: bool, nulls: bool, depth: int) -> pa.Array:
    filled = [(None,) * arity if v is None else v for v in values] if nulls else values
    fields = [
        column_to_arrow(f"{name}.{i}", list(map(operator.itemgetter(i), filled)), strict=strict, _depth=depth + 1)
        for i in range(arity)
    ]
    return pa.StructArray.from_arrays(fields, names=[str(i) for i in range(arity)], mask=_mask(values, nulls))


def _numpy_column(name: str, col: Any, strict: bool) -> pa.Array | None:
    """The Arrow array of a 1-d NumPy column; None when ``col`` is no NumPy array.

    Object arrays follow the inference table, as lists do; byte-swapped ones are
    swapped to native order (Arrow has no other). :func:`numpy_dtype_recorded` says
    which dtypes the frame records so that ``loads`` gives them back.
    """
    if not is_numpy(col):
        return None
    if col.ndim != 1:
        raise ColumnError(f"Column {name!r}: only 1-d NumPy columns fit a table, got shape {col.shape}.")
    if col.dtype == object:
        return column_to_arrow(name, col.tolist(), strict=strict)
    if col.dtype.kind == "T":
        _variable_strings(name, col, strict)
    if not col.dtype.isnative:
        col = col.astype(col.dtype.newbyteorder("="))
    nul = col.dtype.kind in "US" and _embedded_nul(col)  # pyarrow's own conversion ends each string at a NUL
    try:
        if nul:
            return pa.array(col.tolist(), pa.string() if col.dtype.kind == "U" else pa.binary())
        return pa.array(col)
    except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:  # pyarrow's refusals, typed here
        if isinstance(exc, MemoryError):  # pa.ArrowMemoryError
            raise
        raise ColumnError(f"Column {name!r}: NumPy dtype {col.dtype} has no Arrow type ({exc}). Convert the column "
                          "(complex: split into .real and .imag; datetime64: to s, ms, us or ns; structured: one "
                          "column per field), send the array alone (format='ndarray'), or leave format='auto' to "
                          "fall back to etf.") from exc


def _embedded_nul(col: Any) -> bool:
    """Whether a U or S column holds a NUL before the end of a value (NumPy pads with NULs, so trailing ones
    are padding): pyarrow would cut the value there. One vectorised pass over the characters (a seventh of
    ``pa.array``'s cost for 1M <U8 values)."""
    import numpy as np

    width = col.dtype.itemsize // (4 if col.dtype.kind == "U" else 1)
    if width < 2 or not len(col):
        return False
    zero = col.view(np.dtype((np.uint32 if col.dtype.kind == "U" else np.uint8, width))) == 0
    return bool((zero[:, :-1] & ~zero[:, 1:]).any())


def _variable_strings(name: str, col: Any, strict: bool) -> None:
    """A NumPy StringDType column comes back from Arrow as an object array of str: no dtype is recorded for it
    (readers know U, S, O, M and m). Refused under ``strict``, a LossyConversionWarning otherwise."""
    message = (f"Column {name!r}: NumPy dtype {col.dtype} comes back from Arrow as an object array of str. "
               "Convert it (col.astype(str) gives a fixed-width <U array, which comes back as itself), or send "
               "the array alone (format='ndarray' or 'pickle').")
    if strict:
        raise ColumnError(message)
    warn_at_caller(message, LossyConversionWarning)


def numpy_dtype_recorded(dtype: Any) -> bool:
    """Whether an arrow frame records a NumPy column's dtype, because Arrow alone would give another back.

    str and bytes arrays come back from Arrow as object arrays, object arrays as
    Arrow's inferred dtype, byte-swapped ones in native order, and datetime64 or
    timedelta64 with NaT as nulls: ``loads`` restores all of these from the record.

    Examples
    --------
    >>> import numpy as np
    >>> [numpy_dtype_recorded(np.dtype(d)) for d in ("<U3", ">f8", "f8")]
    [True, True, False]
    """
    return dtype.kind in "USOMm" or not dtype.isnative


def columnar_shape(obj: Any) -> tuple[str, int] | None:
    """('list of dicts' | 'dict of columns', rows) when ``obj`` looks columnar, cheaply; else None.

    Only the first, middle and last rows of a list are looked at: ``format="auto"`` asks on every
    ``dumps``, and :func:`to_table` still checks every row.

    Parameters
    ----------
    obj : Any

    Returns
    -------
    tuple of (str, int), or None

    Examples
    --------
    >>> columnar_shape([{"id": 1, "px": 9.5}, {"id": 2, "px": 9.75}])
    ('list of dicts', 2)
    >>> columnar_shape({"id": [1, 2, 3], "px": [9.5, 9.75, 10.0]})
    ('dict of columns', 3)
    >>> columnar_shape({"id": [1, 2, 3], "px": [9.5]}) is None
    True
    """
    if type(obj) is list and obj and type(obj[0]) is dict and type(obj[-1]) is dict:
        first = obj[0]
        if not first or not all(type(k) is str for k in first):
            return None
        keys = first.keys()
        middle = obj[len(obj) // 2]
        if obj[-1].keys() != keys or type(middle) is not dict or middle.keys() != keys:
            return None
        return "list of dicts", len(obj)
    if type(obj) is dict and obj:
        first = next(iter(obj.values()))
        if type(first) is not list and type(first).__name__ != "ndarray":
            return None  # most maps: a first value that is no column settles it without a pass over the keys
        if not all(type(k) is str for k in obj):
            return None
        lengths = set()
        for col in obj.values():
            if type(col) is list or _numpy_column_like(col):
                lengths.add(len(col))
            else:
                return None
        if len(lengths) == 1:
            return "dict of columns", lengths.pop()
    return None


def _numpy_column_like(col: Any) -> bool:
    return is_numpy(col) and col.ndim == 1


def to_table(obj: Any, *, strict: bool = False) -> tuple[str, pa.Table | pa.RecordBatch]:
    """Convert ``obj`` to Arrow; return (source kind, table or batch).

    Accepts pyarrow tables, batches, arrays and chunked arrays, pandas and polars
    DataFrames and Series, dicts of equal-length columns and homogeneous lists of dicts.
    A one-column value (an array, a Series) is a table of one column, named after
    the Series when its name is a str, else :data:`VALUES`.

    Parameters
    ----------
    obj : Any
    strict : bool, default False
        Refuse what Arrow would change on the way: rows with different keys (filled with nulls),
        non-str keys, lossy column conversions, pandas column labels that would not come back
        (see the module's notes). Without it, those labels come back changed with a
        :class:`tether.LossyConversionWarning`.

    Returns
    -------
    tuple of (str, pyarrow.Table or pyarrow.RecordBatch)
        The kind is one of 'table', 'batch', 'pandas', 'polars', 'columns', 'rows', 'array',
        'chunked_array', 'pandas_series' or 'polars_series'.

    Raises
    ------
    tether.ColumnError
        A column or row that does not fit a table (a DataFrame column, label or index Arrow
        cannot hold too); the message names it and the fix.
    tether.ValidationError
        ``obj`` is of a type that never converts.

    Examples
    --------
    >>> kind, table = to_table([{"id": 1, "px": 9.5}, {"id": 2, "px": 9.75}])
    >>> kind, table.num_rows, table.schema.names
    ('rows', 2, ['id', 'px'])
    >>> to_table([{"id": 1}, {"px": 9.75}], strict=True)
    Traceback (most recent call last):
    ...
    tether._errors.ColumnError: Rows have different keys; Arrow would add nulls for the missing ones.
    """
    if isinstance(obj, pa.Table):
        return "table", obj
    if isinstance(obj, pa.RecordBatch):
        return "batch", obj
    kind = is_dataframe(obj)
    if kind == "pandas":
        return "pandas", _pandas_to_table(obj, strict)
    if kind == "polars":
        return "polars", _polars_to_table(obj)
    one = _one_column(obj, strict)
    if one is not None:
        return one
    if type(obj) is dict:
        arrays, names = [], []
        lengths = set()
        for key, col in obj.items():
            name = _col_name(key)
            arr = _numpy_column(name, col, strict)
            if arr is None:
                if not isinstance(col, list):
                    raise ColumnError(f"Column {name!r} is a {type(col).__name__}; columns must be lists or 1-d arrays.")
                arr = column_to_arrow(name, col, strict=strict)
            lengths.add(len(arr))
            arrays.append(arr)
            names.append(name)
        if len(lengths) > 1:
            raise ColumnError(f"Columns have different lengths {sorted(lengths)}; a table needs equal lengths.")
        return "columns", pa.Table.from_arrays(arrays, names=names)
    if type(obj) is list:
        keys, columns = _rows_to_columns(obj, "A list converts to a table only when every element is a dict (one row each).")
        if strict and any(len(r) != len(keys) for r in obj):
            raise ColumnError("Rows have different keys; Arrow would add nulls for the missing ones.")
        if strict and not all(type(k) is str for k in keys):
            raise ColumnError("Row keys are not all str; Arrow column names would not round-trip.")
        return "rows", _table(keys, columns, strict)
    raise ValidationError(f"Cannot make an Arrow table from {type(obj).__name__}.")


def _one_column(obj: Any, strict: bool) -> tuple[str, pa.Table] | None:
    """A Series or a pyarrow array as a table of one column; None for anything else."""
    if isinstance(obj, pa.Array):
        return "array", pa.Table.from_arrays([obj], names=[VALUES])
    if isinstance(obj, pa.ChunkedArray):
        return "chunked_array", pa.Table.from_arrays([obj], names=[VALUES])
    kind = is_series(obj)
    if kind == "pandas":
        return "pandas_series", _pandas_to_table(pandas_series_frame(obj), strict)
    if kind == "polars":
        return "polars_series", _polars_to_table(obj.to_frame())
    return None


def pandas_series_frame(series: Any) -> Any:
    """A pandas Series as the one-column DataFrame its table is made of: the column is named after the Series
    when its name is a str, else :data:`VALUES` (the frame's ``series_name`` keeps a name that is None or an int).

    Parameters
    ----------
    series : pandas.Series

    Returns
    -------
    pandas.DataFrame

    Raises
    ------
    tether.ColumnError
        A name of another type, which the frame's metadata cannot keep.

    Examples
    --------
    >>> import pandas as pd
    >>> list(pandas_series_frame(pd.Series([1, 2], name=7)).columns)
    ['values']
    """
    name = series.name
    if name is not None and (type(name) not in (str, int) or type(name) is int and not -(1 << 63) <= name < 1 << 63):
        raise ColumnError(f"The Series' name {name!r:.80} ({type(name).__name__}) has no place in the frame's "
                          "metadata, which keeps a str, an int of 64 bits or None: rename it "
                          "(s.rename(str(s.name))), or send it with format='pickle'.")
    return series.to_frame(name=name if type(name) is str else VALUES)


def _pandas_to_table(df: Any, strict: bool = False) -> pa.Table:
    """``pa.Table.from_pandas(df)``, faster for the common frame; what Arrow refuses is named.

    A frame Arrow cannot hold raises :class:`ColumnError` naming the column (or
    the index) and the fix. Column labels that are not all str are checked
    against what pandas' metadata restores (an empty table's round trip, O(columns)):
    one that would change is a ColumnError under ``strict``, else a LossyConversionWarning.
    """
    _check_categorical_labels(df)
    plain = all(type(c) is str for c in df.columns)
    if strict and not plain and len(set(map(type, df.columns))) > 1:  # mixed: Arrow makes them strings, and warns
        raise ColumnError(_labels_message(df, "strings"))
    try:
        table = _pandas_arrow_named(df, plain, strict)
    except (MemoryError, ColumnError):  # pa.ArrowMemoryError is a MemoryError
        raise
    except Exception as exc:  # pyarrow's and pandas' own: find the column it was about
        raise _pandas_culprit(df, exc) from exc
    if not plain:
        _check_labels(df, table, strict)
    _check_object_columns(df, table, strict)
    return table


def _pandas_arrow_named(df: Any, plain: bool, strict: bool) -> pa.Table:
    """:func:`_pandas_arrow`, for an index named other than by str: pyarrow writes the names as strings, with a
    UserWarning. Int names are recorded by the arrow format and restored, so the warning is not the caller's;
    others are refused under ``strict``, else a LossyConversionWarning."""
    names = [n for n in df.index.names if n is not None and type(n) is not str]
    if not names:
        return _pandas_arrow(df, plain)
    if not all(type(n) is int and -(1 << 63) <= n < 1 << 63 for n in names):
        message = (f"The DataFrame's index name(s) {names[:5]!r:.120} would come back as strings: Arrow's pandas "
                   "metadata keeps str names (tether restores int ones). Rename the index (df.index.names = "
                   "[...]), or send the frame with format='pickle' (format='auto' falls back by itself).")
        if strict:
            raise ColumnError(message)
        warn_at_caller(message, LossyConversionWarning)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The DataFrame has non-str index name", category=UserWarning)
        return _pandas_arrow(df, plain)


def pandas_numpy_type_in(table: pa.Table, numpy_type: str) -> bool:
    """Whether the pandas metadata Arrow wrote into ``table``'s schema names ``numpy_type`` (a column's, an
    index's or the labels'); True without such metadata. A byte search: a frame with no such column skips a
    pass over ``df.dtypes``, which costs more than the rest of a small frame's checks.

    Parameters
    ----------
    table : pyarrow.Table
    numpy_type : str
        As pandas' metadata writes it: ``"object"``, ``"string"``, ...

    Returns
    -------
    bool

    Examples
    --------
    >>> import pandas as pd
    >>> table = pa.Table.from_pandas(pd.DataFrame({"a": [1]}))
    >>> pandas_numpy_type_in(table, "object"), pandas_numpy_type_in(table, "int64")
    (False, True)
    """
    meta = (table.schema.metadata or {}).get(b"pandas")
    return meta is None or f'"numpy_type": "{numpy_type}"'.encode() in meta


def is_text_type(t: pa.DataType) -> bool:
    """Whether Arrow type ``t`` holds strings (utf8, large or view): what an object column of str becomes.

    Examples
    --------
    >>> is_text_type(pa.large_string()), is_text_type(pa.binary())
    (True, False)
    """
    return pa.types.is_string(t) or pa.types.is_large_string(t) or getattr(pa.types, "is_string_view", bool)(t)


def missing_markers(values: Any) -> set[str]:
    """The kinds of missing value in a pandas object column: ``"None"``, ``"nan"``, ``"NA"`` or ``"NaT"``.

    Arrow keeps one null for all of them, so a text column whose missing values are of one kind comes back
    with that kind (the arrow format records it), and one that mixes them cannot come back as it was.

    Parameters
    ----------
    values : pandas.Series

    Returns
    -------
    set of str

    Examples
    --------
    >>> import pandas as pd
    >>> sorted(missing_markers(pd.Series(["a", None, float("nan")], dtype=object)))
    ['None', 'nan']
    """
    import pandas as pd

    kinds = set()
    for v in values[values.isna()].array:
        kinds.add("None" if v is None else "NA" if v is pd.NA else "NaT" if v is pd.NaT else
                  "nan" if isinstance(v, float) else type(v).__name__)
    return kinds


def _object_kept(t: pa.DataType, column: pa.ChunkedArray) -> bool:
    """Whether an object column Arrow stored as ``t`` comes back as objects of the same values: text (the arrow
    format restores its dtype), bytes, Decimals, dates, times, all-None, and booleans with a None among them
    (without one, pandas makes them a bool column)."""
    if is_text_type(t) or pa.types.is_null(t) or pa.types.is_decimal(t) or pa.types.is_date(t) \
            or pa.types.is_time(t):
        return True
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or getattr(pa.types, "is_binary_view", bool)(t):
        return True
    return pa.types.is_boolean(t) and column.null_count > 0


def _check_object_columns(df: Any, table: pa.Table, strict: bool) -> None:
    """Refuse (``strict``) or warn about object columns whose values Arrow would give back changed: dicts gain the
    other rows' keys, lists and tuples come back as NumPy arrays, datetimes as Timestamps of one zone, ints with
    None as floats. O(columns): only the types Arrow inferred are looked at."""
    if not pandas_numpy_type_in(table, "object"):
        return
    import numpy as np

    objects = [i for i, dtype in enumerate(df.dtypes) if dtype == np.dtype(object)]
    changed = [(df.columns[i], table.schema.field(i).type) for i in objects
               if not _object_kept(table.schema.field(i).type, table.column(i))]
    mixed = [df.columns[i] for i in objects if table.column(i).null_count and is_text_type(table.schema.field(i).type)
             and len(missing_markers(df.iloc[:, i])) > 1]
    if not changed and not mixed:
        return
    named = ", ".join([f"{label!r:.60} (as {t})" for label, t in changed[:5]]
                      + [f"{label!r:.60} (None and NaN-like missing values mixed)" for label in mixed[:5]])
    message = (f"DataFrame object column(s) {named} hold Python values Arrow stores as typed columns, which come back "
               "changed: dicts gain the other rows' keys, lists and tuples come back as NumPy arrays, datetimes as "
               "Timestamps of one zone or none, ints with None as floats, missing values as one kind. Give each "
               "column a pandas dtype that says what it holds (e.g. pd.to_datetime(col, utc=True), "
               ".astype('Int64')), or send the frame with format='pickle' (format='auto' falls back by itself).")
    if strict:
        raise ColumnError(message)
    warn_at_caller(message, LossyConversionWarning)


def _check_categorical_labels(df: Any) -> None:
    """Refuse CategoricalIndex column labels: Arrow writes them, but pandas' metadata names their index type
    'categorical', which ``to_pandas`` cannot read back (the frame would be unreadable), str labels or not."""
    import pandas as pd

    if isinstance(df.columns, pd.CategoricalIndex):
        raise ColumnError(f"DataFrame column labels {list(df.columns)!r:.120} are a CategoricalIndex, which Arrow's "
                          "pandas metadata cannot restore: the frame could not be read back. Give the columns plain "
                          "labels (df.columns = df.columns.astype(object)), or send the frame with format='pickle'.")


def _pandas_arrow(df: Any, plain: bool) -> pa.Table:
    """The conversion itself.

    Arrow's pandas conversion scans float columns for NaN (pandas' missing
    value) element by element, which costs more than the rest of the frame
    together. A float column without NaN needs no nulls, so it is wrapped
    zero-copy; the schema, with its pandas metadata, is Arrow's own
    (``Schema.from_pandas``). Frames with another index or non-str column
    names take Arrow's path unchanged. The tests hold both to equal tables.
    """
    import numpy as np
    import pandas as pd

    if not (plain and type(df.index) is pd.RangeIndex and df.columns.is_unique):
        return pa.Table.from_pandas(df)
    schema = pa.Schema.from_pandas(df)
    arrays = []
    for name, field in zip(df.columns, schema):
        col = df[name]
        if type(col.dtype) is np.dtype and col.dtype.kind == "f":
            values = col.to_numpy()
            if not np.isnan(values).any():
                arrays.append(pa.array(values, type=field.type))
                continue
        arrays.append(pa.array(col, type=field.type, from_pandas=True))
    return pa.Table.from_arrays(arrays, schema=schema)


PANDAS_FIX = ("Convert it (one type per object column, e.g. .astype(str); complex: .real and .imag columns; sparse: "
              ".sparse.to_dense()), or send the frame with format='pickle' (format='auto' falls back by itself).")


def _pandas_culprit(df: Any, exc: Exception) -> ColumnError:
    """The ColumnError for a frame Arrow refused, naming the column or index (only on failure: O(columns))."""
    import pandas as pd

    said = _said(exc)
    if not df.columns.is_unique:
        dup = list(dict.fromkeys(df.columns[df.columns.duplicated()]))
        return ColumnError(f"DataFrame column labels {dup!r:.200} appear more than once; Arrow needs unique "
                           "column names. Rename the columns, or send the frame with format='pickle'.")
    for i, label in enumerate(df.columns):
        try:
            pa.Table.from_pandas(df.iloc[:, [i]], preserve_index=False)
        except MemoryError:
            raise
        except Exception as col_exc:
            return ColumnError(f"DataFrame column {label!r:.80} (dtype {df.dtypes.iloc[i]}) has no Arrow form: "
                               f"{_said(col_exc)}. {PANDAS_FIX}")
    if type(df.index) is not pd.RangeIndex:
        try:
            pa.Table.from_pandas(df.iloc[:, :0])
        except MemoryError:
            raise
        except Exception as index_exc:
            return ColumnError(f"The DataFrame's index (dtype {df.index.dtype}) has no Arrow form: "
                               f"{_said(index_exc)}. Convert it "
                               "(df.index = df.index.astype(str)) or drop it (df.reset_index(drop=True)), or "
                               "send the frame with format='pickle'.")
    return ColumnError(f"The DataFrame has no Arrow form: {said}. Send it with format='pickle'.")


def _check_labels(df: Any, table: pa.Table, strict: bool) -> None:
    """Refuse (``strict``) or warn about column labels that would not come back as they were.

    Arrow names columns with strings; pandas' metadata turns them back into labels of
    one type (ints, floats, tuples of a MultiIndex...), not into mixed ones.
    """
    try:
        columns = table.schema.empty_table().to_pandas().columns  # the metadata alone: no data is converted
        back = list(columns)
        same = (list(columns.names) == list(df.columns.names) and len(back) == len(df.columns)
                and all(map(_same_label, df.columns, back)))
    except Exception:  # noqa: BLE001 - what cannot be read back now will not be read back by loads either
        back, same = ["(unreadable)"], False
    if same:
        return
    message = _labels_message(df, repr(back))
    if strict:
        raise ColumnError(message)
    warn_at_caller(message, LossyConversionWarning)


def _labels_message(df: Any, back: str) -> str:
    return (f"DataFrame column labels {list(df.columns)!r:.120} would come back from Arrow as {back:.120}: Arrow "
            "names columns with strings, and pandas' metadata does not turn these back into the labels they were. "
            "Give the columns str labels (df.columns = df.columns.map(str)), or send the frame with format='pickle'.")


def _said(exc: BaseException) -> str:
    """``exc`` in a message: its type and its text, cut to 200 characters, without a closing full stop."""
    return f"{type(exc).__name__}: {str(exc)[:200].rstrip('.')}"


def _same_label(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if type(a) is tuple:
        return len(a) == len(b) and all(map(_same_label, a, b))
    return bool(a == b) or (a != a and b != b)  # NaN and NaT labels are themselves


def _polars_to_table(df: Any) -> pa.Table:
    """``df.to_arrow()``; a column pyarrow cannot import (polars' Int128, say) is a ColumnError naming it."""
    objects = [name for name, dtype in df.schema.items() if dtype.is_object()]
    if objects:  # polars exports an Object column as the addresses of its Python objects, 8 bytes each
        raise ColumnError(f"polars column(s) {objects[:5]!r:.200} hold Python objects (dtype Object), which have no "
                          "Arrow form: polars would write their memory addresses (and it cannot pickle them either). "
                          "Convert them to a polars dtype (pl.String, a Struct, ...), or send df.to_pandas() with "
                          "format='pickle'.")
    try:
        return df.to_arrow()
    except MemoryError:
        raise
    except Exception as exc:
        for name in df.columns:
            try:
                df.select(name).to_arrow()
            except MemoryError:
                raise
            except Exception as col_exc:
                raise ColumnError(f"polars column {name!r} (dtype {df.schema[name]}) has no Arrow form pyarrow "
                                  f"reads: {_said(col_exc)}. Cast it (e.g. "
                                  "pl.col(name).cast(pl.Int64) for Int128 values that fit, or to pl.String), or send "
                                  "the frame with format='pickle'.") from exc
        raise ColumnError(f"The polars DataFrame has no Arrow form: {_said(exc)}. Send "
                          "it with format='pickle'.") from exc


def _rows_to_columns(rows: list, message: str) -> tuple[list, list[list]]:
    """Column keys in first-seen order, and one list per key (None where a row lacks it)."""
    if not all(type(r) is dict for r in rows):
        raise ColumnError(message)
    keys: dict[Any, None] = {}
    for r in rows:
        keys.update(dict.fromkeys(r))
    return list(keys), [[r.get(k) for r in rows] for k in keys]


def _table(keys: list, columns: list[list], strict: bool, float_atoms: bool = False) -> pa.Table:
    names = [_col_name(k) for k in keys]
    if float_atoms:
        columns = [_floats_in(c) for c in columns]
    arrays = [column_to_arrow(n, c, strict=strict) for n, c in zip(names, columns)]
    return pa.Table.from_arrays(arrays, names=names) if arrays else pa.table({})


def from_etf(data: Any, *, limits: Any = None, float_atoms: bool = False) -> pa.Table:
    """Build an Arrow table straight from ETF bytes of a list of maps (or a map of equal-length lists).

    Columns of one clean kind (integers, floats, booleans, binaries, atoms,
    and lists or tuples of those, with nils) are decoded by the C extension
    straight into Arrow buffers: no Python object per value. Any other
    column sends the whole term down the general path, one Python list per
    column (never a dict per row), typed by the inference table in this
    module, with its warnings. Both paths give the same table.

    Parameters
    ----------
    data : bytes-like
        What Elixir's ``:erlang.term_to_binary(rows)`` returns.
    limits : tether.Limits, optional
        Bounds for the decoding (default: the process-wide ones).
    float_atoms : bool
        Read the atoms ``nan``, ``infinity`` and ``neg_infinity`` as the floats
        they stand for, wherever they are a value (not a key), as the BEAM
        writes NaN and the infinities (Nx's convention; the worker passes True
        for ``Tether.table/1``). A column that then mixes floats with other
        atoms is a :class:`tether.ColumnError`, as any mixed column is.

    Returns
    -------
    pyarrow.Table

    Examples
    --------
    >>> from tether import etf, Atom, arrow
    >>> rows = [{Atom("id"): 1, Atom("name"): b"a"}, {Atom("id"): 2, Atom("name"): b"b"}]
    >>> arrow.from_etf(etf.encode(rows)).to_pydict()
    {'id': [1, 2], 'name': ['a', 'b']}
    >>> cols = {Atom("x"): [1.5, Atom("nan")], Atom("y"): [Atom("infinity"), None]}
    >>> arrow.from_etf(etf.encode(cols), float_atoms=True).to_pydict()
    {'x': [1.5, nan], 'y': [inf, None]}
    """
    opts = _etf.Options(limits=limits)
    # Inflated once for the three decoders below; input that is not ETF is decode's to report.
    buf = _etf.uncompressed(data if isinstance(data, bytes) else bytes(as_view(data)), opts)  # as_view: typed errors
    typed = _etf.decode_typed_columns(buf, opts)
    if typed is not None:
        # Clean columns go straight into Arrow buffers, with no Python object per value.
        names = [_col_name(k) for k in typed.keys]
        arrays = [_typed_array(spec) for spec in typed.columns]
        # The typed path keeps atoms as atoms: a table whose atoms include one standing for a float is
        # read again by the general path (its atom dictionaries are small: no pass over the values).
        if not (float_atoms and any(map(_names_float_atom, arrays))):
            return pa.Table.from_arrays(arrays, names=names) if arrays else pa.table({})
    columns = _etf.decode_columns(buf, opts)
    if columns is not None:
        return _table(columns.keys, columns.columns, strict=False, float_atoms=float_atoms)
    return _from_value(_etf.decode(buf, opts), float_atoms)


_FIXED = {"int64": pa.int64(), "float64": pa.float64(), "bool": pa.bool_()}



def _names_float_atom(arr: pa.Array) -> bool:
    """Whether a typed column's atom dictionaries, nested ones included, hold nan, infinity or neg_infinity."""
    t = arr.type
    if pa.types.is_dictionary(t):
        return any(v in FLOAT_ATOMS for v in arr.dictionary.to_pylist())
    if pa.types.is_list(t):
        return _names_float_atom(arr.values)
    if pa.types.is_struct(t):
        return any(_names_float_atom(arr.field(i)) for i in range(t.num_fields))
    return False


def _typed_array(spec: tuple) -> pa.Array:
    """Wrap the buffers of one column from ``_etf.decode_typed_columns`` (see ``_etf.Columns``) as Arrow arrays."""
    kind, n = spec[0], spec[1]
    if kind == "null":
        return pa.nulls(n)
    nulls, valid = spec[2], spec[3]
    vbuf = None if valid is None else pa.py_buffer(valid)
    if kind in _FIXED:
        return pa.Array.from_buffers(_FIXED[kind], n, [vbuf, pa.py_buffer(spec[4])], null_count=nulls)
    if kind == "atom":
        codes = pa.Array.from_buffers(pa.int32(), n, [vbuf, pa.py_buffer(spec[4])], null_count=nulls)
        return pa.DictionaryArray.from_arrays(codes, pa.array(spec[5], pa.utf8()))
    if kind == "binary":
        arr = pa.Array.from_buffers(pa.binary(), n, [vbuf, pa.py_buffer(spec[4]), pa.py_buffer(spec[5])], null_count=nulls)
        try:
            return arr.cast(pa.utf8())  # as column_to_arrow: utf8 when every value is valid UTF-8
        except pa.ArrowInvalid:
            return arr
    if kind == "list":
        child = _typed_array(spec[5])
        return pa.Array.from_buffers(pa.list_(child.type), n, [vbuf, pa.py_buffer(spec[4])], null_count=nulls,
                                     children=[child])
    fields = [_typed_array(f) for f in spec[4]]
    struct = pa.struct([pa.field(str(i), f.type) for i, f in enumerate(fields)])
    return pa.Array.from_buffers(struct, n, [vbuf], null_count=nulls, children=fields)


def _floats_in(column: list) -> list:
    """A column with its float atoms as floats: one pass for a column of scalars, the general walk otherwise."""
    if any(type(v) in (list, dict, tuple) for v in column):
        return floats_for_atoms(column)
    return [FLOAT_ATOMS.get(v, v) if type(v) is Atom else v for v in column]


def _from_value(value: Any, float_atoms: bool = False) -> pa.Table:
    if type(value) is list:
        keys, columns = _rows_to_columns(value, "from_etf needs a list of maps or a map of equal-length lists.")
        return _table(keys, columns, strict=False, float_atoms=float_atoms)
    if type(value) is dict:
        if not all(type(v) is list for v in value.values()) or len({len(v) for v in value.values()}) > 1:
            raise ColumnError("from_etf needs a list of maps or a map of equal-length lists.")
        return _table(list(value), list(value.values()), strict=False, float_atoms=float_atoms)
    raise ColumnError(f"from_etf needs a list of maps or a map of equal-length lists, got {type(value).__name__}.")
