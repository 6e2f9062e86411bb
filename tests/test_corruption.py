"""Bad input raises only tether's typed errors: truncation, bit flips, hostile ETF, limits, bombs."""

from __future__ import annotations

import random
import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, strategies as st

import tether
from tether import etf
from samples import SMALL

SEED = random.randrange(1 << 32)

def _frames(fmt, comp):
    for value in SMALL[fmt]:
        yield tether.dumps(value, format=fmt, compression=comp, checksum=True)


def test_truncation_at_every_64th(every_format, every_compressor):
    for frame in _frames(every_format, every_compressor):
        for i in range(64):
            cut = len(frame) * i // 64
            with pytest.raises(tether.TetherError):
                tether.loads(frame[:cut], allow_pickle=True)


def test_bit_flips_detected(every_format, every_compressor):
    rng = random.Random(SEED)
    for frame in _frames(every_format, every_compressor):
        positions = list(range(min(len(frame), 256))) + [rng.randrange(len(frame)) for _ in range(200)]
        for pos in positions:
            broken = bytearray(frame)
            broken[pos] ^= 1 << rng.randrange(8)
            with pytest.raises(tether.TetherError):
                tether.loads(bytes(broken), allow_pickle=True)
    print(f"seed={SEED}")


def test_unknown_future_version_says_what_is_needed():
    frame = bytearray(tether.dumps(1))
    frame[4:6] = (2).to_bytes(2, "little")
    struct.pack_into("<I", frame, 60, zlib.crc32(frame[:60]))
    with pytest.raises(tether.UnsupportedVersionError, match="frame version 2"):
        tether.loads(bytes(frame))


def test_header_bytes_are_exact():
    enc = tether.encode(b"abc", checksum="crc32")
    frame = bytes(enc)
    h = frame[:64]
    assert h[:4] == b"TTHR"
    fields = struct.unpack("<4sHHHBBIIIQQQHb9xI", h)
    magic, ver, hsize, fmt, comp, ck, flags, mlen, mcrc, plen, rlen, pck, schema, level, hcrc = fields
    assert (ver, hsize, fmt, comp, ck, flags, plen, rlen, schema, level) == (1, 64, 1, 0, 2, 0, 3, 3, 1, 0)
    assert mcrc == zlib.crc32(frame[64 : 64 + mlen])
    assert pck == zlib.crc32(b"abc")
    assert hcrc == zlib.crc32(h[:60])
    assert len(frame) == ((64 + mlen + 63) & ~63) + 3
    assert frame[-3:] == b"abc"


# ---------------------------------------------------------------- ETF hostile input


@given(st.binary(max_size=200))
def test_etf_garbage_raises_only_typed_errors(data):
    try:
        etf.decode(b"\x83" + data)
    except tether.TetherError:
        pass


@given(st.binary(min_size=1, max_size=300), st.data())
def test_etf_mutations_raise_only_typed_errors(data, draw):
    good = bytearray(etf.encode([{"a": (1, 2.5, b"x")}, [1, 2, 3], 2**80, tether.Atom("ok")]))
    i = draw.draw(st.integers(0, len(good) - 1))
    good[i] = draw.draw(st.integers(0, 255))
    cut = draw.draw(st.integers(1, len(good)))
    try:
        etf.decode(bytes(good[:cut]))
    except tether.TetherError:
        pass


@pytest.mark.parametrize(
    "data,match",
    [
        (b"\x83l\xff\xff\xff\xff", "List declares"),
        (b"\x83t\x7f\xff\xff\xff", "Map declares"),
        (b"\x83i\xff\xff\xff\xff", "Tuple declares"),
        (b"\x83m\xff\xff\xff\xffab", "Binary declares"),
        (b"\x83o\xff\xff\xff\xff\x00", "Big integer declares"),
        (b"\x83P\xff\xff\xff\xff" + zlib.compress(b"x"), "declares 4294967295 bytes but inflates to 1"),
        (b"\x83D\x00", "distribution header"),
        (b"\x83y\x00", "LOCAL_EXT"),
        (b"\x83R\x00", "ATOM_CACHE_REF"),
        (b"\x84a\x01", "first byte is 132"),
        (b"\x83a\x01\x00", "trailing"),
        (b"\x83h\x02a\x01", "ends"),
    ],
)
def test_etf_declared_lengths_checked_before_allocating(data, match):
    with pytest.raises(tether.DecodeError, match=match):
        etf.decode(data)


def test_etf_error_names_path():
    bad = bytearray(etf.encode({"rows": [1, {"price": 2.5}]}))
    i = bad.index(b"F")  # NEW_FLOAT tag of 2.5
    bad[i] = 0xEE
    with pytest.raises(tether.DecodeError, match=r"\$\[b'rows'\]\[1\]\[b'price'\]"):
        etf.decode(bytes(bad))


def test_etf_limits_depth_and_atoms():
    deep = b"\x83" + b"l\x00\x00\x00\x01" * 50 + b"j" + b"j" * 50
    with pytest.raises(tether.LimitError, match="max_depth"):
        etf.decode(deep, limits=tether.Limits(max_depth=10))
    assert etf.decode(deep) is not None
    atoms = etf.encode([tether.Atom(f"a{i}") for i in range(20)])
    with pytest.raises(tether.LimitError, match="max_atoms"):
        etf.decode(atoms, limits=tether.Limits(max_atoms=5))


def test_etf_zlib_bomb_bounded():
    bomb_body = b"\x6d" + (100_000_000).to_bytes(4, "big") + bytes(100_000_000)
    packed = zlib.compress(bomb_body, 9)
    assert len(bomb_body) / len(packed) > 500
    data = b"\x83P" + (1000).to_bytes(4, "big") + packed  # lies about its size
    with pytest.raises(tether.DecodeError, match="declares 1000 bytes"):
        etf.decode(data)
    limited = tether.Limits(max_uncompressed_size=1 << 20)
    with pytest.raises(tether.LimitError):
        etf.decode(b"\x83P" + len(bomb_body).to_bytes(4, "big") + packed, limits=limited)


def test_etf_nan_and_unknown_types():
    with pytest.raises(tether.EncodeError, match="nan='atom'"):
        etf.encode([1.0, float("nan")])
    with pytest.warns(tether.LossyConversionWarning):
        assert etf.decode(etf.encode(float("inf"), nan="atom")) == "infinity"
    with pytest.raises(tether.MappingError, match=r"\$\[0\]\.k.*register_struct"):
        etf.encode([{"k": object()}])


def test_etf_map_key_collisions_and_unhashable_keys():
    both = b"\x83t\x00\x00\x00\x02a\x01a\x01F?\xf0\x00\x00\x00\x00\x00\x00a\x02"  # #{1 => 1, 1.0 => 2}
    with pytest.raises(tether.DecodeError, match="collide"):
        etf.decode(both)
    value = etf.decode(etf.encode({tether.FrozenList([1, 2]): "a", (1, 2): "b"}))
    assert value[tether.FrozenList([1, 2])] == b"a" and value[(1, 2)] == b"b"


@pytest.mark.parametrize("codec", ["lz4", "zstd"])
def test_a_large_arrow_frame_compressed_inside_its_ipc_stream_carries_a_checksum(codec):
    """Arrow compresses its IPC buffers itself (the frame says compression none): a flipped bit in a large
    in-memory frame read as other rows, without an error, since checksum='auto' took it for uncompressed."""
    import pyarrow as pa

    rng = np.random.default_rng(7)
    table = pa.table({"id": rng.integers(0, 1 << 62, 400_000), "v": rng.integers(0, 50, 400_000)})
    frame = bytearray(tether.dumps(table, compression=codec))
    info = tether.inspect(bytes(frame))
    assert info.payload_size > 1 << 20 and info.details["arrow compression"] == codec
    assert info.checksum == "crc32"
    frame[info.payload_offset + info.payload_size // 2] ^= 0x10
    with pytest.raises(tether.ChecksumError):
        tether.loads(bytes(frame))
