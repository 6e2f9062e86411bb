"""Registering formats and compressors with wrong values: refused at ``register`` with a typed error naming the
field, never accepted and then failing later inside ``dumps`` with a bare exception."""

from __future__ import annotations

import re

import pytest

import tether
from races import race
from tether import ValidationError, compression, formats

RAW = type(formats.get("raw"))
GZIP = type(compression.get("gzip"))


def fmt(**fields):
    return type("Probe", (RAW,), fields)


@pytest.fixture(autouse=True)
def _registries_unchanged():
    formats_before = (dict(formats.registry.by_id), dict(formats.registry.by_name))
    codecs_before = (dict(compression.registry.by_id), dict(compression.registry.by_name))
    yield
    for reg, (by_id, by_name) in ((formats.registry, formats_before), (compression.registry, codecs_before)):
        reg.by_id, reg.by_name = by_id, by_name  # replaced whole, as the registry itself does
        reg.version += 1


@pytest.mark.parametrize("fields, needle", [
    ({"id": 61001, "name": "t-prio", "auto_priority": "high"}, "auto_priority must be an int"),
    ({"id": 61002, "name": "t-prio-bool", "auto_priority": True}, "auto_priority must be an int"),
    ({"id": 61003, "name": "t-schema", "schema_version": 70000}, "schema_version must be an int in 0..65535"),
    ({"id": 61004, "name": "t-intos", "intos": "numpy"}, "intos must be a tuple of str"),
    ({"id": 61005, "name": "t-fallback", "fallback": 5}, "fallback must be a format name or None"),
])
def test_a_format_with_a_bad_field_is_refused_at_register_and_dumps_still_works(fields, needle):
    with pytest.raises(ValidationError, match=needle):
        formats.register(fmt(**fields))
    assert fields["name"] not in formats.registry and fields["id"] not in formats.registry
    assert tether.loads(tether.dumps({"a": [1, 2]})) == {"a": [1, 2]}  # auto_order still sorts


def test_an_object_that_is_not_a_format_is_refused():
    class Lookalike:
        id, name = 61010, "t-lookalike"

    with pytest.raises(ValidationError, match=r"instance of tether.formats.Format \(subclass it\), got Lookalike"):
        formats.register(Lookalike)
    with pytest.raises(tether.UnsupportedFormatError):
        tether.dumps(b"x", format="t-lookalike")


def test_a_class_that_needs_arguments_is_refused_with_a_hint_to_pass_an_instance():
    class NeedsArgs(RAW):
        id, name = 61011, "t-needs-args"

        def __init__(self, level):
            self.level = level

    with pytest.raises(ValidationError, match=r"NeedsArgs\(\) with no arguments .*register an instance instead"):
        formats.register(NeedsArgs)
    assert formats.register(NeedsArgs(1)).level == 1


def test_a_name_taken_under_another_id_is_refused_and_the_registry_stays_consistent():
    with pytest.raises(ValidationError, match=r"'pickle' is already registered under id 6; register under id 6"):
        formats.register(fmt(id=61012, name="pickle"))
    assert formats.get("pickle").id == 6 and 61012 not in formats.registry
    assert [f.id for f in formats.registry if f.name == "pickle"] == [6]
    # The same name under its own id is still a replacement in place.
    again = formats.register(fmt(id=61013, name="t-replace"))
    assert formats.register(fmt(id=61013, name="t-replace")) is not again


def test_a_compressor_with_a_bad_field_or_class_is_refused():
    class NotACodec:
        id, name = 210, "t-not-a-codec"

    with pytest.raises(ValidationError, match="instance of tether.compression.Compressor"):
        compression.register(NotACodec)
    with pytest.raises(ValidationError, match=r"default_level 99 is not one of its levels 0\.\.9"):
        compression.register(type("Z", (GZIP,), {"id": 211, "name": "t-level", "default_level": 99}))
    with pytest.raises(ValidationError, match="levels must be a non-empty range"):
        compression.register(type("Z", (GZIP,), {"id": 212, "name": "t-levels", "levels": [1, 2]}))
    with pytest.raises(ValidationError, match="'zstd' is already registered under id 2"):
        compression.register(type("Z", (GZIP,), {"id": 213, "name": "zstd"}))
    for name in ("t-not-a-codec", "t-level", "t-levels"):
        with pytest.raises(ValidationError, match="Invalid compression"):
            tether.dumps(b"ab" * 1000, compression=name)
    assert compression.get("zstd").id == 2


def test_an_auto_pick_that_answers_the_wrong_shape_is_named_at_dumps():
    class Greedy(RAW):
        id, name, auto_priority = 61020, "t-greedy", -1  # asked first

        def auto_pick(self, obj, transport):
            return 5

    formats.register(Greedy)
    with pytest.raises(ValidationError, match="Format 't-greedy': auto_pick must return"):
        tether.dumps({"a": 1})


def test_unregister_removes_a_codec_and_a_format_by_name_or_id_and_keeps_tethers_own():
    codec = compression.register(type("Z", (GZIP,), {"id": 220, "name": "t-gone", "default_level": 1}))
    frame = tether.dumps(b"ab" * 1000, compression="t-gone")
    assert compression.unregister("t-gone") is codec
    assert "t-gone" not in compression.names() and 220 not in compression.registry
    with pytest.raises(tether.UnsupportedFormatError, match="Invalid compression id 220"):
        tether.loads(frame)
    with pytest.raises(tether.UnsupportedFormatError, match="Invalid compression 't-gone'"):
        compression.unregister("t-gone")
    compression.register(codec)  # registering it again makes its frames readable again
    assert tether.loads(frame) == b"ab" * 1000

    class Greedy(RAW):  # asked first for everything: auto choice must forget it once it is gone
        id, name, auto_priority = 61030, "t-greedy-gone", -1

        def auto_pick(self, obj, transport):
            return ("everything", 1)

    formats.register(Greedy)
    assert tether.inspect(tether.dumps(b"x")).format == "t-greedy-gone"
    assert formats.unregister(61030).name == "t-greedy-gone"
    assert tether.inspect(tether.dumps(b"x")).format == "raw"
    for registry, key, name in ((compression, "zstd", "'zstd' (id 2)"), (formats, 6, "'pickle' (id 6)")):
        with pytest.raises(ValidationError, match=rf"{re.escape(name)} is one of tether's own and cannot be unregistered"):
            registry.unregister(key)
    assert compression.get("zstd").id == 2 and formats.get("pickle").id == 6


def test_dumps_on_other_threads_meet_no_half_changed_registry():
    class Churn(RAW):
        id, name, auto_priority = 61031, "t-churn", 50

    class Ranked(RAW):  # more entries to walk: the automatic choice ranks every format that takes part
        auto_priority = 60

    for n in range(300):
        formats.register(type(f"R{n}", (Ranked,), {"id": 61100 + n, "name": f"t-ranked-{n}"}))

    def change():
        formats.register(Churn)
        formats.unregister(61031)

    # Before: a RuntimeError from a dict changed during iteration, now and then.
    def read():
        assert tether.inspect(tether.dumps({"a": 1})).format == "etf"
        formats.names(), list(formats.registry), formats.auto_order()

    assert race(change, read, 5_000) == []
