"""Evolution and metadata: what a schema migration on read costs per row, and what large metadata costs.

The migration is timed by :func:`time_migration` (a table two schema
versions old read against the same table at the current version). The
metadata rows time ``dumps``, ``loads`` and ``inspect`` of a small array
frame carrying about 1 MiB of user metadata against the same frame without:
``loads`` should not pay much for metadata it does not return.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pyarrow as pa

import tether
from tether.schemas import Registry, add, migrate, rename, widen

from .harness import Report, per_call

MIB = 1 << 20


def _migration_frames(rows: int) -> tuple[bytes, bytes, Registry]:
    """A ``rows``-row table as its version 1 writer wrote it and at the current version 3; the v3 registry."""
    reg = Registry()
    v3 = pa.schema([("id", pa.int64()), ("time", pa.int64()), ("value", pa.float64()), ("source", pa.string())])
    reg.register("bench-events", version=3, schema=v3, migrations={
        1: [add("source", pa.string(), default="web")],
        2: [rename("ts", "time"), widen("id", pa.int32(), pa.int64())],
    })
    n = np.arange(rows)
    old = pa.table({"id": n.astype("i4"), "ts": n * 1000, "value": n * 0.5})
    writer_v1 = Registry()  # the writer of the release that had version 1
    writer_v1.register("bench-events", version=1, schema=old.schema)
    frame_old = tether.dumps(old, format="arrow", options={"schema": "bench-events", "registry": writer_v1})
    new = migrate(old, "bench-events", 1, registry=reg)
    frame_new = tether.dumps(new, format="arrow", options={"schema": "bench-events", "registry": reg})
    return frame_old, frame_new, reg


def _median_loads(frame: bytes, opts: dict[str, Any], repeat: int) -> float:
    times = []
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        tether.loads(frame, options=opts)
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def time_migration(rows: int = 100_000, repeat: int = 5) -> dict[str, float]:
    """What reading a table two schema versions old costs against reading the current one.

    The schema has three versions: v1→v2 adds a column with a default, v2→v3
    renames one and widens an int32 to int64.

    Parameters
    ----------
    rows : int
        The table's rows.
    repeat : int
        Reads of each frame; the median counts.

    Returns
    -------
    dict
        ``rows``; ``migrated_s`` and ``current_s``, the median seconds of a read; ``ns_per_row``,
        the extra cost per row in nanoseconds.

    Examples
    --------
    >>> out = time_migration(rows=1000, repeat=1)
    >>> sorted(out)
    ['current_s', 'migrated_s', 'ns_per_row', 'rows']
    """
    frame_old, frame_new, reg = _migration_frames(rows)
    opts = {"registry": reg}
    migrated, current = _median_loads(frame_old, opts, repeat), _median_loads(frame_new, opts, repeat)
    return {"rows": rows, "migrated_s": migrated, "current_s": current,
            "ns_per_row": (migrated - current) / max(rows, 1) * 1e9}


def _migration(rep: Report, quick: bool) -> None:
    rows = 100_000 if quick else 1_000_000
    out = time_migration(rows=rows, repeat=5 if quick else 9)
    rep.row(f"loads, {rows:,}-row table, current version", out["current_s"])
    rep.row("loads, same table 2 versions old (migrated)", out["migrated_s"],
            f"{out['migrated_s'] / out['current_s']:.2f}× the current")
    rep.row("migration on read, per row", None, f"{out['ns_per_row']:.2f} ns", value=out["ns_per_row"] * 1e-9, unit="s")


def _user_metadata(nbytes: int) -> dict:
    """About ``nbytes`` of realistic metadata: many small records, not one blob."""
    entries = [{"step": f"stage-{i}", "note": f"calibrated sensor {i % 97} at offset {i * 7}", "ok": i % 3 != 0}
               for i in range(nbytes // 72)]
    return {"provenance": entries}


def _metadata(rep: Report, quick: bool) -> None:
    arr = np.arange(128.0)
    meta = _user_metadata(MIB)
    plain = tether.dumps(arr)
    heavy = tether.dumps(arr, metadata=meta)
    info = tether.inspect(heavy)
    rep.note(f"  a 1 KiB float64 array with {len(str(meta)) / MIB:.1f} MiB of user metadata (as text): "
             f"frame {len(heavy):,} B, metadata {info.metadata_size:,} B stored")
    rep.record("frame with 1 MiB of user metadata", len(heavy), "B")
    number = 20 if quick else 100
    t_plain = per_call(lambda: tether.loads(plain), number * 10)
    t_heavy = per_call(lambda: tether.loads(heavy), number)
    rep.row("loads, no user metadata", t_plain)
    rep.row("loads, 1 MiB of user metadata", t_heavy, f"{t_heavy / t_plain:.1f}× without")
    rep.row("inspect, 1 MiB of user metadata", per_call(lambda: tether.inspect(heavy), number))
    t_dump = per_call(lambda: tether.dumps(arr, metadata=meta), max(3, number // 10))
    rep.row("dumps, 1 MiB of user metadata", t_dump)


def run(rep: Report, quick: bool) -> None:
    """Migration on read per row, and the cost of 1 MiB of user metadata.

    Parameters
    ----------
    rep : Report
        Where the figures go.
    quick : bool
        A 100,000-row table instead of 1,000,000, fewer repeats.

    Examples
    --------
    Run this group alone, at the quick sizes: ``tether bench --only evolution --quick``.
    """
    rep.section("evolution: schema migration on read, and large metadata")
    _migration(rep, quick)
    _metadata(rep, quick)
