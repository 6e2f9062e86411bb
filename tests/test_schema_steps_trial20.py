"""Schema steps run for a reader (widen narrowing floats, function steps failing) and malformed reader versions."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

import tether
from tether import schemas as S


def _float_registries(narrow: pa.DataType, wide: pa.DataType) -> tuple[S.Registry, S.Registry]:
    new = S.Registry()
    new.register("m", 2, pa.schema([("x", wide)]), {1: [S.widen("x", narrow, wide)]})
    old = S.Registry()
    old.register("m", 1, pa.schema([("x", narrow)]))
    return new, old


def _dump_for_old(values: list, narrow: pa.DataType = pa.float32(), wide: pa.DataType = pa.float64()):
    new, old = _float_registries(narrow, wide)
    table = pa.table({"x": pa.array(values, wide)})
    frame = tether.dumps(table, options={"schema": "m", "registry": new, "versions": old.capabilities()})
    return frame, old


# ------------------------------------------------------------------ widen undone: floats must fit exactly


@pytest.mark.parametrize("bad, shown", [
    (1e300, "inf"),                 # finite overflows to inf
    (-1e39, "-inf"),
    (16777217.0, "16777216.0"),     # 2**24 + 1: float32 rounds it
    (0.1, "0.10000000149011612"),
    (1e-50, "0.0"),                 # underflows to zero
])
def test_narrowing_a_float_that_does_not_come_back_equal_is_a_downgrade_error(bad, shown):
    with pytest.raises(S.DowngradeError) as info:
        _dump_for_old([0.5, bad])
    msg = str(info.value)
    assert "Schema 'm' v2→v1" in msg and "widen('x', 'float', 'double')" in msg and "column 'x'" in msg
    assert f"first at row 1): {bad!r} would read as {shown}" in msg
    assert "Upgrade the reader" in msg


def test_floats_that_fit_narrow_exactly_nan_and_infinities_included():
    values = [0.5, None, math.nan, math.inf, -math.inf, -0.0, 16777216.0, float(np.finfo(np.float32).max)]
    frame, old = _dump_for_old(values)
    assert tether.inspect(frame).type["table_schema"]["version"] == 1
    got = tether.loads(frame, options={"registry": old}).column("x")
    assert got.type == pa.float32()
    out = got.to_pylist()
    assert out[:2] == [0.5, None] and math.isnan(out[2]) and out[3:5] == [math.inf, -math.inf]
    assert math.copysign(1, out[5]) == -1 and out[6:] == values[6:]


@pytest.mark.parametrize("narrow, wide, bad", [
    (pa.float16(), pa.float32(), 70000.0),   # over float16's 65504: inf
    (pa.float16(), pa.float64(), 0.1),
])
def test_halffloat_narrowing_checks_the_same_way(narrow, wide, bad):
    with pytest.raises(S.DowngradeError, match=rf"column 'x'.*halffloat cannot hold exactly \(first at row 1\)"):
        _dump_for_old([0.5, bad], narrow, wide)
    frame, old = _dump_for_old([0.5, 2.0], narrow, wide)
    assert tether.loads(frame, options={"registry": old}).column("x").to_pylist() == [0.5, 2.0]


def test_migrate_down_checks_floats_too():
    new, _ = _float_registries(pa.float32(), pa.float64())
    with pytest.raises(S.DowngradeError, match="first at row 0"):
        S.migrate(pa.table({"x": pa.array([1e300], pa.float64())}), "m", 2, 1, registry=new)


def test_an_integer_that_does_not_fit_names_its_value():
    reg = S.Registry()
    reg.register("n", 2, pa.schema([("id", pa.int64())]), {1: [S.widen("id", pa.int32(), pa.int64())]})
    with pytest.raises(S.DowngradeError, match=r"int32 cannot hold \(first at row 2\): 1099511627776"):
        S.migrate(pa.table({"id": [1, 2, 2**40]}), "n", 2, 1, registry=reg)


# ------------------------------------------------------------------ function steps that fail


def _v1_frame() -> bytes:
    v1 = S.Registry()
    v1.register("g", 1, pa.schema([("a", pa.int64())]))
    return tether.dumps(pa.table({"a": [1]}), options={"schema": "g", "registry": v1})


def test_a_function_step_that_raises_on_read_is_a_migration_error_naming_schema_versions_and_step():
    def up(t):
        raise KeyError("a")

    reg = S.Registry()
    reg.register("g", 2, pa.schema([("b", pa.int64())]), {1: [S.step(up)]})
    with pytest.raises(S.MigrationError) as info:
        tether.loads(_v1_frame(), options={"registry": reg})
    msg = str(info.value)
    assert "Schema 'g' v1→v2" in msg and "step(" in msg and "up)" in msg and "raised KeyError: 'a'" in msg
    assert isinstance(info.value.__cause__, KeyError)
    assert isinstance(info.value, tether.DecodeError)


def test_a_function_step_returning_no_table_on_read_is_a_migration_error():
    reg = S.Registry()
    reg.register("g", 2, pa.schema([("b", pa.int64())]), {1: [S.step(lambda t: None)]})
    with pytest.raises(S.MigrationError, match=r"v1→v2, step step\([\w.<>]*lambda>\): its function returned NoneType"):
        tether.loads(_v1_frame(), options={"registry": reg})


def _down_registry(down) -> S.Registry:
    reg = S.Registry()
    reg.register("g", 2, pa.schema([("b", pa.int64())]),
                 {1: [S.step(lambda t: t.rename_columns(["b"]), down=down)]})
    return reg


def test_a_down_function_returning_no_table_is_a_downgrade_error_naming_the_step():
    opts = {"schema": "g", "registry": _down_registry(lambda t: None), "versions": {"schemas": {"g": 1}}}
    with pytest.raises(S.DowngradeError, match=r"'g' v2→v1, step step\([\w.<>]*lambda>\): its down= function returned "
                                               r"NoneType, not a pyarrow.Table"):
        tether.dumps(pa.table({"b": [1]}), options=opts)


def test_a_down_function_that_raises_is_a_downgrade_error_with_the_original_error():
    def down(t):
        raise ValueError("no way back")

    opts = {"schema": "g", "registry": _down_registry(down), "versions": {"schemas": {"g": 1}}}
    with pytest.raises(S.DowngradeError, match="its down= function raised ValueError: no way back") as info:
        tether.dumps(pa.table({"b": [1]}), options=opts)
    assert isinstance(info.value.__cause__, ValueError)


def test_a_rename_onto_a_column_already_there_is_a_migration_error():
    v1 = S.Registry()
    v1.register("r", 1, pa.schema([("ts", pa.int64()), ("time", pa.int64())]))
    frame = tether.dumps(pa.table({"ts": [1], "time": [2]}), options={"schema": "r", "registry": v1})
    reg = S.Registry()
    reg.register("r", 2, pa.schema([("time", pa.int64())]), {1: [S.rename("ts", "time")]})
    with pytest.raises(S.MigrationError, match=r"'r' v1→v2, step rename\('ts', 'time'\): column 'time' is already"):
        tether.loads(frame, options={"registry": reg})


# ------------------------------------------------------------------ options["versions"] that is not a mapping


@pytest.mark.parametrize("value", [b"x", {"a": 1}, np.arange(3), pa.table({"a": [1]})])
@pytest.mark.parametrize("versions, where", [
    ([1], r"options\['versions'\] must be a dict, got list"),
    ({"formats": [1]}, r"options\['versions'\]\['formats'\] must be a dict, got list"),
])
def test_reader_versions_that_are_not_a_mapping_are_a_validation_error(value, versions, where):
    with pytest.raises(tether.ValidationError, match=where + r".*tether.schemas.capabilities\(\)"):
        tether.dumps(value, options={"versions": versions})


def test_reader_schema_versions_that_are_not_a_mapping_are_a_validation_error():
    reg = S.Registry()
    reg.register("p", 1, pa.schema([("a", pa.int64())]))
    with pytest.raises(tether.ValidationError, match=r"options\['versions'\]\['schemas'\] must be a dict"):
        tether.dumps(pa.table({"a": [1]}), options={"schema": "p", "registry": reg, "versions": {"schemas": [1]}})
    with pytest.raises(tether.ValidationError, match=r"options\['versions'\] must be a dict"):
        S.for_write(pa.table({"a": [1]}), {"schema": "p", "registry": reg, "versions": "p"})


@pytest.mark.parametrize("versions", [None, {}, {"formats": None, "schemas": None}, {"formats": {}}])
def test_empty_reader_versions_still_write(versions):
    assert tether.loads(tether.dumps(b"x", options={"versions": versions})) == b"x"
    tether.formats.get("arrow").check_reader_versions({"versions": versions})
