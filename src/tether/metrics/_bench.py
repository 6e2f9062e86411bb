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


def _pair(value: Any, n: int, repeat: int) -> dict[str, float]:
    on, off = [], []
    for _ in range(repeat):  # interleaved, so both see the same machine load
        _core.on = True
        on.append(_round_trips(value, n))
        _core.on = False
        off.append(_round_trips(value, n))
    on_ns, off_ns = statistics.median(on), statistics.median(off)
    return {"on_ns": on_ns, "off_ns": off_ns, "overhead": on_ns / off_ns - 1}


def overhead(n: int = 2000, repeat: int = 7, *, large_bytes: int = 8 << 20) -> dict[str, dict[str, float]]:
    """Per round trip (``loads(dumps(v))``), the median nanoseconds with metrics on and off, and the overhead.

    ``small`` is a five-key map; ``large`` a ``large_bytes`` float64 array
    (n / 200 round trips, at least 3). Metrics are left as they were; the
    counts the measurement adds are not removed.

    Examples
    --------
    >>> import tether.metrics as m
    >>> r = m.overhead(n=20, repeat=1, large_bytes=1 << 16)
    >>> sorted(r), sorted(r["small"])
    (['large', 'small'], ['off_ns', 'on_ns', 'overhead'])
    """
    import numpy as np

    from .._types import Atom

    small = {"id": 1, "name": "small", "price": 9.5, "tags": [Atom("a"), Atom("b")], "ok": True}
    large = np.arange(large_bytes // 8, dtype=np.float64)
    was = _core.on
    try:
        return {"small": _pair(small, n, repeat), "large": _pair(large, max(3, n // 200), repeat)}
    finally:
        _core.on = was
