"""Region misuse from the shared-memory trial: each is a typed error that says what to do, and changes nothing.

A stale FrameRef released the newer frame in its slot; sizes past 2**62 raised
struct.error or OverflowError; writing through a read-only attachment raised
TypeError, or an unhelpful "Invalid argument".
"""

from __future__ import annotations

import os

import pytest

import tether
from tether.shm import Region, RegionPool


def test_a_stale_frame_ref_releases_nothing():
    with Region.create(1 << 16) as region:
        first = tether.dump_into("first", region)
        region.release(first)
        second = tether.dump_into("second", region)
        assert second.slot == first.slot
        with pytest.raises(tether.RegionError, match="no longer holds that frame"):
            region.release(first)
        assert tether.loads(region) == "second"
        region.release(second)


@pytest.mark.parametrize("call", [
    lambda: Region.create(2**70), lambda: Region.create(2**63),
    lambda: RegionPool(sweep=False).acquire(2**70),
], ids=["create-2**70", "create-2**63", "acquire-2**70"])
def test_sizes_past_what_a_file_takes_are_validation_errors(call):
    with pytest.raises(tether.ValidationError, match="2\\*\\*6[12]"):
        call()


def test_growing_past_what_a_file_takes_is_a_validation_error():
    with Region.create(1 << 16) as region, pytest.raises(tether.ValidationError, match="2\\*\\*62"):
        region.grow(2**70)


@pytest.mark.parametrize("write", [lambda r: r.reset(), lambda r: r.release(0), lambda r: r.grow(1 << 20),
                                   lambda r: r.prefault()], ids=["reset", "release", "grow", "prefault"])
def test_writing_through_a_read_only_attachment_says_so(write):
    with Region.create(1 << 16) as region:
        tether.dump_into("kept", region)
        reader = Region.attach(region.name)
        try:
            with pytest.raises(tether.RegionError, match="attached read-only"):
                write(reader)
        finally:
            reader.close()
        assert tether.loads(region) == "kept"


def test_a_forked_child_gets_a_region_of_its_own_and_leaves_its_parents_alone():
    import multiprocessing as mp

    pool = RegionPool(max_regions=1, sweep=False)
    region = pool.acquire(1 << 16)
    tether.dump_into("parent's", region)
    pool.release(region)  # warm in the pool
    ctx = mp.get_context("fork")
    out = ctx.Queue()

    def child():
        mine = pool.acquire(1 << 16)
        out.put((mine.name, region.created))
        with region:  # the parent's: a child's with-block must not remove it
            pass
        mine.close()
        mine.unlink()

    proc = ctx.Process(target=child)
    proc.start()
    name, created_in_child = out.get(timeout=60)
    proc.join(60)
    try:
        assert name != region.name and created_in_child is False
        assert os.path.exists(region.path) and pool.acquire(1 << 16) is region  # still the parent's, and warm
    finally:
        pool.release(region)
        pool.close()


def test_a_region_cannot_be_pickled_and_says_what_to_send():
    import pickle

    with Region.create(1 << 16) as region, pytest.raises(tether.RegionError, match="send its name"):
        pickle.dumps(region)


def test_releasing_a_frame_twice_is_harmless():
    with Region.create(1 << 16) as region:
        ref = tether.dump_into("x", region)
        region.release(ref)
        region.release(ref)  # the slot is empty: nothing to drop, and nothing else dropped
        region.reset()
        region.release(ref)


def test_a_pool_region_for_an_arrays_bytes_holds_its_frame_without_growing():
    import numpy as np

    value = np.ones(1 << 19)  # 4 MiB
    with RegionPool(max_regions=1, prefault=False, sweep=False) as pool:
        region = pool.acquire(value.nbytes)
        capacity = region.capacity
        tether.dump_into(value, region)
        assert region.capacity == capacity < value.nbytes * 1.01  # it doubled at this write before
        pool.release(region)
