"""Registering a type name again keeps the migrations and downgrades of the earlier registration, or says why not."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pytest

import tether
from races import race
from tether import Atom, types

NAME = "test.Reg"


@dataclass
class Reg:
    x: float
    y: float
    z: float = 0.0


def _up_1_2(w):  # v1: {"lon", "lat"}; v2: {"x", "y"}
    return {"x": w["lon"], "y": w["lat"]}


def _up_2_3(w):  # v3 adds z
    return {**w, "z": 0.0}


def _down_2_1(w):
    return {"lon": w["x"], "lat": w["y"]}


def _down_3_2(w):
    return {"x": w["x"], "y": w["y"]}


@pytest.fixture(autouse=True)
def clean():
    types.unregister_type(NAME)
    yield
    types.unregister_type(NAME)


def _v1():
    return types.wire(NAME, 1, {"lon": 4.0, "lat": 5.0})


def test_registering_the_same_version_again_without_migrations_keeps_them():
    types.register_type(Reg, name=NAME, version=2, migrations={1: _up_1_2}, downgrades={2: _down_2_1})
    spec = types.register_type(Reg, name=NAME, version=2, decode=lambda w: Reg(w["x"] * 10, w["y"]))
    assert (spec.oldest_readable, spec.oldest_writable) == (1, 1)
    assert tether.loads(tether.dumps(_v1())) == Reg(40.0, 5.0)  # the new decoder, after the kept migration
    frame = tether.dumps(Reg(1.0, 2.0), options={"versions": {"types": {NAME: 1}}})  # the kept downgrade
    types.unregister_type(NAME)
    assert tether.loads(frame)[Atom("value")] == {"lon": 1.0, "lat": 2.0}


def test_a_newer_version_adds_its_step_to_the_earlier_chain(caplog):
    types.register_type(Reg, name=NAME, version=2, migrations={1: _up_1_2}, downgrades={2: _down_2_1})
    with caplog.at_level(logging.DEBUG, logger="tether.types"):
        spec = types.register_type(Reg, name=NAME, version=3, migrations={2: _up_2_3}, downgrades={3: _down_3_2})
    assert sorted(spec.migrations) == [1, 2] and sorted(spec.downgrades) == [2, 3]
    assert spec.migrations[1] is _up_1_2 and spec.migrations[2] is _up_2_3
    assert (spec.oldest_readable, spec.oldest_writable) == (1, 1)
    assert tether.loads(tether.dumps([_v1(), types.wire(NAME, 2, {"x": 1.0, "y": 2.0})])) == [
        Reg(4.0, 5.0, 0.0), Reg(1.0, 2.0, 0.0)]
    assert any("keeps the migrations [1]" in r.getMessage() for r in caplog.records)


def test_a_step_passed_again_replaces_the_earlier_one():
    types.register_type(Reg, name=NAME, version=3, migrations={1: _up_1_2, 2: _up_2_3})
    types.register_type(Reg, name=NAME, version=3, migrations={1: lambda w: {"x": -1.0, "y": -1.0}})
    assert tether.loads(tether.dumps(_v1())) == Reg(-1.0, -1.0, 0.0)


def test_a_new_class_under_the_same_name_keeps_the_steps():
    types.register_type(Reg, name=NAME, version=2, migrations={1: _up_1_2})

    @dataclass
    class Reg2:  # a reloaded module's class: a new object under the same name
        x: float
        y: float

    types.register_type(Reg2, name=NAME, version=2)
    assert tether.loads(tether.dumps(_v1())) == Reg2(4.0, 5.0)
    assert types.lookup(Reg(1.0, 2.0)) is None  # the old class no longer encodes as the name


def test_a_lower_version_keeps_only_the_steps_below_it():
    types.register_type(Reg, name=NAME, version=3, migrations={1: _up_1_2, 2: _up_2_3},
                        downgrades={3: _down_3_2, 2: _down_2_1})
    spec = types.register_type(Reg, name=NAME, version=2, decode=lambda w: Reg(w["x"], w["y"]))
    assert list(spec.migrations) == [1] and list(spec.downgrades) == [2]
    assert tether.loads(tether.dumps(_v1())) == Reg(4.0, 5.0)


@pytest.mark.parametrize("kind, earlier, later, missing, step", [
    ("migrations", {"migrations": {1: _up_1_2}}, {}, [2], "2: <step 2 -> 3>"),
    ("downgrades", {"downgrades": {2: _down_2_1}}, {"migrations": {2: _up_2_3}}, [3], "3: <step 3 -> 2>"),
])
def test_steps_that_would_not_chain_are_refused_with_how_to_pass_them(kind, earlier, later, missing, step):
    first = types.register_type(Reg, name=NAME, version=2, **earlier)
    with pytest.raises(types.TypeRegistrationError) as info:
        types.register_type(Reg, name=NAME, version=3, **later)
    err = info.value
    assert isinstance(err, tether.ValidationError) and isinstance(err, tether.TetherError)
    assert (err.name, err.kind, err.missing) == (NAME, kind, missing)
    msg = str(err)
    assert f"{kind}={{{step}}}" in msg and f"unregister_type('{NAME}')" in msg and "version 2" in msg
    assert types.get(NAME) is first  # the refused call changed nothing
    types.unregister_type(NAME)  # the documented way to start afresh
    spec = types.register_type(Reg, name=NAME, version=3, **later)
    assert spec.oldest_readable == (3 if kind == "migrations" else 2)


def test_a_gap_between_kept_and_given_steps_is_refused():
    types.register_type(Reg, name=NAME, version=3, migrations={1: _up_1_2, 2: _up_2_3})
    with pytest.raises(types.TypeRegistrationError, match=r"migrations=\{3: <step 3 -> 4>\}") as info:
        types.register_type(Reg, name=NAME, version=5, migrations={4: lambda w: w})
    assert info.value.missing == [3]
    spec = types.register_type(Reg, name=NAME, version=5, migrations={3: lambda w: w, 4: lambda w: w})
    assert list(spec.migrations) == [1, 2, 3, 4] and spec.oldest_readable == 1


def test_without_an_earlier_registration_nothing_changes():
    spec = types.register_type(Reg, name=NAME, version=3, migrations={2: _up_2_3})
    assert spec.oldest_readable == 2
    with pytest.raises(types.TypeVersionError, match="migrates from version 2 up to 3"):
        tether.loads(tether.dumps(_v1()))


def test_the_registration_error_pickles_with_its_fields():
    import pickle

    class Thing:
        pass

    types.register_type(Thing, name="t.Pickled", version=3, migrations={1: lambda d: d, 2: lambda d: d})
    with pytest.raises(types.TypeRegistrationError) as raised:
        types.register_type(Thing, name="t.Pickled", version=5, migrations={4: lambda d: d})
    back = pickle.loads(pickle.dumps(raised.value))  # a process pool hands errors back pickled
    assert (str(back), back.name, back.kind, back.missing) == (str(raised.value), "t.Pickled", "migrations", [3])
    types.unregister_type("t.Pickled")


def test_readers_on_other_threads_meet_no_half_changed_registry():
    @dataclass
    class Churn:
        x: float

    class Sub(Reg):  # found by the walk over the registered classes, not by its own class
        pass

    names = [f"test.Many{n}" for n in range(30)]  # more to iterate over, more chances to meet a change
    for name in names:
        types.register_type(type(name.replace(".", "_"), (), {}), name=name, version=1)
    types.register_type(Reg, name=NAME, version=1)

    def change():
        types.register_type(Churn, name="test.Churn", version=1)
        types.unregister_type("test.Churn")

    try:
        # Before: a RuntimeError, a dict changed during iteration.
        assert race(change, lambda: (types.versions(), types.lookup(Sub(1.0, 2.0))), 20_000) == []
    finally:
        for name in (*names, NAME):
            types.unregister_type(name)
