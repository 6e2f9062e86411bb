"""tether.metrics as a production user meets it: callbacks that read the metrics, a reset mid-alert,
settings and inputs the counters cannot honour, advice without evidence, compression rows.

Each test here failed before its fix; the reproducer is in the test.
"""

from __future__ import annotations

import concurrent.futures as cf
import json

import numpy as np
import pytest

import tether
import tether.metrics as m
from conftest import quiet_alerts


@pytest.fixture(autouse=True)
def clean():
    with quiet_alerts() as events:
        yield events


def _calls(n: int, ns: int) -> None:
    """``n`` worker calls of 2000 bytes that took ``ns`` each, folded now (16 make a batch)."""
    for _ in range(n):
        m.record("worker_call", "etf", "none", "shm", 2000, 2000, ns / 1e9)
    m.flush()


NAME = "throughput:worker_call:etf:1KiB-64KiB"


def test_a_callback_may_read_the_metrics_from_another_thread(clean):
    # A callback that hands the alert to a thread (an executor posting the snapshot) and waits for it:
    # the fold used to call it holding the metrics lock, so the other thread's snapshot() waited forever.
    pool = cf.ThreadPoolExecutor(1)
    seen = []

    def post(event):
        seen.append(pool.submit(lambda: len(m.snapshot()["operations"])).result(timeout=5))

    m.on_alert(post)
    try:
        _calls(64, 1000)
        _calls(16, 10_000)  # a tenth of the baseline: fires
    finally:
        m.on_alert(post, remove=True)
        pool.shutdown(wait=True)
    assert seen == [1] and [e.state for e in clean] == ["firing"]


def test_a_reset_keeps_a_firing_throughput_alert_until_throughput_recovers(clean):
    _calls(64, 1000)
    _calls(16, 10_000)
    assert [(e.state, e.name) for e in clean] == [("firing", NAME)]
    m.reset()
    _calls(48, 10_000)  # still slow: the first batch after the reset used to "clear" it
    assert [e.state for e in clean] == ["firing"] and [a.name for a in m.active_alerts()] == [NAME]
    _calls(16, 1000)  # recovered against the baseline it fired against
    assert [e.state for e in clean] == ["firing", "cleared"] and m.active_alerts() == []
    m.reset()  # no alert firing now: every baseline is forgotten, and the slow rate becomes the new one
    _calls(16 * 4, 10_000)
    assert [e.state for e in clean] == ["firing", "cleared"]


def test_alert_settings_that_would_never_fire_or_do_not_compare_are_refused():
    with pytest.raises(tether.ValidationError, match=r"warmup \(9\) must not exceed window \(8\)"):
        m.configure_alerts(warmup=9)
    with pytest.raises(tether.ValidationError, match=r"warmup \(4\) must not exceed window \(3\)"):
        m.configure_alerts(warmup=4, window=3)
    assert m.configure_alerts()["warmup"] == 2  # nothing was changed by the refused calls
    for bad in ("0.5", None.__class__, True):
        with pytest.raises(tether.ValidationError, match="fraction must be a number"):
            m.configure_alerts(fraction=bad)
    assert m.configure_alerts(warmup=3, window=3)["window"] == 3


def test_alert_figures_must_be_a_mapping():
    with pytest.raises(tether.ValidationError, match="figures must be a mapping"):
        m.alert("mine", "m", None, "s")
    assert m.active_alerts() == []


@pytest.mark.parametrize("field, value", [
    ("seconds", float("nan")), ("seconds", float("inf")), ("seconds", 1e12), ("seconds", "0.1"),
    ("nbytes_in", 1 << 64), ("nbytes_in", -1), ("nbytes_out", 1.5), ("nbytes_out", float("inf")),
    ("nbytes_in", "10"), ("nbytes_in", True),
])
def test_record_refuses_what_the_counters_cannot_hold(field, value):
    args = {"nbytes_in": 10, "nbytes_out": 10, "seconds": 0.001, field: value}
    with pytest.raises(tether.ValidationError, match=field):
        m.record("worker_call", "etf", "none", "shm", args["nbytes_in"], args["nbytes_out"], args["seconds"])
    with pytest.raises(tether.ValidationError, match=field):  # a failed call is checked the same way
        m.record("worker_call", "etf", "none", "shm", args["nbytes_in"], args["nbytes_out"], args["seconds"],
                 error="Timeout")
    assert m.snapshot()["operations"] == []


def test_record_takes_numpy_numbers_and_counts_a_negative_time_as_instant():
    m.record("worker_call", "etf", "none", "shm", np.int64(2000), np.uint32(10), np.float64(-0.5))
    m.record("worker_call", "etf", "none", "shm", 2000.0, 10, -1e300)
    (row,) = m.snapshot()["operations"]
    assert (row["count"], row["bytes_in"], row["seconds"], row["size_class"]) == (2, 4000, 0.0, "1KiB-64KiB")


@pytest.mark.parametrize("min_count", [0, -1, "3", 2.0])
def test_no_advice_without_evidence(min_count):
    # min_count=0 used to give four pieces of advice ("0 dumps of 1 MiB or more...") on nothing at all.
    with pytest.raises(tether.ValidationError, match="min_count as a positive int"):
        m.recommendations(min_count)
    assert m.recommendations(1) == []


def test_snapshot_has_one_compression_row_per_codec_and_transport():
    # The notes are kept per bandwidth as well (for the compression-time rule); the snapshot used to show
    # two zstd/memory rows, told apart by nothing it shows. Prometheus summed them already.
    value = bytes(range(256)) * 400
    for bandwidth in (1e6, 1e9, None):
        tether.dumps(value, compression="zstd", bandwidth=bandwidth)
    rows = m.snapshot()["compression"]
    assert [(r["codec"], r["transport"], r["count"]) for r in rows] == [("zstd", "memory", 3)]
    assert rows[0]["raw_bytes"] == 3 * len(value) and rows[0]["ratio"] < 0.01
    json.dumps(m.snapshot(), allow_nan=False)


def test_an_alert_with_numpy_figures_keeps_the_snapshot_json_serialisable(clean):
    # Figures computed with NumPy used to make every snapshot() fail in json.dumps (and tether stats with it).
    m.alert("queue", "the queue is long", {"depth": np.int64(5), "rate": np.float32(0.5), "hosts": {"a"},
                                           "ok": np.bool_(True), "shape": (2, 3)}, "drain it")
    (row,) = json.loads(json.dumps(m.snapshot()))["alerts"]
    assert row["figures"] == {"depth": 5, "rate": 0.5, "hosts": ["a"], "ok": True, "shape": [2, 3]}
    assert clean[0].figures == row["figures"] and type(clean[0].figures["depth"]) is int


def test_snapshot_rows_have_the_documented_keys():
    tether.loads(tether.dumps([1, 2], compression="zstd"))
    s = m.snapshot()
    assert sorted(s) == ["alerts", "compression", "decisions", "enabled", "limits", "memory", "operations",
                         "recommendations", "since"]
    assert {frozenset(r) for r in s["operations"]} == {frozenset(
        ["op", "format", "compression", "transport", "size_class", "count", "bytes_in", "bytes_out", "seconds",
         "p50", "p95", "p99", "ratio", "throughput", "errors", "fallbacks", "histogram"])}
    assert {frozenset(r) for r in s["compression"]} == {frozenset(
        ["codec", "transport", "count", "raw_bytes", "stored_bytes", "ratio", "seconds"])}
    assert m.snapshot.__doc__.count("``histogram``") == 1 and "``stored_bytes``" in m.snapshot.__doc__


def test_a_second_prometheus_collector_is_refused_rather_than_doubling_every_series():
    prometheus_client = pytest.importorskip("prometheus_client")
    tether.loads(tether.dumps({"a": 1}))
    m.alert("mine", "m", {}, "s")
    registry = prometheus_client.CollectorRegistry()
    collector = m.prometheus_collector()
    registry.register(collector)
    # Used to be accepted: each scrape then had two "# TYPE tether_operations_total" lines, which Prometheus rejects.
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        registry.register(m.prometheus_collector())
    text = prometheus_client.generate_latest(registry).decode()
    assert text.count("# TYPE tether_operations_total counter") == 1
    assert {f.name for f in collector.collect()} == {f.name for f in collector.describe()}


@pytest.mark.parametrize("clock", [__import__("time").perf_counter, lambda: "now", lambda: True, lambda: 1 << 64])
def test_a_clock_that_does_not_count_nanoseconds_is_refused(clock):
    # time.perf_counter (float seconds) used to be accepted, and every dumps then raised a bare TypeError.
    with pytest.raises(tether.ValidationError, match="perf_counter_ns"):
        m.set_clock(clock)
    assert tether.loads(tether.dumps(1)) == 1
    m.set_clock(lambda: np.int64(5))  # a NumPy int is an int
    assert tether.loads(tether.dumps(1)) == 1
    m.set_clock(None)
