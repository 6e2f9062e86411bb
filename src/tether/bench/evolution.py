"""Evolution and metadata: what a schema migration on read costs per row, and what large metadata costs.

The migration is timed by ``tether.schemas.time_migration`` (a table two
schema versions old read against the same table at the current version). The
metadata rows time ``dumps``, ``loads`` and ``inspect`` of a small array
frame carrying about 1 MiB of user metadata against the same frame without:
``loads`` should not pay much for metadata it does not return.
"""

from __future__ import annotations

import importlib

import numpy as np

import tether

from .harness import Report, per_call

MIB = 1 << 20


def _migration(rep: Report, quick: bool) -> None:
    try:
        time_migration = importlib.import_module("tether.schemas").time_migration
    except (ImportError, AttributeError):
        rep.note("  (tether.schemas has no time_migration() in this build: migration not measured)")
        return
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
