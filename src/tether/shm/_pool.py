"""A pool of warm regions: faulting fresh shared memory in costs more than the copy itself.

Under memory pressure (:func:`tether.memory.under_pressure`) a pool keeps
nothing warm: its free regions are trimmed when pressure starts, regions
given back are closed instead of kept, and new ones are not prefaulted,
each a decision logged on ``tether.memory``.
"""

from __future__ import annotations

import os
import threading
import weakref
from dataclasses import dataclass
from typing import Any

from .. import memory
from .._errors import RegionError, ValidationError
from ._region import HEADER_SIZE, SHM_DIR, Region, gc, live_stats

# Every live pool, for tether.memory: its stats and its trimming under pressure.
POOLS: "weakref.WeakSet[RegionPool]" = weakref.WeakSet()
# What a frame adds to the payload it holds (header, metadata, alignment): acquire(arr.nbytes) makes room for it,
# where a region of exactly arr.nbytes doubled at the first dump_into.
FRAME_ROOM = 4096


def pool_size(nbytes: int, min_size: int) -> int:
    """A pool region's size for frames of ``nbytes``: its power of two (at least ``min_size``), so that sizes
    of one class share warm regions, plus :data:`FRAME_ROOM` for the frame around them.

    Examples
    --------
    >>> pool_size(4 << 20, 1 << 20) - (4 << 20), pool_size((3 << 20) + 1, 1 << 20) - (4 << 20)
    (4096, 4096)
    """
    return max(min_size, 1 << (max(nbytes, 1) - 1).bit_length()) + FRAME_ROOM


def _empty_after_fork() -> None:
    """A forked child's pools start empty: their warm regions are the parent's, and handing one out here let
    two processes write one region (a child read its parent's frame for its own)."""
    for pool in list(POOLS):
        pool._free = []
        pool._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_empty_after_fork)


def pool_stats() -> dict[str, Any]:
    """Warm regions and bytes, acquires, hits and hit rate, and bytes trimmed, over every live pool.

    For tether's own modules, not a user API: this package hands it to
    :mod:`tether.memory`, whose :func:`~tether.memory.stats` reports these figures under ``"pools"``.

    Examples
    --------
    >>> pool_stats()["hit_rate"] >= 0
    True
    """
    pools = list(POOLS)
    acquired = sum(p.stats.acquired for p in pools)
    hits = sum(p.stats.hits for p in pools)
    warm = [p._warm() for p in pools]
    return {
        "pools": len(pools), "warm_regions": sum(n for n, _ in warm), "warm_bytes": sum(b for _, b in warm),
        "acquired": acquired, "hits": hits, "hit_rate": hits / acquired if acquired else 0.0,
        "trimmed_bytes": sum(p.stats.trimmed_bytes for p in pools),
    }


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
    trimmed: int = 0
    trimmed_bytes: int = 0

    @property
    def hit_rate(self) -> float:
        return self.hits / self.acquired if self.acquired else 0.0


def _check_own(region: Any) -> None:
    """Refuse what a pool must not reset, keep or unlink: anything but a region this process created."""
    if not isinstance(region, Region):
        raise ValidationError(f"RegionPool.release takes a tether.shm.Region from pool.acquire(), "
                              f"got {type(region).__name__}.")
    if not (region.created and region.writable):
        raise RegionError(f"Region {region.name} is attached, not created by this process: a pool takes back only "
                          "regions from pool.acquire(). Close the attachment with region.close(); the process "
                          "that acquired the region releases it.")


class RegionPool:
    """Reuse regions between transfers so writes land on pages already faulted in.

    Parameters
    ----------
    max_regions : int
        Free regions kept warm; more are closed and unlinked on release.
    prefault : bool
        Fault new regions' pages in when created (``MADV_POPULATE_WRITE``).
    sweep : bool
        Remove this user's regions orphaned by dead processes from ``directory``
        when the pool starts (:func:`tether.shm.gc`'s rule: only files that are
        regions, only this user's, and only in ``directory``).
    min_size : int
        Smallest region created; sizes round up to a power of two (so that close sizes share warm
        regions), plus room for a frame's header and metadata (``FRAME_ROOM``).
    directory : str or os.PathLike, default "/dev/shm"
        Where the pool's regions go (:meth:`Region.create`), and what ``sweep`` cleans.

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
    >>> pool.release(region)  # close() unlinks the free regions; one still acquired stays its holder's
    >>> pool.close()
    """

    def __init__(self, *, max_regions: int = 8, prefault: bool = True, sweep: bool = True, min_size: int = 1 << 20,
                 directory: str | os.PathLike = SHM_DIR):
        for name, value, low in (("max_regions", max_regions, 0), ("min_size", min_size, 1)):
            if type(value) is not int or value < low:
                raise ValidationError(f"RegionPool {name} must be an int of at least {low}, got {value!r}.")
        if not isinstance(directory, (str, os.PathLike)):
            raise ValidationError(f"RegionPool directory must be a str or os.PathLike path, "
                                  f"got {type(directory).__name__}.")
        self.max_regions = max_regions
        self.prefault = prefault
        self.min_size = min_size
        self.directory = os.path.abspath(directory)
        self.stats = PoolStats()
        self._free: list[Region] = []
        self._lock = threading.Lock()
        if sweep:
            # Regions only: the BEAM sweeps its workers' directories itself.
            self.stats.swept_orphans = len(gc(directory=self.directory, private_dirs=False))
        POOLS.add(self)

    def acquire(self, nbytes: int) -> Region:
        """A region with room for ``nbytes`` of frames, warm when the pool has one.

        Under memory pressure a new region is not prefaulted (the warm ones
        were trimmed when pressure started: :func:`tether.memory.relieve`).
        """
        if not isinstance(nbytes, int) or isinstance(nbytes, bool) or not 0 <= nbytes <= 1 << 61:
            raise ValidationError(f"RegionPool.acquire needs the bytes of frames to hold, an int from 0 to 2**61; "
                                  f"got {nbytes!r}.")
        pressure = "memory_pressure" in memory.check()
        with self._lock:
            self.stats.acquired += 1
            fits = [r for r in self._free if r.capacity - HEADER_SIZE >= nbytes + FRAME_ROOM]
            region = min(fits, key=lambda r: r.capacity) if fits else None
            if region is not None:
                self._free.remove(region)
                self.stats.hits += 1
            else:
                self.stats.misses += 1
        if region is not None:
            region.reset()
            memory.recheck_budgets(grew=False)  # fewer warm bytes: a pool_bytes alert may clear
            return region
        size = pool_size(nbytes, self.min_size)
        prefault = self.prefault and not pressure
        if self.prefault and pressure:
            memory.decide("pool", f"did not prefault a new region of {size} B: memory pressure", size=size)
        region = Region.create(size, prefault=prefault, directory=self.directory)
        if prefault:
            self.stats.prefaulted_bytes += region.capacity
        return region

    def release(self, region: Region) -> None:
        """Give a region back; its frames are dropped and its pages stay warm (not under memory pressure).

        Only a region this process created (one :meth:`acquire` handed out) is taken: an attachment is
        refused with a :class:`~tether.RegionError`, as reusing or removing it would pull another
        writer's region from under it.

        Examples
        --------
        >>> from tether.shm import Region, RegionPool
        >>> pool = RegionPool(prefault=False, sweep=False)
        >>> region = pool.acquire(1000)
        >>> attached = Region.attach(region.name)
        >>> pool.release(attached)
        Traceback (most recent call last):
        ...
        tether._errors.RegionError: Region tether-... is attached, not created by this process: ...
        >>> attached.close()
        >>> pool.release(region)
        >>> pool.close()
        """
        _check_own(region)
        keep = not memory.under_pressure()
        if not keep:
            memory.decide("pool", f"closed a released region of {region.capacity} B instead of keeping it warm: "
                          "memory pressure", capacity=region.capacity)
        with self._lock:
            if any(r is region for r in self._free):
                # A second release while it waits here would let two acquire() calls hand it to two writers.
                # (A release after another acquire() took it again is the caller's bug this cannot see.)
                raise RegionError(f"Region {region.name} was already released to this pool; release it once, "
                                  "after its last frame is read.")
            self.stats.released += 1
            if keep and len(self._free) < self.max_regions:
                region.reset()
                self._free.append(region)
                kept = True
            else:
                self.stats.evicted += 1
                kept = False
        if kept:
            memory.recheck_budgets()  # more warm bytes: a pool_bytes budget alerts now, not at the next acquire
            return
        region.close()
        region.unlink()

    @property
    def warm_bytes(self) -> int:
        """Bytes of free regions ready to be written at memory speed."""
        return self._warm()[1]

    def _warm(self) -> tuple[int, int]:
        """(free regions, their bytes), without reading each region's header."""
        with self._lock:
            return len(self._free), sum(r._map.size for r in self._free if r._map is not None)

    def trim(self, keep_bytes: int = 0) -> int:
        """Close and unlink free regions, largest first, until at most ``keep_bytes`` stay warm.

        Parameters
        ----------
        keep_bytes : int, default 0
            Warm bytes to keep.

        Returns
        -------
        int
            Bytes given back.

        Examples
        --------
        >>> pool = RegionPool(prefault=False, sweep=False)
        >>> pool.release(pool.acquire(1 << 20))
        >>> pool.trim() > 0, pool.warm_bytes
        (True, 0)
        """
        with self._lock:
            self._free.sort(key=lambda r: r.capacity)
            drop = []
            warm = sum(r.capacity for r in self._free)
            while self._free and warm > keep_bytes:
                region = self._free.pop()
                warm -= region.capacity
                drop.append(region)
            freed = sum(r.capacity for r in drop)
            self.stats.trimmed += len(drop)
            self.stats.trimmed_bytes += freed
        for region in drop:
            region.close()
            region.unlink()
        return freed

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


# tether.memory reports regions and pools, and trims the pools under pressure, through these: it cannot import
# this package, which imports it.
memory.count_regions_with(live_stats, pool_stats, POOLS)
