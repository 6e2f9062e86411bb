"""tether.metrics as an SRE trial met it: false throughput alerts, memory pressure nobody read, a snapshot that
contradicted itself, compression advice lost in an average, a suggestion naming "-".

Each test failed before its fix. Alerts are driven by recorded figures (``record()``), never by timing.
"""

from __future__ import annotations

import numpy as np
import pytest

import tether
import tether.memory as memory
import tether.metrics as m
from conftest import quiet_alerts


@pytest.fixture(autouse=True)
def events():
    with quiet_alerts() as seen:
        yield seen


@pytest.fixture
def memory_level():
    """Memory in use, in per mille of a 1000-byte limit: set ``level["now"]``; starts healthy (10 %)."""
    level = {"now": 100}
    memory.set_source(lambda: {"limit": 1000, "current": level["now"]})
    try:
        yield level
    finally:
        memory.set_source(None)


def _record(n: int, nbytes: int, seconds: float, op: str = "worker_call", fmt: str = "etf", comp: str = "none",
            transport: str = "pipe") -> None:
    """``n`` operations of ``nbytes`` that took ``seconds`` each, folded now (16 make a batch)."""
    for _ in range(n):
        m.record(op, fmt, comp, transport, nbytes, nbytes, seconds)
    m.flush()


@pytest.mark.parametrize("nbytes", [100, 1000, 0])
def test_small_calls_that_come_spaced_out_do_not_fire(events, nbytes):
    # t8_spaced.exs: 64 back-to-back calls, then 48 calls 60 ms apart, each of them run cold: the worker's
    # add(1, 2) read "runs at 5-18% of its baseline", forwarded to the BEAM as a warning, and stayed firing.
    _record(64, nbytes, 9e-6)
    _record(48, nbytes, 190e-6)
    assert events == [] and m.active_alerts() == []


def test_a_throughput_drop_on_large_transfers_still_fires_and_clears(events):
    _record(64, 4 << 20, 1e-3)
    _record(16, 4 << 20, 1e-2)
    (fired,) = events
    assert fired.name == "throughput:worker_call:etf:1MiB-16MiB" and fired.figures["ratio"] == pytest.approx(0.1)
    _record(16, 4 << 20, 1e-3)
    assert [e.state for e in events] == ["firing", "cleared"]


def test_operations_timed_at_nothing_never_become_a_baseline(events):
    # m5_alert_zero.py: three batches of record(..., seconds=0) made a baseline of 4 TB/s, against which every
    # measured batch after them "ran at 0.01%".
    _record(48, 4096, 0.0, op="transfer", fmt="-", comp="-", transport="network")
    _record(48, 4096, 1e-5, op="transfer", fmt="-", comp="-", transport="network")
    assert events == []
    _record(16, 4096, 1e-4, op="transfer", fmt="-", comp="-", transport="network")  # a tenth of the measured rate
    (fired,) = events
    assert fired.figures["baseline_bytes_per_s"] == pytest.approx(4096 / 1e-5)


def test_the_suggestion_compares_no_codec_when_none_applies(events):
    # m5_alert_zero.py: "... and compare - with compression='none'".
    _record(48, 4096, 1e-5, op="transfer", fmt="-", comp="-", transport="network")
    _record(16, 4096, 1e-4, op="transfer", fmt="-", comp="-", transport="network")
    (fired,) = events
    assert "compare" not in fired.suggestion and "compression='none'" not in fired.suggestion
    assert fired.suggestion.startswith("Check for CPU contention")


def test_the_metrics_fold_enters_and_leaves_memory_pressure(events, memory_level):
    # m8_pressure.py: at 95 % with only small dumps and loads (none of which read memory), nothing fired, and
    # nothing cleared once memory was back; a worker's BEAM heard of it only on Worker.stats.
    memory_level["now"] = 950
    _record(4, 100, 1e-5)
    assert [(e.name, e.state) for e in events] == [("memory_pressure", "firing")]
    memory_level["now"] = 100
    _record(4, 100, 1e-5)
    assert [(e.name, e.state) for e in events] == [("memory_pressure", "firing"), ("memory_pressure", "cleared")]


def test_a_failing_memory_reading_does_not_fail_the_fold(memory_level):
    memory_level["now"] = "not a number"  # the source's answer is refused (ValidationError) at every reading
    _record(4, 100, 1e-5)
    assert m.snapshot()["operations"][0]["count"] == 4


def test_a_prometheus_scrape_shows_memory_pressure_as_it_stands(memory_level):
    # m12_prom_pressure.py: memory at 99 %, ordinary traffic and three scrapes: no tether_alert_active series.
    prometheus_client = pytest.importorskip("prometheus_client")
    registry = prometheus_client.CollectorRegistry()
    registry.register(m.prometheus_collector())

    def active() -> list[str]:
        text = prometheus_client.generate_latest(registry).decode()
        return [line for line in text.splitlines() if line.startswith("tether_alert_active{")]

    assert active() == []
    memory_level["now"] = 990
    assert active() == ['tether_alert_active{name="memory_pressure"} 1.0']
    memory_level["now"] = 100
    assert active() == []


def test_a_snapshot_lists_the_memory_alert_as_its_memory_figures_stand(memory_level):
    # m11_snapshot_stale.py: under_pressure True with alerts [] as pressure began, the reverse once it ended.
    memory_level["now"] = 950
    s = m.snapshot()
    assert s["memory"]["under_pressure"] and [a["name"] for a in s["alerts"]] == ["memory_pressure"]
    memory_level["now"] = 100
    s = m.snapshot()
    assert not s["memory"]["under_pressure"] and s["alerts"] == []


def test_data_a_codec_cannot_shrink_is_advised_among_data_it_does():
    # m2_recs.py: three zstd dumps of random bytes and three of zeros averaged to a ratio of 0.5, so only
    # compression-time was advised, never compression-ratio for the random data.
    noise = np.random.default_rng(0).bytes(300_000)
    for _ in range(3):
        tether.dumps(noise, compression="zstd")
        tether.dumps(bytes(300_000), compression="zstd")
    rules = {r.rule: r for r in m.recommendations()}
    ratio = rules["compression-ratio"]
    assert (ratio.evidence["count"], ratio.evidence["of_count"], ratio.evidence["raw_bytes"]) == (3, 6, 900_000)
    assert ratio.evidence["ratio"] > 0.9 and "3 of 6 payloads" in ratio.message
    assert rules["compression-time"].evidence["count"] == 6  # the codec's time is still judged over them all


def test_data_that_shrinks_alone_gets_no_ratio_advice():
    for _ in range(3):
        tether.dumps(bytes(300_000), compression="zstd", transport="network", bandwidth=1e3)
    assert [r.rule for r in m.recommendations()] == []
