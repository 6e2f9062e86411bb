"""Throughput against payload size: a ``dumps`` + ``loads`` round trip per format, beside its peer.

Each format carries the kind of data it is for, at payload sizes from 1 KiB
up: raw bytes, a float64 ndarray, an Arrow table (int64 and float64 columns)
and, as ETF, a list of floats. The peers are what a user would otherwise
call on the same value: pickle (protocol 5) for the bytes, the array and the
list, pyarrow's IPC stream for the table. ``tether bench --plot`` draws these
figures as one line per format, the peers dashed.
"""

from __future__ import annotations

import pickle
from typing import Any, Callable

import numpy as np

import tether

from .harness import Report, fmt_time, per_call

KIB = 1 << 10
MIB = 1 << 20
# ETF holds Python floats one object each: past this size a round trip
# takes seconds and tells nothing new.
ETF_MAX = 4 * MIB


def _values(n: int) -> dict[str, Any]:
    import pyarrow as pa

    rng = np.random.default_rng(n)
    floats = rng.random(max(1, n // 8))
    values = {"raw": rng.bytes(n), "ndarray": floats}
    rows = max(1, n // 16)
    values["arrow"] = pa.table({"id": np.arange(rows, dtype="i8"), "x": rng.random(rows)})
    if n <= ETF_MAX:
        values["etf"] = floats.tolist()
    return values


def _ipc_round_trip(table: Any) -> Any:
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return pa.ipc.open_stream(sink.getvalue()).read_all()


def _peer(fmt: str) -> tuple[str, Callable[[Any], Any]]:
    if fmt == "arrow":
        return "pyarrow IPC", _ipc_round_trip
    return "pickle", lambda v: pickle.loads(pickle.dumps(v, protocol=5))


def _one(rep: Report, fmt: str, value: Any, n: int, repeat: int) -> None:
    number = max(1, min(2000, (4 * MIB) // max(n, 1)))
    t = per_call(lambda: tether.loads(tether.dumps(value, format=fmt)), number, repeat)
    peer, peer_fn = _peer(fmt)
    tp = per_call(lambda: peer_fn(value), number, repeat)
    rep.note(f"    {fmt:<8} {n:>11,} B: tether {fmt_time(t)} {n / t / 1e9:7.3f} GB/s   "
             f"{peer} {fmt_time(tp)} {n / tp / 1e9:7.3f} GB/s")
    rep.record(f"{fmt}, {n} B: tether dumps + loads", t, "s",
               meta={"plot": "throughput", "series": f"tether {fmt}", "format": fmt, "bytes": n, "peer": False})
    rep.record(f"{fmt}, {n} B: {peer} round trip", tp, "s",
               meta={"plot": "throughput", "series": f"{peer} ({fmt} data)", "format": fmt, "bytes": n, "peer": True})


def run(rep: Report, quick: bool) -> None:
    """Round-trip throughput per format and payload size, against each format's peer.

    Parameters
    ----------
    rep : Report
        Where the figures go.
    quick : bool
        Sizes 1 KiB to 1 MiB and fewer repeats, instead of 1 KiB to 64 MiB.

    Examples
    --------
    Run this group alone, at the quick sizes: ``tether bench --only sizes --quick``.
    """
    sizes = [KIB, 32 * KIB, MIB] if quick else [KIB, 16 * KIB, 256 * KIB, 4 * MIB, 64 * MIB]
    repeat = 3 if quick else 5
    rep.section(f"sizes: dumps + loads round trip per format, {sizes[0] // KIB} KiB to {sizes[-1] // KIB:,} KiB")
    rep.note("  payload bytes / round-trip time; the peer is pickle (protocol 5), or pyarrow IPC for tables")
    for n in sizes:
        for fmt, value in _values(n).items():
            _one(rep, fmt, value, n, repeat)
