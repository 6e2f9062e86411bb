"""pandas frames, Series and pyarrow arrays through the arrow format: what Arrow's pandas metadata loses is
kept, and one-column values come back as columns in each ``into=`` form."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

import tether
from tether.formats import _pandas_form


def round_trip(value, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        frame = tether.dumps(value)
    assert tether.inspect(frame).format == "arrow"
    return tether.loads(frame, **kw)


FRAMES = {
    "object strings with None": pd.DataFrame({"s": pd.Series(["x", None, "z"], dtype=object), "n": [1, 2, 3]}),
    "string[python]": pd.DataFrame({"s": pd.array(["x", None], dtype="string[python]")}),
    "string[python] with NaN": pd.DataFrame({"s": pd.Series(["x", None], dtype=pd.StringDtype("python", np.nan))}),
    "empty": pd.DataFrame(),
    "int labels": pd.DataFrame({0: [1, 2], 1: [3, 4]}),
    "daily index": pd.DataFrame({"a": [1, 2]}, index=pd.date_range("2024-01-01", periods=2, tz="Europe/Paris")),
    "timedelta index with freq": pd.DataFrame({"a": [1, 2]}, index=pd.timedelta_range("1s", periods=2, freq="s")),
    "object index with None": pd.DataFrame({"a": [1, 2]}, index=pd.Index(["x", None], dtype=object, name="k")),
    "object bytes": pd.DataFrame({"b": pd.Series([b"x", None], dtype=object)}),
}


@pytest.mark.parametrize("df", FRAMES.values(), ids=FRAMES.keys())
def test_a_frame_comes_back_as_pandas_had_it(df):
    back = round_trip(df)
    pd.testing.assert_frame_equal(df, back, check_index_type=True, check_column_type=True, check_freq=True)


def test_none_in_an_object_column_stays_none_not_nan():
    back = round_trip(pd.DataFrame({"s": pd.Series(["x", None], dtype=object)}))
    assert back["s"].tolist() == ["x", None] and back["s"].dtype == object


def test_a_frame_that_needs_nothing_records_nothing():
    frame = tether.dumps(pd.DataFrame({"a": np.arange(3), "s": ["x", "y", "z"]}))
    assert "pandas" not in tether.inspect(frame).type


SERIES = {
    "named": pd.Series([1.5, 2.5], name="price"),
    "unnamed": pd.Series([1, 2]),
    "int name": pd.Series([1, 2], name=7),
    "named values": pd.Series([1, 2], name="values"),
    "str index": pd.Series(["x", None], dtype=object, index=pd.Index(["a", "b"], name="k"), name="n"),
    "categorical": pd.Series(pd.Categorical(["a", "b", "a"], ordered=True)),
    "nullable": pd.Series(pd.array([1, None], dtype="Int64"), name="i"),
    "empty float32": pd.Series([], dtype="float32"),
}


@pytest.mark.parametrize("s", SERIES.values(), ids=SERIES.keys())
def test_a_pandas_series_comes_back_a_series(s):
    back = round_trip(s)
    pd.testing.assert_series_equal(s, back, check_index_type=True)


@pytest.mark.parametrize("into, kind, values", [
    ("arrow", pa.ChunkedArray, None), ("pandas", pd.Series, None), ("polars", pl.Series, None),
    ("pylist", list, [1, None, 3]), ("numpy", np.ndarray, None)])
@pytest.mark.parametrize("value", [pd.Series([1, None, 3], dtype="Int64", name="v"), pl.Series("v", [1, None, 3]),
                                   pa.chunked_array([[1, None], [3]])], ids=["pandas", "polars", "chunked"])
def test_a_one_column_value_reads_as_a_column_in_each_form(value, into, kind, values):
    back = tether.loads(tether.dumps(value), into=into)
    assert isinstance(back, kind) and len(back) == 3
    if values is not None:
        assert back == values


def test_a_polars_series_keeps_its_name_and_dtype():
    s = pl.Series("q", [1, None], dtype=pl.Int16)
    back = round_trip(s)
    assert isinstance(back, pl.Series) and back.name == "q" and back.dtype == pl.Int16 and back.to_list() == [1, None]


def test_a_pyarrow_array_comes_back_an_array_and_a_chunked_one_chunked():
    arr = pa.array(["a", None, "c"])
    back = round_trip(arr)
    assert isinstance(back, pa.Array) and back.equals(arr)
    chunked = pa.chunked_array([[1, 2], [3]])
    back = round_trip(chunked)
    assert isinstance(back, pa.ChunkedArray) and back.equals(chunked)


def test_a_series_into_arrow_names_its_column_and_a_table_stays_a_table():
    assert tether.loads(tether.dumps(pd.Series([1], name="p")), into="arrow").to_pylist() == [1]
    table = tether.loads(tether.dumps(pd.DataFrame({"a": [1]})), into="arrow")
    assert isinstance(table, pa.Table)


def test_a_series_named_by_a_tuple_goes_to_pickle_and_format_arrow_names_the_fix():
    s = pd.Series([1, 2], name=("a", "b"))
    with pytest.warns(tether.FallbackWarning):
        frame = tether.dumps(s)
    assert tether.inspect(frame).format == "pickle"
    with pytest.raises(tether.ColumnError, match=r"rename it \(s\.rename\(str\(s\.name\)\)\)"):
        tether.dumps(s, format="arrow")


@pytest.mark.parametrize("notes", [
    "nonsense", {"object": [99, -1, "0"]}, {"string_python": {"x": "NA", "5": "nan"}},
    {"columns_range": [0, 5, 1]}, {"columns_range": [0, 1, 0]}, {"freq": "NOT A FREQ"}, {"index_object": 1}])
def test_notes_a_reader_cannot_apply_are_ignored(notes):
    df = pd.DataFrame({"a": [1, 2]}, index=pd.date_range("2024-01-01", periods=2, freq="D"))
    table = pa.Table.from_pandas(df)
    back = _pandas_form.restore(table.to_pandas(), table, notes)
    assert back["a"].tolist() == [1, 2] and list(back.columns) == ["a"]


def test_a_freq_the_index_does_not_follow_is_not_forced():
    df = pd.DataFrame({"a": [1, 2]}, index=pd.to_datetime(["2024-01-01", "2024-01-05"]))
    table = pa.Table.from_pandas(df)
    back = _pandas_form.restore(table.to_pandas(), table, {"freq": "D"})
    assert back.index.freq is None


def test_a_forged_one_column_source_on_a_wider_table_reads_as_a_table():
    table = pa.table({"a": [1], "b": [2]})
    out = _pandas_form.one_column(table, "pylist", {"source": "array"}, lambda: table.to_pylist())
    assert out == [{"a": 1, "b": 2}]


def test_object_columns_are_counted_as_objects_before_they_are_made(limit):
    """pandas 3 keeps strings in Arrow, but an object column is made Python objects again: 57 B and more a row,
    where Arrow holds 5. The estimate counts them so, and into='arrow' still reads the frame."""
    n = 1_000_000
    frame = tether.dumps(pd.DataFrame({"s": pd.Series(np.full(n, "x", dtype=object), dtype=object)}))
    as_str = tether.dumps(pd.DataFrame({"s": pd.Series(np.full(n, "x", dtype=object), dtype="str")}))
    limit(16 << 20)
    assert len(tether.loads(as_str)) == n  # Arrow's 5 MB of strings, under the limit
    with pytest.raises(tether.LimitError, match=r"to pandas would take at least \d+ bytes \(column 's'"):
        tether.loads(frame)
    assert tether.loads(frame, into="arrow").num_rows == n


CHANGED_OBJECTS = {
    "dicts": [{"a": 1}, {"b": 2}],
    "lists": [[1, 2], [3]],
    "two zones": [pd.Timestamp("2024-01-01 09:00", tz="UTC"), pd.Timestamp("2024-01-01 09:00", tz="Asia/Tokyo")],
    "ints with None": [1, None],
    "bools": [True, False],
}


@pytest.mark.parametrize("values", CHANGED_OBJECTS.values(), ids=CHANGED_OBJECTS.keys())
def test_object_columns_arrow_would_change_fall_back_and_explicit_arrow_warns(values):
    df = pd.DataFrame({"c": pd.Series(values, dtype=object)})
    with pytest.warns(tether.FallbackWarning, match=r"object column\(s\) 'c' \(as "):
        frame = tether.dumps(df)
    assert tether.inspect(frame).format == "pickle"
    with pytest.warns(tether.LossyConversionWarning, match="come back changed"):
        tether.dumps(df, format="arrow")
    with pytest.warns(tether.FallbackWarning):
        assert tether.inspect(tether.dumps(df["c"])).format == "pickle"  # a Series too


KEPT_OBJECTS = {
    "bytes": [b"x", None],
    "decimals": [__import__("decimal").Decimal("1.5"), None],
    "dates": [__import__("datetime").date(2024, 1, 1), None],
    "times": [__import__("datetime").time(1, 2), None],
    "all None": [None, None],
    "bools with None": [True, None],
    "str with None": ["x", None],
}


@pytest.mark.parametrize("values", KEPT_OBJECTS.values(), ids=KEPT_OBJECTS.keys())
def test_object_columns_arrow_keeps_go_as_arrow_and_come_back_equal(values):
    df = pd.DataFrame({"c": pd.Series(values, dtype=object)})
    back = round_trip(df)
    pd.testing.assert_frame_equal(df, back)
    assert [type(v) for v in back["c"]] == [type(v) for v in values]


def test_a_polars_object_column_is_refused_not_sent_as_addresses():
    df = pl.DataFrame({"o": [object(), object()]}, schema={"o": pl.Object})
    with pytest.raises(tether.ColumnError, match=r"polars column\(s\) \['o'\] hold Python objects"):
        tether.dumps(df, format="arrow")
    with pytest.raises(tether.TetherError, match="polars would write their memory addresses"):
        tether.dumps(df)


def test_an_unnamed_polars_series_keeps_its_empty_name():
    back = round_trip(pl.Series([1, 2]))
    assert back.name == "" and back.to_list() == [1, 2]
    assert tether.loads(tether.dumps(pl.Series([1])), into="pandas").name == ""


@pytest.mark.parametrize("notes", [
    {"freq": "1000000000000000000000D"}, {"string_python": {"9" * 5000: "NA"}}, {"string_python": {"0": "NA"}}])
def test_forged_notes_that_would_raise_or_recast_are_ignored(notes):
    df = pd.DataFrame({"a": [1, 2]}, index=pd.date_range("2024-01-01", periods=2, freq="D"))
    table = pa.Table.from_pandas(df)
    back = _pandas_form.restore(table.to_pandas(), table, notes)
    assert back["a"].tolist() == [1, 2] and back["a"].dtype == np.int64


@pytest.mark.parametrize("missing", [np.nan, pd.NA, pd.NaT, None], ids=["nan", "NA", "NaT", "None"])
def test_an_object_text_columns_missing_values_come_back_of_their_kind(missing):
    df = pd.DataFrame({"c": pd.Series(["a", missing, "b"], dtype=object)})
    back = round_trip(df)
    pd.testing.assert_frame_equal(df, back)
    assert type(back["c"][1]) is type(missing)


def test_an_object_text_column_mixing_none_and_nan_falls_back():
    df = pd.DataFrame({"c": pd.Series(["a", None, np.nan], dtype=object)})
    with pytest.warns(tether.FallbackWarning, match=r"'c' \(None and NaN-like missing values mixed\)"):
        assert tether.inspect(tether.dumps(df)).format == "pickle"


def test_an_index_named_by_an_int_keeps_its_name_and_pyarrows_warning_is_not_the_callers():
    df = pd.DataFrame({"a": [1, 2]}, index=pd.Index([5, 6], name=0))
    back = round_trip(df)  # round_trip makes every warning an error
    assert back.index.name == 0
    s = pd.Series([1, 2], index=pd.MultiIndex.from_tuples([(1, "x"), (2, "y")], names=[3, "k"]), name="v")
    assert list(round_trip(s).index.names) == [3, "k"]


def test_an_index_named_by_a_tuple_falls_back_and_format_arrow_warns():
    df = pd.DataFrame({"a": [1, 2]}, index=pd.Index([5, 6], name=(1, 2)))
    with pytest.warns(tether.FallbackWarning, match=r"index name\(s\) \[\(1, 2\)\] would come back as strings"):
        assert tether.inspect(tether.dumps(df)).format == "pickle"
    with pytest.warns(tether.LossyConversionWarning, match="would come back as strings"):
        tether.dumps(df, format="arrow")


@pytest.mark.parametrize("notes", [{"columns_range": [0, 10**30, 1]}, {"object_missing": {"0": "nan", "x": 5}},
                                   {"index_names": [1, 2]}, {"index_names": "x"}])
def test_more_forged_notes_are_ignored(notes):
    df = pd.DataFrame({"a": ["x", None]}, dtype=object)
    table = pa.Table.from_pandas(df)
    back = _pandas_form.restore(table.to_pandas(), table, {"object": [0], **notes})
    assert list(back.columns) == ["a"] and back.index.names == [None]
