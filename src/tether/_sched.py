"""The scheduling class of a pool's sleeping member: batch while its CPU has room, normal while it has none.

A pool pins its sleeping members to the CPUs the BEAM's schedulers use
(``tether.worker.pinned_cpus``). Each call wakes such a member, and a task
woken under the normal policy preempts the running one: the BEAM's scheduler,
in the middle of the pool's traffic. Measured on 2 cores with 8 callers, the
BEAM's scheduler was preempted 0.57 times a call and a pool of 2 took 17.2 µs
a call; under ``SCHED_BATCH``, which does not preempt on wake-up, the member
runs when the scheduler yields (it does so while it waits for work), and the
pool took 15.0 µs. But when the BEAM keeps that CPU busy, a batch task waits
for the end of a time slice: with two Erlang busy loops beside the pool, its
calls took 197 µs against 72 µs, and the 99th percentile 16 ms against 2 ms.

So the member watches how long it waits to run (the kernel's ``run_delay``
in ``/proc/thread-self/schedstat``) and goes back to the normal policy when
a wake-up waits :data:`STARVED_US` on average over a window: about 17 µs was
measured with room to run, and 3.8 ms with none. It tries batch again after
1 s, then 2, 4, ... 64 s while it keeps finding no room. Where the kernel
keeps no such figure, or refuses the policy, the member stays normal.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Callable

# A wake-up that waits this long on average (µs) means the CPU has no room for a batch task.
STARVED_US = 1000
# How long each look at the figures covers (s): a few hundred wake-ups of a busy member, three starved ones.
WINDOW_S = 0.01
# The first and the longest wait before batch is tried again after it starved (s).
RETRY_S = 1.0
RETRY_MAX_S = 64.0

_LOG = logging.getLogger("tether.worker")


def read_schedstat(path: str = "/proc/thread-self/schedstat") -> tuple[int, int]:
    """The calling thread's time waiting to run (ns) and the times it was given a CPU, or raise ``OSError``.

    Examples
    --------
    >>> waited, runs = read_schedstat()  # doctest: +SKIP
    """
    with open(path, "rb") as f:
        fields = f.read().split()
    try:
        return int(fields[1]), int(fields[2])
    except (IndexError, ValueError):
        raise OSError(f"{path} does not hold the run delay and run count") from None


def set_batch(batch: bool) -> None:
    """The calling thread's policy: ``SCHED_BATCH`` or ``SCHED_OTHER`` (raises ``OSError``, ``AttributeError``)."""
    os.sched_setscheduler(0, os.SCHED_BATCH if batch else os.SCHED_OTHER, os.sched_param(0))


class BatchPolicy:
    """Keeps the calling thread in ``SCHED_BATCH`` while its wake-ups find a CPU at once (module docstring).

    Call :meth:`tick` after each call: it reads the kernel's figures once
    per :data:`WINDOW_S` and changes the policy when they say to.

    Parameters
    ----------
    clock, read, apply : callable, optional
        The monotonic clock in seconds, :func:`read_schedstat` and :func:`set_batch`; tests replace them.

    Examples
    --------
    A thread that waits 4 ms a wake-up goes back to the normal policy:

    >>> now, stat = [0.0], [(0, 0)]
    >>> p = BatchPolicy(clock=lambda: now[0], read=lambda: stat[0], apply=lambda batch: None)
    >>> p.batch
    True
    >>> now[0], stat[0] = 0.06, (40_000_000, 10)
    >>> p.tick()
    >>> p.batch, p.stats()["starved"]
    (False, 1)
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic,
                 read: Callable[[], tuple[int, int]] = read_schedstat, apply: Callable[[bool], None] = set_batch):
        self._clock, self._read, self._apply = clock, read, apply
        self.batch = False
        self.starved = 0  # windows that found no room under batch
        self._retry = RETRY_S
        self._next = self._retry_at = 0.0
        self._last = (0, 0)
        try:
            self._last = read()
            apply(True)
        except (OSError, AttributeError, ValueError) as exc:  # no schedstat, or no SCHED_BATCH here
            self.unavailable = str(exc) or type(exc).__name__
            return
        self.unavailable = None
        self.batch = True
        self._next = clock() + WINDOW_S

    def tick(self) -> None:
        """Look at the figures if a window has passed since the last look, and change the policy if they say to."""
        if self.unavailable is not None:
            return
        now = self._clock()
        if now < self._next:
            return
        self._next = now + WINDOW_S
        try:
            stat = self._read()
        except OSError:
            return
        waited, runs = stat[0] - self._last[0], stat[1] - self._last[1]
        self._last = stat
        if self.batch and waited > STARVED_US * 1000 * max(runs, 1):
            self._switch(False, now, waited / max(runs, 1) / 1000)
        elif not self.batch and now >= self._retry_at:
            self._switch(True, now, waited / max(runs, 1) / 1000)
        elif self.batch and self._retry > RETRY_S and now >= self._retry_at + WINDOW_S:
            self._retry = RETRY_S  # a retry that found room: the next starvation backs off from the start

    def _switch(self, batch: bool, now: float, waited_us: float) -> None:
        try:
            self._apply(batch)
        except (OSError, AttributeError, ValueError) as exc:
            self.unavailable = str(exc) or type(exc).__name__
            return
        self.batch = batch
        if not batch:
            self.starved += 1
            self._retry_at = now + self._retry
            self._retry = min(2 * self._retry, RETRY_MAX_S)
        _LOG.debug("tether worker: %s (wake-ups waited %.0f µs each to run)",
                   "SCHED_BATCH again" if batch else f"normal policy for {self._retry_at - now:.0f} s", waited_us)

    def stats(self) -> dict[str, Any]:
        """``policy`` (``batch`` or ``normal``), ``starved`` (times it went back to normal) and ``unavailable``."""
        return {"policy": "batch" if self.batch else "normal", "starved": self.starved,
                "unavailable": self.unavailable}
