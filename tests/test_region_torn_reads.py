"""A region's frame rewritten while a reader decodes or copies it is never returned (the shared-memory trial).

``loads(region, copy=True)`` checked the slot's seqlock only when it took the
view, before reading a byte: a writer reusing the region (the README's pool
pattern, acquire -> dump_into -> release) could rewrite the frame during the
copy, and 43-167 reads in a few hundred came back half old, half new, with no
error (frames over 1 MiB carry no payload checksum in memory). ``loads`` now
checks the slot again once the frame is read.
"""

from __future__ import annotations

import multiprocessing as mp
import time

import numpy as np
import pytest

import tether
from tether.shm import Region, RegionPool

N = 1 << 19  # 4 MiB of float64: no payload checksum under checksum="auto" in memory


def _value(k: int, kind: str):
    if kind == "arrow":  # pyarrow parses the stream: bytes changing under it crashed the reader
        return {"a": np.full(N // 8, k, dtype=np.int64), "b": np.full(N // 8, float(k))}
    return np.full(N, float(k))


def _writer(names: mp.Queue, stop: mp.Event, kind: str) -> None:
    pool = RegionPool(max_regions=1, sweep=False)
    region = pool.acquire(N * 8 + 4096)
    tether.dump_into(_value(0, kind), region)
    names.put(region.name)
    pool.release(region)
    k = 1
    while not stop.is_set():
        region = pool.acquire(N * 8 + 4096)
        tether.dump_into(_value(k, kind), region)
        pool.release(region)
        k += 1
    pool.close()


def _whole(value) -> bool:
    columns = list(value.values()) if isinstance(value, dict) else [value]
    first = float(np.asarray(columns[0]).flat[0])
    return all((np.asarray(c) == first).all() for c in columns)


@pytest.mark.parametrize("kind", ["ndarray", "arrow"])
def test_a_copy_of_a_region_rewritten_meanwhile_is_refused_never_torn(kind):
    ctx = mp.get_context("spawn")
    names, stop = ctx.Queue(), ctx.Event()
    writer = ctx.Process(target=_writer, args=(names, stop, kind))
    writer.start()
    try:
        region = Region.attach(names.get(timeout=60))
        whole = torn = refused = 0
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            try:
                value = tether.loads(region, copy=True)
            except tether.TetherError:
                refused += 1
                continue
            if _whole(value):
                whole += 1
            else:
                torn += 1
        region.close()
    finally:
        stop.set()
        writer.join(60)
    assert torn == 0, f"{torn} torn reads returned (whole {whole}, refused {refused})"
    assert whole + refused > 0


def test_a_region_read_while_nobody_writes_is_returned():
    with Region.create(N * 8 + 4096) as region:
        tether.dump_into(np.arange(N, dtype=np.float64), region)
        np.testing.assert_array_equal(tether.loads(region, copy=True), np.arange(N, dtype=np.float64))
        assert tether.loads(region).flags.writeable is False
