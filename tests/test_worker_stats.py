"""The worker's metrics and bulk-path additions (docs/format.md §8): ``{stats, Id}``, ``{echo, Term}``,
``tether stats`` through ``read_stats``, ``worker_call`` metrics, lineage on result frames, schema
versions in ``ready``, ``plain`` arguments, a region that grows, a kept arguments mapping.

Protocol tests drive a real ``python -m tether.worker`` through its pipes (test_worker's Client).
"""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest

import tether
import tether.metrics
from tether import Atom as A
from tether import worker as W

import beam_handlers
from test_worker import Client


@pytest.fixture
def stats_client(tmp_path):
    c = Client("--stats-dir", str(tmp_path), "--shm-threshold", "4096")
    yield c
    c.close()


def test_stats_request_answers_the_metrics_snapshot_with_worker_calls(stats_client):
    assert stats_client.ok("add", 1, 2) == 3
    stats_client.send((A("stats"), 7))
    reply = stats_client.recv()
    assert reply[:2] == ("reply", 7) and reply[2][0] == "ok"
    snapshot = reply[2][1]
    worker = snapshot["worker"]
    assert worker["calls"] == 1 and worker["last_call"]["function"] == "beam_handlers.add"
    assert worker["last_call"]["route"] == "pipe" and worker["last_call"]["error"] is None
    ops = [row for row in snapshot["operations"] if row["op"] == "worker_call"]
    assert ops and ops[0]["count"] == 1


def test_worker_calls_are_recorded_in_metrics_with_their_route_and_errors():
    tether.metrics.enable()
    tether.metrics.reset()
    w = W.Worker({"beam_handlers": beam_handlers}, shm_threshold=4096)
    try:
        call = tether.dumps((A("call"), 1, b"beam_handlers", b"big_binary", [100_000], {}), format="etf")
        w.handle(call)
        assert w.last_call["route"] == "shm" and w.last_call["bytes_out"] > 100_000
        w.handle(tether.dumps((A("call"), 2, b"beam_handlers", b"fail", [b"no"], {}), format="etf"))
        assert w.last_call["error"] == "ValueError"
    finally:
        w.close()
    rows = [r for r in tether.metrics.snapshot()["operations"] if r["op"] == "worker_call"]
    assert [(r["transport"], r["count"]) for r in rows if r["count"]] == [("shm", 1)]
    assert [(r["transport"], r["errors"]) for r in rows if r["errors"]] == [("pipe", {"ValueError": 1})]


def test_stats_without_metrics_is_a_typed_error_reply(monkeypatch):
    monkeypatch.setattr(W, "_metrics", None)
    w = W.Worker({})
    try:
        with pytest.raises(W.StatsError, match="no tether.metrics"):
            w.stats()
        reply = tether.loads(w.stats_reply(3))
        assert reply[2][0] == "error" and reply[2][1][:2] == ("python", "MetricsUnavailable")
    finally:
        w.close()


def test_read_stats_reaches_a_running_worker_by_pid_and_by_directory(stats_client, tmp_path):
    pid = stats_client.proc.pid
    assert stats_client.ok("add", 1, 2) == 3
    first = W.read_stats(pid)
    assert first["worker"]["pid"] == pid and first["worker"]["calls"] == 1
    assert pid in W.workers()
    assert stats_client.ok("add", 2, 2) == 4
    again = W.read_stats(tmp_path)
    assert again["worker"]["calls"] == 2 and again["written_at"] > first["written_at"]
    json.dumps(again)  # plain data
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # written atomically
    assert (tmp_path / W.STATS_FILE).stat().st_mode & 0o777 == 0o600


def test_a_snapshot_from_the_stats_thread_includes_a_reply_written_but_not_yet_counted():
    # serve() writes the reply, then counts the call: a SIGUSR2 in between read one call short (seen as a
    # flaky read_stats test). The stats thread now waits for the count.
    import threading
    import time

    w = W.Worker({"beam_handlers": beam_handlers})
    w.defer_accounting = True
    try:
        w.handle(tether.dumps((A("call"), 1, b"beam_handlers", b"add", [1, 2], {}), format="etf"))
        seen = []
        stats_thread = threading.Thread(target=lambda: seen.append(w.stats()["worker"]["calls"]))
        stats_thread.start()
        time.sleep(0.02)  # the reply is "on its way"; the count comes after
        w.account()
        stats_thread.join()
        assert seen == [1]
    finally:
        w.close()


def test_read_stats_refuses_what_is_not_a_worker(tmp_path):
    with pytest.raises(W.StatsError, match="no tether worker with OS pid"):
        W.read_stats(os.getpid())
    with pytest.raises(W.StatsError, match="no worker stats"):
        W.read_stats(tmp_path)
    (tmp_path / W.STATS_FILE).write_text(json.dumps({"worker": {"pid": os.getpid()}, "written_at": 1}))
    with pytest.raises(W.StatsError, match="is not running"):
        W.read_stats(tmp_path)


def test_sigusr2_does_not_disturb_calls(stats_client):
    for _ in range(5):
        os.kill(stats_client.proc.pid, signal.SIGUSR2)
    assert stats_client.ok("add", 20, 22) == 42


def test_bursts_of_sigusr2_never_hang_the_worker(stats_client):
    # Python runs a signal handler again inside itself when signals come fast: a handler that
    # took a lock (Event.set) waited for itself, and the worker hung (~1 in 120 bursts of 5).
    for i in range(60):
        for _ in range(20):
            os.kill(stats_client.proc.pid, signal.SIGUSR2)
        assert stats_client.ok("add", i, 1, timeout=5) == i + 1


def test_echo_decodes_and_reencodes_without_a_handler(stats_client):
    value = {A("id"): 1, A("name"): b"small", A("tags"): [A("a"), A("b")]}
    stats_client.send((A("echo"), value))
    assert stats_client.recv() == ("echo", value)


BUILTIN = {f.name for f in tether.formats.registry if f.id < 128}


def test_ready_carries_format_schema_versions_and_table_schemas(stats_client):
    info = stats_client.ready[1]
    schemas = info["format_schemas"]
    assert schemas["ndarray"] == {"schema_version": 1, "oldest_readable": 1}
    # The worker's built-in formats (ids < 128); this test process may have registered user formats.
    assert {n for n in schemas if n in BUILTIN} == BUILTIN
    assert isinstance(info["schemas"], dict) and isinstance(info["types"], dict)


def test_result_frames_carry_a_module_function_lineage_step(stats_client):
    frames = [v for v in _leaves(stats_client.ok("nested_arrays")) if _is_embedded(v)]
    assert len(frames) == 3
    for ref in frames:
        raw = ref[1] if ref[0] == "$tether" else _region_bytes(ref)
        _, info = tether.loads(raw, with_info=True)
        assert any(step.get("step") == "beam_handlers.nested_arrays" for step in info.lineage), info.lineage


def test_plain_hint_skips_the_walk_and_its_absence_keeps_it(tmp_path):
    w = W.Worker({"beam_handlers": beam_handlers})
    try:
        path = tmp_path / "tether-args-x"
        path.write_bytes(tether.dumps([[A("nan"), 1]], format="etf", checksum="none"))
        shm = (A("shm"), str(path).encode(), path.stat().st_size)
        walked = w._arguments(shm)
        assert np.isnan(walked[0][0])
        kept = w._arguments(shm, plain=True)
        assert kept[0][0] == A("nan")  # taken as the BEAM vouched, unwalked
    finally:
        w.close()


def test_the_arguments_file_mapping_is_kept_between_calls_and_renewed_when_the_file_grows(tmp_path):
    w = W.Worker({})
    try:
        path = tmp_path / "tether-args-y"
        path.write_bytes(b"a" * 100)
        first = w._map_file(str(path), 0, 100)
        mapped = w._mapped[1]
        assert bytes(w._map_file(str(path), 0, 50)) == b"a" * 50 and w._mapped[1] is mapped
        with open(path, "r+b") as f:
            f.write(b"b" * 200)
        assert bytes(w._map_file(str(path), 0, 200)) == b"b" * 200 and w._mapped[1] is not mapped
        grown = w._mapped[1]
        with open(path, "r+b") as f:  # shrunk: mapped again at the file's size, not past its end
            f.truncate(10)
        assert bytes(w._map_file(str(path), 0, 10)) == b"b" * 10 and len(w._mapped[1]) == 10
        assert w._mapped[1] is not grown
        first.release()
    finally:
        w.close()


def test_a_reply_larger_than_the_region_gets_a_larger_region(tmp_path):
    w = W.Worker({"beam_handlers": beam_handlers}, shm_threshold=4096)
    try:
        for n, ident in ((10_000, 1), (3_000_000, 2)):
            reply = tether.loads(w.handle(tether.dumps((A("call"), ident, b"beam_handlers", b"big_binary", [n], {}),
                                                       format="etf")))
            assert reply[2][1][0] == "$tether_shm", reply  # not sent inline for want of room
            assert reply[2][1][3] > n
    finally:
        w.close()


def _leaves(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from _leaves(v)
    elif isinstance(value, (list, tuple)) and not _is_embedded(value):
        for v in value:
            yield from _leaves(v)
    else:
        yield value


def _is_embedded(value) -> bool:
    return isinstance(value, tuple) and bool(value) and value[0] in ("$tether", "$tether_shm")


def _region_bytes(ref) -> bytes:
    _, path, offset, length = ref
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(length)


def test_an_alert_python_raises_is_sent_to_the_beam(stats_client):
    ident = stats_client.request("raise_alert", b"disk_slow", 0.25)
    seen = []
    while True:
        msg = stats_client.recv()
        if msg[0] == "reply":
            break
        seen.append(msg)
    assert msg[:2] == ("reply", ident) and msg[2] == (A("ok"), True)
    assert seen == [("alert", "disk_slow", A("firing"), "throughput fell", {"ratio": 0.25, "worst": A("infinity")},
                     "look at the disk")]


def test_a_beam_reading_an_older_format_schema_gets_a_refusal_that_names_the_side_to_upgrade():
    from tether import worker

    opts = worker.peer_format_options({tether.Atom("format_schemas"): {b"ndarray": [0, 0], b"etf": [1, 1]}})
    assert opts == {"versions": {"formats": {"ndarray": [0, 0]}}}
    with pytest.raises(tether.TetherError, match="(?i)upgrade"):
        tether.encode(np.zeros(3), format="ndarray", reader="beam", options=opts)
    assert worker.peer_format_options({tether.Atom("format_schemas"): {b"ndarray": [1, 1]}}) is None


def test_read_stats_refuses_odd_targets_with_stats_errors_and_never_waits_on_a_fifo(tmp_path):
    cases = {"list.json": "[1]", "deep.json": "[" * 100_000 + "]" * 100_000, "worker.json": '{"worker": 5}'}
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(W.StatsError, match="holds a JSON list, not a worker's stats"):
        W.read_stats(tmp_path / "list.json")
    with pytest.raises(W.StatsError, match="cannot read worker stats .*RecursionError"):
        W.read_stats(tmp_path / "deep.json")
    with pytest.raises(W.StatsError, match="is not running"):
        W.read_stats(tmp_path / "worker.json")
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(W.StatsError, match="is not a regular file"):
        W.read_stats(tmp_path / "fifo")  # opened without waiting for a writer
    with pytest.raises(W.StatsError, match="is not a regular file"):
        W.read_stats("/dev/zero")
    for target in (None, 1.5, b"/tmp", True):
        with pytest.raises(W.StatsError, match="target must be a worker's OS pid"):
            W.read_stats(target)
    with pytest.raises(W.StatsError, match="timeout must be a non-negative number"):
        W.read_stats(tmp_path / "list.json", timeout="2")


def test_worker_call_times_the_workers_own_work_not_the_handler():
    # An operator's trial: a handler sleeping 3 ms fired tether's throughput alert, since worker_call
    # counted the handler's time as the worker's.
    tether.metrics.enable()
    tether.metrics.reset()
    w = W.Worker({"beam_handlers": beam_handlers}, shm_threshold=4096)
    try:
        w.handle(tether.dumps((A("call"), 1, b"beam_handlers", b"sleep", [0.05], {}), format="etf"))
        assert w.last_call["handler_s"] >= 0.05
    finally:
        w.close()
    (row,) = [r for r in tether.metrics.snapshot()["operations"] if r["op"] == "worker_call" and r["count"]]
    assert row["seconds"] < 0.02  # reading and writing a few bytes, not the 50 ms the handler slept


def test_stats_taken_during_a_call_say_what_runs_and_for_how_long():
    # An operator's trial: stats during a long call read calls 0 and an empty last_call, and nothing more.
    import threading
    import time

    w = W.Worker({"beam_handlers": beam_handlers}, shm_threshold=4096)
    try:
        assert w.stats()["worker"]["running"] is None
        call = threading.Thread(target=w.handle,
                                args=(tether.dumps((A("call"), 1, b"beam_handlers", b"sleep", [0.3], {}), format="etf"),))
        call.start()
        time.sleep(0.1)
        running = w.stats()["worker"]["running"]
        call.join()
        assert running["function"] == "beam_handlers.sleep" and 0.05 < running["seconds"] < 0.3
        assert w.stats()["worker"]["running"] is None
    finally:
        w.close()


def _worker_stats(client, ident):
    client.send((A("stats"), ident))
    reply = client.recv()
    assert reply[:2] == ("reply", ident), reply  # the first message back is the stats reply: nothing answered before
    return reply[2][1]["worker"]


def test_release_shm_drops_the_arguments_mapping_and_the_regions_and_is_never_answered(stats_client):
    assert "release_shm" in stats_client.ready[1]["notices"]
    path = f"/dev/shm/tether-test-{os.getpid()}-release"
    data = tether.dumps([b"\x01" * (1 << 20)], format="etf", reader="beam")
    with open(path, "wb") as f:
        f.write(data)
    try:
        stats_client.send((A("call"), 1, b"beam_handlers", b"echo", (A("shm"), path.encode(), len(data)), {}))
        assert stats_client.recv()[:2] == ("reply", 1)
        assert _worker_stats(stats_client, 2)["args_mapped_bytes"] == len(data)
        big = stats_client.ok("big_binary", 100_000)  # over --shm-threshold: the reply goes through a region
        assert big[0] == "$tether_shm"
        region_path = big[1]
        assert os.path.exists(region_path)
        stats_client.send((A("release_shm"),))
        assert _worker_stats(stats_client, 3)["args_mapped_bytes"] == 0
        assert not os.path.exists(region_path)
        # The BEAM's next large call writes a new file: mapped afresh.
        os.unlink(path)
        with open(path, "wb") as f:
            f.write(data)
        stats_client.send((A("call"), 4, b"beam_handlers", b"echo", (A("shm"), path.encode(), len(data)), {}))
        assert stats_client.recv()[:2] == ("reply", 4)
        assert _worker_stats(stats_client, 5)["args_mapped_bytes"] == len(data)
    finally:
        os.unlink(path)


def test_the_beams_stats_reply_carries_non_finite_figures_as_atoms_and_stats_json_as_strings():
    # snapshot() writes NaN as "NaN" for strict JSON; the BEAM's {stats} reply keeps docs/format.md §8's atoms.
    from tether import metrics

    metrics.alert("stats_nan", "odd", {"nan": float("nan")}, "look")
    w = W.Worker({})
    try:
        (fired,) = [a for a in tether.loads(w.stats_reply(7))[2][1]["alerts"] if a["name"] == "stats_nan"]
        assert fired["figures"]["nan"] == A("nan")
        (strict,) = [a for a in w.stats()["alerts"] if a["name"] == "stats_nan"]
        assert strict["figures"]["nan"] == "NaN"
    finally:
        metrics.clear("stats_nan")
        w.close()
