"""Byte-shuffle: group the k-th byte of every element together before compressing.

Numeric arrays whose neighbouring values share high bytes (sensor data,
counters, slowly varying floats) compress far better shuffled. Whether it
helps is decided on samples, like the rest of the policy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..frame import FILTER_NAMES, FILTER_NONE, FILTER_SHUFFLE  # noqa: F401  (the header owns the ids)
# Shuffle must beat the plain ratio by this factor to be worth the extra pass.
GAIN = 0.9


def shuffle(data: Any, size: int) -> memoryview:
    """Group the k-th byte of every ``size``-byte element together (the frame's byte-shuffle filter).

    For tether's own modules (as ``tether.compression.shuffle``, which the
    benchmark uses), not a user API: ``dumps`` applies the filter itself.

    Parameters
    ----------
    data : bytes-like
        The payload; its length must be a multiple of ``size``.
    size : int
        The element size in bytes (the header's ``filter_size``).

    Returns
    -------
    memoryview
        A new buffer of the same length: every element's first byte, then every second byte, and so on.

    Examples
    --------
    >>> bytes(shuffle(b"abcdef", 2))
    b'acebdf'
    """
    arr = np.frombuffer(data, dtype=np.uint8)
    return memoryview(np.ascontiguousarray(arr.reshape(-1, size).T)).cast("B")


def unshuffle(data: Any, size: int) -> memoryview:
    arr = np.frombuffer(data, dtype=np.uint8)
    return memoryview(np.ascontiguousarray(arr.reshape(size, -1).T)).cast("B")
