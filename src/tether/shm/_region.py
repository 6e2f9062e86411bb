"""Shared-memory regions: files in /dev/shm (or another directory) holding a small header, a frame table and frames.

Layout (all integers little-endian)::

    0     8  magic "TTHRSHM1"
    8     4  version (1)
    12    4  header size (4096: the data area starts page-aligned)
    16    8  generation: bumped by every commit and release
    24    8  owner pid
    32    8  owner start time (clock ticks since boot, /proc/<pid>/stat field 22)
    40    8  capacity: bytes of the region the owner has sized it to
    48    8  allocation cursor: first free byte of the data area
    56    4  slot count (126)
    60    4  latest: 1 + the slot committed last (0: none), so readers find the newest frame in O(1)
    64  4032 126 slots of 32 bytes: offset u64, length u64, seq u64, reserved u64

A slot's ``seq`` is a seqlock: odd while its frame is being written, even
once committed, 0 when unused. Readers copy the slot, accept only an even
non-zero seq, and check it again once the frame is read: ``tether.loads``
with ``copy=True`` copies the frame out between the two and reads the copy,
so a frame rewritten meanwhile is a ``RegionError``, never a torn value. A
zero-copy read (``copy=False``) parses the region's own bytes: a writer
reusing the region then can change them under the parser (pyarrow's can
crash), so read with ``copy=True`` where a writer may reuse it.
"""

from __future__ import annotations

import collections
import errno
import fcntl
import logging
import mmap
import os
import re
import secrets
import stat
import struct
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from .. import memory, metrics
from .._files import NotRegularFile, open_regular
from . import _private
from .._errors import RegionError, TetherError, ValidationError

log = logging.getLogger("tether.shm")

SHM_DIR = "/dev/shm"
PREFIX = "tether-"
# The names Region.create draws (tether-<pid>-<16 hex digits>): gc removes no other. A BEAM worker's private
# directory has 32 hex digits, a region created under a chosen name none of this shape.
_DRAWN_NAME = re.compile(r"tether-([0-9]+)-[0-9a-f]{16}")
MAGIC = b"TTHRSHM1"
VERSION = 1
HEADER_SIZE = 4096
SLOT_SIZE = 32
SLOTS = (HEADER_SIZE - 64) // SLOT_SIZE
FRAME_ALIGN = 4096
PAGE = mmap.PAGESIZE

# The region header and a slot, field by field: the one definition of the
# layout in Python (tests compare it with beam/include/tether.hrl).
HEADER_FIELDS = (
    ("magic", "8s"),
    ("version", "I"),
    ("header_size", "I"),
    ("generation", "Q"),
    ("owner_pid", "Q"),
    ("owner_start", "Q"),
    ("capacity", "Q"),
    ("cursor", "Q"),
    ("slot_count", "I"),
    ("latest", "I"),
)
SLOT_FIELDS = (("offset", "Q"), ("length", "Q"), ("seq", "Q"), ("reserved", "Q"))
_HEAD = struct.Struct("<" + "".join(code for _, code in HEADER_FIELDS))
_SLOT = struct.Struct("<" + "".join(code for _, code in SLOT_FIELDS))
assert _HEAD.size == 64 and _SLOT.size == SLOT_SIZE


@dataclass(frozen=True, slots=True)
class FrameRef:
    """Where one committed frame lives in a region."""

    slot: int
    offset: int
    length: int
    seq: int


def proc_start_time(pid: int) -> int:
    """Start time of ``pid`` in clock ticks since boot, or 0 when it is not running."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return 0
    # The command name may contain spaces and parentheses: fields start after the last ')'.
    fields = data[data.rindex(b")") + 2 :].split()
    return int(fields[19])


def _new_name() -> str:
    return f"{PREFIX}{os.getpid()}-{secrets.token_hex(8)}"


def _round(n: int, to: int) -> int:
    return (n + to - 1) // to * to


def _checked_directory(directory: Any) -> str:
    """``directory`` as an absolute path: other processes open ``region.path`` from their own working directory."""
    try:
        path = os.fspath(directory)
    except TypeError:
        path = None
    if not isinstance(path, str):
        raise ValidationError(f"A region's directory is a str or os.PathLike path, got {type(directory).__name__}.")
    return os.path.abspath(path)


def _checked_name(name: Any) -> str:
    if not isinstance(name, str) or not name.startswith(PREFIX) or "/" in name or len(name) > 200:
        raise ValidationError(f"Region name {name!r} must start with {PREFIX!r} and contain no '/'.")
    return name


def _open_new(path: str, name: str) -> int:
    """A new file at ``path``, mode 0600: O_EXCL, so never someone else's file or a link to one."""
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        raise RegionError(f"Region {name!r} already exists; pick another name or attach to it.") from None
    except OSError as exc:
        raise RegionError(f"Cannot create region {path}: {exc.strerror}.") from exc


def _open_memfd(name: str) -> tuple[int, str]:
    if not hasattr(os, "memfd_create"):
        raise RegionError("sealed=True needs Linux memfd_create.")
    fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    os.fchmod(fd, 0o600)
    return fd, f"/proc/{os.getpid()}/fd/{fd}"


def _open_region_file(name: str, directory: Any, sealed: bool) -> tuple[int, str]:
    """A new region's descriptor and path: a memfd when ``sealed``, else a new file in ``directory``."""
    if sealed:
        if _checked_directory(directory) != SHM_DIR:
            raise ValidationError("A sealed region is a memfd, in no directory: drop directory= or sealed=True.")
        return _open_memfd(name)
    path = os.path.join(_checked_directory(directory), _checked_name(name))
    return _open_new(path, name), path


def _lay_out(fd: int, total: int, prefault: bool, sealed: bool) -> int:
    """Write a new region's header and size its file to ``total``; return the bytes given memory now.

    The header goes first: gc knows a region's file by its magic, even one whose creator died here.
    Memory for all of it when it is to be prefaulted anyway; else for the header, and for each
    frame's range as reserve() hands it out: a pool rounds sizes up to a power of two, and memory
    taken for bytes never written would be charged to the filesystem for nothing.
    """
    os.pwrite(fd, _HEAD.pack(MAGIC, VERSION, HEADER_SIZE, 0, os.getpid(), proc_start_time(os.getpid()),
                             total, HEADER_SIZE, SLOTS, 0), 0)
    allocated = total if prefault else HEADER_SIZE
    _allocate(fd, 0, allocated)
    os.ftruncate(fd, total)
    if sealed:
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK)
    return allocated


def _is_memfd(path: str) -> bool:
    """Whether ``path`` names a memfd (its own or another process's), which has no name to remove."""
    return path.startswith("/proc/")


_fallocate = getattr(os, "posix_fallocate", None)
# What a filesystem without fallocate answers (glibc emulates it on most, not on all).
_NO_FALLOCATE = frozenset((errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL, errno.ENOSYS))


def _allocate(fd: int, start: int, end: int) -> None:
    """Take memory behind bytes ``start`` to ``end`` now (the file grows to ``end`` if shorter).

    ``ftruncate`` alone makes a sparse file: its pages are taken at the first
    write, and when the filesystem is full by then the writer dies of SIGBUS.
    Taken here, a full filesystem is an ENOSPC that the caller turns into a
    RegionError. Where the filesystem cannot allocate ahead, the file is
    sparse as before.
    """
    if end <= start:
        return
    if _fallocate is not None:
        try:
            _fallocate(fd, start, end - start)
            return
        except OSError as exc:
            if exc.errno not in _NO_FALLOCATE:
                raise
    if os.fstat(fd).st_size < end:
        os.ftruncate(fd, end)


def _free_bytes(directory: str) -> int | None:
    try:
        st = os.statvfs(directory)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def _sized(n: int) -> str:
    return f"{n} bytes ({n / (1 << 20):.1f} MiB)"


def _sizing_error(what: str, path: str, needed: int, exc: OSError, otherwise: str) -> RegionError:
    """The RegionError for a region that could not be given ``needed`` more bytes; for a full filesystem, the fix."""
    if exc.errno != errno.ENOSPC:
        return RegionError(f"{what}: {exc.strerror}; {otherwise}.")
    if _is_memfd(path):
        return RegionError(f"{what}: no memory left for {needed} more bytes of a memfd; free memory, or ask for less.")
    directory = os.path.dirname(path)
    free = _free_bytes(directory)
    has = "" if free is None else f", {_sized(free)} free"
    return RegionError(
        f"{what}: {directory} has no room for {_sized(needed)} more{has}. Free memory there (`tether shm gc` removes "
        "regions of dead processes), or use a directory with room (directory=, a BEAM worker's shm_dir:), or raise "
        "a BEAM worker's shm_threshold so that frames this large go through the pipe instead."
    )


class _Mapping:
    """An mmap that outlives ``close()`` while views into it exist."""

    __slots__ = ("mm", "size", "__weakref__")

    def __init__(self, fd: int, size: int, writable: bool):
        access = mmap.ACCESS_WRITE if writable else mmap.ACCESS_READ
        self.mm = mmap.mmap(fd, size, access=access)
        self.size = size

    def release(self) -> None:
        try:
            self.mm.close()
        except BufferError:
            # Views still point into the mapping. Dropping our reference
            # leaves the mmap object to their references: it unmaps when the
            # last view goes, and never while one can still read it.
            pass


class _Cached:
    __slots__ = ("fd", "mapping")

    def __init__(self, fd: int, mapping: _Mapping):
        self.fd = fd
        self.mapping = mapping

    def drop(self) -> None:
        self.mapping.release()
        try:
            os.close(self.fd)
        except OSError:
            pass


# Attaching maps the file and closing unmaps it: with touched pages and a
# process that runs threads, that pair costs more than reading a frame. So
# attachments share one mapping per file, kept here (bounded, LRU).
_ATTACHED: "collections.OrderedDict[tuple, _Cached]" = collections.OrderedDict()
_ATTACHED_MAX = 16
_attached_lock = threading.Lock()


# Every Region object not yet collected, for tether.memory.stats(); closed ones are skipped there.
REGIONS: "weakref.WeakSet[Region]" = weakref.WeakSet()
# Attachments served from the cache (hits) and by a new mapping (misses).
_attach_counts = {"hits": 0, "misses": 0}


def live_stats() -> dict[str, Any]:
    """Open regions (owned and attached), the bytes they and the attach cache map, and the cache's counters.

    Mappings that outlive a closed region through views handed out are not
    counted: nothing tether holds refers to them any more.

    For tether's own modules, not a user API: this package hands it to
    :mod:`tether.memory`, whose :func:`~tether.memory.stats` reports these figures under ``"regions"``.

    Examples
    --------
    >>> s = live_stats()
    >>> s["live"] == s["owned"] + s["attached"], s["attach_cache"]["max"]
    (True, 16)
    """
    mappings: dict[int, int] = {}
    owned = attached = 0
    for region in list(REGIONS):
        m = region._map
        if region._closed or m is None:
            continue
        owned += region.created
        attached += not region.created
        mappings[id(m)] = m.size
    with _attached_lock:
        cached = [entry.mapping for entry in _ATTACHED.values()]
    for m in cached:
        mappings[id(m)] = m.size
    cache = {"entries": len(cached), "max": _ATTACHED_MAX, "mapped_bytes": sum(m.size for m in cached),
             **_attach_counts}
    return {"live": owned + attached, "owned": owned, "attached": attached,
            "mapped_bytes": sum(mappings.values()), "attach_cache": cache}


def _record_attach(nbytes: int, seconds: float, error: BaseException | None = None) -> None:
    """Count one attach in tether.metrics."""
    metrics.record("attach", "-", "-", "shm", nbytes, nbytes, seconds, error=error)


def drop_cache() -> None:
    """Unmap every mapping kept for :meth:`Region.attach`; views into them stay valid."""
    with _attached_lock:
        entries = list(_ATTACHED.values())
        _ATTACHED.clear()
    for entry in entries:
        entry.drop()
    memory.recheck_budgets(grew=False)  # fewer mapped bytes: a mapped_bytes alert clears now


def _sweep_unlinked() -> None:
    # A removed region must not stay mapped (and its memory pinned) by the cache.
    for key, entry in list(_ATTACHED.items()):
        try:
            gone = os.fstat(entry.fd).st_nlink == 0
        except OSError:
            gone = True
        if gone:
            del _ATTACHED[key]
            entry.drop()


class Region:
    """A shared-memory region holding tether frames: a file in ``/dev/shm`` (or a ``directory``), or a sealed memfd.

    Use :meth:`create` or :meth:`attach`, not the constructor.

    Examples
    --------
    >>> import numpy as np, tether
    >>> from tether.shm import Region
    >>> with Region.create(1 << 20) as region:
    ...     ref = tether.dump_into(np.arange(4.0), region)
    ...     tether.loads(region)
    array([0., 1., 2., 3.])
    """

    def __init__(self, name: str, path: str, fd: int, size: int, writable: bool, owner: bool,
                 shared: _Cached | None = None):
        self.name = name
        self.path = path
        self._fd = fd
        self._writable = writable
        # The creating process: a child forked from it holds the object too, and must not remove the file.
        self._owner = os.getpid() if owner else 0
        # An attachment through the cache uses its mapping and fd; close() leaves them to it.
        self._shared = shared
        self._map: _Mapping | None = shared.mapping if shared is not None else _Mapping(fd, size, writable)
        # Bytes from the start known to have memory behind them (this process allocated them): reserve()
        # allocates a frame's range past this before handing it out.
        self._allocated = 0
        self._closed = False
        REGIONS.add(self)

    # ------------------------------------------------------------ lifecycle

    @classmethod
    def create(cls, size: int, *, name: str | None = None, sealed: bool = False, prefault: bool = False,
               directory: str | os.PathLike = SHM_DIR) -> "Region":
        """Create a region able to hold ``size`` bytes of frames.

        The file's memory is allocated (``posix_fallocate``) before it is
        written, not at the first write: all of it here when ``prefault``,
        else each frame's bytes as :meth:`reserve` hands them out. A
        filesystem too full for it is a :class:`RegionError` then, instead
        of a SIGBUS in the middle of a write.

        Parameters
        ----------
        size : int
            Bytes for frames; the file is this plus one header page, rounded to pages.
        name : str, optional
            Must start with ``"tether-"``; by default ``tether-<pid>-<64 random bits>``.
            Only regions under a default name are ever removed by :func:`gc`.
        sealed : bool
            Back the region with a memfd sealed against shrinking (Linux): no
            other process can truncate it under a reader. Other processes open
            it by ``region.path`` (``/proc/<pid>/fd/<n>``) instead of ``/dev/shm``.
        prefault : bool
            Fault every page in now (``MADV_POPULATE_WRITE`` or a touch per page),
            so the first write runs at memory speed.
        directory : str or os.PathLike, default "/dev/shm"
            Where the file goes (made absolute: ``region.path`` is what other
            processes open). A memory filesystem (tmpfs) keeps it off disk; a
            BEAM worker's private directory keeps its regions with it. Not for
            ``sealed`` regions, which have no directory.

        Returns
        -------
        Region
            Owned by this process: ``with`` closes it and removes its file.

        Raises
        ------
        RegionError
            The name is taken, the directory refuses the file, or it has no
            room for what is allocated here (the header, or with ``prefault``
            the whole region; the message says how much is free and what to
            do). Nothing is left behind.

        Examples
        --------
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d, Region.create(1 << 16, directory=d) as region:
        ...     os.path.dirname(region.path) == d, region.capacity
        (True, 69632)
        """
        if type(size) is not int or not 0 < size <= _MAX_RESERVE:
            raise ValidationError(f"Region size must be a positive int up to 2**62, got {size!r}.")
        total = _round(HEADER_SIZE + size, PAGE)
        name = name or _new_name()
        fd, path = _open_region_file(name, directory, sealed)
        try:
            allocated = _lay_out(fd, total, prefault, sealed)
            region = cls(name, path, fd, total, True, True)
            region._allocated = allocated
        except BaseException as exc:
            os.close(fd)
            if not sealed:
                os.unlink(path)
            if isinstance(exc, OSError):
                raise _sizing_error(f"Cannot size or map a region of {total} bytes ({path})", path, total, exc,
                                    "ask for less") from exc
            raise
        if prefault:
            region.prefault()
        memory.check()  # a budget on live regions or mapped bytes alerts as soon as it is exceeded
        return region

    @classmethod
    def attach(cls, name: str, *, readonly: bool = True) -> "Region":
        """Open an existing region by name (``tether-...``) or path (``/dev/shm/...``, ``/proc/<pid>/fd/<n>``).

        The file's size is checked with ``fstat`` before mapping, and the
        header is copied out and validated before anything else is read.
        Attachments to the same file share one mapping, kept by the process
        (at most 16, least recently used first out; :func:`drop_cache`
        releases them), so attaching again costs no ``mmap``. Each attach is
        counted in :mod:`tether.metrics` (operation ``"attach"``).
        """
        t0 = time.perf_counter()
        try:
            region = cls._attach(name, readonly)
        except TetherError as exc:
            _record_attach(0, 0.0, exc)
            raise
        _record_attach(region._map.size if region._map is not None else 0, time.perf_counter() - t0)
        memory.recheck_budgets()  # a budget on live regions or mapped bytes alerts as soon as it is exceeded
        return region

    @classmethod
    def _attach(cls, name: str, readonly: bool) -> "Region":
        if not isinstance(name, str):
            raise ValidationError(f"Region.attach takes a region's name or path as a str, got {type(name).__name__}.")
        path = name if name.startswith("/") else os.path.join(SHM_DIR, name)
        try:
            fd, st = open_regular(path, writable=not readonly)  # a FIFO under a region's name hung `tether shm ls`
        except FileNotFoundError:
            raise RegionError(f"No region {name!r}: {path} does not exist. Was it released or garbage-collected?") from None
        except NotRegularFile:
            raise RegionError(f"{path} is not a regular file, so not a region.") from None
        except OSError as exc:
            raise RegionError(f"Cannot open region {path!r}: {exc.strerror}.") from None
        try:
            if st.st_size < HEADER_SIZE:
                raise RegionError(f"Region {path} has {st.st_size} bytes, less than its {HEADER_SIZE}-byte header.")
            key = (st.st_dev, st.st_ino, not readonly)
            with _attached_lock:
                entry = _ATTACHED.get(key)
                if entry is not None and entry.mapping.size == st.st_size:
                    _ATTACHED.move_to_end(key)
                    os.close(fd)
                    _attach_counts["hits"] += 1
                else:
                    _attach_counts["misses"] += 1
                    if entry is not None:  # the file grew or shrank: map it afresh
                        del _ATTACHED[key]
                        entry.drop()
                    _sweep_unlinked()
                    entry = _Cached(fd, _Mapping(fd, st.st_size, not readonly))
                    _ATTACHED[key] = entry
                    while len(_ATTACHED) > _ATTACHED_MAX:
                        _ATTACHED.popitem(last=False)[1].drop()
            fd = -1
            region = cls(os.path.basename(path), path, entry.fd, st.st_size, not readonly, False, shared=entry)
            region._validate_header(st.st_size)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            raise
        return region

    def close(self) -> None:
        """Unmap and close. Views already handed out stay valid until they are released."""
        if self._closed:
            return
        self._closed = True
        if self._shared is not None:  # the attach cache owns mapping and fd
            self._map = None
            memory.recheck_budgets(grew=False)  # back under a budget: its alert clears now, not at the next create
            return
        if self._map is not None:
            self._map.release()
            self._map = None
        try:
            os.close(self._fd)
        except OSError:
            pass
        memory.recheck_budgets(grew=False)

    def unlink(self) -> None:
        """Remove the region's file, in whatever directory; mappings (and views) stay valid until closed.

        A sealed region (a memfd) has no name to remove: it goes with the last descriptor or mapping.
        """
        if not _is_memfd(self.path):
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass

    def __enter__(self) -> "Region":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
        if self.created:
            self.unlink()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self.capacity} B"
        return f"<tether.shm.Region {self.name} {state}>"

    # ------------------------------------------------------------ header

    @property
    def _mm(self) -> mmap.mmap:
        if self._closed or self._map is None:
            raise RegionError(f"Region {self.name} is closed.")
        return self._map.mm

    @property
    def buf(self) -> memoryview:
        """The whole mapping as a memoryview (writable when the region is)."""
        return memoryview(self._mm)

    def _head(self) -> tuple:
        return _HEAD.unpack(bytes(self._mm[:64]))

    def _validate_header(self, file_size: int) -> tuple:
        head = self._head()
        magic, version, hsize, _gen, _pid, _start, capacity, cursor, slots, _ = head
        if magic != MAGIC:
            raise RegionError(f"{self.path} is not a tether region (magic {magic!r}).")
        if version != VERSION:
            raise RegionError(f"Region version {version} is not supported; this tether reads version {VERSION}.")
        if hsize != HEADER_SIZE or slots != SLOTS:
            raise RegionError(f"Region header declares size {hsize} and {slots} slots; expected {HEADER_SIZE} and {SLOTS}.")
        if capacity > file_size or cursor > capacity or cursor < HEADER_SIZE:
            raise RegionError(
                f"Region header is inconsistent: capacity {capacity}, cursor {cursor}, file {file_size} bytes."
            )
        return head

    @property
    def capacity(self) -> int:
        return self._head()[6]

    @property
    def owner_pid(self) -> int:
        return self._head()[4]

    @property
    def created(self) -> bool:
        """Whether this process created the region (:meth:`create`), rather than attached to it (or inherited
        it through ``fork``: a child's ``with region:`` does not remove its parent's file).

        Examples
        --------
        >>> r = Region.create(4096)
        >>> a = Region.attach(r.name, readonly=True)
        >>> (r.created, r.writable), (a.created, a.writable)
        ((True, True), (False, False))
        >>> a.close(); r.close(); r.unlink()
        """
        return self._owner == os.getpid()

    @property
    def writable(self) -> bool:
        """Whether this mapping of the region can be written (see :attr:`created` for an example)."""
        return self._writable

    @property
    def generation(self) -> int:
        return self._head()[3]

    @property
    def free(self) -> int:
        """Bytes left for frames before the region must grow or be reset."""
        head = self._head()
        return head[6] - head[7]

    def _slots(self) -> list[tuple[int, int, int, int]]:
        """The whole slot table, copied out in one read."""
        return list(_SLOT.iter_unpack(self._mm[64:HEADER_SIZE]))

    def _slot(self, i: int) -> tuple[int, int, int]:
        off, length, seq, _ = _SLOT.unpack(bytes(self._mm[64 + i * SLOT_SIZE : 64 + (i + 1) * SLOT_SIZE]))
        return off, length, seq

    def _bump_generation(self) -> None:
        mm = self._mm
        (gen,) = struct.unpack_from("<Q", mm, 16)
        struct.pack_into("<Q", mm, 16, gen + 1)

    # ------------------------------------------------------------ writing

    def reserve(self, nbytes: int) -> tuple[int, int, memoryview]:
        """Claim space and a slot for a frame of ``nbytes``; return (slot, offset, writable view).

        The slot's seq is odd until :meth:`commit`; readers skip it. One
        process writes a region at a time (its owner); any number may read.
        """
        self._need_writable("reserve a frame in")
        # Not Limits.max_frame_size: that bounds what a reader accepts, and dumps writes larger frames too.
        # 2**62: a file size os.ftruncate takes (past it, an OverflowError); too large for memory is a RegionError.
        if type(nbytes) is not int or not 0 <= nbytes <= _MAX_RESERVE:
            raise ValidationError(f"reserve takes a frame's size in bytes, a non-negative int up to 2**62; "
                                  f"got {nbytes!r}.")
        mm = self._mm
        head = self._head()
        capacity, cursor = head[6], head[7]
        offset = _round(cursor, FRAME_ALIGN)
        if offset + nbytes > capacity:
            self.grow(max(capacity * 2, offset + nbytes) - HEADER_SIZE)
            mm = self._mm
        self._take_memory(offset + nbytes)
        slot = self._free_slot()
        # Odd while being written; derived from the generation, so a slot
        # reused later never repeats a seq a reader may still hold.
        seq = 2 * self._head()[3] + 3
        self._bump_generation()
        _SLOT.pack_into(mm, 64 + slot * SLOT_SIZE, offset, nbytes, seq, 0)
        struct.pack_into("<Q", mm, 48, offset + nbytes)
        return slot, offset, memoryview(mm)[offset : offset + nbytes]

    def _take_memory(self, end: int) -> None:
        """Memory behind the region up to ``end`` before a frame is written there (ENOSPC: RegionError, no SIGBUS)."""
        if end <= self._allocated:
            return
        try:
            _allocate(self._fd, self._allocated, end)
        except OSError as exc:
            raise _sizing_error(f"Cannot write a frame of {end - self._allocated} more bytes to region {self.name}",
                                self.path, end - self._allocated, exc, "release frames or reset it instead") from exc
        self._allocated = end

    def commit(self, slot: int) -> FrameRef:
        """Publish the frame in ``slot``: readers see it from now on."""
        _check_slot(slot)
        mm = self._mm
        off, length, seq = self._slot(slot)
        if not seq & 1:
            raise RegionError(f"Slot {slot} of {self.name} is not being written.")
        struct.pack_into("<Q", mm, 64 + slot * SLOT_SIZE + 16, seq + 1)
        struct.pack_into("<I", mm, 60, slot + 1)
        self._bump_generation()
        return FrameRef(slot, off, length, seq + 1)

    def release(self, ref: FrameRef | int) -> None:
        """Drop a committed frame; when no frame is left, the space is reused from the start.

        A :class:`FrameRef` releases only the frame it names: one whose slot
        holds another frame by now (released, and the slot reused) is a
        :class:`RegionError`, not the newer frame dropped.
        """
        slot = _check_slot(ref.slot if isinstance(ref, FrameRef) else ref)
        self._need_writable("release frames of")
        mm = self._mm
        off, length, seq = self._slot(slot)
        if seq == 0:
            return  # released already (twice, or after reset()): nothing to drop
        if isinstance(ref, FrameRef) and (seq, off, length) != (ref.seq, ref.offset, ref.length):
            raise RegionError(f"Slot {slot} of {self.name} no longer holds that frame (released, and the slot "
                              "used again): nothing was released. Release a frame once, by its newest FrameRef.")
        _SLOT.pack_into(mm, 64 + slot * SLOT_SIZE, 0, 0, 0, 0)
        if not any(slot[2] for slot in self._slots()):
            struct.pack_into("<Q", mm, 48, HEADER_SIZE)
        self._bump_generation()

    def reset(self) -> None:
        """Release every frame and reuse the region from the start (pool reuse)."""
        self._need_writable("reset")
        mm = self._mm
        mm[64:HEADER_SIZE] = bytes(HEADER_SIZE - 64)
        struct.pack_into("<Q", mm, 48, HEADER_SIZE)
        struct.pack_into("<QQ", mm, 24, os.getpid(), proc_start_time(os.getpid()))
        self._bump_generation()

    def _need_writable(self, what: str) -> None:
        """A RegionError, saying so, for a write to a region attached read-only."""
        self._mm  # a closed region is a RegionError first
        if not self._writable:
            raise RegionError(f"Cannot {what} region {self.name}: it is attached read-only. Its owner (the "
                              "process that created it) writes it; attach with readonly=False to write it from here.")

    def _free_slot(self) -> int:
        for i, slot in enumerate(self._slots()):
            if slot[2] == 0:
                return i
        raise RegionError(f"Region {self.name} has no free frame slot ({SLOTS} in use); release frames first.")

    def grow(self, size: int) -> None:
        """Enlarge the region to hold ``size`` bytes of frames. Existing views stay valid.

        The new bytes get memory as :meth:`reserve` hands them out to frames
        (a full filesystem is then a :class:`RegionError` saying what to do);
        when the file cannot grow, the region is left as it was.
        """
        if type(size) is not int or not 0 <= size <= _MAX_RESERVE:
            raise ValidationError(f"grow takes a size in bytes, a non-negative int up to 2**62; got {size!r}.")
        self._need_writable("grow")
        total = _round(HEADER_SIZE + size, PAGE)
        mapped = len(self._mm)  # self._mm: a closed region is a RegionError
        if total <= mapped:
            return
        old = self._map
        try:
            os.ftruncate(self._fd, total)
            self._map = _Mapping(self._fd, total, self._writable)
        except OSError as exc:
            try:  # the file back to what the header says, so readers do not map what was never published
                os.ftruncate(self._fd, mapped)
            except OSError:
                pass  # a sealed memfd cannot shrink: readers still map by the header's capacity
            raise _sizing_error(f"Cannot grow region {self.name} to {total} bytes", self.path, total - mapped, exc,
                                "release frames or reset it instead") from exc
        if old is not None:
            old.release()
        struct.pack_into("<Q", self._map.mm, 40, total)
        self._bump_generation()

    def prefault(self) -> int:
        """Fault in every page now; return the bytes made resident."""
        self._need_writable("prefault")
        mm = self._mm
        n = len(mm)
        advice = getattr(mmap, "MADV_POPULATE_WRITE", 23)
        try:
            mm.madvise(advice)
            return n
        except OSError:
            pass
        view = memoryview(mm)
        zero = b"\0"
        for pos in range(HEADER_SIZE, n, PAGE):  # one touch per page
            view[pos : pos + 1] = zero
        return n

    # ------------------------------------------------------------ reading

    def _remap_if_grown(self) -> None:
        st = os.fstat(self._fd)
        if self._map is not None and st.st_size > self._map.size:
            old = self._map
            self._map = _Mapping(self._fd, st.st_size, self._writable)
            if self._shared is not None:
                self._shared.mapping = self._map  # later attachments share the larger mapping
            old.release()

    def frames(self) -> list[FrameRef]:
        """Committed frames, oldest slot first."""
        self._check_size()
        return self._committed()

    def _latest(self) -> FrameRef:
        (latest,) = struct.unpack_from("<I", self._mm, 60)
        if 0 < latest <= SLOTS:
            off, length, seq = self._slot(latest - 1)
            if seq and not seq & 1:
                return FrameRef(latest - 1, off, length, seq)
        frames = self._committed()  # the latest was released: the newest left
        if not frames:
            raise RegionError(f"Region {self.name} holds no committed frame.")
        return max(frames, key=lambda r: r.seq)

    def _committed(self) -> list[FrameRef]:
        return [
            FrameRef(i, off, length, seq)
            for i, (off, length, seq, _) in enumerate(self._slots())
            if seq and not seq & 1
        ]

    def _check_size(self) -> None:
        self._mm  # a closed region is a RegionError, before its fd is used
        st = os.fstat(self._fd)
        mapped = self._map.size if self._map is not None else 0
        if st.st_size < mapped:
            raise RegionError(
                f"Region {self.name} was truncated to {st.st_size} bytes by another process while mapped "
                f"({mapped} bytes); its frames can no longer be read safely. Re-create it (sealed=True prevents this)."
            )
        if st.st_size > mapped:
            self._remap_if_grown()

    def view(self, ref: FrameRef | None = None) -> memoryview:
        """A read-only view of a committed frame (the newest when ``ref`` is None).

        Raises :class:`RegionError` when the frame is being rewritten or its
        slot no longer holds it.
        """
        if ref is not None and not isinstance(ref, FrameRef):
            raise ValidationError(f"view takes a FrameRef (from dump_into or frames()) or None, "
                                  f"got {type(ref).__name__}.")
        self._check_size()
        if ref is None:
            ref = self._latest()
        off, length, seq = self._slot(ref.slot)
        if seq != ref.seq or seq & 1 or off != ref.offset or length != ref.length:
            raise RegionError(f"Frame in slot {ref.slot} of {self.name} was released or is being rewritten.")
        size = self._map.size  # type: ignore[union-attr]
        if off < HEADER_SIZE or off + length > size:
            raise RegionError(f"Frame slot {ref.slot} points outside the region ({off}+{length} > {size}).")
        view = memoryview(self._mm)[off : off + length].toreadonly()
        if self._slot(ref.slot)[2] != seq:  # re-check after taking the view
            raise RegionError(f"Frame in slot {ref.slot} of {self.name} changed while being read.")
        return view

    def __reduce__(self) -> tuple:
        """A region cannot be pickled (its mapping cannot travel, and copies would attach silently): say what
        to send instead."""
        raise RegionError(f"A Region cannot be pickled: send its name ({self.name!r}) to the other process, and "
                          "open it there with tether.shm.Region.attach(name).")

    def __tether_buffer__(self) -> memoryview:
        return self.view()

    def __tether_read__(self) -> tuple[memoryview, Callable[[], None]]:
        """The newest frame's view, and a check to run once it has been read (decoded, copied): a writer
        that reuses the region may rewrite the frame meanwhile, and what was read then is not returned."""
        self._check_size()
        ref = self._latest()
        view = self.view(ref)

        def recheck() -> None:
            if self._slot(ref.slot)[2] != ref.seq:
                raise RegionError(
                    f"Frame in slot {ref.slot} of {self.name} was rewritten while it was read (a writer reused the "
                    "region): what was read is not returned. Read it again, and release a region to its writer "
                    "only once its readers are done.")

        return view, recheck

    def __iter__(self) -> Iterator[FrameRef]:
        return iter(self.frames())


_MAX_RESERVE = 1 << 62


def _check_slot(slot: Any) -> int:
    """``slot`` if it numbers one of a region's frame slots; a ValidationError otherwise."""
    if type(slot) is not int or not 0 <= slot < SLOTS:
        raise ValidationError(f"A frame slot is an int from 0 to {SLOTS - 1}, got {slot!r}.")
    return slot


def _pid_alive(pid: int, start: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return start == 0 or proc_start_time(pid) in (0, start)


def gc(*, directory: str = SHM_DIR, min_age: float = 0.0, private_dirs: bool = True, regions: bool = True,
       dry_run: bool = False) -> list[str]:
    """Remove this user's regions whose owner process is dead, and BEAM workers' private directories whose node
    is dead; return the removed paths (with ``dry_run``, the paths it would remove, removing nothing).

    A file in ``directory`` counts as a region only when all of these hold:
    its name is one :meth:`Region.create` draws (``tether-<pid>-<16 hex
    digits>``), it is a regular file (no link is followed), it belongs to this
    process's effective user (as the private directories do; root's gc
    spares other users' files too), and it starts with the region magic (or
    is empty: its creator died before writing the header). Nothing else is
    touched, so ``directory`` may hold other ``tether-*`` files.

    The owner comes from the region header (pid and start time, so a reused
    pid does not keep an orphan alive) or, for an empty region, from the pid
    in its name. A private directory's node is the pid in its name
    (:func:`tether.shm.private_dirs`); none is removed with
    ``private_dirs=False``, no region with ``regions=False``. Nothing whose
    owner is alive is removed, nor anything this user may not remove (left,
    logged at debug level on ``tether.shm``).

    Owners are looked up in this process's pid namespace: a process in
    another one (a container sharing ``/dev/shm``) looks dead from here.
    Give such processes their own ``directory``.

    Parameters
    ----------
    directory : str, default "/dev/shm"
        Where to look: the regions' ``directory`` and the workers' ``shm_dir``.
    min_age : float, default 0.0
        Spare what changed less than this many seconds ago.
    private_dirs, regions : bool, default True
        Whether to remove dead nodes' private directories, and dead owners' regions.
    dry_run : bool, default False
        Remove nothing: return what would be removed now (``tether shm gc --dry-run``, and ``shm ls``'s orphans).

    Returns
    -------
    list of str
        The paths removed.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     for name in ("tether-99999999-" + "0" * 16, "tether-99999999-notes.txt"):  # no such pid
    ...         open(os.path.join(d, name), "w").close()
    ...     [os.path.basename(p) for p in gc(directory=d)], os.listdir(d)
    (['tether-99999999-0000000000000000'], ['tether-99999999-notes.txt'])
    """
    removed = _private.gc_private(directory, min_age, dry_run) if private_dirs else []
    if not regions:
        return removed
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    now = time.time()
    for name in names:
        path = os.path.join(directory, name)
        owner = _own_region_owner(path, name)
        if owner is None:
            continue
        pid, start, pid_from_name, mtime = owner
        if now - mtime < min_age:
            continue
        if _pid_alive(pid, start) or (pid != pid_from_name and _pid_alive(pid_from_name, 0)):
            continue
        if dry_run or _remove(path):
            removed.append(path)
    return removed


def _own_region_owner(path: str, name: str) -> tuple[int, int, int, float] | None:
    """(header pid, header start time, pid in the name, mtime) of this user's region at ``path``, else None.

    What counts as a region is :func:`gc`'s rule. Checked on the entry itself
    (``lstat``), then read through ``O_NOFOLLOW`` and compared by inode, so a
    name swapped meanwhile is not read as the region it replaced.
    """
    match = _DRAWN_NAME.fullmatch(name)
    if match is None:
        return None
    pid_from_name = int(match.group(1))
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
        return None
    if st.st_size == 0:
        return pid_from_name, 0, pid_from_name, st.st_mtime
    head = _read_head(path, st)
    if head is None or head[:8] != MAGIC:
        return None
    _, _, _, _, pid, start, *_ = _HEAD.unpack(head)
    return pid, start, pid_from_name, st.st_mtime


def _read_head(path: str, st: os.stat_result) -> bytes | None:
    """The first 64 bytes of the file ``st`` describes, or None when ``path`` is no longer it."""
    try:
        # O_NONBLOCK: a FIFO put under the name since the lstat must not hang the sweep.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        now = os.fstat(fd)
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
            return None
        head = os.pread(fd, 64, 0)
    except OSError:
        return None
    finally:
        os.close(fd)
    return head if len(head) == 64 else None


def _remove(path: str) -> bool:
    """Unlink ``path``; False when it is gone already or not this process's to remove."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False  # another sweep was first
    except OSError as exc:
        # EPERM, EACCES (a sticky or read-only directory, another user's file), EROFS, ...: whoever can removes it.
        log.debug("shm gc: left %s: %s", path, exc.strerror)
        return False
    return True
