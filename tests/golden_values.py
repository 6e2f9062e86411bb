"""The values behind tests/golden/*.tthr. Golden files are written once and never regenerated."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from tether import Atom, ImproperList


def values():
    return {
        "raw_bytes": (b"\x00golden\xff" * 3, {}),
        "scalar_int": (-(2**70) + 3, {}),
        "scalar_str": ("grüße ✓", {}),
        "scalar_float": (2.5, {}),
        "ndarray_f4_C": (np.arange(12, dtype="<f4").reshape(3, 4), {}),
        "ndarray_i8_F": (np.asfortranarray(np.arange(6, dtype=">i8").reshape(2, 3)), {}),
        "ndarray_struct": (
            np.array([(1, (2.5, b"ab")), (3, (4.5, b"cd"))], dtype=[("a", "<i2"), ("b", [("c", "<f8"), ("d", "S2")])]),
            {},
        ),
        "ndarray_datetime": (np.array(["2024-01-02T03:04:05"], dtype="M8[s]"), {}),
        "etf_rows": (
            {"rows": [{Atom("id"): 1, Atom("name"): "a", Atom("tags"): (Atom("x"), b"\x01")}], "n": None},
            {"metadata": {"source": "golden"}},
        ),
        "etf_improper": ([ImproperList([1, 2], Atom("t")), 2**100, -1.5], {}),
        "etf_zstd": ({"text": "repeat " * 2000}, {"compression": "zstd"}),
        "ndarray_lz4": (np.zeros(50_000, dtype="<f8"), {"compression": "lz4"}),
        "raw_gzip": (b"abc" * 30_000, {"compression": "gzip"}),
        "pickle_set": ({1, 2, 3}, {}),
        "arrow_table": (
            pa.table({"id": pa.array([1, 2, 3], pa.int64()), "name": ["a", None, "ü"], "x": [0.5, 1.5, None]}),
            {"metadata": {"source": "golden"}},
        ),
        "arrow_lz4": (pa.table({"n": pa.array(np.arange(5000) % 7, pa.int32()), "s": ["abc"] * 5000}), {"compression": "lz4"}),
        "scalar_crc32": ("checked with crc32", {"checksum": "crc32"}),
        "sparse_csr": (_sparse_csr(), {"checksum": "crc32"}),
    }


def _sparse_csr():
    """A scipy CSR array with int32 indices (scipy is in the test extra)."""
    import scipy.sparse as sp

    dense = np.zeros((4, 6), dtype="<f8")
    dense[0, 1], dense[1, 0], dense[1, 5], dense[3, 2] = 1.5, -2.0, 3.25, 4.0
    return sp.csr_array(dense)


def streams():
    """Golden streams: (chunk values, StreamWriter options); files tests/golden/<name>.tthrs."""
    return {
        "stream_mixed": (
            [{"header": True, "n": 3}, b"0123456789", b"abcdefghij", np.arange(6, dtype="<i4")],
            {"chunk_size": 1 << 10, "compression": "none"},
        ),
        "stream_lz4_crc32": ([b"text line\n" * 4000], {"compression": "lz4", "checksum": "crc32"}),
    }


if __name__ == "__main__":
    import pathlib

    import tether

    here = pathlib.Path(__file__).parent / "golden"
    for name, (value, kw) in values().items():
        path = here / f"{name}.tthr"
        if path.exists():
            continue  # never regenerate
        kw = {"checksum": True, **kw}
        path.write_bytes(tether.dumps(value, **kw))
        print("wrote", path)
    for name, (chunks, kw) in streams().items():
        path = here / f"{name}.tthrs"
        if path.exists():
            continue
        with open(path, "wb") as sink, tether.stream.StreamWriter(sink, **kw) as w:
            for chunk in chunks:
                w.write(chunk)
        print("wrote", path)
