"""docs/format.md checked the way an outsider would: an independent reader against the real frames.

tests/spec_reader/ is a frame reader written from docs/format.md alone (no
import of tether). These tests feed it every golden frame and fresh frames
from `tether.dumps`, `tether.stream` and the worker's compact messages, and
require it to find the values those were made from and the header fields
`tether.inspect` reports; and that a byte flipped where the spec says a
checksum covers it is refused by both readers.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import pathlib
import struct
import warnings
import zlib
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

import tether
from golden_values import streams as golden_streams
from golden_values import values as golden_values
from spec_reader import etf as setf
from spec_reader import frame as sframe
from spec_reader import stream as sstream
from spec_reader.formats import decode_payload
from spec_reader.formats import loads as spec_loads

GOLDEN = pathlib.Path(__file__).parent / "golden"
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


# ---------------------------------------------------------------- helpers


def as_spec(value: Any) -> Any:
    """A Python value as the independent ETF reader represents it (tether's own types mapped over)."""
    if isinstance(value, tether.Atom):
        return setf.SAtom(str(value))
    if isinstance(value, tether.ImproperList):
        return setf.SImproper(tuple(as_spec(v) for v in value.items), as_spec(value.tail))
    if isinstance(value, tether.BitBinary):
        return setf.SBits(bytes(value.data), value.bits)
    if isinstance(value, dict):
        return {as_spec(k): as_spec(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_spec(v) for v in value]
    if isinstance(value, tuple):
        return tuple(as_spec(v) for v in value)
    return value


def assert_same(got: Any, want: Any) -> None:
    """Equal values of the same kind (arrays: dtype, shape, order-free equality; tables: content)."""
    if isinstance(want, np.ndarray):
        assert isinstance(got, np.ndarray) and got.dtype == want.dtype and got.shape == want.shape
        assert got.tobytes(order="C") == want.tobytes(order="C")
    elif isinstance(want, np.generic):
        assert type(got) is type(want) and got.tobytes() == want.tobytes()
    elif isinstance(want, (pa.Table, pa.RecordBatch)):
        want_t = want if isinstance(want, pa.Table) else pa.Table.from_batches([want])
        assert got.equals(want_t)
    elif isinstance(want, memoryview):
        assert isinstance(got, memoryview) and got.format == want.format and got.shape == want.shape
        assert got.tobytes() == want.tobytes()
    elif isinstance(want, float) and want != want:
        assert isinstance(got, float) and got != got
    else:
        assert type(got) is type(want) and got == want, (got, want)


def created_at(us: int) -> dt.datetime:
    return EPOCH + dt.timedelta(microseconds=us)


def assert_matches_inspect(buf: bytes, f: sframe.Frame) -> None:
    """Every header and metadata field the spec defines, against tether.inspect."""
    info = tether.inspect(buf)
    h = f.header
    assert (info.frame_version, info.format_id, info.schema_version) == (1, h["format_id"], h["schema_version"])
    assert info.format == f.meta["format"]
    assert info.compression == sframe.COMPRESSION_NAMES[h["compression_id"]]
    assert info.compression_level == h["compression_level"]
    assert info.checksum == sframe.CHECKSUM_NAMES[h["checksum_kind"]]
    assert info.payload_checksum == h["payload_checksum"] and info.flags == h["flags"]
    assert (info.metadata_size, info.payload_offset) == (h["metadata_length"], f.payload_offset)
    assert (info.payload_size, info.raw_size, info.frame_size) == (h["payload_length"], h["raw_length"], len(buf))
    assert info.created_at == created_at(f.meta["created_at"])
    assert (info.producer, info.type, info.lineage) == (f.meta["producer"], f.type, f.meta["lineage"])
    assert info.user == sframe.user_metadata(f.meta)
    assert info.stream == f.meta.get("stream", {})


def patch_header(buf: bytes, **fields: Any) -> bytes:
    """Rewrite header fields and re-seal the header CRC, as a writer with other values would."""
    h = dict(zip((n for n, _ in sframe.HEADER_FIELDS), sframe.HEADER.unpack_from(buf)))
    h.update(fields)
    head = bytearray(sframe.HEADER.pack(*h.values()))
    struct.pack_into("<I", head, sframe.CRC_SPAN, zlib.crc32(bytes(head[: sframe.CRC_SPAN])))
    return bytes(head) + bytes(buf[sframe.HEADER_SIZE :])


def refused_by_both(buf: bytes, what: str, tether_error: type = tether.TetherError) -> None:
    with pytest.raises(sframe.SpecError) as mine:
        spec_loads(buf)
    assert mine.value.what == what
    with pytest.raises(tether_error):
        tether.loads(buf, allow_pickle=True)


def dumps(value: Any, **kw: Any) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return tether.dumps(value, **kw)


# ---------------------------------------------------------------- golden frames


def _sparse_value(v: dict) -> Any:
    import scipy.sparse as sp

    c = v["components"]
    if v["layout"] == "coo":
        return sp.coo_array((c["data"], tuple(c["coords"])), shape=v["shape"])
    cls = sp.csr_array if v["layout"] == "csr" else sp.csc_array
    return cls((c["data"], c["indices"], c["indptr"]), shape=v["shape"])


PY_GOLDEN = golden_values()


@pytest.mark.parametrize("name", sorted(PY_GOLDEN))
def test_python_golden_frames_read_from_the_spec(name):
    buf = (GOLDEN / f"{name}.tthr").read_bytes()
    f = sframe.read_frame(buf)
    assert_matches_inspect(buf, f)
    value, kw = PY_GOLDEN[name]
    got = decode_payload(f)
    if f.format_name == "sparse":
        assert (_sparse_value(got).toarray() == value.toarray()).all() and got["kind"] == "scipy-array"
    elif f.format_name == "etf":
        assert got == as_spec(value)
    else:
        assert_same(got, value)
    assert sframe.user_metadata(f.meta) == kw.get("metadata", {})
    sframe.check_atoms(f.meta)


def test_beam_golden_frames_read_from_the_spec():
    from test_golden_beam import EXPECTED

    for name, (value, fields) in EXPECTED.items():
        buf = (GOLDEN / "beam" / f"{name}.tthr").read_bytes()
        f = sframe.read_frame(buf)
        assert_matches_inspect(buf, f)
        got = decode_payload(f)
        if isinstance(value, np.ndarray):
            assert_same(got, value)
        else:
            assert got == as_spec(value), name
        own = {"producer": "tether-beam/0.1.0", "node": "nonode@nohost", "format": f.format_name}
        assert f.meta["lineage"] == [own]
        sframe.check_atoms(f.meta)
        assert sframe.user_metadata(f.meta) == fields["user"] and f.type == fields["type"]


def test_evolution_golden_frames_parse_to_their_payload():
    """A user format (id >= 128): the spec reads header and metadata, the payload is the format's own."""
    for path in sorted((GOLDEN / "evolution").glob("*.tthr")):
        buf = path.read_bytes()
        f = sframe.read_frame(buf)
        assert f.header["format_id"] >= 128 and f.format_name == "ticks"
        assert f.header["schema_version"] == int(path.stem.split("_")[1][1:])
        assert len(sframe.decompress(f)) == f.header["raw_length"]
        assert_matches_inspect(buf, f)


@pytest.mark.parametrize("name", sorted(golden_streams()))
def test_golden_streams_read_from_the_spec(name):
    chunks, _ = golden_streams()[name]
    buf = (GOLDEN / f"{name}.tthrs").read_bytes()
    got = sstream.read_stream(buf)
    values = list(got.chunks)
    if len(chunks) == 1 and len(values) > 1:  # one large write may span several raw chunks
        values = [b"".join(bytes(v) for v in values)]
    assert len(values) == len(chunks)
    for g, want in zip(values, chunks):
        if isinstance(want, bytes):
            assert bytes(g) == want
        elif isinstance(want, dict):
            assert g == as_spec(want)
        else:
            assert_same(g, want)


# ---------------------------------------------------------------- fresh frames from tether.dumps


def _typed_view() -> memoryview:
    return memoryview(np.arange(6, dtype="<i4").tobytes()).cast("i", (2, 3))


FRESH: dict[str, Any] = {
    "bytes": b"\x00fresh\xff" * 40,
    "empty_bytes": b"",
    "bytearray": bytearray(b"xy" * 30),
    "memoryview": memoryview(b"abcd" * 30),
    "typed_memoryview": _typed_view(),
    "int_zero": 0,
    "int_minus_128": -128,
    "int_128": 128,
    "int_huge": -(2**200) + 7,
    "true": True,
    "none": None,
    "float": -1.25e-300,
    "nan": float("nan"),
    "nan_in_data": {"loss": float("nan"), "r": [float("inf"), (float("-inf"), 1)]},
    "str": "grüße ✓ " * 20,
    "empty_str": "",
    "nested": {"a": [1, 2.5, "x", b"y", (1, (2, [3]))], "b": {"c": None, "d": False}, "n": -(2**70)},
    "atoms": {tether.Atom("k"): (tether.Atom("ok"), tether.ImproperList([1], tether.Atom("t")))},
    "tuple": (1, ("two", b"three")),
    "long_list": list(range(300)),
    "small_int_list": [1, 2, 3, 255],
    "f8": np.linspace(-1, 1, 500),
    "f4_F": np.asfortranarray(np.arange(60, dtype="<f4").reshape(6, 10)),
    "i2_be": np.arange(-50, 50, dtype=">i2"),
    "u1": np.arange(200, dtype="u1"),
    "bool": np.array([True, False, True]),
    "c8": np.array([1 + 2j, -3j], dtype="<c8"),
    "f2": np.arange(9, dtype="<f2"),
    "strided": np.arange(40, dtype="<i8")[::3],
    "zero_d": np.array(7, dtype="<u4"),
    "np_scalar": np.float32(3.5),
    "unicode": np.array(["ab", "cdé"]),
    "datetime": np.array(["2024-01-02", "1999-12-31"], dtype="M8[D]"),
    "struct_sub": np.zeros(3, dtype=[("x", "<f4", (2,)), ("y", "<i8")]),
    "struct_padded": np.zeros(2, dtype=np.dtype({"names": ["a", "b"], "formats": ["<i1", "<f8"], "offsets": [0, 8]})),
    "table": pa.table({"id": pa.array(range(50), pa.int64()), "s": ["x", None] * 25, "f": [0.5] * 50}),
    "batch": pa.record_batch({"a": pa.array([1, 2, 3], pa.int32())}),
}


def _fresh_cases() -> list:
    cases = []
    for name in FRESH:
        for comp in ("none", "lz4", "zstd", "gzip"):
            for ck in ("auto", "xxh3-64", False):
                if comp != "none" and ck is False and name not in ("f8", "nested"):
                    continue  # keep the matrix small: every codec still meets every checksum kind
                cases.append((name, comp, ck))
    return cases


@pytest.mark.parametrize(("name", "comp", "ck"), _fresh_cases())
def test_fresh_frames_read_from_the_spec(name, comp, ck):
    value = FRESH[name]
    buf = dumps(value, compression=comp, checksum=ck)
    f = sframe.read_frame(buf)
    assert_matches_inspect(buf, f)
    want_kind = {"auto": sframe.CHECKSUM_CRC32, "xxh3-64": sframe.CHECKSUM_XXH3, False: sframe.CHECKSUM_NONE}[ck]
    assert f.header["checksum_kind"] == want_kind
    got = decode_payload(f)
    if f.format_name == "etf":
        assert f.type["binaries"] == "tagged"
        # NaN is not equal to itself: plain data with NaN compares by its repr (types and values, exactly).
        assert (repr(got) == repr(as_spec(value))) if name == "nan_in_data" else got == as_spec(value)
    else:
        assert_same(got, value)
    if isinstance(value, np.ndarray) and f.format_name == "ndarray":
        assert f.type["order"] == ("F" if value.flags.f_contiguous and not value.flags.c_contiguous else "C")
    sframe.check_atoms({k: v for k, v in f.meta.items() if k != "user"})


def test_scalar_payloads_byte_for_byte():
    """§4 scalar: int two's complement LE of minimal length (one byte for 0), float binary64 LE."""
    cases = {0: b"\x00", -1: b"\xff", 127: b"\x7f", 128: b"\x80\x00", -129: b"\x7f\xff", 2.5: struct.pack("<d", 2.5),
             True: b"\x01", None: b"", "é": "é".encode()}
    for value, payload in cases.items():
        f = sframe.read_frame(dumps(value, format="scalar"))
        assert f.stored == payload, value


def test_byte_shuffle_filter():
    """§5 filter 1: large numeric payloads compress shuffled; the spec's transposition undoes it."""
    seen = set()
    for dtype in ("<f8", "<f4", "<i2"):
        value = (np.sin(np.arange(40_000)) * 1000).astype(dtype)
        for comp in ("lz4", "zstd", "gzip"):
            f = sframe.read_frame(dumps(value, compression=comp))
            h = f.header
            if h["filter_id"] == sframe.FILTER_SHUFFLE:
                seen.add(h["filter_size"])
                assert h["compression_id"] != sframe.COMP_NONE and h["raw_length"] % h["filter_size"] == 0
                assert sframe.content_size(h["compression_id"], f.stored) in (None, h["raw_length"])
            assert_same(decode_payload(f), value)
    assert seen == {8, 4, 2}
    data = bytes(range(24))
    assert sframe.shuffle(data, 4)[:6] == bytes([0, 4, 8, 12, 16, 20])
    assert sframe.unshuffle(sframe.shuffle(data, 8), 8) == data


def test_reader_beam_frames_use_only_what_the_beam_reads():
    """§5 reader="beam": gzip or none, no filter, row-major ndarrays, no Arrow IPC compression."""
    f_order = np.asfortranarray(np.arange(40_000, dtype="<f8").reshape(200, 200) % 7)
    for value in (f_order, pa.table({"a": np.arange(5000) % 3}), b"abc" * 20_000):
        buf = dumps(value, compression="auto", transport="network", reader="beam")
        f = sframe.read_frame(buf)
        assert f.header["compression_id"] in (sframe.COMP_NONE, sframe.COMP_GZIP)
        assert f.header["filter_id"] == 0 and "ipc_compression" not in f.type
        if f.format_name == "ndarray":
            assert f.type["order"] == "C"
        if f.header["compression_id"] == sframe.COMP_GZIP:
            assert sframe.gzip_member_count(f.stored) == 1
        assert_same(decode_payload(f), value)


def test_checksum_auto_rule():
    """§1: CRC-32 for payloads up to 1 MiB, compressed ones, and larger ones on network/disk/stream."""
    mib = 1 << 20
    kind = lambda **kw: sframe.read_frame(dumps(**kw)).header["checksum_kind"]  # noqa: E731
    small, large = os.urandom(mib), os.urandom(mib + 1)
    assert kind(value=small) == sframe.CHECKSUM_CRC32
    assert kind(value=large) == sframe.CHECKSUM_NONE
    assert kind(value=large, transport="shm") == sframe.CHECKSUM_NONE
    for transport in ("network", "disk", "stream"):
        assert kind(value=large, transport=transport) == sframe.CHECKSUM_CRC32
    assert kind(value=b"a" * (3 * mib), compression="zstd") == sframe.CHECKSUM_CRC32
    assert kind(value=large, checksum=True) == sframe.CHECKSUM_CRC32


# ---------------------------------------------------------------- metadata (§2)


def test_metadata_keys_lineage_and_user():
    user = {"s": "x", "b": b"y", "empty": b"", "n": None, "t": (1, 2), "l": [1.5, True], "big": 2**70}
    first = dumps(b"data", metadata=user, lineage=[{"step": "load", "src": "x.csv"}])
    f = sframe.read_frame(first)
    assert {"format", "schema", "created_at", "producer", "type", "lineage", "user"} == set(f.meta)
    assert f.meta["user"] == user and f.meta["producer"].startswith("tether-py/")
    own = {"producer": f.meta["producer"], "pid": os.getpid(), "format": "raw"}
    assert f.meta["lineage"] == [own, {"step": "load", "src": "x.csv"}]
    meta_bytes = first[64 : 64 + f.header["metadata_length"]]
    assert bytes([77, 0, 0, 0, 1, 8]) + b"y" in meta_bytes and bytes([77, 0, 0, 0, 0, 0]) in meta_bytes
    child = sframe.read_frame(dumps(b"more", parent=tether.inspect(first), step="normalize"))
    entry = dict(own, step="normalize", at=child.meta["created_at"])
    assert child.meta["lineage"] == [entry] + f.meta["lineage"]


@pytest.mark.parametrize("kind", ["zlib", "none"])
def test_user_packed_metadata(kind):
    """§2.2: user metadata over 16 KiB travels packed; compressed only when it pays."""
    if kind == "zlib":
        user = {f"k{i}": "abc" * 100 for i in range(200)}
    else:
        user = {f"k{i}": os.urandom(200) for i in range(200)}
    buf = dumps(1, metadata=user)
    f = sframe.read_frame(buf)
    assert "user" not in f.meta and f.meta["user_packed"]["compression"] == kind
    assert f.meta["user_packed"]["encoding"] == "etf" and f.meta["user_packed"]["size"] > 16 * 1024
    assert sframe.user_metadata(f.meta) == user == tether.inspect(buf).user
    small = sframe.read_frame(dumps(1, metadata={"k": "v" * 100}))
    assert "user_packed" not in small.meta


def test_metadata_refuses_atoms():
    with pytest.raises(tether.TetherError, match=r"Atom at \$\.user\.a: .*pass the str 'never_seen_on_the_beam'"):
        dumps(b"x", metadata={"a": tether.Atom("never_seen_on_the_beam")})
    with pytest.raises(tether.TetherError, match=r"Atom at \$\.lineage\[1\]\.who"):
        dumps(b"x", lineage=[{"who": tether.Atom("me")}])
    plain = sframe.read_frame(dumps(b"x", metadata={"flags": [True, False, None]}))
    assert plain.meta["user"] == {"flags": [True, False, None]}  # the three atoms §2 allows


# ---------------------------------------------------------------- corruption and checks (§1)


def _frame_with_padding() -> bytes:
    buf = dumps(np.arange(100, dtype="<i4"), compression="none")
    f = sframe.read_frame(buf)
    assert f.payload_offset > 64 + f.header["metadata_length"], "no padding to flip"
    return buf


@pytest.mark.parametrize("where", ["header", "metadata", "padding", "payload", "payload_compressed"])
def test_flipped_byte_is_refused_where_the_spec_says(where):
    buf = dumps(b"x" * 5000, compression="zstd") if where == "payload_compressed" else _frame_with_padding()
    f = sframe.read_frame(buf)
    at = {"header": 9, "metadata": 70, "padding": 64 + f.header["metadata_length"], "payload": f.payload_offset + 5,
          "payload_compressed": len(buf) - 3}[where]
    bad = bytearray(buf)
    bad[at] ^= 0x10
    what = {"header": "header_crc32", "metadata": "metadata_crc32", "padding": "padding"}.get(where, "payload_checksum")
    refused_by_both(bytes(bad), what)


def test_payload_without_checksum_is_not_covered():
    buf = dumps(b"abcdef" * 10, checksum=False)
    bad = bytearray(buf)
    bad[-1] ^= 1
    assert spec_loads(bytes(bad)) == tether.loads(bytes(bad)) != tether.loads(buf)


def test_header_rules():
    base = dumps(b"hello world")
    refused_by_both(patch_header(base, frame_version=2), "frame_version", tether.UnsupportedVersionError)
    refused_by_both(patch_header(base, header_size=128), "header_size")
    refused_by_both(patch_header(base, flags=1 << 1), "required_flag", tether.UnsupportedVersionError)
    refused_by_both(patch_header(base, checksum_kind=3), "checksum_kind")
    refused_by_both(patch_header(base, compression_id=9), "compression_id")
    refused_by_both(patch_header(base, raw_length=12), "raw_length")
    refused_by_both(patch_header(base, filter_id=1, filter_size=4), "filter_id")
    refused_by_both(patch_header(base, filter_id=2), "filter_id")
    refused_by_both(patch_header(base, filter_size=4), "filter_size")
    refused_by_both(base + b"\x00", "trailing_bytes")
    refused_by_both(base[:-1], "truncated")
    refused_by_both(b"TTHX" + base[4:], "magic")
    # What a reader ignores: optional flags, reserved bytes, the checksum field without a kind, the level.
    for ok in (patch_header(base, flags=1 << 16), patch_header(base, reserved=b"\x01" * 7),
               patch_header(base, compression_level=5),
               patch_header(dumps(b"q", checksum=False), payload_checksum=123)):
        assert spec_loads(ok) == tether.loads(ok)


def _restore(buf: bytes, stored: bytes) -> bytes:
    """The frame with another stored payload (and a checksum that matches it)."""
    f = sframe.read_frame(buf)
    body = buf[: f.payload_offset] + stored
    return patch_header(body, payload_length=len(stored), payload_checksum=zlib.crc32(stored))


def test_codec_framing():
    """§5: one LZ4 frame / Zstandard frame / gzip member; the content size is optional, raw_length bounds."""
    import gzip

    import lz4.frame
    import zstandard

    raw = bytes(range(256)) * 40
    lz, zs, gz = (dumps(raw, compression=c) for c in ("lz4", "zstd", "gzip"))
    for buf, stored in ((lz, lz4.frame.compress(raw, store_size=False)),
                        (zs, zstandard.ZstdCompressor(write_content_size=False).compress(raw))):
        ok = _restore(buf, stored)
        assert sframe.content_size(ok[10], stored) is None
        assert spec_loads(ok) == tether.loads(ok) == raw
    halves = (raw[:100], raw[100:])
    for buf, two in ((lz, b"".join(lz4.frame.compress(h) for h in halves)),
                     (zs, b"".join(zstandard.ZstdCompressor().compress(h) for h in halves)),
                     (gz, b"".join(gzip.compress(h) for h in halves))):
        bad = _restore(buf, two)
        with pytest.raises(sframe.SpecError):
            spec_loads(bad)
        with pytest.raises(tether.DecodeError):
            tether.loads(bad)


def test_raw_length_bounds_decompression():
    raw = bytes(range(256)) * 40
    for comp in ("lz4", "zstd", "gzip"):
        buf = dumps(raw, compression=comp)
        assert sframe.read_frame(buf).header["compression_id"] != sframe.COMP_NONE
        for delta in (-1, 1):
            bad = patch_header(buf, raw_length=len(raw) + delta)
            with pytest.raises(sframe.SpecError):
                spec_loads(bad)
            with pytest.raises(tether.DecodeError):
                tether.loads(bad)


# ---------------------------------------------------------------- streams (§9)


def _stream(checksum: str = "crc32", compression: str = "none") -> tuple[bytes, list]:
    sink = io.BytesIO()
    values = [{"header": True}, b"0123456789" * 50, np.arange(12, dtype="<f8").reshape(3, 4), "tail"]
    with tether.stream.StreamWriter(sink, chunk_size=1 << 12, checksum=checksum, compression=compression) as w:
        for v in values:
            w.write(v)
        w.write_buffer(bytes(range(256)) * 40)  # split into chunks of at most chunk_size
    return sink.getvalue(), values


@pytest.mark.parametrize(("checksum", "compression"), [("crc32", "none"), ("xxh3-64", "lz4"), ("crc32", "zstd"),
                                                       ("crc32", "gzip")])
def test_fresh_stream_read_from_the_spec(checksum, compression):
    buf, values = _stream(checksum, compression)
    got = sstream.read_stream(buf)
    frames = [sframe.read_frame(b) for b in sstream.split_frames(buf)]
    assert got.chunks[0] == as_spec(values[0]) and bytes(got.chunks[1]) == values[1]
    assert_same(got.chunks[2], values[2])
    assert got.chunks[3] == values[3]
    assert b"".join(bytes(c) for c in got.chunks[4:]) == bytes(range(256)) * 40
    assert all(len(c) <= 1 << 12 for c in got.chunks[4:])
    kind = sframe.CHECKSUM_XXH3 if checksum == "xxh3-64" else sframe.CHECKSUM_CRC32
    assert all(f.header["checksum_kind"] == kind and f.header["flags"] & sframe.FLAG_STREAM for f in frames)
    assert frames[-1].format_name == "scalar" and frames[-1].type == {"kind": "none"}
    assert got.end["count"] == len(got.chunks) == len(frames) - 1
    digest = 0
    for seq, f in enumerate(frames[:-1]):
        digest = sstream.chain(digest, seq, f.header["payload_checksum"])
    assert got.end["digest"] == digest
    reader = tether.stream.StreamReader(buf)
    assert len(list(reader)) == len(got.chunks)
    assert reader.checkpoint().as_dict() == {"stream_id": got.stream_id, "seq": len(got.chunks),
                                             "offset": got.end["bytes"], "digest": digest, "ended": True}


def _rejoin(frames: list[bytes]) -> bytes:
    return b"".join(frames)


def _rewrite_stream_map(frame_bytes: bytes, **changes: Any) -> bytes:
    f = sframe.read_frame(frame_bytes)
    meta = dict(f.meta, stream=dict(f.meta["stream"], **changes))
    mb = tether.etf.encode(meta)
    p = sframe.align64(64 + len(mb))
    body = frame_bytes[:64] + mb + b"\x00" * (p - 64 - len(mb)) + f.stored
    return patch_header(body, metadata_length=len(mb), metadata_crc32=zlib.crc32(mb))


def test_stream_tampering_is_refused_by_both():
    buf, _ = _stream()
    frames = sstream.split_frames(buf)
    cases = {
        "out_of_order": _rejoin(frames[:2] + frames[1:]),  # chunk 1 again
        "missing_chunk": _rejoin([frames[0]] + frames[2:]),
        "bad_offset": _rejoin([frames[0], _rewrite_stream_map(frames[1], offset=3)] + frames[2:]),
        "no_checksum": _rejoin([frames[0], patch_header(frames[1], checksum_kind=0, payload_checksum=0)] + frames[2:]),
        "incomplete": _rejoin(frames[:-1]),
        "end_mismatch": _rejoin(frames[:-1] + [_rewrite_stream_map(frames[-1], digest=1)]),
        "foreign_chunk": _rejoin([frames[0], _rewrite_stream_map(frames[1], id="0" * 32)] + frames[2:]),
        "not_a_chunk": _rejoin([frames[0], patch_header(frames[1], flags=0)] + frames[2:]),
        "trailing_bytes": _rejoin(frames + [frames[0]]),
    }
    for what, bad in cases.items():
        with pytest.raises(sframe.SpecError) as mine:
            sstream.read_stream(bad)
        assert mine.value.what == what, (what, mine.value)
        with pytest.raises(tether.TetherError):
            list(tether.stream.StreamReader(bad))


def test_stream_resume_continues_the_chain():
    first = io.BytesIO()
    w = tether.stream.StreamWriter(first)
    w.write(b"one")
    checkpoint = w.write(b"two")
    rest = io.BytesIO()
    with tether.stream.StreamWriter(rest, resume=checkpoint) as w2:
        w2.write(b"three")
    got = sstream.read_stream(first.getvalue() + rest.getvalue())
    assert [bytes(c) for c in got.chunks] == [b"one", b"two", b"three"]
    assert sframe.read_frame(sstream.split_frames(rest.getvalue())[0]).meta["stream"]["seq"] == 2


# ---------------------------------------------------------------- compact messages (§8)


COMPACT_TERMS = [
    (tether.Atom("reply"), 3, (tether.Atom("ok"), {"a": [1, 2.5, b"x"]})),
    (tether.Atom("call"), 1, b"mod", b"fun", [1, [2, 3]], {}),
    2**80, [], None, "str", b"bytes", list(range(1, 30)),
]


def _beam_view(value: Any) -> Any:
    """§8: binaries of either tag arrive as the BEAM's (bytes)."""
    if isinstance(value, str) and not isinstance(value, tether.Atom):
        return value.encode()
    if isinstance(value, dict):
        return {_beam_view(k): _beam_view(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_beam_view(v) for v in value)
    return as_spec(value)


def test_compact_messages_read_from_the_spec():
    from tether import worker

    for term in COMPACT_TERMS:
        msg = worker.compact(term)
        assert msg[:4] == b"TTMC" and msg[8] == setf.VERSION
        assert sstream.read_compact(msg) == _beam_view(term)
        assert struct.unpack_from("<I", msg, 4)[0] == zlib.crc32(msg[8:])


def test_compact_messages_written_from_the_spec():
    from tether import worker

    body = tether.etf.encode((tether.Atom("echo"), [1, b"x"]))
    msg = b"TTMC" + struct.pack("<I", zlib.crc32(body)) + body
    assert worker.read_compact(msg) == (tether.Atom("echo"), [1, b"x"])
    bad = bytearray(msg)
    bad[-1] ^= 1
    for reader in (sstream.read_compact, worker.read_compact):
        with pytest.raises((sframe.SpecError, tether.TetherError)):
            reader(bytes(bad))
    trailing = body + b"\x00"
    msg = b"TTMC" + struct.pack("<I", zlib.crc32(trailing)) + trailing
    with pytest.raises(setf.ETFError):
        sstream.read_compact(msg)
    with pytest.raises(tether.TetherError):
        worker.read_compact(msg)
