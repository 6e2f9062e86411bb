"""The values behind tests/golden/*.tthr. Golden files are written once and never regenerated."""

from __future__ import annotations

import numpy as np

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
    }


if __name__ == "__main__":
    import pathlib

    import tether

    here = pathlib.Path(__file__).parent / "golden"
    for name, (value, kw) in values().items():
        path = here / f"{name}.tthr"
        if path.exists():
            continue  # never regenerate
        path.write_bytes(tether.dumps(value, checksum=True, **kw))
        print("wrote", path)
