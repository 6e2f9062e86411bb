"""tether.metrics stays bounded and strict: rows, error kinds and notes are capped (folded into "other"), record()
checks its op and transport, and snapshots are strict JSON (NumPy numbers plain, non-finite floats as strings)."""

from __future__ import annotations

import gc
import json
import logging
import math
import tracemalloc

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
    m.configure_limits(max_rows=1000, max_kinds=64)
    m.set_clock(None)
    m.enable()
    m.reset()


def _fill(n: int, tag: str = "peer") -> None:
    for i in range(n):
        m.record("transfer", f"{tag}-{i}", "-", "network", 100, 100, 1e-6)
    m.flush()


def _limit_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "tether.metrics" and r.levelno == logging.WARNING]


def test_default_limits_are_documented_values():
    assert m.configure_limits() == {"max_rows": 1000, "max_kinds": 64}
    assert m.snapshot()["limits"] == {"max_rows": 1000, "max_kinds": 64, "folded_operations": 0,
                                      "folded_kinds": 0, "dropped_notes": 0}


def test_distinct_keys_past_the_default_cap_fold_into_other(caplog):
    caplog.set_level(logging.WARNING, logger="tether.metrics")
    _fill(1500)
    s = m.snapshot()
    rows = s["operations"]
    assert len(rows) == 1001  # 1000 rows of their own, then one overflow row for (transfer, network, <1KiB)
    other = [r for r in rows if r["format"] == "other"]
    assert len(other) == 1 and other[0]["compression"] == "other" and other[0]["count"] == 500
    assert (other[0]["op"], other[0]["transport"], other[0]["size_class"]) == ("transfer", "network", "<1KiB")
    assert sum(r["count"] for r in rows) == 1500  # nothing lost, only folded
    assert s["limits"]["folded_operations"] == 500
    assert len(_limit_warnings(caplog)) == 1  # once, not per folded call
    json.dumps(s, allow_nan=False)


def test_a_key_seen_before_the_cap_keeps_its_row():
    m.configure_limits(max_rows=3)
    _fill(3)
    _fill(10, "late")
    m.record("transfer", "peer-1", "-", "network", 100, 100, 1e-6)
    rows = {r["format"]: r["count"] for r in m.snapshot()["operations"]}
    assert rows == {"peer-0": 1, "peer-1": 2, "peer-2": 1, "other": 10}


def test_overflow_rows_keep_op_transport_and_size_class():
    m.configure_limits(max_rows=1)
    m.record("worker_call", "etf", "none", "shm", 10, 10, 1e-6)
    m.record("worker_call", "x", "y", "pipe", 4 << 20, 10, 1e-6)
    m.record("attach", "-", "-", "shm", 10, 10, 1e-6, error="RegionError")
    m.record("worker_call", "x", "y", "pipe", 10, 10, 1e-6, fallback="shm->inline")
    rows = {(r["op"], r["format"], r["compression"], r["transport"], r["size_class"]): r
            for r in m.snapshot()["operations"]}
    assert set(rows) == {("worker_call", "etf", "none", "shm", "<1KiB"),
                         ("worker_call", "other", "other", "pipe", "1MiB-16MiB"),
                         ("attach", "other", "other", "shm", "<1KiB"),
                         ("worker_call", "other", "other", "pipe", "<1KiB")}
    assert rows[("attach", "other", "other", "shm", "<1KiB")]["errors"] == {"RegionError": 1}
    assert rows[("worker_call", "other", "other", "pipe", "<1KiB")]["fallbacks"] == {"shm->inline": 1}
    assert m.snapshot()["limits"]["folded_operations"] == 3


def test_error_kinds_past_the_cap_count_as_other(caplog):
    caplog.set_level(logging.WARNING, logger="tether.metrics")
    for i in range(1000):
        m.record("transfer", "-", "-", "network", 100, 100, 0.0, error=f"timeout after {i} ms")
    s = m.snapshot()
    (row,) = s["operations"]
    assert len(row["errors"]) == 65 and row["errors"]["other"] == 1000 - 64
    assert sum(row["errors"].values()) == 1000 and row["count"] == 0
    assert s["limits"]["folded_kinds"] == 1000 - 64
    assert len(_limit_warnings(caplog)) == 1


def test_fallback_kinds_are_capped_too():
    m.configure_limits(max_kinds=2)
    for i in range(5):
        m.record("worker_call", "etf", "none", "shm", 1, 1, 1e-6, fallback=f"f{i}")
    (row,) = m.snapshot()["operations"]
    assert row["fallbacks"] == {"f0": 1, "f1": 1, "other": 3} and row["count"] == 5


def test_failed_dumps_with_ever_new_names_stay_bounded():
    # A failing dumps counts its error under the names it was given: an application passing ever new ones
    # (a typo'd format per call) must not grow a row each.
    m.configure_limits(max_rows=4)
    for i in range(20):
        with pytest.raises(tether.TetherError):
            tether.dumps(1, format=f"nope-{i}")
    rows = m.snapshot()["operations"]
    assert len(rows) <= 5 and sum(sum(r["errors"].values()) for r in rows) == 20


def test_rows_from_tethers_own_operations_fold_at_the_cap():
    m.configure_limits(max_rows=1)
    tether.loads(tether.dumps({"a": 1}))  # dumps and loads: two keys, the second past the cap
    tether.dumps(b"x" * 10)
    rows = m.snapshot()["operations"]
    assert len([r for r in rows if r["format"] != "other"]) == 1
    assert sum(r["count"] for r in rows) == 3


def test_notes_are_capped():
    m.configure_limits(max_rows=2)
    big = np.zeros(1 << 17, np.uint8)
    for bw in (1e6, 2e6, 3e6, 4e6):  # the compression notes are kept per bandwidth passed
        tether.dumps(big, compression="zstd", transport="network", bandwidth=bw)
    limits = m.snapshot()["limits"]
    assert len(_core._notes) <= 2 and limits["dropped_notes"] >= 2


def test_a_warning_again_after_reset(caplog):
    caplog.set_level(logging.WARNING, logger="tether.metrics")
    m.configure_limits(max_rows=2)
    _fill(5)
    _fill(5, "again")
    assert len(_limit_warnings(caplog)) == 1
    m.reset()
    assert m.snapshot()["limits"]["folded_operations"] == 0 and m.snapshot()["operations"] == []
    _fill(5)
    assert len(_limit_warnings(caplog)) == 2


def test_lowering_a_limit_keeps_what_is_there():
    _fill(5)
    m.configure_limits(max_rows=2)
    _fill(5)  # the same keys: still their own rows
    _fill(1, "new")
    rows = {r["format"]: r["count"] for r in m.snapshot()["operations"]}
    assert rows == {**{f"peer-{i}": 2 for i in range(5)}, "other": 1}


@pytest.mark.parametrize("kwargs", [{"max_rows": 0}, {"max_rows": 1.5}, {"max_kinds": -1}, {"max_kinds": True},
                                    {"max_rows": "10"}])
def test_configure_limits_refuses_bad_values(kwargs):
    with pytest.raises(tether.ValidationError, match="positive int"):
        m.configure_limits(**kwargs)


def _traced_after(n: int, tag: str) -> int:
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    _fill(n, tag)
    gc.collect()
    return tracemalloc.get_traced_memory()[0] - before


def test_memory_plateaus_past_the_cap_and_is_reused_after_reset():
    # Every key used to keep ~5 KiB (a C slot, a row, a histogram) until reset: 20,000 keys, 100 MiB.
    tracemalloc.start()
    try:
        at_cap = _traced_after(1000, "a")
        past = _traced_after(4000, "b")  # 4000 more distinct keys, all folded: no more memory than one row
        m.reset()
        gc.collect()
        after_reset = tracemalloc.get_traced_memory()[0]
        refill = _traced_after(5000, "c")
    finally:
        tracemalloc.stop()
    assert at_cap > 1000 * 1024 and past < 64 << 10, (at_cap, past)
    assert refill < at_cap + (64 << 10), (at_cap, refill, after_reset)


def test_record_refuses_an_unknown_op_naming_the_valid_ones():
    with pytest.raises(tether.ValidationError, match="bogus-op.*dumps, loads, dump_into, attach, stream_chunk, "
                                                     "worker_call, transfer"):
        m.record("bogus-op", "etf", "none", "memory", 10, 10, 0.001)
    assert m.snapshot()["operations"] == []


def test_record_refuses_an_unknown_transport_naming_the_valid_ones():
    with pytest.raises(tether.ValidationError, match="warp-drive.*memory, shm, network, disk, stream, pipe, -"):
        m.record("transfer", "etf", "none", "warp-drive", 10, 10, 0.001)
    with pytest.raises(tether.ValidationError, match="transport"):
        m.record("transfer", "etf", "none", "warp-drive", 10, 10, 0.001, error="boom")
    assert m.snapshot()["operations"] == []


def test_record_accepts_every_documented_op_and_transport():
    for op in m.OPERATIONS:
        for transport in m.TRANSPORTS:
            m.record(op, "-", "-", transport, 1, 1, 1e-6)
    assert len(m.snapshot()["operations"]) == len(m.OPERATIONS) * len(m.TRANSPORTS)


def test_record_checks_its_key_even_on_a_str_subclass():
    class Name(str):
        pass

    m.record(Name("transfer"), "-", "-", Name("network"), 1, 1, 1e-6)
    with pytest.raises(tether.ValidationError, match="op"):
        m.record(Name("nope"), "-", "-", "network", 1, 1, 1e-6)


def test_alert_figures_are_plain_python_numbers():
    seen = []
    callback = m.on_alert(seen.append)
    figures = {"lag_s": np.float64(2.5), "ratio": np.float32(0.5), "n": np.int64(3), "flag": np.bool_(True),
               "nested": {"x": [np.float64(1.5), (np.int32(2),)]}}
    try:
        m.alert("bounds_plain", "lag high", figures, "scale out")
        (fired,) = [a for a in m.snapshot()["alerts"] if a["name"] == "bounds_plain"]
        for fig in (fired["figures"], seen[-1].figures):  # the snapshot's, and what callbacks (the BEAM) get
            assert {k: type(v) for k, v in fig.items() if k != "nested"} == {
                "lag_s": float, "ratio": float, "n": int, "flag": bool}
            assert type(fig["nested"]["x"][0]) is float and type(fig["nested"]["x"][1][0]) is int
    finally:
        m.clear("bounds_plain")
        m.on_alert(callback, remove=True)


def test_non_finite_figures_are_strings_in_the_snapshot_and_floats_for_callbacks():
    seen = []
    callback = m.on_alert(seen.append)
    values = {"nan": float("nan"), "inf": np.float64("inf"), "ninf": np.float32("-inf"), "ok": 1.0}
    try:
        m.alert("bounds_nan", "odd", values, "look")
        s = m.snapshot()
        (fired,) = [a for a in s["alerts"] if a["name"] == "bounds_nan"]
        assert fired["figures"] == {"nan": "NaN", "inf": "Infinity", "ninf": "-Infinity", "ok": 1.0}
        assert math.isnan(float(fired["figures"]["nan"])) and float(fired["figures"]["ninf"]) == -math.inf
        json.dumps(s, allow_nan=False)
        (loose,) = [a for a in m.snapshot(strict=False)["alerts"] if a["name"] == "bounds_nan"]
        assert math.isnan(loose["figures"]["nan"]) and loose["figures"]["ninf"] == -math.inf
        # Callbacks keep Python floats (the worker sends them to the BEAM as the atoms nan, infinity, ...).
        got = seen[-1].figures
        assert math.isnan(got["nan"]) and got["inf"] == math.inf and got["ninf"] == -math.inf
        assert {type(v) for v in got.values()} == {float}
        m.clear("bounds_nan", {"now": np.float64("nan")})
        assert type(seen[-1].figures["now"]) is float
        assert seen[-1].as_dict()["figures"] == {"now": "NaN", "fired": fired["figures"]}
    finally:
        m.clear("bounds_nan")
        m.on_alert(callback, remove=True)


def test_snapshot_is_strict_json_in_edge_cases():
    m.record("transfer", "-", "-", "network", 1000, 1000, 0.0)  # no time: throughput None
    m.record("dumps", "raw", "none", "memory", 0, 0, 0.0)  # no bytes: ratio None
    tether.loads(tether.dumps({"a": [1.5, float("nan")]}))
    json.dumps(m.snapshot(), allow_nan=False)


@pytest.mark.parametrize("fallback", [b"shm->inline", 3, ("a", "b")])
def test_record_refuses_a_fallback_that_is_not_a_str(fallback):
    # It became a snapshot key: json.dumps(snapshot()) then raised on a bytes key.
    with pytest.raises(tether.ValidationError, match="fallback as a str"):
        m.record("worker_call", "etf", "none", "pipe", 10, 10, 0.001, fallback=fallback)
