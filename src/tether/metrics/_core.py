"""The accumulators behind :mod:`tether.metrics`: an event list folded in bulk, log-bucket histograms, notes.

Recording has to cost next to nothing, so an operation only extends
:data:`events` by its :data:`FIELDS` values (``list.extend`` is atomic, so
threads need no lock and never interleave; the values are ints, strings and
the decision record that exists anyway, so the garbage collector has no new
object to visit). Every 1024 operations (:data:`DRAIN_AT` values), and before
anything reads the figures, :func:`drain`
folds them into the per-key totals with NumPy (group by key, ``bincount`` for
counts, bytes and histogram buckets), under a lock only drainers take.
"""

from __future__ import annotations

import threading
import time
from itertools import compress
from typing import Any, Callable

import numpy as np

from .._select import history

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

clock: Callable[[], int] = time.perf_counter_ns
on = True
# Flat, FIELDS values per operation: op, format, compression, transport, bytes in, bytes out,
# nanoseconds, decision or None; oldest first.
FIELDS = 8
events: list[Any] = []
DRAIN_AT = 1024 * FIELDS
# The alert monitor's batch size (operations per median) and its evaluator, set by _alerts.
batch_size = 16
evaluate_batch: Callable[[tuple, str, list, int], None] | None = None

_lock = threading.RLock()
_totals: dict[tuple, list] = {}
_pending: dict[tuple, list] = {}  # alert key -> [throughput arrays not yet in a full batch, compression]
_notes: dict[tuple, list] = {}
since = time.time()


class _Ids(dict):
    """Key → small int, numbering new keys as they come (``__missing__`` runs once per key)."""

    def __missing__(self, key: tuple) -> int:
        value = self[key] = len(self)
        _names.append(key)
        return value


_ids = _Ids()
_names: list[tuple] = []


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
    """Count one successful operation that took ``ns`` nanoseconds (dumps and loads extend :data:`events` inline).

    ``decision`` (the format choice that steered it) joins the decision history.
    """
    events.extend((op, fmt, comp, transport, nin, nout, ns, decision))
    if len(events) >= DRAIN_AT:
        drain()


def drain() -> None:
    """Fold the events recorded so far into the totals, the decision history and the alert monitor."""
    with _lock:
        n = len(events)  # always a multiple of FIELDS: each operation's values went in with one extend
        if not n:
            return
        batch = events[:n]
        del events[:n]  # values added meanwhile sit after index n and stay
        decided = batch[7::FIELDS]
        history.extend(compress(zip(decided, batch[0::FIELDS], batch[6::FIELDS]), decided))
        _fold(batch)


def _fold(batch: list[Any]) -> None:
    keys = zip(batch[0::FIELDS], batch[1::FIELDS], batch[2::FIELDS], batch[3::FIELDS])
    ids = np.array(list(map(_ids.__getitem__, keys)), np.int64)
    nin, nout, ns = (np.array(batch[i::FIELDS], np.int64) for i in (4, 5, 6))
    size = np.maximum(nin, nout)
    classes = np.searchsorted(_SIZE_BOUNDS, size, side="right")
    groups, inverse = np.unique(ids * len(SIZE_CLASSES) + classes, return_inverse=True)
    inverse = inverse.reshape(-1)
    m = len(groups)
    counts = np.bincount(inverse, minlength=m)
    sums = [np.bincount(inverse, weights=v, minlength=m) for v in (nin, nout, ns)]
    hists = np.bincount(inverse * NBUCKETS + _buckets(ns), minlength=m * NBUCKETS).reshape(m, NBUCKETS)
    throughput = np.maximum(size, 1) / np.maximum(ns, 1)
    for j, group in enumerate(groups.tolist()):
        key = (*_names[group // len(SIZE_CLASSES)], group % len(SIZE_CLASSES))
        entry = _totals.get(key) or _totals.setdefault(key, _new_entry())
        entry[COUNT] += int(counts[j])
        entry[BYTES_IN] += int(sums[0][j])
        entry[BYTES_OUT] += int(sums[1][j])
        entry[NANOS] += int(sums[2][j])
        entry[HIST] += hists[j]
        _to_monitor(key, throughput[inverse == j])


def _to_monitor(key: tuple, samples: np.ndarray) -> None:
    """Hand the alert monitor the medians of each full batch of ``batch_size`` throughput samples."""
    op, fmt, comp, _transport, size = key
    where = (op, fmt, size)
    pending = _pending.setdefault(where, [np.empty(0), comp])
    pending[0] = np.concatenate((pending[0], samples))
    pending[1] = comp
    full = len(pending[0]) // batch_size
    if not full:
        return
    chunks = pending[0][: full * batch_size].reshape(full, batch_size)
    pending[0] = pending[0][full * batch_size :]
    if evaluate_batch is not None:
        evaluate_batch(where, comp, np.median(chunks, axis=1).tolist(), batch_size)


def _new_entry() -> list:
    return [0, 0, 0, 0, np.zeros(NBUCKETS, np.int64), {}, {}]


def count_other(op: str, fmt: str, comp: str, transport: str, nbytes: int, slot: int, kind: str) -> None:
    """Count an error (``slot`` ERRORS) or a fallback (FALLBACKS) of type ``kind`` under a key."""
    size = int(np.searchsorted(_SIZE_BOUNDS, max(nbytes, 0), side="right"))
    with _lock:
        entry = _totals.get((op, fmt, comp, transport, size))
        if entry is None:
            entry = _totals[(op, fmt, comp, transport, size)] = _new_entry()
        entry[slot][kind] = entry[slot].get(kind, 0) + 1


def note(kind: str, key: Any, nbytes: int = 0, stored: int = 0, ns: int = 0) -> None:
    """Count an event the recommendations look at: (count, bytes, stored bytes, nanoseconds) per (kind, key)."""
    with _lock:
        entry = _notes.get((kind, key))
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


def merged() -> dict[tuple, list]:
    """The totals per key, after folding pending events (copies, histograms as lists)."""
    with _lock:
        drain()
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
    """Forget every count, note and pending event."""
    global since
    with _lock:
        del events[:]
        _totals.clear()
        _pending.clear()
        _notes.clear()
        since = time.time()
