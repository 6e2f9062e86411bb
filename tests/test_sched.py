"""A pool's sleeping member serves under SCHED_BATCH while its CPU has room, and goes back to normal when it has none."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap

import pytest

from tether import _sched
from tether import worker as tw
from tether._sched import JUDGE_MAX_S, JUDGE_RUNS, JUDGE_WAITED_S, RETRY_MAX_S, RETRY_S, STARVED_US, WINDOW_S, BatchPolicy

from test_worker import A, ENV, Client

LINUX_SCHED = sys.platform.startswith("linux") and hasattr(os, "SCHED_BATCH") and os.path.exists(
    "/proc/thread-self/schedstat")


class Kernel:
    """A clock, the schedstat figures and the policy applied, driven by a test."""

    def __init__(self) -> None:
        self.now = 100.0
        self.waited_ns, self.runs = 0, 1
        self.applied: list[bool] = []

    def policy(self) -> BatchPolicy:
        return BatchPolicy(clock=lambda: self.now, read=lambda: (self.waited_ns, self.runs), apply=self.applied.append,
                           policy=lambda: "normal")

    def window(self, wait_us_per_run: float, runs: int = 100) -> None:
        """One window passes in which each of ``runs`` wake-ups waited ``wait_us_per_run`` to run."""
        self.now += WINDOW_S
        self.runs += runs
        self.waited_ns += int(wait_us_per_run * 1000 * runs)

    def until(self, t: float, wait_us_per_run: float, policy: BatchPolicy) -> None:
        while self.now < t:
            self.window(wait_us_per_run)
            policy.tick()


def test_batch_from_the_start_and_kept_while_wake_ups_find_room():
    k = Kernel()
    p = k.policy()
    assert k.applied == [True] and p.batch and p.unavailable is None
    k.until(k.now + 1.0, 17, p)  # 17 µs a wake-up: measured with room to run
    assert p.batch and k.applied == [True]
    assert p.stats() == {"policy": "batch", "starved": 0, "unavailable": None}


def starve_and_time_the_retry(k: Kernel, p: BatchPolicy) -> float:
    """Starve ``p`` once, then let it run normal until it tries batch again: how long it waited."""
    k.window(3800)
    p.tick()
    assert not p.batch
    left = k.now
    while not p.batch:
        k.window(5)
        p.tick()
    return k.now - left


def test_starved_goes_normal_and_tries_again_after_1_2_4_8_s():
    k = Kernel()
    p = k.policy()
    waits = [starve_and_time_the_retry(k, p) for _ in range(4)]
    assert waits == [pytest.approx(RETRY_S * 2**n, abs=2 * WINDOW_S) for n in range(4)]
    assert p.starved == 4
    assert k.applied == [True, False, True, False, True, False, True, False, True]


def test_the_wait_before_trying_again_stops_at_its_maximum_and_batch_that_holds_resets_it():
    k = Kernel()
    p = k.policy()
    waits = [starve_and_time_the_retry(k, p) for _ in range(10)]
    assert waits[-3:] == [pytest.approx(RETRY_MAX_S, abs=2 * WINDOW_S)] * 3
    k.until(k.now + 3 * WINDOW_S, 17, p)  # a retry that found room for a few windows only
    assert starve_and_time_the_retry(k, p) == pytest.approx(RETRY_MAX_S, abs=2 * WINDOW_S)
    k.until(k.now + RETRY_MAX_S + WINDOW_S, 17, p)  # batch held as long as the last wait
    assert starve_and_time_the_retry(k, p) == pytest.approx(RETRY_S, abs=2 * WINDOW_S)


def test_a_window_with_no_run_at_all_but_a_long_wait_is_starved():
    k = Kernel()
    p = k.policy()
    k.now += WINDOW_S
    k.waited_ns += int(JUDGE_WAITED_S * 1e9) + 1
    p.tick()
    assert not p.batch


def test_a_member_few_calls_wake_is_not_judged_on_one_slice_end():
    # Below about 40 calls a second, one 4 ms end of slice among 5 wake-ups read as starved (a review).
    k = Kernel()
    p = k.policy()
    for _ in range(4):
        k.now += JUDGE_MAX_S
        k.runs += 5
        k.waited_ns += 4_000_000 + 4 * 17_000
        p.tick()
    assert p.batch and p.starved == 0


def test_a_few_wake_ups_that_met_a_slice_end_are_judged_with_the_ones_after():
    k = Kernel()
    p = k.policy()
    k.window(600, runs=2)  # what a bound BEAM busy for a moment gave: 2 wake-ups in 10 ms, 600 µs each
    p.tick()
    assert p.batch
    k.window(17, runs=JUDGE_RUNS)
    p.tick()
    assert p.batch and p.starved == 0
    k.window(3800, runs=JUDGE_RUNS)
    p.tick()
    assert not p.batch


def test_a_starved_member_is_judged_after_a_few_wake_ups_once_they_waited_long_enough():
    k = Kernel()
    p = k.policy()
    k.window(3800, runs=3)  # 11.4 ms waited: not enough to judge
    p.tick()
    assert p.batch
    k.window(3800, runs=3)  # 22.8 ms
    p.tick()
    assert not p.batch


def test_ticks_inside_a_window_read_nothing():
    reads = []
    k = Kernel()
    p = BatchPolicy(clock=lambda: k.now, read=lambda: reads.append(1) or (0, 1), apply=lambda batch: None,
                    policy=lambda: "normal")
    assert p.batch  # watching: what follows would pass for a policy that never reads, too
    for _ in range(100):
        k.now += WINDOW_S / 200
        p.tick()
    assert len(reads) == 1  # the first, at creation


@pytest.mark.parametrize("broken", ["read", "apply"])
def test_a_kernel_without_the_figures_or_the_policy_leaves_the_member_normal(broken):
    def refuse(*_):
        raise OSError("not here")
    k = Kernel()
    p = BatchPolicy(clock=lambda: k.now, read=refuse if broken == "read" else (lambda: (0, 1)),
                    apply=refuse if broken == "apply" else k.applied.append, policy=lambda: "normal")
    assert not p.batch and p.stats() == {"policy": "normal", "starved": 0, "unavailable": "not here"}
    k.window(3800)
    p.tick()
    assert k.applied == []


def test_a_kernel_that_keeps_no_run_delay_is_not_watched():
    k = Kernel()
    p = BatchPolicy(clock=lambda: k.now, read=lambda: (0, 0), apply=k.applied.append, policy=lambda: "normal")
    assert not p.batch and k.applied == [] and "keeps no run delay" in p.unavailable


def test_a_process_started_under_another_policy_keeps_it():
    k = Kernel()
    p = BatchPolicy(clock=lambda: k.now, read=lambda: (k.waited_ns, k.runs), apply=k.applied.append,
                    policy=lambda: "idle")
    k.window(3800)
    p.tick()
    assert k.applied == [] and "started under the idle policy" in p.unavailable
    assert p.stats()["policy"] == "idle"  # what runs, not "normal" (an Elixir user's trial under chrt --idle)


def test_a_policy_refused_later_stops_the_watch_and_says_so(caplog):
    k = Kernel()
    calls = []

    def apply(batch):
        calls.append(batch)
        if len(calls) > 1:
            raise PermissionError("refused")
    p = BatchPolicy(clock=lambda: k.now, read=lambda: (k.waited_ns, k.runs), apply=apply, policy=lambda: "normal")
    with caplog.at_level(logging.WARNING, logger="tether.worker"):
        k.window(3800)
        p.tick()
    assert p.unavailable == "refused" and p.batch  # it could not leave batch: said so, and no more tries
    assert "could not go back to the normal policy (refused); it stays under SCHED_BATCH" in caplog.text
    k.window(3800)
    p.tick()
    assert calls == [True, False]


def test_read_schedstat_reads_this_threads_figures_and_refuses_a_bad_file(tmp_path):
    if LINUX_SCHED:
        waited, runs = _sched.read_schedstat()
        assert waited >= 0 and runs > 0
    bad = tmp_path / "schedstat"
    bad.write_bytes(b"12 x\n")
    with pytest.raises(OSError, match="run delay and run count"):
        _sched.read_schedstat(str(bad))


# A process pinned to one CPU under a BatchPolicy, waking every 200 µs; it says its policy each window.
CHILD = textwrap.dedent("""
    import os, sys, time
    from tether._sched import BatchPolicy, WINDOW_S
    os.sched_setaffinity(0, {int(sys.argv[1])})
    p = BatchPolicy()
    print("start", os.sched_getscheduler(0) == os.SCHED_BATCH, flush=True)
    sys.stdin.readline()  # the competitor runs now
    end = time.monotonic() + 3.0
    while p.batch and time.monotonic() < end:
        time.sleep(0.0002)
        p.tick()
    print("end", os.sched_getscheduler(0) == os.SCHED_OTHER, p.stats()["starved"], flush=True)
""")


@pytest.mark.skipif(not LINUX_SCHED or os.sched_getscheduler(0) != os.SCHED_OTHER,
                    reason="needs Linux's schedstat, and a test run at the normal policy")
def test_a_real_batch_process_beside_a_busy_loop_on_its_cpu_goes_normal():
    cpu = min(os.sched_getaffinity(0))
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(cpu)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True, env=ENV)
    busy = None
    try:
        assert child.stdout.readline().split() == ["start", "True"]
        busy = subprocess.Popen([sys.executable, "-c", f"import os\nos.sched_setaffinity(0, {{{cpu}}})\nwhile True: pass"])
        child.stdin.write("go\n")
        child.stdin.flush()
        line = child.stdout.readline().split()
        assert line == ["end", "True", "1"], line
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()
        child.kill()
        child.wait()


@pytest.mark.skipif(not LINUX_SCHED or len(os.sched_getaffinity(0)) < 2 or os.sched_getscheduler(0) != os.SCHED_OTHER,
                    reason="needs 2 CPUs, Linux's schedstat, and a test run at the normal policy")
@pytest.mark.parametrize("pin", [None, "spinner:0:0:1", "sleeper:0:0:1"])
def test_only_a_pinned_sleeping_member_serves_under_the_policy_and_reports_it(pin):
    c = Client(*(("--pin", pin) if pin else ()), form="compact")
    try:
        for _ in range(20):
            assert c.ok("add", 1, 2) == 3
        for attempt in range(3):  # the policy may change between the stats reply and the look at the kernel
            c.send((A("stats"), 7 + attempt))
            got = c.recv()[2][1]["worker"]["sched"]
            policy = os.sched_getscheduler(c.proc.pid)
            if got is None or policy == (os.SCHED_BATCH if got["policy"] == "batch" else os.SCHED_OTHER):
                break
        if pin == "sleeper:0:0:1":
            # What it reports is what the kernel applies: batch, or normal once it measured no room.
            assert got["unavailable"] is None and got["policy"] in ("batch", "normal")
            assert policy == (os.SCHED_BATCH if got["policy"] == "batch" else os.SCHED_OTHER)
        else:
            assert got is None and policy == os.SCHED_OTHER
    finally:
        c.close()


def test_pin_says_which_members_serve_under_the_policy(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(os, "sched_setaffinity", lambda pid, cpus: None, raising=False)
    assert tw._pin("sleeper:0:0:1") is True
    assert tw._pin("spinner:0:0:1") is False
    assert tw._pin("sleeper:0:0:2") is False  # every CPU polls: not pinned
    assert tw._pin("sleeper:x:0:1") is False


def test_the_worker_command_line_takes_no_sched_batch():
    assert tw._arguments(["--module", "m"]).sched_batch is True
    assert tw._arguments(["--module", "m", "--no-sched-batch"]).sched_batch is False


@pytest.mark.skipif(not LINUX_SCHED or len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs and Linux's schedstat")
def test_a_pinned_sleeper_told_no_sched_batch_serves_at_the_normal_policy():
    c = Client("--pin", "sleeper:0:0:1", "--no-sched-batch", form="compact")
    try:
        assert c.ok("add", 1, 2) == 3
        c.send((A("stats"), 7))
        assert c.recv()[2][1]["worker"]["sched"] is None
        assert os.sched_getscheduler(c.proc.pid) == os.sched_getscheduler(0)
    finally:
        c.close()
