"""``tether bench``: tether against its peers, measured in the same run.

Each group is a module here with a ``run(rep, quick)`` that prints its
figures through a `harness.Report`, which also keeps them as data. `GROUPS`
is the order they run in; ``tether bench --only NAME`` picks from it. The
beam group's Erlang half is ``beam/bench/`` in the checkout.

Besides the groups: `trend` compares a run with an earlier one
(``--compare OLD.json``) and `plot` draws a run's figures (``--plot DIR``,
with matplotlib).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import sys
import traceback
from types import MappingProxyType
from typing import Callable, Mapping, Sequence

import numpy as np

import tether

from .._errors import ValidationError
from . import arrow, beam, compression, etf, evolution, metrics, ndarray, shm, sizes, small, stream
from .harness import Report

__all__ = ["GROUPS", "Report", "check_groups", "context", "measure", "run"]

Group = Callable[[Report, bool], None]

GROUPS: Mapping[str, Group] = MappingProxyType({
    "small": small.run,
    "metrics": metrics.run,
    "sizes": sizes.run,
    "etf": etf.run,
    "ndarray": ndarray.run,
    "shm": shm.run,
    "arrow": arrow.run,
    "evolution": evolution.run,
    "compression": compression.run,
    "stream": stream.run,
    "beam": beam.run,
})


def check_groups(only: Sequence[str] | None) -> None:
    """Refuse group names that are not in `GROUPS`, listing the ones there are.

    Parameters
    ----------
    only : sequence of str, optional
        The names asked for.

    Raises
    ------
    ValidationError
        For any name that is not a group.

    Examples
    --------
    >>> check_groups(["small", "etf"])
    >>> check_groups(["nope"])
    Traceback (most recent call last):
    ...
    tether._errors.ValidationError: unknown benchmark group 'nope'; the groups are: small, metrics, sizes, etf, ndarray, shm, arrow, evolution, compression, stream, beam
    """
    unknown = [name for name in only or () if name not in GROUPS]
    if unknown:
        raise ValidationError(
            f"unknown benchmark group {', '.join(map(repr, unknown))}; the groups are: {', '.join(GROUPS)}"
        )


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def context(quick: bool, only: Sequence[str] | None) -> dict:
    """What a run ran on: machine, versions (with `tether.build_info`), date and options, as plain data.

    Parameters
    ----------
    quick : bool
        Whether the run uses the quick sizes.
    only : sequence of str, optional
        The groups asked for.

    Returns
    -------
    dict
        JSON-serialisable; ``tether bench --json`` writes it as ``"context"``.

    Examples
    --------
    >>> c = context(True, ["small"])
    >>> c["quick"], c["groups"], c["build"]["version"] == c["version"]
    (True, ['small'], True)
    """
    import pyarrow

    from .. import memory

    build = tether.build_info()._asdict()
    return {
        "version": tether.__version__,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "memory": memory.reading().as_dict(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pyarrow": pyarrow.__version__,
        "build": build,
        "quick": quick,
        "groups": [name for name in GROUPS if not only or name in only],
        "argv": list(sys.argv[1:]),
    }


def measure(*, quick: bool = False, only: Sequence[str] | None = None) -> Report:
    """Run the benchmark groups, printing their figures, and return them as data.

    Parameters
    ----------
    quick : bool, default False
        Smaller sizes and fewer repeats.
    only : sequence of str, optional
        Run only the groups with these names (see `GROUPS`); all when empty.

    Returns
    -------
    Report
        Every figure, target and note the run printed.

    Raises
    ------
    ValidationError
        When ``only`` names a group that does not exist.

    Examples
    --------
    ``tether bench --only small --quick`` runs ``measure(quick=True, only=["small"])`` (and prints
    its figures); a name that is not a group is refused before anything runs:

    >>> measure(only=["smal"])
    Traceback (most recent call last):
    ...
    tether._errors.ValidationError: unknown benchmark group 'smal'; the groups are: small, metrics, ...
    """
    check_groups(only)
    rep = Report()
    rep.context = context(quick, only)
    c = rep.context
    print(f"tether {c['version']} bench, {c['date'][:10]}, {c['machine']}, {c['cores']} cores, Python {c['python']}, "
          f"numpy {c['numpy']}{', quick' if quick else ''}")
    for name, group in GROUPS.items():
        if only and name not in only:
            continue
        rep.group = name
        try:
            group(rep, quick)
        except Exception as exc:  # one broken group must not lose the others' figures
            traceback.print_exc()
            rep.failed.append((name, f"{type(exc).__name__}: {exc}"))
            rep.note(f"  group {name!r} failed: {type(exc).__name__}: {exc}")
    rep.group = ""
    rep.summary()
    return rep


def _check_writable(path: str) -> None:
    """Refuse a ``--json`` path that cannot be written, before the run rather than after it."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        why = "it is a directory"
    elif not os.path.isdir(folder) or not os.access(folder, os.W_OK | os.X_OK):
        why = f"{folder} is not a writable directory"
    elif os.path.exists(path) and not os.access(path, os.W_OK):
        why = "it is not writable"
    else:
        return
    raise ValidationError(f"--json: cannot write {path}: {why}; pass a file in a writable directory")


def run(*, quick: bool = False, only: Sequence[str] | None = None, json_path: str | None = None,
        compare: str | None = None, plot_dir: str | None = None, fail: bool = True) -> int:
    """Run the benchmark groups, print their figures, and write, compare or plot them as asked.

    Parameters
    ----------
    quick : bool, default False
        Smaller sizes and fewer repeats.
    only : sequence of str, optional
        Run only the groups with these names (see `GROUPS`); all when empty.
    json_path : str, optional
        Write every figure, target and the run's context here as JSON.
    compare : str, optional
        A JSON file from an earlier ``--json`` run: print each figure's change
        against it and flag the moves beyond noise.
    plot_dir : str, optional
        Draw the plots into this directory (needs matplotlib).
    fail : bool, default True
        Return 1 when a target is MISSED; False keeps 0 (``--no-fail``).

    Returns
    -------
    int
        The exit status: 0, or 1 when a group failed (whatever ``fail`` says)
        or a target was missed and ``fail`` is set.

    Raises
    ------
    ValidationError
        For an unknown group, an earlier run that cannot be read, or a ``--json`` file or ``--plot``
        directory that cannot be written (checked before the groups run).

    Examples
    --------
    >>> import contextlib, io
    >>> with contextlib.redirect_stdout(io.StringIO()):
    ...     run(only=["nope"])
    Traceback (most recent call last):
    ...
    tether._errors.ValidationError: unknown benchmark group 'nope'; the groups are: small, metrics, sizes, etf, ndarray, shm, arrow, evolution, compression, stream, beam
    """
    from . import plot, trend

    check_groups(only)
    old = trend.load(compare) if compare else None  # a bad file fails before the long run, not after
    if plot_dir:
        plot.require(plot_dir)
    if json_path:
        _check_writable(json_path)
    rep = measure(quick=quick, only=only)
    data = rep.to_json()
    if json_path:
        try:
            with open(json_path, "w") as f:
                json.dump(data, f, indent=1)
                f.write("\n")
        except OSError as exc:
            raise ValidationError(f"--json: cannot write {json_path}: {exc.strerror or exc}") from None
        print(f"\nwrote {len(rep.figures)} figures and {len(rep.targets)} targets to {json_path}")
    if old is not None:
        quick_differs = bool(old.get("context", {}).get("quick")) != quick
        trend.print_changes(trend.compare(old, data), quick_differs)
    if plot_dir:
        for path in plot.draw(data, plot_dir):
            print(f"plot: {path}")
    if rep.failed:
        print(f"\n{len(rep.failed)} group(s) FAILED: {', '.join(name for name, _ in rep.failed)}")
    if rep.missed:
        print(f"\n{len(rep.missed)} target(s) MISSED{'' if fail else ' (--no-fail: exit status 0)'}")
    return 1 if rep.failed or (rep.missed and fail) else 0
