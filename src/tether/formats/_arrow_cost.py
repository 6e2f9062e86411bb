"""What converting an Arrow table to a Python form (pandas, numpy, polars, pylist) allocates, estimated from
lengths and buffer sizes before any of it is made: the Arrow format's guard for ``loads(into=...)``.

A few hundred bytes of frame can declare millions of rows (a null, run-end or dictionary column), so
:func:`check_materialised` refuses a conversion whose estimate passes ``Limits.max_uncompressed_size``.
"""

from __future__ import annotations

from functools import lru_cache, partial
from typing import Any, Callable, NamedTuple

import pyarrow as pa

from .._errors import LimitError

# The string and binary view types of this pyarrow (none before 14): their values are 16-byte views.
VIEW_TYPES = tuple(getattr(pa, name)() for name in ("string_view", "binary_view") if hasattr(pa, name))

# What each value becomes, measured on CPython 3.11 (sys.getsizeof), pyarrow 26, pandas 3 and polars 1: a slot
# (a pointer in a list, dict or object array, or a native value of 8 bytes at least) and, where the target makes
# it a Python object, that object: an int, float or date 24-32 B, a datetime, timedelta or time 40-48, a Decimal
# 104 (pandas' Timestamp and Timedelta, which to_pylist makes of nanoseconds, 128), a str 49 and bytes 33 plus
# their own bytes. None and booleans are shared. A str of non-ASCII text can take up to 4 B a character: the one
# case counted low, by up to 4x.
_SLOT = 8
_PY_NUMBER, _PY_TEMPORAL, _PY_LARGE, _PY_STR, _PY_BYTES = 32, 48, 128, 49, 33
# A list value becomes a list (pylist: 56 B) or a NumPy array (pandas, numpy: 112 B, a view of one array of all
# the elements); a struct value a dict (184 B up to five keys, about 32 B a key past that); a map entry a
# (key, value) tuple (56 B). polars keeps strings and binaries as 16-byte views, of a dictionary's bytes too.
_PY_LIST, _NP_ARRAY, _PY_DICT, _PY_DICT_KEY, _PY_TUPLE, _POLARS_VIEW = 56, 112, 184, 32, 56, 16
# to_pylist's row dicts, on top of the values: measured (tracemalloc, pyarrow 26, CPython 3.11) at 192 B a row
# for 1 to 4 columns and 472 B for 16; a row costs at least its empty dict and list slot, a cell its dict entry.
PYLIST_ROW, PYLIST_CELL = 192, 16


def pylist_rows_cost(rows: int, columns: int) -> int:
    """What ``rows`` rows of ``columns`` keys take as a list of dicts (pylist), before their values.

    Examples
    --------
    >>> pylist_rows_cost(2, 3)
    480
    """
    return rows * (PYLIST_ROW + columns * PYLIST_CELL)
# numpy and pandas rebuild runs and list views of strings, lists or structs with Arrow before making objects of
# them, in builders that double as they grow: 1.0 to 2.3 times the values' Arrow bytes, measured, besides the
# objects. A dictionary that pandas or polars keeps becomes a Categorical whose categories take about 260 B a
# label (pandas: an Index and its hash table) or 130 B (polars), measured with labels of 22 B, the label included.
_REBUILT = 2.5
_CATEGORY = {"pandas": 240, "polars": 112}


class _Form(NamedTuple):
    """What a target makes of the values at one place in a column."""

    target: str
    nested: bool = False  # below a list, struct, map or union: pandas decodes dictionaries there
    objects: bool = False  # as Python objects: everywhere for pylist, in dicts and tuples for pandas and numpy
    exact: bool = False  # a dictionary's rows each their own value; else each the widest, found in O(dictionary)
    seen: dict | None = None  # the column's dictionaries counted so far, and their values' costs: batches share them

    def inside(self, container: pa.DataType) -> _Form:
        """The form of ``container``'s children: pandas and numpy make dicts and tuples of all but lists."""
        objects = self.objects or (not _native(self) and not _is_list(container))
        return self._replace(nested=True, objects=objects)


def check_materialised(table: pa.Table, target: str, limit: int, where: str, *, numpy_columns: Any = None,
                       object_columns: frozenset[int] = frozenset()) -> None:
    """Refuse a conversion whose result would take more than ``limit`` bytes, before converting.

    What a frame holds does not bound what its Python form takes: a null column declares any number of rows in
    no bytes, a dictionary or a run repeats a value, and string and list views may all point at one region. The
    estimate counts what the target makes of each value (see ``_SLOT``), each repeated value as often as it is
    referenced, summed over the columns. A first pass charges each row of a dictionary column its widest value,
    O(columns, chunks and dictionaries); only when that is over the limit does a second count the value each
    row references (O(rows) of those columns, a NumPy pass). Run ends, string views and list views are always
    passed over, O(runs or rows) of those columns. For ``"columns"``, ``numpy_columns`` (a frame's type info)
    names the columns that become NumPy arrays; the others become lists. For ``"pandas"``, ``object_columns``
    (positions) are the columns made Python objects again, counted as NumPy makes them.
    """
    base = pylist_rows_cost(table.num_rows, table.num_columns) if target == "pylist" else 0
    arrays = set(numpy_columns) if target == "columns" and isinstance(numpy_columns, list) else ()
    # The exact pass differs from the first only in dictionaries: without one, it would repeat the same sum.
    passes = (False, True) if any(_holds_dictionary(f.type) for f in table.schema) else (False,)
    for exact in passes:
        forms = {into: _Form(into, objects=into in ("pylist", "columns"), exact=exact, seen={})
                 for into in (target, "numpy")}
        total = base
        for i, field in enumerate(table.schema):
            form = forms["numpy" if field.name in arrays or i in object_columns else target]
            form.seen.clear()  # pandas and polars make a Categorical per column, even of one dictionary
            cost = _column_cost(table, i, field.type, form)
            total += cost
            if total > limit:
                break
        else:
            return
    raise LimitError(
        f"{where}: converting the Arrow table to {target} would take at least {int(total)} bytes (column "
        f"{field.name[:80]!r}: {int(cost)} B for {table.num_rows} rows), over the limit of {limit} "
        "(Limits.max_uncompressed_size). Load it with into='arrow' (zero-copy), or raise the limit with "
        "tether.set_limits(max_uncompressed_size=...) if such data is expected.")


def _holds_dictionary(t: pa.DataType) -> bool:
    """Whether type ``t`` is, or holds at any depth, a dictionary type."""
    return pa.types.is_dictionary(t) or any(_holds_dictionary(t.field(i).type) for i in range(t.num_fields))


def _column_cost(table: pa.Table, i: int, t: pa.DataType, form: _Form) -> float:
    """What column ``i``, of type ``t``, takes in ``form``: its chunks' costs, a flat one's from counts alone."""
    flat = _fixed_width_flat(t)
    if flat and not _flat_size(t, form.target, form.nested, form.objects)[1]:
        return table.num_rows * _value_size(t, form)  # a native array: no need to visit the column at all
    column = table.column(i)
    if flat:  # objects, but for the nulls: the chunks' counts, from their metadata
        return _flat_cost(t, len(column), column.null_count, form)
    if _is_text(t):  # and the bytes of each chunk's data buffer: no need to look inside
        return _flat_cost(t, len(column), column.null_count, form) + sum(map(_data_bytes, column.chunks))
    return sum(_cost(chunk, form) for chunk in column.chunks)


def _cost(array: pa.Array, form: _Form) -> float:
    """What ``array`` takes once converted: each value what ``form`` makes of it, and what its children take."""
    import numpy as np

    t, n = array.type, len(array)
    if n == 0:
        return 0
    if isinstance(t, pa.BaseExtensionType):
        return _cost(array.storage, form)
    if isinstance(t, pa.DictionaryType):
        return _dictionary_cost(array, form)
    if isinstance(t, pa.RunEndEncodedType):  # each run: its length times its own value
        return float(_sum(_run_lengths(array), _decoded(partial(_entry_costs, array.values), t.value_type, form)))
    if _is_list_view(t):  # each view its own elements: an element two views share counts twice
        elements = _decoded(partial(_element_costs, array), t.value_type, form)
        return n * _container(t, form) + float(np.sum(_segment_sums(array, elements)))
    if t.num_fields:
        return _nested_cost(array, form)
    if t.id in _VIEW_IDS:
        return _flat_cost(t, n, array.null_count, form) + float(_view_bytes(array).sum())
    return _flat_cost(t, n, array.null_count, form) + _data_bytes(array)


def _nested_cost(array: pa.Array, form: _Form) -> float:
    """Lists, fixed-size lists, maps, structs and unions: each value its container, and what its children take."""
    t, inner = array.type, form.inside(array.type)
    own = len(array) * _container(t, form)
    if pa.types.is_map(t):  # a list of (key, value) tuples
        tuples = len(array.values) * (0 if _native(form) else _SLOT + _PY_TUPLE)
        return own + tuples + _cost(array.keys, inner) + _cost(array.items, inner)
    if isinstance(t, (pa.StructType, pa.UnionType)):
        return own + sum(_cost(array.field(i), inner) for i in range(t.num_fields))
    return own + _cost(array.values, inner)  # lists: all the values, those of a sliced array's other rows too


def _dictionary_cost(array: pa.DictionaryArray, form: _Form) -> float:
    """Each index a code or, decoded, its value; and the dictionary once where the target holds it.

    A target that keeps the dictionary (pandas a Categorical, polars a Categorical of strings) holds it once
    per column (its batches share it) and makes each index a code. The others make each index its value:
    polars as views of the dictionary, numpy (top level) through a decoded copy and objects made of the
    dictionary once, pylist and nested numpy or pandas value by value. A decoded index is counted, in
    ``form.exact``, the value it references (a NumPy pass over the indices), otherwise the widest for all
    (O(dictionary)).
    """
    import numpy as np

    dictionary, kept = array.dictionary, not _decodes(array.type, form)
    seen = {} if form.seen is None else form.seen
    key, once = (_identity(dictionary), form.nested, form.objects), 0.0
    if key not in seen:
        if kept or form.target == "polars" or (form.target == "numpy" and not form.nested):
            once = _cost(dictionary, form) + (len(dictionary) * _CATEGORY.get(form.target, 0) if kept else 0)
        entries = 0.0 if kept else _decoded(partial(_entry_costs, dictionary), array.type.value_type, form, True)
        seen[key] = entries, float(np.max(entries, initial=0))
    if kept:
        return once + len(array) * _SLOT
    (entries, widest), nulls, valid = seen[key], array.null_count, len(array) - array.null_count
    if np.ndim(entries) == 0 or not form.exact:
        return once + nulls * _SLOT + valid * widest
    counts = np.bincount(_valid_indices(array), minlength=len(entries))
    return once + nulls * _SLOT + float(counts @ entries)


def _decodes(t: pa.DictionaryType, form: _Form) -> bool:
    """Whether ``form.target`` decodes dictionary type ``t`` value by value (measured, pyarrow 26 and polars 1).

    pandas keeps a top-level dictionary as a Categorical but decodes one below a list, struct, map or union;
    polars keeps string dictionaries as Categoricals and decodes the others; pylist and numpy decode them all.
    """
    if form.target == "pandas":
        return form.nested
    if form.target == "polars":
        return not _is_string(t.value_type)
    return True  # pylist, columns, numpy, and any target not known to keep dictionaries: the safe side


def _decoded(entries_in: Callable[[_Form], Any], t: pa.DataType, form: _Form, dictionary: bool = False) -> Any:
    """What each value of type ``t`` that ``form.target`` decodes from a dictionary, runs or views takes.

    ``entries_in(form)`` gives each value's cost in a form. Measured (pyarrow 26): numpy decodes a top-level
    dictionary with Arrow and points each row at objects made once of the dictionary, and a nested one the
    same way but with one object per row; numpy and pandas rebuild runs and list views of strings, lists or
    structs (see ``_REBUILT``). Those Arrow copies are counted in Arrow's bytes. Fixed-width values are
    decoded once, straight into their array; pylist and polars read the values in place.
    """
    if form.target not in ("numpy", "pandas") or _fixed_width_flat(t):
        return entries_in(form)
    arrow = form._replace(target="arrow", objects=False)
    if not dictionary:
        return entries_in(form) + _REBUILT * entries_in(arrow)
    if form.target == "numpy":
        return entries_in(form) + entries_in(arrow) if form.nested else _SLOT + entries_in(arrow)
    return entries_in(form)  # pandas, below a list or struct: decoded with Arrow, its strings made once


def _native(form: _Form) -> bool:
    """Whether ``form.target`` holds values as Arrow does (polars; "arrow", for the copies Arrow makes itself)."""
    return form.target in ("polars", "arrow")


def _entry_costs(values: pa.Array, form: _Form) -> Any:
    """What each value of ``values`` takes in ``form``, for the values dictionaries, runs and list views repeat.

    A float when every value takes the same (so no array is ever made the length of one that holds no
    buffers: nulls, runs), else NumPy float64 (products of hostile lengths overflow int64).
    """
    import numpy as np

    t = values.type
    if len(values) == 0:  # an empty array may have no offsets buffer at all
        return 0.0
    if isinstance(t, pa.BaseExtensionType):
        return _entry_costs(values.storage, form)
    if t.id in _VIEW_IDS or _is_text(t):
        if form.target == "polars":  # views of bytes counted once, with the dictionary they are in
            return float(_POLARS_VIEW)
        lengths = _view_bytes(values) if t.id in _VIEW_IDS else _offset_lengths(values)
        return _value_size(t, form) + lengths.astype(np.float64)
    if _is_list(t) or pa.types.is_map(t):
        return _container(t, form) + _segment_sums(values, _element_costs(values, form))
    if isinstance(t, pa.StructType):
        inner = form.inside(t)
        return _container(t, form) + sum(_entry_costs(values.field(i), inner) for i in range(t.num_fields))
    if isinstance(t, pa.UnionType):
        return _SLOT + _union_entries(values, form.inside(t))
    if isinstance(t, pa.DictionaryType):  # decoded: a bound wherever the target would keep it
        entries = _entry_costs(values.dictionary, form)
        return entries if np.ndim(entries) == 0 else entries[_valid_indices(values, all_slots=True)]
    if isinstance(t, pa.RunEndEncodedType):  # the widest run for all: expanding the runs could take any memory
        return float(np.max(_entry_costs(values.values, form), initial=0))
    return float(_value_size(t, form))


def _element_costs(array: pa.Array, form: _Form) -> Any:
    """What each element of list-like ``array`` takes (a map's: its tuple, key and value), see _entry_costs."""
    inner = form.inside(array.type)
    if pa.types.is_map(array.type):
        pair = 0 if _native(form) else _SLOT + _PY_TUPLE
        return pair + _entry_costs(array.keys, inner) + _entry_costs(array.items, inner)
    return _entry_costs(array.values, inner)


def _segment_sums(array: pa.Array, costs: Any) -> Any:
    """What each list of list-like ``array`` takes: the ``costs`` of the elements it spans, summed."""
    import numpy as np

    t, n = array.type, len(array)
    if pa.types.is_fixed_size_list(t):
        if np.ndim(costs) == 0:  # no array of the (logical) length: a list of nulls has no buffers
            return float(costs) * t.list_size
        start = array.offset * t.list_size
        return costs[start : start + n * t.list_size].reshape(n, t.list_size).sum(axis=1)
    starts, ends = _list_bounds(array)
    if np.ndim(costs) == 0:
        return (ends - starts) * float(costs)
    total = np.concatenate(([0.0], np.cumsum(costs)))
    return total[ends] - total[starts]


def _list_bounds(array: pa.Array) -> tuple[Any, Any]:
    """Where each list of ``array`` (lists, maps, list views) starts and ends in its values, clipped to them."""
    import numpy as np

    t, n, at, view = array.type, len(array), array.offset, _is_list_view(array.type)
    large = pa.types.is_large_list_view(t) if view else pa.types.is_large_list(t)
    offsets = np.frombuffer(array.buffers()[1], dtype="<i8" if large else "<i4")
    starts = offsets[at : at + n].astype(np.int64)
    if view:
        sizes = np.frombuffer(array.buffers()[2], dtype="<i8" if large else "<i4")[at : at + n]
        ends = starts + np.maximum(sizes, 0)
    else:
        ends = offsets[at + 1 : at + n + 1].astype(np.int64)
    m = len(array.values)
    starts = np.clip(starts, 0, m)
    return starts, np.clip(ends, starts, m)


def _union_entries(values: pa.UnionArray, inner: _Form) -> Any:
    """Each union value's cost: that of the child value its type code (and, dense, its offset) picks."""
    import numpy as np

    t, n, at = values.type, len(values), values.offset
    codes = np.frombuffer(values.buffers()[1], dtype=np.int8)[at : at + n]
    child_of = np.zeros(128, np.int64)
    child_of[list(t.type_codes)] = np.arange(t.num_fields)
    kids = child_of[codes & 127]
    dense = t.mode == "dense"
    positions = np.frombuffer(values.buffers()[2], dtype="<i4")[at : at + n] if dense else np.arange(n)
    out = np.zeros(n)
    for i in range(t.num_fields):
        costs, pick = _entry_costs(values.field(i), inner), kids == i
        if np.ndim(costs) == 0:
            out[pick] = costs
        elif len(costs):
            out[pick] = costs[np.clip(positions[pick], 0, len(costs) - 1)]
    return out


def _flat_cost(t: pa.DataType, n: int, nulls: int, form: _Form) -> float:
    """What ``n`` values of flat type ``t``, ``nulls`` of them null, take in ``form``, a text's bytes apart."""
    size, objects = _flat_size(t, form.target, form.nested, form.objects)
    return n * size - nulls * (size - _SLOT) if objects else n * size  # a null is None, shared: its slot only


def _value_size(t: pa.DataType, form: _Form) -> int:
    """Bytes one value of flat type ``t`` takes in ``form``: its slot or width and its object, a text's bytes apart."""
    return _flat_size(t, form.target, form.nested, form.objects)[0]


@lru_cache(maxsize=1024)  # asked of every column: a wide table repeats a few types
def _flat_size(t: pa.DataType, target: str, nested: bool, objects: bool) -> tuple[int, bool]:
    """Bytes a value of flat type ``t`` takes in that form, and whether it is a Python object there."""
    form = _Form(target, nested, objects)
    return (_object_size(t), True) if _as_object(t, form) else (_native_size(t, form), False)


def _object_size(t: pa.DataType) -> int:
    return _SLOT + _py_object(t) + (t.byte_width if pa.types.is_fixed_size_binary(t) else 0)


def _native_size(t: pa.DataType, form: _Form) -> int:
    if _is_text(t) or t.id in _VIEW_IDS:  # an offset, or polars' view
        return _POLARS_VIEW if form.target == "polars" else _SLOT
    return _fixed_width(t)


def _as_object(t: pa.DataType, form: _Form) -> bool:
    """Whether ``form.target`` makes a value of flat type ``t`` a Python object, where it is (measured).

    pandas and numpy keep numbers, timestamps and durations in arrays (and pandas 3 keeps strings in Arrow),
    and make objects of the rest: strings (numpy), binaries, decimals, times, intervals, nulls, dates (pandas).
    """
    if form.objects:
        return True
    if form.target not in ("pandas", "numpy"):
        return False
    if _is_string(t) and form.target == "pandas" and not form.nested and _pandas_keeps_strings():
        return False
    return (_is_text(t) or t.id in _VIEW_IDS or pa.types.is_fixed_size_binary(t) or pa.types.is_decimal(t)
            or pa.types.is_time(t) or pa.types.is_interval(t) or pa.types.is_null(t)
            or (form.target == "pandas" and pa.types.is_date(t)))


def _py_object(t: pa.DataType) -> int:
    """Bytes of the Python object a value of flat type ``t`` becomes, a text's bytes apart (see ``_SLOT``)."""
    if pa.types.is_null(t) or pa.types.is_boolean(t):
        return 0
    if _is_string(t):
        return _PY_STR
    if _is_text(t) or t.id in _VIEW_IDS or pa.types.is_fixed_size_binary(t):
        return _PY_BYTES
    nanoseconds = (pa.types.is_timestamp(t) or pa.types.is_duration(t)) and t.unit == "ns"
    if pa.types.is_decimal(t) or pa.types.is_interval(t) or nanoseconds:
        return _PY_LARGE
    if pa.types.is_timestamp(t) or pa.types.is_duration(t) or pa.types.is_time(t):
        return _PY_TEMPORAL
    return _PY_NUMBER


@lru_cache(maxsize=None)
def _pandas_keeps_strings() -> bool:
    """Whether pandas keeps strings in Arrow (its default from 3.0) rather than as Python objects."""
    try:
        import pandas as pd
    except ImportError:  # converting will say so: the estimate takes the safe side meanwhile
        return False
    major = int(pd.__version__.split(".")[0])
    return major >= 3 or (major == 2 and bool(pd.get_option("future.infer_string")))


def _container(t: pa.DataType, form: _Form) -> int:
    """Bytes a nested value of type ``t`` takes itself in ``form``, its children apart (see ``_PY_LIST``)."""
    if _native(form) or isinstance(t, pa.UnionType):  # offsets; a union value is its child's
        return _SLOT
    if _is_list(t):
        return _SLOT + (_NP_ARRAY if form.target in ("pandas", "numpy") else _PY_LIST)
    if pa.types.is_map(t):
        return _SLOT + _PY_LIST
    return _SLOT + _PY_DICT + _PY_DICT_KEY * max(0, t.num_fields - 5)


def _identity(array: pa.Array) -> tuple:
    """What tells one array's memory from another's: its buffers' addresses, its offset and its length."""
    return (array.offset, len(array), *(b.address if b is not None else 0 for b in array.buffers()))


def _fixed_width(t: pa.DataType) -> int:
    """Bytes a value of flat type ``t`` takes in a native array: its own width, at least a pointer's."""
    try:
        return max(_SLOT, t.bit_width // 8)
    except ValueError:  # variable width (strings, binaries) or no buffers at all (null)
        return _SLOT


def _fixed_width_flat(t: pa.DataType) -> bool:
    """Whether every value of type ``t`` costs the same whatever its chunks hold (numbers, nulls...)."""
    encoded = isinstance(t, (pa.BaseExtensionType, pa.DictionaryType, pa.RunEndEncodedType))
    return not (encoded or t.num_fields or t.id in _VIEW_IDS or _is_text(t))


# Type ids: the estimate asks these of every column, and pa.types' predicates cost a call each. Views and list
# views exist from pyarrow 16 (VIEW_TYPES[0] is string_view).
_TEXT_IDS = frozenset(t.id for t in (pa.string(), pa.binary(), pa.large_string(), pa.large_binary()))
_STRING_IDS = frozenset(t.id for t in (pa.string(), pa.large_string(), *VIEW_TYPES[:1]))
_VIEW_IDS = frozenset(t.id for t in VIEW_TYPES)
_LIST_VIEW_IDS = frozenset(getattr(pa, name)(pa.null()).id for name in ("list_view", "large_list_view")
                           if hasattr(pa, name))


def _is_text(t: pa.DataType) -> bool:
    """Strings and binaries with an offsets buffer: their values' bytes are in their data buffer."""
    return t.id in _TEXT_IDS


def _is_string(t: pa.DataType) -> bool:
    return t.id in _STRING_IDS


def _is_list_view(t: pa.DataType) -> bool:
    return t.id in _LIST_VIEW_IDS


def _is_list(t: pa.DataType) -> bool:
    return (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)
            or _is_list_view(t))


def _data_bytes(array: pa.Array) -> int:
    """The bytes of a string or binary array's data buffer (the whole buffer: O(1), never less)."""
    if not _is_text(array.type):
        return 0
    data = array.buffers()[2]
    return 0 if data is None else data.size


def _sum(lengths: Any, costs: Any) -> Any:
    """``lengths`` times ``costs``, summed: each element its own cost, or all the same one."""
    import numpy as np

    return lengths.sum() * costs if np.ndim(costs) == 0 else lengths @ costs


def _offset_lengths(values: pa.Array) -> Any:
    """The byte lengths of a string or binary array's values, from its offsets (negative ones as 0)."""
    import numpy as np

    large = pa.types.is_large_string(values.type) or pa.types.is_large_binary(values.type)
    offsets = np.frombuffer(values.buffers()[1], dtype="<i8" if large else "<i4")
    return np.maximum(np.diff(offsets[values.offset : values.offset + len(values) + 1]), 0)


def _run_lengths(array: pa.RunEndEncodedArray) -> Any:
    """How many of ``array``'s rows each of its runs covers, within its slice, as NumPy float64."""
    import numpy as np

    start, stop = array.offset, array.offset + len(array)
    ends = np.clip(array.run_ends.to_numpy().astype(np.int64), start, stop)  # run_ends count from the unsliced start
    # Made non-decreasing: only full validation checks the order, and a negative run would cancel out a real one.
    return np.diff(np.maximum.accumulate(ends), prepend=start).astype(np.float64)


def _valid_indices(array: pa.DictionaryArray, all_slots: bool = False) -> Any:
    """The indices of ``array``'s valid slots (``all_slots``: of every slot), within its dictionary.

    A null slot's index may be anything: it is clipped (a bound) where all slots are wanted.
    """
    import numpy as np

    if len(array.dictionary) == 0:  # only null slots can index an empty dictionary
        return np.zeros(len(array) if all_slots else 0, np.int64)
    indices = array.indices.drop_null() if array.null_count and not all_slots else array.indices
    raw = np.frombuffer(indices.buffers()[1], dtype=indices.type.to_pandas_dtype())
    return np.clip(raw[indices.offset : indices.offset + len(indices)], 0, len(array.dictionary) - 1).astype(np.intp)


def _view_bytes(array: pa.Array) -> Any:
    """The lengths of ``array``'s string or binary views (negative ones as 0), as a NumPy int64 array."""
    import numpy as np

    views = np.frombuffer(array.buffers()[1], dtype="<i4").reshape(-1, 4)[array.offset : array.offset + len(array)]
    return np.maximum(views[:, 0], 0).astype(np.int64)
