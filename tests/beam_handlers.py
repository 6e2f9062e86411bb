"""Handlers the BEAM tests and the demo call through tether.worker."""

from __future__ import annotations

import os

import numpy as np


def add(a, b):
    return a + b


def echo(value):
    return value


def fail(message):
    raise ValueError(message.decode() if isinstance(message, bytes) else message)


def crash():
    os._exit(3)


def crash_after(seconds):
    import time

    time.sleep(seconds)
    os._exit(3)


def scale(tensor, factor):
    return np.asarray(tensor) * factor


def describe(value):
    kind = type(value).__name__
    if isinstance(value, np.ndarray):
        return (kind, str(value.dtype), list(value.shape), bool(value.flags.writeable))
    return (kind, len(value) if hasattr(value, "__len__") else None)


def rows(n):
    return [{"id": i, "name": f"row{i}", "score": i * 0.5} for i in range(n)]


def _private():
    return "never callable from BEAM"


# -- BEAM worker and pool tests (beam/test/tether_worker_test.exs, tether_pool_test.exs)


def sleep(seconds):
    import time

    time.sleep(seconds)
    return seconds


def nested_arrays():
    emb = np.arange(12, dtype=np.float32).reshape(3, 4)
    return {"emb": emb, "ids": [1, 2, 3], "pair": (np.array([1, 2], dtype=np.int64), np.array([0.5], dtype=np.float64))}


def transposed():
    # arr.T is F-contiguous: the BEAM must still get row-major values.
    return np.arange(6, dtype=np.float32).reshape(2, 3).T


def byte_swapped():
    # Big-endian, and a big-endian transpose: the BEAM must get native-endian values with an Nx type.
    return np.arange(3, dtype=">f4"), np.arange(6, dtype=">i8").reshape(2, 3).T


def table(n):
    import pyarrow as pa

    return pa.table({"id": list(range(n)), "name": [f"r{i}" for i in range(n)]})


def table_info(t):
    return (type(t).__name__, t.num_rows, list(t.column_names))


def non_finite():
    return [float("nan"), float("inf"), float("-inf"), 1.5]


def is_nan(x):
    import math

    return isinstance(x, float) and math.isnan(x)


async def async_add(a, b):
    import asyncio

    await asyncio.sleep(0.01)
    return a + b


def log_warning(message):
    import logging

    logging.getLogger("beam_handlers.audit").warning("%s", message.decode() if isinstance(message, bytes) else message)
    return "logged"


def log_with_extra(request_id):
    import logging

    logging.getLogger("beam_handlers.audit").warning(
        "saved", extra={"request_id": request_id.decode(), "rows": 3, "ratio": 0.5, "ok": True, "shape": (2, 3),
                        "nan": float("nan")})
    return "logged"


def log_info(message):
    import logging

    logging.getLogger("beam_handlers.audit").info("%s", message.decode() if isinstance(message, bytes) else message)
    return "logged"


def warn(text):
    import warnings

    warnings.warn(text.decode() if isinstance(text, bytes) else text, UserWarning, stacklevel=1)
    return "warned"


def many_atoms(n, prefix):
    from tether import Atom

    prefix = prefix.decode() if isinstance(prefix, bytes) else prefix
    return [Atom(f"{prefix}{i}") for i in range(n)]


def unencodable():
    return object()


def complex_twice(z):
    """``z`` (an Elixir %Complex{}) doubled, with its Python type's name."""
    return [type(z).__name__, 2 * z, complex(float("inf"), float("nan"))]


def os_pid():
    return os.getpid()


def touch(path):
    path = path.decode() if isinstance(path, bytes) else path
    with open(path, "w") as f:
        f.write("ran")
    return path


def sleep_ignoring_cancel(seconds):
    # SIGUSR1 stays pending while blocked: the BEAM has to kill this worker.
    import signal
    import time

    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    time.sleep(seconds)
    return seconds


# -- Python protocol tests of the worker (tests/test_worker.py)


def two_arrays():
    return (np.arange(3, dtype=np.int32), np.ones((2, 2), dtype=np.float64))


def dataframe(n):
    import pandas as pd

    return pd.DataFrame({"id": list(range(n)), "score": [i / 2 for i in range(n)]})


def series(n):
    import pandas as pd

    return pd.Series([i / 2 for i in range(n)], name="score")


def unmapped(kind):
    import datetime

    return {b"timedelta": datetime.timedelta(seconds=1), b"nan_key": {float("nan"): 1}}[kind]


async def async_sleep(seconds):
    import asyncio

    await asyncio.sleep(seconds)
    return seconds


def sleep_announced(seconds):
    """Log "started", then sleep: a test that cancels waits for the log, not a guessed delay."""
    import logging
    import time

    logging.getLogger("beam_handlers.started").warning("started")
    time.sleep(seconds)
    return seconds


_CAUGHT: list = []


def sleep_catching_cancel(seconds):
    """As sleep_announced, catching the cancel the documented way (then letting it go on)."""
    import logging
    import time

    from tether.worker import Cancelled

    logging.getLogger("beam_handlers.started").warning("started")
    try:
        time.sleep(seconds)
    except Cancelled:
        _CAUGHT.append("tether.worker.Cancelled")
        raise
    return seconds


def caught_cancels():
    return list(_CAUGHT)


async def async_sleep_announced(seconds):
    """As sleep_announced, awaiting."""
    import asyncio
    import logging

    logging.getLogger("beam_handlers.started").warning("started")
    await asyncio.sleep(seconds)
    return seconds


def write_stderr(text):
    import sys

    text = bytes(text).decode() if isinstance(text, (bytes, memoryview)) else text
    print(f"print: {text}", file=sys.stderr)
    os.write(2, f"fd2: {text}\n".encode())  # as C code writes: under Python's sys.stderr
    os.write(1, f"fd1: {text}\n".encode())  # fd 1 is not the protocol's
    return "written"


def big_binary(n):
    return b"\xab" * n


def many_arrays(k, n):
    return [np.full(n, i, dtype=np.int64) for i in range(k)]


def types_of(value):
    """The value's shape as type names, nested as the value is (arrays with dtype and shape)."""
    if isinstance(value, dict):
        return {k: types_of(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)([types_of(v) for v in value])
    if isinstance(value, np.ndarray):
        return ("ndarray", str(value.dtype), list(value.shape), bool(value.flags.writeable))
    if type(value).__name__ == "Table":
        return ("Table", value.num_rows, list(value.column_names))
    if isinstance(value, float):
        return ("float", "nan" if value != value else repr(value))
    return type(value).__name__


def log_for(seconds):
    """Log warnings (and write stderr lines) as fast as it can for ``seconds``: a cancel lands mid-message."""
    import logging
    import sys
    import time

    log = logging.getLogger("beam_handlers.chatty")
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        log.warning("message %d %s", n, "x" * 2000)
        print(f"line {n}", file=sys.stderr)
        n += 1
    return n


def raise_alert(name, ratio):
    """Fire (and leave firing) a tether.metrics alert: the worker forwards it to the BEAM."""
    import tether.metrics

    name = name.decode() if isinstance(name, bytes) else name
    tether.metrics.clear(name)
    return tether.metrics.alert(name, "throughput fell", {"ratio": ratio, "worst": float("inf")}, "look at the disk")


def clear_alert(name, ratio=None):
    """Clear a tether.metrics alert (with the ratio now, when given): the worker forwards it to the BEAM."""
    import tether.metrics

    name = name.decode() if isinstance(name, bytes) else name
    if ratio is None:
        return tether.metrics.clear(name)
    return tether.metrics.clear(name, {"ratio": ratio}, "throughput back")


class Negotiated:
    """A user type this worker writes at version 2; a BEAM that reads version 1 gets version 1."""

    def __init__(self, x, y):
        self.x, self.y = x, y


def _register_negotiated():
    import tether

    if tether.types.get("test.Negotiated") is None:
        tether.types.register_type(
            Negotiated, name="test.Negotiated", version=2,
            encode=lambda p: {"x": p.x, "y": p.y}, decode=lambda w: Negotiated(w["x"], w["y"]),
            migrations={1: lambda w: {"x": w["x"], "y": 0.0}},
            downgrades={2: lambda w: {"x": w["x"]}},
        )


_register_negotiated()


def negotiated(x, y):
    """A test.Negotiated value (version 2 here), nested in a map and a list."""
    return {"point": Negotiated(x, y), "many": [Negotiated(x, y)]}


class Pair:
    """A user type holding two others: their versions are the reader's too."""

    def __init__(self, a, b):
        self.a, self.b = a, b


def negotiated_everywhere(x, y):
    """test.Negotiated values in a set, as a map key and inside another type's value."""
    import tether

    if tether.types.get("test.Pair") is None:
        tether.types.register_type(Pair, name="test.Pair", version=1, encode=lambda p: {"a": p.a, "b": p.b},
                                   decode=lambda w: Pair(w["a"], w["b"]))
    return {"set": {Negotiated(x, y)}, "keyed": {Negotiated(x, y): "k"}, "pair": Pair(Negotiated(x, y), None)}


class Older:
    """A user type this worker knows at version 1 only; a BEAM at version 2 downgrades what it sends."""

    def __init__(self, a):
        self.a = a


def _register_older():
    import tether

    if tether.types.get("test.Older") is None:
        tether.types.register_type(Older, name="test.Older", version=1,
                                   encode=lambda o: {"a": o.a}, decode=lambda w: Older(w["a"]))


_register_older()


def older_fields(value, padding=b""):
    """What arrived: the Python type's name and its field, so the BEAM sees the value was decoded as Older."""
    return {"type": type(value).__name__, "a": value.a, "padding": len(padding)}


def frame_user_metadata(path):
    """The user metadata and lineage of a frame file the BEAM wrote, as Python's reader sees them.

    A path, not the frame: a binary argument that is a whole frame arrives decoded (docs/format.md §8).
    """
    import tether

    with open(path, "rb") as f:
        info = tether.inspect(f.read())
    return {"user": info.user, "lineage": info.lineage}


def nan_frame():
    """A frame Python writes for a dict holding NaN: the BEAM decodes the embedded frame (docs/format.md §4)."""
    import tether

    return tether.dumps({"loss": float("nan"), "best": float("-inf"), "ok": 1.5})


def sleep_with(seconds, payload):
    """Sleep with ``payload`` in hand (large: it came through the arguments file); return its size."""
    import time

    time.sleep(seconds)
    return len(payload)


def big_despite_cancel(seconds, n):
    """Sleep, swallow the cancel, and return ``n`` bytes anyway: a large reply the BEAM drops."""
    import time

    try:
        time.sleep(seconds)
    except BaseException:  # noqa: BLE001 - the cancel, swallowed on purpose
        pass
    return b"\xab" * n


def region_refs(copies, elsewhere=None):
    """A reply naming one raw frame written in this worker's private directory ``copies`` times, as a hostile
    handler could; or, with ``elsewhere``, naming that file instead (another worker's, say)."""
    import sys

    import tether
    from tether import Atom

    frame = bytes(tether.dumps(b"\x00" * 100_000, format="raw", reader="beam"))
    if elsewhere is not None:
        path = bytes(elsewhere)
    else:
        path = os.path.join(sys.argv[sys.argv.index("--stats-dir") + 1], "tether-handmade").encode()
        with open(path, "wb") as f:
            f.write(frame)
    return [(Atom("$tether_shm"), path, 0, len(frame))] * copies


_LEASED = []  # the descriptors whose leases must outlive the call


def leased_region():
    """A reply naming a region in this worker's private directory under a write lease this process keeps: the
    BEAM's open(2) of it blocks until the kernel breaks the lease (45 s), as a hostile handler could make it."""
    import fcntl
    import signal
    import sys

    import tether
    from tether import Atom

    signal.signal(signal.SIGIO, signal.SIG_IGN)  # the lease break notice must not end the process
    frame = bytes(tether.dumps(b"lease", format="raw", reader="beam"))
    path = os.path.join(sys.argv[sys.argv.index("--stats-dir") + 1], "tether-leased")
    with open(path, "wb") as f:
        f.write(frame)
    fd = os.open(path, os.O_RDONLY)
    fcntl.fcntl(fd, 1024, fcntl.F_WRLCK)  # F_SETLEASE
    _LEASED.append(fd)
    return (Atom("$tether_shm"), path.encode(), 0, len(frame))


def zeros_after(seconds, n):
    """``n`` zero bytes as a NumPy array, after ``seconds``: a large reply whose read a deadline can cut."""
    import time

    time.sleep(seconds)
    return np.zeros(n, dtype=np.uint8)
