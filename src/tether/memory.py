"""Memory: how much tether may use, whether it is short, what tether does about it, and what it holds.

**The reading.** :func:`reading` returns the limit that applies to this
process and the memory in use against it:

1. cgroup v2 (``/sys/fs/cgroup/<group>/memory.max`` and ``memory.current``,
   the tightest ``memory.max`` up the tree). In use is the working set:
   ``memory.current`` less the page cache the kernel reclaims first
   (``inactive_file`` in ``memory.stat``), as container runtimes count it.
2. cgroup v1 (``memory.limit_in_bytes``, ``memory.usage_in_bytes``), where
   that is what the machine mounts.
3. ``/proc/meminfo``: ``MemTotal`` is the limit and ``MemTotal - MemAvailable`` in use,
   when no cgroup sets a limit.

Memory pressure stall information (PSI, the share of time tasks waited on
memory over the last 10 s) comes from the cgroup's ``memory.pressure`` or
``/proc/pressure/memory`` wherever the kernel has it. Readings are cached for
`CACHE_SECONDS`; :func:`set_source` replaces the source (tests simulate
pressure with it).

**Pressure.** :func:`under_pressure` is true when in use reaches
``used_fraction`` of the limit (default 0.90), or when PSI "some avg10"
reaches ``psi_some_avg10`` percent (default 10.0). :func:`set_threshold`
changes both. Under pressure tether trades speed for memory:

- the region pools give back their warm regions instead of keeping them
  (:meth:`tether.shm.RegionPool.trim`);
- compression works in chunks of `PRESSURE_CHUNK` instead of 1 MiB, and
  skips byte-shuffling, which needs two whole-payload copies;
- ``dumps`` (and ``encode``/``dump_into``) of a payload of `LOW_PEAK_MIN`
  (8 MiB) or more (:func:`low_peak`) takes the path with the lowest peak,
  writing into the final frame instead of a temporary that is then copied:

  ============================  ==============================================
  what                          under pressure
  ============================  ==============================================
  any payload, compressed       compressed twice: once to learn the size, once
  (lz4, zstd, gzip)             straight into the frame; the compressed copy
                                is never held (cost: a second compression)
  array not contiguous          read by the compressor slice by slice, never
                                copied whole (:class:`Chunked`)
  list (≥ 4096 elements), etf   encoded twice in batches of about `PIECE`
                                bytes, the second time into the frame; the
                                encoded payload is never held whole
  Arrow table, IPC lz4/zstd     compressed twice in batches of about 1 MiB
                                (measured on a mock stream, then written
                                into the frame); more, smaller record batches
  Arrow table, gzip             the IPC stream fed to the compressor as Arrow
                                writes it, never built whole
  ============================  ==============================================

  Payload bytes stay the same as without pressure except where noted
  (Arrow's batches; lz4, whose blocks follow the smaller input chunks);
  every frame reads back the same value, and no wire format changes.
  Uncompressed contiguous arrays, bytes and Arrow tables already go into
  the frame in one copy: there is nothing to save there. Each of these is
  a ``"dumps"`` decision whose ``figures["path"]`` names it (``"compress
  in place"``, ``"etf in place"``, ``"arrow in place"``). Measured on
  64 MiB values (a 32 MiB etf list), what ``dumps`` holds besides its input
  and its frame falls from 15-82 MiB to 0.5-8 MiB, for 1.2-2.1x the time.
  Rows (a list of dicts) sent as Arrow are not adapted: their temporary is
  the conversion to columns, before any of this.
- :func:`prefer_streaming` tells a writer of a larger-than-memory value to
  stream it in chunks (:mod:`tether.stream`) rather than build one frame.

Every adaptation is a decision logged on the ``tether.memory`` logger and kept
(:func:`decisions`). Entering pressure fires the ``memory_pressure`` alert
through :func:`tether.metrics.alert`; leaving it clears the alert. Budgets
(:func:`set_budget`) on live regions, pooled bytes and mapped bytes alert the
same way when exceeded.

**Metrics.** :func:`stats` reports live regions and mapped bytes, the pools'
warm bytes and hit rate, the attach cache, and the peak temporary-buffer
bytes per operation where tether measures them (:func:`note_temporary`):
compression and decompression, and the buffers formats encode into before
the frame takes them (``dumps``, ``encode``, ``stream_chunk``).

Examples
--------
>>> import tether.memory as memory
>>> memory.set_source(lambda: {"limit": 1 << 30, "current": 1000 << 20})
>>> memory.under_pressure(), memory.reading().source
(True, 'custom')
>>> memory.set_source(None)
"""

from __future__ import annotations

import collections
import inspect
import logging
import numbers
import os
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable, Mapping

from ._buffers import Segment
from ._errors import ValidationError

__all__ = [
    "Advice", "Chunked", "Reading", "compression_chunk", "decisions", "low_peak", "note_temporary",
    "prefer_streaming", "reading", "recheck_budgets", "relieve", "set_budget", "set_source", "set_threshold", "stats",
    "threshold", "under_pressure",
]

log = logging.getLogger("tether.memory")

CGROUP_ROOT = "/sys/fs/cgroup"
# How long a reading of the real source is reused: reading it costs a few file reads.
CACHE_SECONDS = 1.0
# Compression's input chunk under pressure (1 MiB otherwise).
PRESSURE_CHUNK = 256 << 10
# Below this, a whole-frame buffer is never worth avoiding.
STREAM_MIN = 8 << 20
# A stream's chunk (tether.stream takes it from here): what prefer_streaming advises without pressure.
CHUNK_SIZE = 8 << 20
# Under pressure, payloads from this size up take the lower-peak write paths (below it the saving is noise).
LOW_PEAK_MIN = STREAM_MIN
# The piece a lower-peak writer aims at producing at a time (an encoded batch of list elements):
# the encoder holds about three times its output while it grows its buffer.
PIECE = 256 << 10
# Without pressure, stream a value whose frame would take more than this share of what is available.
STREAM_SHARE = 0.5
# cgroup v1 reports "no limit" as a huge number near 2**63.
_V1_UNLIMITED = 1 << 60


@dataclass(frozen=True)
class Reading:
    """The memory this process may use and uses, as read at one moment.

    Attributes
    ----------
    limit : int
        Bytes the process may use: the cgroup limit, else the machine's memory.
    current : int
        Bytes in use against ``limit``.
    psi_some_avg10, psi_full_avg10 : float or None
        Percent of the last 10 s in which some (all) tasks waited on memory; None without PSI.
    source : str
        ``"cgroup v2"``, ``"cgroup v1"``, ``"meminfo"`` or ``"custom"`` (:func:`set_source`).
    """

    limit: int
    current: int
    psi_some_avg10: float | None = None
    psi_full_avg10: float | None = None
    source: str = "custom"

    @property
    def available(self) -> int:
        """Bytes left before the limit."""
        return max(0, self.limit - self.current)

    @property
    def used_fraction(self) -> float:
        """``current / limit``; 0.0 when the limit is unknown (0), which is never pressure."""
        return self.current / self.limit if self.limit > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        """Plain data, with ``available`` and ``used_fraction``.

        Examples
        --------
        >>> r = Reading(limit=8 << 30, current=2 << 30).as_dict()
        >>> r["available"] == 6 << 30, r["used_fraction"], r["source"]
        (True, 0.25, 'custom')
        """
        return {**asdict(self), "available": self.available, "used_fraction": round(self.used_fraction, 4)}


@dataclass(frozen=True)
class Advice:
    """What :func:`prefer_streaming` says; true when the value should be streamed.

    Attributes
    ----------
    stream : bool
        Write the value as a stream of chunks (or into its destination piece
        by piece) instead of one whole-frame buffer.
    reason : str
        Why, with the figures.
    chunk_size : int
        The chunk size to stream with.
    """

    stream: bool
    reason: str
    chunk_size: int

    def __bool__(self) -> bool:
        return self.stream


@dataclass(slots=True)
class Chunked(Segment):
    """A payload :class:`~tether._buffers.Segment` that can also produce its bytes piece by piece.

    ``write(dest)`` fills the frame in place, as any Segment; ``pieces(n)``
    yields the same bytes as buffers of about ``n`` bytes each, so a
    compressor reads the payload without it ever existing whole. Formats
    build these under memory pressure (:func:`low_peak`).

    Examples
    --------
    >>> data = b"abcdef"
    >>> seg = Chunked(6, lambda dest: dest.__setitem__(slice(None), data),
    ...               lambda n: (data[i : i + n] for i in range(0, 6, n)))
    >>> [bytes(p) for p in seg.pieces(4)]
    [b'abcd', b'ef']
    """

    pieces: Callable[[int], Iterable[Any]]


@dataclass
class _Threshold:
    used_fraction: float = 0.90
    psi_some_avg10: float = 10.0


class _State:
    def __init__(self) -> None:
        self.lock = threading.RLock()  # decide() may run again from a finalizer (a Region closed by gc) inside it
        self.source: Callable[[], Any] | None = None
        self.cached: tuple[float, Reading] | None = None
        self.pressure = False
        self.threshold = _Threshold()
        self.budgets: dict[str, int | None] = {"regions": None, "pool_bytes": None, "mapped_bytes": None}
        self.temporary: dict[str, list[int]] = {}
        self.decisions: collections.deque[dict[str, Any]] = collections.deque(maxlen=64)
        self.adaptations: collections.Counter[str] = collections.Counter()
        self.over_budget: set[str] = set()


_state = _State()


# ---------------------------------------------------------------- reading


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _number(text: str | None) -> int | None:
    """A whole number of bytes from a kernel file's text (or one field of it); None when missing or not one.

    The reading is consulted inside dumps and the pools: a file it cannot parse counts as missing rather
    than failing the operation.
    """
    text = (text or "").strip()
    return int(text) if text.isascii() and text.isdigit() else None


def _stat(text: str | None, name: str) -> int | None:
    """The value of ``name`` in a ``memory.stat`` file's text, None when missing or not a number."""
    for line in (text or "").splitlines():
        key, _, value = line.partition(" ")
        if key == name:
            return _number(value)
    return None


def _psi(text: str | None) -> tuple[float | None, float | None]:
    """(some avg10, full avg10) from a PSI file's text; a value that is not a percentage counts as missing."""
    out: dict[str, float] = {}
    for line in (text or "").splitlines():
        kind, _, rest = line.partition(" ")
        for field in rest.split():
            if field.startswith("avg10="):
                try:
                    value = float(field[6:])
                except ValueError:
                    continue
                if 0.0 <= value <= 100.0:  # also leaves out nan and inf, which no JSON reader takes
                    out[kind] = value
    return out.get("some"), out.get("full")


def _meminfo() -> tuple[int, int]:
    """(MemTotal, MemAvailable) in bytes; (0, 0) without MemTotal, and all of it available when neither
    MemAvailable nor MemFree is there (nothing known in use is never pressure)."""
    fields: dict[str, int] = {}
    for line in (_read("/proc/meminfo") or "").splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        value = _number(parts[0]) if parts else None
        if value is not None:
            fields[key] = value * 1024
    total = fields.get("MemTotal", 0)
    return total, min(total, fields.get("MemAvailable", fields.get("MemFree", total)))


def _cgroup_v2_dir() -> str | None:
    """This process's cgroup v2 directory with the memory controller, or None."""
    for line in (_read("/proc/self/cgroup") or "").splitlines():
        if line.startswith("0::"):
            rel = line[3:].strip().lstrip("/")
            # Inside a cgroup namespace the process's own group is mounted as the root.
            for d in (os.path.join(CGROUP_ROOT, rel), CGROUP_ROOT):
                if os.path.exists(os.path.join(d, "memory.current")):
                    return d
    return None


def _cgroup_v1_dir() -> str:
    """This process's cgroup v1 memory directory (the hierarchy's root inside a cgroup namespace)."""
    root = os.path.join(CGROUP_ROOT, "memory")
    for line in (_read("/proc/self/cgroup") or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3 and "memory" in parts[1].split(","):
            d = os.path.join(root, parts[2].strip().lstrip("/"))
            if os.path.exists(os.path.join(d, "memory.limit_in_bytes")):
                return d
    return root


def _v2_limit(d: str) -> int | None:
    """The tightest ``memory.max`` from ``d`` up to the root, None when none is set."""
    limits = []
    while d.startswith(CGROUP_ROOT):
        limit = _number(_read(os.path.join(d, "memory.max")))  # "max" (no limit) is not a number
        if limit is not None:
            limits.append(limit)
        if d == CGROUP_ROOT:
            break
        d = os.path.dirname(d)
    return min(limits) if limits else None


def _from_cgroup() -> Reading | None:
    d = _cgroup_v2_dir()
    if d is not None:
        limit = _v2_limit(d)
        current = _number(_read(os.path.join(d, "memory.current"))) or 0
        current = max(0, current - (_stat(_read(os.path.join(d, "memory.stat")), "inactive_file") or 0))
        if limit is not None:
            return Reading(limit, current, *_psi(_read(os.path.join(d, "memory.pressure"))), source="cgroup v2")
    v1 = _cgroup_v1_dir()
    limit = _number(_read(os.path.join(v1, "memory.limit_in_bytes")))
    if limit is not None and limit < _V1_UNLIMITED:
        usage = _number(_read(os.path.join(v1, "memory.usage_in_bytes"))) or 0
        # usage_in_bytes counts page cache; the working set leaves out what the kernel reclaims first.
        usage = max(0, usage - (_stat(_read(os.path.join(v1, "memory.stat")), "total_inactive_file") or 0))
        return Reading(limit, usage, *_psi(_read("/proc/pressure/memory")), source="cgroup v1")
    return None


def _from_system() -> Reading:
    found = _from_cgroup()
    if found is not None:
        total, _ = _meminfo()
        if total and found.limit > total:  # a limit above the machine's memory does not bind
            found = Reading(total, found.current, found.psi_some_avg10, found.psi_full_avg10, found.source)
        return found
    total, available = _meminfo()
    return Reading(total, total - available, *_psi(_read("/proc/pressure/memory")), source="meminfo")


def _coerce(value: Any) -> Reading:
    """A source's answer as a checked Reading: whole byte counts from 0 and percentages from 0 to 100."""
    if isinstance(value, Reading):
        fields = asdict(value)
    elif isinstance(value, Mapping) and "limit" in value and "current" in value:
        fields = {name: value.get(name) for name in ("limit", "current", "psi_some_avg10", "psi_full_avg10")}
        fields["source"] = str(value.get("source", "custom"))
    else:
        raise ValidationError(
            f"The memory source returned {type(value).__name__}; it must return a tether.memory.Reading or a "
            "mapping with 'limit' and 'current' (bytes) and optionally 'psi_some_avg10'."
        )
    for name in ("limit", "current"):
        v = fields[name]
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not 0 <= v < 1 << 63 or int(v) != v:
            raise ValidationError(f"The memory source's {name} must be a whole number of bytes from 0, got {v!r}.")
        fields[name] = int(v)
    for name in ("psi_some_avg10", "psi_full_avg10"):
        v = fields[name]
        if v is not None and (isinstance(v, bool) or not isinstance(v, numbers.Real) or not 0 <= v <= 100):
            raise ValidationError(f"The memory source's {name} must be a percentage from 0 to 100 or None, got {v!r}.")
        fields[name] = None if v is None else float(v)
    return value if isinstance(value, Reading) and fields == asdict(value) else Reading(**fields)


def reading() -> Reading:
    """The memory this process may use and uses now (cgroup, else ``/proc/meminfo``; see the module doc).

    Returns
    -------
    Reading
        Limit, in use, PSI where present, and where it came from.

    Examples
    --------
    >>> r = reading()
    >>> r.limit > 0 and 0 <= r.current and r.source in ("cgroup v2", "cgroup v1", "meminfo")
    True
    """
    source = _state.source
    if source is not None:
        return _coerce(source())  # a test's source is read every time: it controls the figures
    now = time.monotonic()
    cached = _state.cached
    if cached is not None and now - cached[0] < CACHE_SECONDS:
        return cached[1]
    found = _from_system()
    _state.cached = (now, found)
    return found


def set_source(source: Callable[[], Any] | None) -> None:
    """Read memory from ``source`` instead of the system; None goes back to the system.

    The source is read once here (a source that returns no reading is
    refused) and pressure evaluated with it, so entering or leaving pressure
    (alerts, pool trimming) happens at once.

    Parameters
    ----------
    source : callable or None
        Returns a `Reading`, or a mapping with ``limit`` and ``current``
        (bytes) and optionally ``psi_some_avg10``; called at every reading.

    Examples
    --------
    >>> set_source(lambda: Reading(limit=100, current=10))
    >>> reading().available
    90
    >>> set_source(None)
    """
    if source is not None and not callable(source):
        raise ValidationError(f"set_source takes a callable or None, got {type(source).__name__}.")
    if source is not None:
        _coerce(source())  # a source that cannot give a reading is refused here, not at the next dumps
    with _state.lock:
        _state.source = source
        _state.cached = None
    under_pressure()  # enter or leave pressure now, not at the next operation (alerts, pool trimming)


# ---------------------------------------------------------------- pressure


def threshold() -> dict[str, float]:
    """The current pressure threshold.

    Examples
    --------
    >>> threshold()
    {'used_fraction': 0.9, 'psi_some_avg10': 10.0}
    """
    return asdict(_state.threshold)


def set_threshold(*, used_fraction: float | None = None, psi_some_avg10: float | None = None) -> dict[str, float]:
    """Change when memory counts as under pressure, and evaluate it at once; return the previous threshold.

    Parameters
    ----------
    used_fraction : float, optional
        Pressure from this share of the limit in use on (0 < x ≤ 1; default 0.90).
    psi_some_avg10 : float, optional
        Pressure from this percent of the last 10 s stalled on memory (default 10.0;
        above 100 turns the PSI rule off).

    Returns
    -------
    dict
        The threshold before the change.

    Examples
    --------
    >>> old = set_threshold(used_fraction=0.75)
    >>> threshold()["used_fraction"], old["used_fraction"]
    (0.75, 0.9)
    >>> _ = set_threshold(**old)
    """
    for name, value, ok in (("used_fraction", used_fraction, lambda v: 0 < v <= 1),
                            ("psi_some_avg10", psi_some_avg10, lambda v: v >= 0)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not ok(value)):
            raise ValidationError(f"{name} out of range: {value!r}; see tether.memory.set_threshold.")
    old = threshold()
    if used_fraction is not None:
        _state.threshold.used_fraction = float(used_fraction)
    if psi_some_avg10 is not None:
        _state.threshold.psi_some_avg10 = float(psi_some_avg10)
    under_pressure()  # enter or leave pressure by the new threshold now (alerts, pool trimming), as set_source does
    return old


def _why(r: Reading) -> str | None:
    t = _state.threshold
    if r.used_fraction >= t.used_fraction:
        return f"{r.current} of {r.limit} B in use ({r.used_fraction:.0%} ≥ {t.used_fraction:.0%}, {r.source})"
    if r.psi_some_avg10 is not None and r.psi_some_avg10 >= t.psi_some_avg10:
        return f"PSI some avg10 {r.psi_some_avg10:.1f}% ≥ {t.psi_some_avg10:.1f}% ({r.source})"
    return None


def under_pressure() -> bool:
    """Whether memory is short now, by the threshold (:func:`set_threshold`).

    Entering pressure logs a decision, fires the ``memory_pressure`` alert and
    trims the region pools (:func:`relieve`); leaving it logs and clears the alert.

    Returns
    -------
    bool

    Examples
    --------
    >>> set_source(lambda: {"limit": 100, "current": 50})
    >>> under_pressure()
    False
    >>> set_source(None)
    """
    r = reading()
    why = _why(r)
    pressure = why is not None
    if pressure != _state.pressure:
        with _state.lock:
            changed, _state.pressure = pressure != _state.pressure, pressure
        if changed:
            _transition(pressure, why, r)
    return pressure


def _transition(pressure: bool, why: str | None, r: Reading) -> None:
    figures = r.as_dict()
    if pressure:
        decide("pressure", f"memory pressure: {why}; trimming pools, smaller compression chunks, "
               "streaming large dumps", **figures)
        _alert("memory_pressure", f"tether is under memory pressure: {why}", figures,
               "Give the process more memory, send less at once (tether.stream), or raise "
               "tether.memory.set_threshold() if this level is normal here.")
        relieve()
    else:
        text = f"memory pressure over: {r.used_fraction:.0%} of {r.limit} B in use"
        decide("pressure", text, **figures)
        _clear("memory_pressure", figures, text)


def decide(kind: str, text: str, **figures: Any) -> None:
    """Log one memory decision on ``tether.memory`` and keep it (:func:`decisions`).

    Parameters
    ----------
    kind : str
        What adapted: ``"pressure"``, ``"pool"``, ``"compression"``, ``"dumps"``, ``"budget"``.
    text : str
        What was decided and why.
    **figures
        The numbers behind it.

    Examples
    --------
    >>> decide("pool", "kept nothing warm", freed=0)
    >>> decisions(1)[0]["kind"]
    'pool'
    """
    with _state.lock:  # threads adapt at once (pools, compressions): a count must not be lost
        _state.adaptations[kind] += 1
        _state.decisions.append({"time": time.time(), "kind": kind, "decision": text, "figures": figures})
    log.info("memory decision (%s): %s", kind, text)


def decisions(n: int | None = None) -> list[dict[str, Any]]:
    """The last memory decisions, oldest first (at most 64 are kept).

    Parameters
    ----------
    n : int, optional
        Only the last ``n``.

    Examples
    --------
    >>> decide("dumps", "streamed")
    >>> decisions(1)[0]["decision"]
    'streamed'
    """
    if n is not None and (type(n) is not int or n < 0):
        raise ValidationError(f"decisions() needs n as an int from 0 (or None for all), got {n!r}.")
    out = list(_state.decisions)
    return out if n is None else out[max(0, len(out) - n):]


# Where memory alerts go, and their clearing: tether.metrics registers its alert() and clear() as it loads
# (report_alerts_to). Memory never imports metrics, which imports memory for its snapshot.
_alert_sink: tuple[Callable[..., Any], Callable[..., Any], bool] | None = None


def report_alerts_to(alert: Callable[[str, str, dict[str, Any], str], Any], clear: Callable[..., Any]) -> None:
    """Where memory alerts go: ``alert(name, message, figures, suggestion)`` fires one, ``clear(name)`` clears it
    (``clear(name, figures, message)`` when it takes them: the figures as the condition ended, and what ended it).

    For tether's own modules: :mod:`tether.metrics` registers its
    :func:`~tether.metrics.alert` and :func:`~tether.metrics.clear` as it
    loads. Until something registers, an alert is only logged on
    ``tether.memory``, as a warning.

    Parameters
    ----------
    alert : callable
        Fires the alert ``name``.
    clear : callable
        Clears the alert ``name``.

    Examples
    --------
    >>> import tether.metrics as metrics
    >>> seen = []
    >>> report_alerts_to(lambda name, *rest: seen.append(name), lambda name: seen.append(f"cleared {name}"))
    >>> set_source(lambda: {"limit": 100, "current": 99}); set_source(lambda: {"limit": 100, "current": 1})
    >>> seen
    ['memory_pressure', 'cleared memory_pressure']
    >>> set_source(None); report_alerts_to(metrics.alert, metrics.clear)  # back to tether.metrics
    """
    global _alert_sink
    _alert_sink = (alert, clear, _takes_three(clear))


def _alert(name: str, message: str, figures: dict[str, Any], suggestion: str) -> None:
    if _alert_sink is None:  # nothing registered (metrics not in this build): the decision log still says it
        log.warning("%s (%s)", message, suggestion)
        return
    _alert_sink[0](name, message, figures, suggestion)


def _takes_three(clear: Callable[..., Any]) -> bool:
    try:
        inspect.signature(clear).bind("name", {}, "message")
    except (TypeError, ValueError):  # takes the name alone (or has no signature to read): called so
        return False
    return True


def _clear(name: str, figures: dict[str, Any], message: str) -> None:
    if _alert_sink is not None:
        if _alert_sink[2]:
            _alert_sink[1](name, figures, message)
        else:
            _alert_sink[1](name)


# tether.shm's region and pool figures and its live pools, registered as it loads (count_regions_with).
# Memory never imports shm, whose regions and pools import memory. Before shm registers, no region
# or pool exists: the figures are zero.
_regions: dict[str, Any] = {
    "live_stats": lambda: {"live": 0, "owned": 0, "attached": 0, "mapped_bytes": 0, "attach_cache": {}},
    "pool_stats": lambda: {"pools": 0, "warm_regions": 0, "warm_bytes": 0, "acquired": 0, "hits": 0,
                           "hit_rate": 0.0, "trimmed_bytes": 0},
    "pools": (),
}


def count_regions_with(live_stats: Callable[[], dict[str, Any]], pool_stats: Callable[[], dict[str, Any]],
                       pools: Iterable[Any]) -> None:
    """Take region and pool figures from ``live_stats()`` and ``pool_stats()``, and trim ``pools`` under pressure.

    For tether's own modules: :mod:`tether.shm` registers its
    ``live_stats``, ``pool_stats`` and ``POOLS`` as it loads; :func:`stats`,
    the budgets and :func:`relieve` read them.

    Parameters
    ----------
    live_stats : callable
        Live regions (``live``, ``owned``, ``attached``), ``mapped_bytes`` and ``attach_cache``.
    pool_stats : callable
        ``pools``, ``warm_regions``, ``warm_bytes``, ``acquired``, ``hits``, ``hit_rate``, ``trimmed_bytes``.
    pools : iterable
        The live region pools (each has ``trim()``), iterated anew at each use.

    Examples
    --------
    >>> registered = dict(_regions)  # tether.shm's
    >>> count_regions_with(lambda: {"live": 2, "owned": 2, "attached": 0, "mapped_bytes": 8192, "attach_cache": {}},
    ...                    registered["pool_stats"], ())
    >>> stats()["regions"]
    {'live': 2, 'owned': 2, 'attached': 0, 'mapped_bytes': 8192}
    >>> count_regions_with(**registered)
    """
    _regions.update(live_stats=live_stats, pool_stats=pool_stats, pools=pools)


def relieve() -> int:
    """Trim every region pool's warm regions now; return the bytes given back.

    Called when pressure starts; callable any time.

    Examples
    --------
    >>> relieve() >= 0
    True
    """
    pools = list(_regions["pools"])
    freed = sum(pool.trim() for pool in pools)
    if freed:
        decide("pool", f"trimmed {freed} B of warm regions from {len(pools)} pool(s)", freed=freed)
    return freed


# ---------------------------------------------------------------- adaptations


def compression_chunk(default: int) -> int:
    """The compression input chunk to use now: ``default``, or `PRESSURE_CHUNK` under pressure.

    Parameters
    ----------
    default : int
        The chunk without pressure.

    Examples
    --------
    >>> set_source(lambda: {"limit": 100, "current": 99})
    >>> compression_chunk(1 << 20) == PRESSURE_CHUNK
    True
    >>> set_source(None)
    """
    return min(default, PRESSURE_CHUNK) if under_pressure() else default


def prefer_streaming(nbytes: int) -> Advice:
    """Whether a value of ``nbytes`` should be written in chunks rather than as one whole-frame buffer.

    Yes under pressure for anything from `STREAM_MIN` up, and without
    pressure when the frame would take more than `STREAM_SHARE` of the memory
    available. A yes is a logged decision.

    Parameters
    ----------
    nbytes : int
        The payload's size (an estimate is fine).

    Returns
    -------
    Advice
        True when streaming is preferred, with the reason and a chunk size.

    Examples
    --------
    >>> set_source(lambda: {"limit": 1 << 30, "current": 1 << 29})
    >>> bool(prefer_streaming(1 << 20)), bool(prefer_streaming(600 << 20))
    (False, True)
    >>> set_source(None)
    """
    if isinstance(nbytes, bool) or not isinstance(nbytes, numbers.Real) or not 0 <= nbytes < 1 << 63:
        raise ValidationError(f"prefer_streaming needs nbytes as a number of bytes from 0, got {nbytes!r}.")
    if nbytes < STREAM_MIN:
        return Advice(False, f"{nbytes} B is under {STREAM_MIN} B: one buffer costs little", CHUNK_SIZE)
    r = reading()
    why = _why(r)
    if why is None and nbytes <= r.available * STREAM_SHARE:
        return Advice(False, f"{nbytes} B fits in the {r.available} B available", CHUNK_SIZE)
    if why is not None:
        reason = f"under memory pressure ({why}): a whole-frame buffer would add {nbytes} B"
        chunk = max(PRESSURE_CHUNK, min(CHUNK_SIZE, r.available // 64))
    else:
        reason = f"a whole-frame buffer of {nbytes} B is over {STREAM_SHARE:.0%} of the {r.available} B available"
        chunk = CHUNK_SIZE
    decide("dumps", f"stream in {chunk} B chunks: {reason}", nbytes=nbytes, chunk_size=chunk)
    return Advice(True, reason, chunk)


def low_peak(nbytes: int) -> bool:
    """Whether a payload of ``nbytes`` should be written the lower-peak way now.

    True under pressure for payloads of `LOW_PEAK_MIN` and more. The writer
    that acts on it logs what it did as a ``"dumps"`` decision (:func:`decide`).

    Parameters
    ----------
    nbytes : int
        The payload's size, or a lower bound of it.

    Examples
    --------
    >>> set_source(lambda: {"limit": 1 << 30, "current": 1 << 29})
    >>> low_peak(64 << 20)
    False
    >>> set_source(lambda: {"limit": 1 << 30, "current": 1000 << 20})
    >>> low_peak(64 << 20), low_peak(1 << 20)
    (True, False)
    >>> set_source(None)
    """
    return nbytes >= LOW_PEAK_MIN and under_pressure()


def note_temporary(op: str, nbytes: int) -> None:
    """Count a temporary buffer of ``nbytes`` that operation ``op`` allocated and let go.

    :func:`stats` reports the peak and the last per operation.

    Parameters
    ----------
    op : str
        E.g. ``"compress"``, ``"decompress"``.
    nbytes : int
        Bytes held besides the input and the result.

    Examples
    --------
    >>> note_temporary("example", 10); note_temporary("example", 4)
    >>> stats()["temporary"]["example"]
    {'peak_bytes': 10, 'last_bytes': 4, 'count': 2}
    """
    entry = _state.temporary.get(op)
    if entry is None:
        entry = _state.temporary.setdefault(op, [0, 0, 0])
    if nbytes > entry[0]:
        entry[0] = nbytes
    entry[1] = nbytes
    entry[2] += 1


# ---------------------------------------------------------------- budgets and stats


def set_budget(*, regions: int | None = None, pool_bytes: int | None = None,
               mapped_bytes: int | None = None) -> dict[str, int | None]:
    """Alert when live regions, pooled warm bytes or mapped bytes exceed a budget; return the previous budgets.

    A budget of None (the default for all three) never alerts. They are
    checked here and by :func:`check`, which regions and the region pools call as they are created,
    acquired and released. Exceeding one fires ``memory_<name>`` through
    :func:`tether.metrics.alert`; coming back under it, or removing the budget, clears the alert.

    Parameters
    ----------
    regions, pool_bytes, mapped_bytes : int, optional
        The budgets; pass 0 to remove one.

    Examples
    --------
    >>> old = set_budget(regions=64)
    >>> old["regions"] is None
    True
    >>> _ = set_budget(regions=0)
    """
    old = dict(_state.budgets)
    for name, value in (("regions", regions), ("pool_bytes", pool_bytes), ("mapped_bytes", mapped_bytes)):
        if value is None:
            continue
        if type(value) is not int or value < 0:
            raise ValidationError(f"Budget {name} must be a non-negative int (0 removes it), got {value!r}.")
        _state.budgets[name] = value or None
    check()  # a budget already exceeded alerts now; one removed or raised clears its alert now
    return old


def _usage() -> dict[str, int]:
    live = _regions["live_stats"]()
    pools = _regions["pool_stats"]()
    return {"regions": live["live"], "pool_bytes": pools["warm_bytes"], "mapped_bytes": live["mapped_bytes"]}


def check() -> list[str]:
    """Evaluate pressure and the budgets now, firing or clearing memory alerts; return those firing.

    Returns
    -------
    list of str
        Names of the memory alerts that hold now.

    Examples
    --------
    >>> check()
    []
    """
    firing = ["memory_pressure"] if under_pressure() else []
    budgets = {k: v for k, v in _state.budgets.items() if v is not None}
    for name in list(_state.over_budget):  # a budget removed while exceeded: nothing holds its alert any more
        if _state.budgets[name[len("memory_"):]] is None:
            _state.over_budget.discard(name)
            text = f"{name[len('memory_'):]} budget removed while exceeded"
            decide("budget", text)
            _clear(name, {}, text)
    if not budgets:
        return firing
    usage = _usage()
    for name, budget in budgets.items():
        alert_name = f"memory_{name}"
        if usage[name] > budget:
            firing.append(alert_name)
            if alert_name not in _state.over_budget:
                _state.over_budget.add(alert_name)
                decide("budget", f"{name} {usage[name]} over the budget of {budget}", **usage)
            _alert(alert_name, f"tether holds {usage[name]} {name.replace('_', ' ')}, over its budget of {budget}",
                   {**usage, "budget": budget},
                   "Release regions (Region.close/unlink, RegionPool.trim; tether.shm.drop_cache() for the mappings "
                   "kept for Region.attach) or raise tether.memory.set_budget().")
        elif alert_name in _state.over_budget:
            _state.over_budget.discard(alert_name)
            _clear(alert_name, {**usage, "budget": budget},
                   f"tether holds {usage[name]} {name.replace('_', ' ')}, back under its budget of {budget}")
    return firing


def recheck_budgets(grew: bool = True) -> None:
    """Evaluate the budgets again after regions were closed or mapped; nothing to do (and no cost) without one.

    Regions call it as they close and attach, so that a budget alert clears as soon as usage is back under
    the budget, not at the next region created. ``grew=False`` (a close): usage only fell, so only a firing
    budget alert can change, and without one the close costs nothing (counting usage takes ~10 us).

    Examples
    --------
    >>> recheck_budgets()
    """
    if _state.over_budget or (grew and any(v is not None for v in _state.budgets.values())):
        check()


def stats() -> dict[str, Any]:
    """What tether holds in memory now, and how it has adapted, as plain data (JSON-serialisable).

    Returns
    -------
    dict
        ``reading`` (see :func:`reading`; None when it cannot be read),
        ``under_pressure``, ``threshold``, ``budgets``; ``regions`` (live
        Region objects, owned and attached, bytes mapped by them and by the
        attach cache); ``pools`` (warm regions and bytes, acquires, hits, hit
        rate, trimmed bytes, over every live RegionPool); ``attach_cache``
        (entries, bound, mapped bytes, hits, misses); ``temporary`` (per
        operation, the peak and last temporary-buffer bytes measured, and how
        many); ``adaptations`` (decisions taken, by kind).

    Examples
    --------
    >>> s = stats()
    >>> sorted(s["pools"]) == sorted(["pools", "warm_regions", "warm_bytes", "acquired", "hits", "hit_rate",
    ...                                "trimmed_bytes"])
    True
    """
    try:
        r: dict[str, Any] | None = reading().as_dict()
        pressure = under_pressure()
    except (OSError, ValueError, ValidationError):  # a broken source or /proc: report without it
        r, pressure = None, False
    live = _regions["live_stats"]()
    return {
        "reading": r,
        "under_pressure": pressure,
        "threshold": threshold(),
        "budgets": dict(_state.budgets),
        "regions": {k: live[k] for k in ("live", "owned", "attached", "mapped_bytes")},
        "pools": _regions["pool_stats"](),
        "attach_cache": live["attach_cache"],
        "temporary": {op: {"peak_bytes": e[0], "last_bytes": e[1], "count": e[2]}
                      for op, e in sorted(_state.temporary.items())},
        "adaptations": dict(sorted(_state.adaptations.items())),
    }
