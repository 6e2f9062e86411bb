"""A pool of warm regions: faulting fresh shared memory in costs more than the copy itself."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from ._region import HEADER_SIZE, Region, gc


@dataclass(slots=True)
class PoolStats:
    """How warm the pool is: counters since it started."""

    acquired: int = 0
    hits: int = 0
    misses: int = 0
    released: int = 0
    evicted: int = 0
    prefaulted_bytes: int = 0
    swept_orphans: int = 0

    @property
    def hit_rate(self) -> float:
        return self.hits / self.acquired if self.acquired else 0.0


class RegionPool:
    """Reuse regions between transfers so writes land on pages already faulted in.

    Parameters
    ----------
    max_regions : int
        Free regions kept warm; more are closed and unlinked on release.
    prefault : bool
        Fault new regions' pages in when created (``MADV_POPULATE_WRITE``).
    sweep : bool
        Remove regions orphaned by dead processes when the pool starts.
    min_size : int
        Smallest region created; sizes round up to a power of two.

    Examples
    --------
    >>> import numpy as np, tether
    >>> from tether.shm import RegionPool
    >>> pool = RegionPool(prefault=False, sweep=False)
    >>> region = pool.acquire(1 << 20)
    >>> ref = tether.dump_into(np.ones(3), region)
    >>> pool.release(region)
    >>> pool.acquire(1 << 20) is region, pool.stats.hits
    (True, 1)
    >>> pool.close()
    """

    def __init__(self, *, max_regions: int = 8, prefault: bool = True, sweep: bool = True, min_size: int = 1 << 20):
        self.max_regions = max_regions
        self.prefault = prefault
        self.min_size = min_size
        self.stats = PoolStats()
        self._free: list[Region] = []
        self._lock = threading.Lock()
        if sweep:
            self.stats.swept_orphans = len(gc())

    def acquire(self, nbytes: int) -> Region:
        """A region with room for ``nbytes`` of frames, warm when the pool has one."""
        with self._lock:
            self.stats.acquired += 1
            fits = [r for r in self._free if r.capacity - HEADER_SIZE >= nbytes]
            if fits:
                region = min(fits, key=lambda r: r.capacity)
                self._free.remove(region)
                self.stats.hits += 1
                region.reset()
                return region
            self.stats.misses += 1
        size = max(self.min_size, 1 << (max(nbytes, 1) - 1).bit_length())
        region = Region.create(size, prefault=self.prefault)
        if self.prefault:
            self.stats.prefaulted_bytes += region.capacity
        return region

    def release(self, region: Region) -> None:
        """Give a region back; its frames are dropped and its pages stay warm."""
        with self._lock:
            self.stats.released += 1
            if len(self._free) < self.max_regions:
                region.reset()
                self._free.append(region)
                return
            self.stats.evicted += 1
        region.close()
        region.unlink()

    @property
    def warm_bytes(self) -> int:
        """Bytes of free regions ready to be written at memory speed."""
        with self._lock:
            return sum(r.capacity for r in self._free)

    def close(self) -> None:
        """Close and unlink every free region."""
        with self._lock:
            regions, self._free = self._free, []
        for r in regions:
            r.close()
            r.unlink()

    def __enter__(self) -> "RegionPool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
