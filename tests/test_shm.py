"""Shared-memory regions: lifecycle, commit protocol, processes, crashes, hostile peers, the pool."""

from __future__ import annotations

import gc as pygc
import os
import random
import signal
import stat
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import tether
from tether import shm
from tether.shm import Region, RegionError, RegionPool

SEED = random.randrange(1 << 32)


@pytest.fixture
def region():
    r = Region.create(1 << 20)
    yield r
    r.close()
    r.unlink()


def test_create_mode_name_and_collisions(region):
    st = os.stat(region.path)
    assert stat.S_IMODE(st.st_mode) == 0o600
    prefix, pid, rand = region.name.split("-")
    assert prefix == "tether" and int(pid) == os.getpid() and len(rand) == 16  # 64 random bits
    with pytest.raises(RegionError, match="already exists"):
        Region.create(4096, name=region.name)
    with pytest.raises(tether.ValidationError, match="must start with 'tether-'"):
        Region.create(4096, name="other")


def test_attach_errors(tmp_path):
    with pytest.raises(RegionError, match="does not exist"):
        Region.attach("tether-0-doesnotexist")
    small = tmp_path / "tether-small"
    small.write_bytes(b"x" * 100)
    with pytest.raises(RegionError, match="less than its 4096-byte header"):
        Region.attach(str(small))
    junk = tmp_path / "tether-junk"
    junk.write_bytes(b"x" * 8192)
    with pytest.raises(RegionError, match="not a tether region"):
        Region.attach(str(junk))
    os.mkfifo(tmp_path / "tether-fifo")
    for odd, why in ((str(tmp_path / "tether-fifo"), "not a regular file"), (str(tmp_path), "not a regular file"),
                     ("tether-a\0b", "NUL byte")):  # before: a bare ValueError for the NUL byte
        with pytest.raises(RegionError, match=why):
            Region.attach(odd)


def test_frames_views_and_commit_protocol(region):
    ref = tether.dump_into(np.arange(100.0), region)
    slot, _, view = region.reserve(1000)  # being written: invisible to readers
    view.release()
    assert [f.slot for f in region.frames()] == [ref.slot]
    np.testing.assert_array_equal(tether.loads(region), np.arange(100.0))
    region.commit(slot)
    assert len(region.frames()) == 2
    region.release(slot)
    with pytest.raises(RegionError, match="released"):
        region.view(tether.shm.FrameRef(slot, 0, 0, 99))


def test_close_while_views_exist_keeps_them_valid():
    r = Region.create(1 << 22)
    tether.dump_into(np.full(1 << 18, 7.0), r)
    arr = tether.loads(r)
    assert not arr.flags.writeable
    r.close()
    r.unlink()
    del r
    pygc.collect()
    assert arr.sum() == 7.0 * (1 << 18)  # still mapped: the view keeps the mmap alive


def test_grow_keeps_old_views_and_new_readers_see_it(region):
    first = tether.dump_into(np.full(1000, 1.0), region)
    old = tether.loads(region.view(first))
    big = np.full(1 << 18, 2.0)  # 2 MiB: forces growth
    ref = tether.dump_into(big, region)
    assert region.capacity > 2 << 20
    assert old.sum() == 1000.0
    reader = Region.attach(region.name)
    np.testing.assert_array_equal(tether.loads(reader.view(ref)), big)
    np.testing.assert_array_equal(tether.loads(reader.view(first)), np.full(1000, 1.0))
    reader.close()


def test_truncated_by_another_process_is_a_typed_error(region):
    tether.dump_into(np.ones(1000), region)
    reader = Region.attach(region.name)
    subprocess.run([sys.executable, "-c", f"import os; os.truncate({region.path!r}, 4096)"], check=True)
    with pytest.raises(RegionError, match="truncated"):
        reader.view()
    reader.close()


def test_sealed_region_cannot_be_truncated():
    r = Region.create(1 << 16, sealed=True)
    tether.dump_into([1, 2, 3], r)
    out = subprocess.run(
        [sys.executable, "-c", f"import os\ntry:\n os.truncate({r.path!r}, 0)\nexcept PermissionError: print('EPERM')"],
        capture_output=True, text=True,
    )
    assert out.stdout.strip() == "EPERM"
    assert tether.loads(Region.attach(r.path)) == [1, 2, 3]
    r.close()


READER = textwrap.dedent(
    """
    import sys, time, numpy as np, tether
    from tether.shm import Region, RegionError
    r = Region.attach(sys.argv[1])
    seen, torn = set(), 0
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            arr = tether.loads(r)
        except (RegionError, tether.TetherError):
            continue
        v = arr[0]
        if not (arr == v).all():
            torn += 1
        seen.add(int(v))
        if int(v) == int(sys.argv[2]):
            break
    print(len(seen), torn)
    """
)


def test_concurrent_readers_during_writes(region):
    tether.dump_into(np.zeros(1 << 15), region)
    readers = [
        subprocess.Popen([sys.executable, "-c", READER, region.name, "199"], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    time.sleep(1.0)  # let the readers import and attach
    previous = None
    for i in range(1, 200):
        ref = tether.dump_into(np.full(1 << 15, float(i)), region)
        if previous is not None:
            region.release(previous)
        previous = ref
        time.sleep(0.002)
    for p in readers:
        out, _ = p.communicate(timeout=60)
        seen, torn = map(int, out.split())
        assert torn == 0 and seen >= 1


def _writer(name: str) -> None:
    r = Region.attach(name, readonly=False)
    i = 0
    refs = []
    while True:
        i += 1
        refs.append(tether.dump_into(np.full(1 << 14, float(i)), r))
        if len(refs) > 3:
            r.release(refs.pop(0))


def test_kill_9_writers_100_times_no_torn_frames_no_leaks():
    rng = random.Random(SEED)
    leaked_before = set(os.listdir("/dev/shm"))
    ours = [f"tether-{os.getpid()}-"]  # other processes on a shared box create and drop regions meanwhile
    for _ in range(100):
        pid = os.fork()
        if pid == 0:  # child: owns a region and writes until killed
            try:
                r = Region.create(1 << 20)
                os.write(1, b"")
                _writer(r.name)
            finally:
                os._exit(0)
        ours.append(f"tether-{pid}-")
        time.sleep(rng.uniform(0.0, 0.03))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        for name in os.listdir("/dev/shm"):
            if name.startswith(f"tether-{pid}-"):
                try:
                    r = Region.attach(name)
                except RegionError:
                    continue  # killed before its header was written
                for ref in r.frames():
                    arr = tether.loads(r.view(ref))
                    assert (arr == arr[0]).all(), f"torn frame (seed={SEED})"
                r.close()
    removed = shm.gc()
    assert all(f"tether-{os.getpid()}-" not in p for p in removed)
    left = {n for n in set(os.listdir("/dev/shm")) - leaked_before if n.startswith(tuple(ours))}
    assert not left, f"leaked {left} (seed={SEED})"


def test_gc_spares_live_owners_and_catches_reused_pids(region):
    assert region.path not in shm.gc()
    assert os.path.exists(region.path)
    fake = Region.create(4096)
    import struct
    struct.pack_into("<Q", fake.buf, 32, 12345)  # same live pid, different start time: a reused pid
    assert fake.path in shm.gc()
    fake.close()


def test_pool_reuses_warm_regions_and_evicts():
    with RegionPool(max_regions=1, prefault=True, sweep=False) as pool:
        a = pool.acquire(3 << 20)
        # Its power of two, and a page for the frame around it.
        assert pool.stats.misses == 1 and pool.stats.prefaulted_bytes >= (4 << 20) + 4096
        tether.dump_into(np.ones(1000), a)
        pool.release(a)
        assert pool.warm_bytes >= 4 << 20
        b = pool.acquire(1 << 20)
        assert b is a and pool.stats.hits == 1 and b.frames() == []
        c = pool.acquire(1 << 20)
        pool.release(b)
        pool.release(c)
        assert pool.stats.evicted == 1 and not os.path.exists(c.path)


def test_cli_gc():
    out = subprocess.run([sys.executable, "-m", "tether", "shm", "gc"], capture_output=True, text=True)
    assert out.returncode == 0 and "orphan(s) removed" in out.stdout


def test_attach_reuses_mappings_and_never_pins_removed_regions():
    from tether.shm import _region

    shm.drop_cache()
    with Region.create(1 << 20) as r:
        tether.dump_into(np.arange(10.0), r)
        a, b = Region.attach(r.name), Region.attach(r.name)
        assert a._map is b._map  # one mapping for both attachments
        view = tether.loads(a)
        a.close()
        b.close()
        np.testing.assert_array_equal(view, np.arange(10.0))
        assert len(_region._ATTACHED) == 1
        r.grow(4 << 20)
        c = Region.attach(r.name)  # a new size maps afresh
        assert c._map.size == os.fstat(c._fd).st_size
        c.close()
    with Region.create(1 << 16) as other:
        Region.attach(other.name).close()  # this miss sweeps the entry of r, whose file is gone
        assert all(os.fstat(e.fd).st_nlink for e in _region._ATTACHED.values())
    shm.drop_cache()
    assert not _region._ATTACHED
    np.testing.assert_array_equal(view, np.arange(10.0))  # views outlive the cache


# ------------------------------------------------------------------ misuse is typed

def test_region_misuse_is_a_typed_error_naming_the_fix():
    region = Region.create(1 << 16)
    try:
        cases = [
            (lambda: region.reserve(-5), tether.ValidationError, "non-negative int"),
            (lambda: region.reserve(1 << 64), tether.ValidationError, "up to 2"),
            (lambda: region.reserve(1 << 61), tether.RegionError, "Cannot grow"),
            (lambda: region.commit(10_000), tether.ValidationError, "frame slot"),
            (lambda: region.release(-1), tether.ValidationError, "frame slot"),
            (lambda: region.view(3), tether.ValidationError, "FrameRef"),
            (lambda: region.grow("big"), tether.ValidationError, "non-negative int"),
            (lambda: Region.attach(5), tether.ValidationError, "as a str"),
            (lambda: tether.dump_into(b"x", None), tether.ValidationError, "tether.shm.Region"),
            (lambda: RegionPool(max_regions=-1, sweep=False), tether.ValidationError, "max_regions"),
            (lambda: RegionPool(min_size="1M", sweep=False), tether.ValidationError, "min_size"),
        ]
        for call, kind, words in cases:
            with pytest.raises(kind, match=words):
                call()
        ref = tether.dump_into({"a": 1}, region)  # the region is unharmed by what it refused
        assert tether.loads(region.view(ref)) == {"a": 1}
    finally:
        region.close()
        region.unlink()
    for call in (region.view, region.frames, lambda: region.reserve(8), lambda: tether.loads(region)):
        with pytest.raises(tether.RegionError, match="is closed"):
            call()


def test_a_region_takes_frames_above_the_readers_max_frame_size_as_dumps_does():
    # Limits bound what a reader accepts: a writer that lowered them for untrusted input still writes its own.
    was = tether.get_limits()
    tether.set_limits(max_frame_size=1 << 16)
    region = Region.create(1 << 16)
    try:
        value = b"x" * (1 << 17)
        assert len(tether.dumps(value)) > 1 << 16
        tether.dump_into(value, region)
    finally:
        tether.set_limits(was)
        region.close()
        region.unlink()


def test_a_region_the_system_cannot_map_is_a_region_error_and_leaves_no_file():
    before = set(os.listdir("/dev/shm"))
    with pytest.raises(tether.RegionError, match="Cannot size or map"):
        Region.create(1 << 60)
    assert set(os.listdir("/dev/shm")) <= before
