"""The demo: handlers BEAM calls in ``make demo``, and a Python-only tour.

``make demo`` runs ``beam/demo.exs``: Elixir starts ``python -m tether.worker
--module tether.demo`` and calls the functions below. ``python -m tether.demo``
shows dumps, inspect and loads on each kind of data without BEAM.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from typing import Any

import numpy as np

import tether


# ---------------------------------------------------------------- handlers BEAM calls


def echo(value: Any) -> Any:
    """Send the value back as it arrived.

    Examples
    --------
    >>> echo({"id": 1, "tags": [tether.Atom("a")]})
    {'id': 1, 'tags': [Atom('a')]}
    """
    return value


def to_arrow(rows: list) -> Any:
    """A list of maps from Elixir, returned as an Arrow table (BEAM receives an IPC stream).

    Examples
    --------
    >>> to_arrow([{"id": 1}, {"id": 2}]).column("id").to_pylist()
    [1, 2]
    """
    return tether.arrow.to_table(rows)[1]


def describe(value: Any) -> dict:
    """How Python received ``value``, and which format the reply would take.

    Examples
    --------
    >>> describe(memoryview(b"ab"))
    {'python_type': 'memoryview', 'zero_copy': True, 'reply_format': 'raw'}
    >>> describe(np.zeros(3))["reply_format"]
    'ndarray'
    """
    zero_copy = isinstance(value, memoryview) or (isinstance(value, np.ndarray) and not value.flags.owndata)
    if isinstance(value, list) and value and isinstance(value[0], dict):
        reply = "arrow"  # what to_arrow returns
    else:
        reply = tether.encode(value, transport="shm").decision.format
    return {"python_type": type(value).__name__, "zero_copy": zero_copy, "reply_format": reply}


def pooled_write(nbytes: int, rounds: int = 3) -> float:
    """Seconds (median of ``rounds``) the worker's own pooled write of an ``nbytes`` float32 array takes.

    Python's share of the bulk path's limit (``make demo``): the array is
    already in memory and the region is warm, as in a worker's reply.

    Examples
    --------
    >>> 0.0 < pooled_write(1 << 16, rounds=1) < 1.0
    True
    """
    from tether.shm import RegionPool

    array = np.full(max(nbytes // 4, 1), 1.5, np.float32)
    pool = RegionPool(max_regions=1, prefault=False, sweep=False)
    try:
        times = []
        for _ in range(rounds + 1):  # the first write faults the new region in: not counted
            enc = tether.encode(array, format="ndarray", reader="beam", checksum="auto", transport="shm")
            region = pool.acquire(enc.nbytes)
            t0 = time.perf_counter()
            slot, _offset, view = region.reserve(enc.nbytes)
            try:
                enc.write_into(view)
            finally:
                view.release()
            region.commit(slot)
            times.append(time.perf_counter() - t0)
            pool.release(region)
        return sorted(times[1:])[len(times[1:]) // 2]
    finally:
        pool.close()


# ---------------------------------------------------------------- the Python-only tour


def _erl_rows(n: int) -> bytes | None:
    if shutil.which("erl") is None:
        return None
    with tempfile.NamedTemporaryFile(suffix=".etf") as f:
        expr = (
            f"B = term_to_binary([#{{id => I, price => I * 1.5, name => <<\"item\">>, tags => [a, b], pos => {{I, I}}}}"
            f" || I <- lists:seq(1, {n})]), ok = file:write_file(\"{f.name}\", B), halt()."
        )
        subprocess.run(["erl", "-noshell", "-eval", expr], check=True, timeout=120)
        return open(f.name, "rb").read()


def _show(label: str, value: Any, **kw: Any) -> None:
    t0 = time.perf_counter()
    frame = tether.dumps(value, **kw)
    t1 = time.perf_counter()
    info = tether.inspect(frame)
    t2 = time.perf_counter()
    out = tether.loads(frame, allow_pickle=True)
    t3 = time.perf_counter()
    d = tether.last_decision()
    zero_copy = isinstance(out, memoryview) or (isinstance(out, np.ndarray) and not out.flags.owndata)
    print(f"\n-- {label}")
    print(f"   chose {d.format}: {d.reason}" + (f" (fell back from {d.fallback_from})" if d.fallback_from else ""))
    print(f"   frame {len(frame):,} B, payload {info.payload_size:,} B, compression {info.compression}, "
          f"checksum {info.checksum}")
    print(f"   dumps {(t1 - t0) * 1e3:.2f} ms, inspect {(t2 - t1) * 1e6:.0f} µs, loads {(t3 - t2) * 1e3:.3f} ms"
          f"{', zero-copy view' if zero_copy else ''}")
    shown = repr(out)
    print(f"   -> {type(out).__name__}: {shown[:90]}{'...' if len(shown) > 90 else ''}")


def main() -> None:
    """The Python-only tour (``python -m tether.demo``): each kind of data through dumps, inspect and loads.

    Prints what ``format="auto"`` chose and why, the frame's size, compression and checksum, and
    the time each step took. With ``erl`` on ``PATH`` it also decodes 100,000 maps erl wrote.

    Examples
    --------
    ``python -m tether.demo`` (a few seconds; it writes frames of up to 256 MiB)
    """
    print(f"tether {tether.__version__} demo: dumps -> inspect -> loads for each kind of data")
    _show("bytes (64 MiB)", np.random.default_rng(1).bytes(64 << 20))
    _show("a str", "héllo from Python")
    _show("a big int", 2**100 + 1)
    _show("float32 tensor (256 MiB)", np.ones((8192, 8192), dtype="f4"))
    _show("Fortran-order int16 matrix", np.asfortranarray(np.arange(12, dtype="i2").reshape(3, 4)))
    _show("structured records", np.zeros(3, dtype=[("id", "<i8"), ("pos", "<f4", (2,)), ("tag", "S4")]))
    _show(
        "nested BEAM term",
        {"user": (tether.Atom("ok"), 42), "tags": [tether.Atom("a"), "b", b"\x00raw"], "n": None,
         "tail": tether.ImproperList([1, 2], tether.Atom("rest"))},
        metadata={"source": "demo"},
    )
    _show("a Python object (pickle; loads needs allow_pickle=True)", {1, 2, 3})
    rows = _erl_rows(100_000)
    if rows is not None:
        t0 = time.perf_counter()
        value = tether.etf.decode(rows)
        t1 = time.perf_counter()
        print(f"\n-- 100,000 maps made by erl's term_to_binary ({len(rows):,} B): "
              f"tether.etf.decode {(t1 - t0) * 1e3:.0f} ms")
        print(f"   first row: {value[0]}")
        _show("the same rows, framed", value, compression="zstd", transport="network")
    print("\nOK")


if __name__ == "__main__":
    main()
