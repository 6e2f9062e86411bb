"""tether.metrics: counts, bytes, histograms, decisions, thread safety, disable/enable, export."""

from __future__ import annotations

import io
import json
import threading
import warnings

import numpy as np
import pytest

import tether
import tether.metrics as m
from tether.metrics import _core


@pytest.fixture(autouse=True)
def fresh_metrics():
    m.enable()
    m.reset()
    yield
    m.set_clock(None)
    m.enable()
    m.reset()


def _rows(**match):
    return [r for r in m.snapshot()["operations"] if all(r[k] == v for k, v in match.items())]


def test_dumps_and_loads_are_counted_per_key_with_bytes():
    frame = tether.dumps({"a": 1})
    for _ in range(3):
        tether.loads(frame)
    (d,) = _rows(op="dumps")
    (ld,) = _rows(op="loads")
    assert (d["format"], d["compression"], d["transport"], d["size_class"], d["count"]) == (
        "etf", "none", "memory", "<1KiB", 1)
    assert d["bytes_out"] == len(frame) and d["bytes_in"] == tether.inspect(frame).raw_size
    assert ld["count"] == 3 and ld["bytes_in"] == 3 * len(frame)


def test_size_classes_and_compression_key():
    tether.loads(tether.dumps(np.zeros(200_000), compression="zstd"))  # 1.6 MB
    (d,) = _rows(op="dumps")
    assert d["size_class"] == "1MiB-16MiB" and d["compression"] == "zstd"
    assert d["ratio"] < 0.01  # zeros compress to almost nothing: frame bytes / payload bytes
    (ld,) = _rows(op="loads")
    assert ld["compression"] == "zstd" and ld["bytes_out"] == 1_600_000
    (comp,) = m.snapshot()["compression"]
    assert comp["codec"] == "zstd" and comp["raw_bytes"] == 1_600_000 and comp["ratio"] < 0.01


def test_percentiles_come_from_the_histogram_with_a_fixed_clock():
    ticks = iter(range(0, 10**12, 1000))  # every operation takes exactly 1000 ns (two clock reads)
    m.set_clock(lambda: next(ticks))
    for _ in range(50):
        tether.dumps(7)
    (d,) = _rows(op="dumps")
    assert d["count"] == 50 and d["seconds"] == pytest.approx(50e-6)
    for q in ("p50", "p95", "p99"):
        assert 896e-9 <= d[q] <= 1024e-9  # inside the 1000 ns bucket


def test_bucket_index_is_monotonic_and_bounded():
    previous = -1
    for ns in [0, 1, 2, 3, 4, 5, 7, 8, 100, 1000, 10**6, 10**9, 10**12, 1 << 60]:
        b = _core.bucket(ns)
        assert b >= previous and b < _core.NBUCKETS
        low, high = _core.bucket_bounds(b)
        assert ns >= low and (ns < high or b == _core.NBUCKETS - 1)
        previous = b


def test_errors_are_counted_by_type_and_not_as_operations():
    with pytest.raises(tether.DecodeError):
        tether.loads(b"not a frame at all, sorry" * 4)
    with pytest.raises(tether.ValidationError):
        tether.dumps(1, transport="pigeon")
    errors = {(r["op"], k): n for r in m.snapshot()["operations"] for k, n in r["errors"].items()}
    assert errors == {("loads", "DecodeError"): 1, ("dumps", "ValidationError"): 1}
    assert all(r["count"] == 0 for r in m.snapshot()["operations"])


class Odd:
    """A type ETF cannot map: a dict holding one falls back to pickle."""


def test_fallbacks_are_counted():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tether.dumps({"x": Odd()})
    fallbacks = [r["fallbacks"] for r in _rows(op="dumps") if r["fallbacks"]]
    assert fallbacks == [{"etf->pickle": 1}]


def test_record_from_outside_and_its_errors():
    m.record("worker_call", "etf", "none", "shm", 5 << 20, 100, 0.01)
    m.record("attach", "-", "none", "shm", 4096, 0, 0.0, error=OSError("gone"))
    m.record("worker_call", "etf", "none", "pipe", 10, 10, 0.001, fallback="shm->inline")  # the inline route
    rows = {(r["op"], r["transport"]): r for r in m.snapshot()["operations"]}
    assert rows[("worker_call", "shm")]["size_class"] == "1MiB-16MiB"
    assert rows[("attach", "shm")]["errors"] == {"OSError": 1} and rows[("attach", "shm")]["count"] == 0
    assert rows[("worker_call", "pipe")]["fallbacks"] == {"shm->inline": 1}


def test_disable_makes_everything_a_no_op_and_enable_resumes():
    m.disable()
    tether.loads(tether.dumps([1, 2]))
    m.record("worker_call", "etf", "none", "shm", 1, 1, 0.1)
    assert m.snapshot()["operations"] == [] and m.decisions() == [] and not m.enabled()
    m.enable()
    tether.dumps([1, 2])
    assert [r["count"] for r in _rows(op="dumps")] == [1]


def test_reset_forgets():
    tether.dumps(1)
    m.reset()
    assert m.snapshot()["operations"] == [] and m.decisions() == []


def test_concurrent_threads_lose_nothing():
    per_thread, threads = 300, 6
    snapshots = []

    def work():
        for i in range(per_thread):
            tether.loads(tether.dumps(i))

    def watch():
        for _ in range(20):
            snapshots.append(m.snapshot())

    pool = [threading.Thread(target=work) for _ in range(threads)] + [threading.Thread(target=watch)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    counts = {r["op"]: 0 for r in m.snapshot()["operations"]}
    for r in m.snapshot()["operations"]:
        counts[r["op"]] += r["count"]
    assert counts == {"dumps": per_thread * threads, "loads": per_thread * threads}
    assert snapshots  # snapshots taken while threads were counting did not fail


def test_decision_history_keeps_the_last_n_with_times():
    tether.dumps(b"abc")
    tether.dumps([1, 2])
    tether.dumps(np.arange(3.0), compression="lz4")
    history = m.decisions()
    assert [(d.format, d.operation) for d in history] == [("raw", "dumps"), ("etf", "dumps"), ("ndarray", "dumps")]
    assert all(d.seconds > 0 for d in history)
    assert m.decisions(1)[0].format == tether.last_decision().format == "ndarray"
    assert m.decisions(0) == []


def test_decision_history_is_bounded():
    from tether import _select

    for i in range(_select.HISTORY + 10):
        tether.dumps(i)
    assert len(m.decisions()) == _select.HISTORY


def test_dump_into_and_stream_chunks_are_counted():
    from tether.shm import Region

    with Region.create(1 << 16) as region:
        tether.dump_into({"k": [1, 2]}, region)
    sink = io.BytesIO()
    with tether.stream.StreamWriter(sink, chunk_size=1 << 10) as w:
        w.write_array(np.arange(1000.0))
    list(tether.stream.StreamReader(sink.getvalue()))
    ops: dict = {}
    for r in m.snapshot()["operations"]:
        key = (r["op"], r["format"], r["transport"])
        ops[key] = ops.get(key, 0) + r["count"]
    assert ops[("dump_into", "etf", "shm")] == 1
    assert ops[("stream_chunk", "ndarray", "stream")] == 8  # 8000 bytes in 1 KiB chunks
    assert ops[("loads", "ndarray", "stream")] == 8
    assert {d.operation for d in m.decisions()} == {"dump_into", "stream_chunk"}


def test_snapshot_is_json_serialisable():
    tether.loads(tether.dumps({"a": [1.5, None]}))
    m.alert("test-alert", "msg", {"x": 1.0}, "do it")
    try:
        data = json.loads(json.dumps(m.snapshot()))
    finally:
        m.clear("test-alert")
    assert set(data) >= {"enabled", "since", "operations", "compression", "decisions", "alerts", "recommendations"}
    assert "test-alert" in [a["name"] for a in data["alerts"]]


def test_prometheus_scrape_through_prometheus_client():
    pytest.importorskip("prometheus_client")
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    frame = tether.dumps({"a": 1})
    for _ in range(4):
        tether.loads(frame)
    m.record("attach", "-", "none", "shm", 10, 0, 0.0, error="RegionError")
    registry = CollectorRegistry()
    registry.register(m.prometheus_collector())
    families = {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}
    ops = {(s.labels["op"], s.labels["format"]): s.value for s in families["tether_operations"].samples}
    assert ops == {("dumps", "etf"): 1.0, ("loads", "etf"): 4.0}
    hist = [s for s in families["tether_operation_seconds"].samples
            if s.name.endswith("_count") and s.labels["op"] == "loads"]
    assert [s.value for s in hist] == [4.0]
    inf = [s for s in families["tether_operation_seconds"].samples
           if s.name.endswith("_bucket") and s.labels["le"] == "+Inf" and s.labels["op"] == "loads"]
    assert inf[0].value == 4.0
    errors = [(s.labels["type"], s.value) for s in families["tether_errors"].samples]
    assert errors == [("RegionError", 1.0)]


def test_opentelemetry_meter_reads_the_counts():
    pytest.importorskip("opentelemetry.sdk.metrics")
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    m.otel_register(provider.get_meter("tether-test"))
    frame = tether.dumps([1, 2, 3])
    for _ in range(5):
        tether.loads(frame)
    with pytest.raises(tether.DecodeError):
        tether.loads(b"garbage" * 20)
    points = {}
    for rm in reader.get_metrics_data().resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for p in metric.data.data_points:
                    points[(metric.name, p.attributes.get("op"), p.attributes.get("type"))] = p.value
    assert points[("tether.operations", "loads", None)] == 5
    assert points[("tether.operations", "dumps", None)] == 1
    assert points[("tether.bytes_in", "loads", None)] == 5 * len(frame)
    assert points[("tether.errors", "loads", "DecodeError")] == 1
    p50, p99 = (points[(f"tether.operation.duration.{q}", "loads", None)] for q in ("p50", "p99"))
    assert 0 < p50 <= p99
    provider.shutdown()


def test_a_frame_from_encode_is_counted_once_when_written():
    # The large-copy recommendation sends users to encode(x).write_into(buffer), which was never counted,
    # so following the advice made the traffic vanish from the metrics (and the worker's replies with it).
    m.enable()
    m.reset()
    def counted():
        by_op: dict[str, int] = {}
        for row in m.snapshot()["operations"]:
            by_op[row["op"]] = by_op.get(row["op"], 0) + row["count"]
        return sorted((op, n) for op, n in by_op.items() if n)
    enc = tether.encode(np.ones(1 << 16))
    assert counted() == []  # prepared, not written
    enc.write_into(bytearray(enc.nbytes))
    enc.write_into(bytearray(enc.nbytes))
    assert counted() == [("dump_into", 1)]  # into the caller's buffer: no copy for the large-copy rule
    bytes(tether.encode(b"small"))
    assert counted() == [("dump_into", 1), ("dumps", 1)]  # bytes(): a copy
    from tether.shm import Region
    with Region.create(1 << 20) as region:
        tether.dump_into(np.ones(100), region)
    assert counted() == [("dump_into", 2), ("dumps", 1)]
    # Timed over the encoding and the write, not the wait between (which fired throughput alerts).
    m.reset()
    late = tether.encode(b"x" * 1000)
    import time
    time.sleep(0.2)
    bytes(late)
    (row,) = [r for r in m.snapshot()["operations"] if r["count"]]
    assert row["seconds"] < 0.05
    for _ in range(3):  # following the large-copy advice does not bring the advice back
        e = tether.encode(np.ones(1 << 18))
        e.write_into(bytearray(e.nbytes))
    assert "large-copy" not in [r["rule"] for r in m.recommendations()]


def test_a_when_written_callback_that_raises_does_not_fail_the_write(caplog):
    enc = tether.encode(b"abc")
    enc.when_written(lambda *_: 1 / 0)
    buf = bytearray(enc.nbytes)
    assert enc.write_into(buf) == enc.nbytes and tether.loads(buf) == b"abc"
    assert "when_written callback raised" in caplog.text
