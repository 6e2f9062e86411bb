"""Shared-memory regions: frames written straight into ``/dev/shm``, read back as zero-copy views.

- :class:`Region`: one file in ``/dev/shm`` (mode 0600, ``tether-<pid>-<random>``)
  with a header, a frame table and frames. BEAM's ``file`` module can read it.
- :class:`RegionPool`: warm regions for repeated transfers.
- :func:`gc`: remove regions whose owner died (``tether shm gc``).

Views returned by ``tether.loads(region)`` keep the mapping alive: closing
the region, or the pool releasing it, never invalidates a view that exists.
A region's frames are immutable once committed until they are released;
release frames only when no reader needs them.
"""

from ._pool import PoolStats, RegionPool
from ._region import FrameRef, Region, RegionError, drop_cache, gc

__all__ = ["FrameRef", "PoolStats", "Region", "RegionError", "RegionPool", "drop_cache", "gc"]
