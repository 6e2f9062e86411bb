"""The C fast path and the Python decoder return identical values, and C falls back safely."""

from __future__ import annotations

import collections
import re

import pytest
from hypothesis import given, strategies as st

import tether
from tether import Atom, ImproperList, _etf, etf
from tether._etf import decoder, encoder, keys, native

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


# ---------------------------------------------------------------- the key-safety rule (tether/_etf/keys.py)

P = 2**61 - 1  # ints k * P all hash to 0 in Python
flood_keys = st.one_of(
    st.integers(1, 60).map(lambda k: k * P),  # one hash value
    st.integers(1, 60).map(lambda k: (1, k * P)),  # tuples of them: one hash value too
    st.integers(-(2**60) + 1, 2**60 - 1),  # hash to themselves: never counted
    st.builds(Atom, st.text(min_size=1, max_size=4)),
)


def _outcome(decode, data):
    try:
        return "ok", repr(decode(data))
    except tether.TetherError as exc:
        return type(exc).__name__, str(exc)


@given(st.lists(st.tuples(flood_keys, st.integers()), max_size=80), st.booleans())
def test_fast_and_python_apply_the_same_key_safety_rule(pairs, nested):
    # Written without a Python dict: the map may hold keys Python treats as equal.
    body = b"".join(etf.encode(k)[1:] + etf.encode(v)[1:] for k, v in pairs)
    data = b"\x83t" + len(pairs).to_bytes(4, "big") + body
    if nested:  # the same map as the key of another, and inside a list
        data = b"\x83l\x00\x00\x00\x01t\x00\x00\x00\x01" + data[1:] + b"a\x01j"
    opts = _etf.Options()
    fast = _outcome(lambda d: _etf.decode(d, opts), data)
    slow = _outcome(lambda d: decoder.decode_term(d, 1, opts)[0], data)
    assert fast == slow
    distinct = {k for k, _ in pairs if not keys.trusted(k)}
    most = max(collections.Counter(hash(k) for k in distinct).values(), default=0)
    if fast[0] == "ok":
        assert most <= keys.MAX_SAME_HASH
    elif most > keys.MAX_SAME_HASH and len({k for k, _ in pairs}) == len(pairs):  # no duplicate key to fail first
        assert fast[0] == "LimitError" and "keys with one Python hash value" in fast[1]


def test_sets_inside_keys_are_frozen_alike_on_both_paths():
    value = {tether.FrozenList([frozenset({1, 2})]): 1, (frozenset({3}), tether.FrozenList([])): 2,
             frozenset({tether.FrozenList([4])}): 3}
    data = etf.encode(value)
    fast, slow = both(data)
    assert fast == slow == value


@pytest.mark.parametrize("term, where", [
    ("bad \udcff", r"\$"),
    ({"k": [1, ("x", "\udcff")]}, r"\$\.k\[1\]\[1\]"),
    ({"\udcff": 1}, r"\$\['<key>'\]"),
    ([Atom("ok"), Atom("a\udcff")], r"\$\[1\]"),
])
def test_text_utf8_cannot_hold_is_an_encode_error_at_its_path(term, where):
    # A lone surrogate (what surrogateescape leaves for undecodable bytes): both paths name the place.
    with pytest.raises(tether.EncodeError, match=rf"at {where} holds '\\udcff'.*send those bytes as bytes"):
        etf.encode(term)
    with pytest.raises(tether.EncodeError, match=rf"at {where} holds"):
        tether.dumps(term, format="etf")


@pytest.mark.parametrize("term, where", [
    ({"a": [1, Atom("x")]}, "$.a[1]"),
    ({Atom("k"): 1}, "$"),
    ([tether.Pid("n@h", 1, 2, 3)], "$[0]"),
])
def test_plain_options_refuse_atoms_and_the_terms_that_carry_one_in_c_and_in_python(term, where):
    opts = _etf.Options(plain=True)
    for encode in (lambda: _etf.encode(term, opts), lambda: encoder.encode_into(bytearray(), term, opts, 109, None)):
        with pytest.raises(tether.MappingError, match=re.escape(where)):
            encode()
    ok = {"t": True, "f": False, "n": None, "s": "x", "l": [1, 2.5, b"b"]}
    assert _etf.encode(ok, opts) == _etf.encode(ok)  # plain data: the same bytes
    assert _etf.decode(_etf.encode(Atom("x"))) == Atom("x")  # the default still writes atoms


@pytest.mark.parametrize("wrap", [bytes, bytearray], ids=["bytes", "bytearray"])
def test_a_large_binary_map_key_is_bytes_in_both_decoders_whatever_buffer_it_came_in(wrap):
    """Binaries from 64 KiB decode as views; as a map key, a view kept the frame alive, hashed as its buffer
    (a bytearray's cannot be), and was a memoryview or bytes depending on the buffer."""
    big = b"k" * 70_000
    frame = tether.dumps({big: 1, "x": 2}, format="etf")  # tagged: str and bytes each come back as themselves
    fast = tether.loads(wrap(frame))
    info = tether.inspect(frame)
    data = wrap(bytes(frame)[info.payload_offset : info.payload_offset + info.payload_size])
    slow, _ = decoder.decode_term(data, 1, _etf.Options(views=65_536, binaries="tagged"), source=data)
    for out in (fast, slow):
        assert out == {big: 1, "x": 2} and [type(k) for k in out] == [bytes, str]
