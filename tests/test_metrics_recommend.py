"""tether.metrics.recommendations(): each rule, driven by the pattern it looks for."""

from __future__ import annotations

import os

import numpy as np
import pytest

import tether
import tether.metrics as m


@pytest.fixture(autouse=True)
def fresh_metrics():
    m.enable()
    m.reset()
    yield
    m.reset()


class Opaque:
    """A type with no serializer: automatic choice pickles it."""

    def __init__(self, n: int = 1):
        self.n = n


def _by_rule(rule):
    return [r for r in m.recommendations() if r.rule == rule]


def test_rows_converted_to_arrow_on_every_read():
    rows = [{"id": i, "v": i * 0.5} for i in range(10)]
    frame = tether.dumps(rows)
    tether.loads(frame, into="arrow")
    tether.loads(frame, into="arrow")
    assert _by_rule("send-table") == []  # below min_count
    tether.loads(frame, into="arrow")
    (rec,) = _by_rule("send-table")
    assert rec.evidence["frames"] == 3 and rec.evidence["into"] == "arrow" and rec.evidence["bytes"] > 0
    assert "format='arrow'" in rec.change and "table" in rec.change.lower()


def test_pickle_used_for_a_type():
    for i in range(3):
        tether.dumps(Opaque(i))
    (rec,) = _by_rule("pickle-type")
    assert rec.evidence["type"].endswith(".Opaque") and rec.evidence["count"] == 3
    assert "register" in rec.change.lower() and "Opaque" in rec.change


def test_compression_whose_ratio_is_above_0_9():
    noise = os.urandom(200_000)
    for _ in range(3):
        tether.dumps(noise, compression="zstd")
    (rec,) = _by_rule("compression-ratio")
    assert rec.evidence["codec"] == "zstd" and rec.evidence["ratio"] > 0.9 and rec.evidence["count"] == 3
    assert "compression='none'" in rec.change


def test_compression_that_costs_more_time_than_the_transfer_it_saves():
    zeros = bytes(1 << 20)
    for _ in range(3):  # at 1 PB/s, saving a megabyte saves a nanosecond: zstd cannot pay for itself
        tether.dumps(zeros, compression="zstd", transport="network", bandwidth=1e15)
    assert _by_rule("compression-ratio") == []
    (rec,) = _by_rule("compression-time")
    assert rec.evidence["compress_seconds"] > rec.evidence["transfer_seconds_saved"]
    assert rec.evidence["bandwidth_bytes_per_s"] == 1e15 and "compression='none'" in rec.change
    assert rec.evidence["bandwidth_source"] == "bandwidth= passed to dumps"


def test_compression_judged_at_the_bandwidth_observed_over_recorded_transfers():
    zeros = bytes(1 << 20)
    for _ in range(3):
        tether.dumps(zeros, compression="zstd", transport="network")  # no bandwidth=: 125 MB/s assumed, pays
    assert _by_rule("compression-time") == []
    for _ in range(2):  # the application says its link moved 1 GiB in a microsecond
        m.record("transfer", "-", "-", "network", 1 << 30, 1 << 30, 1e-6)
    (rec,) = _by_rule("compression-time")
    assert rec.evidence["bandwidth_source"] == "observed over 2 recorded transfers"
    assert rec.evidence["bandwidth_bytes_per_s"] == pytest.approx((1 << 30) / 1e-6, rel=1e-3)
    assert "record('transfer'" in rec.change
    m.record("transfer", "-", "-", "stream", 1 << 20, 1 << 20, 1.0)  # another transport's transfers: not these
    assert [r.evidence["bandwidth_source"] for r in _by_rule("compression-time")] == ["observed over 2 recorded transfers"]
    for _ in range(3):  # bandwidth= is the caller's word for that frame's link, observed or not
        tether.dumps(zeros, compression="zstd", transport="network", bandwidth=1e3)
    assert [r.evidence["bandwidth_source"] for r in _by_rule("compression-time")] == ["observed over 2 recorded transfers"]


def test_compression_judged_at_the_assumed_bandwidth_without_another(monkeypatch):
    from tether import compression

    monkeypatch.setitem(compression.BANDWIDTH, "network", 1e15)
    for _ in range(3):
        tether.dumps(bytes(1 << 20), compression="zstd", transport="network")
    (rec,) = _by_rule("compression-time")
    assert rec.evidence["bandwidth_source"].startswith("assumed for transport='network'")
    assert rec.evidence["bandwidth_bytes_per_s"] == 1e15


def test_compressing_frames_that_stay_on_this_host():
    for _ in range(3):
        tether.dumps(bytes(1 << 20), compression="lz4")  # transport="memory", the default
    (rec,) = _by_rule("compression-time")
    assert rec.evidence["transport"] == "memory" and rec.evidence["ratio"] < 0.1 and rec.evidence["count"] == 3
    assert "stay on this host" in rec.message and "compression='none'" in rec.change
    assert rec.evidence["bandwidth_source"] == "on host"
    m.reset()
    for _ in range(3):
        tether.dumps(bytes(1 << 20), compression="auto")  # auto never compresses on one host: nothing to advise
    assert _by_rule("compression-time") == []
    for _ in range(3):  # bandwidth= says these frames travel, at 1 kB/s: judged at it, and zstd pays
        tether.dumps(bytes(1 << 20), compression="zstd", bandwidth=1e3)
    assert _by_rule("compression-time") == []


def test_compression_that_pays_gives_no_advice():
    zeros = bytes(1 << 20)
    for _ in range(3):  # at 1 kB/s every saved byte is worth far more than zstd's time
        tether.dumps(zeros, compression="zstd", transport="network", bandwidth=1e3)
    assert _by_rule("compression-time") == [] and _by_rule("compression-ratio") == []


def test_fresh_shared_memory_regions_where_a_pool_would_keep_pages_warm():
    from tether.shm import Region

    for _ in range(3):
        with Region.create(1 << 16) as region:
            tether.dump_into([1, 2, 3], region)
    (rec,) = _by_rule("shm-pool")
    assert rec.evidence["fresh_regions"] == 3 and "RegionPool" in rec.change


def test_a_pool_gives_no_shared_memory_advice():
    from tether.shm import RegionPool

    with RegionPool(sweep=False, prefault=False, min_size=1 << 16) as pool:
        for _ in range(4):
            region = pool.acquire(1 << 10)
            tether.dump_into([1, 2, 3], region)
            pool.release(region)
    assert _by_rule("shm-pool") == []


def test_large_payloads_copied_where_dump_into_would_not():
    big = np.zeros(200_000)  # 1.6 MB
    for _ in range(3):
        frame = tether.dumps(big)
    (rec,) = _by_rule("large-copy")
    assert rec.evidence["count"] == 3 and rec.evidence["bytes"] >= 3 * big.nbytes
    assert "dump_into" in rec.change and "write_into" in rec.change
    for _ in range(3):
        tether.loads(frame, copy=True)
    (read,) = _by_rule("large-copy-read")
    assert read.evidence["count"] == 3 and "copy=False" in read.change


def test_small_payloads_give_no_copy_advice():
    for _ in range(5):
        tether.loads(tether.dumps(np.zeros(1000)), copy=True)
    assert _by_rule("large-copy") == [] and _by_rule("large-copy-read") == []


def test_checksums_on_large_in_memory_frames():
    big = np.zeros(200_000)
    for _ in range(3):
        tether.dumps(big)  # checksum="auto" skips them: no advice
    assert _by_rule("large-checksum") == []
    for _ in range(3):
        tether.dumps(big, checksum=True)
    (rec,) = _by_rule("large-checksum")
    assert rec.evidence["count"] == 3 and rec.evidence["format"] == "ndarray"
    assert "checksum='auto'" in rec.change


def test_checksums_on_large_plain_etf_frames():
    rows = list(range(300_000))  # an etf list over 1 MiB goes through the one-step writer
    for _ in range(3):
        tether.dumps(rows, checksum=True)
    (rec,) = _by_rule("large-checksum")
    assert rec.evidence["format"] == "etf"


def test_frames_over_the_shm_threshold_sent_inline():
    for _ in range(3):
        m.record("worker_call", "etf", "none", "shm", 4 << 20, 100, 0.01)
    assert _by_rule("inline-large") == []
    for _ in range(3):
        m.record("worker_call", "etf", "none", "pipe", 4 << 20, 100, 0.01)  # the worker's inline route
    (rec,) = _by_rule("inline-large")
    assert rec.evidence["count"] == 3 and rec.evidence["transports"] == ["pipe"]
    assert "shm_threshold" in rec.change


@pytest.mark.parametrize("threshold, advised", [(1 << 40, True), (1 << 20, False)])
def test_a_real_worker_sending_large_replies_inline(threshold, advised):
    from tether import Atom, worker as tw

    w = tw.Worker({"beam_handlers": __import__("beam_handlers")}, shm_threshold=threshold)
    try:
        for i in range(3):  # a 2 MiB binary back: inline below the threshold, else through shared memory
            w.handle(tw.compact((Atom("call"), i, b"beam_handlers", b"big_binary", [2 << 20], {})))
    finally:
        w.close()
    routes = {row["transport"] for row in m.snapshot()["operations"] if row["op"] == "worker_call"}
    assert routes == ({"pipe"} if advised else {"shm"})
    recs = _by_rule("inline-large")
    assert bool(recs) is advised
    if advised:
        assert recs[0].evidence["count"] == 3 and recs[0].evidence["transports"] == ["pipe"]


def test_recommendations_are_plain_data_with_text():
    for i in range(3):
        tether.dumps(Opaque(i))
    (rec,) = m.recommendations()
    assert m.snapshot()["recommendations"] == [rec.as_dict()]
    assert str(rec).startswith(rec.message) and "count=3" in str(rec)
