"""Shared-memory regions as an operator trial met them: other users' files, files that are not regions, a full
/dev/shm, and regions in a directory other than /dev/shm."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
import textwrap

import numpy as np
import pytest

import tether
from tether import shm
from tether.shm import Region, RegionError, RegionPool

ROOT = os.geteuid() == 0
NOBODY = 65534
SRC = os.path.dirname(os.path.dirname(os.path.abspath(tether.__file__)))
_HEAD = struct.Struct("<" + "".join(code for _, code in shm.HEADER_FIELDS))
root_only = pytest.mark.skipif(not ROOT, reason="needs root: files of another user, a tmpfs mount")


def _dead_pid() -> int:
    with open("/proc/sys/kernel/pid_max") as f:
        return int(f.read()) + 1  # no process can have it


def _region_bytes(owner: int) -> bytes:
    """A region's first page, owned by ``owner``, as Region.create writes it."""
    head = _HEAD.pack(shm.MAGIC, shm.VERSION, shm.HEADER_SIZE, 0, owner, 0, 8192, shm.HEADER_SIZE, shm.SLOTS, 0)
    return head + bytes(8192 - len(head))


def _dead_region(directory: str, digits: str, data: bytes | None = None) -> str:
    """A file named as Region.create names them, for a dead pid; a region's header unless ``data``."""
    path = os.path.join(directory, f"tether-{_dead_pid()}-{digits * 16}")
    with open(path, "wb") as f:
        f.write(_region_bytes(_dead_pid()) if data is None else data)
    return path


def _as_nobody(call) -> tuple[int, str]:
    """``call()`` in a child running as nobody: (its exit status, the repr of what it returned or raised)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the interpreter may sit where nobody cannot run it (/root): fork this one instead
        status = 1
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            result = repr(call())
            status = 0
        except BaseException as exc:
            result = repr(exc)
        finally:
            os.write(write, result.encode())
            os._exit(status)
    os.close(write)
    with os.fdopen(read) as f:
        text = f.read()
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), text


# ------------------------------------------------------------------ 1. files gc may not remove


def test_gc_leaves_what_it_cannot_remove_logs_it_and_goes_on(tmp_path, monkeypatch, caplog):
    stuck, free = _dead_region(str(tmp_path), "a"), _dead_region(str(tmp_path), "b")
    real_unlink = os.unlink

    def unlink(path, *args, **kwargs):
        if path == stuck:
            raise PermissionError(errno.EPERM, "Operation not permitted", path)
        return real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", unlink)
    with caplog.at_level(logging.DEBUG, logger="tether.shm"):
        removed = shm.gc(directory=str(tmp_path))  # before: PermissionError out of gc
    assert removed == [free] and os.path.exists(stuck)
    assert any(stuck in r.getMessage() and r.levelno == logging.DEBUG for r in caplog.records)


@root_only
def test_a_non_root_sweep_passes_other_users_dead_regions_by():
    # The trial: a dead root-owned region, readable, in sticky /dev/shm; `tether shm gc` and every worker's
    # RegionPool of a non-root user died of PermissionError on it. Here in a sticky directory of its own.
    sticky = tempfile.mkdtemp(prefix="shm-trial-", dir="/tmp")
    os.chmod(sticky, 0o1777)
    locked = tempfile.mkdtemp(prefix="shm-trial-", dir="/tmp")  # 0755: nobody may not remove its files
    os.chmod(locked, 0o755)
    try:
        roots = _dead_region(sticky, "c")
        os.chmod(roots, 0o644)
        mine = _dead_region(sticky, "d")
        os.chown(mine, NOBODY, NOBODY)
        stuck = _dead_region(locked, "e")
        os.chown(stuck, NOBODY, NOBODY)

        def sweeps():
            removed = shm.gc(directory=sticky, private_dirs=False), shm.gc(directory=locked)
            with RegionPool(prefault=False, directory=sticky) as pool:  # the sweep at every worker start
                return removed, pool.stats.swept_orphans

        assert _as_nobody(sweeps) == (0, repr((([mine], []), 0)))  # before: PermissionError
        assert os.path.exists(roots) and os.path.exists(stuck)
    finally:
        shutil.rmtree(sticky)
        shutil.rmtree(locked)


# ------------------------------------------------------------------ 2. only this user's regions


def test_gc_removes_only_this_users_files_that_are_regions(tmp_path):
    d = str(tmp_path)
    region, empty = _dead_region(d, "1"), _dead_region(d, "2", b"")  # empty: its creator died before the header
    junk = _dead_region(d, "3", b"not a region" * 1000)
    chosen = os.path.join(d, f"tether-{_dead_pid()}-report")  # a region's header, but not a name create draws
    shutil.copy(region, chosen)
    (tmp_path / "elsewhere").mkdir()
    elsewhere = _dead_region(str(tmp_path / "elsewhere"), "4")
    link = os.path.join(d, f"tether-{_dead_pid()}-{'5' * 16}")
    os.symlink(elsewhere, link)
    kept = [junk, chosen, link, elsewhere]
    if ROOT:
        others = _dead_region(d, "6")
        os.chown(others, NOBODY, NOBODY)
        kept.append(others)
    assert sorted(shm.gc(directory=d)) == sorted([region, empty])
    assert all(os.path.lexists(p) for p in kept)


def test_gc_passes_a_fifo_named_as_a_region_by_without_waiting(tmp_path):
    fifo = os.path.join(tmp_path, f"tether-{_dead_pid()}-{'7' * 16}")
    os.mkfifo(fifo)
    code = f"from tether import shm; print(shm.gc(directory={str(tmp_path)!r}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)  # before: hung
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


# ------------------------------------------------------------------ 3. a full filesystem


def test_a_region_takes_memory_for_each_frame_as_it_is_reserved_and_all_of_it_when_prefaulted():
    with Region.create(8 << 20) as region:
        assert os.stat(region.path).st_blocks * 512 < 1 << 20  # a pool's rounded-up capacity costs nothing
        region.reserve(3 << 20)
        taken = os.stat(region.path).st_blocks * 512
        assert 3 << 20 <= taken < 4 << 20  # before: sparse, taken page by page at the first write
    with Region.create(8 << 20, prefault=True) as region:
        st = os.stat(region.path)
        assert st.st_blocks * 512 >= st.st_size


@pytest.fixture
def enospc(monkeypatch):
    from tether.shm import _region

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(_region, "_fallocate", full)


def test_a_full_directory_is_a_region_error_naming_the_fix_and_leaves_no_file(tmp_path, enospc):
    with pytest.raises(RegionError) as info:
        Region.create(30 << 20, directory=tmp_path)
    text = str(info.value)
    for words in (f"{tmp_path} has no room for 31461376 bytes (30.0 MiB) more", " free. Free memory there",
                  "`tether shm gc`", "shm_dir", "shm_threshold"):
        assert words in text
    assert os.listdir(tmp_path) == []


def test_a_frame_that_finds_no_room_is_a_region_error_and_the_frames_before_it_stay(tmp_path, monkeypatch):
    from tether.shm import _region

    region = Region.create(1 << 16, directory=tmp_path)
    try:
        ref = tether.dump_into(np.arange(5.0), region)
        monkeypatch.setattr(_region, "_fallocate", lambda *a: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
        with pytest.raises(RegionError, match=r"Cannot write a frame of .* has no room for"):
            tether.dump_into(np.ones(30 << 17), region)
        assert [f.slot for f in region.frames()] == [ref.slot]  # no slot left half written
        np.testing.assert_array_equal(tether.loads(region.view(ref)), np.arange(5.0))
    finally:
        region.close()
        region.unlink()


@pytest.mark.parametrize("code", [errno.EOPNOTSUPP, errno.EINVAL])
def test_a_filesystem_without_fallocate_gets_a_sparse_region(tmp_path, monkeypatch, code):
    from tether.shm import _region

    monkeypatch.setattr(_region, "_fallocate", lambda *a: (_ for _ in ()).throw(OSError(code, "no")))
    with Region.create(1 << 16, directory=tmp_path) as region:
        region.grow(1 << 20)
        assert os.fstat(region._fd).st_size == region.capacity == (1 << 20) + shm.HEADER_SIZE


@root_only
def test_a_reply_larger_than_a_full_tmpfs_is_a_region_error_not_sigbus(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        code = f"""
            import numpy as np, tether
            from tether.shm import Region, RegionError
            region = Region.create(4 << 20, directory={str(mnt)!r})
            try:
                tether.dump_into(np.ones(30 << 17), region)  # 30 MiB into 16
            except RegionError as exc:
                print(exc)
            try:
                Region.create(30 << 20, directory={str(mnt)!r}, prefault=True)
            except RegionError as exc:
                print(exc)
            region.close()
            region.unlink()
        """
        out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 0, (out.returncode, out.stderr)  # before: -7, SIGBUS
        grow, create = out.stdout.splitlines()
        assert grow.startswith("Cannot write a frame of") and f"{mnt} has no room for" in grow
        assert create.startswith("Cannot size or map a region of 31461376 bytes") and "MiB) free" in create
        assert os.listdir(mnt) == []
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


# ------------------------------------------------------------------ 4. a directory other than /dev/shm


def test_a_region_lives_and_is_removed_in_the_directory_given(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    with Region.create(1 << 16, directory="sub") as region:  # made absolute: other processes open region.path
        assert os.path.dirname(region.path) == str(tmp_path / "sub")
        assert stat.S_IMODE(os.stat(region.path).st_mode) == 0o600
        tether.dump_into({"a": 1}, region)
        reader = Region.attach(region.path)
        assert tether.loads(reader) == {"a": 1}
        reader.close()
    assert os.listdir(tmp_path / "sub") == []  # before: unlink kept every file outside /dev/shm


def test_an_attached_region_outside_dev_shm_can_be_removed(tmp_path):
    path = tmp_path / "tether-attached"
    path.write_bytes(_region_bytes(os.getpid()))
    region = Region.attach(str(path))
    region.close()
    region.unlink()
    assert not path.exists()


def test_sealed_regions_take_no_directory_and_unlink_nothing():
    with pytest.raises(tether.ValidationError, match="sealed region is a memfd"):
        Region.create(1 << 16, sealed=True, directory="/tmp")
    with pytest.raises(tether.ValidationError, match="directory is a str or os.PathLike"):
        Region.create(1 << 16, directory=3)
    with pytest.raises(tether.ValidationError, match="RegionPool directory"):
        RegionPool(directory=3, sweep=False)
    with Region.create(1 << 16, sealed=True) as region:
        assert region.path.startswith("/proc/")
    assert os.path.exists("/proc/self")


def test_a_pool_makes_and_sweeps_regions_only_in_its_directory(tmp_path):
    ours, shared = _dead_region(str(tmp_path), "8"), _dead_region("/dev/shm", "9")
    try:
        with RegionPool(directory=tmp_path, prefault=False, max_regions=1) as pool:
            assert pool.stats.swept_orphans == 1 and not os.path.exists(ours)
            assert os.path.exists(shared)  # not this pool's directory: another namespace's live region, maybe
            a, b = pool.acquire(1 << 16), pool.acquire(1 << 16)
            assert {os.path.dirname(r.path) for r in (a, b)} == {str(tmp_path)}
            pool.release(a)
            pool.release(b)  # over max_regions: closed and removed, there
            assert os.listdir(tmp_path) == [a.name]
        assert os.listdir(tmp_path) == []
    finally:
        with contextlib.suppress(FileNotFoundError):  # a gc of /dev/shm elsewhere may have been first
            os.unlink(shared)
