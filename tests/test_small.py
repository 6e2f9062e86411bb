"""The plain-etf fast path must be indistinguishable from the general path."""

from __future__ import annotations

import dataclasses
import time

import pytest
from hypothesis import given, strategies as st

import tether
from tether import Atom, _etf

CHECKSUMS = ["auto", True, False, "xxh3-64", "crc32", "none"]

terms = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20) | st.binary(max_size=20) | st.sampled_from([Atom("ok"), Atom("error"), Atom("é")]),
    lambda inner: st.lists(inner, max_size=5) | st.tuples(inner, inner)
    | st.dictionaries(st.text(max_size=5) | st.integers(-5, 5), inner, max_size=5),
    max_leaves=20,
)


@pytest.fixture
def pinned_clock(monkeypatch):
    monkeypatch.setattr(time, "time_ns", lambda: 1_795_000_000_123_456_789)


def _decision_fields(d):
    return {f.name: getattr(d, f.name) for f in dataclasses.fields(d)}


@pytest.mark.parametrize("checksum", CHECKSUMS)
@pytest.mark.parametrize("value", [{"id": 1, "tags": [Atom("a")]}, [1, 2.5, "x", b"y"], (Atom("reply"), 7, None), {}])
def test_dumps_writes_the_general_paths_bytes_and_decision(pinned_clock, value, checksum):
    for fmt in ("etf", "auto"):
        fast = tether.dumps(value, format=fmt, checksum=checksum)
        fast_decision = _decision_fields(tether.last_decision())
        general = bytes(tether.encode(value, format=fmt, checksum=checksum))
        assert fast == general
        assert fast_decision == _decision_fields(tether.last_decision())


@pytest.mark.parametrize("transport", ["memory", "shm", "network", "disk", "stream"])
def test_large_payloads_follow_the_transport_checksum_rule(pinned_clock, transport):
    value = [b"x" * (1 << 20), 1]  # a payload above 1 MiB
    fast = tether.dumps(value, format="etf", transport=transport)
    assert fast == bytes(tether.encode(value, format="etf", transport=transport))
    leaves = transport in ("network", "disk", "stream")
    assert tether.inspect(fast).checksum == ("crc32" if leaves else "none")


@given(terms)
def test_loads_matches_the_general_path(value):
    frame = tether.dumps([value], format="etf")
    fast = tether.loads(frame)  # bytes: the fast path
    general = tether.loads(bytearray(frame))  # any other buffer: the general path
    assert fast == general == [value]
    assert repr(fast) == repr(general)  # same types all the way down


def test_corrupted_frames_fail_exactly_as_the_general_path_says():
    frame = tether.dumps({"k": [1, 2, Atom("x")], "s": "text"}, format="etf", checksum="crc32")
    for i in range(len(frame) * 8):
        bad = bytearray(frame)
        bad[i // 8] ^= 1 << (i % 8)
        outcomes = []
        for buf in (bytes(bad), bad):
            try:
                outcomes.append(("ok", repr(tether.loads(buf))))
            except tether.TetherError as exc:
                outcomes.append((type(exc).__name__, str(exc)))
        assert outcomes[0] == outcomes[1], f"bit {i}"
    for cut in range(len(frame)):
        with pytest.raises(tether.TetherError):
            tether.loads(frame[:cut])


def test_decode_options_take_the_same_route():
    enc = tether.encode([b"abc", Atom("nil")], format="etf", checksum="crc32")
    raw = bytearray(bytes(enc))
    info = tether.inspect(bytes(raw))
    assert info.type == {"binaries": "tagged"}
    for options in (None, {"binaries": "str"}, {"none_atom": "undefined"}, {"binaries": "bytes"}):
        for copy in (False, True):
            assert repr(tether.loads(bytes(raw), options=options, copy=copy)) == repr(
                tether.loads(raw, options=options, copy=copy)
            )


def test_bad_decode_options_are_validation_errors_on_both_paths():
    frame = tether.dumps([1], format="etf")
    for options in ({"binaries": ["x"]}, {"binaries": "nope"}):
        for buf in (frame, bytearray(frame)):
            with pytest.raises(tether.ValidationError):
                tether.loads(buf, options=options)


def test_large_binaries_stay_views_on_the_fast_path():
    blob = bytes(range(256)) * 1024
    frame = tether.dumps([blob], format="etf")
    (view,) = tether.loads(frame)
    assert isinstance(view, memoryview) and view.readonly and view == blob
    (copied,) = tether.loads(frame, copy=True)
    assert type(copied) is bytes and copied == blob


def test_a_binary_exactly_at_the_view_threshold_is_a_view_and_one_below_is_bytes():
    # The C decoder gets the buffer to slice views from only when the buffer can hold one.
    for size, kind in ((64, memoryview), (63, bytes)):
        data = _etf.encode(b"x" * size)
        value = _etf.decode(data, _etf.Options(views=64))
        assert type(value) is kind and bytes(value) == b"x" * size
        assert type(_etf.decode(memoryview(data), _etf.Options(views=64))) is kind


def test_shared_atoms_respect_each_calls_options():
    data = _etf.encode([Atom("nil"), Atom("undefined"), Atom("ok"), True])
    assert _etf.decode(data) == [None, Atom("undefined"), Atom("ok"), True]
    strict = _etf.decode(data, _etf.Options(none_atom="undefined"))
    assert strict == [Atom("nil"), None, Atom("ok"), True]
    assert all(type(a) is Atom for a in strict[::2])
    assert _etf.decode(data, _etf.Options(atoms="str")) == [None, "undefined", "ok", True]
    assert type(_etf.decode(data, _etf.Options(atoms="str"))[2]) is str
    latin = b"\x83l\x00\x00\x00\x02s\x01\xe9s\x01aj"  # SMALL_ATOM (Latin-1) 'é', 'a'
    assert _etf.decode(latin) == [Atom("é"), Atom("a")]
