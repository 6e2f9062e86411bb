"""What Arrow's pandas metadata does not give back, recorded at ``dumps`` and restored at ``loads``; and the
one-column sources (a pandas or polars Series, a pyarrow Array or ChunkedArray) in each ``into=`` form.

pyarrow restores a DataFrame from the ``pandas`` metadata it writes into the schema. Under pandas 3 that
metadata loses:

* ``object`` columns of strings: they come back as pandas' ``str`` dtype, with NaN where there was ``None``;
* the storage of a ``StringDtype``: ``string[python]`` comes back as ``string[pyarrow]``;
* a ``RangeIndex`` of column labels: ``pd.DataFrame()`` or ``{0: [...], 1: [...]}`` come back with an
  ``Index`` of int64;
* the ``freq`` of a ``DatetimeIndex`` or ``TimedeltaIndex``.

The arrow format records these as the frame's ``type.pandas`` (docs/format.md §4), and :func:`restore` puts
them back. Everything here costs O(columns) at ``dumps``; at ``loads`` only the recorded columns are touched.
"""

from __future__ import annotations

from typing import Any, Callable

import pyarrow as pa

from ..arrow import VALUES, is_text_type, missing_markers, pandas_numpy_type_in

# The missing values an object text column may hold besides None, by the name missing_markers gives them.
_MARKERS: dict[str, Callable[[], Any]] = {"nan": lambda: float("nan"), "NA": lambda: _pd().NA,
                                          "NaT": lambda: _pd().NaT}
# The sources whose value is one column: what each gives back by default is the column in its own form.
ONE_COLUMN = ("pandas_series", "polars_series", "array", "chunked_array")


def _pd() -> Any:
    import pandas as pd

    return pd


def record(df: Any, table: pa.Table) -> dict[str, Any]:
    """What ``df`` (a DataFrame, or a Series: its table's one column) would lose through Arrow's pandas metadata
    (``table`` is its Arrow form), as the ``type.pandas`` entry (empty: nothing).

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"s": pd.Series(["a", None], dtype=object), "n": [1, 2]})
    >>> record(df, pa.Table.from_pandas(df))
    {'object': [0]}
    >>> record(pd.DataFrame({"a": [1]}), pa.table({"a": [1]}))
    {}
    """
    import pandas as pd

    out: dict[str, Any] = {}
    objects, storage, markers = [], {}, {}
    series = not hasattr(df, "columns")  # taken as it is: a one-column frame of it would be built for nothing
    # pyarrow writes object and python-storage text as utf8, pandas 3's default str as large_utf8: a frame with
    # no utf8 column has nothing to note, and skips df.dtypes, which costs more than the rest of these checks.
    maybe = any(pa.types.is_string(f.type) for f in table.schema) or pandas_numpy_type_in(table, "object")
    for i, dtype in enumerate(([df.dtype] if series else df.dtypes) if maybe else ()):
        if type(dtype) is pd.StringDtype and dtype.storage == "python":
            storage[str(i)] = "nan" if dtype.na_value is not pd.NA else "NA"
        elif dtype == object and is_text_type(table.schema.field(i).type):  # pandas 3 makes text its str dtype
            objects.append(i)
            if table.column(i).null_count:
                markers[str(i)] = missing_markers(df if series else df.iloc[:, i])
    if objects:
        out["object"] = objects
    restorable = {k: m.pop() for k, m in markers.items() if len(m) == 1 and m != {"None"} and m <= set(_MARKERS)}
    if restorable:
        out["object_missing"] = restorable
    if storage:
        out["string_python"] = storage
    if type(df.index) is pd.Index and df.index.dtype == object:
        out["index_object"] = True
    if any(type(n) is int for n in df.index.names):  # pyarrow writes names as strings
        out["index_names"] = list(df.index.names)
    if not series and type(df.columns) is pd.RangeIndex and df.columns.name is None:
        r = df.columns
        out["columns_range"] = [r.start, r.stop, r.step]
    freq = getattr(df.index, "freqstr", None) if isinstance(df.index, (pd.DatetimeIndex, pd.TimedeltaIndex)) else None
    if freq is not None:
        out["freq"] = freq
    return out


def restore(df: Any, table: pa.Table, info: Any) -> Any:
    """``df`` (``table.to_pandas()``) with what :func:`record` noted put back; unknown or malformed notes are
    ignored, as a reader ignores what it does not know.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"s": pd.Series(["a", None], dtype=object)})
    >>> table = pa.Table.from_pandas(df)
    >>> restore(table.to_pandas(), table, record(df, table))["s"].tolist()
    ['a', None]
    """
    if not isinstance(info, dict) or not info:
        return df
    import pandas as pd

    width = df.shape[1]
    missing = info.get("object_missing") if isinstance(info.get("object_missing"), dict) else {}
    for i in _positions(info.get("object"), width):
        if df.dtypes.iloc[i] != object and is_text_type(table.schema.field(i).type):
            df.isetitem(i, pd.Series(_objects(table.column(i), missing.get(str(i))), index=df.index, dtype=object))
    storage = info.get("string_python")
    if isinstance(storage, dict):
        for key, na in storage.items():
            at = [int(key)] if type(key) is str and key.isascii() and key.isdigit() and len(key) < 10 else []
            for i in _positions(at, width):
                if is_text_type(table.schema.field(i).type):  # a note on another column is not a reason to cast it
                    dtype = pd.StringDtype("python", na_value=float("nan") if na == "nan" else pd.NA)
                    df.isetitem(i, df.iloc[:, i].astype(dtype))
    if info.get("index_object") is True and type(df.index) is pd.Index and df.index.dtype != object:
        df.index = _object_index(df, table)
    names = info.get("index_names")
    if isinstance(names, list) and len(names) == df.index.nlevels \
            and all(n is None or type(n) in (str, int) for n in names):
        df.index.names = names
    cols = info.get("columns_range")
    if _range_of(cols, width):
        df.columns = pd.RangeIndex(*cols)
    freq = info.get("freq")
    if isinstance(freq, str) and isinstance(df.index, (pd.DatetimeIndex, pd.TimedeltaIndex)):
        try:
            df.index = type(df.index)(df.index, freq=freq)
        except (ValueError, TypeError, OverflowError):  # one the values do not follow (a forged note): as they are
            pass
    return df


def follow(table: pa.Table, type_info: dict[str, Any], written: pa.Schema,
           moved: dict[str, str | None]) -> tuple[pa.Table, dict[str, Any]]:
    """The notes about a written table's columns carried over to ``table``, the same table after a migration.

    ``written`` is the written table's schema, ``moved`` where the migration
    took the columns it renamed or dropped (:func:`tether.schemas.renames`). The
    notes kept by position (``type.pandas``) move with their columns, the
    ones kept by name (``numpy_columns``, ``numpy_dtypes``, Arrow's own pandas
    metadata, which renaming a column loses) follow renames; a column the
    migration added has none, and a dropped one's go. A ``RangeIndex`` of
    column labels no longer applies.

    Examples
    --------
    >>> t = pa.table({"s": ["a", None]})
    >>> written = pa.schema([("legacy", pa.int64()), ("s", pa.string())])
    >>> _, info = follow(t, {"pandas": {"object": [1]}}, written, {"legacy": None})
    >>> info["pandas"]
    {'object': [0]}
    """
    after = {n: i for i, n in enumerate(table.column_names)}

    def now(name: Any) -> Any:
        new = moved.get(name, name) if isinstance(name, str) else None
        return new if new in after else None

    info = dict(type_info)
    notes = info.get("pandas")
    if isinstance(notes, dict):
        info["pandas"] = _moved_notes(notes, written.names, after, now)
    if isinstance(info.get("numpy_columns"), list):
        info["numpy_columns"] = [now(n) for n in info["numpy_columns"] if now(n) is not None]
    if isinstance(info.get("numpy_dtypes"), dict):
        info["numpy_dtypes"] = {now(n): d for n, d in info["numpy_dtypes"].items() if now(n) is not None}
    return _moved_metadata(table, _pandas_metadata(written), now), info


def _pandas_metadata(schema: pa.Schema) -> Any:
    """Arrow's pandas metadata of ``schema``, or None when there is none or it is not JSON (a forged frame's:
    ignored here, as :func:`restore` ignores malformed notes; the conversion reports it)."""
    try:
        return schema.pandas_metadata
    except ValueError:
        return None


def _moved_notes(notes: dict[str, Any], before: list[str], after: dict[str, int], now: Callable) -> dict[str, Any]:
    """``type.pandas`` with its positions taken from the written columns to the migrated ones."""

    def at(position: Any) -> int | None:
        if type(position) is str and position.isascii() and position.isdigit() and len(position) < 10:
            position = int(position)
        if type(position) is not int or not 0 <= position < len(before):
            return None
        name = now(before[position])
        return None if name is None else after[name]

    out = {k: v for k, v in notes.items() if k not in ("object", "object_missing", "string_python", "columns_range")}
    if isinstance(notes.get("object"), list):
        out["object"] = [at(i) for i in notes["object"] if at(i) is not None]
    for key in ("object_missing", "string_python"):
        if isinstance(notes.get(key), dict):
            out[key] = {str(at(i)): v for i, v in notes[key].items() if at(i) is not None}
    return out


def _moved_metadata(table: pa.Table, meta: Any, now: Callable) -> pa.Table:
    """``table`` with the written table's pandas metadata, ``meta``, naming its columns as they are now (pyarrow
    drops the index of a frame whose metadata names a column that is not there)."""
    if not isinstance(meta, dict) or not isinstance(meta.get("index_columns", []), list) \
            or not isinstance(meta.get("columns", []), list):
        return table
    import json

    def named(entry: Any) -> Any:
        return now(entry) if isinstance(entry, str) else entry  # a RangeIndex is a dict, not a column

    meta = dict(meta)
    meta["index_columns"] = [named(e) for e in meta.get("index_columns") or [] if named(e) is not None]
    columns = []
    for entry in meta.get("columns") or []:
        field = entry.get("field_name") if isinstance(entry, dict) else None
        if isinstance(field, str) and now(field) is None and field not in meta["index_columns"]:
            continue
        if isinstance(field, str) and now(field) is not None and now(field) != field:
            entry = {**entry, "field_name": now(field), "name": now(field) if entry.get("name") == field
                     else entry.get("name")}
        columns.append(entry)
    meta["columns"] = columns
    return table.replace_schema_metadata({**(table.schema.metadata or {}), b"pandas": json.dumps(meta).encode()})


def _unreadable_marked(t: pa.DataType) -> bool:
    """A type whose ``[pyarrow]`` dtype text pandas cannot read back."""
    return pa.types.is_nested(t) or pa.types.is_dictionary(t)


def arrow_dtypes(table: pa.Table) -> Callable[[pa.DataType], Any] | None:
    """A ``types_mapper`` that gives back the columns pandas held as ``pd.ArrowDtype`` of a nested or
    dictionary type (a ``list<...>[pyarrow]`` column, say), or None when there are none.

    pyarrow writes such a column's dtype as text (``list<item: int64>[pyarrow]``) that its own ``to_pandas``
    cannot read back: it raised, so the frame could never be loaded. By type: a plain column of the same
    type becomes an ArrowDtype too.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"l": pd.Series([[1]], dtype=pd.ArrowDtype(pa.list_(pa.int64())))})
    >>> str(pa.Table.from_pandas(df).to_pandas(types_mapper=arrow_dtypes(pa.Table.from_pandas(df))).dtypes["l"])
    'list<item: int64>[pyarrow]'
    """
    raw = (table.schema.metadata or {}).get(b"pandas", b"")
    if b"[pyarrow]" not in raw:  # most frames: not parsed again (7 % of a small DataFrame's loads)
        return None
    meta = _pandas_metadata(table.schema)
    columns = meta.get("columns") if isinstance(meta, dict) else None
    marked = {c.get("field_name") for c in columns or () if isinstance(c, dict)
              and isinstance(c.get("numpy_type"), str) and c["numpy_type"].endswith("[pyarrow]")}
    nested = [f.type for f in table.schema if f.name in marked and _unreadable_marked(f.type)]
    if not nested:
        return None
    pd = _pd()
    return lambda t: pd.ArrowDtype(t) if any(t.equals(n) for n in nested) else None


def object_columns(target: str, type_info: dict[str, Any]) -> frozenset[int]:
    """The positions :func:`restore` makes Python objects of, for ``into="pandas"``: what the conversion's
    estimate counts as objects.

    Examples
    --------
    >>> sorted(object_columns("pandas", {"pandas": {"object": [2, 0, "x"]}}))
    [0, 2]
    """
    info = type_info.get("pandas")
    if target != "pandas" or not isinstance(info, dict):
        return frozenset()
    return frozenset(_positions(info.get("object"), 1 << 62))


def _object_index(df: Any, table: pa.Table) -> Any:
    """The index as objects, from the column pandas' metadata names: None where it was None, not NaN."""
    import pandas as pd

    names = (table.schema.pandas_metadata or {}).get("index_columns") or [None]
    if not isinstance(names[0], str) or names[0] not in table.column_names:
        return df.index.astype(object)
    values = table.column(names[0]).to_numpy(zero_copy_only=False)
    return pd.Index(values, dtype=object, name=df.index.name) if len(values) == len(df) else df.index


def _objects(column: pa.ChunkedArray, marker: Any) -> Any:
    """A text column as Python objects, its nulls as the missing value the column held (None by default)."""
    values = column.to_numpy(zero_copy_only=False)
    if marker in _MARKERS and column.null_count:
        values[column.is_null().to_numpy(zero_copy_only=False)] = _MARKERS[marker]()
    return values


def _positions(values: Any, width: int) -> list[int]:
    if not isinstance(values, list):
        return []
    return [i for i in values if type(i) is int and 0 <= i < width]


def _range_of(cols: Any, width: int) -> bool:
    if not (isinstance(cols, list) and len(cols) == 3 and all(type(c) is int and abs(c) < 1 << 62 for c in cols)):
        return False
    return cols[2] != 0 and len(range(*cols)) == width


def one_column(table: pa.Table, target: str, type_info: dict[str, Any], convert: Callable[[], Any]) -> Any:
    """A one-column source in the form ``target`` names; ``convert()`` gives the table in that form.

    pandas and polars give a Series, ``arrow`` the column (an Array for an array source, else a
    ChunkedArray), ``pylist`` the list of values and ``numpy`` the array; ``batch`` and ``columns``
    stay tables. The value is the table's first column: a pandas Series' index follows it. A table of
    another width (a forged source) is converted as any table.

    Examples
    --------
    >>> t = pa.table({"values": [1, 2]})
    >>> one_column(t, "pylist", {"source": "array"}, lambda: None)
    [1, 2]
    >>> one_column(t, "arrow", {"source": "array"}, lambda: None).type
    DataType(int64)
    """
    width = table.num_columns
    if not (width == 1 or width > 1 and type_info.get("source") == "pandas_series") or target in ("batch", "columns"):
        return convert()
    column = table.column(0)
    if target == "arrow":
        if type_info.get("source") != "array":
            return column
        return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    if target == "pylist":
        return column.to_pylist()
    converted = convert()
    if target == "pandas":
        series = converted.iloc[:, 0]
        series.name = _series_name(type_info, table)
        return series
    if target == "polars":
        name = _series_name(type_info, table)
        return converted.to_series(0).alias(name) if type(name) is str else converted.to_series(0)
    if target == "numpy":
        return next(iter(converted.values()))
    return converted


def _series_name(type_info: dict[str, Any], table: pa.Table) -> Any:
    if "series_name" in type_info:
        name = type_info["series_name"]
        return name if name is None or type(name) in (str, int) else None
    name = table.column_names[0]
    return None if name == VALUES else name
