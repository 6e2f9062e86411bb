"""tether.memory: the reading (cgroup v2, v1, /proc/meminfo), pressure and each adaptation, budgets, and stats.

Pressure is simulated through ``tether.memory.set_source``; every adaptation
is checked by what it did (regions closed, chunks, shuffle, advice), by the
decision it logged, and by the output still round-tripping.
"""

from __future__ import annotations

import io
import json
import logging
import os

import numpy as np
import pytest

import tether
import tether.memory as memory
import tether.metrics as metrics
from tether import ValidationError
from tether.shm import Region, RegionPool

MIB = 1 << 20


@pytest.fixture(autouse=True)
def clean_state():
    old_threshold = memory.threshold()
    yield
    memory.set_source(None)
    memory.set_threshold(**old_threshold)
    memory.set_budget(regions=0, pool_bytes=0, mapped_bytes=0)
    memory.under_pressure()  # leave pressure, clearing its alert
    memory.check()
    for name in ("memory_pressure", "memory_regions", "memory_pool_bytes", "memory_mapped_bytes"):
        metrics.clear(name)


def pressure(on: bool = True, limit: int = 1 << 30) -> None:
    memory.set_source(lambda: {"limit": limit, "current": int(limit * (0.97 if on else 0.2))})


def walk(n: int) -> np.ndarray:
    """Floats that byte-shuffle helps compress (tether shuffles them without pressure)."""
    return np.cumsum(np.random.default_rng(9).integers(-3, 4, n)).astype("f8")


# ------------------------------------------------------------------ the reading


def test_reading_from_cgroup_v2_uses_the_working_set_and_psi(fake_system):
    fake_system("memory.max", "536870912\n")
    fake_system("memory.current", "500000000\n")
    fake_system("memory.stat", "anon 1\ninactive_file 100000000\nactive_file 5\n")
    fake_system("memory.pressure", "some avg10=12.50 avg60=3.00 avg300=1.00 total=9\n"
                                   "full avg10=4.00 avg60=1.00 avg300=0.50 total=3\n")
    r = memory.reading()
    assert (r.source, r.limit, r.current) == ("cgroup v2", 512 * MIB, 400_000_000)
    assert (r.psi_some_avg10, r.psi_full_avg10) == (12.5, 4.0)
    assert r.available == 512 * MIB - 400_000_000
    assert memory.under_pressure()  # 74 % used, but PSI 12.5 % ≥ 10 %
    memory.set_threshold(psi_some_avg10=50.0)
    assert not memory.under_pressure()


def test_reading_from_cgroup_v1_then_meminfo(fake_system):
    fake_system("memory/memory.limit_in_bytes", "9223372036854771712\n")  # v1's "no limit"
    fake_system("memory/memory.usage_in_bytes", "123\n")
    r = memory.reading()
    assert (r.source, r.limit, r.current, r.psi_some_avg10) == ("meminfo", 8 * 1024 * MIB, 2 * 1024 * MIB, 1.5)
    fake_system("memory/memory.limit_in_bytes", "1073741824\n")
    r = memory.reading()
    assert (r.source, r.limit, r.current) == ("cgroup v1", 1 << 30, 123)


def test_the_real_reading_is_sane():
    r = memory.reading()
    assert r.limit > 0 and 0 <= r.current and r.source in ("cgroup v2", "cgroup v1", "meminfo")
    json.dumps(r.as_dict())


def test_source_and_threshold_are_validated():
    with pytest.raises(ValidationError, match="callable"):
        memory.set_source(42)
    with pytest.raises(ValidationError, match="'limit' and 'current'"):
        memory.set_source(lambda: "nonsense")
    assert memory.reading().source != "custom"  # the bad source was not installed
    with pytest.raises(ValidationError, match="used_fraction"):
        memory.set_threshold(used_fraction=1.5)


# ------------------------------------------------------------------ pressure, decisions, alerts


def test_entering_and_leaving_pressure_logs_decisions_and_fires_then_clears_the_alert(caplog):
    seen = []
    metrics.on_alert(seen.append)
    pressure(False)
    assert not memory.under_pressure()
    with caplog.at_level(logging.INFO, logger="tether.memory"):
        pressure(True)
        assert memory.under_pressure() and memory.under_pressure()
    assert any("memory pressure:" in r.getMessage() and "97%" in r.getMessage() for r in caplog.records)
    active = {a.name: a for a in metrics.active_alerts()}
    assert "memory_pressure" in active and active["memory_pressure"].figures["used_fraction"] == 0.97
    assert [a.state for a in seen if a.name == "memory_pressure"] == ["firing"]  # once, not per call
    pressure(False)
    assert not memory.under_pressure()
    assert "memory_pressure" not in {a.name for a in metrics.active_alerts()}
    assert [a.state for a in seen if a.name == "memory_pressure"] == ["firing", "cleared"]
    assert memory.decisions(1)[0]["decision"].startswith("memory pressure over")
    cleared = [a for a in seen if a.name == "memory_pressure"][-1]
    assert cleared.figures["used_fraction"] < 0.97 and cleared.figures["fired"]["used_fraction"] == 0.97
    assert cleared.message.startswith("memory pressure over")


# ------------------------------------------------------------------ the region pool


def test_pool_trims_warm_regions_under_pressure_and_keeps_nothing_warm():
    pool = RegionPool(prefault=True, sweep=False)
    try:
        region = pool.acquire(MIB)
        path = region.path
        pool.release(region)
        assert pool.warm_bytes > 0 and os.path.exists(path)
        pressure(True)
        assert memory.under_pressure()  # entering pressure trims every pool
        assert pool.warm_bytes == 0 and not os.path.exists(path)
        assert pool.stats.trimmed == 1 and pool.stats.trimmed_bytes > 0
        # Under pressure: no prefault, and a region given back is closed, not kept.
        region = pool.acquire(MIB)
        assert pool.stats.prefaulted_bytes == region.capacity  # only the first region was prefaulted
        arr = np.arange(1000.0)
        tether.dump_into(arr, region)
        np.testing.assert_array_equal(tether.loads(region), arr)  # output still round-trips
        path = region.path
        pool.release(region)
        assert pool.warm_bytes == 0 and not os.path.exists(path)
        kinds = [d["decision"] for d in memory.decisions() if d["kind"] == "pool"]
        assert any("did not prefault" in k for k in kinds) and any("instead of keeping it warm" in k for k in kinds)
        assert any(k.startswith("trimmed ") and "B of warm regions" in k for k in kinds)
        pressure(False)
        pool.release(pool.acquire(MIB))
        assert pool.warm_bytes > 0  # pressure over: warm again
    finally:
        pool.close()


# ------------------------------------------------------------------ temporary buffers of encoders


def temporary(op: str) -> tuple[int, int]:
    """(how many temporaries ``op`` counted, the last one's bytes)."""
    entry = memory.stats()["temporary"].get(op, {"count": 0, "last_bytes": 0})
    return entry["count"], entry["last_bytes"]


class Holder:
    """Pickled: a bytes value in band, an array out of band."""

    def __init__(self):
        self.blob, self.arr = b"b" * MIB, np.arange(MIB // 8, dtype=np.float64)


def test_encoders_count_the_buffers_they_allocate_and_not_views_of_the_value():
    big = {"ids": list(range(200_000)), "name": "x" * (1 << 20)}  # etf: encoded whole, then copied in
    n, _ = temporary("dumps")
    frame = tether.dumps(big)
    assert temporary("dumps") == (n + 1, tether.inspect(frame).raw_size)

    frame = tether.dumps(Holder(), format="pickle")  # the array goes out of band: a view, not a temporary
    count, last = temporary("dumps")
    assert count == n + 2 and MIB < last < MIB + (1 << 12)

    strided = memoryview(np.zeros((1024, 2048), np.uint8)[:, ::2])  # raw: row-major, so copied
    enc = tether.encode(strided)
    assert temporary("encode")[1] == 1024 * 1024 and bytes(enc)
    for value in (np.zeros(MIB), np.zeros((512, 512))[:, ::2], b"z" * MIB):  # views, or written in place
        before = temporary("encode")
        tether.encode(value)
        assert temporary("encode") == before, type(value)


def test_etf_arrow_and_sparse_encoders_count_their_own_buffers():
    rows = list(range(100_000))
    before = temporary("dumps")
    frame = tether.dumps(rows, compression="lz4")  # the general path: the term encoded whole, then compressed
    assert temporary("dumps") == (before[0] + 1, tether.inspect(frame).raw_size)
    pressure(True)
    big = [float(i) for i in range(2 * memory.LOW_PEAK_MIN // 9)]  # under pressure: batches into the frame
    tether.dumps(big, compression="lz4")
    assert any("encoded twice in batches" in d["decision"] for d in memory.decisions(3))
    assert temporary("dumps")[0] == before[0] + 1  # nothing held whole
    pressure(False)

    import pyarrow as pa

    table = pa.table({"x": np.zeros(1 << 17)})  # 1 MiB of zeros: Arrow's own zstd shrinks it to almost nothing
    frame = tether.dumps(table, compression="zstd")
    count, last = temporary("dumps")
    assert count == before[0] + 2 and last >= table.nbytes > 100 * tether.inspect(frame).payload_size

    import scipy.sparse

    dense = np.zeros((64, 64))
    dense[::3, ::5] = 1.0
    m = scipy.sparse.coo_matrix(dense)
    before = temporary("encode")
    tether.encode(m)  # its components are contiguous arrays: views, nothing counted
    assert temporary("encode") == before
    m.data = np.repeat(m.data, 2)[::2]  # a strided view: made contiguous, a copy of its 8-byte values
    tether.encode(m)
    assert temporary("encode") == (before[0] + 1, m.data.nbytes)


def test_stream_chunks_count_their_encoders_temporaries():
    import io

    from tether.stream import StreamWriter

    n, _ = temporary("stream_chunk")
    with StreamWriter(io.BytesIO()) as w:
        w.write([float(i) for i in range(1000)])
        w.write(np.arange(1000.0))  # a view of the array: nothing counted
    count, last = temporary("stream_chunk")
    assert count == n + 1 and 9000 <= last < 10_000


# ------------------------------------------------------------------ compression


def test_compression_uses_smaller_chunks_and_no_shuffle_under_pressure():
    arr = walk(1 << 19)  # 4 MiB
    frame = tether.dumps(arr, compression="zstd")
    assert tether.inspect(frame).details and "byte-shuffled" in tether.last_decision().compression_reason
    assert memory.stats()["temporary"]["compress"]["last_bytes"] >= arr.nbytes  # the shuffled copy
    pressure(True)
    squeezed = tether.dumps(arr, compression="zstd")
    reason = tether.last_decision().compression_reason
    assert f"compressed in {memory.PRESSURE_CHUNK} B chunks" in reason and "byte-shuffle skipped" in reason
    assert memory.stats()["temporary"]["compress"]["last_bytes"] < arr.nbytes  # only the compressed parts
    np.testing.assert_array_equal(tether.loads(squeezed), arr)
    np.testing.assert_array_equal(tether.loads(frame), arr)
    assert memory.decisions(1)[0]["kind"] == "compression"
    assert memory.decisions(1)[0]["figures"] == {"chunk": memory.PRESSURE_CHUNK, "nbytes": arr.nbytes,
                                                 "shuffle_skipped": 8}
    for codec in ("lz4", "gzip"):  # every codec takes the chunked input
        np.testing.assert_array_equal(tether.loads(tether.dumps(arr, compression=codec)), arr)


def test_small_payloads_are_not_adapted():
    pressure(True)
    memory.under_pressure()
    before = len(memory.decisions())
    tether.dumps(bytes(100_000), compression="lz4")  # under the pressure chunk: nothing to shrink
    assert len(memory.decisions()) == before


# ------------------------------------------------------------------ streaming advice


def test_prefer_streaming_under_pressure_and_for_values_larger_than_what_is_left():
    pressure(False, limit=1 << 30)
    assert not memory.prefer_streaming(64 * MIB)
    advice = memory.prefer_streaming(700 * MIB)  # over half of the ~820 MiB available
    assert advice and "over 50% of the" in advice.reason
    pressure(True)
    advice = memory.prefer_streaming(16 * MIB)
    assert advice.stream and "under memory pressure" in advice.reason
    assert memory.PRESSURE_CHUNK <= advice.chunk_size <= tether.stream.CHUNK_SIZE
    assert not memory.prefer_streaming(MIB)  # small values never
    assert memory.decisions(1)[0]["kind"] == "dumps"
    # Following the advice round-trips.
    data = os.urandom(3 * advice.chunk_size + 5)
    sink = io.BytesIO()
    with tether.stream.StreamWriter(sink, chunk_size=advice.chunk_size) as w:
        w.write_buffer(data)
    sink.seek(0)
    assert b"".join(bytes(c) for c in tether.stream.StreamReader(sink)) == data


# ------------------------------------------------------------------ budgets and stats


def test_region_budget_alerts_and_clears():
    memory.set_budget(regions=1)
    a = Region.create(1 << 16)
    try:
        assert memory.check() == []
        b = Region.create(1 << 16)  # creating the region over the budget fires the alert
        assert "memory_regions" in {x.name for x in metrics.active_alerts()}
        assert "memory_regions" in memory.check()
        seen = []
        metrics.on_alert(seen.append)
        b.close()
        b.unlink()
        assert memory.check() == []
        assert "memory_regions" not in {x.name for x in metrics.active_alerts()}
        (cleared,) = [x for x in seen if x.name == "memory_regions"]
        assert cleared.figures["regions"] == 1 and cleared.figures["fired"]["regions"] == 2
        assert "back under its budget of 1" in cleared.message
        metrics.on_alert(seen.append, remove=True)
    finally:
        a.close()
        a.unlink()
    with pytest.raises(ValidationError, match="non-negative int"):
        memory.set_budget(pool_bytes=-1)


def active() -> set[str]:
    return {x.name for x in metrics.active_alerts()}


def test_pool_bytes_budget_alerts_as_regions_go_back_warm_and_clears_as_they_leave():
    fired = []
    metrics.on_alert(fired.append)
    pool = RegionPool(prefault=False, sweep=False)
    try:
        memory.set_budget(pool_bytes=1000)
        region = pool.acquire(MIB)
        assert "memory_pool_bytes" not in active()  # nothing warm yet
        pool.release(region)  # 1 MiB warm, over 1000 B: alerts at the release, not at the next acquire
        assert "memory_pool_bytes" in active()
        (alert,) = [a for a in fired if a.name == "memory_pool_bytes" and a.state == "firing"]
        assert alert.figures["pool_bytes"] >= MIB and alert.figures["budget"] == 1000
        region = pool.acquire(MIB)  # the warm region leaves the pool: back under
        assert "memory_pool_bytes" not in active()
        pool.release(region)
        assert "memory_pool_bytes" in active()
        assert pool.trim() >= MIB
        assert "memory_pool_bytes" not in active()
        assert memory.stats()["pools"]["warm_bytes"] == 0
    finally:
        metrics.on_alert(fired.append, remove=True)
        pool.close()


def test_mapped_bytes_budget_alerts_on_attach_and_clears_when_the_mapping_goes():
    tether.shm.drop_cache()  # attachments an earlier test left cached would count against the budget
    memory.set_budget(mapped_bytes=(1 << 16) + (1 << 15))
    a = Region.create(1 << 16)
    try:
        assert "memory_mapped_bytes" not in active()
        b = Region.attach(a.name)  # a second mapping of the same pages counts again
        assert "memory_mapped_bytes" in active()
        assert memory.check() == ["memory_mapped_bytes"]
        b.close()  # the attach cache keeps the mapping (a re-attach is then cheap): still over
        assert "memory_mapped_bytes" in active()
        (alert,) = [x for x in metrics.active_alerts() if x.name == "memory_mapped_bytes"]
        assert "drop_cache()" in alert.suggestion
        tether.shm.drop_cache()
        assert "memory_mapped_bytes" not in active()
    finally:
        a.close()
        a.unlink()
        tether.shm.drop_cache()


def test_pool_hit_rate_counts_acquires_served_warm():
    pool = RegionPool(prefault=False, sweep=False)
    try:
        before = memory.stats()["pools"]
        pool.release(pool.acquire(MIB))  # a miss: created
        pool.release(pool.acquire(MIB))  # a hit: the warm region
        pool.release(pool.acquire(4 * MIB))  # a miss: too large for the warm one
        assert (pool.stats.acquired, pool.stats.hits, pool.stats.misses) == (3, 1, 2)
        assert pool.stats.hit_rate == pytest.approx(1 / 3)
        after = memory.stats()["pools"]
        assert after["acquired"] - before["acquired"] == 3 and after["hits"] - before["hits"] == 1
        assert after["warm_bytes"] >= 5 * MIB
    finally:
        pool.close()


def test_stats_count_regions_mappings_pools_and_the_attach_cache():
    tether.shm.drop_cache()
    before = memory.stats()
    pool = RegionPool(prefault=False, sweep=False)
    try:
        region = pool.acquire(MIB)
        tether.dump_into(np.arange(10.0), region)
        metrics.reset()
        r1 = Region.attach(region.name)
        r2 = Region.attach(region.name)
        s = memory.stats()
        assert s["regions"]["owned"] == before["regions"]["owned"] + 1
        assert s["regions"]["attached"] == before["regions"]["attached"] + 2
        # The owner's mapping and one cached mapping shared by both attachments.
        assert s["regions"]["mapped_bytes"] == before["regions"]["mapped_bytes"] + 2 * os.fstat(region._fd).st_size
        cache = s["attach_cache"]
        assert cache["entries"] == 1 and cache["misses"] == before["attach_cache"]["misses"] + 1
        assert cache["hits"] == before["attach_cache"]["hits"] + 1
        ops = [o for o in metrics.snapshot()["operations"] if o["op"] == "attach"]
        assert len(ops) == 1 and ops[0]["count"] == 2 and ops[0]["transport"] == "shm"
        r1.close()
        r2.close()
        pool.release(region)
        s = memory.stats()
        assert s["pools"]["warm_bytes"] >= before["pools"]["warm_bytes"] + region.capacity
        assert s["pools"]["acquired"] == before["pools"]["acquired"] + 1
        json.dumps(s)
        assert metrics.snapshot()["memory"]["pools"] == s["pools"]
    finally:
        pool.close()
        tether.shm.drop_cache()


def test_a_failed_attach_is_counted_as_an_error():
    metrics.reset()
    with pytest.raises(tether.RegionError):
        Region.attach("tether-0-doesnotexist")
    (row,) = [o for o in metrics.snapshot()["operations"] if o["op"] == "attach"]
    assert row["errors"] == {"RegionError": 1}


def test_reading_from_the_process_own_cgroup_v1_group(fake_system, monkeypatch):
    fake_system("memory/memory.limit_in_bytes", "9223372036854771712\n")  # the root: no limit
    fake_system("memory/app/memory.limit_in_bytes", "268435456\n")
    fake_system("memory/app/memory.usage_in_bytes", "1000\n")
    files = {"/proc/self/cgroup": "4:memory:/app\n0::/\n"}
    real_read = memory._read
    monkeypatch.setattr(memory, "_read", lambda path: files.get(path) or real_read(path))
    r = memory.reading()
    assert (r.source, r.limit, r.current) == ("cgroup v1", 256 * MIB, 1000)


def test_an_unknown_limit_is_never_pressure():
    memory.set_source(lambda: {"limit": 0, "current": 0})
    assert not memory.under_pressure() and memory.reading().used_fraction == 0.0


# ------------------------------------------------------------------ odd kernel files, odd sources, budgets
# tether.memory with odd kernel files, odd sources and budgets changed while they alert.
#
# Each test here failed before its fix: a reading that cannot be parsed must never
# fail the dumps that consults it, and an alert must never outlive the condition that raised it.

V2 = {"memory.max": "1073741824\n", "memory.current": "104857600\n"}
V1 = {"memory/memory.limit_in_bytes": "1073741824\n", "memory/memory.usage_in_bytes": "104857600\n"}


@pytest.mark.parametrize("files, proc, expected", [
    # (cgroup files, /proc files, (source, limit, current, psi some))
    ({**V2, "memory.current": "garbage\n"}, {}, ("cgroup v2", 1 << 30, 0, None)),
    ({**V2, "memory.stat": "inactive_file lots\n"}, {}, ("cgroup v2", 1 << 30, 100 * MIB, None)),
    ({**V2, "memory.pressure": "some avg10=n/a avg60=0.00\nfull avg10=nan\n"}, {}, ("cgroup v2", 1 << 30, 100 * MIB, None)),
    ({**V2, "memory.pressure": "some avg10=2.50 avg60=1.00\n"}, {}, ("cgroup v2", 1 << 30, 100 * MIB, 2.5)),
    ({**V1, "memory/memory.usage_in_bytes": "x\n"}, {}, ("cgroup v1", 1 << 30, 0, None)),
    ({**V1, "memory/memory.stat": "total_inactive_file ?\n"}, {}, ("cgroup v1", 1 << 30, 100 * MIB, None)),
    (V1, {"/proc/pressure/memory": "some avg10=inf\n"}, ("cgroup v1", 1 << 30, 100 * MIB, None)),
    ({}, {"/proc/meminfo": "MemTotal: lots kB\nMemAvailable: 10 kB\n"}, ("meminfo", 0, 0, None)),
    # Without MemAvailable (and MemFree), nothing is known to be in use: never pressure, not 100 % used.
    ({}, {"/proc/meminfo": "MemTotal: 102400 kB\n"}, ("meminfo", 100 * MIB, 0, None)),
    ({}, {"/proc/meminfo": "MemTotal: 102400 kB\nMemFree: 1024 kB\n"}, ("meminfo", 100 * MIB, 99 * MIB, None)),
])
def test_files_that_cannot_be_parsed_count_as_missing(fake_system, files, proc, expected):
    for rel, text in files.items():
        fake_system(rel, text)
    fake_system.files.update({"/proc/pressure/memory": "", **proc})  # no PSI unless the case gives one
    r = memory.reading()
    assert (r.source, r.limit, r.current, r.psi_some_avg10) == expected
    # The reading is consulted by every large compressed dumps: it used to raise a bare ValueError there.
    value = np.zeros(1 << 21)
    assert np.array_equal(tether.loads(tether.dumps(value, compression="lz4")), value)
    assert memory.stats()["reading"]["source"] == expected[0]


@pytest.mark.parametrize("reading, field", [
    ({"limit": "lots", "current": 1}, "limit"),
    ({"limit": 100, "current": -1}, "current"),
    ({"limit": 100.5, "current": 1}, "limit"),
    ({"limit": 100, "current": 1, "psi_some_avg10": "high"}, "psi_some_avg10"),
    ({"limit": 100, "current": 1, "psi_full_avg10": float("nan")}, "psi_full_avg10"),
    (memory.Reading(limit=100, current=1, psi_some_avg10=250.0), "psi_some_avg10"),
])
def test_a_source_answer_that_is_not_figures_is_a_validation_error(reading, field):
    # Used to be a bare ValueError (int("lots")) at set_source, or a TypeError inside a later dumps.
    with pytest.raises(ValidationError, match=field):
        memory.set_source(lambda: reading)
    assert memory.reading().source != "custom"


def test_a_source_may_answer_with_numpy_numbers():
    memory.set_source(lambda: {"limit": np.int64(100), "current": np.uint64(95), "psi_some_avg10": np.float32(1)})
    r = memory.reading()
    assert (r.limit, r.current, r.psi_some_avg10) == (100, 95, 1.0) and type(r.limit) is int
    assert memory.under_pressure()


def test_removing_a_budget_while_it_alerts_clears_the_alert():
    memory.set_budget(regions=1)
    a, b = Region.create(1 << 16), Region.create(1 << 16)
    try:
        assert "memory_regions" in {x.name for x in metrics.active_alerts()}
        memory.set_budget(regions=0)  # no budget any more: the alert used to stay active for good
        assert "memory_regions" not in {x.name for x in metrics.active_alerts()}
        assert memory.check() == []
        assert memory.decisions(1)[0]["decision"] == "regions budget removed while exceeded"
        memory.set_budget(regions=1)  # set again while exceeded: alerts at once, not at the next region
        assert "memory_regions" in {x.name for x in metrics.active_alerts()}
    finally:
        for r in (a, b):
            r.close()
            r.unlink()


def test_a_new_threshold_enters_and_leaves_pressure_at_once():
    memory.set_source(lambda: {"limit": 100, "current": 80})
    assert "memory_pressure" not in {x.name for x in metrics.active_alerts()}
    memory.set_threshold(used_fraction=0.75)
    assert "memory_pressure" in {x.name for x in metrics.active_alerts()}
    memory.set_threshold(used_fraction=0.9)  # used to stay active until some operation read memory again
    assert "memory_pressure" not in {x.name for x in metrics.active_alerts()}
    assert [d["decision"].split(":")[0] for d in memory.decisions(2)] == ["memory pressure", "memory pressure over"]


def test_decisions_of_none_are_none():
    memory.decide("pool", "kept nothing warm")
    assert memory.decisions(0) == []  # used to return all of them
    assert len(memory.decisions(1)) == 1
    with pytest.raises(ValidationError, match="decisions"):
        memory.decisions(-1)


@pytest.mark.parametrize("nbytes", ["1", None, -1, float("nan")])
def test_prefer_streaming_needs_a_size(nbytes):
    with pytest.raises(ValidationError, match="prefer_streaming needs nbytes"):  # was a bare TypeError, or advice
        memory.prefer_streaming(nbytes)


def test_recheck_budgets_clears_an_alert_once_back_under_and_costs_nothing_without_budgets(monkeypatch):
    memory.set_budget(regions=1)
    a, b = Region.create(1 << 16), Region.create(1 << 16)
    try:
        b.close()
        b.unlink()
        memory.recheck_budgets()  # what a Region calls as it closes or attaches
        assert "memory_regions" not in {x.name for x in metrics.active_alerts()}
    finally:
        a.close()
        a.unlink()
    memory.set_budget(regions=0)
    monkeypatch.setattr(memory, "check", lambda: pytest.fail("no budget: nothing to check"))
    memory.recheck_budgets()
