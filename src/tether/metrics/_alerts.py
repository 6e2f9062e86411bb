"""Alerts: a named condition that fires once (WARNING on ``tether.alerts``, then callbacks) until cleared.

The throughput monitor raises them: for each (operation, format, size class)
of 1 KiB and up it keeps a rolling baseline, the median of the last healthy
batch medians of throughput, and compares each new batch's median with it.
"""

from __future__ import annotations

import functools
import logging
import numbers
import threading
import time
from bisect import bisect_left, insort
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from .._errors import ValidationError
from . import _core

log = logging.getLogger("tether.alerts")


@dataclass(frozen=True)
class Alert:
    """One alert, as callbacks receive it: ``state`` is ``"firing"`` or ``"cleared"``.

    Examples
    --------
    >>> Alert("x", "slow", {"ratio": 0.3}, "look", "firing", 0.0).as_dict()["figures"]
    {'ratio': 0.3}
    """

    name: str
    message: str
    figures: dict[str, Any]
    suggestion: str
    state: str
    time: float = field(default_factory=time.time)

    def as_dict(self, strict: bool = True) -> dict[str, Any]:
        """Plain data, strict JSON: a figure that is not a finite float is written ``"NaN"``, ``"Infinity"``
        or ``"-Infinity"`` (kept a float with ``strict=False``).

        Examples
        --------
        >>> Alert("x", "odd", {"worst": float("inf")}, "look", "firing", 0.0).as_dict()["figures"]
        {'worst': 'Infinity'}
        """
        return {"name": self.name, "message": self.message, "figures": plain(self.figures, strict),
                "suggestion": self.suggestion, "state": self.state, "time": self.time}


@dataclass
class _Config:
    fraction: float = 0.5
    min_samples: int = 16
    warmup: int = 2
    window: int = 8


_config = _Config()
_lock = threading.RLock()
_active: dict[str, Alert] = {}
_callbacks: list[Callable[[Alert], Any]] = []
# Per (op, format, size class): the healthy batch medians of the baseline, oldest first, and the same sorted.
_baselines: dict[tuple, tuple[list[float], list[float]]] = {}
# The smallest size class (index in SIZE_CLASSES) the metrics fold judges. Under 1 KiB an operation's time is its
# fixed cost (the call, the framing, caches gone cold while the process idled), so bytes per second there says how
# the calls are spaced, not how fast bytes move: 64 calls in a burst and then 48 calls 60 ms apart read 5-18 % of
# the burst's "throughput" on a healthy worker, and that fired and stayed firing.
JUDGED_FROM = 1
# Bytes per ns (1 TB/s) that no copy reaches: a batch median above it timed its operations at (nearly) nothing
# (record(seconds=0), a coarse clock or one that went back count as 1 ns), and as a baseline it made every
# measured batch after it read as a collapse (0.01 %).
CEILING = 1000.0


def alert(name: str, message: str, figures: dict[str, Any], suggestion: str) -> bool:
    """Fire alert ``name``: a WARNING on ``tether.alerts`` and every :func:`on_alert` callback, once until cleared.

    Returns True when it fired, False when it was already active. The figures are kept as plain data
    (NumPy numbers as int and float, tuples and sets as lists, anything else as its str), so that
    :func:`tether.metrics.snapshot`, which lists the active alerts, stays JSON; there
    (:meth:`Alert.as_dict`) a float that is not finite is the string ``"NaN"``, ``"Infinity"`` or
    ``"-Infinity"``, so that it is strict JSON too.

    Examples
    --------
    >>> import tether.metrics as m
    >>> m.alert("demo", "memory is short", {"free": 10}, "free some"), m.alert("demo", "again", {}, "")
    (True, False)
    >>> m.clear("demo")
    True
    """
    if not isinstance(name, str) or not name:
        raise ValidationError(f"An alert needs a non-empty str name, got {name!r}.")
    if not isinstance(figures, Mapping):
        raise ValidationError(f"alert {name!r}: figures must be a mapping (e.g. {{'free': 10}}), "
                              f"got {type(figures).__name__}.")
    with _lock:
        if name in _active:
            return False
        event = _active[name] = Alert(name, message, plain(figures), suggestion, "firing")
        callbacks = list(_callbacks)
    figures_text = ", ".join(f"{k}={_fmt(v)}" for k, v in event.figures.items())
    log.warning("tether alert %s: %s (%s). %s", name, message, figures_text, suggestion)
    _notify(callbacks, event)
    return True


def clear(name: str, figures: Mapping[str, Any] | None = None, message: str | None = None) -> bool:
    """Clear alert ``name`` (INFO on ``tether.alerts``, callbacks get it with state "cleared"); True if it was active.

    Parameters
    ----------
    name : str
        The alert.
    figures : mapping, optional
        The figures now, as the condition ended; the cleared event carries them, with those it fired with
        under ``"fired"``. Without them it carries the firing figures.
    message : str, optional
        What ended it (e.g. "throughput back to 92% of its baseline"); default "cleared: " and the firing
        message.

    Examples
    --------
    >>> import tether.metrics as m
    >>> m.clear("never fired")
    False
    >>> seen = []; cb = m.on_alert(seen.append)
    >>> _ = m.alert("disk", "disk slow", {"mb_s": 5}, "look"); _ = m.clear("disk", {"mb_s": 80}, "disk fast again")
    >>> seen[-1].message, seen[-1].figures
    ('disk fast again', {'mb_s': 80, 'fired': {'mb_s': 5}})
    >>> _ = m.on_alert(cb, remove=True)
    """
    if not isinstance(name, str) or not name:  # as alert() checks it: bytes from the BEAM would never match
        raise ValidationError(f"An alert name is a non-empty str, got {name!r}: decode bytes first.")
    if figures is not None and not isinstance(figures, Mapping):
        raise ValidationError(f"clear {name!r}: figures must be a mapping or None, got {type(figures).__name__}.")
    with _lock:
        fired = _active.pop(name, None)
        callbacks = list(_callbacks)
    if fired is None:
        return False
    now = fired.figures if figures is None else {**plain(figures), "fired": fired.figures}
    text = message if message is not None else f"cleared: {fired.message}"
    event = Alert(name, text, now, fired.suggestion, "cleared")
    log.info("tether alert %s cleared: %s", name, text)
    _notify(callbacks, event)
    return True


def on_alert(callback: Callable[[Alert], Any] | None = None, *, remove: bool = False) -> Callable[[Alert], Any] | None:
    """Register ``callback(alert)`` for every alert fired or cleared (``remove=True`` unregisters it).

    A callback that raises is logged and skipped; the others still run. Registering a callback that is
    already registered (the same function, or an equal bound method) keeps the one registration, as
    ``logging.Logger.addHandler`` does, so a module that registers on import cannot double every alert.

    Examples
    --------
    >>> import tether.metrics as m
    >>> seen = []
    >>> cb = m.on_alert(seen.append)
    >>> _ = m.alert("demo2", "m", {}, "s"); _ = m.clear("demo2")
    >>> [a.state for a in seen]
    ['firing', 'cleared']
    >>> _ = m.on_alert(cb, remove=True)
    """
    if not callable(callback):
        raise ValidationError(f"on_alert needs a callable, got {type(callback).__name__}.")
    with _lock:
        if remove:
            if callback in _callbacks:
                _callbacks.remove(callback)
        elif callback not in _callbacks:
            _callbacks.append(callback)
    return callback


def active_alerts() -> list[Alert]:
    """The alerts firing now.

    Examples
    --------
    >>> import tether.metrics as m
    >>> isinstance(m.active_alerts(), list)
    True
    """
    with _lock:
        return list(_active.values())


def configure_alerts(
    *, fraction: float | None = None, min_samples: int | None = None, warmup: int | None = None,
    window: int | None = None,
) -> dict[str, Any]:
    """Set (and return) the throughput monitor's settings.

    Parameters
    ----------
    fraction : float
        Alert when a batch's median throughput is below ``fraction`` × the baseline (default 0.5).
    min_samples : int
        Operations per batch: the recent median is over this many (default 16).
    warmup : int
        Healthy batches needed before a baseline is trusted (default 2; at most ``window``).
    window : int
        Healthy batch medians the rolling baseline keeps (default 8).

    Raises
    ------
    ValidationError
        For a value out of range, or a ``warmup`` above ``window`` (the baseline would never be trusted).

    Examples
    --------
    >>> import tether.metrics as m
    >>> m.configure_alerts()["fraction"]
    0.5
    """
    if fraction is not None and (isinstance(fraction, bool) or not isinstance(fraction, numbers.Real)
                                 or not 0 < fraction < 1):
        raise ValidationError(f"fraction must be a number between 0 and 1, got {fraction!r}.")
    for name, value in (("min_samples", min_samples), ("warmup", warmup), ("window", window)):
        if value is not None and (type(value) is not int or value < 1):
            raise ValidationError(f"{name} must be a positive int, got {value!r}.")
    with _lock:
        new_warmup = _config.warmup if warmup is None else warmup
        new_window = _config.window if window is None else window
        if new_warmup > new_window:  # the baseline never holds enough batches to be trusted: no alert would fire
            raise ValidationError(
                f"warmup ({new_warmup}) must not exceed window ({new_window}): the baseline keeps at most window "
                "batch medians, so it would never be warm; raise window or lower warmup.")
        if fraction is not None:
            _config.fraction = float(fraction)
        for name, value in (("min_samples", min_samples), ("warmup", warmup), ("window", window)):
            if value is not None:
                setattr(_config, name, value)
        _core.set_batch(_config.min_samples)
        return {"fraction": _config.fraction, "min_samples": _config.min_samples, "warmup": _config.warmup,
                "window": _config.window}


def reset_baselines() -> None:
    """Forget every throughput baseline but those of the throughput alerts firing now.

    An active alert clears when throughput recovers against the baseline it fired against; without that
    baseline, the first batch after a reset, however slow, would become the new baseline and clear it.
    """
    with _lock:
        for where in list(_baselines):
            if _name(where) not in _active:
                del _baselines[where]


def watch(where: tuple, comp: str, medians: list[float], samples: int) -> list[Callable[[], Any]]:
    """The metrics fold's :func:`judge`: only size classes from :data:`JUDGED_FROM` up, whose bytes per second
    measure throughput; what to do is returned as :func:`judge` returns it.

    Examples
    --------
    >>> watch(("worker_call", "etf", 0), "none", [1.0, 0.01], 16)  # under 1 KiB: never judged
    []
    """
    if where[2] < JUDGED_FROM:
        return []
    return judge(where, comp, medians, samples)


def evaluate(where: tuple, comp: str, medians: list[float], samples: int) -> None:
    """Compare batch median throughputs (bytes per ns, oldest first) of ``where`` (op, format, size class) with
    the rolling baseline, each batch in turn: a slow one fires the alert, a healthy one joins the baseline and
    clears it (:func:`judge`, then what it says to do).
    """
    for action in judge(where, comp, medians, samples):
        action()


def judge(where: tuple, comp: str, medians: list[float], samples: int) -> list[Callable[[], Any]]:
    """:func:`evaluate`'s baseline update; returns the alerts to fire or clear as calls, for the caller to make
    once it holds no lock (the metrics fold makes them after letting go of its own: callbacks may read the metrics).

    This runs for every batch of every key, so the baseline's values are kept sorted as they come and go
    (no sort per batch), and only the batches that change the alert's state return something to do. A median
    above :data:`CEILING` (operations timed at next to nothing) is neither judged nor kept in the baseline.
    """
    medians = [v for v in medians if v <= CEILING]
    if not medians:
        return []
    name = _name(where)
    fraction, warmup, window = _config.fraction, _config.warmup, _config.window
    changes: list[tuple[bool, float, float]] = []  # (fires, recent, baseline): a slow batch fires, a healthy one clears
    with _lock:
        fifo, ordered = _baselines.get(where) or _baselines.setdefault(where, ([], []))
        active = name in _active
        if _all_healthy(medians, ordered, fraction):  # the usual case, in one step
            if active:  # cleared by the first batch, against the baseline the loop below would compare it with
                first = medians[0]
                warm = ordered if len(ordered) >= warmup else sorted([*ordered, first])
                changes.append((False, first, _median(warm)))
            fifo.extend(medians)
            del fifo[:-window]
            ordered[:] = sorted(fifo)
            medians = ()
        for recent in medians:
            count = len(ordered)
            baseline = None
            if count >= warmup:
                baseline = _median(ordered)
                if recent < fraction * baseline:
                    if not active:
                        changes.append((True, recent, baseline))
                        active = True
                    continue
            fifo.append(recent)
            insort(ordered, recent)
            while len(fifo) > window:
                del ordered[bisect_left(ordered, fifo.pop(0))]
            if active:
                changes.append((False, recent, baseline if baseline is not None else _median(ordered)))
                active = False
    return [functools.partial(_fire if fires else _recovered, name, where, comp, recent, baseline, samples)
            for fires, recent, baseline in changes]


def _median(ordered: list[float]) -> float:
    half = len(ordered) // 2
    return ordered[half] if len(ordered) % 2 else (ordered[half - 1] + ordered[half]) / 2


def _name(where: tuple) -> str:
    """The throughput alert's name for (op, format, size class)."""
    op, fmt, size = where
    return f"throughput:{op}:{fmt}:{_core.SIZE_CLASSES[size]}"


def _all_healthy(medians: list[float], ordered: list[float], fraction: float) -> bool:
    """Whether no batch can be slow: each baseline is a median of these values, so never above their largest."""
    if not medians:
        return False
    top = max(medians)
    if ordered and ordered[-1] > top:
        top = ordered[-1]
    return min(medians) >= fraction * top


def _fire(name: str, where: tuple, comp: str, recent: float, baseline: float, samples: int) -> None:
    if name in _active:  # fired meanwhile (alert() checks again, but the figures need not be built)
        return
    figures = _figures(where, comp, recent, baseline, samples)
    ratio = figures["ratio"]
    share = f"{ratio:.0%}" if ratio >= 0.01 else f"{ratio:.2%}"  # "0%" would read as stopped
    alert(name, f"{_what(where)} runs at {share} of its baseline throughput ({recent * 1e3:.1f} MB/s against "
          f"{baseline * 1e3:.1f} MB/s over the last {samples} operations)", figures, _suggestion(comp))


def _recovered(name: str, where: tuple, comp: str, recent: float, baseline: float, samples: int) -> None:
    figures = _figures(where, comp, recent, baseline, samples)
    clear(name, figures, f"{_what(where)} is back to {figures['ratio']:.0%} of its baseline throughput "
                         f"({recent * 1e3:.1f} MB/s against {baseline * 1e3:.1f} MB/s)")


def _what(where: tuple) -> str:
    op, fmt, size = where
    return f"{op} of {fmt} values ({_core.SIZE_CLASSES[size]})"


def _figures(where: tuple, comp: str, recent: float, baseline: float, samples: int) -> dict[str, Any]:
    """A throughput alert's figures, as it fires or clears (recent and baseline in bytes per ns)."""
    op, fmt, size = where
    return {"operation": op, "format": fmt, "compression": comp, "size_class": _core.SIZE_CLASSES[size],
            "baseline_bytes_per_s": baseline * 1e9, "recent_bytes_per_s": recent * 1e9,
            "ratio": recent / baseline if baseline else 1.0, "samples": samples, "fraction": _config.fraction}


def _suggestion(comp: str) -> str:
    text = ("Check for CPU contention, memory pressure (tether.memory.reading()), a change in the values sent, or "
            "operations that now come spaced out (a process idle between them runs each cold, several times "
            "slower on a small VM, as a burst's were not); tether.metrics.snapshot() has the p99 per key")
    if comp not in ("none", "-"):  # "-": no codec applies (record()'s transfers), nothing to compare
        text += f", and compare {comp} with compression='none' (tether.metrics.recommendations())"
    return text + "."


def _notify(callbacks: list[Callable[[Alert], Any]], event: Alert) -> None:
    for callback in callbacks:
        try:
            callback(event)
        except Exception:  # one broken callback must not silence the others or the operation
            log.exception("tether alert callback %r failed", callback)


# Strict JSON has no NaN or infinities: as_dict() and snapshot() write them as these strings (JavaScript's names,
# as proto3's JSON mapping does), which float() reads back; None would lose which one it was. Alert.figures keeps
# the floats: Python callbacks can compare them, and the worker sends them to the BEAM as its atoms.
NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def plain(value: Any, strict: bool = False, depth: int = 0) -> Any:
    """``value`` as JSON's kinds of data: str, int, float, bool, None, lists and str-keyed dicts.

    NumPy numbers become Python ones (``np.float64`` too: a float subclass, which json and the worker's
    conversions for the BEAM would pass on as it is). With ``strict``, a float that is not finite becomes one
    of the strings of :data:`NON_FINITE`, so that ``json.dumps(..., allow_nan=False)`` takes the result.

    Examples
    --------
    >>> plain({"n": (1, 2.5), 3: None, "other": object}) == {"n": [1, 2.5], "3": None, "other": str(object)}
    True
    >>> import numpy as np
    >>> plain([np.float64(0.5), np.int64(3), float("nan"), np.float32("-inf")])
    [0.5, 3, nan, -inf]
    >>> plain([np.float64(0.5), float("nan"), np.float32("-inf")], strict=True)
    [0.5, 'NaN', '-Infinity']
    """
    kind = type(value)
    if kind is float:  # inf - inf and nan - nan are nan
        return NON_FINITE[repr(value)] if strict and value - value != 0.0 else value
    if value is None or kind is str or kind is int or kind is bool:
        return value
    item = getattr(value, "item", None)  # a NumPy scalar (or one-element array): its Python number
    if callable(item) and getattr(value, "size", None) == 1 and depth < 8:
        try:
            return plain(item(), strict, depth + 1)
        except (TypeError, ValueError):
            pass
    return _plain_other(value, strict, depth)


def _plain_other(value: Any, strict: bool, depth: int) -> Any:
    """:func:`plain` of what is not an exact str, int, float, bool or None, nor a NumPy scalar."""
    if isinstance(value, str):
        return str(value)
    if isinstance(value, numbers.Integral):  # bool is an int subclass, but not subclassable: handled before
        return int(value)
    if isinstance(value, numbers.Real):
        return plain(float(value), strict, depth + 1)
    if depth < 8 and isinstance(value, Mapping):
        return {str(k): plain(v, strict, depth + 1) for k, v in value.items()}
    if depth < 8 and isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v, strict, depth + 1) for v in value]
    return str(value)


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


_core.evaluate_batch = watch
