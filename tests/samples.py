"""One or more sample values per built-in format, and how to compare what comes back.

The ``every_format`` fixture (conftest.py) is driven by the format registry:
a new built-in format fails the suite until it has samples here and a golden
frame under tests/golden/.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from tether import Atom, ImproperList

_rng = np.random.default_rng(1234)


def _sparse() -> list[Any]:
    """scipy.sparse (and pydata sparse) samples; none when scipy is not installed (it is an optional extra)."""
    try:
        import scipy.sparse as sp
    except ImportError:
        return []
    out = [
        sp.random_array((300, 200), density=0.05, format="csr", random_state=1),
        sp.csc_matrix(sp.random(50, 40, density=0.1, random_state=2, dtype="f4")),
        sp.coo_array(np.eye(30, dtype="i8")),
        sp.coo_matrix(sp.random(5, 7, density=0.3, random_state=3)),
    ]
    try:
        import sparse
    except ImportError:
        return out
    return out + [sparse.random((6, 5, 4), density=0.2, random_state=4)]


def _sparse_small() -> list[Any]:
    try:
        import scipy.sparse as sp
    except ImportError:
        return []
    return [sp.csr_array(np.array([[0, 1.5, 0], [2.0, 0, 3.0]]))]


SAMPLES: dict[str, list[Any]] = {
    "raw": [b"abc" * 50_000, b"payload bytes " * 100],
    "scalar": ["text " * 20_000, 12345678901234567890, "héllo", None, 2.5, True],
    "ndarray": [
        np.cumsum(_rng.integers(-2, 3, 100_000)).astype("f8"),
        np.asfortranarray(np.arange(60_000, dtype="i4").reshape(200, 300)),
        np.zeros(10_000, dtype=[("a", "<i4"), ("b", "S8")]),
        np.arange(300, dtype="f8").reshape(10, 30),
    ],
    "etf": [
        [[i, f"row{i}", (i, b"x")] for i in range(5000)],
        {"rows": [{"id": i, "name": f"n{i}", "tags": (1, b"x")} for i in range(20)]},
        [ImproperList([1, 2], Atom("t")), 2**100, -1.5, Atom("ok")],
    ],
    "arrow": [
        pa.table({"id": np.arange(20_000), "name": [f"row{i % 100}" for i in range(20_000)]}),
        pa.table({"x": [1.5, None, 3.0], "s": ["a", "b", None]}),
    ],
    "pickle": [{frozenset({1, 2}): "x" * 100_000}, {1, 2, 3}],
    "sparse": _sparse(),
}


# Small values of each format, for tests that mutate every byte of a frame.
SMALL: dict[str, list[Any]] = {
    "raw": [b"payload bytes " * 100],
    "scalar": [12345678901234567890, "héllo"],
    "ndarray": [np.arange(300, dtype="f8").reshape(10, 30), np.zeros(4, dtype=[("a", "<i4"), ("b", "S3")])],
    "etf": [{"rows": [{"id": i, "name": f"n{i}", "tags": (1, b"x")} for i in range(20)]}],
    "arrow": [pa.table({"x": [1.5, None, 3.0] * 30, "s": ["a", "b", None] * 30})],
    "pickle": [{1, 2, 3}],
    "sparse": _sparse_small(),
}


def assert_same(out: Any, value: Any) -> None:
    """``out`` is what ``loads`` should give back for ``value``: equal, of the same type and layout."""
    if _is_sparse(value):
        assert type(out) is type(value) and out.shape == value.shape and out.dtype == value.dtype
        assert getattr(out, "format", None) == getattr(value, "format", None)
        np.testing.assert_array_equal(_dense(out), _dense(value))
    elif isinstance(value, pa.Table):
        assert isinstance(out, pa.Table) and out.equals(value)
    elif isinstance(value, np.ndarray):
        assert out.dtype == value.dtype and out.shape == value.shape
        assert out.flags.f_contiguous == value.flags.f_contiguous
        np.testing.assert_array_equal(out, value)
    elif isinstance(value, (bytes, bytearray)) and isinstance(out, memoryview):
        assert out == value  # large binaries come back as read-only views
    else:
        assert out == value and type(out) is type(value)
        assert repr(out)[:200] == repr(value)[:200]


def _is_sparse(value: Any) -> bool:
    return type(value).__module__.startswith(("scipy.sparse", "sparse"))


def _dense(value: Any) -> np.ndarray:
    return value.todense() if hasattr(value, "fill_value") else value.toarray()
