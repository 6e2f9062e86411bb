"""Alerts: the throughput monitor against a patched clock, and the alert/clear/on_alert API."""

from __future__ import annotations

import logging
import threading

import pytest

import tether
import tether.metrics as m
from conftest import quiet_alerts


class StepClock:
    """Each read by the test's thread advances ``step`` ns: its operations (two reads) take exactly ``step`` ns.

    Reads from any other thread see the time stand still: a thread an earlier test left running that reads
    the metrics clock (or times operations of its own) would otherwise move it between an operation's two
    reads, and that operation would take a multiple of ``step`` (a healthy batch slow, or a slow one slower).
    """

    def __init__(self, step: int):
        self.now, self.step, self.owner = 0, step, threading.get_ident()

    def __call__(self) -> int:
        if threading.get_ident() == self.owner:
            self.now += self.step
        return self.now


@pytest.fixture(autouse=True)
def monitor():
    clock = StepClock(1000)
    with quiet_alerts(clock) as events:
        # quiet_alerts clears the alerts earlier tests left firing before it resets (a reset keeps a firing
        # alert's baseline, and a real-clock one outvoted this clock's batches): check that it did.
        assert not m.active_alerts()
        assert not m.snapshot()["operations"]
        yield clock, events


def _ops(n):
    for i in range(n):
        tether.dumps(bytes(2048))  # 2 KiB (under 1 KiB is not judged): two clock reads per dumps
    m.flush()  # fold the operations in now rather than at the next 1024th


def test_a_slowdown_fires_once_with_figures_and_clears(monitor, caplog):
    clock, events = monitor
    m.configure_alerts(min_samples=8, warmup=2, fraction=0.5)
    _ops(24)  # three healthy batches: the baseline
    assert events == []
    clock.step = 5000  # five times slower
    with caplog.at_level(logging.WARNING, logger="tether.alerts"):
        _ops(8)
    (fired,) = events
    assert fired.state == "firing" and fired.name == "throughput:dumps:raw:1KiB-64KiB"
    assert fired.figures["ratio"] == pytest.approx(0.2)
    assert fired.figures["samples"] == 8 and fired.figures["fraction"] == 0.5
    assert fired.figures["baseline_bytes_per_s"] == pytest.approx(5 * fired.figures["recent_bytes_per_s"])
    assert "compression" in fired.figures and fired.suggestion
    (record,) = [r for r in caplog.records if r.name == "tether.alerts"]
    assert record.levelno == logging.WARNING and "20%" in record.getMessage() and "ratio=0.2" in record.getMessage()
    assert [a.name for a in m.active_alerts()] == [fired.name]
    _ops(16)  # still slow: no second alert
    assert len(events) == 1
    clock.step = 1000
    _ops(8)
    assert [e.state for e in events] == ["firing", "cleared"] and m.active_alerts() == []
    # The cleared event carries the figures as throughput recovered, not those it fired with again.
    cleared = events[1]
    assert cleared.figures["ratio"] == pytest.approx(1.0) and cleared.figures["fired"] == fired.figures
    assert "back to 100% of its baseline" in cleared.message


def test_a_mild_slowdown_stays_quiet(monitor):
    clock, events = monitor
    m.configure_alerts(min_samples=8, warmup=2, fraction=0.5)
    _ops(24)
    clock.step = 1500  # 67 % of the baseline, above the 50 % fraction
    _ops(32)
    assert events == []


def test_no_alert_before_the_baseline_is_warm(monitor):
    clock, events = monitor
    m.configure_alerts(min_samples=8, warmup=3)
    _ops(16)  # two batches: warmup needs three
    clock.step = 10_000
    _ops(8)
    assert events == []


def test_alert_api_fires_once_until_cleared(monitor, caplog):
    _, events = monitor
    with caplog.at_level(logging.WARNING, logger="tether.alerts"):
        assert m.alert("memory:pressure", "memory is short", {"available": 10}, "free some") is True
        assert m.alert("memory:pressure", "memory is short", {"available": 5}, "free some") is False
    assert [e.figures for e in events] == [{"available": 10}]
    assert len([r for r in caplog.records if r.name == "tether.alerts"]) == 1
    assert m.clear("memory:pressure") is True and m.clear("memory:pressure") is False
    assert [e.state for e in events] == ["firing", "cleared"]
    assert m.alert("memory:pressure", "again", {}, "") is True  # fires again after clearing


def test_a_failing_callback_does_not_stop_the_others(monitor, caplog):
    _, events = monitor

    def broken(_event):
        raise RuntimeError("callback bug")

    m.on_alert(broken)
    try:
        with caplog.at_level(logging.ERROR, logger="tether.alerts"):
            m.alert("x", "m", {}, "s")
    finally:
        m.on_alert(broken, remove=True)
    assert len(events) == 1 and any("callback" in r.getMessage() for r in caplog.records)


def test_bad_settings_are_validation_errors():
    with pytest.raises(tether.ValidationError):
        m.configure_alerts(fraction=1.5)
    with pytest.raises(tether.ValidationError):
        m.configure_alerts(min_samples=0)
    with pytest.raises(tether.ValidationError):
        m.on_alert("not callable")
    with pytest.raises(tether.ValidationError):
        m.alert("", "m", {}, "s")


@pytest.mark.parametrize("seed", range(6))
def test_the_all_healthy_shortcut_matches_batch_by_batch(monitor, monkeypatch, seed):
    import random

    from tether.metrics import _alerts

    _, events = monitor
    rng = random.Random(seed)
    # Runs of steady throughput with drops to a fifth and recoveries: both paths fire and clear alike.
    medians = [rng.uniform(0.9, 1.1) * (0.2 if (i // 12) % 3 == 2 else 1.0) for i in range(120)]
    chunks = [medians[i:i + rng.randint(1, 20)] for i in range(0, len(medians), 20)]
    chunks = [c for c in chunks if c]
    where = ("dumps", "etf", 0)

    def run():
        m.reset()
        for event in m.active_alerts():
            m.clear(event.name)
        events.clear()
        for chunk in chunks:
            _alerts.evaluate(where, "none", chunk, 16)
        return [(e.state, e.figures.get("ratio")) for e in events], [list(v) for v in _alerts._baselines[where]]

    shortcut = run()
    monkeypatch.setattr(_alerts, "_all_healthy", lambda *args: False)
    assert run() == shortcut
    assert any(state == "firing" for state, _ in shortcut[0])


def test_a_callback_registered_twice_is_called_once(monitor):
    seen = []

    class Sink:
        def take(self, alert):
            seen.append(alert.state)

    sink = Sink()
    for cb in (seen.append, sink.take):  # a bound method is a new object each time it is read
        m.on_alert(cb)
    m.on_alert(seen.append)
    m.on_alert(sink.take)
    try:
        m.alert("twice", "m", {}, "s")
    finally:
        m.on_alert(seen.append, remove=True)
        m.on_alert(sink.take, remove=True)
    m.clear("twice")
    states = sorted(x if isinstance(x, str) else x.state + " (function)" for x in seen)
    assert states == ["firing", "firing (function)"]  # once through each callback, not twice
