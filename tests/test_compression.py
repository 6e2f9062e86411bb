"""Compression: every compressor with every format, the auto policy, bombs, corruption."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import zlib

import numpy as np
import pyarrow as pa
import pytest

import tether
from tether import compression
from tether.frame import Header
from tether.frame import _meta

rng = np.random.default_rng(1234)
VALUES = {
    "raw": b"abc" * 50_000,
    "scalar": "text " * 20_000,
    "ndarray": np.cumsum(rng.integers(-2, 3, 100_000)).astype("f8"),
    "ndarray_F": np.asfortranarray(np.arange(60_000, dtype="i4").reshape(200, 300)),
    "structured": np.zeros(10_000, dtype=[("a", "<i4"), ("b", "S8")]),
    "etf": [[i, f"row{i}", (i, b"x")] for i in range(5000)],
    "arrow": pa.table({"id": np.arange(20_000), "name": [f"row{i % 100}" for i in range(20_000)]}),
    "pickle": {frozenset({1, 2}): "x" * 100_000},
}


@pytest.mark.parametrize("comp", compression.names())
@pytest.mark.parametrize("name", sorted(VALUES))
def test_every_compressor_with_every_format(comp, name):
    value = VALUES[name]
    frame = tether.dumps(value, compression=comp)
    info = tether.inspect(frame)
    if name == "arrow" and comp in ("lz4", "zstd"):
        # Arrow compresses each buffer inside the IPC stream; readers still get Arrow buffers.
        assert info.compression == "none" and info.type["ipc_compression"] == comp
        assert tether.last_decision().compression == f"arrow-ipc/{comp}"
        assert tether.loads(frame).equals(value)
        return
    assert info.compression == comp
    if comp != "none":
        assert info.payload_size < info.raw_size and info.checksum == "xxh3-64"
    out = tether.loads(frame, allow_pickle=True)
    if isinstance(value, pa.Table):
        assert out.equals(value)
    elif isinstance(value, np.ndarray):
        assert out.dtype == value.dtype and out.flags.f_contiguous == value.flags.f_contiguous
        np.testing.assert_array_equal(out, value)
    else:
        assert out == value


@pytest.mark.parametrize("comp", ["lz4", "zstd", "gzip"])
def test_levels_and_invalid_choices(comp):
    codec = compression.get(comp)
    for level in (codec.levels.start, codec.default_level, codec.levels.stop - 1):
        frame = tether.dumps(b"z" * 100_000, compression=comp, level=level)
        assert tether.inspect(frame).compression_level == level
    with pytest.raises(tether.ValidationError, match=f"Invalid level 99 for {comp}"):
        tether.dumps(b"x", compression=comp, level=99)


def test_invalid_compression_lists_choices():
    with pytest.raises(tether.ValidationError, match="Invalid compression 'lz5'. Valid options are: auto, gzip, lz4, none, zstd."):
        tether.dumps(b"x", compression="lz5")


def test_shuffle_used_when_it_helps():
    arr = VALUES["ndarray"]
    frame = tether.dumps(arr, compression="zstd")
    assert "byte-shuffled" in tether.last_decision().compression_reason
    assert frame[51] == 1 and frame[52] == 8
    np.testing.assert_array_equal(tether.loads(frame), arr)
    noise = rng.integers(0, 256, 200_000, dtype=np.uint8).view("<u2")
    tether.dumps(noise, compression="zstd")
    assert "byte-shuffled" not in tether.last_decision().compression_reason


# ---------------------------------------------------------------- the auto policy


def test_auto_policy_decisions():
    incompressible = os.urandom(4 << 20)
    compressible = b"the same log line again\n" * 200_000
    tiny = b"tiny" * 10

    tether.dumps(compressible, compression="auto")  # default transport stays on the host
    assert tether.last_decision().compression == "none"
    assert "stays on this host" in tether.last_decision().compression_reason

    tether.dumps(tiny, compression="auto", transport="network")
    assert tether.last_decision().compression == "none"
    assert "too small" in tether.last_decision().compression_reason

    tether.dumps(incompressible, compression="auto", transport="network")
    assert tether.last_decision().compression == "none"
    assert "incompressible" in tether.last_decision().compression_reason

    frame = tether.dumps(compressible, compression="auto", transport="network")
    assert tether.last_decision().compression in ("lz4", "zstd")
    assert tether.inspect(frame).compression == tether.last_decision().compression
    assert tether.loads(frame) == compressible

    frame = tether.dumps(compressible, compression="auto", transport="disk", bandwidth=1e6)
    assert tether.last_decision().compression in ("zstd", "gzip")  # slow link: ratio wins
    with pytest.raises(tether.ValidationError, match="bandwidth"):
        tether.dumps(compressible, compression="auto", transport="network", bandwidth=-1)


def test_compression_that_does_not_pay_falls_back_to_raw():
    frame = tether.dumps(os.urandom(100_000), compression="lz4")
    assert tether.inspect(frame).compression == "none"
    assert "not smaller" in tether.last_decision().compression_reason


# ---------------------------------------------------------------- corruption and bombs


def _frame(payload: bytes, comp: int, raw_length: int, *, fmt: str = "raw", filt: tuple[int, int] = (0, 0)) -> bytes:
    meta = _meta.encode({"format": fmt, "schema": 1, "type": {"kind": "bytes"}})
    h = Header(
        format_id=tether.formats.get(fmt).id, compression_id=comp, checksum_kind=0, flags=0,
        metadata_length=len(meta), metadata_crc32=zlib.crc32(meta), payload_length=len(payload),
        raw_length=raw_length, payload_checksum=0, schema_version=1, compression_level=0,
        filter_id=filt[0], filter_size=filt[1],
    )
    pad = (-(64 + len(meta))) % 64
    return h.pack() + meta + bytes(pad) + payload


@pytest.mark.parametrize("comp", ["lz4", "zstd", "gzip"])
def test_corrupted_compressed_payload_without_checksum_is_caught(comp):
    data = b"compressible text " * 10_000
    codec = compression.get(comp)
    packed = b"".join(codec.compress([memoryview(data)], len(data), codec.default_level))
    good = _frame(packed, codec.id, len(data))
    assert tether.loads(good) == data
    for pos in range(0, len(packed), max(1, len(packed) // 50)):
        broken = bytearray(packed)
        broken[pos] ^= 0x5A
        try:
            out = tether.loads(_frame(bytes(broken), codec.id, len(data)))
        except tether.TetherError:
            continue
        if out == data:
            continue  # a flip in a field that does not shape the output (e.g. gzip mtime)
        # A flip inside literal bytes can survive decompression; the default
        # checksum exists for exactly that, so with defaults it never goes unseen:
        with pytest.raises(tether.ChecksumError):
            frame = bytearray(tether.dumps(data, compression=comp))
            frame[-len(packed) + pos] ^= 0x5A
            tether.loads(bytes(frame))


BOMB = textwrap.dedent(
    """
    import resource, sys, zlib
    import lz4.frame, zstandard
    import tether
    sys.path.insert(0, {tests!r})
    from test_compression import _frame
    comp = {comp!r}
    size = 1 << 30  # 1 GiB of zeros
    if comp == "zstd":
        co = zstandard.ZstdCompressor(level=19).compressobj(size=size)
        chunk = bytes(1 << 24)
        packed = b"".join([co.compress(chunk) for _ in range(size >> 24)] + [co.flush()])
        cid = 2
    elif comp == "lz4":
        c = lz4.frame.LZ4FrameCompressor()
        chunk = bytes(1 << 24)
        packed = b"".join([c.begin()] + [c.compress(chunk) for _ in range(size >> 24)] + [c.flush()])
        cid = 1
    else:
        co = zlib.compressobj(9, zlib.DEFLATED, 31)
        chunk = bytes(1 << 24)
        packed = b"".join([co.compress(chunk) for _ in range(size >> 24)] + [co.flush()])
        cid = 3
    ratio = size / len(packed)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    errors = []
    # The header lies (claims 1 MiB), and an honest header exceeds the limit.
    for raw_length in (1 << 20, size):
        tether.set_limits(max_uncompressed_size=64 << 20)
        try:
            tether.loads(_frame(packed, cid, raw_length))
            errors.append("no error")
        except tether.TetherError as exc:
            errors.append(type(exc).__name__)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base
    print(int(ratio), peak // 1024, ",".join(errors))
    """
)


@pytest.mark.parametrize("comp", ["zstd", "lz4", "gzip"])
def test_decompression_bombs_end_in_typed_errors_with_bounded_memory(comp):
    tests = os.path.dirname(__file__)
    out = subprocess.run(
        [sys.executable, "-c", BOMB.format(comp=comp, tests=tests)], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    ratio, peak_mib, errors = out.stdout.split()
    assert errors in ("DecodeError,LimitError",), errors
    assert int(peak_mib) < 40, f"decoding a {ratio}:1 {comp} bomb raised peak RSS by {peak_mib} MiB"
    if comp == "zstd":
        assert int(ratio) >= 10_000
