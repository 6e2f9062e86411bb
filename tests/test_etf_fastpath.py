"""The C fast path and the Python decoder return identical values, and C falls back safely."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

import tether
from tether import Atom, ImproperList, _etf, etf
from tether._etf import decoder, encoder, native

c = native.c
pytestmark = pytest.mark.skipif(c is None, reason="C fast path not built")

leaf = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-(2**600), max_value=2**600),
    st.floats(allow_nan=False, allow_infinity=False), st.binary(max_size=30), st.text(max_size=10),
    st.builds(Atom, st.text(min_size=1, max_size=10)),
    st.lists(st.integers(0, 255), max_size=5),
)
terms = st.recursive(
    leaf,
    lambda c: st.one_of(
        st.lists(c, max_size=5), st.lists(c, max_size=5).map(tuple),
        st.dictionaries(st.one_of(st.integers(), st.binary(max_size=5), st.tuples(st.integers())), c, max_size=5),
        st.builds(ImproperList, st.lists(c, min_size=1, max_size=3), leaf.filter(lambda x: not isinstance(x, list))),
    ),
    max_leaves=30,
)

MODES = [dict(binaries=b, charlists=ch, atoms=a) for b in ("bytes", "tagged") for ch in ("list", "str") for a in ("atom", "str")]


def both(data: bytes, **kw):
    opts = _etf.Options(**kw)
    fast = _etf.decode(data, opts)
    slow, _ = decoder.decode_term(data, 1, opts)
    return fast, slow


@given(terms, st.sampled_from(MODES), st.sampled_from([1, 2]))
def test_fast_equals_python(value, mode, minor):
    data = etf.encode(value, minor_version=minor)
    fast, slow = both(data, **mode)
    assert repr(fast) == repr(slow)


@given(st.binary(max_size=80))
def test_c_is_never_more_lenient_than_python(body):
    """Whatever C accepts, Python accepts with the same value; C rejects by falling back."""
    data = b"\x83" + body
    opts = _etf.Options(limits=tether.Limits(max_depth=1000, max_atoms=1000), structs=False)
    try:
        fast = c.decode(data, 1, native.options(opts))
    except c.Fallback:
        return
    slow = decoder.decode_term(data, 1, opts)
    assert repr(fast) == repr(slow)


def test_rare_tags_fall_back_to_python():
    pid = tether.Pid(Atom("n@h"), 1, 2, 3)
    data = etf.encode([pid, {"k": tether.BitBinary(b"\xe0", 3)}, 1.5])
    assert etf.decode(data) == [pid, {b"k": tether.BitBinary(b"\xe0", 3)}, 1.5]


@given(terms, st.sampled_from([1, 2]), st.booleans())
def test_c_encoder_writes_the_same_bytes_as_python(value, minor, tagged):
    opts = _etf.Options(minor_version=minor)
    tag = _etf.BIT_BINARY if tagged else _etf.BINARY
    try:
        fast = c.encode(value, native.options(opts), tagged)
    except c.Fallback:
        return  # a type the C path leaves to Python
    out = bytearray((_etf.VERSION,))
    encoder.encode_into(out, value, opts, tag, None)
    assert fast == bytes(out)


def test_c_encoder_falls_back_for_structs_and_big_ints():
    import datetime as dt

    opts = _etf.Options(limits=tether.Limits(max_depth=100))
    for value in ([dt.date(2024, 1, 1)], {"n": 2**100}, (float("inf"),), [tether.Atom("x" * 300)]):
        with pytest.raises(c.Fallback):
            c.encode(value, native.options(opts), False)
    assert etf.decode(etf.encode({"n": 2**100})) == {b"n": 2**100}
