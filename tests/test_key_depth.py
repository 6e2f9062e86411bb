"""Map keys and set members nested deep: decoded in linear time, refused by name past MAX_KEY_DEPTH, never a crash.

From the fidelity fuzz of 2026-11-27: nested sets took time quadratic in their
depth (a 216 KB frame 8 s, 864 KB 157 s); maps nested a few thousand deep as
keys raised a bare RecursionError from FrozenMap's hash; a map key of tuples
nested a million deep crashed the interpreter (CPython hashes tuples
recursively); a charlist warning raised ImportError under ``python -c``.
"""

from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
import textwrap

import pytest

import tether
from tether._etf.keys import MAX_KEY_DEPTH
from tether._types import FrozenList, FrozenMap

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")


def _child(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, *sys.path])}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=300, env=env)


def test_sets_nested_thousands_deep_round_trip():
    # Each level used to walk every level inside it again.
    value = frozenset()
    for _ in range(5000):
        value = frozenset([value])
    back = tether.loads(tether.dumps([value], reader="beam"))[0]
    depth = 0
    while back:  # compared level by level: == on sets this deep recurses past Python's limit
        assert type(back) is (set if depth == 0 else frozenset) and len(back) == 1  # a MapSet reads as a set
        back, depth = next(iter(back)), depth + 1
    assert back == frozenset() and depth == 5000


def test_maps_nested_as_keys_thousands_deep_decode():
    depth = 5000  # %{%{%{... => 1} => 1} => 1}
    term = b"\x83" + (b"t" + struct.pack(">I", 1)) * depth + b"j" + b"a\x01" * depth
    value = tether.etf.decode(term)
    assert isinstance(next(iter(value)), FrozenMap)


@pytest.mark.parametrize("kind", ["tuples", "lists"])
def test_a_key_nested_past_the_limit_is_a_decode_error_not_a_crash(kind):
    depth = 1_000_000 if kind == "tuples" else 200_000
    inner = b"h\x01" if kind == "tuples" else b"l" + struct.pack(">I", 1)
    closes = 1 if kind == "tuples" else depth + 1
    out = _child(f"""
        import tether
        term = b"\\x83t\\x00\\x00\\x00\\x01" + {inner!r} * {depth} + b"j" * {closes} + b"a\\x01"
        for decode in (tether.etf.decode, lambda t: tether.loads(tether.dumps(tether.etf.OpaqueTerm(t[1], t[1:]),
                                                                                 format="etf"))):
            try:
                decode(term)
                print("decoded")
            except tether.TetherError as exc:
                print(type(exc).__name__, "nests" in str(exc) and "{MAX_KEY_DEPTH}" in str(exc))
    """)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["DecodeError", "True"] * 2  # both decoders: etf.decode, and loads of a frame


def test_a_kept_hash_is_not_pickled_with_the_key():
    # str hashes differ between processes: a FrozenList pickled with its hash would not be found again.
    key = FrozenList(["a", FrozenMap({"b": 1})])
    hash(key)
    blob = pickle.dumps({key: 1})
    out = _child(f"""
        import pickle
        from tether._types import FrozenList, FrozenMap
        d = pickle.loads({blob!r})
        print(d[FrozenList(["a", FrozenMap({{"b": 1}})])])
    """)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "1"


def test_a_charlist_warning_for_code_run_with_python_c_is_a_warning():
    out = _child("""
        import warnings, tether
        warnings.simplefilter("error")
        frame = tether.dumps([{"a": [97, 98]}], format="etf")
        try:
            tether.loads(frame, into="arrow")
        except tether.LossyConversionWarning:
            print("warned")
        except ImportError as exc:
            print("ImportError", exc)
    """)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "warned"


def test_a_key_of_plain_tuples_thousands_deep_around_a_list_decodes():
    # Tuples keep no hash: hashing each level as it was frozen cost the square of the depth.
    depth = 9000
    term = b"\x83t\x00\x00\x00\x01" + b"h\x01" * depth + b"j" + b"a\x01"
    key = next(iter(tether.etf.decode(term)))
    for _ in range(depth):
        assert type(key) is tuple and len(key) == 1
        key = key[0]
    assert key == FrozenList([])


def test_a_frozen_map_cannot_be_changed_in_place():
    key = FrozenMap({"a": 1})
    hash(key)
    with pytest.raises(TypeError, match="read-only"):
        key |= {"b": 2}
