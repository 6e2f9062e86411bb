"""format="auto" keeps its promise for columnar data: what Arrow would change falls back, loudly.

Each case is one the trial found changing silently (or failing terminally)
under ``format="auto"``: Arrow now keeps the value exactly, or the value falls
back to etf/pickle with a FallbackWarning naming the column and why; with an
explicit ``format="arrow"`` the same values raise a ColumnError naming the column
and the fix (or, for labels Arrow can still write, warn LossyConversionWarning).
"""

from __future__ import annotations

import datetime as dt
import decimal
import warnings
import zoneinfo

import numpy as np
import pyarrow as pa
import pytest

import tether
from tether import Atom
from tether.formats import arrow as arrow_format

pd = pytest.importorskip("pandas")

N = 300  # over the 256 rows from which columnar Python data goes to Arrow
UTC, TOKYO = dt.timezone.utc, zoneinfo.ZoneInfo("Asia/Tokyo")


def exact(value, **kw):
    """The round trip under format="auto", with no warning allowed; and the format it took."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        frame = tether.dumps(value, **kw)
    return tether.loads(frame, allow_pickle=True), tether.last_decision().format


def fallen_back(value, match, **kw):
    """The round trip of a value format="auto" must not send as Arrow: it warns, naming ``match``."""
    with pytest.warns(tether.FallbackWarning, match=match):
        frame = tether.dumps(value, **kw)
    decision = tether.last_decision()
    assert decision.format in ("etf", "pickle") and decision.fallback_from in ("arrow", "ndarray", "etf"), decision
    return tether.loads(frame, allow_pickle=True)


def same(a, b):
    """Equal, of the same types all the way down, time zones and decimal places included."""
    assert type(a) is type(b), (a, b)
    if isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            same(x, y)
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert np.array_equal(a, b, equal_nan=a.dtype.kind in "fcmM") if a.dtype != object else a.tolist() == b.tolist()
    elif isinstance(a, dt.datetime):
        assert a == b and a.tzinfo == b.tzinfo and type(a.tzinfo) is type(b.tzinfo) and a.tzname() == b.tzname()
    elif isinstance(a, decimal.Decimal):
        assert str(a) == str(b)
    else:
        assert a == b


# ---------------------------------------------------------------- 1. pandas column labels


@pytest.mark.parametrize("labels", [[1, "1"], [(1, "a"), 2.5], [True, False]], ids=["int-str", "tuple-float", "bool"])
def test_pandas_labels_arrow_cannot_restore_fall_back(labels):
    df = pd.DataFrame([[10, 20]], columns=labels)
    back = fallen_back(df, "DataFrame column labels")
    assert list(back.columns) == labels and [type(c) for c in back.columns] == [type(c) for c in labels]
    pd.testing.assert_frame_equal(back, df)


def test_pandas_labels_explicit_arrow_warns_lossy():
    df = pd.DataFrame([[10, 20]], columns=[(1, "a"), 2.5])
    with pytest.warns(tether.LossyConversionWarning, match=r"column labels .* str labels"):
        frame = tether.dumps(df, format="arrow")
    assert list(tether.loads(frame).columns) == ["('1', 'a')", "2.5"]


@pytest.mark.parametrize("columns", [
    [1, 2], [1.5, 2.5], pd.MultiIndex.from_tuples([(1, "a"), (2, "b")], names=["x", "y"]),
    pd.DatetimeIndex(["2020-01-01", "2021-01-01"]),
], ids=["int", "float", "multi", "dates"])
def test_pandas_labels_arrow_restores_stay_arrow(columns):
    df = pd.DataFrame([[10, 20]], columns=columns)
    back, fmt = exact(df)
    assert fmt == "arrow"
    assert back.columns.equals(df.columns) and list(back.columns.names) == list(df.columns.names)
    assert [type(c) for c in back.columns] == [type(c) for c in df.columns]


# ---------------------------------------------------------------- 2. element types of columnar Python data


@pytest.mark.parametrize("value", [
    {"c": [b"abc", None] * (N // 2)},
    {"c": [[b"x"], []] * (N // 2)},
    {"c": [dt.datetime(2020, 1, 1, tzinfo=TOKYO), None] * (N // 2)},
    {"c": [dt.datetime(2020, 1, 1, tzinfo=zoneinfo.ZoneInfo("UTC"))] * N},
    {"c": [dt.datetime(2020, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=9)))] * N},
    {"c": [dt.datetime(2020, 1, 1), dt.datetime(2021, 1, 1)] * (N // 2)},
    {"c": [decimal.Decimal("1.50"), decimal.Decimal("2.25"), None] * (N // 3)},
    {"c": [{"a": 1, "b": b"x"}, None] * (N // 2)},
    {"c": np.array(["ab", "c"] * (N // 2))},
    {"c": np.array([b"ab", b""] * (N // 2))},
    {"c": np.arange(N, dtype=">f8")},
    {"c": np.array(["2020-01-01", "NaT"] * (N // 2), "M8[s]")},
    {"c": np.array([1, "NaT"] * (N // 2), "m8[ms]")},
    {"c": np.array([1, 2] * (N // 2), dtype=object)},
    {"c": np.fromiter([[1, 2], None, []] * (N // 3), dtype=object, count=N)},
], ids=["bytes", "nested-bytes", "one-zone", "zoneinfo-utc", "fixed-offset", "naive", "decimal-one-scale", "maps",
        "numpy-U", "numpy-S", "big-endian", "NaT", "NaT-timedelta", "object-ints", "object-lists"])
def test_columns_arrow_keeps_exactly(value):
    back, fmt = exact(value)
    assert fmt == "arrow"
    same(value, back)


def test_rows_with_bytes_leaving_the_host_stay_bytes():
    rows = [{"c": b"abc", "n": i} for i in range(N)]
    back, fmt = exact(rows, transport="network")
    assert fmt == "arrow"
    same(rows, back)


@pytest.mark.parametrize("column, match", [
    ([Atom("ok"), None] * (N // 2), "atoms"),
    ([dt.datetime(2020, 1, 1, tzinfo=UTC), dt.datetime(2020, 1, 1, tzinfo=TOKYO)] * (N // 2), "2 time zones"),
    ([dt.datetime(2020, 1, 1, tzinfo=UTC), dt.datetime(2020, 1, 1)] * (N // 2), "2 time zones"),
    ([dt.datetime(2020, 1, 1, tzinfo=UTC)] * N, "comes back from Arrow as"),
    ([decimal.Decimal("1.5"), decimal.Decimal("2.25")] * (N // 2), r"row 0: decimal 1.5 would come back as 1.50"),
    ([decimal.Decimal("-0")] * N, "would come back as 0"),
    ([{"a": 1}, {"b": 2}] * (N // 2), "lacks keys"),
    ([{b"a": 1}] * N, "not a str"),
    ([{Atom("a"): 1}] * N, "not a str"),
], ids=["atoms", "mixed-zones", "naive-and-aware", "timezone.utc", "decimal-scales", "negative-zero",
        "map-keys-differ", "bytes-keys", "atom-keys"])
def test_columns_arrow_would_change_fall_back(column, match):
    value = {"c": column, "n": list(range(N))}
    back = fallen_back(value, rf"Column 'c'.*{match}")
    same(value, back)


def test_columns_explicit_arrow_keeps_its_documented_conversions():
    """Outside auto the inference table rules: bytes that are UTF-8 become utf8 (BEAM binaries are text)."""
    assert tether.loads(tether.dumps({"c": [b"abc"] * 3}, format="arrow")) == {"c": ["abc"] * 3}


# ---------------------------------------------------------------- 3. values a format claims but cannot encode


CANNOT = {
    "duplicate-labels": (lambda: pd.DataFrame([[1, 2]] * 3, columns=["a", "a"]), r"\['a'\] appear more than once"),
    "mixed-objects": (lambda: pd.DataFrame({"ok": [1, 2], "x": [1, "a"]}), r"column 'x' \(dtype object\)"),
    "complex": (lambda: pd.DataFrame({"z": [1j, 2j]}), r"column 'z' \(dtype complex128\)"),
    "sparse": (lambda: pd.DataFrame({"s": pd.arrays.SparseArray([0, 1])}), r"column 's' \(dtype Sparse"),
    "mixed-index": (lambda: pd.DataFrame({"a": [1, 2]}, index=[1, "a"]), r"index \(dtype object\)"),
    "big-endian-complex": (lambda: {"c": np.ones(N, ">c16")}, r"Column 'c': NumPy dtype complex128"),
    "datetime64-hours": (lambda: {"c": np.zeros(N, "M8[h]")}, r"Column 'c': NumPy dtype datetime64\[h\]"),
}


@pytest.mark.parametrize("name", list(CANNOT))
def test_values_arrow_cannot_encode_fall_back_under_auto(name):
    make, match = CANNOT[name]
    value = make()
    back = fallen_back(value, match)
    if isinstance(value, pd.DataFrame):
        pd.testing.assert_frame_equal(back, value)
    else:
        same(value, back)


@pytest.mark.parametrize("name", list(CANNOT))
def test_values_arrow_cannot_encode_raise_column_error_when_asked_for_arrow(name):
    make, match = CANNOT[name]
    with pytest.raises(tether.ColumnError, match=match) as info:
        tether.dumps(make(), format="arrow")
    assert "format='pickle'" in str(info.value) or "format='ndarray'" in str(info.value)  # the fix is named


def test_polars_int128_falls_back_naming_the_column():
    pl = pytest.importorskip("polars")
    df = pl.DataFrame({"ok": [1, 2], "x": pl.Series([1, 2], dtype=pl.Int128)})
    try:
        df.to_arrow().validate()
        pa.table(df.to_arrow())
    except Exception:  # noqa: BLE001 - this pyarrow cannot import Int128: the case under test
        pass
    else:
        pytest.skip("this pyarrow imports polars' Int128")
    back = fallen_back(df, r"polars column 'x' \(dtype Int128\)")
    assert back.equals(df)
    with pytest.raises(tether.ColumnError, match="polars column 'x'.*cast"):
        tether.dumps(df, format="arrow")


def test_structured_array_with_out_of_order_fields_falls_back_to_pickle():
    dtype = np.dtype({"names": ["a", "b"], "formats": ["u1", "f8"], "offsets": [16, 0], "itemsize": 24})
    value = np.zeros(2, dtype=dtype)
    value["a"], value["b"] = [1, 2], [0.5, 1.5]
    back = fallen_back(value, "out-of-order fields")
    assert tether.last_decision().format == "pickle" and back.dtype == dtype and back.tolist() == value.tolist()
    with pytest.raises(tether.EncodeError, match="out-of-order"):
        tether.dumps(value, format="ndarray")


@pytest.mark.parametrize("unit", ["s", "ns"])
def test_numpy_timedelta_in_a_list_goes_to_pickle_as_a_timedelta_does(unit):
    """etf has no mapping for it (docs/types.md), as for datetime.timedelta: pickle by the documented rule, no
    warning; before, unit ns arrived as the int 5, and unit s fell back on etf's own TypeError."""
    value = [np.timedelta64(5, unit)]
    back, fmt = exact(value)
    assert fmt == "pickle" and "numpy.timedelta64" in tether.last_decision().reason
    assert back == value and back[0].dtype == value[0].dtype


def test_named_fixed_offset_stays_arrow_with_an_equal_zone():
    """Arrow names the zone "+09:00": the display name "JST" is lost, but the zone compares equal (and etf
    would shift the value to UTC, with a LossyConversionWarning)."""
    zone = dt.timezone(dt.timedelta(hours=9), "JST")
    back, fmt = exact({"c": [dt.datetime(2020, 1, 1, tzinfo=zone)] * N})
    assert fmt == "arrow" and back["c"][0].tzinfo == zone and back["c"][0].utcoffset() == zone.utcoffset(None)


# ---------------------------------------------------------------- the dtype record is the frame's word, checked


@pytest.mark.parametrize("recorded, error", [("V8", tether.DecodeError), ("<f8", tether.DecodeError),
                                             ({"x": 1}, tether.DecodeError), ("<U100000", tether.LimitError)])
def test_recorded_dtype_from_a_frame_is_checked(recorded, error):
    table = pa.table({"c": ["ab"] * 3})
    info = {"numpy_columns": ["c"], "numpy_dtypes": {"c": recorded}}
    with pytest.raises(error):
        arrow_format.convert(table, "columns", info, limit=1 << 20)


def test_frames_without_a_dtype_record_read_as_before():
    table = pa.table({"c": pa.array([1.5, None])})
    assert arrow_format.convert(table, "columns", {"numpy_columns": ["c"]}) == {"c": [1.5, None]}
