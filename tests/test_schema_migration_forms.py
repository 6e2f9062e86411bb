"""A migrated table comes back in the form it was written in: the frame's notes on its columns follow them.

A DataFrame or a dict of NumPy columns written under a registered schema
carries notes on its columns (docs/format.md §4: ``type.pandas`` by
position, ``numpy_columns``/``numpy_dtypes`` and Arrow's pandas metadata by
name). A reader that migrates the table (rename, drop, add, a function step)
applies them to the columns they were written for, wherever those end up
(the schema-evolution trial: before, a drop shifted them onto the wrong
columns, a rename lost the index, without a word).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

import tether
from tether import schemas as S

V1 = pa.schema([("legacy", pa.int64()), ("a", pa.string()), ("ts", pa.int64()), ("note", pa.string()),
                ("myidx", pa.int64())])


def _frame() -> tuple[bytes, pd.DataFrame]:
    df = pd.DataFrame({"legacy": [5, 6], "a": pd.Series(["x", None], dtype=object, index=[10, 20]), "ts": [1, 2],
                       "note": pd.Series(["n1", None], dtype="string[python]", index=[10, 20])},
                      index=pd.Index([10, 20], name="myidx"))
    reg = S.Registry()
    reg.register("px", 1, V1)
    return tether.dumps(df, options={"schema": "px", "registry": reg}), df


def _read(frame: bytes, v2: list[tuple[str, pa.DataType]], steps: list) -> pd.DataFrame:
    reg = S.Registry()
    reg.register("px", 1, V1)
    reg.register("px", 2, pa.schema(v2), migrations={1: steps})
    return tether.loads(frame, options={"registry": reg})


def test_a_dropped_column_does_not_shift_the_others_notes():
    frame, df = _frame()
    out = _read(frame, [("a", pa.string()), ("ts", pa.int64()), ("note", pa.string()), ("myidx", pa.int64())],
                [S.drop("legacy")])
    assert out["a"].dtype == object and out["a"].iloc[1] is None
    assert out["note"].dtype == df["note"].dtype and out["note"].iloc[1] is pd.NA


def test_renamed_reordered_and_added_columns_keep_their_forms_and_the_index():
    frame, df = _frame()
    v2 = [("note", pa.string()), ("time", pa.int64()), ("a", pa.string()), ("myidx", pa.int64()),
          ("src", pa.string())]
    steps = [S.drop("legacy"), S.rename("ts", "time"), S.step(lambda t: t.select(["note", "time", "a", "myidx"])),
             S.add("src", pa.string(), "web")]
    out = _read(frame, v2, steps)
    assert list(out.columns) == ["note", "time", "a", "src"] and out.index.name == "myidx"
    assert out.index.tolist() == [10, 20]
    assert out["a"].dtype == object and out["a"].tolist() == ["x", None]
    assert out["note"].dtype == df["note"].dtype and out["time"].tolist() == [1, 2]
    assert out["src"].dtype != object  # added: no note of its own, and none borrowed


def test_a_column_dropped_and_added_again_under_its_name_takes_no_old_note():
    frame, _ = _frame()
    v2 = [("legacy", pa.int64()), ("a", pa.string()), ("ts", pa.int64()), ("note", pa.string()),
          ("myidx", pa.int64())]
    out = _read(frame, v2, [S.drop("a"), S.add("a", pa.string(), "new"),
                            S.step(lambda t: t.select([n for n, _ in v2]))])
    assert out["a"].tolist() == ["new", "new"] and out["a"].dtype != object


def test_numpy_columns_follow_a_rename():
    cols = {"id": np.arange(300, dtype="int32"), "ts": np.array(["2024-01-01"] * 300, dtype="datetime64[s]"),
            "code": np.array(["ab"] * 300, dtype="<U2")}
    r1 = S.Registry()
    v1 = pa.schema([("id", pa.int32()), ("ts", pa.timestamp("s")), ("code", pa.string())])
    r1.register("c", 1, v1)
    frame = tether.dumps(cols, format="arrow", options={"schema": "c", "registry": r1})
    r2 = S.Registry()
    r2.register("c", 1, v1)
    r2.register("c", 2, pa.schema([("id", pa.int32()), ("time", pa.timestamp("s")), ("code", pa.string())]),
                migrations={1: [S.rename("ts", "time")]})
    out = tether.loads(frame, options={"registry": r2})
    assert sorted(out) == ["code", "id", "time"]
    assert out["time"].dtype == np.dtype("datetime64[s]") and out["code"].dtype == np.dtype("<U2")
    np.testing.assert_array_equal(out["time"], cols["ts"])


def test_renames_follow_chains_and_drops():
    reg = S.Registry()
    reg.register("r", 1, pa.schema([("a", pa.int64()), ("b", pa.int64())]))
    reg.register("r", 2, pa.schema([("c", pa.int64()), ("b2", pa.int64())]),
                 migrations={1: [S.rename("a", "x"), S.rename("b", "b2")]})
    reg.register("r", 3, pa.schema([("b2", pa.int64())]), migrations={2: [S.rename("x", "c"), S.drop("c")]})
    assert S.renames("r", 1, registry=reg) == {"a": None, "b": "b2"}
    assert S.renames("r", 1, 2, registry=reg) == {"a": "x", "b": "b2"}


def test_forged_pandas_metadata_on_a_migrated_table_is_ignored_or_a_typed_error():
    import json

    v1 = pa.schema([("a", pa.int64()), ("b", pa.int64())])
    r1, r2 = S.Registry(), S.Registry()
    r1.register("fz", 1, v1)
    r2.register("fz", 1, v1)
    r2.register("fz", 2, pa.schema([("c", pa.int64()), ("b", pa.int64())]), migrations={1: [S.rename("a", "c")]})
    for meta in (b"{not json", json.dumps({"index_columns": 5, "columns": "x"}).encode(),
                 json.dumps({"index_columns": [], "columns": [1, "x", {"field_name": 3}]}).encode()):
        table = pa.table({"a": [1], "b": [2]}).replace_schema_metadata({b"pandas": meta})
        frame = tether.dumps(table, options={"schema": "fz", "registry": r1})
        assert tether.loads(frame, options={"registry": r2}).column_names == ["c", "b"]
        try:
            tether.loads(frame, options={"registry": r2}, into="pandas")
        except tether.TetherError:
            pass


def test_renames_do_not_confuse_an_added_column_with_an_original_of_the_same_name():
    reg = S.Registry()
    reg.register("rn", 1, pa.schema([("a", pa.int64())]))
    reg.register("rn", 2, pa.schema([("b", pa.int64()), ("c", pa.int64())]),
                 migrations={1: [S.rename("a", "b"), S.add("a", pa.int64(), 0), S.rename("a", "c")]})
    assert S.renames("rn", 1, registry=reg) == {"a": "b"}
    reg.register("rn", 3, pa.schema([("c", pa.int64())]), migrations={2: [S.drop("b")]})
    assert S.renames("rn", 1, registry=reg) == {"a": None}
