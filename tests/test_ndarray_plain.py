"""Small C-contiguous arrays take ndarray's one-step writer: the very bytes of the general path."""

from __future__ import annotations

import numpy as np
import pytest

import tether
from tether.formats import ndarray
from tether.frame import _meta

ARRAYS = [
    np.arange(16.0),
    np.arange(12, dtype=np.int32).reshape(3, 4),
    np.zeros((0, 3), dtype=np.float32),
    np.array(5.0),
    np.array([True, False]),
    np.array(["2020-01-01", "NaT"], dtype="M8[ns]"),
    np.arange(4, dtype=np.complex64),
    np.arange(4, dtype=np.uint8).reshape(2, 1, 2),
    np.arange(4, dtype=np.float16),
]


@pytest.mark.parametrize("arr", ARRAYS, ids=lambda a: f"{a.dtype.str}{a.shape}")
@pytest.mark.parametrize("checksum", ["auto", True, False, "xxh3-64"])
def test_plain_array_frames_equal_general_frames(arr, checksum, monkeypatch):
    monkeypatch.setattr(_meta.time, "time_ns", lambda: 1_795_000_000_000_000_000)
    assert ndarray.FORMAT.dumps_plain(arr, -1, "memory") is not None  # this case does take the one-step writer
    plain = tether.dumps(arr, checksum=checksum)
    assert plain == bytes(tether.encode(arr, checksum=checksum))
    back = tether.loads(plain)
    assert back.dtype == arr.dtype and back.shape == arr.shape
    np.testing.assert_array_equal(back, arr)
    assert tether.last_decision().format == "ndarray"


@pytest.mark.parametrize("value", [
    np.arange(12.0).reshape(3, 4).T,  # F-contiguous: written as "F" by the general path
    np.arange(10.0)[::2],  # not contiguous
    np.zeros(ndarray.PLAIN_MAX // 8 + 1),  # over the size
    np.zeros(3, dtype=[("a", "<i4"), ("b", "<f8")]),  # structured
    np.float64(2.5),  # a NumPy scalar keeps its scalar flag on the general path
    np.ma.masked_array([1, 2]),  # a subclass: not an ndarray the writer knows
    np.arange(3, dtype=">i4"),  # byte-swapped: the general path writes it native for a BEAM reader
], ids=["F", "strided", "large", "structured", "scalar", "subclass", "swapped"])
def test_other_arrays_take_the_general_path(value):
    assert ndarray.FORMAT.dumps_plain(value, -1, "memory") is None
    frame = tether.dumps(value)
    if not isinstance(value, np.ma.MaskedArray):  # masked arrays are pickle's
        back = tether.loads(frame)
        np.testing.assert_array_equal(back, value)
        assert type(back) is type(value) and back.dtype == value.dtype


def test_the_plain_path_keeps_the_nx_type_for_the_beam():
    frame = tether.dumps(np.arange(6, dtype=np.float32).reshape(2, 3), reader="beam")
    info = tether.inspect(frame)
    assert info.format == "ndarray"
    assert info.details["nx type"] == "{:f, 32}" and info.details["order"] == "C"


def test_arrays_of_many_shapes_do_not_evict_the_fixed_metadata():
    # Each new (dtype, shape) caches its type pair; those live apart from the pairs every frame
    # repeats (format, schema, producer, lineage), which a stream of shapes used to clear.
    tether.dumps(b"fixed")
    fixed = set(_meta._PAIRS)
    for n in range(600):
        tether.dumps(np.zeros(n + 1, dtype=np.float32))
    assert fixed <= set(_meta._PAIRS)
    assert 0 < len(_meta._TYPED) <= 257


@pytest.mark.parametrize("arr", [np.arange(3, dtype=">f4"), np.arange(6, dtype=">i8").reshape(2, 3).T,
                                 np.arange(200_000, dtype=">f8")[::2]], ids=["C", "F", "strided"])
def test_a_byte_swapped_array_is_written_native_for_the_beam_and_as_it_is_for_python(arr):
    for_beam = tether.loads(tether.dumps(arr, reader="beam"))
    assert for_beam.dtype == arr.dtype.newbyteorder("=") and for_beam.flags.c_contiguous
    np.testing.assert_array_equal(for_beam, arr)
    assert tether.inspect(tether.dumps(arr, reader="beam")).type["nx"] == [arr.dtype.kind.replace("i", "s"),
                                                                          arr.dtype.itemsize * 8]
    back = tether.loads(tether.dumps(arr))
    assert back.dtype == arr.dtype  # a Python reader keeps the byte order
    np.testing.assert_array_equal(back, arr)
