"""The accumulators behind :mod:`tether.metrics`: per-key counters, log-bucket histograms, notes.

Metrics are on by default, so counting an operation has to cost next to
nothing (#13: at most 3 % on a small ``dumps`` + ``loads`` round trip). The
entry points therefore make two calls of one accumulator, :data:`acc`:
:func:`start` before the work (a start mark, or None while metrics are off)
and :func:`add` (or :func:`add_plain`, for a one-step write's result, or
:func:`add_frame`, for a frame read and its buffer) after it, which reads
the clock again, counts the operation and returns None or flags: :data:`DUE`
(fold now) and :data:`LARGE_OP` (a value of :data:`LARGE` bytes or more, which
the large-value notes look at).
The accumulator is ``tether._speedups.Accumulator`` when the C extension is
built: per-key counters, histogram buckets, throughput batches and the
newest decisions in C, updated atomically under the GIL, so threads need no
lock. Without it, :class:`PyAccumulator` keeps the same contract with one
``list.extend`` per operation, folded in bulk with NumPy.

When ``add`` returns :data:`DUE` (the C accumulator: a second after the last
fold, or 65536 operations; the Python one: every :data:`DRAIN_AT` operations)
and before anything reads the figures, :func:`drain` takes the accumulator's
deltas into the totals per key, the decision history and the alert monitor,
under a lock only drainers take, then reads memory pressure (:func:`check_memory`).

What is kept is bounded (:data:`limits`, set by ``tether.metrics.configure_limits``): rows past
``max_rows`` fold into their op's and transport's ``"other"`` row, error and fallback kinds past
``max_kinds`` into ``"other"``, so that keys taken from the application (``record()``'s names, error
messages) cannot grow memory without end.

Other packages reach this module as ``tether.metrics.core``: it is for
tether's own modules, not a user API (:mod:`tether.metrics` is that).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

import numpy as np

from .. import memory
from .._select import HISTORY, history
from ..frame import Header

# Size classes, by the larger of bytes in and out (the value's size, not its frame's overhead).
SIZE_CLASSES = ("<1KiB", "1KiB-64KiB", "64KiB-1MiB", "1MiB-16MiB", ">=16MiB")
_SIZE_BOUNDS = np.array([1 << 10, 1 << 16, 1 << 20, 1 << 24], dtype=np.int64)
LARGE = 1 << 20  # the size from which the large-value rules look (dump_into, copies, checksums)

# Duration histograms: 4 buckets per power of two of nanoseconds (at most 25 % wide), up to 2**47 ns.
SUB_BUCKETS = 4
MAX_BITS = 47
NBUCKETS = SUB_BUCKETS * MAX_BITS - 8 + SUB_BUCKETS

# Totals per key (op, format, compression, transport, size class index): a list indexed by these.
COUNT, BYTES_IN, BYTES_OUT, NANOS, HIST, ERRORS, FALLBACKS = range(7)

clock: Callable[[], int] = time.perf_counter_ns  # the other timings' clock (compression); set_clock sets both
on = True
DRAIN_AT = 1024  # PyAccumulator's operations between folds (the C one: a second, or 65536 operations)
# What add, add_frame and observe return besides None, as bits: a drain is due; the operation was LARGE.
DUE, LARGE_OP = 1, 2
# The C accumulator's entry points as this module calls them (metrics.c's METRICS_API): 2 added add_plain and
# buffers for add_frame's bytes. A build with another contract is left unused, not called wrongly.
API = 2
# PyAccumulator's events: FIELDS values per operation (op, format, compression, transport, bytes in,
# bytes out, nanoseconds, decision or None).
FIELDS = 8
# The alert monitor's batch size (operations per median) and its judge, set by _alerts: it updates the baselines
# and returns what to do about them (alerts to fire or clear), which drain does once it has let go of _lock.
batch_size = 16
evaluate_batch: Callable[[tuple, str, list, int], list[Callable[[], Any]]] | None = None

_lock = threading.RLock()
_totals: dict[tuple, list] = {}
_notes: dict[tuple, list] = {}
since = time.time()

# Bounds on what the counters keep (configure_limits): record(), failed calls and notes take strings from the
# application, and a string per call (a peer name, an error message) must not grow memory and every snapshot
# without end. Rows past limits["max_rows"] are counted under OVERFLOW's format and compression, error and
# fallback kinds past limits["max_kinds"] in a row as OVERFLOW; notes past limits["max_rows"] are not kept
# (advice, not counts). tether's own keys are few (registered formats and codecs), so its entry points count
# straight into the accumulator and only a fold checks them; record() checks before (admit).
OVERFLOW = "other"
limits = {"max_rows": 1000, "max_kinds": 64}
# How much went past the limits since the last reset: operations (and errors, fallbacks) counted in an
# overflow row instead of their own, errors and fallbacks counted as OVERFLOW instead of their own kind,
# notes not kept.
folded = {"rows": 0, "kinds": 0, "notes": 0}
log = logging.getLogger("tether.metrics")
_LIMIT_WARNINGS = {
    "rows": "tether.metrics: %d rows reached; operations under new (op, format, compression, transport, size "
            "class) keys are counted under format and compression 'other' until reset() "
            "(tether.metrics.configure_limits(max_rows=...); snapshot()['limits'] counts them)",
    "kinds": "tether.metrics: a row reached %d kinds of errors or fallbacks; new kinds in such rows are counted "
             "as 'other' until reset() (tether.metrics.configure_limits(max_kinds=...))",
    "notes": "tether.metrics: %d notes for the recommendations reached; new ones are not kept until reset() "
             "(their count is in snapshot()['limits'])",
}
_warned: set[str] = set()  # the limits warned about since the last reset: one warning each, not one per call
_unsaid: list[str] = []  # warnings due, logged once _lock is let go (a logging handler may read the metrics)


def bucket(ns: int) -> int:
    """The histogram bucket of a duration of ``ns`` nanoseconds.

    Examples
    --------
    >>> [bucket(n) for n in (0, 3, 4, 7, 8, 15, 16)]
    [0, 3, 4, 7, 8, 11, 12]
    """
    bits = ns.bit_length()
    if bits <= 2:
        return ns if ns > 0 else 0
    if bits > MAX_BITS:
        return NBUCKETS - 1
    return SUB_BUCKETS * bits - 8 + ((ns >> (bits - 3)) & 3)


def bucket_bounds(index: int) -> tuple[int, int]:
    """The [low, high) nanoseconds bucket ``index`` covers.

    Examples
    --------
    >>> bucket_bounds(4), bucket_bounds(11)
    ((4, 5), (14, 16))
    """
    if index < 4:
        return index, index + 1
    bits, sub = divmod(index + 8, SUB_BUCKETS)
    return (4 + sub) << (bits - 3), (5 + sub) << (bits - 3)


def _buckets(ns: np.ndarray) -> np.ndarray:
    """:func:`bucket` of every duration at once."""
    ns = np.maximum(ns, 0)
    bits = np.frexp(ns.astype(np.float64))[1].astype(np.int64)  # the bit length, for ns < 2**53
    shift = np.maximum(bits - 3, 0)
    sub = (ns >> shift) & 3
    out = np.where(bits <= 2, ns, SUB_BUCKETS * bits - 8 + sub)
    return np.minimum(out, NBUCKETS - 1)


def observe(op: str, fmt: str, comp: str, transport: str, nin: int, nout: int, ns: int, decision: Any = None) -> None:
    """Count one successful operation that took ``ns`` nanoseconds (the entry points use :func:`start` and :func:`add`).

    ``decision`` (the format choice that steered it) joins the decision history.
    """
    flags = acc.observe(op, fmt, comp, transport, nin, nout, ns, decision)
    if flags and flags & DUE:
        drain(False)


def drain(decisions: bool = True) -> None:
    """Fold the operations counted so far into the totals, the decision history and the alert monitor.

    The folds ``add`` says are due pass ``decisions=False``:
    the accumulator keeps the newest decisions until someone reads them,
    which is all the history would keep anyway.

    Alerts the fold fires or clears reach their callbacks after ``_lock`` is let go: a callback may
    read the metrics, from its own thread or another one it waits for, without deadlocking. Each fold also
    reads memory pressure (:func:`check_memory`).
    """
    actions: list[Callable[[], Any]] = []
    with _lock:
        rows, decided, medians = acc.take(decisions)
        history.extend(decided)
        for op, fmt, comp, transport, size, count, nin, nout, ns, hist in rows:
            key = (op, *_names(fmt, comp), transport, size)
            entry = _totals.get(key) or _entry(key, count)[1]
            entry[COUNT] += count
            entry[BYTES_IN] += nin
            entry[BYTES_OUT] += nout
            entry[NANOS] += ns
            entry[HIST] += np.frombuffer(hist, np.int64)
        if evaluate_batch is not None:
            for op, fmt, comp, size, values in medians:
                fmt, comp = _names(fmt, comp)
                actions += evaluate_batch((op, fmt, size), comp, values, batch_size)
    for action in actions:
        action()
    check_memory()
    if _unsaid:
        _say()


def check_memory() -> None:
    """Enter or leave memory pressure by the reading now, firing or clearing ``memory_pressure``.

    Otherwise only the work that adapts to pressure (large dumps, pools, compression) read it, so a process
    at its limit doing small calls, or only scraped, never raised the alert, nor cleared it. Folds come about
    once a second while operations are counted, and whenever the figures are read; ``tether.memory`` caches
    the system's reading for a second, so this costs next to nothing.

    Examples
    --------
    >>> check_memory()
    """
    try:
        memory.under_pressure()
    except Exception:  # a failing reading (a test's source) must not fail the operation whose fold fell due
        log.debug("tether.metrics: reading memory pressure failed", exc_info=True)


def _names(fmt: str | int, comp: str | int) -> tuple[str, str]:
    """Format and compression names; ``loads`` counts their frame header's ids, named only here (cheaper)."""
    if type(fmt) is int:
        from .. import formats

        found = formats.registry.by_id.get(fmt)
        fmt = found.name if found is not None else f"format id {fmt}"
    if type(comp) is int:
        from .. import compression

        found = compression.registry.by_id.get(comp)
        comp = found.name if found is not None else "none" if not comp else f"compression id {comp}"
    return fmt, comp


def _new_entry() -> list:
    return [0, 0, 0, 0, np.zeros(NBUCKETS, np.int64), {}, {}]


def size_class(nbytes: int) -> int:
    """The index in :data:`SIZE_CLASSES` of a value of ``nbytes`` bytes (the larger of bytes in and out).

    Examples
    --------
    >>> [size_class(n) for n in (0, 1023, 1024, 1 << 20, 1 << 40)]
    [0, 0, 1, 3, 4]
    """
    return _CLASS_OF_BITS[nbytes.bit_length()] if nbytes < 1 << 63 else len(SIZE_CLASSES) - 1


# The size class of a byte count by its bit length: a third of the time of comparing it with each bound.
_CLASS_OF_BITS = [int(np.searchsorted(_SIZE_BOUNDS, (1 << bits) - 1, side="right")) for bits in range(64)]


def _entry(key: tuple, n: int) -> tuple[tuple, list]:
    """The row ``key`` is counted in, and its totals, made if new; under ``_lock``.

    A new key once :data:`limits` ``max_rows`` rows exist goes to its overflow row (format and compression
    :data:`OVERFLOW`), which is always made: ops and transports are few, so overflow rows are too.
    ``n`` is how many operations the caller counts, added to :data:`folded` when it folds them.
    """
    entry = _totals.get(key)
    if entry is not None:
        return key, entry
    op, fmt, comp, transport, size = key
    if len(_totals) >= limits["max_rows"] and (fmt, comp) != (OVERFLOW, OVERFLOW):
        key = (op, OVERFLOW, OVERFLOW, transport, size)
        folded["rows"] += n
        _warn("rows", limits["max_rows"])
        entry = _totals.get(key)
        if entry is not None:
            return key, entry
    entry = _totals[key] = _new_entry()
    return key, entry


def _warn(limit: str, value: int) -> None:
    """Have :func:`_say` log the warning of ``limit`` if it is the first since the reset; under ``_lock``."""
    if limit not in _warned:
        _warned.add(limit)
        _unsaid.append(_LIMIT_WARNINGS[limit] % value)


def _say() -> None:
    """Log the limit warnings that fell due, outside ``_lock``."""
    while _unsaid:
        try:
            text = _unsaid.pop(0)
        except IndexError:  # another thread said it
            return
        log.warning(text)


def count_recorded(op: str, fmt: str, comp: str, transport: str, nin: int, nout: int, ns: int,
                   error: str | None, fallback: str | None) -> None:
    """Count what ``tether.metrics.record()`` checked: an operation, or an error, and a fallback of ``fallback``.

    Keys that record() passes reach the accumulator's per-key counters, which only reset() empties: a key is
    let in here (its row made) while there is room, else counted under its :data:`OVERFLOW` row, so that the
    accumulator never holds more of record()'s keys than there are rows.
    """
    nbytes = nin if nin > nout else nout
    # The size class inline (record() passes counts below 2**63): the worker records every call through here.
    key = (op, fmt, comp, transport, _CLASS_OF_BITS[nbytes.bit_length()])
    if key not in _totals:  # the usual case, a key counted before, needs no lock
        fmt, comp = _admit(key)
    if error is not None:
        count_other(op, fmt, comp, transport, nbytes, ERRORS, error)
        return
    if fallback is not None:
        count_other(op, fmt, comp, transport, nbytes, FALLBACKS, fallback)
    observe(op, fmt, comp, transport, nin, nout, ns)


def _admit(key: tuple) -> tuple[str, str]:
    """The format and compression a new key of :func:`count_recorded` is counted under: its own, or OVERFLOW."""
    with _lock:
        key = _entry(key, 1)[0]
    if _unsaid:
        _say()
    return key[1], key[2]


def count_other(op: str, fmt: str, comp: str, transport: str, nbytes: int, slot: int, kind: str) -> None:
    """Count an error (``slot`` ERRORS) or a fallback (FALLBACKS) of type ``kind`` under a key.

    Past :data:`limits` (rows, or kinds in the row), they are counted under :data:`OVERFLOW`.
    """
    with _lock:
        counts = _entry((op, fmt, comp, transport, size_class(max(nbytes, 0))), 1)[1][slot]
        if kind not in counts and len(counts) >= limits["max_kinds"]:
            kind = OVERFLOW
            folded["kinds"] += 1
            _warn("kinds", limits["max_kinds"])
        counts[kind] = counts.get(kind, 0) + 1
    if _unsaid:
        _say()


def note(kind: str, key: Any, nbytes: int = 0, stored: int = 0, ns: int = 0) -> None:
    """Count an event the recommendations look at: (count, bytes, stored bytes, nanoseconds) per (kind, key).

    Past :data:`limits` ``max_rows`` notes a new (kind, key) is not kept, only counted in :data:`folded`: keys
    hold the application's values (type names, bandwidths passed), and notes are advice, not counts. A
    ``"compress"`` note that kept more than :data:`POOR_RATIO` of its bytes counts under :data:`INCOMPRESSIBLE`
    (the same key) too.
    """
    with _lock:
        _count_note(kind, key, nbytes, stored, ns)
        # Averaged with data that shrinks on the same codec and transport (random bytes and zeros: 0.5), the
        # data the codec cannot shrink would never show: the compression-ratio rule reads these apart.
        if kind == "compress" and stored > POOR_RATIO * nbytes:
            _count_note(INCOMPRESSIBLE, key, nbytes, stored, ns)
    if _unsaid:
        _say()


# Compressed frames that keep more than this share of their bytes did not pay (the compression-ratio rule).
POOR_RATIO = 0.9
INCOMPRESSIBLE = "incompressible"  # the note kind of such "compress" notes


def _count_note(kind: str, key: Any, nbytes: int, stored: int, ns: int) -> None:
    """:func:`note`'s count, under ``_lock``."""
    entry = _notes.get((kind, key))
    if entry is None and len(_notes) >= limits["max_rows"]:
        folded["notes"] += 1
        _warn("notes", limits["max_rows"])
        return
    if entry is None:
        entry = _notes[(kind, key)] = [0, 0, 0, 0]
    entry[0] += 1
    entry[1] += nbytes
    entry[2] += stored
    entry[3] += ns


def notes(kind: str) -> dict[Any, tuple[int, int, int, int]]:
    """The notes of one kind: key → (count, bytes, stored bytes, nanoseconds)."""
    with _lock:
        return {k[1]: tuple(v) for k, v in _notes.items() if k[0] == kind}


def compression_totals() -> dict[tuple[str, str], list[int]]:
    """The compression notes per (codec, transport): [count, raw bytes, stored bytes, nanoseconds].

    Notes are kept per bandwidth too (the compression-time rule judges each), which a snapshot row or a
    Prometheus series does not show, so the notes of one codec and transport are summed here.
    """
    out: dict[tuple[str, str], list[int]] = {}
    for (codec, transport, _bw), values in notes("compress").items():
        total = out.setdefault((codec, transport), [0, 0, 0, 0])
        for i, v in enumerate(values):
            total[i] += v
    return out


def merged() -> dict[tuple, list]:
    """The totals per key, after folding pending events (copies, histograms as lists)."""
    drain()  # outside the lock: the alerts it raises call back into user code
    with _lock:
        return {key: [*e[:HIST], e[HIST].tolist(), dict(e[ERRORS]), dict(e[FALLBACKS])] for key, e in _totals.items()}


def percentile(hist: list[int], q: float) -> float | None:
    """The ``q`` quantile (0-1) of a histogram, in seconds: interpolated inside its bucket; None when empty.

    Examples
    --------
    >>> h = [0] * NBUCKETS; h[bucket(1000)] += 10
    >>> 896e-9 <= percentile(h, 0.5) <= 1024e-9
    True
    """
    total = sum(hist)
    if not total:
        return None
    rank = q * total
    seen = 0
    for index, n in enumerate(hist):
        if n and seen + n >= rank:
            low, high = bucket_bounds(index)
            return (low + (high - low) * max(rank - seen, 0) / n) / 1e9
        seen += n
    return None


def reset() -> None:
    """Forget every count, note and operation not yet folded, and what went past the limits."""
    global since
    with _lock:
        acc.clear()
        _totals.clear()
        _notes.clear()
        for name in folded:
            folded[name] = 0
        _warned.clear()
        since = time.time()


def set_limits(max_rows: int | None = None, max_kinds: int | None = None) -> dict[str, int]:
    """Set (and return) :data:`limits`; rows and kinds kept so far stay, new ones count against the new limits."""
    with _lock:
        for name, value in (("max_rows", max_rows), ("max_kinds", max_kinds)):
            if value is not None:
                limits[name] = value
        return dict(limits)


def limit_figures() -> dict[str, int]:
    """The limits and what went past them since the last reset (``snapshot()["limits"]``)."""
    with _lock:
        return {**limits, "folded_operations": folded["rows"], "folded_kinds": folded["kinds"],
                "dropped_notes": folded["notes"]}


class PyAccumulator:
    """``tether._speedups.Accumulator``'s contract in Python, for builds without the C extension.

    Counting is one ``list.extend`` of the operation's :data:`FIELDS` values
    (atomic, so threads need no lock and never interleave); :meth:`take`
    folds them with NumPy: group by key, sums, ``bincount`` of histogram
    buckets, and the throughput medians of each full batch per key.

    Examples
    --------
    >>> a = PyAccumulator(history=4, batch=2)
    >>> a.observe("dumps", "etf", "none", "memory", 10, 30, 1000, None)
    >>> rows, decided, medians = a.take()
    >>> [row[:9] for row in rows], decided, medians
    ([('dumps', 'etf', 'none', 'memory', 0, 1, 10, 30, 1000)], [], [])
    """

    def __init__(self, history: int = HISTORY, batch: int = 16) -> None:
        self.events: list[Any] = []
        self.history, self.batch = history, batch
        self.on, self.clock = True, time.perf_counter_ns
        self.large = 1 << 62
        self.samples: dict[tuple, np.ndarray] = {}  # (key, size class) -> throughputs of the batch being filled
        self.unsampled = 0  # operations at the head of events counted before a batch size change: no samples

    def start(self) -> int | None:
        """The clock in nanoseconds, or None while off."""
        return self.clock() if self.on else None

    def add(self, op: str, fmt: str, comp: str, transport: str, nin: int, nout: int, t0: int,
            decision: Any) -> int | None:
        """Count one operation that started at ``t0`` (from :meth:`start`); None, or :data:`DUE` | :data:`LARGE_OP`."""
        return self.observe(op, fmt, comp, transport, nin, nout, self.clock() - t0, decision)

    def add_plain(self, op: str, fmt: str, comp: str, transport: str, plain: tuple, t0: int,
                  decision: Any) -> int | None:
        """:meth:`add` for a one-step write: ``plain`` is (frame, payload bytes); bytes out is the frame's length."""
        return self.observe(op, fmt, comp, transport, plain[1], len(plain[0]), self.clock() - t0, decision)

    def add_frame(self, op: str, transport: str, nin: Any, header: tuple, t0: int) -> int | None:
        """:meth:`add` for a frame read: keyed by its header's format and compression ids, raw length out.

        ``nin`` is the bytes read, or the buffer they were read from (its length in bytes is taken).
        """
        fmt, comp, raw = self.frame_fields
        if not isinstance(nin, int):
            nin = memoryview(nin).nbytes
        return self.observe(op, header[fmt], header[comp], transport, nin, header[raw], self.clock() - t0, None)

    def set_frame_fields(self, fmt: int, comp: int, raw: int) -> None:
        """Where :meth:`add_frame` finds the format id, compression id and raw length in a header tuple."""
        self.frame_fields = (fmt, comp, raw)

    def observe(self, op: str, fmt: str, comp: str, transport: str, nin: int, nout: int, ns: int,
                decision: Any) -> int | None:
        """Count one operation that took ``ns`` nanoseconds; flags as :meth:`add`."""
        events = self.events
        events.extend((op, fmt, comp, transport, nin, nout, ns, decision))
        flags = (DUE if len(events) >= DRAIN_AT * FIELDS else 0) | (LARGE_OP if max(nin, nout) >= self.large else 0)
        return flags or None

    def take(self, history: bool = True) -> tuple[list[tuple], list[tuple], list[tuple]]:
        """The deltas since the last take: (rows, decided, medians), as the C accumulator's ``take``.

        The decisions come whatever ``history`` says: they leave the event list with the counts.
        """
        events = self.events
        n = len(events)  # always a multiple of FIELDS: each operation's values went in with one extend
        batch = events[:n]
        del events[:n]  # values added meanwhile sit after index n and stay
        decided = [item for item in zip(batch[7::FIELDS], batch[0::FIELDS], batch[6::FIELDS]) if item[0] is not None]
        if not n:
            return [], [], []
        rows, medians = self._fold(batch, self.unsampled)
        self.unsampled = 0
        return rows, decided[-self.history:], medians

    def _fold(self, batch: list[Any], unsampled: int) -> tuple[list[tuple], list[tuple]]:
        nin, nout, ns = (np.array(batch[i::FIELDS], np.int64) for i in (4, 5, 6))
        ns = np.maximum(ns, 0)  # a clock that went back: the operation counts as instant
        size = np.maximum(nin, nout)
        classes = np.searchsorted(_SIZE_BOUNDS, size, side="right").tolist()
        keys = zip(batch[0::FIELDS], batch[1::FIELDS], batch[2::FIELDS], batch[3::FIELDS], classes)
        groups: dict[tuple, int] = {}
        codes = np.array([groups.setdefault(key, len(groups)) for key in keys], np.int64)
        m = len(groups)
        sums = np.zeros((3, m), np.int64)
        for row, values in zip(sums, (nin, nout, ns)):
            np.add.at(row, codes, values)  # exact int64 sums
        counts = np.bincount(codes, minlength=m)
        hists = np.bincount(codes * NBUCKETS + _buckets(ns), minlength=m * NBUCKETS).reshape(m, NBUCKETS)
        throughput = np.maximum(size, 1) / np.maximum(ns, 1)
        sampled = np.arange(len(codes)) >= unsampled
        rows, medians = [], []
        for key, j in groups.items():
            rows.append((*key, int(counts[j]), *(int(v) for v in sums[:, j]), hists[j].tobytes()))
            done = self._batch_medians(key, throughput[(codes == j) & sampled])
            if done:
                medians.append((*key[:3], key[4], done))
        return rows, medians

    def _batch_medians(self, key: tuple, samples: np.ndarray) -> list[float]:
        pending = np.concatenate((self.samples.get(key, np.empty(0)), samples))
        full = len(pending) // self.batch
        self.samples[key] = pending[full * self.batch:]
        return np.median(pending[: full * self.batch].reshape(full, self.batch), axis=1).tolist() if full else []

    def clear(self) -> None:
        """Forget every count, sample and decision."""
        del self.events[:]
        self.samples.clear()
        self.unsampled = 0

    def set_on(self, flag: bool) -> None:
        """Whether :meth:`start` reads the clock or says None."""
        self.on = bool(flag)

    def set_clock(self, clock: Callable[[], int] | None) -> None:
        """A callable of nanoseconds, or None for ``time.perf_counter_ns``."""
        self.clock = clock or time.perf_counter_ns

    def set_large(self, nbytes: int) -> None:
        """Operations whose larger byte count reaches ``nbytes`` are flagged :data:`LARGE_OP`."""
        self.large = nbytes

    def set_batch(self, n: int) -> None:
        """Operations per throughput median; every key's batch starts afresh."""
        self.batch = n
        self.samples.clear()
        self.unsampled = len(self.events) // FIELDS

    @staticmethod
    def bucket(ns: int) -> int:
        """:func:`bucket`, for the same contract as the C accumulator."""
        return bucket(max(ns, 0))


def _native() -> Callable[..., Any] | None:
    """The C accumulator's type when ``tether._speedups`` has one built with these histogram buckets and flags."""
    try:
        from .. import _speedups
    except ImportError:  # no compiler at install time: PyAccumulator counts
        return None
    expected = {"METRICS_NBUCKETS": NBUCKETS, "METRICS_DUE": DUE, "METRICS_LARGE": LARGE_OP, "METRICS_API": API}
    if any(getattr(_speedups, name, None) != value for name, value in expected.items()):
        return None  # a build left over from an older tether: its counters would not match these tables
    return _speedups.Accumulator


# The one accumulator of the process: the entry points bind its start and add once, so it is never replaced.
acc: Any = (_native() or PyAccumulator)(HISTORY, batch_size)
acc.set_frame_fields(*(Header._fields.index(name) for name in ("format_id", "compression_id", "raw_length")))
acc.set_large(LARGE)
start: Callable[[], Any] = acc.start  # an opaque start mark (ns, a float from C), or None while off
add: Callable[..., int | None] = acc.add  # None, or DUE | LARGE_OP
add_plain: Callable[..., int | None] = acc.add_plain
add_frame: Callable[..., int | None] = acc.add_frame


def set_on(flag: bool) -> None:
    """Turn recording on or off (:func:`tether.metrics.enable` / ``disable``)."""
    global on
    on = bool(flag)
    acc.set_on(on)


def set_clock(new: Callable[[], int] | None) -> None:
    """Time operations with ``new`` (nanoseconds), or ``time.perf_counter_ns`` when None."""
    global clock
    clock = new or time.perf_counter_ns
    acc.set_clock(new)


def set_batch(n: int) -> None:
    """Operations per throughput median of the alert monitor; pending batches start afresh when it changes."""
    global batch_size
    with _lock:  # not in the middle of a fold: PyAccumulator's take reads the batch state it resets
        if n != batch_size:
            batch_size = n
            acc.set_batch(n)
