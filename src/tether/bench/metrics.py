"""Metrics overhead: the same round trips with ``tether.metrics`` on and off, in the same run.

Metrics are on by default, so their cost is paid by every call. The target
(#13): at most 3 % on a small ``dumps`` + ``loads`` round trip, and nothing
measurable on a large one. The measurement is ``tether.metrics.overhead()``,
which times round trips one at a time, in short blocks of one mode with
metrics off and on in turn (the first few of each block untimed), and
compares the medians, so that drift and bursts of load on a shared machine
hit both alike.
"""

from __future__ import annotations

import importlib

from .harness import Report

# The bound on metrics-on / metrics-off, small and large round trips alike.
TARGET = 1.03


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
    try:
        overhead = importlib.import_module("tether.metrics").overhead
    except (ImportError, AttributeError):
        rep.note("  (tether.metrics has no overhead() in this build: nothing to compare)")
        return
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
