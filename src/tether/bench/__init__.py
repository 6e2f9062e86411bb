"""``tether bench``: tether against its peers, measured in the same run.

Each group is a module here with a ``run(rep, quick)`` that prints its
figures through a `harness.Report`, which also keeps them as data. `GROUPS`
is the order they run in; ``tether bench --only NAME`` picks from it. The
beam group's Erlang half is ``beam/bench/`` in the checkout.
"""

from __future__ import annotations

import os
import platform
import time
from types import MappingProxyType
from typing import Callable, Mapping, Sequence

import numpy as np

import tether

from . import arrow, beam, compression, etf, ndarray, shm, small, stream
from .harness import Report

__all__ = ["GROUPS", "Report", "measure", "run"]

Group = Callable[[Report, bool], None]

GROUPS: Mapping[str, Group] = MappingProxyType({
    "small": small.run,
    "etf": etf.run,
    "ndarray": ndarray.run,
    "shm": shm.run,
    "arrow": arrow.run,
    "compression": compression.run,
    "stream": stream.run,
    "beam": beam.run,
})


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
    """
    rep = Report()
    rep.context = {
        "version": tether.__version__, "date": time.strftime("%Y-%m-%d"), "machine": platform.machine(),
        "cores": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__, "quick": quick,
    }
    c = rep.context
    print(f"tether {c['version']} bench, {c['date']}, {c['machine']}, {c['cores']} cores, Python {c['python']}, "
          f"numpy {c['numpy']}{', quick' if quick else ''}")
    for name, group in GROUPS.items():
        if only and name not in only:
            continue
        rep.group = name
        group(rep, quick)
    rep.group = ""
    rep.summary()
    return rep


def run(*, quick: bool = False, only: Sequence[str] | None = None) -> int:
    """Run the benchmark groups and print their figures.

    Parameters
    ----------
    quick : bool, default False
        Smaller sizes and fewer repeats.
    only : sequence of str, optional
        Run only the groups with these names (see `GROUPS`); all when empty.

    Returns
    -------
    int
        The exit status: 0 unless something crashed.
    """
    measure(quick=quick, only=only)
    return 0
