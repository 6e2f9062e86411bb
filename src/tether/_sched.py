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
in ``/proc/thread-self/schedstat``), at the first call it answers
:data:`WINDOW_S` or more after its last look, and goes back to the normal
policy when a wake-up waited :data:`STARVED_US` on average over the last
:data:`JUDGE_RUNS` wake-ups or more, or :data:`JUDGE_WAITED_S` waited (what
:data:`JUDGE_MAX_S` gathers short of both is let go: a member few calls wake
does not starve a busy one): 12-17 µs was
measured with room to run, and 3.8 ms with none (a time slice on this 250 Hz
kernel; about 1 ms on a 1000 Hz one). It tries batch again after 1 s, then 2,
4, ... 64 s while it keeps finding no room; batch that holds as long as the
last wait starts the next wait at 1 s again. It stays as it is where the
kernel keeps no such figure, refuses the policy, or where the process was
started under another policy than the normal one (``chrt``, systemd's
``CPUSchedulingPolicy``).

Only the thread that serves calls is watched. Threads and processes it starts
inherit the policy it has at that moment (Linux's rule), and keep it.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Callable

# A wake-up that waits this long on average (µs) means the CPU has no room for a batch task: the geometric
# middle of 17 µs (room) and 3.8 ms (none), below a 1000 Hz kernel's slice.
STARVED_US = 250
# The shortest time between two looks at the figures (s): a few hundred wake-ups of a busy member.
WINDOW_S = 0.01
# What a judgement takes: this many wake-ups, or this much time waited (s); what this long (s) gathers short of
# both is let go unjudged.
# One wake-up that met the end of a slice among a few is not a CPU without room (a bound BEAM busy for a
# moment at the start of a burst of calls made a 10 ms window of 2 wake-ups read 500 µs each, and the
# member left batch for nothing), while 20 ms waited is five starved wake-ups: a starved member is found
# in about 20 ms, as its callers wait.
JUDGE_RUNS = 20
JUDGE_WAITED_S = 0.02
JUDGE_MAX_S = 0.5
# The first and the longest wait before batch is tried again after it starved (s).
RETRY_S = 1.0
RETRY_MAX_S = 64.0

_LOG = logging.getLogger("tether.worker")


def read_schedstat(path: str = "/proc/thread-self/schedstat") -> tuple[int, int]:
    """The calling thread's time waiting to run (ns) and the times it was given a CPU, or raise ``OSError``.

    Examples
    --------
    >>> import sys
    >>> waited, runs = read_schedstat() if sys.platform == "linux" else (0, 1)
    >>> runs > 0
    True
    """
    with open(path, "rb") as f:
        fields = f.read().split()
    try:
        return int(fields[1]), int(fields[2])
    except (IndexError, ValueError):
        raise OSError(f"{path} does not hold the run delay and run count") from None


def set_batch(batch: bool) -> None:
    """Put the calling thread under ``SCHED_BATCH``, or back under ``SCHED_OTHER``.

    Raises ``OSError`` where the kernel refuses, ``AttributeError`` where Python has no such call.

    Examples
    --------
    >>> set_batch(False)  # doctest: +SKIP
    """
    os.sched_setscheduler(0, os.SCHED_BATCH if batch else os.SCHED_OTHER, os.sched_param(0))


_POLICY_NAMES = {"SCHED_OTHER": "normal", "SCHED_BATCH": "batch", "SCHED_IDLE": "idle", "SCHED_FIFO": "fifo",
                 "SCHED_RR": "rr"}


def current_policy() -> str:
    """The calling thread's scheduling policy by name: ``normal``, ``batch``, ``idle``, ``fifo``, ``rr`` (or a number).

    Examples
    --------
    >>> current_policy() in ("normal", "batch", "idle", "fifo", "rr")  # doctest: +SKIP
    True
    """
    policy = os.sched_getscheduler(0)
    return next((name for attr, name in _POLICY_NAMES.items() if getattr(os, attr, None) == policy), str(policy))


class BatchPolicy:
    """Keeps the calling thread in ``SCHED_BATCH`` while its wake-ups find a CPU at once (module docstring).

    Call :meth:`tick` after each call: it reads the kernel's figures once
    per :data:`WINDOW_S` at most and changes the policy when they say to.

    Parameters
    ----------
    clock, read, apply, policy : callable, optional
        The monotonic clock in seconds, :func:`read_schedstat`, :func:`set_batch` and
        :func:`current_policy`; tests replace them.

    Examples
    --------
    A thread that waits 4 ms a wake-up goes back to the normal policy:

    >>> now, stat = [0.0], [(0, 5)]
    >>> p = BatchPolicy(clock=lambda: now[0], read=lambda: stat[0], apply=lambda batch: None, policy=lambda: "normal")
    >>> p.batch
    True
    >>> now[0], stat[0] = 0.06, (100_000_000, 30)
    >>> p.tick()
    >>> p.stats()
    {'policy': 'normal', 'starved': 1, 'unavailable': None}
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic,
                 read: Callable[[], tuple[int, int]] = read_schedstat, apply: Callable[[bool], None] = set_batch,
                 policy: Callable[[], str] = current_policy):
        self._clock, self._read, self._apply = clock, read, apply
        self.batch = False
        self.starved = 0  # times it went back to normal
        self.unavailable: str | None = None  # why it does not watch (never did, or stopped)
        self._kept: str | None = None  # the policy it was started under, when not the normal one
        self._wait = RETRY_S  # how long the next starvation keeps it normal
        self._waited = 0.0  # how long the last one did
        self._next = self._retry_at = self._since = self._judged = 0.0
        try:
            started = policy()
            if started != "normal":
                self._kept = started
                self.unavailable = f"started under the {started} policy (chrt, systemd): left as it is"
                return
            self._last = read()
            if self._last[1] <= 0:  # a kernel without CONFIG_SCHED_INFO reads zeros: starvation would not show
                self.unavailable = "the kernel keeps no run delay (schedstat reads 0 runs)"
                return
            apply(True)
        except (OSError, AttributeError, ValueError) as exc:  # no schedstat, or no SCHED_BATCH here
            self.unavailable = str(exc) or type(exc).__name__
            return
        self.batch = True
        self._since = self._judged = now = clock()
        self._next = now + WINDOW_S

    def tick(self) -> None:
        """Look at the figures if :data:`WINDOW_S` has passed since the last look; change the policy if they say to.

        Examples
        --------
        >>> p = BatchPolicy(read=lambda: (0, 1), apply=lambda batch: None, policy=lambda: "normal")
        >>> p.tick(); p.batch  # less than a window since it started: nothing read
        True
        """
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
        waited, runs = stat[0] - self._last[0], max(stat[1] - self._last[1], 1)
        enough = runs >= JUDGE_RUNS or waited >= JUDGE_WAITED_S * 1e9
        if not enough and now - self._judged < JUDGE_MAX_S:
            return  # too little to judge yet: the next look judges it with what comes after
        # Past JUDGE_MAX_S with too little: a member that few calls wake is not starved by one slice's end.
        self._last, self._judged = stat, now
        if self.batch and enough and waited > STARVED_US * 1000 * runs:
            self._switch(False, now, waited / runs / 1000)
        elif not self.batch and now >= self._retry_at:
            self._switch(True, now, waited / runs / 1000)
        elif self.batch and self._wait > RETRY_S and now - self._since >= self._waited:
            self._wait = RETRY_S  # batch held as long as the last wait: the next starvation starts over

    def _switch(self, batch: bool, now: float, waited_us: float) -> None:
        try:
            self._apply(batch)
        except (OSError, AttributeError, ValueError) as exc:
            self.unavailable = str(exc) or type(exc).__name__
            _LOG.warning("tether worker: could not go %s (%s); it stays %s and stops watching",
                         "back to SCHED_BATCH" if batch else "back to the normal policy", self.unavailable,
                         "normal" if batch else "under SCHED_BATCH")
            return
        self.batch, self._since = batch, now
        if not batch:
            self.starved += 1
            self._waited = self._wait
            self._retry_at = now + self._wait
            self._wait = min(2 * self._wait, RETRY_MAX_S)
        _LOG.debug("tether worker: %s (wake-ups waited %.0f µs each to run)",
                   "SCHED_BATCH again" if batch else f"normal policy for {self._retry_at - now:.0f} s", waited_us)

    def stats(self) -> dict[str, Any]:
        """``policy`` (``batch`` or ``normal``), ``starved`` (times it went back to normal) and ``unavailable``
        (why it does not watch, else None).

        Examples
        --------
        >>> BatchPolicy(read=lambda: (0, 1), apply=lambda batch: None, policy=lambda: "idle").stats()["policy"]
        'idle'
        """
        return {"policy": self._kept or ("batch" if self.batch else "normal"), "starved": self.starved,
                "unavailable": self.unavailable}
