"""format="auto" falls back for the value's sake only, and says where the value went and why.

A reviewer's cases: a bug in tether's own code became a pickle fallback (and
NumPy timedeltas an int), the FallbackWarning named the format after the first
refusal rather than the one the value ended in (and pointed into tether), NumPy
strings lost what follows a NUL, CategoricalIndex labels made unreadable frames,
and columns of Elixir structs were refused for their atom keys.
"""

from __future__ import annotations

import datetime as dt
import warnings

import numpy as np
import pyarrow as pa
import pytest

import tether
from tether import Atom

pd = pytest.importorskip("pandas")

N = 300  # over the 256 rows from which columnar Python data goes to Arrow


def fallbacks(value, **kw):
    """The frame of ``value`` under format="auto", and the FallbackWarnings it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frame = tether.dumps(value, **kw)
    return frame, [w for w in caught if issubclass(w.category, tether.FallbackWarning)]


# ---------------------------------------------------------------- 1. NumPy time scalars; tether's bugs propagate


@pytest.mark.parametrize("unit", ["s", "ns", "us"])
def test_numpy_timedelta_goes_to_pickle_whole_not_as_an_int(unit):
    value = {"wait": np.timedelta64(5, unit)}
    frame, warned = fallbacks(value)
    assert tether.last_decision().format == "pickle" and not warned  # as datetime.timedelta: no mapping
    back = tether.loads(frame, allow_pickle=True)
    assert back == value and back["wait"].dtype == np.dtype(f"m8[{unit}]")


@pytest.mark.parametrize("value, fix", [(np.timedelta64(5, "ns"), "no duration type"),
                                        (np.datetime64(5, "D"), r"v\.item\(\)")])
def test_etf_refuses_numpy_time_scalars_by_name(value, fix):
    with pytest.raises(tether.MappingError, match=rf"numpy\.{type(value).__name__} at \$\[0\].*{fix}"):
        tether.etf.encode([value])
    with pytest.raises(tether.MappingError, match="no duration type|no mapping"):
        tether.dumps([value], format="etf")


def _in_tether(source: str, name: str):
    """A function defined by ``source`` as if in a tether module: what a bug in tether's code raises from."""
    namespace = {"__name__": "tether._test_bug"}
    exec(source, namespace)  # noqa: S102 - test scaffolding
    return namespace[name]


@pytest.mark.parametrize("source", [
    "def to_table(obj, strict=False):\n    return (1).no_such_attribute\n",
    "def to_table(obj, strict=False):\n    return {}['missing']\n",
    "def to_table(obj, strict=False):\n    return int(obj)\n",
], ids=["AttributeError", "KeyError", "TypeError"])
def test_a_bug_in_tethers_code_propagates_instead_of_falling_back(monkeypatch, source):
    monkeypatch.setattr(tether.arrow, "to_table", _in_tether(source, "to_table"))
    df = pd.DataFrame({"a": [1, 2]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no FallbackWarning either
        with pytest.raises((AttributeError, KeyError, TypeError)) as info:
            tether.dumps(df)
    assert not isinstance(info.value, tether.TetherError)


@pytest.mark.parametrize("error", [pa.ArrowInvalid("bad"), pa.ArrowTypeError("bad"), TypeError("bad"),
                                   ValueError("bad"), OverflowError("bad")],
                         ids=["ArrowInvalid", "ArrowTypeError", "TypeError-in-a-library", "ValueError",
                              "OverflowError"])
def test_a_librarys_error_still_falls_back_with_a_warning(monkeypatch, error):
    def to_table(obj, strict=False):  # this module stands for the library: not tether's code
        raise error

    monkeypatch.setattr(tether.arrow, "to_table", to_table)
    frame, warned = fallbacks(pd.DataFrame({"a": [1, 2]}))
    assert tether.last_decision().format == "pickle" and len(warned) == 1
    assert f"{type(error).__name__}: bad" in str(warned[0].message)
    assert tether.loads(frame, allow_pickle=True).equals(pd.DataFrame({"a": [1, 2]}))


def test_a_value_error_from_numpys_c_code_in_tethers_code_falls_back(monkeypatch):
    fail = _in_tether("import numpy as np\ndef to_table(obj, strict=False):\n    return np.zeros(2).reshape(3)\n",
                      "to_table")
    monkeypatch.setattr(tether.arrow, "to_table", fail)
    _, warned = fallbacks(pd.DataFrame({"a": [1, 2]}))
    assert tether.last_decision().format == "pickle" and "ValueError" in str(warned[0].message)


# ---------------------------------------------------------------- 2. one warning, naming where the value went


def test_the_warning_names_the_final_format_every_refusal_and_the_callers_line():
    df = pd.DataFrame({"ok": [1, 2], "x": [1, "a"]})
    _, warned = fallbacks(df)
    assert len(warned) == 1, [str(w.message) for w in warned]
    message = str(warned[0].message)
    assert message.startswith("Sent as pickle instead of arrow: format arrow failed: DataFrame column 'x'")
    assert "; then format etf failed: Cannot encode pandas.DataFrame" in message
    assert warned[0].filename == __file__  # the caller of tether.dumps, not tether's _api.py
    assert tether.last_decision().format == "pickle"


def test_the_warning_points_at_the_caller_of_every_public_entry():
    df = pd.DataFrame({"ok": [1, 2], "x": [1, "a"]})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bytes(tether.encode(df))
    assert [w.filename for w in caught if w.category is tether.FallbackWarning] == [__file__]


def test_a_one_step_fallback_warns_as_before():
    _, warned = fallbacks({"a": float("nan"), "b": Atom("nan")})
    assert len(warned) == 1 and str(warned[0].message).startswith("Sent as pickle instead of etf: format etf failed")
    assert "; then" not in str(warned[0].message)
    assert warned[0].filename == __file__  # was tether's _api.py (the dumps -> _dumps wrapper)


def test_for_the_beam_the_error_carries_the_arrow_refusal_and_nothing_warns():
    df = pd.DataFrame({"ok": [1, 2], "x": [1, "a"]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(tether.EncodeError) as info:
            tether.dumps(df, reader="beam")
    message = str(info.value)
    assert "reader='beam' cannot read pickle" in message
    assert "arrow could not take the value: DataFrame column 'x'" in message
    assert "then etf could not take the value" in message


# ---------------------------------------------------------------- 3. NumPy strings


@pytest.mark.parametrize("col", [np.array(["a\x00b", "xy"] * (N // 2)), np.array([b"a\x00b", b"xy"] * (N // 2)),
                                 np.array(["\x00\x00z", ""] * (N // 2))], ids=["U", "S", "leading-nuls"])
def test_numpy_strings_keep_an_embedded_nul_in_arrow(col):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        frame = tether.dumps({"c": col})
    assert tether.last_decision().format == "arrow"
    back = tether.loads(frame)["c"]
    assert back.dtype == col.dtype and back.tolist() == col.tolist()
    assert tether.loads(tether.dumps({"c": col}, format="arrow"))["c"].tolist() == col.tolist()


def test_numpy_strings_without_a_nul_still_take_arrows_own_conversion():
    col = np.array(["ab", "c"] * N)[::2]  # a strided view too
    back = tether.loads(tether.dumps({"c": col}))["c"]
    assert tether.last_decision().format == "arrow" and back.dtype == col.dtype and back.tolist() == col.tolist()


def test_numpy_stringdtype_falls_back_under_auto_and_warns_when_asked_for_arrow():
    col = np.array(["a", "bb"] * (N // 2), dtype=np.dtypes.StringDType())
    frame, warned = fallbacks({"c": col})
    assert tether.last_decision().format != "arrow" and "StringDType" in str(warned[0].message)
    back = tether.loads(frame, allow_pickle=True)["c"]
    assert back.dtype == col.dtype and back.tolist() == col.tolist()
    with pytest.warns(tether.LossyConversionWarning, match="object array") as caught:
        tether.dumps({"c": col}, format="arrow")
    assert caught[0].filename == __file__


# ---------------------------------------------------------------- 4. CategoricalIndex column labels


@pytest.mark.parametrize("labels", [["a", "b"], [1, 2]], ids=["str", "int"])
def test_categorical_column_labels_fall_back_under_auto(labels):
    df = pd.DataFrame(np.arange(2 * N).reshape(N, 2), columns=pd.CategoricalIndex(labels))
    frame, warned = fallbacks(df)
    assert tether.last_decision().format == "pickle" and "CategoricalIndex" in str(warned[0].message)
    pd.testing.assert_frame_equal(tether.loads(frame, allow_pickle=True), df)
    with pytest.raises(tether.ColumnError, match=r"CategoricalIndex.*astype\(object\)"):
        tether.dumps(df, format="arrow")  # it would write a frame loads cannot read


# ---------------------------------------------------------------- 5. columns of Elixir structs


DATETIME = {Atom("__struct__"): Atom("Elixir.DateTime"), Atom("year"): 2024, Atom("month"): 1, Atom("day"): 2,
            Atom("hour"): 3, Atom("minute"): 4, Atom("second"): 5, Atom("microsecond"): (0, 6),
            Atom("time_zone"): b"Etc/UTC", Atom("zone_abbr"): b"UTC", Atom("utc_offset"): 0, Atom("std_offset"): 0,
            Atom("calendar"): Atom("Elixir.Calendar.ISO")}


@pytest.mark.parametrize("struct, back", [(DATETIME, "ZoneInfo('UTC')"),
                                          ({Atom("__struct__"): Atom("Elixir.MyApp.User"), Atom("id"): 1}, "without __struct__")])
def test_a_column_of_structs_is_refused_as_structs_not_for_its_keys(struct, back):
    value = {"at": [None] + [struct] * N}
    frame, warned = fallbacks(value)
    message = str(warned[0].message)
    assert f"Column 'at' row 1: an Elixir struct ({struct[Atom('__struct__')]}" in message and back in message
    assert "is not a str" not in message
    assert tether.last_decision().format == "etf"
    assert tether.loads(frame) == tether.loads(tether.dumps(value, format="etf"))  # as etf reads structs


def test_explicit_arrow_still_converts_datetime_structs():
    table = tether.loads(tether.dumps({"at": [DATETIME] * 3}, format="arrow"), into="arrow")
    assert table.column("at")[0].as_py() == dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize("value, fmt", [
    (np.array([1, "a"], dtype=object), "ndarray"),
    ([1], "scalar"),
    (np.int64(1), "scalar"),
    (memoryview(np.zeros((0, 3))), "raw"),
])
def test_a_format_named_by_the_caller_refuses_with_a_typed_error(value, fmt):
    # The bug check sent tether's own deliberate refusals (raised as TypeError) out bare.
    with pytest.raises(tether.EncodeError):
        tether.dumps(value, format=fmt)


def test_an_empty_multi_dimensional_view_is_a_typed_error_under_auto():
    with pytest.raises(tether.EncodeError, match=r"empty 2-d view"):
        tether.dumps(memoryview(np.zeros((0, 3))))


def test_lossy_conversion_warnings_point_at_the_callers_line_whichever_way_in(tmp_path):
    # Fixed stacklevels were right for tether.dumps only: tether.encode and a stream writer got the caller's caller.
    import scipy.sparse as sp

    from tether.stream import StreamWriter

    dok = sp.random(20, 20, density=0.1, format="dok", random_state=1)
    with pytest.warns(tether.LossyConversionWarning) as caught:
        tether.dumps(dok)
        tether.encode(dok)
        with open(tmp_path / "s.tthr", "wb") as sink, StreamWriter(sink) as writer:
            writer.write(dok)
    assert [w.filename for w in caught] == [__file__] * 3, [(w.filename, w.lineno) for w in caught]
