"""Defects found by trial 20 (a Python data/ML user), each pinned by a test that failed before its fix.

1. An ndarray frame declaring dtype ``<U0`` (0 bytes an item) passed the payload-size check with a vast
   shape, then ``np.zeros`` built a ``<U1`` array of that shape: gigabytes from a 384-byte frame.
2. A sparse frame declaring a ``|S8`` data component, or float ``coords``, loaded and then failed in
   scipy or pydata sparse with bare errors.
3. ``dumps`` wrote user metadata its own reader refuses under ``Limits.max_metadata_size``.
4. ``RegionPool.release`` of a read-only attachment raised a bare ``TypeError`` from mmap.
"""

from __future__ import annotations

import re
import struct
import tracemalloc

import numpy as np
import pytest

import tether
from tether import Limits, etf
from tether.shm import Region, RegionPool

from fuzz import mutate

HEADER_SIZE = 64


def _forged(frame: bytes, type_info: dict, payload: bytes | None = None) -> bytes:
    """``frame`` with its metadata's ``type`` (and payload) replaced and every checksum recomputed, as any peer can."""
    mlen = struct.unpack_from("<I", frame, 16)[0]
    meta = etf.decode(frame[HEADER_SIZE : HEADER_SIZE + mlen], binaries="tagged", structs=False)
    start = (HEADER_SIZE + mlen + 63) & ~63
    if payload is None:
        payload = frame[start : start + struct.unpack_from("<Q", frame, 24)[0]]
    meta["type"] = type_info
    block = etf.encode(meta)
    head = bytearray(frame[:HEADER_SIZE])
    struct.pack_into("<IIQQ", head, 16, len(block), 0, len(payload), len(payload))
    out = bytearray(head + block + bytes(-(HEADER_SIZE + len(block)) % 64) + payload)
    mutate.fix(out)
    return bytes(out)


def _ndarray(dtype, shape: list) -> bytes:
    """An empty-payload ndarray frame declaring ``dtype`` and ``shape``."""
    return _forged(tether.dumps(np.zeros(0, "u1")), {"dtype": dtype, "shape": shape, "order": "C"}, b"")


# ---------------------------------------------------------------- 1. ndarray dtypes of no bytes


@pytest.mark.parametrize("descr", ["<U0", "|S0", ">U0"])
@pytest.mark.parametrize("count", [0, 3, 2**28, 2**34])
def test_an_unsized_string_dtype_is_refused_whatever_the_count(descr, count):
    # numpy gives no array such a dtype (it makes <U1 or |S1): no writer produces one.
    with pytest.raises(tether.DecodeError, match=re.escape(descr[1:]) + ".*no array has"):
        tether.loads(_ndarray(descr, [count]))


@pytest.mark.parametrize("descr", ["(0,)<f8", "(2,)<f8"])
def test_a_subarray_dtype_at_the_top_is_refused(descr):
    # numpy moves a subarray dtype's shape into the array's: an array never has one, so no writer writes one.
    payload = bytes(16 * 3) if descr.startswith("(2") else b""
    frame = _forged(tether.dumps(np.zeros(0, "u1")), {"dtype": descr, "shape": [3], "order": "C"}, payload)
    with pytest.raises(tether.DecodeError, match="subarray"):
        tether.loads(frame)


def test_a_sparse_component_of_an_unsized_dtype_is_refused():
    import scipy.sparse as sp

    frame = tether.dumps(sp.csr_matrix(np.eye(3)))
    info = tether.inspect(frame).type
    info["components"][0]["dtype"] = "<U0"
    info["components"][0]["nbytes"] = 0
    with pytest.raises(tether.DecodeError, match="no array has"):
        tether.loads(_forged(frame, info))


@pytest.mark.parametrize("dtype", [np.dtype([]), np.dtype("V0"), np.dtype([("a", "<f8", (0,))]),
                                   np.dtype([("a", "S0"), ("b", "<U0")])], ids=["no-fields", "V0", "f8x0", "S0-field"])
@pytest.mark.parametrize("shape", [(0,), (5,), (2, 3), (4, 0)])
def test_arrays_of_zero_sized_items_round_trip(dtype, shape):
    arr = np.zeros(shape, dtype)
    back = tether.loads(tether.dumps(arr))
    assert back.dtype == arr.dtype and back.shape == arr.shape and back.nbytes == 0


@pytest.mark.parametrize("value", [np.zeros(0, "U"), np.zeros(0, "S"), np.zeros((3, 0)), np.zeros((0, 2), "<M8[s]"),
                                   np.zeros(0, [("x", "<i4"), ("y", "U3")])])
def test_empty_arrays_keep_their_dtype_and_shape(value):
    back = tether.loads(tether.dumps(value))
    assert back.dtype == value.dtype and back.shape == value.shape


def test_a_vast_count_of_zero_sized_items_allocates_nothing():
    tracemalloc.start()
    try:
        back = tether.loads(_ndarray([], [2**40]))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert back.shape == (2**40,) and back.dtype == np.dtype([]) and peak < 1 << 20


@pytest.mark.parametrize("shape", [[2**62, 4], [2**40, 2**40], [3, 2**62]])
def test_a_count_past_what_numpy_indexes_is_a_limit_error(shape):
    # numpy's own count overflows there (to 0, or negative) without an error.
    with pytest.raises(tether.LimitError, match=r"dtype \[\] and shape .*elements"):
        tether.loads(_ndarray([], shape))


# ---------------------------------------------------------------- 2. sparse component dtypes


def _sparse(value, changes: dict) -> bytes:
    """``value``'s sparse frame with components changed as ``changes`` says (name: a descr to cast to, or a
    function of the array), the layout redone."""
    frame = tether.dumps(value)
    info = tether.inspect(frame).type
    mlen = struct.unpack_from("<I", frame, 16)[0]
    payload = frame[(HEADER_SIZE + mlen + 63) & ~63 :]
    out = bytearray()
    for c in info["components"]:
        arr = np.frombuffer(payload, c["dtype"], count=int(np.prod(c["shape"])), offset=c["offset"])
        change = changes.get(c["name"])
        if callable(change):
            arr = change(arr.reshape(c["shape"]).copy())
            c["shape"] = list(arr.shape)
        elif change is not None:
            arr = arr.astype(change)
            c["dtype"] = arr.dtype.str
        c["offset"], c["nbytes"] = len(out), arr.nbytes
        out += arr.tobytes() + bytes(-(len(out) + arr.nbytes) % 64)
    return _forged(frame, info, bytes(out))


def _scipy(kind: str):
    import scipy.sparse as sp

    return {"csr": sp.csr_matrix, "csc": sp.csc_array, "coo": sp.coo_array}[kind](np.eye(4))


def _pydata():
    sparse = pytest.importorskip("sparse")
    return sparse.COO.from_numpy(np.eye(4))


@pytest.mark.parametrize("kind", ["csr", "csc", "coo"])
@pytest.mark.parametrize("descr", ["|S8", "<U2", "<f2", "<M8[ns]", "<m8[s]", "|V8"])
def test_a_scipy_frame_with_data_scipy_cannot_hold_is_refused(kind, descr):
    frame = _sparse(_scipy(kind), {"data": descr})
    with pytest.raises(tether.DecodeError, match=r"component 'data' has dtype .*bool, integer, float"):
        tether.loads(frame)


@pytest.mark.parametrize("descr", ["<f8", "<f4", "|b1", "<c16"])
@pytest.mark.parametrize("kind,names", [("csr", ("indices", "indptr")), ("coo", ("coords",)), ("pydata", ("coords",))])
def test_index_components_that_are_not_integers_are_refused(kind, names, descr):
    value = _pydata() if kind == "pydata" else _scipy(kind)
    frame = _sparse(value, dict.fromkeys(names, descr))
    with pytest.raises(tether.DecodeError, match=rf"component '{names[0]}' has dtype .*integer"):
        tether.loads(frame)


def test_the_reproducer_frames_are_refused_on_load():
    import scipy.sparse as sp

    frame = tether.dumps(sp.csr_matrix(np.eye(4)))
    info = tether.inspect(frame).type
    info["components"][0]["dtype"] = "|S8"  # same item size: only the metadata changes
    with pytest.raises(tether.DecodeError, match="'data'"):
        tether.loads(_forged(frame, info))
    frame = tether.dumps(_pydata())
    info = tether.inspect(frame).type
    info["components"][1]["dtype"] = "<f8"
    with pytest.raises(tether.DecodeError, match="'coords'"):
        tether.loads(_forged(frame, info))


@pytest.mark.parametrize("descr", ["|S3", "<U2", "<f2", "<M8[s]", "<m8[s]", "|V4", ">f8", "<c8", "|b1"])
def test_pydata_keeps_every_data_dtype_it_can_hold(descr):
    sparse = pytest.importorskip("sparse")
    dense = np.zeros((3, 3), descr)
    dense[0, 1] = np.ones(1, "u1").astype(descr)[0] if dense.dtype.kind not in "SUV" else b"\x01"
    value = sparse.COO.from_numpy(dense)
    back = tether.loads(tether.dumps(value))
    assert back.dtype == value.dtype and (back.todense() == dense).all()


@pytest.mark.parametrize("descr", ["|u1", "<i2", "<u4", "<u8", ">i8"])
def test_pydata_coords_of_any_integer_dtype_read(descr):
    frame = _sparse(_pydata(), {"coords": descr})
    assert (tether.loads(frame).todense() == np.eye(4)).all()


@pytest.mark.parametrize("descr", ["<f2", "|S3"])
def test_pydata_data_scipy_cannot_hold_says_to_read_it_as_pydata(descr):
    frame = _sparse(_pydata(), {"data": descr})
    with pytest.raises(tether.DecodeError, match="into='pydata'"):
        tether.loads(frame, into="scipy")
    assert tether.loads(frame).dtype == np.dtype(descr)


@pytest.mark.parametrize("kind", ["csr", "csc", "coo"])
@pytest.mark.parametrize("descr", [">f8", ">c16", ">i4", ">u2"])
def test_a_scipy_frame_from_a_big_endian_writer_reads(kind, descr):
    # A big-endian host writes its native byte order; scipy holds native data only.
    frame = _sparse(_scipy(kind), {"data": descr})
    back = tether.loads(frame)
    assert back.dtype == np.dtype(descr).newbyteorder("=") and (back.toarray() == np.eye(4)).all()


@pytest.mark.parametrize("kind", ["csr", "csc", "coo"])
@pytest.mark.parametrize("descr", ["?", "i1", "u1", "<i2", "<u2", "i4", "u4", "i8", "u8", "<f4", "<f8", "g",
                                   "<c8", "<c16", "G"])
def test_every_scipy_data_dtype_round_trips(kind, descr):
    value = _scipy(kind).astype(descr)
    back = tether.loads(tether.dumps(value))
    assert type(back) is type(value) and back.dtype == value.dtype and (back.toarray() == value.toarray()).all()


# ---------------------------------------------------------------- 3. metadata the reader would refuse


def test_user_metadata_over_the_limit_is_refused_when_written():
    with pytest.raises(tether.EncodeError, match=r"Limits\.max_metadata_size \(16777216\).*set_limits"):
        tether.dumps(1, metadata={"k": "x" * (20 << 20)})


def test_user_metadata_at_the_limit_is_written_and_read():
    limit = 1 << 20
    tether.set_limits(max_metadata_size=limit)
    try:
        user = {"k": "x" * (limit - 64)}
        assert tether.inspect(tether.dumps(1, metadata=user)).user == user
        with pytest.raises(tether.EncodeError, match="max_metadata_size"):
            tether.dumps(1, metadata={"k": "x" * limit})
    finally:
        tether.set_limits(Limits())


@pytest.mark.parametrize("where", ["metadata", "lineage"])
def test_a_metadata_block_over_a_lowered_limit_is_refused_when_written(where):
    # Inline user metadata or a lineage: the block the header declares is what the reader bounds.
    tether.set_limits(max_metadata_size=4096)
    try:
        big = {"k": "v" * 5000}
        kwargs = {"metadata": big} if where == "metadata" else {"lineage": [big]}
        with pytest.raises(tether.EncodeError, match=r"Frame metadata is \d+ bytes.*max_metadata_size \(4096\)"):
            tether.dumps(1, **kwargs)
        with pytest.raises(tether.EncodeError, match="max_metadata_size"):
            tether.encode(np.arange(10_000.0), **kwargs)
    finally:
        tether.set_limits(Limits())


def test_what_dumps_writes_under_a_limit_reads_under_it():
    tether.set_limits(max_metadata_size=4096)
    try:
        frame = tether.dumps(1, metadata={"k": "v" * 3000})
        assert tether.inspect(frame).user == {"k": "v" * 3000}
    finally:
        tether.set_limits(Limits())


# ---------------------------------------------------------------- 4. a pool given a region it did not create


@pytest.mark.parametrize("readonly", [True, False])
def test_releasing_an_attachment_to_a_pool_is_a_region_error_and_changes_nothing(readonly):
    pool = RegionPool(sweep=False, prefault=False)
    own = pool.acquire(1000)
    try:
        tether.dump_into(b"abc", own)
        attached = Region.attach(own.name, readonly=readonly)
        with pytest.raises(tether.RegionError, match=r"attached.*pool\.acquire"):
            pool.release(attached)
        assert tether.loads(own) == b"abc" and pool.stats.released == 0 and pool.warm_bytes == 0
        attached.close()
    finally:
        pool.release(own)
        pool.close()
        tether.shm.drop_cache()  # the attach cache keeps the mappings: later tests count mapped bytes


def test_releasing_an_attachment_to_a_full_pool_leaves_its_file():
    # Over max_regions a released region is closed and unlinked: an attachment must never get that far.
    pool = RegionPool(sweep=False, prefault=False, max_regions=0)
    own = pool.acquire(1000)
    try:
        attached = Region.attach(own.name)
        with pytest.raises(tether.RegionError):
            pool.release(attached)
        assert Region.attach(own.name).capacity == own.capacity
    finally:
        pool.release(own)
        pool.close()
        tether.shm.drop_cache()


def _set(i: int, v: int):
    def change(arr):
        arr[i] = v
        return arr
    return change


def _wrapping(arr):
    arr[1:3] = np.iinfo(arr.dtype).max, -2  # rises, then falls by more than the dtype holds: np.diff wraps
    return arr


@pytest.mark.parametrize("kind", ["csr", "csc"])
@pytest.mark.parametrize("change", [_set(-1, -2147483635), _set(-1, -5), _set(0, 1), _set(1, 3), _set(-1, 99),
                                    lambda a: a[:-1], _wrapping],
                         ids=["last very negative", "last negative", "first not 0", "falling", "past the values",
                              "one entry short", "a fall that wraps"])
def test_an_indptr_that_is_not_a_running_count_is_refused_before_scipy_reads_by_it(kind, change):
    """A negative last entry passed scipy's check (it skips a matrix that says it holds nothing) and toarray()
    crashed the process."""
    frame = _sparse(_scipy(kind), {"indptr": change})
    with pytest.raises(tether.DecodeError, match="sparse indptr must rise from 0 to the 4 stored values"):
        tether.loads(frame)
