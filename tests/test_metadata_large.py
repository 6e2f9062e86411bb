"""Large user metadata: stored packed (compressed when that pays), decoded only when read."""

from __future__ import annotations

import os

import pytest

import tether
from tether.frame import _meta


def _labels(nbytes: int) -> dict:
    out, size, i = {}, 0, 0
    while size < nbytes:
        out[f"label-{i}"] = f"value {i} of the run"
        size += 30
        i += 1
    return out


def _raw_meta(frame: bytes) -> dict:
    header = tether.frame.unpack(memoryview(frame), tether.get_limits())
    block = frame[tether.frame.HEADER_SIZE : tether.frame.HEADER_SIZE + header.metadata_length]
    return _meta.decode(block, tether.get_limits())


def test_small_metadata_stays_inline_as_before():
    frame = tether.dumps(1, metadata={"k": "v"})
    meta = _raw_meta(frame)
    assert meta["user"] == {"k": "v"} and _meta.PACKED_KEY not in meta


def test_large_metadata_is_packed_compressed_and_reads_back():
    user = _labels(1 << 20)
    frame = tether.dumps([1, 2], metadata=user)
    meta = _raw_meta(frame)
    packed = meta[_meta.PACKED_KEY]
    assert "user" not in meta and packed["encoding"] == "etf" and packed["compression"] == "zlib"
    assert len(packed["data"]) < packed["size"] // 4  # labels compress well
    info = tether.inspect(frame)
    assert info.metadata_size < (1 << 20) // 4
    assert info.user == user
    value, info2 = tether.loads(frame, with_info=True)
    assert value == [1, 2] and info2.user == user


def test_incompressible_metadata_is_packed_uncompressed():
    user = {"blob": os.urandom(100_000)}
    info = tether.inspect(tether.dumps(1, metadata=user))
    assert info.user == user
    assert _raw_meta(tether.dumps(1, metadata=user))[_meta.PACKED_KEY]["compression"] == "none"


def test_loads_never_decodes_packed_metadata(monkeypatch):
    frame = tether.dumps({"x": 1}, metadata=_labels(200_000))

    def refuse(*_):
        raise AssertionError("user metadata decoded")

    monkeypatch.setattr(_meta, "unpack_user", refuse)
    assert tether.loads(frame) == {"x": 1}
    value, info = tether.loads(frame, with_info=True)  # the info does not decode it either, until asked
    assert value == {"x": 1} and info.format == "etf"
    with pytest.raises(AssertionError, match="decoded"):
        info.user


def test_packed_metadata_is_decoded_once():
    info = tether.inspect(tether.dumps(1, metadata=_labels(50_000)))
    assert info.user is info.user


def test_metadata_over_the_limit_when_unpacked_is_a_limit_error():
    frame = tether.dumps(1, metadata=_labels(200_000))
    info = tether.inspect(frame)
    before = tether.get_limits()
    tether.set_limits(max_metadata_size=100_000)
    try:
        with pytest.raises(tether.LimitError, match="max_metadata_size"):
            info.user
    finally:
        tether.set_limits(before)


def test_corrupt_packed_metadata_is_a_decode_error():
    header = tether.frame.unpack(memoryview(tether.dumps(1)), tether.get_limits())
    bad = [
        {"encoding": "etf", "compression": "zlib", "size": 100, "data": b"not zlib"},
        {"encoding": "etf", "compression": "none", "size": 5, "data": b"\x83abcd"},
        {"encoding": "json", "compression": "none", "size": 2, "data": b"{}"},
        {"encoding": "etf", "compression": "brotli", "size": 2, "data": b"xx"},
        {"encoding": "etf", "compression": "none", "size": 3, "data": b"abc"},
        # Found in review: a negative size once lifted the inflate bound (zlib's max_length=0 means "all").
        {"encoding": "etf", "compression": "zlib", "size": -1, "data": __import__("zlib").compress(b"a" * 100_000)},
        {"encoding": "etf", "compression": "zlib", "size": -2, "data": b"x"},
    ]
    for packed in bad:
        info = tether.frame.info(header, {"format": "scalar", _meta.PACKED_KEY: packed})
        with pytest.raises(tether.DecodeError):
            info.user


def test_as_dict_decodes_user():
    user = _labels(50_000)
    data = tether.inspect(tether.dumps(1, metadata=user)).as_dict()
    assert data["user"] == user and "_user" not in data


def test_asdict_and_equality_see_the_decoded_user():
    import dataclasses

    user = _labels(50_000)
    frame = tether.dumps(1, metadata=user)
    assert dataclasses.asdict(tether.inspect(frame))["user"] == user
    assert tether.inspect(frame) == tether.inspect(frame)
