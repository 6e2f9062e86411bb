"""tether's own formats evolve: schema versions, chained migrations on read, golden frames of every version.

The ``ticks`` test format (tests/evolution_format.py) has real v1, v2 and v3
layouts; tests/golden/evolution/ holds a frame of each, written once by
tests/evolution_goldens.py.
"""

from __future__ import annotations

import hashlib
import pathlib

import numpy as np
import pytest

import tether
from evolution_format import Ticks, TicksFormat, TicksV1, TicksV2, use
from evolution_goldens import GOLDENS, VALUE, VALUE_LONG, VALUE_V2
from tether.formats import Format
from tether.formats._base import Migrated, Migration

GOLDEN = pathlib.Path(__file__).parent / "golden" / "evolution"

# Written once; a changed hash means a golden was regenerated, which is never allowed.
PINNED = {
    "ticks_v1": "5a997bfe3accea0ce28507bc9347ad87f8324f698c37b99a04d491f74dcb4953",
    "ticks_v2": "0200d658175b94b32f22fa2bdd0d8904b827ade9ba5914e1cb49de1684f23e65",
    "ticks_v2_zstd": "8cd75a5066f1f40be3eeaaf1e518a6fa1997136164d3bbace5a0bf21eecda35f",
    "ticks_v3": "eda362c4754206906d0d5036d2200e2acd062096574489c47afab0896b8ba23a",
}


@pytest.fixture(autouse=True)
def current_reader():
    use(TicksFormat)
    yield
    use(TicksFormat)


def golden(name: str) -> bytes:
    return (GOLDEN / f"{name}.tthr").read_bytes()


@pytest.mark.parametrize("name", sorted(PINNED))
def test_goldens_are_never_regenerated(name):
    assert set(PINNED) == set(GOLDENS)
    assert hashlib.sha256(golden(name)).hexdigest() == PINNED[name]


@pytest.mark.parametrize(("name", "version", "value"), [
    ("ticks_v1", 1, VALUE), ("ticks_v2", 2, VALUE_V2), ("ticks_v2_zstd", 2, VALUE_LONG), ("ticks_v3", 3, VALUE_V2),
])
def test_every_version_reads_as_the_current_value(name, version, value):
    frame = golden(name)
    assert tether.inspect(frame).schema_version == version
    assert tether.loads(frame) == value


def test_v1_chains_both_steps():
    info = tether.inspect(golden("ticks_v1")).type
    assert info == {"n": 5}
    migrated = TicksFormat().migrate(dict(info), 1)
    assert type(migrated) is Migrated and migrated.written_under == 1
    assert dict(migrated) == {"count": 5, "unit": "ms", "encoding": "delta"}
    assert len(migrated.pending) == 2  # int32 → int64, then delta encoding
    raw = np.asarray(VALUE.values, "<i4").tobytes()
    out = np.frombuffer(TicksFormat().upgrade_payload(memoryview(raw), migrated), "<i8")
    assert out.tolist() == [VALUE.values[0], *np.diff(VALUE.values).tolist()]
    assert not migrated.pending  # payload steps run once
    assert TicksFormat().upgrade_payload(b"x", migrated) == b"x"


def test_current_version_is_not_migrated():
    info = {"count": 1, "unit": "s", "encoding": "delta"}
    assert TicksFormat().migrate(info, 3) is info


def test_a_newer_frame_names_both_versions_and_the_side_to_upgrade():
    frame = golden("ticks_v3")
    use(TicksV2)
    with pytest.raises(tether.UnsupportedVersionError) as exc:
        tether.loads(frame)
    msg = str(exc.value)
    assert "schema version 3" in msg and "1 to 2" in msg and "Upgrade tether on the reading side" in msg


class TicksV5(TicksFormat):
    """A future reader that dropped v1 and v2 (allowed from schema 5: it keeps 3 and 4)."""

    schema_version = 5
    oldest_readable = 3
    migrations = {3: Migration(), 4: Migration(type_info=lambda t: {**t, "zone": "UTC"})}

    def decode(self, payload, type_info, ctx):
        assert type_info["zone"] == "UTC"
        return super().decode(payload, type_info, ctx)


def test_too_old_a_frame_says_to_re_encode_it():
    use(TicksV5)
    assert tether.loads(golden("ticks_v3")) == VALUE_V2  # a step that changes nothing, then one that does
    with pytest.raises(tether.UnsupportedVersionError, match=r"older than the oldest this tether migrates \(3\)"):
        tether.loads(golden("ticks_v2"))


def test_a_missing_step_names_it():
    class Gap(TicksFormat):
        schema_version = 4
        migrations = {1: TicksFormat.migrations[1], 2: TicksFormat.migrations[2]}

    use(Gap)
    with pytest.raises(tether.UnsupportedVersionError, match=r"no migration from schema 3 to 4.*migrations\[3\]"):
        tether.loads(golden("ticks_v3"))


def test_a_format_must_keep_two_previous_versions():
    with pytest.raises(TypeError, match="oldest_readable=2"):
        class Forgetful(Format):  # noqa: F841
            id, name, schema_version, oldest_readable = 241, "forgetful", 3, 2


def test_builtin_formats_read_their_window():
    for fmt in tether.formats.registry:
        assert fmt.oldest_readable <= max(1, fmt.schema_version - 2), fmt.name


def test_writer_refuses_a_schema_its_reader_cannot_read():
    fmt = TicksFormat()
    fmt.check_reader_versions({"versions": {"formats": {"ticks": [1, 3]}}})
    fmt.check_reader_versions({"versions": {"formats": {"etf": [1, 1]}}})  # not listed: not checked
    fmt.check_reader_versions({"versions": {"formats": {"ticks": {"oldest_readable": 1, "schema_version": 3}}}})
    with pytest.raises(tether.ValidationError, match="reads ticks schemas 1 to 2.*Upgrade tether on the reading side"):
        fmt.check_reader_versions({"versions": {"formats": {"ticks": [1, 2]}}})
    with pytest.raises(tether.ValidationError, match="Upgrade tether on the writing side"):
        fmt.check_reader_versions({"versions": {"formats": {"ticks": [4, 6]}}})
    with pytest.raises(tether.ValidationError, match="Upgrade tether on the reading side"):
        fmt.check_reader_versions({"versions": {"formats": {"ticks": {"oldest_readable": 1, "schema_version": 2}}}})


def test_round_trip_at_the_current_version():
    value = Ticks((5, 3, 10**15), "ns")
    frame = tether.dumps(value, format="ticks")
    assert tether.inspect(frame).schema_version == 3
    assert tether.loads(frame) == value


def test_old_writers_are_still_what_they_were():
    # The v1 writer keeps its layout: its frame reads back through the current reader.
    use(TicksV1)
    frame = tether.dumps(Ticks((1, 2, 3)), format="ticks")
    use(TicksFormat)
    assert tether.inspect(frame).type == {"n": 3}
    assert tether.loads(frame) == Ticks((1, 2, 3))


def test_payload_step_output_is_checked_by_decode():
    class Broken(TicksFormat):
        migrations = {1: Migration(type_info=lambda t: {"count": t["n"] * 4, "unit": "ms"},
                                   payload=lambda p, t: bytes(p)),
                      2: TicksFormat.migrations[2]}

    use(Broken)
    with pytest.raises(tether.DecodeError):
        tether.loads(golden("ticks_v1"))


def test_damaged_old_type_info_is_a_decode_error():
    with pytest.raises(tether.DecodeError, match=r"migrations\[1\].type_info \(the .* schema 1 to 2\) failed: KeyError"):
        TicksFormat().migrate({"count": 3}, 1)


def _ticks_with(step: Migration) -> TicksFormat:
    class Stepped(TicksFormat):
        migrations = {**TicksFormat.migrations, 1: step}

    return Stepped()


@pytest.mark.parametrize("type_info, said", [
    (lambda info: 1 / 0, r"failed: ZeroDivisionError"),
    (lambda info: info.nope, r"failed: AttributeError"),
    (lambda info: None, r"returned a NoneType: it must return the new type information"),
    (lambda info: [("count", 1)], r"returned a list"),
])
def test_a_type_info_step_that_fails_is_named_by_format_versions_and_step(type_info, said):
    fmt = _ticks_with(Migration(type_info=type_info))
    with pytest.raises(tether.DecodeError, match=r"Stepped.migrations\[1\].type_info \(the ticks schema 1 to 2\) " + said):
        fmt.migrate({"n": 3}, 1)


@pytest.mark.parametrize("payload", [lambda p, info: 1 / 0, lambda p, info: None])
def test_a_payload_step_that_fails_is_named_too(payload):
    fmt = _ticks_with(Migration(type_info=TicksFormat.migrations[1].type_info, payload=payload))
    info = fmt.migrate({"n": 1}, 1)
    with pytest.raises(tether.DecodeError, match=r"Stepped.migrations\[1\].payload \(the ticks schema 1 to 2\) failed"):
        fmt.upgrade_payload(b"\0\0\0\0", info)


@pytest.mark.parametrize("steps", [{1: {"type_info": None}}, {1: lambda info: info}, {"1": Migration()}, [Migration()]])
def test_migrations_that_are_not_migration_steps_are_refused_at_registration(steps):
    class Bad(TicksFormat):
        id, name, migrations = 243, "bad-steps", steps

    with pytest.raises(tether.ValidationError, match="migrations"):
        tether.formats.register(Bad)
    assert "bad-steps" not in tether.formats.names()


@pytest.mark.parametrize("version", ["2", 2.5, True])
def test_a_schema_version_that_is_not_an_int_is_refused_at_registration_not_at_definition(version):
    class Odd(Format):
        id, name, schema_version = 244, "odd-version", version

    with pytest.raises(tether.ValidationError, match="schema_version must be an int"):
        tether.formats.register(Odd)
