"""``tether bench``: the group table, the report's data, and the cheap groups' figures (the command line: test_bench_cli.py)."""

from __future__ import annotations

import os
import pkgutil
import shutil
import subprocess
import sys

import pytest

import tether.bench as bench
import tether.metrics as m
from tether.bench import evolution, metrics as bench_metrics
from tether.bench.harness import Report


@pytest.fixture
def fresh_metrics():
    m.enable()
    m.reset()
    yield
    m.enable()
    m.reset()


def test_group_table_lists_every_group_in_order():
    assert list(bench.GROUPS) == [
        "small", "metrics", "sizes", "etf", "ndarray", "shm", "arrow", "evolution", "compression", "stream", "beam",
    ]
    # Every module of the package other than the harness, shared inputs, trend and plots is a group, and in the table.
    modules = {m.name for m in pkgutil.iter_modules(bench.__path__)} - {"harness", "data", "trend", "plot"}
    assert modules == set(bench.GROUPS)
    for name, group in bench.GROUPS.items():
        assert group is getattr(bench, name).run


def test_report_prints_and_keeps_figures_and_targets(capsys):
    rep = Report()
    rep.group = "g"
    rep.row("a time", 22.6e-6, "extra")
    rep.row("not a time", None, "1.0 MiB", value=1 << 20, unit="B")
    rep.record("kept only", 0.5, "ratio")
    rep.target("ratio", 0.069, 0.65)
    rep.target("time", 53.9e-6, 100e-6, unit="s")
    rep.target("missed", 1.7, 1.5)
    rep.summary()
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"  {'a time':<44}     22.6 µs  extra"
    assert out[1] == f"  {'not a time':<44} {' ' * 11}  1.0 MiB"
    assert out[2] == "  -> ratio: 0.069×, target ≤ 0.65×: MET"
    assert out[3] == "  -> time: 53.9 µs, target ≤ 100 µs: MET"
    assert out[4] == "  -> missed: 1.700×, target ≤ 1.50×: MISSED"
    assert out[6:] == [
        "== targets",
        "  MET    ratio: 0.069× (target ≤ 0.65×)",
        "  MET    time: 53.9 µs (target ≤ 100 µs)",
        "  MISSED missed: 1.700× (target ≤ 1.50×)",
    ]
    assert [(f.group, f.name, f.value, f.unit) for f in rep.figures] == [
        ("g", "a time", 22.6e-6, "s"), ("g", "not a time", 1 << 20, "B"), ("g", "kept only", 0.5, "ratio"),
    ]
    assert [(t.what, t.met, t.unit, t.limit) for t in rep.targets] == [
        ("ratio", True, "×", 0.65), ("time", True, "s", 100e-6), ("missed", False, "×", 1.5),
    ]


def test_timings_carry_their_spread_into_the_report():
    from tether.bench.harness import Timing, median

    t = median(lambda: None, 5)
    assert isinstance(t, Timing) and t.samples == 5 and t.spread >= 0
    assert Timing.of([1.0, 3.0, 2.0]) == 2.0 and Timing.of([1.0, 3.0, 2.0]).spread == 0.5
    rep = Report(group="g")
    rep.row("timed", Timing.of([1.0, 3.0, 2.0]))
    rep.record("count", 7, "B", meta={"plot": "x"})
    data = rep.to_json()
    assert data["figures"][0]["value"] == 2.0 and type(data["figures"][0]["value"]) is float
    assert data["figures"][0]["spread"] == 0.5
    assert data["figures"][1]["spread"] is None and data["figures"][1]["meta"] == {"plot": "x"}


def test_metrics_and_evolution_groups_record_their_figures(capsys):
    rep = Report()
    for name in ("metrics", "evolution"):
        rep.group = name
        bench.GROUPS[name](rep, True)
    figures = {(f.group, f.name): f for f in rep.figures}
    for key in ("small", "large"):
        on, off = figures[("metrics", f"{key} round trip, metrics on")], figures[("metrics", f"{key} round trip, metrics off")]
        assert on.value > 0 and off.value > 0 and on.unit == "s"
        (target,) = [t for t in rep.targets if t.what == f"metrics overhead, {key} round trip (on / off)"]
        # The target is the ratio of the two medians the rows show (the bench passes it on as measured).
        assert target.value == pytest.approx(on.value / off.value) and target.limit == 1.03
    per_row = figures[("evolution", "migration on read, per row")]
    assert per_row.unit == "s" and per_row.value is not None
    assert figures[("evolution", "frame with 1 MiB of user metadata")].unit == "B"
    for name in ("loads, 1 MiB of user metadata", "inspect, 1 MiB of user metadata", "dumps, 1 MiB of user metadata"):
        assert figures[("evolution", name)].value > 0


def test_overhead_hook_reports_both_sizes(monkeypatch, fresh_metrics):
    # The arithmetic, on timings that cannot be noise: a round trip "costs" 320 ns with metrics on and
    # 220 off, 20 of which are the timer's own. (One real round trip on a loaded 2-core box can take 10x.)
    seen = []

    def timed(value, dumps, loads):
        seen.append(m.enabled())
        return 320 if m.enabled() else 220

    monkeypatch.setattr(bench_metrics, "_round_trip", timed)
    monkeypatch.setattr(bench_metrics, "_timer_floor", lambda: 20.0)
    m.disable()  # left as it was found: here, off
    result = bench_metrics.overhead(n=400, repeat=3, large_bytes=1 << 16)
    assert not m.enabled()
    m.enable()
    for size in ("small", "large"):
        r = result[size]
        assert (r["on_ns"], r["off_ns"]) == (300.0, 200.0)
        assert r["ratio"] == pytest.approx(1.5) and r["overhead"] == pytest.approx(0.5)
    # Warm-up (100 per mode), then blocks of 8 round trips of one mode, off and on in turn, the last 4 of each
    # timed: n * repeat timed per mode for the small value, n / 40 * repeat (at least 100 per repeat) for the
    # large one.
    small, large = seen[:200 + 4 * 1200], seen[200 + 4 * 1200:]
    assert len(large) == 200 + 4 * 300
    for part, n in ((small, 1200), (large, 300)):
        assert part[:200] == [False] * 100 + [True] * 100 and part[200:] == ([False] * 8 + [True] * 8) * (n // 4)
    assert m.enabled()


def test_overhead_counts_and_timer_correction(monkeypatch, fresh_metrics):
    assert 10 < bench_metrics._timer_floor(n=101) < 100_000  # two clock reads and a call, in ns
    monkeypatch.setattr(bench_metrics, "_round_trip", lambda value, dumps, loads: 320 if m.enabled() else 220)
    monkeypatch.setattr(bench_metrics, "_timer_floor", lambda: 20.0)
    r = bench_metrics.overhead(n=10, repeat=1, large_bytes=1 << 16, large_n=3)
    assert r["large"]["ratio"] == pytest.approx(1.5)  # 300 / 200: the timer's 20 ns taken from both
    # A timer as slow as the round trips: nothing left to correct with, so the timings are compared as read.
    monkeypatch.setattr(bench_metrics, "_timer_floor", lambda: 150.0)
    r = bench_metrics.overhead(n=10, repeat=1, large_bytes=1 << 16, large_n=3)
    assert (r["small"]["on_ns"], r["small"]["off_ns"]) == (320, 220)


def test_overhead_is_not_charged_what_a_round_trip_leaves_to_the_next(monkeypatch, fresh_metrics):
    # A round trip with metrics on slows each of the next four by 100 ns (its leftovers). With metrics always
    # on a round trip costs 300 + 4 * 100 against 200 off, and that is what the timed round trips must read:
    # none of it charged to off (switching every round trip, or pairs, would read 500 / 400 or worse).
    history: list[bool] = []

    def timed(value, dumps, loads):
        history.append(m.enabled())
        return (300 if history[-1] else 200) + 100 * sum(history[-5:-1])

    monkeypatch.setattr(bench_metrics, "_round_trip", timed)
    monkeypatch.setattr(bench_metrics, "_timer_floor", lambda: 0.0)
    r = bench_metrics.overhead(n=40, repeat=1, large_bytes=1 << 16, large_n=8)
    m.enable()
    for size in ("small", "large"):
        assert (r[size]["on_ns"], r[size]["off_ns"]) == (700, 200)


def test_overhead_hook_times_real_round_trips(fresh_metrics):
    m.disable()
    result = bench_metrics.overhead(n=20, repeat=1, large_bytes=1 << 16)
    assert not m.enabled()  # left as found
    m.enable()
    for size in ("small", "large"):
        r = result[size]
        # Structure only: a single pair timed on a loaded box has no bound worth asserting.
        assert r["on_ns"] > 0 and r["off_ns"] > 0 and r["overhead"] == pytest.approx(r["ratio"] - 1)


def test_time_migration_measures_both_reads():
    out = evolution.time_migration(rows=2000, repeat=1)
    assert out["rows"] == 2000 and out["migrated_s"] > 0 and out["current_s"] > 0


def test_beam_group_reads_every_figure_the_escript_prints(capsys, monkeypatch):
    from tether.bench import beam

    out = "\n".join(f"{k} {v}" for k, v in {
        "echo_us": 20, "framed_us": 100, "call_us": 150, "call_nospin_us": 225, "erlport_us": 300, "call_encode_us": 7,
        "call_python_us": 130, "call_decode_us": 1, "call_hops_us": 12, "py_read_us": 40, "py_handler_us": 1,
        "py_write_us": 15, "call_wakeup_us": 74, "shm_us": 30000, "shm_write_us": 14000, "inline_us": 600000,
        "limit_pwrite_us": 15000, "limit_pread_us": 12000, "limit_pywrite_us": 1000, "limit_us": 28000,
        "pool2_call_us": "17.25", "pool1_call_us": "27.60", "worker_call_us": "24.15",
    }.items()) + "\nerlport skipped: not a figure\nnot_a_figure 1.2.3\ninfo schedulers_online 1\ninfo otp 25\n"
    fig = beam._figures(out)
    assert not any(k.startswith(("info", "schedulers", "otp")) for k in fig)  # facts about the VM are not timings
    assert fig["call_us"] == 150e-6 and "erlport" not in fig and "not_a_figure" not in fig
    assert fig["pool2_call_us"] == pytest.approx(17.25e-6)
    rep = Report(group="beam")
    beam._small(rep, fig)
    beam._bulk(rep, fig, 16)
    targets = {t.what: t for t in rep.targets}
    assert targets["small call vs erlport's python:call"].value == pytest.approx(0.5)
    assert targets["shm tensor round trip vs its limit"].value == pytest.approx(30 / 28)
    assert targets["shm tensor round trip vs inline (inverse)"].met
    beam._pools(rep, fig, None)
    # Against one Tether.Worker (no pool), not the slower pool of 1, which is only shown.
    assert [t.value for t in rep.targets if t.what.startswith("pool of 2")] == [pytest.approx(17.25 / 24.15)]
    (pool1,) = [f for f in rep.figures if "pool of 1" in f.name]
    assert "pool of 2: 1.60× its throughput" in pool1.extra
    # With a run on bound schedulers, the bar is held against that one; the run's own figures are still shown.
    both = Report(group="beam")
    bound = {"pool2_call_us": 14.4e-6, "pool1_call_us": 24.0e-6, "worker_call_us": 24.3e-6}
    beam._pools(both, fig, bound)
    assert [(t.what, t.value) for t in both.targets] == [
        ("pool of 2 throughput vs one worker, bound (inverse)", pytest.approx(14.4 / 24.3))]
    assert {f.name for f in both.figures} >= {"8 callers, 5-key echo, pool of 2, per call",
                                             "8 callers, 5-key echo, pool of 2, per call, bound"}
    names = [f.name.strip() for f in rep.figures]
    assert "Python: the handler" in names and "stage: write" in names and "limit: Python pooled write" in names
    (nospin,) = [f for f in rep.figures if "spin_us: 0" in f.name]
    assert nospin.value == 225e-6 and "1.50× the call with the default spin" in nospin.extra
    monkeypatch.setenv("ERL_FLAGS", "+S 1")
    beam._vm(rep, out)
    assert rep.context["erl"] == {"schedulers_online": "1", "otp": "25", "erl_flags": "+S 1"}
    assert "erl: OTP 25, 1 of ? schedulers online, ? CPUs, schedulers unbound; ERL_FLAGS: +S 1" in capsys.readouterr().out
    assert beam._erl_flags("/tmp/x") == "-pa /tmp/x +S 1"  # the caller's flags follow the scratch code path
    del fig["erlport_us"]
    rep = Report(group="beam")
    beam._small(rep, fig)
    assert rep.targets == [] and "erlport could not be built" in capsys.readouterr().out
    # The pool's sleeping member's scheduling class at the end of each run, where the escript said.
    beam._sleepers(rep, {"unbound": beam._info("info pool2_sleeper batch:0").get("pool2_sleeper", ""),
                         "bound": "normal:2"})
    assert "sleeping member at the end" in (said := capsys.readouterr().out)
    assert "unbound batch:0; bound normal:2" in said
    beam._sleepers(rep, {"unbound": "", "bound": ""})
    assert capsys.readouterr().out == ""


@pytest.mark.skipif(shutil.which("escript") is None, reason="needs erl (make test installs it)")
def test_the_escripts_throughput_run_on_bound_schedulers_prints_the_pools_figures(tmp_path):
    from tether.bench import beam

    src = os.path.join(beam.BEAM_DIR, "src")
    subprocess.run(["erlc", "-o", str(tmp_path), *(os.path.join(src, f) for f in os.listdir(src) if f.endswith(".erl"))],
                   check=True)
    env = {**os.environ, "ERL_LIBS": str(tmp_path), "ERL_FLAGS": f"-pa {tmp_path} {beam.BIND}"}
    done = subprocess.run(["escript", beam.SCRIPT, sys.executable, "160", "1", "throughput"], capture_output=True,
                          text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    fig = beam._figures(done.stdout)
    assert set(fig) == {"pool2_call_us", "pool1_call_us", "worker_call_us"}  # nothing else is run
    assert all(0 < v < 0.01 for v in fig.values())
    assert "info bound 1" in done.stdout.splitlines()
