"""Fuzzing tether.types.register_type: names registered again, frames written under one registration read under another.

A state machine registers and unregisters a small pool of names and classes
with random versions, migrations, downgrades and encoders (valid or not),
writes frames (as a registered writer, through downgrades, or as an older
writer's wire term) and reads every stored frame back under whatever is
registered now. A model built from the documented rules (register_type's
docstring, docs/types.md "Versioned types") says what each call and each read
must give: the value, migrated step by step through the steps the model says
were kept or replaced, or the typed error naming the type and what to do.

The tests at the end pin the defects the fuzzing found (D1-D7), fixed in
tether.types: each failed before its fix.
"""

from __future__ import annotations

import datetime
import itertools
import warnings
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import tether
from tether import Atom, etf, types

NAMES = ("fz.A", "fz.B", "fz.C")
MAX_VERSION = 6
_tags = itertools.count(1000)  # tags above 255 keep a trail a list on the wire, never a charlist


@dataclass
class K0:
    x: int
    t: list = field(default_factory=list)


@dataclass
class K1:
    x: int
    t: list = field(default_factory=list)


@dataclass
class K2:
    x: int
    t: list = field(default_factory=list)


CLASSES = (K0, K1, K2)


class Step:
    """A migration or downgrade step that leaves its tag in the wire term's trail, so a read shows which steps ran."""

    def __init__(self, fails: bool = False):
        self.tag, self.fails = next(_tags), fails

    def __call__(self, w: Any) -> dict:
        if self.fails:
            raise ValueError(f"step {self.tag} refuses")
        return {"x": w["x"], "t": [*w["t"], self.tag]}

    def __repr__(self) -> str:
        return f"Step({self.tag}{', fails' if self.fails else ''})"


class Boom(Exception):
    pass


def _raises(what: str) -> Any:
    def fn(_: Any) -> Any:
        raise Boom(what)

    return fn


def _codec(kind: str, cls: type) -> tuple[Any, Any]:
    """encode and decode for ``kind``: defaults, explicit equivalents, raising ones, one that loops, or not callable."""
    if kind == "default":
        return None, None
    if kind == "explicit":
        return (lambda v: {"x": v.x, "t": list(v.t)}), (lambda w: cls(w["x"], list(w["t"])))
    if kind == "encode_raises":
        return _raises("encode"), None
    if kind == "encode_self":
        return (lambda v: v), None
    if kind == "decode_raises":
        return None, _raises("decode")
    return 5, None  # "noncallable"


CODECS = ("default", "explicit", "encode_raises", "encode_self", "decode_raises", "noncallable")


@st.composite
def steps(draw: Any, lo: int, hi: int) -> dict | None:
    """Steps keyed ``lo..hi`` (the valid keys): none, a chain up to ``hi``, or any keys (often invalid or gapped)."""
    shape = draw(st.sampled_from(("none", "empty", "chain", "chain", "chain", "any")))
    if shape == "none":
        return None
    if shape == "empty" or hi < lo:
        return {} if shape != "any" else draw(st.dictionaries(st.integers(-1, MAX_VERSION + 1), st.just(Step())))
    if shape == "chain":
        start = draw(st.integers(lo, hi))
        return {k: Step(fails=draw(st.integers(0, 15)) == 0) for k in range(start, hi + 1)}
    keys = st.one_of(st.integers(-1, MAX_VERSION + 1), st.sampled_from((True, 2.0, "2")))
    values = st.one_of(st.builds(Step), st.just(5))
    return draw(st.dictionaries(keys, values, max_size=5))


@st.composite
def register_args(draw: Any) -> dict:
    """Arguments for one register_type call; mostly valid, sometimes not."""
    odd = st.sampled_from((False,) * 24 + (True,))  # one call in 25 gets an invalid class, name or version
    cls = draw(st.sampled_from((dict, int, 5, "K0"))) if draw(odd) else draw(st.sampled_from(CLASSES))
    name = draw(st.sampled_from(("", "Elixir.fz.A", 3, None))) if draw(odd) else draw(st.sampled_from(NAMES))
    version = draw(st.sampled_from((0, -1, True, 2.0))) if draw(odd) else draw(st.integers(1, MAX_VERSION))
    v = version if type(version) is int else 1
    return {
        "cls": cls, "name": name, "version": version,
        "migrations": draw(steps(1, v - 1)), "downgrades": draw(steps(2, v)),
        "codec": draw(st.sampled_from(CODECS[:2] * 8 + CODECS[2:])),
    }


@dataclass
class Reg:
    """The model of one registration."""

    spec: types.UserType
    cls: type
    version: int
    ups: dict
    downs: dict
    codec: str

    @property
    def oldest_readable(self) -> int:
        return min(self.ups, default=self.version)

    @property
    def oldest_writable(self) -> int:
        return min(self.downs) - 1 if self.downs else self.version


UNKNOWN = object()  # a class whose encoding the model does not predict (see test_a_name_taken_by_a_new_class_...)


def _bad_keys(steps: Any, wanted: range) -> bool:
    return any(type(k) is not int or k not in wanted or not callable(f) for k, f in (steps or {}).items())


def _merge(old: Reg | None, kind: str, given: dict, version: int) -> tuple[dict, list, bool]:
    """The steps a registration holds after this call (the earlier ones it keeps plus the given), the gaps, and
    whether any were kept: the documented rule."""
    wanted = range(1, version) if kind == "migrations" else range(2, version + 1)
    earlier = {} if old is None else old.ups if kind == "migrations" else old.downs
    kept = {v: f for v, f in earlier.items() if v in wanted and v not in given}
    merged = {**kept, **given}
    missing = [v for v in range(min(merged), wanted.stop) if v not in merged] if merged else []
    return merged, missing, bool(kept)


def expected_outcome(regs: dict, a: dict) -> tuple[str, Any]:
    """("ok", (ups, downs)) or (error class name, detail) for a register_type call, from the documented rules."""
    cls, name, version = a["cls"], a["name"], a["version"]
    if not isinstance(cls, type) or issubclass(cls, (dict, int)):
        return "ValidationError", "class"
    if not isinstance(name, str) or not name or name.startswith("Elixir."):
        return "ValidationError", "name"
    if type(version) is not int or version < 1:
        return "ValidationError", "version"
    if a["codec"] == "noncallable":
        return "ValidationError", "encode"
    out = {}
    for kind, given, wanted in (("migrations", a["migrations"], range(1, version)),
                                ("downgrades", a["downgrades"], range(2, version + 1))):
        if _bad_keys(given, wanted):
            return "ValidationError", kind
        merged, missing, kept = _merge(regs.get(name), kind, dict(given or {}), version)
        if missing:
            return ("TypeRegistrationError", (kind, missing)) if kept else ("ValidationError", kind)
        out[kind] = merged
    return "ok", (out["migrations"], out["downgrades"])


def expected_read(reg: Reg | None, name: str, v: int, wire: dict) -> tuple[str, Any]:
    """What reading a stored frame (``name`` at version ``v``, value ``wire``) gives under ``reg``."""
    if reg is None:
        return "map", None
    if v > reg.version or v < reg.oldest_readable:
        return "TypeVersionError", None
    w = wire
    for u in range(v, reg.version):
        if reg.ups[u].fails:
            return "DecodeError", f"migration {u} -> {u + 1}"
        w = reg.ups[u](w)
    if reg.codec == "decode_raises":
        return "DecodeError", f"decoder of type {name}"
    return "value", reg.cls(w["x"], list(w["t"]))


class RegisterMachine(RuleBasedStateMachine):
    """Any sequence of register/unregister calls, writes and reads, checked against the model."""

    def __init__(self) -> None:
        super().__init__()
        self.regs: dict[str, Reg] = {}
        self.by_cls: dict[type, Any] = {}  # class -> the name it encodes as (UNKNOWN: not predicted)
        self.frames: list[tuple[bytes, str, int, dict]] = []

    @initialize()
    def start_clean(self) -> None:
        for name in NAMES:
            types.unregister_type(name)

    def teardown(self) -> None:
        for name in NAMES:
            types.unregister_type(name)

    @rule(a=register_args())
    def register(self, a: dict) -> None:
        self._register(a)

    @precondition(lambda self: self.regs)
    @rule(data=st.data(), up=st.booleans(), down=st.booleans())
    def next_version(self, data: st.DataObject, up: bool, down: bool) -> None:
        """The documented upgrade: the same name at the next version, passing only the new version's steps."""
        name = data.draw(st.sampled_from(sorted(self.regs)))
        reg = self.regs[name]
        self._register({"cls": reg.cls, "name": name, "version": reg.version + 1, "codec": reg.codec,
                        "migrations": {reg.version: Step()} if up else None,
                        "downgrades": {reg.version + 1: Step()} if down else None})

    def _register(self, a: dict) -> None:
        before = {n: types.get(n) for n in NAMES}
        want, detail = expected_outcome(self.regs, a)
        cls = a["cls"] if isinstance(a["cls"], type) else K0
        encode, decode = _codec(a["codec"], cls)
        try:
            spec = types.register_type(a["cls"], name=a["name"], version=a["version"], encode=encode, decode=decode,
                                       migrations=a["migrations"], downgrades=a["downgrades"])
        except tether.TetherError as exc:
            event(f"register: {type(exc).__name__} ({detail if isinstance(detail, str) else detail[0]})")
            assert type(exc).__name__ == want, (want, detail, exc)
            assert all(types.get(n) is before[n] for n in NAMES), "a refused call changed the registry"
            if want == "TypeRegistrationError":
                self._check_registration_error(exc, a["name"], *detail)
            return
        assert want == "ok", (want, detail)
        event(f"register: ok{' again' if a['name'] in self.regs else ''}")
        self._registered(a, spec, *detail)

    def _check_registration_error(self, exc: Any, name: str, kind: str, missing: list) -> None:
        assert (exc.name, exc.kind, exc.missing) == (name, kind, missing)
        msg = str(exc)
        first = missing[0]
        step = f"{first}: <step {first} -> {first + 1 if kind == 'migrations' else first - 1}>"
        assert name in msg and f"{kind}={{{step}" in msg and f"unregister_type({name!r})" in msg, msg

    def _registered(self, a: dict, spec: types.UserType, ups: dict, downs: dict) -> None:
        cls, name = a["cls"], a["name"]
        old = self.regs.get(name)
        if old is not None and old.cls is not cls:
            if self.by_cls.get(old.cls) == name:
                del self.by_cls[old.cls]
            else:  # old.cls now encodes as another name: the defect test below pins what should happen
                self.by_cls[old.cls] = UNKNOWN
        self.regs[name] = Reg(spec, cls, a["version"], ups, downs, a["codec"])
        self.by_cls[cls] = name
        assert spec.migrations == ups and spec.downgrades == downs  # kept steps are the earlier objects themselves
        assert (spec.oldest_readable, spec.oldest_writable) == (self.regs[name].oldest_readable,
                                                                self.regs[name].oldest_writable)

    @rule(name=st.sampled_from(NAMES))
    def unregister(self, name: str) -> None:
        types.unregister_type(name)
        reg = self.regs.pop(name, None)
        if reg is not None and self.by_cls.get(reg.cls) == name:
            del self.by_cls[reg.cls]

    @precondition(lambda self: any(n is not UNKNOWN for n in self.by_cls.values()))
    @rule(data=st.data(), x=st.integers(-(2**70), 2**70), reader=st.one_of(st.none(), st.integers(1, MAX_VERSION + 1)))
    def write_instance(self, data: st.DataObject, x: int, reader: int | None) -> None:
        cls = data.draw(st.sampled_from([c for c in CLASSES if self.by_cls.get(c, UNKNOWN) is not UNKNOWN]))
        name = self.by_cls[cls]
        reg = self.regs[name]
        options = None if reader is None else {"versions": {"types": {name: reader}}}
        target = reg.version if reader is None else min(reg.version, reader)
        want, wire = self._expected_write(reg, x, target)
        try:
            frame = tether.dumps(cls(x), format="etf", options=options)
        except tether.TetherError as exc:
            event(f"write: {type(exc).__name__}")
            assert type(exc).__name__ == want, (want, exc)
            assert name in str(exc)
            return
        assert want == "ok", want
        self._store(frame, name, target, wire)

    @staticmethod
    def _expected_write(reg: Reg, x: int, target: int) -> tuple[str, Any]:
        if reg.codec in ("encode_raises", "encode_self"):
            return "TypeEncodeError", None
        if target < reg.oldest_writable:
            return "TypeDowngradeError", None
        wire = {"x": x, "t": []}
        for v in range(reg.version, target, -1):
            if reg.downs[v].fails:
                return "TypeDowngradeError", None
            wire = reg.downs[v](wire)
        return "ok", wire

    @rule(data=st.data(), v=st.integers(-1, MAX_VERSION + 1), x=st.integers(-5, 5))
    def write_wire(self, data: st.DataObject, v: int, x: int) -> None:
        """A frame as another (older, newer, or BEAM) writer of ``name`` sends it."""
        name = data.draw(st.sampled_from(sorted(self.regs) * 4 + list(NAMES)))  # mostly a name registered now
        wire = {"x": x, "t": [next(_tags)]}
        self._store(tether.dumps(types.wire(name, v, wire), format="etf"), name, v, wire)

    def _store(self, frame: bytes, name: str, v: int, wire: dict) -> None:
        self.frames = [*self.frames[-7:], (frame, name, v, wire)]

    @precondition(lambda self: self.frames)
    @rule()
    def read_frames(self) -> None:
        for frame, name, v, wire in self.frames:
            self._read(frame, name, v, wire)

    def _read(self, frame: bytes, name: str, v: int, wire: dict) -> None:
        reg = self.regs.get(name)
        want, value = expected_read(reg, name, v, wire)
        event(f"read: {want}{' migrated' if want == 'value' and v < reg.version else ''}")
        try:
            got = tether.loads(frame)
        except tether.TetherError as exc:
            assert type(exc).__name__ == want, (want, value, exc)
            msg = str(exc)
            assert name in msg and (value is None or value in msg), msg
            if want == "TypeVersionError":
                assert (exc.name, exc.found, exc.known) == (name, v, reg.version)
                assert f"version {v}" in msg and f"{reg.version}" in msg, msg
            return
        assert want in ("value", "map"), (want, value, got)
        if want == "map":
            assert got == {Atom("__struct__"): Atom("Elixir.Tether.Type"), Atom("name"): name, Atom("version"): v,
                           Atom("value"): wire}
        else:
            assert type(got) is reg.cls and got == value, (got, value)

    @invariant()
    def registry_matches_the_model(self) -> None:
        assert {n: v for n, v in types.versions().items() if n in NAMES} == {
            n: r.version for n, r in self.regs.items()}
        for name in NAMES:
            reg = self.regs.get(name)
            assert types.get(name) is (reg.spec if reg else None)
        for cls in CLASSES:
            name = self.by_cls.get(cls)
            if name is not UNKNOWN:
                spec = types.lookup(cls(0))
                assert spec is (self.regs[name].spec if name else None), (cls, name, spec)


TestRegisterMachine = RegisterMachine.TestCase
TestRegisterMachine.settings = settings(max_examples=120, stateful_step_count=25, deadline=None,
                                        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


@pytest.fixture(autouse=True)
def _clean():
    for name in (*NAMES, "fz.Other", "fz.atom", "fz.\ud800"):
        types.unregister_type(name)
    yield
    for name in (*NAMES, "fz.Other", "fz.atom", "fz.\ud800"):
        types.unregister_type(name)


@settings(max_examples=150, deadline=None)
@given(version=st.integers(1, MAX_VERSION), start=st.integers(1, MAX_VERSION), again=st.integers(1, MAX_VERSION),
       x=st.integers())
def test_re_registering_one_name_leaves_other_types_frames_alone(version, start, again, x):
    """Whatever happens to fz.A (registered again, refused, unregistered), frames of fz.Other still read the same."""
    for name in ("fz.Other", "fz.A"):  # the fixture runs once per test, not once per example
        types.unregister_type(name)
    start = min(start, version)
    ups = {k: Step() for k in range(start, version)}
    other = types.register_type(K2, name="fz.Other", version=version, migrations=ups)
    old = tether.dumps(types.wire("fz.Other", start, {"x": x, "t": []}), format="etf")
    now = tether.dumps(K2(x), format="etf")
    want_old = tether.loads(old)
    assert want_old == K2(x, [ups[k].tag for k in range(start, version)])  # each step ran once, in order
    try:
        types.register_type(K0, name="fz.A", version=again, migrations={k: Step() for k in range(1, again)})
        types.register_type(K0, name="fz.A", version=again + 1)
    except types.TypeRegistrationError as exc:
        assert exc.name == "fz.A" and "fz.A" in str(exc)
    types.unregister_type("fz.A")
    assert types.get("fz.Other") is other and types.lookup(K2(0)) is other
    assert tether.loads(old) == want_old and tether.loads(now) == K2(x)


@settings(max_examples=100, deadline=None)
@given(suffix=st.text(max_size=12), version=st.integers(1, 2**64))
def test_any_valid_name_and_version_round_trip_or_refuse_typed(suffix, version):
    """A name and version register_type accepts travel: the value reads back, or the write is a typed error."""
    name = "fz." + suffix  # the prefix keeps the names of other tests' registrations out of reach
    try:
        types.register_type(K1, name=name, version=version)
    except tether.TetherError:
        return
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            try:
                frame = tether.dumps(K1(7, [1000]), format="etf")
            except tether.TetherError:
                return  # a name UTF-8 cannot encode: see test_a_name_utf8_cannot_encode_is_refused_when_registered
            assert tether.loads(frame) == K1(7, [1000])
    finally:
        types.unregister_type(name)


# ---------------------------------------------------------------- defects the fuzzing found, each fixed


# D1: a name moved to a new class took the old class's later name away with it.
def test_a_name_taken_by_a_new_class_leaves_the_old_class_its_later_name():
    types.register_type(K0, name="fz.A")
    b = types.register_type(K0, name="fz.B")  # K0 now encodes as fz.B: the last registration of a class wins
    types.register_type(K1, name="fz.A")      # fz.A moves to K1; K0 was not fz.A's class any more
    assert types.lookup(K0(1)) is b
    assert tether.loads(tether.dumps(K0(1), format="etf")) == K0(1)


# D2: object was accepted, and then claimed every value without a mapping of its own.
def test_object_is_refused_as_a_class_of_your_own():
    with pytest.raises(tether.ValidationError, match="class of your own"):
        try:
            types.register_type(object, name="fz.A")
        finally:
            types.unregister_type("fz.A")


# D3: classes the codecs write themselves were accepted, and the registration then ignored.
@pytest.mark.parametrize("cls, value", [(type(None), None), (datetime.datetime, datetime.datetime(2024, 1, 2))])
def test_a_class_the_codecs_write_themselves_is_refused(cls, value):
    try:
        types.register_type(cls, name="fz.A", encode=lambda v: {"r": repr(v)}, decode=lambda w: w)
    except tether.ValidationError:
        return
    try:
        assert tether.loads(tether.dumps(value, format="etf")) != value, "registered, and then ignored"
    finally:
        types.unregister_type("fz.A")


# D4: an Atom name was written as an atom; the BEAM reads a type's name as a binary.
def test_a_name_given_as_an_atom_is_written_as_a_binary():
    types.register_type(K0, name=Atom("fz.atom"))
    term = etf.decode(etf.encode(K0(1)), structs=False)
    assert term[Atom("name")] == b"fz.atom" and type(term[Atom("name")]) is bytes
    wired = types.wire(Atom("fz.atom"), 1, {"x": 1})  # an older writer's term, built by hand, the same
    assert type(wired[Atom("name")]) is str
    assert etf.decode(etf.encode(wired), structs=False)[Atom("name")] == b"fz.atom"


# D5: a name without a UTF-8 form was accepted, and every write of the type then failed.
def test_a_name_utf8_cannot_encode_is_refused_when_registered():
    with pytest.raises(tether.ValidationError, match="fz"):
        types.register_type(K0, name="fz.\ud800")


# D6: a gap up to a large version listed every missing step (a 33 MB message at 10**6).
def test_a_gap_up_to_a_large_version_is_refused_with_a_short_message():
    types.register_type(K0, name="fz.A", version=2, migrations={1: Step()})
    with pytest.raises(types.TypeRegistrationError) as info:
        types.register_type(K0, name="fz.A", version=200_000)
    assert len(str(info.value)) < 2_000 and "fz.A" in str(info.value)
    assert info.value.missing == list(range(2, 102)) and info.value.nmissing == 199_998  # the first 100 listed
    assert "199,993 more steps" in str(info.value)
    with pytest.raises(tether.ValidationError) as first:  # a first registration with a gap, far up
        types.register_type(K1, name="fz.B", version=10**9, migrations={1: Step()})
    assert len(str(first.value)) < 2_000 and "fz.B" in str(first.value)


# D7: register_type's own ValidationErrors did not name the type.
@pytest.mark.parametrize("kwargs", [
    {"version": 0}, {"encode": 5}, {"version": 1, "migrations": {1: abs}}, {"version": 3, "migrations": {1: abs}},
])
def test_registration_errors_name_the_type(kwargs):
    with pytest.raises(tether.ValidationError) as info:
        types.register_type(K0, name="fz.A", **kwargs)
    assert "fz.A" in str(info.value)
