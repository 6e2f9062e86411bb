"""Worker values at the edges, as a user trial from an Elixir app met them: each held by a test that failed before its fix.

1. A reply that contains itself failed only after ~18 s and 2 GB; it fails at once now, and deep
   (finite) values still round-trip.
2. A generator returned by a handler ran as an asyncio task; now only awaitables are awaited and a
   generator is an EncodeError that says to return a list.
3. Argument errors and warnings named paths in the request tuple (``$[4][0][1]``), not the
   argument's (``$[0][1]``).
4. Each distinct text-like charlist argument was a warning of its own and an entry in a warnings
   registry; now once per worker for each function and argument, and once per call site elsewhere.
5. ``Tether.table/1`` columns of Elixir Dates (and Times) had no Arrow type.
6. ``pd.NaT`` in a reply was "Cannot encode nan at $.year".
7. A worker whose handler left a non-daemon thread running never exited after the BEAM closed the port.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys
import textwrap
import time
import types
import warnings
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

import tether
from tether import Atom
from tether import arrow
from tether.worker import Worker

ROOT = Path(__file__).resolve().parent.parent
MODULE = "edges_handlers"


def handlers(**functions: Any) -> types.ModuleType:
    """A handler module the worker may call: ``functions`` as its own (their ``__module__`` is its name)."""
    module = types.ModuleType(MODULE)
    for name, fn in functions.items():
        fn.__module__ = MODULE
        setattr(module, name, fn)
    return module


def call(worker: Worker, function: str, *args: Any, opts: dict | None = None) -> Any:
    """The ``{ok, Value}`` or ``{error, Reason}`` of one call, as a frame request."""
    request = (Atom("call"), 1, MODULE.encode(), function.encode(), list(args), opts or {})
    reply = tether.loads(worker.handle(tether.dumps(request, format="etf")))
    assert reply[0] == "reply", reply
    return reply[2]


def raw_call(worker: Worker, function: str, args_etf: bytes) -> Any:
    """A call whose Args are given as ETF bytes (terms Python would not write, such as #{1 => 1, 1.0 => 2})."""
    def binary(text: str) -> bytes:
        return b"m" + len(text).to_bytes(4, "big") + text.encode()

    body = b"h\x06w\x04call" + b"a\x01" + binary(MODULE) + binary(function) + args_etf + b"t\x00\x00\x00\x00"
    # A compact message, as the BEAM sends its calls (a frame Python wrote marks its lists: no charlists).
    reply = tether.worker.decode(worker.handle(tether.worker.compact(tether.etf.OpaqueTerm(body[0], body))),
                                 {"binaries": "tagged"})
    return reply[2]


def charlist(text: str) -> bytes:
    return b"k" + len(text).to_bytes(2, "big") + text.encode()


def etf_list(*items: bytes) -> bytes:
    return b"l" + len(items).to_bytes(4, "big") + b"".join(items) + b"j"


def nested(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.fixture
def worker():
    made: list[Worker] = []

    def make(**functions: Any) -> Worker:
        w = Worker({MODULE: handlers(**functions)})
        made.append(w)
        return w

    yield make
    for w in made:
        w.close()


# ------------------------------------------------------------------ 1. values that contain themselves


def test_encoding_a_list_that_contains_itself_fails_at_once_with_its_path():
    loop: list = []
    loop.append(loop)
    started = time.perf_counter()
    with pytest.raises(tether.EncodeError, match=r"The list at \$\[0\] is the list that holds it at \$: .*Break"):
        tether.etf.encode(loop)
    with pytest.raises(tether.EncodeError, match="contains itself"):
        tether.etf.encode(loop, nan="atom")  # the Python encoder's path
    assert time.perf_counter() - started < 1.0  # it was 6.8 s and 1.2 GB


def test_a_cycle_deep_inside_a_map_is_named_where_it_closes():
    inner = {"a": [1, 2]}
    inner["a"].append(inner)
    with pytest.raises(tether.EncodeError, match=r"The dict at \$\.x\.a\[2\] is the dict that holds it at \$\.x:"):
        tether.etf.encode({"x": inner, "y": object()})


def test_dumps_of_a_value_that_contains_itself_ends_as_etf_or_pickle():
    # format="etf" looked for NaN to write as atoms after the encoder's error, and walked the cycle for ever.
    loop: list = [1.0]
    loop.append(loop)
    with pytest.raises(tether.EncodeError, match="contains itself"):
        tether.dumps(loop, format="etf")
    marked = {"loss": float("nan")}
    marked["self"] = marked
    with pytest.warns(tether.FallbackWarning, match="contains itself"):
        frame = tether.dumps(marked)  # auto: pickle keeps cycles
    back = tether.loads(frame, allow_pickle=True)
    assert back["self"] is back and back["loss"] != back["loss"]


def test_a_reply_that_contains_itself_is_an_encode_error_within_a_second(worker):
    def loop():
        value: list = []
        value.append(value)
        return value

    w = worker(loop=loop)
    started = time.perf_counter()
    reply = call(w, "loop")
    assert time.perf_counter() - started < 1.0  # it was 17.8 s, with the worker's RSS at 2.2 GB
    assert reply[0] == "error" and reply[1][:3] == (
        Atom("python"), "EncodeError", "EncodeError: $[0] contains itself; a reply must be a finite term.")


@pytest.mark.parametrize("depth", [100_000, 100_001, 300_000])
def test_deep_finite_values_still_encode_and_round_trip(depth):
    # Limits.max_depth is 4,000,000 ("BEAM sends lists nested a million deep"): finite terms up to it encode.
    value = nested(depth)
    data = tether.etf.encode(value)
    assert len(data) == 1 + 5 * depth + 1 + depth
    assert tether.etf.encode(tether.etf.decode(data)) == data


def test_a_deep_echo_through_the_worker(worker):
    w = worker(echo=lambda value: value)
    reply = call(w, "echo", nested(100_000))
    assert reply[0] == "ok"
    depth, value = 0, reply[1]
    while value:
        value, depth = value[0], depth + 1
    assert depth == 100_000


def test_the_cycle_check_allows_the_depth_the_encoders_allow():
    from tether._etf.encoder import check_finite
    from tether._etf.options import Options

    limits = tether.Limits(max_depth=3)
    assert check_finite([[[[1]]]], 3) == 4  # it refused this one level early, which both encoders take
    for nan in ("error", "atom"):  # the C encoder, and the Python one
        tether._etf.encode([[[[1]]]], Options(limits=limits, nan=nan))
        with pytest.raises(tether.EncodeError, match="Nesting deeper than 3"):
            tether._etf.encode([[[[[1]]]]], Options(limits=limits, nan=nan))
    with pytest.raises(tether.EncodeError, match="Nesting deeper than 3"):
        check_finite([[[[[1]]]]], 3)


def test_nesting_past_max_depth_fails_with_a_short_path():
    was = tether.get_limits()
    tether.set_limits(max_depth=1_000)
    try:
        for options in ({}, {"nan": "atom"}):
            with pytest.raises(tether.EncodeError, match=r"Nesting deeper than 1000 at \$\[0\]") as caught:
                tether.etf.encode(nested(1_001), **options)
            assert "more steps" in str(caught.value) and len(str(caught.value)) < 300
    finally:
        tether.set_limits(was)


# ------------------------------------------------------------------ 2. generators are not coroutines


def test_a_generator_handler_is_not_run_as_a_task_and_says_to_return_a_list(worker):
    ran: list[int] = []

    def steps(n):
        for i in range(n):
            ran.append(i)
            yield

    def rows(n):
        for i in range(n):
            yield {"i": i}

    w = worker(steps=steps, rows=rows)
    for function in ("steps", "rows"):  # {:ok, nil} and "RuntimeError: Task got bad yield" before
        reply = call(w, function, 3)
        assert reply[0] == "error" and reply[1][1] == "EncodeError", reply
        assert "builtins.generator at $" in reply[1][2] and "return list(it)" in reply[1][2]
    assert ran == []  # the body never ran


def test_awaitables_are_still_awaited(worker):
    async def coroutine(n):
        await asyncio.sleep(0)
        return n + 1

    class Later:
        def __await__(self):
            yield from asyncio.sleep(0).__await__()
            return "later"

    w = worker(coroutine=coroutine, later=lambda: Later())
    assert call(w, "coroutine", 1) == (Atom("ok"), 2)
    assert call(w, "later") == (Atom("ok"), "later")


def test_iterators_anywhere_in_a_value_name_the_fix():
    with pytest.raises(tether.MappingError, match=r"builtins\.map at \$\.ids as ETF: an iterator .*list\(it\)"):
        tether.etf.encode({"ids": map(str, [1, 2])})


# ------------------------------------------------------------------ 3. argument paths


def test_a_map_key_collision_in_an_argument_names_the_arguments_path(worker):
    w = worker(echo=lambda value: value)
    colliding = b"t\x00\x00\x00\x02" + b"a\x01a\x01" + b"F?\xf0\x00\x00\x00\x00\x00\x00a\x02"  # #{1 => 1, 1.0 => 2}
    reply = raw_call(w, "echo", etf_list(etf_list(b"a\x01", colliding)))
    assert reply[0] == "error" and reply[1][0] == "bad_request"
    assert "treats as equal at $[0][1] (offset" in reply[1][1], reply


def test_errors_outside_the_arguments_name_the_request_part():
    from tether.worker import _call_path

    assert _call_path("at $[5].tables (offset 9)") == "at Opts.tables (offset 9)"
    assert _call_path("Charlist at $ (offset 1)") == "Charlist at $ (offset 1)"


# ------------------------------------------------------------------ 4. charlist warnings, bounded


def test_charlist_arguments_warn_once_per_function_and_argument(worker):
    w = worker(echo=lambda *values: len(values))
    registry_before = dict(vars(sys.modules["tether.worker"]).get("__warningregistry__", {}))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")  # the registry-keeping action that grew by one entry per value
        for i in range(3000):
            reply = raw_call(w, "echo", etf_list(charlist(f"name{i}")))
            assert reply == (Atom("ok"), 1)
        raw_call(w, "echo", etf_list(charlist("first"), charlist("second")))  # a new position: one more
    texts = [str(c.message) for c in caught if issubclass(c.category, tether.LossyConversionWarning)]
    assert len(texts) == 2, texts
    assert texts[0].startswith("Charlist at $[0] ('name0') in a call to edges_handlers.echo looks like text")
    assert "Send text as an Elixir string" in texts[0] and "once per worker" in texts[0]
    assert texts[1].startswith("Charlist at $[1] ('second')")
    assert dict(vars(sys.modules["tether.worker"]).get("__warningregistry__", {})) == registry_before
    assert not any("name1" in str(key) for key in warnings.onceregistry)


def test_decoding_charlists_elsewhere_warns_once_per_line_without_a_growing_registry():
    registry = vars(sys.modules[__name__]).setdefault("__warningregistry__", {})
    before = len(registry)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        for i in range(3000):
            assert tether.etf.decode(b"\x83" + charlist(f"text{i}")) == list(f"text{i}".encode())
    assert len(caught) == 1 and "Charlist at $ ('text0')" in str(caught[0].message)
    assert caught[0].filename == __file__
    assert len(registry) == before


# ------------------------------------------------------------------ 5. Date and Time columns


def test_date_and_time_columns_from_the_beam_are_date32_and_time64():
    rows = [{Atom("d"): dt.date(2024, 1, 1), Atom("t"): dt.time(10, 11, 12, 500000)},
            {Atom("d"): None, Atom("t"): None}]
    table = arrow.from_etf(tether.etf.encode(rows), float_atoms=True)  # as the worker reads Tether.table/1
    assert table.schema.types == [pa.date32(), pa.time64("us")]
    assert table.to_pylist() == [{"d": dt.date(2024, 1, 1), "t": dt.time(10, 11, 12, 500000)},
                                 {"d": None, "t": None}]
    _, columns = arrow.to_table({"d": [dt.date(2024, 2, 29)], "when": [dt.datetime(2024, 1, 1)]})
    assert columns.schema.types == [pa.date32(), pa.timestamp("us")]


def test_date32_tables_go_back_as_dates(worker):
    w = worker(dates=lambda: pa.table({"d": pa.array([dt.date(2024, 1, 1)], pa.date32()),
                                       "t": pa.array([dt.time(10, 11, 12)], pa.time64("us"))}))
    assert call(w, "dates", opts={Atom("tables"): Atom("rows")}) == (
        Atom("ok"), [{"d": dt.date(2024, 1, 1), "t": dt.time(10, 11, 12)}])


# ------------------------------------------------------------------ 6. pandas NaT


def test_nat_in_a_reply_is_an_error_naming_nat_and_its_path(worker):
    pd = pytest.importorskip("pandas")
    w = worker(nat=lambda: {"at": pd.NaT, "n": 1})
    reply = call(w, "nat")
    assert reply[0] == "error" and reply[1][1] == "EncodeError"
    assert "Cannot encode pandas NaT (a missing time) at $.at" in reply[1][2] and "None" in reply[1][2]
    assert "nan" not in reply[1][2].split("NaT", 1)[0]


# ------------------------------------------------------------------ 7. exiting with a thread left running


def test_the_worker_exits_at_eof_although_a_handler_left_a_thread_running(tmp_path):
    (tmp_path / "linger_handlers.py").write_text(textwrap.dedent("""
        import atexit, threading, time

        def start(marker):
            atexit.register(lambda: open(marker, "w").write("atexit ran"))
            threading.Thread(target=time.sleep, args=(3600,), name="stuck", daemon=False).start()
            return True
    """))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(Path(tether.__file__).parent.parent)])}
    proc = subprocess.Popen([sys.executable, "-m", "tether.worker", "--module", "linger_handlers"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        def send(term: Any) -> None:
            data = tether.dumps(term, format="etf", checksum="crc32")
            proc.stdin.write(len(data).to_bytes(4, "big") + data)
            proc.stdin.flush()

        def recv() -> Any:
            while True:
                n = int.from_bytes(proc.stdout.read(4), "big")
                message = tether.worker.decode(proc.stdout.read(n))
                if message[0] != "log":
                    return message

        send((Atom("hello"), {Atom("tether"): tether.__version__, Atom("frame_versions"): [1]}))
        assert recv()[0] == "ready"
        marker = tmp_path / "atexit.txt"
        send((Atom("call"), 1, b"linger_handlers", b"start", [str(marker)], {}))
        assert recv() == (Atom("reply"), 1, (Atom("ok"), True))
        proc.stdin.close()  # the BEAM closes the port
        started = time.monotonic()
        assert proc.wait(timeout=5) == 0
        assert time.monotonic() - started < 2.5
        assert marker.read_text() == "atexit ran"  # what a normal exit runs still ran
        assert b"1 thread(s) a handler left running: stuck" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def test_an_idle_thread_pool_a_handler_left_is_not_a_stuck_thread():
    # Its idle threads are not daemons: Python's exit ends them through threading's exit hooks, which
    # the worker's exit now runs first. It waited 0.5 s and named them as stuck.
    code = textwrap.dedent("""
        import concurrent.futures, sys, time
        from tether import worker
        concurrent.futures.ThreadPoolExecutor(2).submit(lambda: 1).result()
        started = time.monotonic()
        try:
            worker._exit(0)
        except SystemExit:
            print(f"{time.monotonic() - started:.3f}")
            raise
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "exiting without waiting" not in out.stderr, out.stderr
    assert float(out.stdout) < 0.3
