"""Small values: what one ``dumps`` and one ``loads`` cost when the payload is tiny.

Here the fixed costs dominate (option checks, format choice, header and
metadata), so this group is the one that shows a slower general path first.
No target: the rows are compared with an earlier run.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import tether

from .harness import Report, per_call


def _values() -> dict[str, Any]:
    return {
        "5-key map": {"id": 1, "name": "small", "price": 9.5, "tags": [tether.Atom("a"), tether.Atom("b")], "ok": True},
        "20-int list": list(range(20)),
        "100 bytes": bytes(range(100)),
        "int": 123_456,
        "16-float ndarray": np.arange(16, dtype="f8"),
    }


def run(rep: Report, quick: bool) -> None:
    """Per-call medians of ``tether.dumps`` and ``tether.loads`` for small values.

    Parameters
    ----------
    rep : Report
        Where the figures go.
    quick : bool
        Fewer calls per run.

    Examples
    --------
    Run this group alone, at the quick sizes: ``tether bench --only small --quick``.
    """
    number = 500 if quick else 5_000
    rep.section("small values: per-call dumps and loads")
    values = _values()
    t_map = 0.0
    for label, value in values.items():
        frame = tether.dumps(value)
        t_dump = per_call(lambda: tether.dumps(value), number)
        t_load = per_call(lambda: tether.loads(frame), number)
        rep.row(f"tether.dumps, {label}", t_dump, f"{len(frame)} B frame")
        rep.row(f"tether.loads, {label}", t_load)
        if label == "5-key map":
            t_map = t_dump
    map5 = values["5-key map"]
    t_enc = per_call(lambda: bytes(tether.encode(map5)), number)
    rep.row("bytes(tether.encode), 5-key map", t_enc, f"the general path, {t_enc / t_map:.2f}× tether.dumps")
