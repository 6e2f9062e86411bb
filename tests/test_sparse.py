"""The sparse format: scipy.sparse CSR/CSC/COO arrays and matrices, pydata sparse.COO; zero-copy reads."""

from __future__ import annotations

import pathlib
import subprocess
import sys
import warnings

import numpy as np
import pytest

import tether

sp = pytest.importorskip("scipy.sparse")

GOLDEN = pathlib.Path(__file__).parent / "golden"


def _in_frame(arr: np.ndarray, frame: bytes) -> bool:
    return np.shares_memory(arr, np.frombuffer(frame, "u1"))


SCIPY = [
    sp.random_array((40, 30), density=0.1, format="csr", random_state=1),
    sp.random_array((40, 30), density=0.1, format="csc", random_state=2, dtype="f4"),
    sp.coo_array(sp.random(8, 9, density=0.3, random_state=3)),
    sp.csr_matrix(sp.random(12, 5, density=0.4, random_state=4, dtype="i8")),
    sp.csc_matrix(np.eye(5, dtype="c16")),
    sp.coo_matrix(sp.random(6, 6, density=0.5, random_state=5)),
    sp.csr_array((3, 4), dtype="u2"),  # no stored values
]


@pytest.mark.parametrize("value", SCIPY, ids=lambda v: f"{type(v).__name__}-{v.dtype}")
def test_scipy_round_trip_is_zero_copy(value):
    frame = tether.dumps(value)
    assert tether.inspect(frame).format == "sparse"
    out = tether.loads(frame)
    assert type(out) is type(value) and out.format == value.format
    assert out.shape == value.shape and out.dtype == value.dtype
    np.testing.assert_array_equal(out.toarray(), value.toarray())
    parts = [out.data, *(out.coords if out.format == "coo" else (out.indices, out.indptr))]
    for part in parts:
        assert part.size == 0 or _in_frame(part, frame)
        assert not part.flags.writeable
    assert [p.dtype for p in parts[1:]] == [p.dtype for p in
                                           (value.coords if value.format == "coo" else (value.indices, value.indptr))]


def test_components_are_aligned():
    info = tether.inspect(tether.dumps(SCIPY[0])).type
    assert [c["name"] for c in info["components"]] == ["data", "indices", "indptr"]
    assert all(c["offset"] % 64 == 0 for c in info["components"])


def test_pydata_coo_round_trip_is_zero_copy():
    sparse = pytest.importorskip("sparse")
    value = sparse.random((6, 5, 4), density=0.2, random_state=7)
    frame = tether.dumps(value)
    out = tether.loads(frame)
    assert isinstance(out, sparse.COO) and out.shape == value.shape and out.dtype == value.dtype
    np.testing.assert_array_equal(out.todense(), value.todense())
    assert _in_frame(out.coords, frame) and _in_frame(out.data, frame)
    assert tether.inspect(frame).type["kind"] == "pydata"
    assert type(tether.loads(frame, into="numpy")) is np.ndarray


def test_pydata_fill_value_survives():
    sparse = pytest.importorskip("sparse")
    value = sparse.COO(np.array([[0, 2]]), np.array([1.0, 2.0]), shape=(4,), fill_value=np.nan)
    out = tether.loads(tether.dumps(value))
    assert np.isnan(out.fill_value)
    np.testing.assert_array_equal(out.todense(), value.todense())


def test_into_and_copy():
    value = SCIPY[0]
    frame = tether.dumps(value)
    np.testing.assert_array_equal(tether.loads(frame, into="numpy"), value.toarray())
    copied = tether.loads(frame, copy=True)
    assert copied.data.flags.writeable and not _in_frame(copied.data, frame)
    if pytest.importorskip("sparse"):
        assert tether.loads(frame, into="pydata").shape == value.shape
    with pytest.raises(tether.ValidationError, match="Valid options are: scipy, pydata, numpy"):
        tether.loads(frame, into="arrow")


def test_compressed_and_for_the_beam():
    value = sp.random_array((300, 300), density=0.05, format="csr", random_state=9)
    for kw in ({"compression": "lz4"}, {"compression": "zstd"}, {"reader": "beam", "compression": "gzip"}):
        out = tether.loads(tether.dumps(value, **kw))
        assert (out != value).nnz == 0


def test_big_endian_data_is_written_little_endian_for_the_beam():
    sparse = pytest.importorskip("sparse")  # scipy.sparse refuses byte-swapped dtypes; pydata's COO holds them
    value = sparse.COO(np.array([[0, 2]]), np.array([1.5, 2.5], dtype=">f8"), shape=(4,))
    assert tether.inspect(tether.dumps(value)).type["components"][0]["dtype"] == ">f8"
    frame = tether.dumps(value, reader="beam")
    assert tether.inspect(frame).type["components"][0]["dtype"] == "<f8"
    np.testing.assert_array_equal(tether.loads(frame).todense(), value.todense())


def test_a_damaged_type_info_is_a_decode_error():
    frame = tether.dumps(SCIPY[0], checksum="none")
    meta_ok = tether.inspect(frame).type
    # Reading is checked against the payload: a component moved past its end is refused, not read.
    fmt = tether.formats.get("sparse")
    bad = {**meta_ok, "components": [dict(c) for c in meta_ok["components"]]}
    bad["components"][1]["offset"] = 10**9
    ctx = tether.formats.DecodeContext()
    payload = memoryview(frame)[tether.inspect(frame).payload_offset:]
    with pytest.raises(tether.DecodeError, match="'indices' does not fit the payload"):
        fmt.decode(payload, bad, ctx)
    bad["components"] = bad["components"][:2]
    with pytest.raises(tether.DecodeError, match="data, indices, indptr"):
        fmt.decode(payload, bad, ctx)
    with pytest.raises(tether.DecodeError, match="no known layout"):
        fmt.decode(payload, {**meta_ok, "layout": "bsr"}, ctx)


def test_object_entries_fall_back_to_pickle_with_a_warning():
    sparse = pytest.importorskip("sparse")  # scipy.sparse refuses object dtypes; pydata's COO holds them
    value = sparse.COO(np.array([[0, 1]]), np.array(["a", None], dtype=object), shape=(3,))
    with pytest.raises(tether.EncodeError, match="hold Python objects"):
        tether.dumps(value, format="sparse")
    with pytest.warns(tether.FallbackWarning, match="object"):
        frame = tether.dumps(value)
    assert tether.inspect(frame).format == "pickle"


def test_golden_sparse_frame():
    out = tether.loads((GOLDEN / "sparse_csr.tthr").read_bytes())
    assert isinstance(out, sp.csr_array) and out.indices.dtype == np.int32
    assert out.toarray()[1, 5] == 3.25 and out.nnz == 4


def test_importing_tether_does_not_import_scipy():
    code = "import sys, tether; tether.loads(tether.dumps([1])); print('scipy' in sys.modules, 'sparse' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_auto_picks_sparse_and_says_why():
    enc = tether.encode(SCIPY[3])
    assert enc.decision.format == "sparse" and "scipy-matrix sparse csr" in enc.decision.reason
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert tether.loads(bytes(enc)).format == "csr"


_WRAPPED = (tether.TetherError, ValueError, TypeError, IndexError, KeyError, OverflowError)  # what loads types


def test_mutated_type_info_never_escapes_as_another_error():
    from hypothesis import given, strategies as st

    frame = tether.dumps(SCIPY[0], checksum="none")
    info = tether.inspect(frame)
    payload = memoryview(frame)[info.payload_offset:]
    fmt, ctx = tether.formats.get("sparse"), tether.formats.DecodeContext()
    field = st.sampled_from(["offset", "nbytes", "shape", "dtype", "name"])
    value = st.one_of(st.integers(-2**70, 2**70), st.lists(st.integers(-5, 2**40), max_size=3),
                      st.sampled_from(["<f8", "|O", "<i4", "V8", "x", "data", "indptr"]), st.none())

    @given(st.integers(0, 2), field, value)
    def check(which, key, new):
        comps = [dict(c) for c in info.type["components"]]
        comps[which][key] = new
        try:
            out = fmt.decode(payload, {**info.type, "components": comps}, ctx)
        except _WRAPPED:
            return
        assert out.shape == tuple(info.type["shape"])

    check()


def test_damaged_sparse_metadata_is_a_typed_error():
    # Found by the loads fuzz target: a component dtype numpy cannot parse raised SyntaxError.
    sp = pytest.importorskip("scipy.sparse")
    good = tether.dumps(sp.csr_array(np.eye(4)))
    info = tether.inspect(good)
    for bad in (",", "O", 7, None, "<f4"):
        frame = _with_component(good, info, dtype=bad)
        with pytest.raises(tether.DecodeError):
            tether.loads(frame)
    with pytest.raises(tether.DecodeError):
        tether.loads(_with_component(good, info, offset="0"))


def test_into_numpy_refuses_a_vast_declared_shape():
    sp = pytest.importorskip("scipy.sparse")
    m = sp.coo_array((np.array([1.0]), (np.array([0]), np.array([0]))), shape=(1 << 20, 1 << 20))
    frame = tether.dumps(m)
    assert tether.loads(frame).nnz == 1
    with pytest.raises(tether.LimitError, match="max_uncompressed_size"):
        tether.loads(frame, into="numpy")


def _with_component(frame: bytes, info, **changes) -> bytes:
    """The frame rebuilt with its first component's entries changed (CRCs recomputed, as a peer could)."""
    from tether import frame as tframe

    header, meta, payload = tframe.read(memoryview(frame), tether.get_limits())
    type_info = dict(meta["type"])
    comps = [dict(c) for c in type_info["components"]]
    comps[0].update(changes)
    type_info["components"] = comps
    fmt = tether.formats.get("sparse")
    return tframe.plain(fmt, type_info, bytes(payload), tframe.checksum.CRC32, None)


def test_indices_past_the_shape_or_a_falling_indptr_are_refused_before_any_read():
    # Found in review: scipy's constructor checks lengths only; reading such a matrix went out of bounds in C.
    sp = pytest.importorskip("scipy.sparse")
    from tether import frame as tframe

    good = tether.dumps(sp.csr_array(np.eye(4)))
    header, meta, payload = tframe.read(memoryview(good), tether.get_limits())
    comps = {c["name"]: c for c in meta["type"]["components"]}
    for name, index, value in (("indices", -1, 100_000_000), ("indices", -1, 7), ("indptr", 2, 0)):
        c = comps[name]
        body = bytearray(payload)
        view = np.frombuffer(body, np.dtype(c["dtype"]), count=c["nbytes"] // np.dtype(c["dtype"]).itemsize,
                             offset=c["offset"])
        view[index] = value
        frame = tframe.plain(tether.formats.get("sparse"), meta["type"], bytes(body), tframe.checksum.CRC32, None)
        for into in (None, "numpy"):
            with pytest.raises(tether.DecodeError):
                tether.loads(frame, into=into)
