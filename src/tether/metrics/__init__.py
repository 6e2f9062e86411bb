"""What tether does in production: counts, bytes, durations, decisions, advice and alerts.

On by default and cheap enough to leave on: every ``dumps``, ``loads``,
``dump_into`` and stream chunk is counted per (operation, format,
compression, transport, size class). Counting one is a single call into
C counters (``tether._speedups``; a ``list.extend`` folded in bulk with NumPy
where the extension is not built), without a lock; about once a second while
operations come (every 1024 in pure Python), and whenever figures are read,
they are folded into counts, byte totals and log-bucket histograms, so no
sample is kept. Shared memory (``attach``) and worker calls (``worker_call``)
report through :func:`record`.

- :func:`snapshot` — everything as plain data (strict JSON);
- :func:`decisions` — the last format decisions, with the time each operation took;
- :func:`recommendations` — advice drawn from what was observed (:mod:`._recommend`);
- :func:`alert`, :func:`clear`, :func:`on_alert` — alerts on ``tether.alerts``,
  raised by the throughput monitor (:func:`configure_alerts`) and by :mod:`tether.memory`;
- :func:`prometheus_collector` — a ``prometheus_client`` collector (optional extra);
- :func:`otel_register` — observable instruments on an OpenTelemetry meter (optional extra).

``core`` (:mod:`tether.metrics._core`, not listed in ``__all__``) is the
accumulator that ``dumps``, ``loads`` and the stream count through, reached
by tether's own modules under that name; it is not a user API.

Examples
--------
>>> import tether, tether.metrics
>>> tether.metrics.reset()
>>> tether.loads(tether.dumps({"a": 1}))
{'a': 1}
>>> [(r["op"], r["format"], r["count"]) for r in tether.metrics.snapshot()["operations"]]
[('dumps', 'etf', 1), ('loads', 'etf', 1)]
"""

from __future__ import annotations

import datetime as _dt
import math
import numbers
from typing import Any, Callable

from .._errors import ValidationError
from .._transport import TRANSPORTS as _TRANSPORTS
from .. import _select, memory
from .._select import Decision, clear_history
from . import _alerts, _core
# tether._api and tether.stream count through the accumulator module itself: its `on` flag changes at run time,
# so a re-export of single names would go stale.
from . import _core as core
from ._alerts import Alert, active_alerts, alert, clear, configure_alerts, on_alert, plain as _plain
from ._recommend import Recommendation, recommendations

__all__ = [
    "OPERATIONS", "SIZE_CLASSES", "TRANSPORTS", "Alert", "Recommendation", "active_alerts", "alert", "clear",
    "configure_alerts", "configure_limits", "decisions", "disable", "flush", "enable", "enabled", "on_alert",
    "otel_register", "prometheus_collector", "record", "recommendations", "reset", "set_clock", "snapshot",
]

# "transfer": bytes an application moved over a link, recorded by it (record("transfer", "-", "-", "network",
# n, n, seconds)), so that the compression-time recommendation judges compression at the observed bandwidth.
OPERATIONS = ("dumps", "loads", "dump_into", "attach", "stream_chunk", "worker_call", "transfer")
# The transports of tether's entry points, "pipe" (a worker call's inline route), and "-" (none applies).
TRANSPORTS = (*_TRANSPORTS, "pipe", "-")
SIZE_CLASSES = _core.SIZE_CLASSES


def record(
    op: str, fmt: str, compression: str, transport: str, nbytes_in: int, nbytes_out: int, seconds: float, *,
    error: BaseException | str | None = None, fallback: str | None = None,
) -> None:
    """Count one operation done outside tether's own entry points (shared memory, worker calls, transfers).

    An application that sends frames itself can record each send as a ``"transfer"`` (bytes in and out
    both the bytes sent): the compression-time recommendation then judges compression on that
    transport at the bandwidth observed, instead of the one assumed for it.

    Operations under more distinct keys than :func:`configure_limits` allows (1,000 rows by default) are
    counted under format and compression ``"other"``, and error and fallback kinds past its ``max_kinds``
    (64 per row) as ``"other"``: ``snapshot()["limits"]`` says how many.

    Parameters
    ----------
    op : str
        One of :data:`OPERATIONS`.
    fmt, compression : str
        The format and compressor involved (``"-"`` when not applicable).
    transport : str
        One of :data:`TRANSPORTS` (``"-"`` when none applies).
    nbytes_in, nbytes_out : int
        Bytes taken and produced; the larger picks the size class.
    seconds : float
        How long it took (finite; a negative time, from a clock that went back, counts as instant).
    error : exception, str, optional
        The operation failed with this (its type name is counted; the time is not).
    fallback : str, optional
        The operation fell back, e.g. ``"shm->inline"``; counted by that name, besides the operation.

    Raises
    ------
    ValidationError
        For a key part that is not a str, an ``op`` or ``transport`` outside the sets above, a byte count that
        is not a whole number from 0 to 2**63 - 1, or a time that is not a finite number.

    Examples
    --------
    >>> import tether.metrics as m
    >>> m.reset(); m.record("worker_call", "etf", "none", "shm", 2 << 20, 100, 0.004)
    >>> m.snapshot()["operations"][0]["size_class"]
    '1MiB-16MiB'
    >>> m.record("transfer", "-", "-", "network", 1 << 20, 1 << 20, 0.01)  # 1 MiB sent in 10 ms
    """
    if not _core.on:
        return
    _check_key(op, fmt, compression, transport)
    nin, nout, ns = _counted("nbytes_in", nbytes_in), _counted("nbytes_out", nbytes_out), _nanos(seconds)
    if error is not None and not isinstance(error, str):
        error = type(error).__name__
    if fallback is not None and type(fallback) is not str:  # a snapshot's keys are strs: strict JSON
        raise ValidationError(f"record() needs fallback as a str (a kind, such as 'shm->inline') or None, "
                              f"got {type(fallback).__name__}.")
    _core.count_recorded(op, fmt, compression, transport, nin, nout, ns, error, fallback)


_VALID_OPS, _VALID_TRANSPORTS = frozenset(OPERATIONS), frozenset(TRANSPORTS)


def _check_key(op: Any, fmt: Any, compression: Any, transport: Any) -> None:
    """:func:`record`'s key: four strs, ``op`` one of :data:`OPERATIONS`, ``transport`` one of :data:`TRANSPORTS`."""
    if type(op) is str and type(transport) is str and op in _VALID_OPS and transport in _VALID_TRANSPORTS \
            and type(fmt) is str and type(compression) is str:  # a worker call's record(), without the loop
        return
    for name, value in (("op", op), ("fmt", fmt), ("compression", compression), ("transport", transport)):
        if not isinstance(value, str):
            raise ValidationError(f"record() needs {name} as a str, got {type(value).__name__}: pass e.g. '-'.")
    if op not in OPERATIONS:
        raise ValidationError(f"record() got op {op!r}; valid operations are: {', '.join(OPERATIONS)}.")
    if transport not in TRANSPORTS:
        raise ValidationError(f"record() got transport {transport!r}; valid transports are: "
                              f"{', '.join(TRANSPORTS)}.")


_MAX_COUNT = 1 << 63
_MAX_SECONDS = (1 << 63) / 1e9  # the nanosecond counters are 64-bit


def _counted(name: str, value: Any) -> int:
    """A byte count for :func:`record`: a whole number the 64-bit counters hold."""
    if type(value) is int and 0 <= value < _MAX_COUNT:  # what tether's callers pass: no numbers.Real ABC check
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < 1 << 63 \
            or int(value) != value:
        raise ValidationError(f"record() needs {name} as a whole number of bytes from 0 to 2**63 - 1, got {value!r}.")
    return int(value)


def _nanos(seconds: Any) -> int:
    """:func:`record`'s time in nanoseconds: finite, and 0 for a negative time (a clock that went back)."""
    if type(seconds) is float and 0.0 <= seconds < _MAX_SECONDS:  # the common case, without the ABC checks
        return int(seconds * 1e9)
    if isinstance(seconds, bool) or not isinstance(seconds, numbers.Real) or not math.isfinite(seconds) \
            or seconds * 1e9 >= 1 << 63:
        raise ValidationError(f"record() needs seconds as a finite number of seconds, got {seconds!r}.")
    return int(seconds * 1e9) if seconds > 0 else 0  # -1e300 s would overflow on its way to 0


def decisions(n: int | None = None) -> list[Decision]:
    """The format decisions of the last ``n`` timed operations (every thread's), oldest first, with their times.

    Each is a :class:`tether.Decision` with ``operation`` (``"dumps"``,
    ``"dump_into"``, ``"stream_chunk"``) and ``seconds`` set; at most 256 are
    kept. :func:`tether.last_decision` is still this thread's newest.

    Examples
    --------
    >>> import tether, tether.metrics
    >>> _ = tether.dumps([1, 2])
    >>> d = tether.metrics.decisions(1)[0]
    >>> d.format, d.operation, d.seconds > 0
    ('etf', 'dumps', True)
    """
    if n is not None and (type(n) is not int or n < 0):
        raise ValidationError(f"decisions(n) takes how many of the newest decisions to return, an int ≥ 0 or None; "
                              f"got {n!r}.")
    _core.drain()
    return _select.decisions(n)


def flush() -> None:
    """Fold the operations recorded so far into the totals and the alert monitor now.

    Recording only adds to counters; the figures are folded about once a
    second while operations come (every 1024 operations without the C
    extension) and whenever they are read (:func:`snapshot`, :func:`decisions`,
    :func:`recommendations`, the exporters). Call this to have the throughput
    alerts look at the latest operations at once.

    Examples
    --------
    >>> import tether, tether.metrics
    >>> _ = tether.dumps(1); tether.metrics.flush()
    """
    _core.drain()


def enable() -> None:
    """Start recording again after :func:`disable` (counts so far are kept).

    Examples
    --------
    >>> import tether.metrics as m
    >>> m.disable(); m.enable(); m.enabled()
    True
    """
    _core.set_on(True)


def disable() -> None:
    """Stop recording: every entry point then skips metrics entirely (and :func:`record` is a no-op).

    Examples
    --------
    >>> import tether.metrics as m
    >>> m.disable(); m.enabled()
    False
    >>> m.enable()
    """
    _core.set_on(False)


def enabled() -> bool:
    """Whether operations are being recorded.

    Examples
    --------
    >>> import tether.metrics
    >>> tether.metrics.enabled()
    True
    """
    return _core.on


def reset() -> None:
    """Forget every count, note, decision and throughput baseline.

    Active alerts stay until cleared, and so do the baselines of the throughput alerts among them: such an
    alert clears when throughput recovers against the baseline it fired against.

    Examples
    --------
    >>> import tether, tether.metrics as m
    >>> _ = tether.dumps(1); m.reset(); m.snapshot()["operations"]
    []
    """
    _core.reset()
    clear_history()
    _alerts.reset_baselines()


def set_clock(clock: Callable[[], int] | None) -> None:
    """Use ``clock`` (nanoseconds, monotonic) to time operations; None restores ``time.perf_counter_ns``.

    For tests that simulate a slowdown. The clock is read once here, and refused (:class:`tether.ValidationError`)
    unless it returns an int.

    Examples
    --------
    >>> import tether.metrics as m
    >>> m.set_clock(lambda: 0); m.set_clock(None)
    """
    if clock is not None and not callable(clock):
        raise ValidationError(f"set_clock needs a callable returning nanoseconds, got {type(clock).__name__}.")
    if clock is not None:
        # Read once now: a clock of float seconds (time.perf_counter) would otherwise fail every dumps and loads.
        now = clock()
        if isinstance(now, bool) or not isinstance(now, numbers.Integral) or not -(1 << 63) <= now < 1 << 63:
            raise ValidationError(f"set_clock needs a clock returning nanoseconds as an int (e.g. "
                                  f"time.perf_counter_ns), but it returned {now!r}.")
    _core.set_clock(clock)


def configure_limits(*, max_rows: int | None = None, max_kinds: int | None = None) -> dict[str, int]:
    """Set (and return) how many distinct keys the metrics keep, so that memory stays bounded.

    Operations are counted per row, one per (op, format, compression, transport, size class). Once
    ``max_rows`` rows exist, an operation under a new key is counted in the row of its op, transport and size
    class with format and compression ``"other"``; once a row holds ``max_kinds`` kinds of errors (or of
    fallbacks), a new kind in it is counted as ``"other"``. The notes behind :func:`recommendations` keep at
    most ``max_rows`` keys; later ones are left out. The first of each logs a WARNING on the
    ``tether.metrics`` logger, once until :func:`reset`, and ``snapshot()["limits"]`` counts what went past
    them. Rows and kinds kept already stay when a limit is lowered.

    Parameters
    ----------
    max_rows : int, optional
        Rows (and notes) kept, default 1,000: tether's own operations make a few dozen in a typical process;
        a snapshot row is about 300 bytes of JSON.
    max_kinds : int, optional
        Kinds of errors, and of fallbacks, kept per row, default 64.

    Raises
    ------
    ValidationError
        For a value that is not a positive int.

    Examples
    --------
    >>> import tether.metrics as m
    >>> m.configure_limits()
    {'max_rows': 1000, 'max_kinds': 64}
    >>> m.configure_limits(max_kinds=16)["max_kinds"]; _ = m.configure_limits(max_kinds=64)
    16
    """
    for name, value in (("max_rows", max_rows), ("max_kinds", max_kinds)):
        if value is not None and (type(value) is not int or value < 1):
            raise ValidationError(f"configure_limits: {name} must be a positive int, got {value!r}.")
    return _core.set_limits(max_rows, max_kinds)


def _row(key: tuple, entry: list) -> dict[str, Any]:
    op, fmt, comp, transport, size = key
    count, nin, nout, ns, hist = entry[: _core.ERRORS]
    seconds = ns / 1e9
    return {
        "op": op, "format": fmt, "compression": comp, "transport": transport, "size_class": _core.SIZE_CLASSES[size],
        "count": count, "bytes_in": nin, "bytes_out": nout, "seconds": seconds,
        "p50": _core.percentile(hist, 0.50), "p95": _core.percentile(hist, 0.95),
        "p99": _core.percentile(hist, 0.99),
        "ratio": nout / nin if nin else None,
        "throughput": max(nin, nout) / seconds if seconds else None,
        "errors": dict(entry[_core.ERRORS]), "fallbacks": dict(entry[_core.FALLBACKS]),
        "histogram": {f"{_core.bucket_bounds(i)[1] / 1e9:.3e}": n for i, n in enumerate(hist) if n},
    }


def snapshot(*, strict: bool = True) -> dict[str, Any]:
    """Everything recorded so far, as plain data (strict JSON).

    Keys:

    - ``enabled``; ``since``, the ISO time of the last reset;
    - ``operations``, one row per (op, format, compression, transport, size class), with those five as
      ``op``, ``format``, ``compression``, ``transport``, ``size_class``, and ``count``, ``bytes_in``,
      ``bytes_out``, ``seconds`` (the total), ``p50``/``p95``/``p99`` (seconds, from the histogram; None
      without a timed operation), ``ratio`` (bytes out / in; None with no bytes in), ``throughput`` (the larger
      byte count per second; None when no time was measured; a zero-copy ``loads`` makes its bytes readable
      without touching them, so its figure, often hundreds of GB/s, is not a copy rate), ``errors`` and
      ``fallbacks`` (counts by type; an operation that failed is counted under ``errors`` only, not in
      ``count`` or the times, so the error rate is errors / (count + errors); a worker call whose handler
      raised is such a failure),
      ``histogram`` (the non-empty buckets: their upper bound in seconds, as text, to a count);
    - ``compression``, one row per (codec, transport): ``codec``, ``transport``, ``count``, ``raw_bytes``,
      ``stored_bytes``, ``ratio`` (stored / raw), ``seconds`` spent compressing;
    - ``decisions`` (:meth:`tether.Decision.as_dict`), ``alerts`` (the active ones,
      :meth:`Alert.as_dict`), ``recommendations`` (:meth:`Recommendation.as_dict`);
    - ``memory``: :func:`tether.memory.stats` (``{"error": ...}`` if it failed);
    - ``limits``: ``max_rows`` and ``max_kinds`` (:func:`configure_limits`), ``folded_operations`` (operations,
      errors and fallbacks counted in an ``"other"`` row instead of their own), ``folded_kinds`` (errors and
      fallbacks counted as kind ``"other"``), ``dropped_notes`` (events the recommendations did not keep).

    The snapshot is strict JSON (``json.dumps(snapshot(), allow_nan=False)`` works): NumPy numbers are
    Python ints and floats, and a float that is not finite (in alert figures, decisions or memory figures) is
    the string ``"NaN"``, ``"Infinity"`` or ``"-Infinity"``, which ``float()`` reads back. ``strict=False``
    leaves those floats as they are, for a consumer with its own spelling of them (the BEAM's atoms).

    Examples
    --------
    >>> import json, tether, tether.metrics as m
    >>> _ = tether.dumps([1, 2]); s = m.snapshot()
    >>> json.loads(json.dumps(s, allow_nan=False))["enabled"]
    True
    """
    # First: reading memory enters or leaves pressure, which fires or clears the memory_pressure alert listed below.
    memory_figures = _memory_figures(strict)
    rows = [_row(key, entry) for key, entry in sorted(_core.merged().items(), key=lambda kv: kv[0])]
    comp = [
        {"codec": codec, "transport": transport, "count": n, "raw_bytes": raw, "stored_bytes": stored,
         "ratio": stored / raw if raw else None, "seconds": ns / 1e9}
        for (codec, transport), (n, raw, stored, ns) in sorted(_core.compression_totals().items())
    ]
    out = {
        "enabled": _core.on,
        "since": _dt.datetime.fromtimestamp(_core.since, _dt.timezone.utc).isoformat(),
        "operations": rows,
        "compression": comp,
        # Not built here from ints: made plain (NumPy numbers, non-finite floats) so that strict JSON takes them.
        "decisions": _plain([d.as_dict() for d in decisions()], strict),
        "alerts": [a.as_dict(strict) for a in active_alerts()],
        "recommendations": _plain([r.as_dict() for r in recommendations()], strict),
        "memory": memory_figures,
        "limits": _core.limit_figures(),
    }
    return out


def _memory_figures(strict: bool) -> dict[str, Any]:
    """:func:`tether.memory.stats` as plain data, or ``{"error": ...}``."""
    try:
        return _plain(memory.stats(), strict)
    except Exception as exc:  # memory figures are informational: a snapshot must not fail on them
        return {"error": f"{type(exc).__name__}: {exc}"}


def prometheus_collector() -> Any:
    """A ``prometheus_client`` collector of these metrics; register it with ``REGISTRY.register(...)``.

    Needs the ``prometheus_client`` package (``pip install tether[prometheus]``);
    a :class:`tether.ValidationError` says so when it is missing.

    Examples
    --------
    >>> import tether.metrics
    >>> from prometheus_client import CollectorRegistry, generate_latest  # doctest: +SKIP
    >>> registry = CollectorRegistry()  # doctest: +SKIP
    >>> registry.register(tether.metrics.prometheus_collector())  # doctest: +SKIP
    """
    from . import _prometheus

    return _prometheus.Collector()


def otel_register(meter: Any) -> list[Any]:
    """Create tether's observable instruments on an OpenTelemetry ``meter`` (``opentelemetry-api``).

    See :func:`tether.metrics._otel.register` for the instruments; a
    :class:`tether.ValidationError` says how to install the API when it is missing.

    Examples
    --------
    >>> from opentelemetry import metrics  # doctest: +SKIP
    >>> import tether.metrics
    >>> instruments = tether.metrics.otel_register(metrics.get_meter("tether"))  # doctest: +SKIP
    """
    from . import _otel

    return _otel.register(meter)


# tether.memory fires and clears its alerts (pressure, budgets) through these: it cannot import this package,
# which imports it (snapshot()["memory"]).
memory.report_alerts_to(alert, clear)
