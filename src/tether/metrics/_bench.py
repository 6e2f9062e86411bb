"""What metrics cost: a small and a large ``dumps`` + ``loads`` round trip, on and off, in the same run."""

from __future__ import annotations

import statistics
import time
from typing import Any

from . import _core


def _round_trips(value: Any, n: int) -> float:
    from .. import _api

    dumps, loads = _api.dumps, _api.loads
    start = time.perf_counter_ns()
    for _ in range(n):
        loads(dumps(value))
    return (time.perf_counter_ns() - start) / n


def _pair(value: Any, n: int, repeat: int, chunk: int = 100) -> dict[str, float]:
    """``repeat`` runs of ``n`` round trips per mode, as short on/off pairs: each pair's ratio, then the median.

    A pair's two halves run back to back, so a shared machine's load hits both alike; the median of the
    pairs' ratios drops the pairs a burst of load fell on. A 3 % bound is smaller than the spread of
    whole runs there. Each half is ``chunk`` round trips: 100 small ones (about 5 ms), or one large one
    (milliseconds already), so a large value's few round trips still make many pairs.
    """
    chunk = max(1, min(n, chunk))
    for flag in (False, True):  # warm both paths first: the first pair would pay the first calls' costs
        _core.set_on(flag)
        _round_trips(value, chunk)
    on, off, ratios = [], [], []
    for i in range(repeat * max(1, n // chunk)):
        times = {}
        for flag in (True, False) if i % 2 else (False, True):  # alternate which half goes first
            _core.set_on(flag)
            times[flag] = _round_trips(value, chunk)
        on.append(times[True])
        off.append(times[False])
        ratios.append(times[True] / times[False])
    ratio = statistics.median(ratios)
    return {"on_ns": statistics.median(on), "off_ns": statistics.median(off), "ratio": ratio, "overhead": ratio - 1}


def overhead(n: int = 2000, repeat: int = 7, *, large_bytes: int = 8 << 20) -> dict[str, dict[str, float]]:
    """Per round trip (``loads(dumps(v))``), the nanoseconds with metrics off and on, and the overhead.

    ``on_ns`` and ``off_ns`` are the medians of each mode's runs; ``ratio`` (and ``overhead``, ratio - 1)
    is the median of the on/off ratios of short back-to-back pairs (see :func:`_pair`), the steadier figure.

    ``small`` is a five-key map; ``large`` a ``large_bytes`` float64 array
    (n / 200 round trips, at least 10: fewer pairs of a
    noisy millisecond round trip let one burst of load move the median). Metrics are left as they were; the
    counts the measurement adds are not removed.

    Examples
    --------
    >>> import tether.metrics as m
    >>> r = m.overhead(n=20, repeat=1, large_bytes=1 << 16)
    >>> sorted(r), sorted(r["small"])
    (['large', 'small'], ['off_ns', 'on_ns', 'overhead', 'ratio'])
    """
    import numpy as np

    from .._types import Atom

    small = {"id": 1, "name": "small", "price": 9.5, "tags": [Atom("a"), Atom("b")], "ok": True}
    large = np.arange(large_bytes // 8, dtype=np.float64)
    was = _core.on
    try:
        return {"small": _pair(small, n, repeat), "large": _pair(large, max(10, n // 200), repeat, chunk=1)}
    finally:
        _core.set_on(was)
