"""Registered table schemas: versions, chained migrations on read, validation, negotiation with an older reader."""

from __future__ import annotations

import pyarrow as pa
import pytest

import tether
from races import race
from tether import schemas as S

V1 = pa.schema([("id", pa.int32()), ("ts", pa.int64()), ("score", pa.float32())])
V3 = pa.schema([("id", pa.int64()), ("time", pa.int64()), ("score", pa.float64()), ("source", pa.string())])
STEPS = {
    1: [S.add("source", pa.string(), default="web")],
    2: [S.rename("ts", "time"), S.widen("id", pa.int32(), pa.int64()), S.widen("score", pa.float32(), pa.float64())],
}


def registry(version: int, schema: pa.Schema, migrations=None) -> S.Registry:
    reg = S.Registry()
    reg.register("events", version=version, schema=schema, migrations=migrations)
    return reg


def v1_table(n: int = 4) -> pa.Table:
    return pa.table({"id": pa.array(range(n), pa.int32()), "ts": pa.array(range(100, 100 + n), pa.int64()),
                     "score": pa.array([0.5] * n, pa.float32())}, schema=V1)


def v1_frame(table: pa.Table | None = None) -> bytes:
    return tether.dumps(v1_table() if table is None else table, options={"schema": "events", "registry": registry(1, V1)})


def test_unregister_forgets_every_version_and_frames_then_read_unmigrated():
    reg = registry(3, V3, STEPS)
    reg.register("events", version=1, schema=V1)
    assert [s.version for s in reg.unregister("events")] == [1, 3]
    assert reg.get("events") is None and reg.versions() == {}
    out = tether.loads(v1_frame(), options={"registry": reg})
    assert out.schema == V1
    assert S.unregister("no-such-schema") == []


def test_readers_on_other_threads_meet_no_half_changed_registry():
    reg = registry(1, V1)
    for n in range(50):  # more to iterate over, more chances to meet a change
        reg.register(f"s{n}", version=1, schema=V1)

    def change():
        reg.register("churn", version=1, schema=V1)
        reg.unregister("churn")

    # Before: a RuntimeError (a dict changed during iteration), or max() of a name with no version yet.
    assert race(change, reg.versions, 50_000) == []


def test_an_old_frame_migrates_through_every_step():
    out = tether.loads(v1_frame(), options={"registry": registry(3, V3, STEPS)})
    assert out.schema == V3
    assert out.to_pydict() == {"id": [0, 1, 2, 3], "time": [100, 101, 102, 103], "score": [0.5] * 4,
                               "source": ["web"] * 4}


def test_frames_name_their_schema_and_inspect_shows_it_structurally():
    schema = pa.schema([pa.field("id", pa.int64(), nullable=False), ("name", pa.string())])
    reg = registry(2, schema, {1: S.add("name", pa.string())})
    frame = tether.dumps(pa.table({"id": [1, 2], "name": ["a", None]}, schema=schema),
                         options={"schema": "events", "registry": reg})
    info = tether.inspect(frame)
    named = info.type["table_schema"]
    assert named == {"name": "events", "version": 2, "fingerprint": S.fingerprint(schema)}
    assert info.details["fields"] == [{"name": "id", "type": "int64", "nullable": False},
                                      {"name": "name", "type": "string", "nullable": True}]
    assert "events v2" in str(info) and "'nullable': False" in str(info)


def _addresses(table: pa.Table, column: str) -> list[int]:
    return [buf.address for chunk in table.column(column).chunks for buf in chunk.buffers() if buf is not None]


def test_added_and_renamed_columns_stay_zero_copy():
    reg = registry(3, pa.schema([("id", pa.int32()), ("time", pa.int64()), ("score", pa.float32()),
                                 ("source", pa.string())]),
                   {1: S.add("source", pa.string(), "web"), 2: S.rename("ts", "time")})
    frame = v1_frame(v1_table(10_000))
    base = pa.py_buffer(frame).address
    out = tether.loads(frame, options={"registry": reg})
    for column in ("id", "time", "score"):
        addrs = _addresses(out, column)
        assert addrs and all(base <= a < base + len(frame) for a in addrs), column
    assert out.column("source").to_pylist()[:2] == ["web", "web"]
    assert not any(base <= a < base + len(frame) for a in _addresses(out, "source"))


def test_widen_string_drop_and_function_steps():
    v1 = pa.schema([("name", pa.string()), ("legacy", pa.int8()), ("cents", pa.int64())])
    v4 = pa.schema([("name", pa.large_string()), ("euros", pa.float64())])
    reg = registry(4, v4, {
        1: S.widen("name", pa.string(), pa.large_string()),
        2: S.drop("legacy"),
        3: S.step(lambda t: t.append_column("euros", pa.compute.divide(t.column("cents").cast(pa.float64()), 100.0))
                  .drop_columns(["cents"])),
    })
    table = pa.table({"name": ["a", "b"], "legacy": pa.array([1, 2], pa.int8()), "cents": [150, 275]}, schema=v1)
    frame = tether.dumps(table, options={"schema": "events", "registry": registry(1, v1)})
    out = tether.loads(frame, options={"registry": reg})
    assert out.schema == v4 and out.to_pydict() == {"name": ["a", "b"], "euros": [1.5, 2.75]}


def test_an_impossible_step_names_column_types_and_the_migration_to_register():
    odd = pa.schema([("id", pa.string()), ("ts", pa.int64()), ("score", pa.float32())])
    frame = tether.dumps(pa.table({"id": ["x"], "ts": [1], "score": pa.array([1.0], pa.float32())}, schema=odd),
                         options={"schema": "events", "registry": registry(1, odd)})
    with pytest.raises(S.MigrationError) as exc:
        tether.loads(frame, options={"registry": registry(3, V3, STEPS)})
    msg = str(exc.value)
    assert "'events' v2→v3" in msg and "column 'id' is string, not int32" in msg and "int64" in msg
    assert "migrations={2: [tether.schemas.step(fn)]}" in msg
    assert isinstance(exc.value, tether.DecodeError)


def test_validation_lists_every_mismatch():
    schema = pa.schema([pa.field("id", pa.int32(), nullable=False), ("name", pa.string()), ("price", pa.float64())])
    table = pa.table({"id": pa.array([1, 2, None, 2**40], pa.int64()), "price": ["1.5", "x", "2", "3"],
                      "extra": [1, 2, 3, 4]})
    with pytest.raises(S.SchemaMismatchError) as exc:
        S.validate(table, schema)
    got = {(m.column, m.expected, m.found, m.row) for m in exc.value.mismatches}
    assert got == {
        ("id", "int32", "int64", 3),            # 2**40 is the first value int32 cannot hold
        ("id", "int32 not null", "int64 with 1 nulls", 2),
        ("name", "string", "missing", None),
        ("price", "double", "string", 1),       # "x" is the first that does not parse
        ("extra", "absent", "int64", None),
    }
    msg = str(exc.value)
    assert "5 mismatches" in msg and "first at row 3" in msg and "'extra'" in msg


def test_writing_validates_against_the_registered_schema():
    reg = registry(3, V3, STEPS)
    with pytest.raises(S.SchemaMismatchError, match="'time'.*missing"):
        tether.dumps(v1_table(), options={"schema": "events", "registry": reg})
    with pytest.raises(tether.ValidationError, match="names no registered table schema"):
        tether.dumps(v1_table(), options={"schema": "nope", "registry": reg})


def test_a_newer_frame_than_the_reader_knows_says_to_upgrade_the_reader():
    frame = tether.dumps(S.migrate(v1_table(), "events", 1, registry=registry(3, V3, STEPS)),
                         options={"schema": "events", "registry": registry(3, V3, STEPS)})
    older = registry(2, V1.append(pa.field("source", pa.string())), {1: STEPS[1]})
    with pytest.raises(tether.UnsupportedVersionError, match=r"'events' v3; this reader knows 'events' up to v2"):
        tether.loads(frame, options={"registry": older})


def test_negotiation_writes_the_newest_version_the_older_reader_reads():
    writer = registry(3, V3, STEPS)
    reader = registry(2, V1.append(pa.field("source", pa.string())), {1: STEPS[1]})  # one release behind
    current = S.migrate(v1_table(), "events", 1, registry=writer)
    frame = tether.dumps(current, options={"schema": "events", "registry": writer,
                                           "versions": reader.capabilities()})
    assert tether.inspect(frame).type["table_schema"]["version"] == 2
    out = tether.loads(frame, options={"registry": reader})
    assert out.column_names == ["id", "ts", "score", "source"] and out.column("id").type == pa.int32()
    # The same frame still reads as v3 on the writer's side.
    assert tether.loads(frame, options={"registry": writer}).equals(current)


def test_negotiation_fails_saying_which_side_to_upgrade():
    writer = registry(3, pa.schema([("id", pa.int64())]), {1: S.drop("legacy"), 2: S.widen("id", pa.int32(), pa.int64())})
    with pytest.raises(S.DowngradeError, match=r"v2→v1, step drop\('legacy'\): a dropped column cannot come back"
                       r".*Upgrade the reader"):
        tether.dumps(pa.table({"id": [1]}), options={"schema": "events", "registry": writer,
                                                      "versions": {"schemas": {"events": 1}}})
    with pytest.raises(S.DowngradeError, match=r"int32 cannot hold \(first at row 1\).*Upgrade the reader"):
        tether.dumps(pa.table({"id": [1, 2**40]}), options={"schema": "events", "registry": writer,
                                                             "versions": {"schemas": {"events": 2}}})
    with pytest.raises(tether.ValidationError, match="reads arrow schemas 0 to 0.*Upgrade tether on the reading side"):
        tether.dumps(pa.table({"id": [1]}), format="arrow", options={"versions": {"formats": {"arrow": [0, 0]}}})


def test_function_steps_go_down_only_with_a_down_function():
    up = S.step(lambda t: t.rename_columns({"a": "b"}), down=lambda t: t.rename_columns({"b": "a"}))
    reg = registry(2, pa.schema([("b", pa.int64())]), {1: up})
    frame = tether.dumps(pa.table({"b": [1]}), options={"schema": "events", "registry": reg,
                                                         "versions": {"schemas": {"events": 1}}})
    assert tether.loads(frame).column_names == ["a"]  # the default registry does not know "events"
    assert tether.loads(frame, options={"registry": reg}).column_names == ["b"]


def test_registration_is_checked():
    with pytest.raises(tether.ValidationError, match="keyed by the version they upgrade from, 1 to 1"):
        S.Registry().register("x", version=2, schema=pa.schema([]), migrations={2: S.drop("a")})
    with pytest.raises(tether.ValidationError, match=r"add\('n'\): default 'x' is not a int64"):
        S.add("n", pa.int64(), "x")
    with pytest.raises(tether.ValidationError, match="not a widening"):
        S.widen("a", pa.int64(), pa.int32())
    with pytest.raises(tether.ValidationError, match="pyarrow.Schema"):
        S.register("x", version=1, schema={"a": "int"})
    with pytest.raises(tether.UnsupportedVersionError, match="no migration from version 1 to 2"):
        S.migrate(pa.table({"a": [1]}), "gap", 1, registry=_gap())


def _gap() -> S.Registry:
    reg = S.Registry()
    reg.register("gap", version=2, schema=pa.schema([("a", pa.int64())]))
    return reg


def test_module_registry_and_capabilities():
    S.register("test-schemas-module", version=2, schema=pa.schema([("n", pa.int64())]),
               migrations={1: S.widen("n", pa.int32(), pa.int64())})
    assert S.versions()["test-schemas-module"] == 2
    caps = S.capabilities()
    assert caps["schemas"]["test-schemas-module"] == 2
    assert caps["formats"]["arrow"] == [1, 1] and caps["formats"]["ndarray"] == [1, 1]
    frame = tether.dumps(pa.table({"n": [7]}), options={"schema": "test-schemas-module",
                                                        "versions": {"schemas": {"test-schemas-module": 1}}})
    assert tether.inspect(frame).details["fields"][0]["type"] == "int32"  # written for a v1 reader
    assert tether.loads(frame).column("n").to_pylist() == [7]
    assert tether.loads(frame).column("n").type == pa.int64()  # read back here as v2


def test_a_malformed_versions_map_is_a_validation_error():
    reg = registry(3, V3, STEPS)
    current = S.migrate(v1_table(), "events", 1, registry=reg)
    with pytest.raises(tether.ValidationError, match=r"\['schemas'\]\['events'\] must be the newest version"):
        tether.dumps(current, options={"schema": "events", "registry": reg, "versions": {"schemas": {"events": "2"}}})
    with pytest.raises(tether.ValidationError, match=r"\['formats'\]\['arrow'\] must be \[oldest, newest\]"):
        tether.dumps(current, format="arrow", options={"versions": {"formats": {"arrow": "1"}}})


def test_public_functions_given_wrong_values_raise_validation_errors_naming_the_argument():
    table, schema = pa.table({"a": [1]}), pa.schema([("a", pa.int64())])
    reg = S.Registry()
    reg.register("wrong", version=2, schema=schema, migrations={1: S.rename("b", "a")})
    cases = [
        (lambda: reg.register("x", version=2, schema=schema, migrations=[S.drop("a")]), "migrations must be a dict"),
        (lambda: reg.register("x", version=2, schema=schema, migrations={1: 5}), r"migrations\[1\] must be steps"),
        (lambda: S.add("c", "int64"), r"add\('c'\): a column type is a pyarrow.DataType"),
        (lambda: S.rename(5, "b"), "rename: a column name is a non-empty str, got 5"),
        (lambda: S.widen("a", "int32", "int64"), "a column type is a pyarrow.DataType"),
        (lambda: S.drop(None), "drop: a column name"),
        (lambda: S.step(5), "step: up must be a function"),
        (lambda: S.fingerprint({"a": 1}), "fingerprint: schema must be a pyarrow.Schema, got dict"),
        (lambda: S.describe(5), "describe: schema must be a pyarrow.Schema"),
        (lambda: S.migrate(table, "wrong", "1", registry=reg), "from_version must be an int"),
        (lambda: S.migrate(table, "wrong", 1, "2", registry=reg), "to_version must be an int"),
        (lambda: S.migrate({"a": [1]}, "wrong", 1, registry=reg), "migrate: table must be a pyarrow.Table, got dict"),
        (lambda: S.mismatches(table, 5), "mismatches: schema must be a pyarrow.Schema"),
        (lambda: S.validate([1], schema), "validate: table must be a pyarrow.Table, got list"),
        (lambda: S.capabilities(5), "registry must be a tether.schemas.Registry or None"),
    ]
    for call, needle in cases:
        with pytest.raises(tether.ValidationError, match=needle):
            call()
    assert S.migrate(pa.table({"b": [1]}), "wrong", 1, registry=reg).column_names == ["a"]


def _three_versions(reg, steps_2_to_3):
    reg.register("ev3", 1, pa.schema([("a", pa.int64()), ("legacy", pa.int64())]))
    reg.register("ev3", 2, pa.schema([("a", pa.int64())]), migrations={1: [S.drop("legacy")]})
    reg.register("ev3", 3, pa.schema([("a", pa.int64()), ("b", pa.int64())]), migrations={2: steps_2_to_3})


def test_a_downgrade_error_names_the_readers_version_and_the_writers():
    reg = S.Registry()
    _three_versions(reg, [S.add("b", pa.int64(), 0)])
    table = pa.table({"a": [1], "b": [2]})
    with pytest.raises(S.DowngradeError) as exc:
        tether.dumps(table, options={"schema": "ev3", "registry": reg, "versions": {"schemas": {"ev3": 1}}})
    said = str(exc.value)
    assert "v2→v1, step drop('legacy')" in said and "reads 'ev3' up to v1, and this table is v3" in said
    assert "register 'ev3' v3 there" in said


def test_a_missing_step_on_the_way_down_is_a_downgrade_error_not_an_unreadable_frame():
    down_gap = S.Registry()
    down_gap.register("ev3", 3, pa.schema([("a", pa.int64()), ("b", pa.int64())]))  # no steps at all
    with pytest.raises(S.DowngradeError, match=r"no migration from v2 to v3 registered here.*up to v2"):
        tether.dumps(pa.table({"a": [1], "b": [2]}),
                     options={"schema": "ev3", "registry": down_gap, "versions": {"schemas": {"ev3": 2}}})


@pytest.mark.parametrize("version", [0, -1, 2**31, 2**64, True, 1.0])
def test_a_schema_version_outside_what_both_runtimes_keep_is_refused(version):
    with pytest.raises(tether.ValidationError, match=r"version must be an int from 1 to 2147483647"):
        S.Registry().register("big", version, pa.schema([("a", pa.int64())]))


@pytest.mark.parametrize("small, wide", [("uint8", "int16"), ("uint16", "int32"), ("uint32", "int64")])
def test_unsigned_to_a_wider_signed_int_is_a_widening_and_narrows_back_only_when_it_fits(small, wide):
    reg = S.Registry()
    reg.register("u", 1, pa.schema([("n", getattr(pa, small)())]))
    reg.register("u", 2, pa.schema([("n", getattr(pa, wide)())]),
                 migrations={1: [S.widen("n", getattr(pa, small)(), getattr(pa, wide)())]})
    top = 2 ** (8 * getattr(pa, small)().byte_width) - 1
    up = S.migrate(pa.table({"n": pa.array([0, top], getattr(pa, small)())}), "u", 1, registry=reg)
    assert up.column("n").to_pylist() == [0, top] and up.schema.field("n").type == getattr(pa, wide)()
    assert S.migrate(up, "u", 2, 1, registry=reg).schema.field("n").type == getattr(pa, small)()
    with pytest.raises(S.DowngradeError, match="cannot hold"):
        S.migrate(pa.table({"n": pa.array([-1], getattr(pa, wide)())}), "u", 2, 1, registry=reg)
