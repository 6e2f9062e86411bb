"""Shared-memory regions: frames written straight into ``/dev/shm``, read back as zero-copy views.

- :class:`Region`: one file in ``/dev/shm`` or another directory (mode 0600,
  ``tether-<pid>-<random>``) with a header, a frame table and frames, its
  memory allocated when it is created or grown. BEAM's ``file`` module can read it.
- :class:`RegionPool`: warm regions for repeated transfers.
- :func:`gc`: remove this user's regions whose owner died, and BEAM workers'
  private directories whose node died (``tether shm gc``); no other file.
- :func:`private_dirs`: the BEAM workers' private directories and what they
  hold (``tether shm ls``).

Views returned by ``tether.loads(region)`` keep the mapping alive: closing
the region, or the pool releasing it, never invalidates a view that exists.
A region's frames are immutable once committed until they are released;
release frames only when no reader needs them.

For tether's own modules, not listed in ``__all__``: the region layout
(:data:`MAGIC`, :data:`VERSION`, :data:`HEADER_SIZE`, :data:`SLOT_SIZE`,
:data:`SLOTS`, :data:`HEADER_FIELDS`, :data:`SLOT_FIELDS`), which the wire
tables and the CLI read. The region and pool figures reach
:mod:`tether.memory` the other way: this package hands them over as it loads
(:func:`tether.memory.count_regions_with`).

Examples
--------
>>> from tether import shm
>>> shm.MAGIC, shm.HEADER_FIELDS[0]
(b'TTHRSHM1', ('magic', '8s'))
"""

from ._pool import PoolStats, RegionPool
from ._private import private_dirs
from ._region import FrameRef, Region, RegionError, drop_cache, gc

# Re-exported (the same objects) so that other packages never reach into _region; kept out of __all__.
from ._region import HEADER_FIELDS, HEADER_SIZE, MAGIC, SLOT_FIELDS, SLOT_SIZE, SLOTS, VERSION

__all__ = ["FrameRef", "PoolStats", "Region", "RegionError", "RegionPool", "drop_cache", "gc", "private_dirs"]
