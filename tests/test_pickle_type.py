"""Pickle frames record the pickled object's type (``type.python_type``), readable without unpickling."""

from __future__ import annotations

import fractions
import json
import pathlib
import subprocess
import sys
import warnings

import numpy as np
import pytest

import tether
from spec_reader.formats import loads as spec_loads
from tether.formats import get as get_format
from tether.formats._base import DecodeContext

GOLDEN = pathlib.Path(__file__).parent / "golden"


class Holder:
    """A class of the test module: pickled by reference, as users' classes are."""

    def __init__(self, arr):
        self.arr = arr

    def __eq__(self, other):
        return isinstance(other, Holder) and np.array_equal(self.arr, other.arr)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tether", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("value, name", [
    (fractions.Fraction(1, 3), "fractions.Fraction"),
    (Holder(np.arange(2048.0)), f"{__name__}.Holder"),  # 16 KiB: an out-of-band buffer too
])
def test_the_writer_records_module_and_qualname(value, name):
    frame = tether.dumps(value)
    info = tether.inspect(frame)
    assert info.format == "pickle" and info.schema_version == 1
    assert info.type["python_type"] == name
    assert info.details == {"python type": name}
    assert tether.loads(frame, allow_pickle=True) == value


class Outer:
    class Inner:
        pass


def test_a_nested_class_keeps_its_qualified_name():
    info = tether.inspect(tether.dumps(Outer.Inner(), format="pickle"))
    assert info.type["python_type"] == f"{__name__}.Outer.Inner"


def test_a_fallback_to_pickle_names_the_whole_value():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frame = tether.dumps({"z": fractions.Fraction(1, 3)})  # etf cannot map a Fraction: the dict goes to pickle
    info = tether.inspect(frame)
    assert info.format == "pickle" and info.type["python_type"] == "builtins.dict"


def test_the_golden_frame_reads_as_before_and_says_the_type_was_not_recorded():
    frame = (GOLDEN / "pickle_set.tthr").read_bytes()
    info = tether.inspect(frame)
    assert "python_type" not in info.type and info.schema_version == 1
    assert info.details == {"python type": "not recorded (written by an older tether)"}
    assert tether.loads(frame, allow_pickle=True) == {1, 2, 3}


def test_the_key_is_the_only_change_and_readers_that_ignore_it_still_decode():
    old = tether.inspect((GOLDEN / "pickle_set.tthr").read_bytes())
    frame = tether.dumps({1, 2, 3}, format="pickle")
    new = tether.inspect(frame)
    # Same schema, same header layout: one added key, which docs/format.md §4.1 says readers may ignore.
    assert (new.format_id, new.schema_version, new.frame_version) == (old.format_id, old.schema_version,
                                                                      old.frame_version)
    assert set(new.type) - set(old.type) == {"python_type"} and set(old.type) <= set(new.type)
    assert spec_loads(frame) == {1, 2, 3}  # the reader written from the spec, which knows no such key
    # Decoding never reads the key: a type map without it (an older writer's) or with a wrong one decodes the same.
    payload = memoryview(frame)[new.payload_offset:new.payload_offset + new.payload_size]
    fmt, ctx = get_format("pickle"), DecodeContext(allow_pickle=True)
    for type_info in ({k: v for k, v in new.type.items() if k != "python_type"}, {**new.type, "python_type": "x.Y"}):
        assert fmt.decode(payload, type_info, ctx) == {1, 2, 3}


def test_inspect_shows_it_without_unpickling(tmp_path):
    path = tmp_path / "holder.tthr"
    path.write_bytes(tether.dumps(Holder(np.zeros(4))))
    # The subprocess cannot import this test module: unpickling there would fail, inspecting must not.
    out = _cli("inspect", str(path))
    assert out.returncode == 0, out.stderr
    assert f"python type    {__name__}.Holder" in out.stdout.splitlines()
    out = _cli("inspect", "--json", str(path))
    info = json.loads(out.stdout)
    assert info["type"]["python_type"] == info["details"]["python type"] == f"{__name__}.Holder"
    out = _cli("inspect", str(GOLDEN / "pickle_set.tthr"))
    assert "python type    not recorded (written by an older tether)" in out.stdout
