"""The small-loads path: the C decoder's map-key cache, its one-call whole-term decode, and cheap auto_pick exits.

The key cache must only ever save work: the same keys as the Python decoder, whatever the mix of
keys, lengths, types and modes, with the checks loads makes today (duplicate keys, invalid UTF-8)
unchanged. ``decode_whole`` must decline (Fallback) whatever the step-by-step path names.
"""

from __future__ import annotations

import struct
import sys
import zlib

import numpy as np
import pytest

import tether
from tether import _etf, etf, formats
from tether._etf import decoder, native
from tether._etf.tags import BINARY_EXT, BIT_BINARY_EXT, MAP_EXT, SMALL_INTEGER_EXT, VERSION_MAGIC
from tether.formats._base import PLAIN_TYPES

c = native.c
needs_c = pytest.mark.skipif(c is None, reason="C fast path not built")
MODES = ("bytes", "str", "tagged")


def _map(pairs: list[tuple[bytes, int, int]]) -> bytes:
    """An ETF map of (key bytes, key tag, small int value) pairs, written by hand (duplicates allowed)."""
    out = bytearray([VERSION_MAGIC, MAP_EXT]) + struct.pack(">I", len(pairs))
    for key, tag, value in pairs:
        out += bytes([tag]) + struct.pack(">I", len(key)) + (b"\x08" if tag == BIT_BINARY_EXT else b"") + key
        out += bytes([SMALL_INTEGER_EXT, value])
    return bytes(out)


def _python(data: bytes, opts: _etf.Options):
    value, _ = decoder.decode_term(data, 1, opts)
    return value


def _keys_of(value) -> list:
    return [(type(k), k) for k in value]


@needs_c
@pytest.mark.parametrize("mode", ["bytes", "str"])
def test_a_key_decoded_again_is_the_same_object_and_a_str_is_interned(mode):
    opts = _etf.Options(binaries=mode)
    # One key only: the cache is direct-mapped on a per-process random seed, so two keys share a slot (and evict
    # each other) in one process out of 512, which made this test fail that often.
    data = etf.encode([{"id": 1}, {"id": 2}])
    first, second = _etf.decode(data, opts), _etf.decode(data, opts)
    k1, k2, k3, k4 = (next(iter(row)) for row in first + second)
    assert k1 == k2 == k3 == k4 == ("id" if mode == "str" else b"id")
    assert k2 is k3 is k4  # from its second sighting on, one object
    if mode == "str":
        if sys.version_info < (3, 12):  # from 3.12 interned strs may be immortal: the cache does not intern
            assert sys.intern(k4) is k4  # interned then: the object a literal in code is


@needs_c
@pytest.mark.parametrize("mode", MODES)
def test_keys_of_every_length_and_kind_decode_as_python_decodes_them(mode):
    # Keys that share prefixes, differ in their last byte, end in zero bytes (the cache pads with
    # zeros), cross the 8-byte words and the 32-byte bound, are not ASCII or not UTF-8 at all; in maps
    # of up to 32 pairs (cached) and over it (not), decoded twice so that hits and evictions both happen.
    words = [b"", b"a", b"a\x00", b"a\x00\x00", b"ab", b"ba", bytes(8), bytes(9), b"12345678", b"12345679",
             "caf\u00e9".encode(), "\u00e9t\u00e9".encode(), b"\xff\xfe", b"\xc3", b"k" * 31, b"k" * 32, b"k" * 33,
             b"x" * 32 + b"\x00"]
    words += [b"user%d" % i for i in range(2000)]
    # Pairs of keys that differ only in length: among 3000, some share a slot of the 512 (all but surely),
    # and the second of such a pair must miss.
    words += [w for i in range(3000) for w in (b"z%d" % i, b"z%d\x00" % i)]
    opts = _etf.Options(binaries=mode)
    for size in (5, 32, 33, 200):
        for start in range(0, len(words), size):
            chunk = words[start : start + size]
            for tag in (BINARY_EXT, BIT_BINARY_EXT):
                data = _map([(w, tag, i % 200) for i, w in enumerate(chunk)])
                for _ in range(2):
                    try:
                        expected = _python(data, opts)
                    except tether.TetherError as exc:
                        with pytest.raises(type(exc)):
                            _etf.decode(data, opts)
                        continue
                    got = _etf.decode(data, opts)
                    assert got == expected and _keys_of(got) == _keys_of(expected)


@needs_c
def test_tagged_mode_keeps_a_text_key_and_a_bytes_key_of_the_same_bytes_apart():
    opts = _etf.Options(binaries="tagged")
    for order in ([(b"ab", BINARY_EXT, 1), (b"ab", BIT_BINARY_EXT, 2)],
                  [(b"ab", BIT_BINARY_EXT, 2), (b"ab", BINARY_EXT, 1)]):
        for _ in range(3):
            assert _etf.decode(_map(order), opts) == {"ab": 1, b"ab": 2}
    # Among 3000 such pairs some share a slot (all but surely): the second of each must still miss.
    for i in range(3000):
        w = b"t%d" % i
        got = _etf.decode(_map([(w, BINARY_EXT, 1), (w, BIT_BINARY_EXT, 2)]), opts)
        assert _keys_of(got) == [(str, w.decode()), (bytes, w)]


@needs_c
@pytest.mark.parametrize("mode", MODES)
def test_duplicate_keys_are_still_refused_with_the_python_message(mode):
    data = _map([(b"a", BINARY_EXT, 1), (b"a", BINARY_EXT, 2)])
    opts = _etf.Options(binaries=mode)
    _etf.decode(_map([(b"a", BINARY_EXT, 1)]), opts)  # "a" is in the cache: the duplicate is the same object
    with pytest.raises(tether.DecodeError, match="keys collide"):
        _etf.decode(data, opts)


@needs_c
def test_an_invalid_utf8_key_is_bytes_in_tagged_mode_and_an_error_in_str_mode():
    data = _map([(b"\xff\xfe", BINARY_EXT, 1)])
    assert _etf.decode(data, _etf.Options(binaries="tagged")) == {b"\xff\xfe": 1}
    with pytest.raises(tether.DecodeError):
        _etf.decode(data, _etf.Options(binaries="str"))


@needs_c
def test_the_frame_metadata_keys_are_shared_between_loads():
    tether.loads(tether.dumps({"a": 1}))  # a first sighting, in case this process has made no frame yet
    _, one = tether.loads(tether.dumps({"a": 1}), with_info=True)
    _, two = tether.loads(tether.dumps({"b": 2}), with_info=True)
    assert one.type == two.type == {"binaries": "tagged"}
    assert next(iter(one.type)) is next(iter(two.type))


@needs_c
def test_decode_whole_declines_what_the_step_by_step_path_names():
    opts = _etf.Options()
    native_opts = native.options(opts)
    good = etf.encode({"k": [1, 2.5]})
    assert c.decode_whole(good, native_opts) == etf.decode(good) == {b"k": [1, 2.5]}
    compressed = bytes([VERSION_MAGIC, 80]) + struct.pack(">I", len(good) - 1) + zlib.compress(good[1:])
    declined = [good + b"\x00", good[:-1], b"", bytes([VERSION_MAGIC]), b"\x00" + good[1:], compressed,
                bytes([VERSION_MAGIC, 68, 0]), memoryview(good * 8).cast("d"), "text"]
    for data in declined:
        with pytest.raises(c.Fallback):
            c.decode_whole(data, native_opts)
    assert etf.decode(compressed) == {b"k": [1, 2.5]}
    assert _etf.decode(memoryview(bytes(good)).cast("B")) == {b"k": [1, 2.5]}
    with pytest.raises(tether.DecodeError, match="trailing"):
        etf.decode(good + b"\x00")
    with pytest.raises(tether.DecodeError, match="distribution header"):
        etf.decode(bytes([VERSION_MAGIC, 68, 0]))
    with pytest.raises(tether.TruncatedError):
        etf.decode(b"")


def test_no_plain_type_is_a_numpy_type():
    # ndarray's auto_pick declines PLAIN_TYPES before asking isinstance(obj, np.generic).
    assert not any(issubclass(t, (np.generic, np.ndarray)) for t in PLAIN_TYPES)


@pytest.mark.parametrize("value", [{"a": 1}, [1], (1,), "s", b"b", bytearray(b"b"), 1, 1.5, True, None])
def test_plain_values_are_declined_by_ndarray_and_sparse_and_still_choose_as_before(value):
    for name in ("ndarray", "sparse"):
        assert formats.get(name).auto_pick(value, "memory") is None
    expected = {dict: "etf", list: "etf", tuple: "etf", bytes: "raw", bytearray: "raw"}.get(type(value), "scalar")
    assert tether.dumps(value) and tether.last_decision().format == expected


def test_ndarray_still_claims_arrays_and_numpy_scalars():
    ndarray = formats.get("ndarray")
    assert ndarray.auto_pick(np.zeros(3), "memory") == ("numpy float64 array of shape (3,)", 24)
    assert ndarray.auto_pick(np.float32(1.5), "memory") == ("numpy float32 array of shape ()", 4)
    assert ndarray.auto_pick(np.bool_(True), "memory") is not None
    assert ndarray.auto_pick(np.array([None]), "memory") is None
