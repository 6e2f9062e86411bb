"""Metrics overhead: the same round trips with ``tether.metrics`` on and off, in the same run.

Metrics are on by default, so their cost is paid by every call. The target
(#13): at most 3 % on a small ``dumps`` + ``loads`` round trip, and nothing
measurable on a large one. The measurement is :func:`overhead`, which times
round trips one at a time, in short blocks of one mode with metrics off and
on in turn (the first few of each block untimed), and compares the medians,
so that drift and bursts of load on a shared machine hit both alike.
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable

import numpy as np

import tether
from tether.metrics import core

from .harness import Report

# The bound on metrics-on / metrics-off, small and large round trips alike.
TARGET = 1.03


_clock = time.perf_counter_ns


def _round_trip(value: Any, dumps: Callable[[Any], bytes], loads: Callable[[Any], Any]) -> int:
    """The nanoseconds of one ``loads(dumps(value))``, as :func:`_alternate` reads them (clock reads included)."""
    start = _clock()
    loads(dumps(value))
    return _clock() - start


def _timer_floor(n: int = 1001) -> float:
    """The median nanoseconds :func:`_round_trip` adds around its work: two clock reads and a call."""
    def nothing(value: Any, dumps: Any, loads: Any) -> int:
        start = _clock()
        return _clock() - start

    return statistics.median(nothing(None, None, None) for _ in range(n))


# Round trips per block of one mode, and how many of them come first untimed: what a round trip with metrics
# leaves behind (freed leftovers, evicted cache lines) still slows the 3-5 round trips after it.
BLOCK, SETTLE = 8, 4


def _alternate(value: Any, n: int) -> dict[str, float]:
    """``n`` round trips per mode, timed one at a time in short blocks of one mode, metrics off and on in turn.

    Each mode's figure is the median of its timed round trips; ``ratio`` is on / off. Alternating often gives
    both modes the same machine: on a shared 2-core VM the same round trip drifts between about 21 and
    45 µs over seconds, and the medians of runs of a hundred round trips per mode, paired back to back,
    read one build anywhere from 0.99× to 1.10× within one process. In each block of :data:`BLOCK` only
    the round trips after the first :data:`SETTLE` are timed: part of what a round trip with metrics costs
    lands in the next few (an off round trip measured 400-550 ns slower right after an on one, 265-383 ns
    at the second, about nothing from the fifth), so timing round trips close to a switch
    charges some of the recorder to the off half. The fold that runs about once a second (a tenth of a
    millisecond) lands in one round trip, outside the medians. Medians describe the typical round trip.
    The timer's own cost (:func:`_timer_floor`) is taken from both medians, unless it is not small beside
    them.
    """
    dumps, loads, set_on = tether.dumps, tether.loads, core.set_on  # looked up once, not between round trips
    times: dict[bool, list[int]] = {False: [], True: []}
    for flag in (False, True):  # warm both paths: the first round trips would pay for first calls
        set_on(flag)
        for _ in range(min(n, 100)):
            _round_trip(value, dumps, loads)
    timed = BLOCK - SETTLE
    for block in range(2 * -(-n // timed)):
        flag = bool(block & 1)  # off, on, off, ...
        set_on(flag)
        for i in range(BLOCK):
            ns = _round_trip(value, dumps, loads)
            if i >= SETTLE:
                times[flag].append(ns)
    on, off = statistics.median(times[True]), statistics.median(times[False])
    floor = _timer_floor()
    if floor < min(on, off) / 2:  # else the timings are too short to correct: compare them as they are
        on, off = on - floor, off - floor
    return {"on_ns": on, "off_ns": off, "ratio": on / off, "overhead": on / off - 1}


def overhead(n: int = 2000, repeat: int = 7, *, large_bytes: int = 8 << 20,
             large_n: int | None = None) -> dict[str, dict[str, float]]:
    """Per round trip (``loads(dumps(v))``), the nanoseconds with metrics off and on, and the overhead.

    ``on_ns`` and ``off_ns`` are each mode's median over ``n * repeat`` round trips (rounded up to a
    whole block), timed one at a time in short blocks of one mode, on and off in turn, the first round
    trips of each block untimed (see :func:`_alternate`); ``ratio`` is on / off and ``overhead`` ratio - 1.

    ``small`` is a five-key map; ``large`` a ``large_bytes`` float64 array, ``large_n`` round trips per
    mode (by default ``n / 40 * repeat``, at least 100 per repeat: a large round trip drifts more from one
    to the next). Metrics are left as they were; the counts the measurement adds are not removed.

    Parameters
    ----------
    n, repeat : int
        Timed small round trips per mode: ``n * repeat``.
    large_bytes : int
        The large array's size.
    large_n : int, optional
        Timed large round trips per mode.

    Returns
    -------
    dict
        ``{"small": figures, "large": figures}``, each with ``on_ns``, ``off_ns``, ``ratio``, ``overhead``.

    Examples
    --------
    >>> r = overhead(n=20, repeat=1, large_bytes=1 << 16)
    >>> sorted(r), sorted(r["small"])
    (['large', 'small'], ['off_ns', 'on_ns', 'overhead', 'ratio'])
    """
    small = {"id": 1, "name": "small", "price": 9.5, "tags": [tether.Atom("a"), tether.Atom("b")], "ok": True}
    large = np.arange(large_bytes // 8, dtype=np.float64)
    was = core.on
    try:
        large_n = max(100, n // 40) * repeat if large_n is None else large_n
        return {"small": _alternate(small, n * repeat), "large": _alternate(large, max(1, large_n))}
    finally:
        core.set_on(was)


def run(rep: Report, quick: bool) -> None:
    """Small and large round trips with metrics on and off; the ratio against its target.

    Parameters
    ----------
    rep : Report
        Where the figures go.
    quick : bool
        Fewer round trips and an 8 MiB array instead of 64 MiB.

    Examples
    --------
    Run this group alone, at the quick sizes: ``tether bench --only metrics --quick``.
    """
    mib = 8 if quick else 64
    rep.section(f"metrics: round trips with tether.metrics on and off (5-key map; {mib} MiB float64 ndarray)")
    # Timed round trips per mode (as many again run untimed): 4,200 (quick) or 60,000 of the small value;
    # 700 of 8 MiB (quick, 0.6 ms each) or 150 of 64 MiB (13 ms each: 8 s in all).
    result = overhead(n=600 if quick else 4000, repeat=7 if quick else 15, large_bytes=mib << 20,
                      large_n=None if quick else 150)
    for key in ("small", "large"):
        on, off = result[key]["on_ns"] / 1e9, result[key]["off_ns"] / 1e9
        ratio = result[key].get("ratio", on / off)
        rep.row(f"{key} round trip, metrics off", off)
        rep.row(f"{key} round trip, metrics on", on,
                f"{ratio:.3f}× off (medians; blocks of round trips, on and off in turn)")
        rep.target(f"metrics overhead, {key} round trip (on / off)", ratio, TARGET)
