"""Versioned user types (tether.types): wire form, migrations, downgrades, failures and their fallbacks."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import pytest

import tether
from races import race
from tether import Atom, etf, types


@dataclass
class Point:
    x: float
    y: float
    z: float = 0.0


def _v1_to_v2(w):  # v1: {"lon", "lat"}; v2: {"x", "y"}
    return {"x": w["lon"], "y": w["lat"]}


def _v2_to_v3(w):  # v3 adds z
    return {**w, "z": 0.0}


@pytest.fixture
def point():
    spec = types.register_type(Point, name="test.Point", version=3, migrations={1: _v1_to_v2, 2: _v2_to_v3},
                               downgrades={3: lambda w: {"x": w["x"], "y": w["y"]},
                                           2: lambda w: {"lon": w["x"], "lat": w["y"]}})
    yield spec
    types.unregister_type("test.Point")


def test_wire_form_is_the_documented_tether_type_struct(point):
    term = etf.decode(etf.encode(Point(1.0, 2.0, 3.0)), structs=False)
    assert term == {Atom("__struct__"): Atom("Elixir.Tether.Type"), Atom("name"): b"test.Point",
                    Atom("version"): 3, Atom("value"): {Atom("x"): 1.0, Atom("y"): 2.0, Atom("z"): 3.0}}
    assert all(type(k) is Atom for k in term[Atom("value")])  # fields are atoms, as an Elixir struct's


def test_round_trip_nested_at_the_current_version(point):
    value = {"a": [1, Point(1.5, 2.5, 3.5)], "b": (Point(0.0, 0.0),)}
    assert tether.loads(tether.dumps(value)) == value
    assert tether.last_decision().format == "etf"
    assert tether.loads(tether.dumps(Point(1.0, 2.0))) == Point(1.0, 2.0)  # a lone instance picks etf too
    assert tether.last_decision().format == "etf"


def test_chained_migrations_over_three_versions(point, caplog):
    old = types.wire("test.Point", 1, {"lon": 4.0, "lat": 5.0})
    with caplog.at_level(logging.DEBUG, logger="tether.types"):
        got = tether.loads(tether.dumps([old, types.wire("test.Point", 2, {"x": 1.0, "y": 2.0})]))
    assert got == [Point(4.0, 5.0, 0.0), Point(1.0, 2.0, 0.0)]
    steps = [r.getMessage() for r in caplog.records if r.name == "tether.types"]
    assert "migrate test.Point from version 1 to 2" in steps
    assert "migrate test.Point from version 2 to 3" in steps
    assert any(s.startswith("decoded test.Point version 1") for s in steps)


def test_a_newer_version_than_known_names_the_type_both_versions_and_what_to_upgrade(point):
    frame = tether.dumps({"rows": [types.wire("test.Point", 4, {"x": 1})]})
    with pytest.raises(types.TypeVersionError) as info:
        tether.loads(frame)
    msg = str(info.value)
    assert "test.Point" in msg and "version 4" in msg and "up to version 3" in msg and "Upgrade" in msg
    assert "$.rows[0]" in msg
    assert (info.value.name, info.value.found, info.value.known) == ("test.Point", 4, 3)
    assert isinstance(info.value, tether.UnsupportedVersionError)


def test_older_than_the_oldest_migration_is_a_typed_error():
    types.register_type(Point, name="test.Point", version=3, migrations={2: _v2_to_v3})
    try:
        with pytest.raises(types.TypeVersionError, match="migrates from version 2 up to 3"):
            tether.loads(tether.dumps(types.wire("test.Point", 1, {"lon": 1, "lat": 2})))
    finally:
        types.unregister_type("test.Point")


def test_downgrade_for_a_reader_that_knows_an_older_version(point, caplog):
    frame = tether.dumps([Point(1.0, 2.0, 9.0)], options={"versions": {"types": {"test.Point": 1}}})
    assert tether.loads(frame) == [Point(1.0, 2.0, 0.0)]  # this reader migrates it back up (z is lost)
    types.unregister_type("test.Point")  # read it as it was written
    term = tether.loads(frame)[0]
    assert term[Atom("version")] == 1 and term[Atom("value")] == {"lon": 1.0, "lat": 2.0}


def test_a_reader_newer_than_the_writer_gets_the_writers_version(point):
    frame = tether.dumps(Point(1.0, 2.0), options={"versions": {"types": {"test.Point": 7}}})
    types.unregister_type("test.Point")
    assert tether.loads(frame)[Atom("version")] == 3


def test_a_reader_too_old_to_downgrade_to_is_an_error_not_a_fallback():
    types.register_type(Point, name="test.Point", version=3, migrations={1: _v1_to_v2, 2: _v2_to_v3},
                        downgrades={3: lambda w: w})
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(types.TypeDowngradeError, match=r"up to version 1.*downgrades only to 2.*Upgrade"):
                tether.dumps({"p": Point(1, 2)}, options={"versions": {"types": {"test.Point": 1}}})
    finally:
        types.unregister_type("test.Point")


class Broken:
    def __init__(self, n):
        self.n = n


def _explode(value):
    raise ZeroDivisionError("no encoding today")


@pytest.fixture
def broken():
    types.register_type(Broken, name="test.Broken", encode=_explode)
    yield
    types.unregister_type("test.Broken")


def test_a_failing_type_encoder_falls_back_with_a_warning_that_names_it(broken, caplog):
    with caplog.at_level(logging.DEBUG, logger="tether.types"):
        with pytest.warns(tether.FallbackWarning, match=r"test\.Broken encode failed.*ZeroDivisionError: no encoding"):
            frame = tether.dumps({"a": [1, 2, Broken(3)]})
    decision = tether.last_decision()
    assert decision.format == "pickle" and decision.fallback_from == "etf"
    assert tether.loads(frame, allow_pickle=True)["a"][2].n == 3
    assert any("fall back from etf to pickle" in r.getMessage() for r in caplog.records if r.name == "tether.types")


def test_a_failing_type_encoder_for_the_beam_is_an_error_naming_it(broken):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning about a fallback that does not happen
        with pytest.raises(tether.EncodeError, match=r"reader='beam' cannot read pickle.*test\.Broken.*\$\.a\[2\]"):
            tether.dumps({"a": [1, 2, Broken(3)]}, reader="beam")


def test_with_an_explicit_format_the_error_names_the_path(broken):
    with pytest.raises(types.TypeEncodeError, match=r"at \$\.a\[2\]\.b: ZeroDivisionError") as info:
        tether.dumps({"a": [0, 1, {"b": Broken(1)}]}, format="etf")
    assert info.value.path == "$.a[2].b" and info.value.serializer == "test.Broken encode"


class Thing:
    pass


def test_a_failing_struct_mapping_no_longer_becomes_pickle_silently():
    def from_python(value):
        raise KeyError("missing")

    etf.register_struct("Test.Thing", python_type=Thing, from_python=from_python)
    with pytest.warns(tether.FallbackWarning, match=r"Elixir\.Test\.Thing from_python failed.*KeyError"):
        tether.dumps([Thing()])
    assert tether.last_decision().format == "pickle"
    with pytest.raises(tether.MappingError, match=r"at \$\[0\]: KeyError"):
        tether.dumps([Thing()], format="etf")


class Spot:
    def __init__(self, x):
        self.x = x


def test_unregister_struct_undoes_both_directions_and_keeps_tethers_own():
    etf.register_struct("Test.Spot", python_type=Spot, to_python=lambda d: Spot(d["x"]),
                        from_python=lambda s: {"x": s.x})
    data = etf.encode(Spot(3))
    assert etf.decode(data).x == 3
    assert etf.unregister_struct("Test.Spot") is True
    # Decoded as the map it is on the wire; the Python type no longer encodes as the struct.
    assert etf.decode(data) == {etf.Atom("__struct__"): etf.Atom("Elixir.Test.Spot"), etf.Atom("x"): 3}
    with pytest.raises(tether.TetherError):
        etf.encode(Spot(3))
    assert etf.unregister_struct("Test.Spot") is False
    with pytest.raises(tether.ValidationError, match="Elixir.MapSet is one of tether's own"):
        etf.unregister_struct("MapSet")
    assert etf.decode(etf.encode({1, 2})) == {1, 2}


def test_unregistering_a_mapping_that_took_a_type_over_gives_the_type_back():
    import decimal

    etf.register_struct("Test.Money", python_type=decimal.Decimal, to_python=lambda d: d,
                        from_python=lambda v: {"amount": str(v)})
    assert etf.decode(etf.encode(decimal.Decimal("1.5")))[etf.Atom("__struct__")] == "Elixir.Test.Money"
    assert etf.unregister_struct("Test.Money")
    assert etf.decode(etf.encode(decimal.Decimal("1.5"))) == decimal.Decimal("1.5")  # tether's own Elixir.Decimal


def test_encoders_on_other_threads_meet_no_half_changed_registry():
    import decimal

    class Cents(decimal.Decimal):  # found by the isinstance walk over the registered types, not by its own type
        pass

    def change():
        etf.register_struct("Test.Churn", python_type=Spot, from_python=lambda s: {"x": s.x})
        etf.unregister_struct("Test.Churn")

    # Before: a RuntimeError, a dict changed during iteration.
    assert race(change, lambda: etf.encode(Cents("2.5")), 20_000) == []


def test_a_value_with_no_mapping_still_goes_to_pickle_without_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tether.dumps({"k": object()})
    assert tether.last_decision().format == "pickle"


def test_an_unregistered_type_stays_a_map_and_encodes_back_unchanged():
    data = etf.encode(types.wire("test.Unknown", 2, {"a": 1}))
    value = tether.loads(tether.dumps(types.wire("test.Unknown", 2, {"a": 1})))
    assert value[Atom("name")] == "test.Unknown" and value[Atom("version")] == 2
    assert etf.encode(value) == data
    assert etf.encode(etf.decode(data)) == data


def test_migration_and_decoder_failures_are_decode_errors(point):
    types.register_type(Point, name="test.Point", version=3, migrations={1: lambda w: 1 / 0, 2: _v2_to_v3})
    with pytest.raises(tether.DecodeError, match=r"migration 1 -> 2 step failed: ZeroDivisionError"):
        tether.loads(tether.dumps(types.wire("test.Point", 1, {"lon": 1})))
    with pytest.raises(tether.DecodeError, match="needs a binary name, an integer version"):
        etf.decode(etf.encode({Atom("__struct__"): Atom("Elixir.Tether.Type"), Atom("name"): 5}))


@pytest.mark.parametrize("kwargs, match", [
    ({"cls": dict, "name": "x"}, "class of your own"),
    ({"cls": Point, "name": ""}, "non-empty str"),
    ({"cls": Point, "name": "x", "version": 0}, "1 or more"),
    ({"cls": Point, "name": "x", "version": 3, "migrations": {1: _v1_to_v2}}, "without gaps"),
    ({"cls": Point, "name": "x", "version": 3, "migrations": {3: _v1_to_v2}}, "keyed by the version"),
    ({"cls": Point, "name": "x", "version": 3, "downgrades": {2: _v1_to_v2}}, "without gaps"),
])
def test_registration_is_validated(kwargs, match):
    cls = kwargs.pop("cls")
    with pytest.raises(tether.ValidationError, match=match):
        types.register_type(cls, **kwargs)


def test_versions_lists_what_this_process_reads(point):
    assert types.versions()["test.Point"] == 3
    assert types.get("test.Point").oldest_readable == 1 and types.get("test.Point").oldest_writable == 1


@dataclass
class Segment:
    a: Point
    b: Point
    tags: tuple


def test_the_c_encoder_takes_typed_terms_and_writes_the_python_encoders_bytes(point):
    import datetime

    from tether import _etf, _structs
    from tether._etf import encoder

    types.register_type(Segment, name="test.Segment")
    try:
        values = [
            [Point(1.0, 2.0), {"k": (Point(3.0, 4.0), [Segment(Point(0.0, 1.0), Point(2.0, 3.0), ("x", 1))])}],
            {"when": datetime.date(2024, 1, 2), "p": Point(5.0, 6.0)},  # the date keeps the Python encoder busy
            (1, "a", [2.5, None, True]),  # nothing typed: the same object goes on
        ]
        for value in values:
            out = bytearray((131,))
            encoder.encode_into(out, value, _etf.Options(), _etf.BINARY, _structs.convert)
            assert _etf.encode(value) == bytes(out)
        typed = values[0]
        if _etf.native.c is not None:  # with the C encoder built, it writes the typed term: no Python encoder
            real, encoder.encode_into = encoder.encode_into, None
            try:
                assert _etf.encode(typed) == _etf.encode(values[0])
            finally:
                encoder.encode_into = real
        assert tether.loads(tether.dumps(typed)) == typed
        assert types.get("test.Segment") is not None and isinstance(typed[0], Point)  # the input is not changed
    finally:
        types.unregister_type("test.Segment")


class _Loop:
    pass


def test_an_encoder_that_returns_its_own_type_is_a_typed_error():
    types.register_type(_Loop, name="test.LoopSelf", version=1, encode=lambda v: v, decode=lambda w: _Loop())
    was = tether.get_limits()
    tether.set_limits(max_depth=2_000)  # without the check, the encoder nests until this limit
    try:
        for encode in (tether.etf.encode, lambda v: tether.dumps(v, format="etf")):
            with pytest.raises(types.TypeEncodeError, match="returned a _Loop at .* plain data") as info:
                encode({"k": [_Loop()]})
            assert info.value.path == "$.k[0]"
    finally:
        tether.set_limits(was)
        types.unregister_type("test.LoopSelf")


def test_paths_are_rendered_only_for_messages(monkeypatch):
    # An encoder that nests its own type: each level converts one value. Rendering the path for
    # every conversion made this quadratic (13 s at 10,000 levels); now only the error renders one.
    from tether._etf import encoder

    rendered = []
    real = encoder.epath
    monkeypatch.setattr(encoder, "epath", lambda stack: rendered.append(1) or real(stack))
    types.register_type(_Loop, name="test.LoopNest", version=1, encode=lambda v: {"me": v}, decode=lambda w: _Loop())
    was = tether.get_limits()
    tether.set_limits(max_depth=5_000)
    try:
        with pytest.raises(tether.EncodeError, match=r"Nesting deeper than 5000 at \$\.value\.me\.value"):
            tether.etf.encode(_Loop())
    finally:
        tether.set_limits(was)
        types.unregister_type("test.LoopNest")
    assert len(rendered) <= 2


def test_registration_lookups_given_wrong_values_raise_validation_errors():
    class Thing:
        pass

    with pytest.raises(tether.ValidationError,
                       match=r"register_type\(.test.Thing.\): migrations must be a dict of version"):
        types.register_type(Thing, name="test.Thing", version=2, migrations=[lambda w: w])
    with pytest.raises(tether.ValidationError, match=r"A type name is a str such as 'acme.Point', got \[\]"):
        types.get([])
    assert types.get("test.Thing") is None


class _Pt:
    def __init__(self, x):
        self.x = x


def test_the_c_path_pre_walk_renders_no_path_for_values_that_convert(monkeypatch):
    # With the C encoder, user-type values are converted by prepare's pre-walk, which hands each one its
    # path: rendering it for every value (O(depth) each) is work no message needs.
    import sys

    prepare = sys.modules["tether._etf.prepare"]
    rendered = []
    real = prepare._render
    monkeypatch.setattr(prepare, "_render", lambda where: rendered.append(1) or real(where))
    types.register_type(_Pt, name="test.PrepPt", version=1, encode=lambda p: {"x": p.x}, decode=lambda w: _Pt(w["x"]))
    try:
        term = {"rows": [{"p": _Pt(i)} for i in range(200)]}
        assert [r["p"].x for r in tether.loads(tether.dumps(term, format="etf"))["rows"]] == list(range(200))
    finally:
        types.unregister_type("test.PrepPt")
    assert rendered == []


def test_the_default_decoder_takes_binary_keys_as_elixirs_does():
    # An Elixir type whose to_wire writes %{"label" => ...}: its keys read in Python as bytes.
    @dataclass
    class Tag:
        label: bytes
        weight: int

    types.register_type(Tag, name="test.BinaryKeyed", version=1)
    try:
        frame = tether.dumps(types.wire("test.BinaryKeyed", 1, {b"label": b"ml", b"weight": 3}), format="etf")
        assert tether.loads(frame) == Tag(b"ml", 3)
    finally:
        types.unregister_type("test.BinaryKeyed")


@pytest.mark.parametrize("version", [0, -1])
def test_a_version_below_one_is_named_as_no_writers(version):
    @dataclass
    class V:
        a: int

    types.register_type(V, name="test.VersionFloor", version=2, migrations={1: lambda w: w})
    try:
        frame = tether.dumps(types.wire("test.VersionFloor", version, {"a": 1}), format="etf")
        with pytest.raises(types.TypeVersionError, match=r"version -?\d, which no writer makes"):
            tether.loads(frame)
    finally:
        types.unregister_type("test.VersionFloor")
