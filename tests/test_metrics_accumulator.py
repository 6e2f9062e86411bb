"""The metrics accumulators: tether._speedups.Accumulator (C) against PyAccumulator (Python), same contract.

Both must give the same rows, histograms, throughput medians and decision
history for the same operations, count exactly under threads, and the
Python one must carry tether.metrics when the C extension is missing.
"""

from __future__ import annotations

import gc
import random
import subprocess
import sys
import threading
import time
import weakref

import numpy as np
import pytest

import tether
from tether.metrics import _core

speedups = pytest.importorskip("tether._speedups")
if not hasattr(speedups, "Accumulator"):
    pytest.skip("tether._speedups was built without the metrics accumulator", allow_module_level=True)

KINDS = {"c": speedups.Accumulator, "python": _core.PyAccumulator}
KEYS = [("dumps", "etf", "none", "memory"), ("loads", "etf", "none", "memory"),
        ("dumps", "ndarray", "zstd", "shm"), ("stream_chunk", "raw", "lz4", "stream")]


@pytest.fixture(params=sorted(KINDS))
def acc(request):
    return KINDS[request.param](history=64, batch=4)


def _operations(n, seed=7):
    """Operations across keys, size classes and durations from 0 ns to beyond the last bucket."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        size = rng.choice([0, 1, 100, 1023, 1024, 70_000, 2 << 20, 40 << 20])
        ns = rng.choice([0, 1, 3, 4, 7, 999, 1000, 123_456, 10**9, 1 << 50, rng.randrange(1, 10**7)])
        decision = ("etf", "rule", "auto", size, None) if i % 3 == 0 else None
        out.append((*rng.choice(KEYS), size, rng.randrange(0, 4096), ns, decision))
    return out


def _take_sorted(acc):
    rows, decided, medians = acc.take(True)
    return sorted(rows), decided, sorted(medians)


def test_c_and_python_accumulators_agree_on_the_same_operations():
    c, py = speedups.Accumulator(history=64, batch=4), _core.PyAccumulator(history=64, batch=4)
    for part in (_operations(700, seed=1), _operations(300, seed=2)):  # samples carry over between takes
        for op in part:
            c.observe(*op)
            py.observe(*op)
        (c_rows, c_decided, c_medians), (p_rows, p_decided, p_medians) = _take_sorted(c), _take_sorted(py)
        assert c_rows == p_rows  # counts, exact byte and ns sums, histogram bytes
        assert c_decided == p_decided and len(c_decided) == 64
        assert [m[:4] for m in c_medians] == [m[:4] for m in p_medians]
        for cm, pm in zip(c_medians, p_medians):
            assert cm[4] == pytest.approx(pm[4], rel=1e-12)


def test_histogram_percentiles_agree_with_the_python_buckets(acc):
    rng = np.random.default_rng(3)
    durations = [int(x) for x in rng.lognormal(mean=11, sigma=2, size=2000)]  # ~60 us, wide spread
    for ns in durations:
        acc.observe("loads", "etf", "none", "memory", 10, 10, ns, None)
    ((*_, hist),), _, _ = acc.take(True)
    expected = [0] * _core.NBUCKETS
    for ns in durations:
        expected[_core.bucket(ns)] += 1
    got = np.frombuffer(hist, np.int64).tolist()
    assert got == expected
    for q in (0.5, 0.95, 0.99):
        assert _core.percentile(got, q) == _core.percentile(expected, q)
        exact = float(np.quantile(durations, q)) / 1e9
        assert abs(_core.percentile(got, q) - exact) <= 0.25 * exact  # within one bucket's width


def test_c_bucket_is_the_python_bucket():
    edges = [v for b in range(1, 63) for v in ((1 << b) - 1, 1 << b, (1 << b) + 1)]
    values = [*range(0, 300), *edges, 10**6, 10**12, (1 << 63) - 1]
    c = speedups.Accumulator()
    assert [c.bucket(ns) for ns in values] == [_core.bucket(ns) for ns in values]


def test_concurrent_threads_count_exactly_while_another_takes():
    acc = speedups.Accumulator(history=16, batch=16)
    threads, per_thread = 6, 4000
    taken = []
    done = threading.Event()

    def work(k):
        key = KEYS[k % len(KEYS)]
        for i in range(per_thread):
            acc.observe(*key, i, 1, 1000 + i, ("d", k) if i % 2 else None)

    def drain():
        while not done.is_set():
            taken.append(acc.take(True))
            time.sleep(0)
        taken.append(acc.take(True))

    workers = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    drainer = threading.Thread(target=drain)
    drainer.start()
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    done.set()
    drainer.join()
    counts, bytes_in, nanos = {}, {}, {}
    for rows, _decided, _medians in taken:
        for op, fmt, comp, transport, _size, n, nin, _nout, ns, _hist in rows:
            key = (op, fmt, comp, transport)
            counts[key] = counts.get(key, 0) + n
            bytes_in[key] = bytes_in.get(key, 0) + nin
            nanos[key] = nanos.get(key, 0) + ns
    threads_per_key = {key: sum(1 for k in range(threads) if KEYS[k % len(KEYS)] == key) for key in KEYS}
    assert counts == {key: per_thread * t for key, t in threads_per_key.items()}
    one_thread_bytes = sum(range(per_thread))
    assert bytes_in == {key: one_thread_bytes * t for key, t in threads_per_key.items()}
    assert nanos == {key: (1000 * per_thread + one_thread_bytes) * t for key, t in threads_per_key.items()}


def test_add_times_from_start_and_says_when_a_take_is_due(acc):
    bound = speedups.METRICS_DRAIN_AT if type(acc) is speedups.Accumulator else _core.DRAIN_AT
    ticks = iter(range(0, 10**12, 250))
    acc.set_clock(lambda: next(ticks))
    due = [acc.add("dumps", "etf", "none", "memory", 1, 1, acc.start(), None) for _ in range(bound)]
    assert due[:-1] == [None] * (bound - 1) and due[-1] == _core.DUE
    ((*_, count, _nin, _nout, ns, _hist),), _, _ = acc.take(True)
    assert (count, ns) == (bound, 250 * bound)
    acc.set_on(False)
    assert acc.start() is None


def test_the_c_accumulator_says_a_take_is_due_a_second_after_the_last():
    c = speedups.Accumulator()
    now = [0]
    c.set_clock(lambda: now[0])

    def op(start, end):
        now[0] = start
        t0 = c.start()
        now[0] = end
        return c.add("loads", "etf", "none", "memory", 1, 1, t0, None)

    assert op(10, 20) is None  # the first operation starts the second
    assert op(30, 999_999_999) is None
    assert op(1_000_000_000, 1_000_000_020) == _core.DUE
    now[0] = 1_500_000_000
    c.take(False)
    assert op(1_600_000_000, 2_400_000_000) is None  # counted from the take
    assert op(2_500_000_000, 2_500_000_001) == _core.DUE
    now[0] = 2_600_000_000
    c.take(False)
    assert c.observe("worker_call", "etf", "none", "shm", 1, 1, 5, None) is None
    now[0] = 3_600_000_000  # observe() reads the clock too: records from outside get their fold as well
    assert c.observe("worker_call", "etf", "none", "shm", 1, 1, 5, None) == _core.DUE


def test_the_c_clock_is_perf_counter_ns():
    before = time.perf_counter_ns()
    now = speedups.Accumulator().start()
    assert before <= now <= time.perf_counter_ns()


def test_history_keeps_the_newest_and_releases_what_falls_off(acc):
    class Decision:
        """A stand-in any decision object: only its reference is kept."""

    first = Decision()
    alive = weakref.ref(first)
    acc.observe("dumps", "etf", "none", "memory", 1, 1, 5, first)
    del first
    for i in range(64):
        acc.observe("dumps", "etf", "none", "memory", 1, 1, i, ("etf", i))
    _, decided, _ = acc.take(True)
    gc.collect()
    assert alive() is None  # dropped from the ring (C) or the take (Python)
    assert [d[0][1] for d in decided] == list(range(64)) and {d[1] for d in decided} == {"dumps"}


def test_clear_forgets_everything(acc):
    for op in _operations(50):
        acc.observe(*op)
    acc.clear()
    assert acc.take(True) == ([], [], [])


def test_batch_size_change_starts_batches_afresh(acc):
    for ns in (100, 200, 300):
        acc.observe("dumps", "etf", "none", "memory", 1000, 1000, ns, None)
    acc.set_batch(2)  # the three pending samples are dropped
    for ns in (1000, 3000):
        acc.observe("dumps", "etf", "none", "memory", 1000, 1000, ns, None)
    _, _, medians = acc.take(True)
    assert medians == [("dumps", "etf", "none", 0, [pytest.approx((1.0 + 1000 / 3000) / 2)])]


def test_c_accumulator_refuses_keys_that_are_not_str():
    with pytest.raises(TypeError, match="must be str"):
        speedups.Accumulator().observe("dumps", None, "none", "memory", 1, 1, 1, None)


def test_record_refuses_labels_that_are_not_str():
    with pytest.raises(tether.ValidationError, match="transport as a str"):
        tether.metrics.record("worker_call", "etf", "none", 3, 1, 1, 0.1)


def test_a_stale_extension_falls_back_to_python(monkeypatch):
    class Stale:
        """A _speedups built before the accumulator existed."""

    monkeypatch.setattr(tether, "_speedups", Stale(), raising=False)
    assert _core._native() is None


def test_an_extension_with_another_entry_point_contract_falls_back_to_python(monkeypatch):
    class Older:
        """A _speedups from before add_plain: same buckets and flags, older METRICS_API."""

        Accumulator = speedups.Accumulator
        METRICS_NBUCKETS, METRICS_DUE, METRICS_LARGE = _core.NBUCKETS, _core.DUE, _core.LARGE_OP
        METRICS_API = _core.API - 1

    monkeypatch.setattr(tether, "_speedups", Older(), raising=False)
    assert _core._native() is None
    Older.METRICS_API = _core.API
    assert _core._native() is speedups.Accumulator


def test_the_live_accumulator_is_the_c_one():
    assert type(_core.acc) is speedups.Accumulator


def test_metrics_work_end_to_end_without_the_c_extension():
    code = """
import sys; sys.modules['tether._speedups'] = None
import tether, tether.metrics as m
from tether.metrics import _core
assert type(_core.acc).__name__ == 'PyAccumulator', type(_core.acc)
frame = tether.dumps({'a': 1})
for _ in range(2000):
    tether.loads(frame)
rows = {r['op']: r for r in m.snapshot()['operations']}
assert rows['dumps']['count'] == 1 and rows['loads']['count'] == 2000, rows
assert rows['loads']['bytes_in'] == 2000 * len(frame)
assert [d.operation for d in m.decisions()] == ['dumps']
print('ok')
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_decisions_wait_in_the_c_ring_for_a_take_that_asks():
    acc = speedups.Accumulator(history=4, batch=16)
    for i in range(6):
        acc.observe("dumps", "etf", "none", "memory", 1, 1, i, ("etf", i))
    rows, decided, _ = acc.take(False)
    assert rows[0][5] == 6 and decided == []
    acc.observe("dumps", "etf", "none", "memory", 1, 1, 6, ("etf", 6))
    _, decided, _ = acc.take(True)
    assert [(d[0][1], d[2]) for d in decided] == [(3, 3), (4, 4), (5, 5), (6, 6)]  # the newest four, oldest first
    assert acc.take(True)[1] == []


def test_loads_counts_header_ids_and_the_fold_names_them():
    tether.metrics.reset()
    frame = tether.dumps(np.arange(100.0), compression="lz4")
    tether.loads(frame)
    row = next(r for r in tether.metrics.snapshot()["operations"] if r["op"] == "loads")
    assert (row["format"], row["compression"]) == ("ndarray", "lz4")
    assert _core._names(999, 250) == ("format id 999", "compression id 250") and _core._names(1, 0)[1] == "none"


def test_add_frame_keys_by_the_header_ids_in_both_accumulators(acc):
    from tether.frame import Header

    acc.set_frame_fields(*(Header._fields.index(n) for n in ("format_id", "compression_id", "raw_length")))
    header = Header(format_id=3, compression_id=2, checksum_kind=0, flags=0, metadata_length=0, metadata_crc32=0,
                    payload_length=5, raw_length=70_000, payload_checksum=0, schema_version=1, compression_level=0)
    ticks = iter(range(10**6, 10**9, 500))
    acc.set_clock(lambda: next(ticks))
    assert acc.add_frame("loads", "memory", 123, header, acc.start()) is None
    ((*key, count, nin, nout, ns, _hist),), _, _ = acc.take(True)
    assert (tuple(key), count, nin, nout, ns) == (("loads", 3, 2, "memory", 2), 1, 123, 70_000, 500)


def test_c_add_frame_refuses_what_is_not_a_header():
    c = speedups.Accumulator()
    with pytest.raises(TypeError, match="set_frame_fields"):
        c.add_frame("loads", "memory", 1, (1, 2, 3), c.start())  # positions not set yet
    c.set_frame_fields(0, 1, 7)
    with pytest.raises(TypeError, match="frame header"):
        c.add_frame("loads", "memory", 1, (1, 2, 3), c.start())  # too short for position 7
    with pytest.raises(TypeError, match=r"add_frame\(\) takes 5 arguments \(4 given\)"):
        c.add_frame("loads", "memory", 1, (1, 2, 3))


def test_large_operations_are_flagged(acc):
    acc.set_large(1 << 20)
    assert acc.observe("dumps", "raw", "none", "memory", (1 << 20) - 1, 10, 5, None) is None
    assert acc.observe("loads", "raw", "none", "memory", 10, 1 << 20, 5, None) == _core.LARGE_OP


def test_a_large_plain_frame_still_gets_its_checksum_note():
    from tether.formats import etf

    big = list(range(300_000))  # an etf one-step frame over 1 MiB: the LARGE_OP flag leads to the note
    assert etf.FORMAT.dumps_plain(big, -1, "memory") is not None
    tether.metrics.reset()
    frame = tether.dumps(big, checksum=True)
    tether.dumps([1, 2], checksum=True)
    assert tether.metrics._core.notes("checksum") == {("etf", "memory"): (1, tether.inspect(frame).raw_size, 0, 0)}


@pytest.mark.parametrize("batch", [1, 2, 3, 4, 5, 16, 17, 63, 64, 65, 200])
def test_c_batch_medians_are_numpy_medians(batch):
    rng = random.Random(batch)
    c = speedups.Accumulator(batch=batch)
    durations = [rng.choice([1, 2, 2, 3, 50, 1000, rng.randrange(1, 10**6)]) for _ in range(batch * 5)]
    for ns in durations:  # throughput = 1000 bytes / ns: ties, skews and repeats
        c.observe("dumps", "etf", "none", "memory", 1000, 1000, ns, None)
    (*_, got), = c.take(True)[2]
    expected = np.median((1000 / np.array(durations, np.float64)).reshape(5, batch), axis=1).tolist()
    assert got == pytest.approx(expected, rel=1e-15)


def _ticking(acc, step=500):
    ticks = iter(range(10**6, 10**12, step))
    acc.set_clock(lambda: next(ticks))


@pytest.mark.parametrize("frame", [b"f" * 90, bytearray(b"f" * 90)])
def test_add_plain_counts_the_payload_in_and_the_frame_out(acc, frame):
    _ticking(acc)
    decision = ("etf", "rule", "auto", 57, None)
    assert acc.add_plain("dumps", "etf", "none", "memory", (frame, 57), acc.start(), decision) is None
    ((*key, count, nin, nout, ns, _hist),), decided, _ = acc.take(True)
    assert (tuple(key), count, nin, nout, ns) == (("dumps", "etf", "none", "memory", 0), 1, 57, 90, 500)
    assert decided == [(decision, "dumps", 500)]


def test_c_add_plain_refuses_what_is_not_a_writer_result():
    c = speedups.Accumulator()
    with pytest.raises(TypeError, match="payload bytes"):
        c.add_plain("dumps", "etf", "none", "memory", b"frame", c.start(), None)
    with pytest.raises(TypeError):
        c.add_plain("dumps", "etf", "none", "memory", (object(), 5), c.start(), None)  # no length in bytes
    with pytest.raises(TypeError, match=r"add_plain\(\) takes 7 arguments \(8 given\)"):
        c.add_plain("dumps", "etf", "none", "memory", (b"f", 1), c.start(), None, None)
    assert c.take(True) == ([], [], [])  # nothing refused was counted


def test_add_frame_takes_the_bytes_in_from_the_buffer(acc):
    import array

    acc.set_frame_fields(0, 1, 2)
    _ticking(acc)
    doubles = array.array("d", range(10))  # 10 items, 80 bytes: the bytes count, not the items
    for buf in (memoryview(b"x" * 33), b"y" * 7, doubles, memoryview(doubles), 5):
        acc.add_frame("loads", "memory", buf, (1, 0, 3), acc.start())
    ((*key, count, nin, nout, ns, _hist),), _, _ = acc.take(True)
    assert (tuple(key), count, nin, nout, ns) == (("loads", 1, 0, "memory", 0), 5, 33 + 7 + 80 + 80 + 5, 15, 2500)


def test_keys_that_share_objects_but_differ_count_apart(acc):
    op, etf = "dumps", "etf"
    other_etf = "".join(["e", "tf"])  # equal, but another object: the same key
    assert other_etf is not etf
    plan = [(etf, 10), (etf, 2000), ("raw", 10), (other_etf, 10), (etf, 10), ("raw", 5000)] * 50
    for fmt, size in plan:
        acc.observe(op, fmt, "none", "memory", size, 1, 100, None)
    rows, _, _ = acc.take(True)
    assert sorted((fmt, size_class, count, nin) for _op, fmt, _c, _t, size_class, count, nin, *_ in rows) == [
        ("etf", 0, 150, 1500), ("etf", 1, 50, 100_000), ("raw", 0, 50, 500), ("raw", 1, 50, 250_000)]


def test_counts_after_clear_land_in_fresh_slots(acc):
    for fmt in ("etf", "raw", "pickle"):
        acc.observe("dumps", fmt, "none", "memory", 1, 1, 1, None)
    acc.clear()
    for i in range(40):
        acc.observe("dumps", "".join(["nd", "array", str(i % 2)]), "none", "memory", 1, 1, 1, None)
    rows, _, _ = acc.take(True)
    assert sorted((fmt, count) for _op, fmt, _c, _t, _s, count, *_ in rows) == [("ndarray0", 20), ("ndarray1", 20)]
