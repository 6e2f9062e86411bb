"""Shared memory: writing into pooled and fresh regions, attach + ``loads``, and peak RSS while writing."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

import tether
from tether.shm import Region, RegionPool

from .harness import Report, median, per_call

# Run in a child so that the peak RSS it reads is the write's alone, not the benchmark's.
_RSS_PROBE = """
import sys, numpy as np, tether
from tether.shm import RegionPool
n = int(sys.argv[1])
arr = np.random.default_rng(0).random(n // 8)
pool = RegionPool(prefault=True, sweep=False)
region = pool.acquire(n + (1 << 20))
def status(key):
    for line in open('/proc/self/status'):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
open('/proc/self/clear_refs', 'w').write('5')  # reset the peak (VmHWM) to the current RSS
before = status('VmRSS:')
tether.dump_into(arr, region)
print(status('VmHWM:') - before)
pool.close()
"""


def _pooled(rep: Report, arr: np.ndarray, region: Region, pool: RegionPool, t_copy: float, repeat: int) -> float:
    def pooled() -> None:
        region.reset()
        tether.dump_into(arr, region)

    t_pool = median(pooled, repeat)
    rep.row("tether.dump_into a pooled (warm) region", t_pool, f"{arr.nbytes / t_pool / 1e9:.1f} GB/s")
    rep.target("pooled write bandwidth vs np.copyto (inverse)", t_pool / t_copy, 1 / 0.8)
    rep.note(f"  pool: {pool.stats.prefaulted_bytes >> 20} MiB prefaulted, hit rate {pool.stats.hit_rate:.0%}")
    rep.record("pool prefaulted", pool.stats.prefaulted_bytes, "B")
    rep.record("pool hit rate", pool.stats.hit_rate, "ratio", meta={"higher_is_better": True})
    return t_pool


def _fresh(rep: Report, arr: np.ndarray, t_pool: float, repeat: int) -> None:
    def fresh() -> None:
        with Region.create(arr.nbytes + (1 << 20)) as r:
            tether.dump_into(arr, r)

    t_fresh = median(fresh, max(2, repeat // 2))
    rep.row("tether.dump_into a fresh region", t_fresh, f"{arr.nbytes / t_fresh / 1e9:.1f} GB/s, "
            f"{t_fresh / t_pool:.1f}× the pooled time")


def _attach(rep: Report, sizes_mib: tuple[int, ...]) -> None:
    for size_mib in sizes_mib:
        with Region.create(size_mib << 20) as r:
            tether.dump_into(np.zeros((size_mib << 20) // 8 - 1024), r)
            name = r.name

            def attach_load() -> None:
                reader = Region.attach(name)
                tether.loads(reader)
                reader.close()

            t = per_call(attach_load, 100)
            rep.row(f"attach + loads of a {size_mib} MiB frame", t)
            rep.target(f"attach + loads at {size_mib} MiB", t, 100e-6, unit="s")


def _rss(rep: Report, nbytes: int) -> None:
    out = subprocess.run([sys.executable, "-c", _RSS_PROBE, str(nbytes)], capture_output=True, text=True, timeout=300)
    if out.returncode == 0:
        grown = int(out.stdout.strip())
        rep.row("peak RSS growth while writing into a region", None, f"{grown / 2**20:.1f} MiB "
                f"= {grown / nbytes:.1%} of the payload", value=grown, unit="B")
        rep.target("peak RSS growth / payload (inverse %)", grown / nbytes, 0.05)
    else:
        rep.note(f"  RSS probe failed: {out.stderr.strip()[-200:]}")


def run(rep: Report, quick: bool) -> None:
    """``dump_into`` pooled and fresh regions against a warm copy, attach + ``loads``, and peak RSS.

    Parameters
    ----------
    rep : Report
        Where the figures go.
    quick : bool
        64 MiB and one attach size instead of 256 MiB and 256 MiB / 1 GiB.

    Examples
    --------
    Run this group alone, at the quick sizes: ``tether bench --only shm --quick``.
    """
    mib = 64 if quick else 256
    repeat = 3 if quick else 5
    rep.section(f"shared memory: {mib} MiB float64 array")
    arr = np.random.default_rng(5).random(mib * (1 << 20) // 8)
    warm = np.empty_like(arr)
    np.copyto(warm, arr)  # fault the pages in first: this is the warm baseline
    t_copy = median(lambda: np.copyto(warm, arr), repeat)
    rep.row("np.copyto into a warm array", t_copy, f"{arr.nbytes / t_copy / 1e9:.1f} GB/s")
    pool = RegionPool(prefault=True, sweep=False)
    region = pool.acquire(arr.nbytes + (1 << 20))
    pool.release(region)
    region = pool.acquire(arr.nbytes + (1 << 20))  # the same warm region again: a pool hit
    try:
        t_pool = _pooled(rep, arr, region, pool, t_copy, repeat)
        _fresh(rep, arr, t_pool, repeat)
        _attach(rep, (mib,) if quick else (256, 1024))
    finally:
        pool.release(region)
        pool.close()
    _rss(rep, arr.nbytes)
