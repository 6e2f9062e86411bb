"""Byte-shuffle: group the k-th byte of every element together before compressing.

Numeric arrays whose neighbouring values share high bytes (sensor data,
counters, slowly varying floats) compress far better shuffled. Whether it
helps is decided on samples, like the rest of the policy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

FILTER_NONE = 0
FILTER_SHUFFLE = 1
FILTER_NAMES = {FILTER_NONE: "none", FILTER_SHUFFLE: "byte-shuffle"}
# Shuffle must beat the plain ratio by this factor to be worth the extra pass.
GAIN = 0.9


def element_size(fmt: Any, type_info: dict[str, Any]) -> int:
    """The element size a shuffle would use, or 0 when the payload is not a plain numeric array."""
    if getattr(fmt, "name", None) != "ndarray":
        return 0
    try:
        dtype = np.dtype(type_info["dtype"]) if isinstance(type_info.get("dtype"), str) else None
    except TypeError:
        return 0
    if dtype is None or dtype.kind not in "iufcmM" or dtype.itemsize not in (2, 4, 8, 16):
        return 0
    return dtype.itemsize


def shuffle(data: Any, size: int) -> memoryview:
    arr = np.frombuffer(data, dtype=np.uint8)
    return memoryview(np.ascontiguousarray(arr.reshape(-1, size).T)).cast("B")


def unshuffle(data: Any, size: int) -> memoryview:
    arr = np.frombuffer(data, dtype=np.uint8)
    return memoryview(np.ascontiguousarray(arr.reshape(size, -1).T)).cast("B")
