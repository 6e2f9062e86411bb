"""Timing helpers and the report every benchmark group writes to.

Every figure is a median of repeated runs, and targets are ratios against a
peer timed moments before, because the machine is shared and noisy. The
report prints each figure as it comes and also keeps it as data, so that a
run can be written out or compared without parsing its text.
"""

from __future__ import annotations

import gc
import math
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable


class Timing(float):
    """A median time in seconds that also carries the spread of the samples it came from.

    It is a float, so groups compute with it as before; arithmetic on it gives
    plain floats. `Report.row` keeps the spread beside the figure, which is
    what ``tether bench --compare`` judges noise by.

    Attributes
    ----------
    spread : float
        Half the range of the samples relative to the median (0.05 means the
        samples lay within about ±5 %); 0.0 for a single sample.
    samples : int
        How many samples the median is of.

    Examples
    --------
    >>> t = Timing.of([1.0, 1.2, 1.1])
    >>> float(t), round(t.spread, 3), t.samples
    (1.1, 0.091, 3)
    """

    spread: float
    samples: int

    @classmethod
    def of(cls, times: list[float]) -> "Timing":
        """The median of ``times``, with their spread.

        Examples
        --------
        >>> t = Timing.of([3.0, 1.0, 2.0])
        >>> float(t), t.spread
        (2.0, 0.5)
        """
        med = statistics.median(times)
        out = cls(med)
        out.spread = (max(times) - min(times)) / 2 / med if med > 0 else 0.0
        out.samples = len(times)
        return out


def spread_of(value: Any) -> float | None:
    """The recorded spread of a figure's value: a `Timing`'s, else None (a count or a peer's own timing).

    Examples
    --------
    >>> spread_of(Timing.of([1.0, 3.0])), spread_of(4096)
    (0.5, None)
    """
    return value.spread if isinstance(value, Timing) else None


def median(fn: Callable[[], Any], repeat: int, setup: Callable[[], Any] | None = None) -> Timing:
    """Median wall time of ``repeat`` single calls.

    Parameters
    ----------
    fn : callable
        The work to time.
    repeat : int
        How many times to run it.
    setup : callable, optional
        Run before each call, outside the timing (to drop the previous result).

    Returns
    -------
    Timing
        The median, in seconds, with the samples' spread.

    Examples
    --------
    >>> t = median(lambda: sorted(range(1000)), repeat=5)
    >>> t.samples, float(t) > 0
    (5, True)
    """
    times = []
    for _ in range(repeat):
        if setup is not None:
            setup()
        # A collection that starts inside the timed call would be charged to it.
        gc.collect()
        gc.disable()
        try:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        finally:
            gc.enable()
    return Timing.of(times)


def median_pair(
    a: Callable[[], Any], b: Callable[[], Any], repeat: int, setup: Callable[[], Any] | None = None
) -> tuple[Timing, Timing]:
    """Medians of ``a`` and ``b`` timed alternately, so drift on a shared machine hits both alike.

    Parameters
    ----------
    a, b : callable
        The two pieces of work to compare.
    repeat : int
        How many times to run each.
    setup : callable, optional
        Run before every call, outside the timing.

    Returns
    -------
    tuple of Timing
        The medians of ``a`` and ``b``, in seconds, with their spreads.

    Examples
    --------
    >>> a, b = median_pair(lambda: bytes(1 << 10), lambda: bytes(1 << 20), repeat=5)
    >>> a.samples, b.samples
    (5, 5)
    """
    ta, tb = [], []
    for _ in range(repeat):
        ta.append(median(a, 1, setup))
        tb.append(median(b, 1, setup))
    return Timing.of(ta), Timing.of(tb)


def per_call(fn: Callable[[], Any], number: int, repeat: int = 7) -> Timing:
    """Median over ``repeat`` runs of the mean time of ``number`` back-to-back calls (as timeit does).

    Parameters
    ----------
    fn : callable
        The call to time; too quick to time one at a time.
    number : int
        Calls per run.
    repeat : int, default 7
        Runs.

    Returns
    -------
    Timing
        Seconds per call, with the runs' spread.

    Examples
    --------
    >>> t = per_call(lambda: len("abc"), number=1000, repeat=3)
    >>> t.samples, float(t) < 1e-3
    (3, True)
    """
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - t0) / number)
    return Timing.of(times)


def fmt_time(seconds: float) -> str:
    """A time in a fixed-width column, in the unit that suits it.

    Parameters
    ----------
    seconds : float
        The time.

    Returns
    -------
    str
        Eleven characters, e.g. ``"    22.6 µs"``.

    Examples
    --------
    >>> fmt_time(22.6e-6), fmt_time(0.5), fmt_time(2.0)
    ('    22.6 µs', '  500.00 ms', '   2.000 s ')
    """
    if seconds < 1e-3:
        return f"{seconds * 1e6:8.1f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:8.2f} ms"
    return f"{seconds:8.3f} s "


# The version of the shape `Report.to_json` writes; `--compare` refuses other shapes.
JSON_SCHEMA = 1


def _plain(value: Any) -> Any:
    """A plain float (or int, or None) for the report, so the data carries no harness type.

    A value that is not finite (a ratio to a time too short to read) becomes None: JSON has no infinity or
    NaN (Python's json would write ``Infinity``, which other readers and ``--compare`` refuse).

    Examples
    --------
    >>> _plain(Timing.of([2.0])), _plain(3), _plain(float("inf"))
    (2.0, 3, None)
    """
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return float(value) if isinstance(value, Timing) else value


@dataclass(frozen=True)
class Figure:
    """One measured figure of a group.

    Attributes
    ----------
    group : str
        The group that measured it.
    name : str
        What was measured, as printed.
    value : float or None
        The measurement in ``unit``; None for a row that only has text.
    unit : str
        ``"s"`` for times, ``"B"`` for byte counts, ``"ratio"`` for a plain
        fraction, ``""`` when there is no value.
    extra : str
        The text printed after the value (throughput, ratio to a peer).
    spread : float or None
        Half the samples' range relative to the median, for timed figures;
        None where there were no repeated samples (counts, sizes, a peer's own timing).
    meta : dict
        What the plots need to place the figure, e.g. ``{"plot": "throughput",
        "series": "etf", "bytes": 65536, "peer": False}``; empty for most figures.
    """

    group: str
    name: str
    value: float | None
    unit: str
    extra: str = ""
    spread: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Target:
    """A target checked against a figure.

    Attributes
    ----------
    group : str
        The group that checked it.
    what : str
        The target's name.
    value : float
        The measured ratio (``unit="×"``) or time in seconds (``unit="s"``).
    limit : float
        The bound ``value`` must not exceed, in the same unit.
    unit : str
        ``"×"`` or ``"s"``.
    met : bool
        ``value <= limit``.
    text : str
        The value and bound as printed, e.g. ``"0.069× (target ≤ 0.65×)"``.
    """

    group: str
    what: str
    value: float
    limit: float
    unit: str
    met: bool
    text: str


@dataclass
class Report:
    """What a run printed, kept as data: the run's context, figures, targets and notes.

    Attributes
    ----------
    context : dict
        Version, date, machine and options of the run.
    group : str
        The group being run; figures and targets are filed under it.
    sections : dict
        Each group's section title.
    figures, targets : list
        Everything measured and checked, in order.
    notes : list of (group, text)
        Printed lines that are not figures (skips, explanations).
    failed : list of (group, error)
        Groups that raised; their figures up to the error are kept.
    """

    context: dict[str, Any] = field(default_factory=dict)
    group: str = ""
    sections: dict[str, str] = field(default_factory=dict)
    figures: list[Figure] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)

    def section(self, title: str) -> None:
        """Start the current group's section: print its title.

        Parameters
        ----------
        title : str
            What the group measures, with its sizes.

        Examples
        --------
        >>> rep = Report(group="small")
        >>> rep.section("small values: per-call dumps and loads")
        <BLANKLINE>
        == small values: per-call dumps and loads
        >>> rep.sections
        {'small': 'small values: per-call dumps and loads'}
        """
        self.sections[self.group] = title
        print(f"\n== {title}")

    def row(self, name: str, seconds: float | None, extra: str = "", *, value: float | None = None,
            unit: str = "", meta: dict[str, Any] | None = None) -> None:
        """Print and keep one figure.

        Parameters
        ----------
        name : str
            What was measured.
        seconds : float or None
            A time; None for a row that is not a time (nothing is printed in the time column).
        extra : str, optional
            Text after the time.
        value, unit : optional
            For a row that is not a time, its value and unit, kept but not printed.
        meta : dict, optional
            Where the figure goes in a plot (see `Figure`).

        Examples
        --------
        >>> rep = Report(group="small")
        >>> rep.row("dumps, int", 2.26e-05, "scalar")  # doctest: +NORMALIZE_WHITESPACE
          dumps, int                                       22.6 µs  scalar
        >>> rep.figures[0].value, rep.figures[0].unit
        (2.26e-05, 's')
        """
        print(f"  {name:<44} {fmt_time(seconds) if seconds is not None else ' ' * 11}  {extra}")
        if seconds is not None:
            value, unit = seconds, "s"
        self.figures.append(Figure(self.group, name, _plain(value), unit, extra, spread_of(value), dict(meta or {})))

    def record(self, name: str, value: float, unit: str, extra: str = "", *,
               meta: dict[str, Any] | None = None) -> None:
        """Keep a figure without printing it, for figures printed in a line or table of their own.

        Parameters
        ----------
        name : str
            What was measured.
        value : float
            The measurement.
        unit : str
            Its unit (see `Figure`).
        extra : str, optional
            Context for the value.
        meta : dict, optional
            Where the figure goes in a plot (see `Figure`).

        Examples
        --------
        >>> rep = Report(group="sizes")
        >>> rep.record("frame size, 1 MiB", 1048640, "B")
        >>> rep.figures[0].group, rep.figures[0].value, rep.figures[0].unit
        ('sizes', 1048640, 'B')
        """
        self.figures.append(Figure(self.group, name, _plain(value), unit, extra, spread_of(value), dict(meta or {})))

    def note(self, text: str) -> None:
        """Print a line that is not a figure, exactly as given, and keep it.

        Parameters
        ----------
        text : str
            The whole line, indentation included.

        Examples
        --------
        >>> rep = Report(group="beam")
        >>> rep.note("  (skipped: erl not found)")
          (skipped: erl not found)
        >>> rep.notes
        [('beam', '  (skipped: erl not found)')]
        """
        self.notes.append((self.group, text))
        print(text)

    def target(self, what: str, value: float, limit: float, unit: str = "×") -> None:
        """Check, print and keep a target: ``value`` must not exceed ``limit``.

        Parameters
        ----------
        what : str
            The target's name.
        value, limit : float
            A ratio (``unit="×"``) or a time in seconds (``unit="s"``).
        unit : str, default "×"
            ``"×"`` or ``"s"``.

        Examples
        --------
        >>> rep = Report(group="beam")
        >>> rep.target("small call vs erlport", 0.42, 0.5)
          -> small call vs erlport: 0.420×, target ≤ 0.50×: MET
        >>> rep.missed
        []
        >>> rep.target("pool of 2 vs one worker (inverse)", 0.62521, 1 / 1.6)
          -> pool of 2 vs one worker (inverse): 0.6252×, target ≤ 0.625×: MISSED
        """
        ok = value <= limit
        # Enough digits that a miss never reads as equal to its bound (0.6252× against 0.625×).
        digits = 3 if f"{value:.3f}" != f"{limit:.3f}" else 4
        shown = f"{value:.{digits}f}{unit}" if unit == "×" else f"{value * 1e6:.1f} µs"
        bound = f"{limit:.{2 if round(limit, 2) == limit else 3}f}{unit}" if unit == "×" else f"{limit * 1e6:.0f} µs"
        text = f"{shown} (target ≤ {bound})"
        self.targets.append(Target(self.group, what, float(value), float(limit), unit, ok, text))
        print(f"  -> {what}: {shown}, target ≤ {bound}: {'MET' if ok else 'MISSED'}")

    @property
    def missed(self) -> list[Target]:
        """The targets not met, in the order they were checked."""
        return [t for t in self.targets if not t.met]

    def to_json(self) -> dict[str, Any]:
        """The whole report as plain data, for ``tether bench --json``.

        Returns
        -------
        dict
            ``{"schema": 1, "context": ..., "sections": ..., "figures": [...],
            "targets": [...], "notes": [...], "failed": [...]}``; every figure with its group,
            name, value, unit, spread and plot placement, every target with its
            measured ratio or time, bound and verdict.

        Examples
        --------
        >>> rep = Report(group="g")
        >>> rep.record("n", 3, "B")
        >>> rep.to_json()["figures"][0]["value"]
        3
        """
        return {
            "schema": JSON_SCHEMA,
            "context": dict(self.context),
            "sections": dict(self.sections),
            "figures": [asdict(f) for f in self.figures],
            "targets": [asdict(t) for t in self.targets],
            "notes": [{"group": g, "text": text} for g, text in self.notes],
            "failed": [{"group": g, "error": error} for g, error in self.failed],
        }

    def summary(self) -> None:
        """Print every target checked so far, met or missed.

        Examples
        --------
        >>> rep = Report(group="ndarray")
        >>> rep.targets.append(Target("ndarray", "dumps vs memcpy", 1.2, 1.5, "×", True, "1.200× (target ≤ 1.50×)"))
        >>> rep.summary()
        <BLANKLINE>
        == targets
          MET    dumps vs memcpy: 1.200× (target ≤ 1.50×)
        """
        if self.targets:
            print("\n== targets")
            for t in self.targets:
                print(f"  {'MET   ' if t.met else 'MISSED'} {t.what}: {t.text}")
