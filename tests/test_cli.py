"""The tether command line, run as a user would."""

from __future__ import annotations

import io
import json
import re
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

import tether

GOLDEN = pathlib.Path(__file__).parent / "golden"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tether", *args], capture_output=True, text=True, timeout=300)


def test_inspect_and_verify_golden():
    out = run("inspect", str(GOLDEN / "ndarray_f4_C.tthr"))
    assert out.returncode == 0, out.stderr
    assert "ndarray (id 3, schema 1)" in out.stdout and "{:f, 32}" in out.stdout
    out = run("verify", str(GOLDEN / "etf_zstd.tthr"))
    assert out.returncode == 0 and "header, metadata, payload" in out.stdout


def test_verify_reports_corruption(tmp_path):
    data = bytearray((GOLDEN / "raw_bytes.tthr").read_bytes())
    data[-1] ^= 1
    bad = tmp_path / "bad.tthr"
    bad.write_bytes(bytes(data))
    out = run("verify", str(bad))
    assert out.returncode == 1 and "ChecksumError" in out.stderr and "stored xxh3-64" in out.stderr
    assert run("inspect", str(tmp_path / "missing")).returncode == 2
    out = run("verify", "--json", str(bad))  # a script reading stdout gets JSON for the failure too
    error = json.loads(out.stdout)["error"]
    assert out.returncode == 1 and error["type"] == "ChecksumError" and "stored xxh3-64" in error["message"]
    out = run("inspect", "--json", str(tmp_path / "missing"))
    assert out.returncode == 2 and json.loads(out.stdout) == {
        "file": str(tmp_path / "missing"),
        "error": {"type": "OSError", "message": f"cannot read {tmp_path / 'missing'}: No such file or directory"}}


def test_bench_quick_runs_and_prints_ratios():
    # --no-fail: on a loaded machine a target may be missed; the exit code is tested in test_bench_cli.py.
    out = run("bench", "--quick", "--no-fail")
    assert out.returncode == 0, out.stderr
    for needle in ("erlpack.unpack", "erlang_py.term_to_binary", "np.copyto", "tether.loads", "== targets"):
        assert needle in out.stdout


def test_inspect_and_verify_json():
    out = run("inspect", "--json", str(GOLDEN / "ndarray_f4_C.tthr"))
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["format"] == "ndarray" and info["type"]["shape"] == [3, 4] and info["type"]["nx"] == ["f", 32]
    assert info["created_at"].startswith("20") and "verified" not in info
    out = run("verify", "--json", str(GOLDEN / "etf_zstd.tthr"))
    info = json.loads(out.stdout)
    assert out.returncode == 0 and info["compression"] == "zstd" and info["verified"] == "header, metadata, payload"


def test_verify_json_of_a_stream(tmp_path):
    path = tmp_path / "s.tthr"
    with open(path, "wb") as f, tether.stream.StreamWriter(f, chunk_size=1024) as w:
        w.write_buffer(bytes(5000))
    info = json.loads(run("verify", "--json", str(path)).stdout)
    assert info["verified_stream"]["chunks"] == 5 and info["verified_stream"]["bytes"] == 5000


def test_shm_ls_json_lists_a_live_region():
    with tether.shm.Region.create(1 << 16) as region:
        tether.dump_into(np.arange(3.0), region)
        out = run("shm", "ls", "--json")
        assert out.returncode == 0, out.stderr
        rows = {row["name"]: row for row in json.loads(out.stdout)}
        assert rows[region.name]["frames"] == 1 and rows[region.name]["error"] is None
        assert rows[region.name]["capacity"] == region.capacity


def _dead_pid() -> int:
    with open("/proc/sys/kernel/pid_max") as f:
        return int(f.read()) + 1  # no process can have it


def test_shm_ls_lists_the_beam_workers_private_directories_and_gc_removes_a_dead_nodes():
    live = pathlib.Path("/dev/shm") / f"tether-{os.getpid()}-{'0' * 32}"  # the BEAM names them so, mode 0700
    dead = pathlib.Path("/dev/shm") / f"tether-{_dead_pid()}-{'1' * 32}"
    for d in (live, dead):
        d.mkdir(mode=0o700)
        (d / "tether-args-x").write_bytes(bytes(5000))
    try:
        out = run("shm", "ls", "--json")
        assert out.returncode == 0, out.stderr
        rows = {row["name"]: row for row in json.loads(out.stdout)}
        assert rows[live.name]["kind"] == "private_dir" and rows[live.name]["bytes"] == 5000
        assert rows[live.name]["owner_alive"] and not rows[dead.name]["owner_alive"]
        assert rows[live.name]["files"] == {"tether-args-x": 5000} and rows[live.name]["capacity"] is None
        text = run("shm", "ls").stdout
        assert f"{dead.name}/" in text and "node gone" in text
        gc = run("shm", "gc")
        assert gc.returncode == 0 and str(dead) in gc.stdout
        assert live.exists() and not dead.exists()
    finally:
        for d in (live, dead):
            if d.exists():
                shutil.rmtree(d)


def test_shm_ls_and_gc_take_the_workers_shm_dir(tmp_path):
    dead = tmp_path / f"tether-{_dead_pid()}-{'2' * 32}"
    dead.mkdir(mode=0o700)
    (dead / "tether-args-y").write_bytes(bytes(300))
    out = run("shm", "ls", "--json", "--shm-dir", str(tmp_path))
    rows = {row["name"]: row for row in json.loads(out.stdout)}
    assert rows[dead.name]["bytes"] == 300 and not rows[dead.name]["owner_alive"]
    assert dead.name not in run("shm", "ls").stdout  # /dev/shm only, by default
    other = tmp_path / f"tether-{_dead_pid()}-report.csv"  # not a region: not gc's to remove there
    other.write_text("a,b\n")
    gc = run("shm", "gc", "--shm-dir", str(tmp_path))
    assert gc.returncode == 0 and str(dead) in gc.stdout and not dead.exists()
    assert other.exists()


def test_shm_ls_and_gc_look_in_the_shm_dir_given_only_and_refuse_one_that_is_not_there(tmp_path):
    from tether.shm import Region

    here = Region.create(1 << 16, directory=tmp_path)
    elsewhere = Region.create(1 << 16)  # /dev/shm: a live region, and not gc's to touch with --shm-dir anyway
    try:
        rows = {row["name"]: row for row in json.loads(run("shm", "ls", "--json", "--shm-dir", str(tmp_path)).stdout)}
        assert rows[here.name]["kind"] == "region" and rows[here.name]["owner_pid"] == os.getpid()
        assert elsewhere.name not in rows
        for cmd in ("ls", "gc"):
            out = run("shm", cmd, "--shm-dir", str(tmp_path / "nowhere"))
            assert out.returncode == 2 and "not a directory" in out.stderr and out.stdout == ""
    finally:
        for r in (here, elsewhere):
            r.close()
            r.unlink()


def test_stats_of_a_worker_that_is_not_there_is_a_clear_error(tmp_path):
    out = run("stats", str(tmp_path / "no-such-worker"))
    assert out.returncode in (1, 2) and out.stdout == ""
    assert out.stderr.startswith("tether: stats") and "Traceback" not in out.stderr


def test_stats_prints_a_running_worker_snapshot(tmp_path):
    from test_worker import Client  # the BEAM's half of the worker protocol, as the worker tests drive it

    worker = Client("--stats-dir", str(tmp_path))
    try:
        assert worker.ok("add", 2, 3) == 5
        pid = worker.proc.pid
        out = run("stats", str(pid), "--json")
        assert out.returncode == 0, out.stderr
        snapshot = json.loads(out.stdout)
        assert snapshot["worker"]["pid"] == pid and snapshot["worker"]["calls"] >= 1
        assert {"operations", "memory"} <= set(snapshot)
        assert "attach_cache" in snapshot["memory"]
        out = run("stats", str(tmp_path))  # by its stats directory, as text
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        assert "worker:" in lines and "memory:" in lines
        table = [line.split() for line in lines[lines.index("operations:") + 1 :]]
        assert table[0] == ["op", "format", "compression", "transport", "size", "count", "p50", "p95", "p99",
                            "MB/s", "errors"]
        assert ["worker_call", "etf"] in [row[:2] for row in table]
    finally:
        worker.close()
    out = run("stats", str(pid))
    assert out.returncode == 1 and f"no tether worker with OS pid {pid}" in out.stderr


def test_a_reader_that_closes_the_pipe_early_gets_no_traceback(tmp_path):
    # Metadata large enough that --json output overflows the pipe's buffer before the reader closes it.
    path = tmp_path / "labels.tthr"
    path.write_bytes(tether.dumps(b"x", metadata={"labels": {f"label{i}": "v" * 40 for i in range(30000)}}))
    proc = subprocess.Popen([sys.executable, "-m", "tether", "inspect", "--json", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.read(10)
    proc.stdout.close()  # what `| head -c 10` does
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert b"Traceback" not in err and b"BrokenPipe" not in err, err.decode()


def test_inspect_reads_pipes_and_refuses_devices_with_exit_status_2(tmp_path):
    frame = tether.dumps({"a": 1})
    for target in ("-", "/dev/stdin"):  # a pipe cannot be mapped: it is read instead
        out = subprocess.run([sys.executable, "-m", "tether", "inspect", target], input=frame,
                             capture_output=True, timeout=60)
        assert out.returncode == 0 and b"etf (id 4" in out.stdout, out.stderr
    out = run("verify", "/dev/zero")  # never ends: refused before reading
    assert out.returncode == 2 and "/dev/zero is a device, not a file" in out.stderr
    assert "Traceback" not in out.stderr


def test_a_region_file_is_named_as_a_region_not_as_a_newer_frame(tmp_path):
    with tether.shm.Region.create(1 << 16) as region:
        copy = tmp_path / "region.bin"
        copy.write_bytes(pathlib.Path(region.path).read_bytes())
    out = run("inspect", str(copy))
    assert out.returncode == 1 and "this is a tether shared-memory region, not a frame" in out.stderr
    assert "tether shm ls" in out.stderr
    # The region is the error itself, not a hint under "a newer tether" (an operator's trial).
    error = json.loads(run("inspect", "--json", str(copy)).stdout)["error"]
    assert error["type"] == "NotAFrame" and "shared-memory region, not a frame" in error["message"]
    assert "newer" not in out.stderr


def test_shm_ls_does_not_wait_on_a_fifo_or_follow_a_link_named_like_a_region():
    base = pathlib.Path("/dev/shm") / f"tether-{os.getpid()}-cli-test"
    fifo, link = base.with_name(base.name + "-fifo"), base.with_name(base.name + "-link")
    os.mkfifo(fifo)
    link.symlink_to("/etc/hostname")
    try:
        out = subprocess.run([sys.executable, "-m", "tether", "shm", "ls", "--json"], capture_output=True,
                             text=True, timeout=20)  # before: waited for a writer on the FIFO forever
        assert out.returncode == 0, out.stderr
        rows = {row["name"]: row for row in json.loads(out.stdout)}
        for path in (fifo, link):
            assert rows[path.name]["error"].startswith("not a regular file, so not a tether region")
    finally:
        fifo.unlink()
        link.unlink()


def test_inspect_prints_text_details_unquoted(tmp_path):
    path = tmp_path / "a.tthr"
    path.write_bytes(tether.dumps(np.zeros(3, "<f8")))
    out = run("inspect", str(path))
    assert re.search(r"^dtype\s+<f8$", out.stdout, re.M), out.stdout  # not '<f8'


def test_deep_or_tuple_keyed_user_metadata_is_shown_not_a_traceback(tmp_path):
    deep: list = []
    cur = deep
    for _ in range(5000):
        cur.append([])
        cur = cur[0]
    for name, metadata in (("deep", {"d": deep}), ("keys", {"k": {(1, 2): "v"}})):
        path = tmp_path / f"{name}.tthr"
        path.write_bytes(tether.dumps(1, metadata=metadata))
        for args in (("inspect", str(path)), ("inspect", "--json", str(path)), ("verify", "--json", str(path))):
            out = run(*args)
            assert out.returncode == 0 and "Traceback" not in out.stderr, (args, out.stderr[-300:])
            if name == "keys" and "--json" in args:
                assert json.loads(out.stdout)["user"] == {"k": {"(1, 2)": "v"}}
            if name == "deep":
                assert ("nested deeper than 64 levels" if "--json" in args else "[[...]]") in out.stdout
        info = tether.inspect(path.read_bytes())
        assert "user metadata" in str(info) and repr(info).startswith("FrameInfo(")  # RecursionError before


def test_a_pipe_that_does_not_start_with_a_frame_is_not_read_on():
    # `cat /dev/zero | tether inspect -` (or a large file piped by mistake) must not be read into memory
    # to the end: the first header's bytes say it is no frame. The pipe is left open, so reading to
    # its end would never return.
    proc = subprocess.Popen([sys.executable, "-m", "tether", "inspect", "-"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        proc.stdin.write(b"\0" * 4096)
        proc.stdin.flush()
        assert proc.wait(timeout=30) == 1
        assert b"Not a tether frame" in proc.stderr.read()
    finally:
        proc.kill()
        proc.stdin.close()
        proc.wait()


def test_inspect_refuses_a_cut_or_padded_frame_and_says_what_verify_leaves_unchecked(tmp_path):
    # An operator's trial: inspect passed both with exit 0, and verify's "guarded ..., or unchecked" hid
    # that a large in-memory frame's payload carries no checksum.
    frame = (GOLDEN / "raw_bytes.tthr").read_bytes()
    for name, data, error in (("cut", frame[:-10], "TruncatedError"), ("padded", frame + b"junk", "DecodeError")):
        path = tmp_path / name
        path.write_bytes(data)
        out = run("inspect", str(path))
        assert out.returncode == 1 and error in out.stderr and f"its frame {len(frame)}" in out.stderr
    big = tmp_path / "big.tthr"
    big.write_bytes(tether.dumps(np.zeros(1 << 18)))
    out = run("verify", str(big))
    assert out.returncode == 0 and "NOT the payload, which carries no checksum" in out.stdout


def test_a_stream_that_starts_past_chunk_0_is_called_a_continuation(tmp_path):
    sink = tmp_path / "whole.tthr"
    with open(sink, "wb") as f, tether.stream.StreamWriter(f) as w:
        for i in range(5):
            w.write(f"c{i}")
    data, pos = sink.read_bytes(), 0
    for _ in range(3):
        pos += tether.inspect(data[pos:]).frame_size
    part = tmp_path / "part.tthr"
    part.write_bytes(data[pos:])
    out = run("inspect", str(part))
    assert out.returncode == 0 and "complete as a continuation: it starts at chunk 3" in out.stdout
    out = run("verify", str(part))
    assert out.returncode == 1 and "starts at chunk 3, not 0" in out.stderr


def test_shm_ls_marks_orphans_and_gc_dry_run_lists_them_and_removes_nothing(tmp_path):
    script = ("import os, sys, tether; r = tether.shm.Region.create(1 << 16, directory=sys.argv[1]); "
              "print(r.name, flush=True); os._exit(0)")  # dies holding it: an orphan
    child = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, check=True)
    orphan = tmp_path / child.stdout.strip()
    dead_dir = tmp_path / f"tether-{_dead_pid()}-{'3' * 32}"
    dead_dir.mkdir(mode=0o700)
    with tether.shm.Region.create(1 << 16, directory=tmp_path) as live:
        rows = {row["name"]: row for row in json.loads(run("shm", "ls", "--json", "--shm-dir", str(tmp_path)).stdout)}
        assert rows[orphan.name]["orphan"] and rows[dead_dir.name]["orphan"] and not rows[live.name]["orphan"]
        text = run("shm", "ls", "--shm-dir", str(tmp_path)).stdout
        assert [line.split()[0] for line in text.splitlines() if "gone" in line] == [orphan.name, dead_dir.name + "/"]
        dry = run("shm", "gc", "--dry-run", "--shm-dir", str(tmp_path))
        assert dry.returncode == 0 and "2 orphan(s) would be removed" in dry.stdout
        assert f"would remove {orphan}" in dry.stdout and f"would remove {dead_dir}" in dry.stdout
        assert orphan.exists() and dead_dir.exists()
        gc = run("shm", "gc", "--shm-dir", str(tmp_path))
        assert "2 orphan(s) removed" in gc.stdout and not orphan.exists() and not dead_dir.exists()
        assert os.path.exists(live.path)


def test_a_piped_frame_is_read_as_far_as_its_header_declares_and_what_follows_is_counted_not_held():
    # `(cat f.tthr; head -c 300M /dev/zero) | tether verify -` held 690 MB to say "314572800 bytes after".
    from test_cli_pipes import RecordingPipe as Pipe
    from tether import _cli

    frame = bytes(tether.dumps({"a": 1}))
    pipe = Pipe(frame + bytes(5 << 20))
    with pytest.raises(tether.DecodeError, match=f"^{5 << 20} bytes after the end of the frame \\({len(frame)} bytes\\)"):
        _cli._read_pipe(pipe)
    assert pipe.largest <= 1 << 20 and pipe.at == len(pipe.data)
    assert bytes(_cli._read_pipe(Pipe(frame))) == frame
    out = subprocess.run([sys.executable, "-m", "tether", "verify", "-"], input=frame + b"x" * 70_000,
                         capture_output=True, timeout=60)
    assert out.returncode == 1 and b"70000 bytes after the end of the frame" in out.stderr


# -- an operator's trial of the command line (2026-11-27): what it found, each pinned


def test_verify_refuses_an_intact_frame_this_tether_cannot_read(tmp_path):
    # verify said "verified header, metadata, payload" (exit 0) for a compression or format id that loads refuses.
    from test_format_spec import patch_header

    for name, fields, said in [("comp9", {"compression_id": 9}, "Invalid compression id 9"),
                               ("fmt99", {"format_id": 99}, "format id 99")]:
        path = tmp_path / f"{name}.tthr"
        path.write_bytes(patch_header(tether.dumps(b"abc"), **fields))
        out = run("verify", str(path))
        assert out.returncode == 1 and "UnsupportedFormatError" in out.stderr and said in out.stderr, out.stderr
        with pytest.raises(tether.UnsupportedFormatError):
            tether.verify(path.read_bytes())


def test_inspect_of_stdin_closed_says_so():
    # A traceback (AttributeError on sys.stdin None) under cron or systemd.
    out = subprocess.run([sys.executable, "-m", "tether", "inspect", "-"], capture_output=True, text=True,
                         timeout=60, stdin=subprocess.DEVNULL, preexec_fn=lambda: os.close(0))
    assert out.returncode == 2 and "standard input is closed" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("cmd", ["ls", "gc"])
def test_shm_on_a_directory_it_cannot_list_says_so(tmp_path, monkeypatch, capsys, cmd):
    # ls printed a PermissionError traceback; gc said "0 orphan(s) removed", exit 0, having looked at nothing.
    # (In process, the refusal made by hand: the tests may run as root, who lists anything.)
    from tether import _cli

    locked = str(tmp_path)
    real = os.scandir

    def refuse(path=".", *a):
        if os.path.abspath(os.fspath(path)) == os.path.abspath(locked):
            raise PermissionError(13, "Permission denied", locked)
        return real(path, *a)

    monkeypatch.setattr(os, "scandir", refuse)
    assert _cli.main(["shm", cmd, "--shm-dir", locked]) == 2
    out = capsys.readouterr()
    assert "cannot list it (Permission denied)" in out.err and "orphan" not in out.out


def test_bench_plot_into_a_directory_it_cannot_write_fails_before_running(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from tether.bench import plot

    monkeypatch.setattr(os, "access", lambda path, mode: os.fspath(path) != str(tmp_path))
    with pytest.raises(tether.ValidationError, match="--plot: cannot write into"):
        plot.require(str(tmp_path))


def test_stats_errors_are_json_under_json_and_name_what_they_met(tmp_path):
    # --json printed nothing on stdout for an error; a frame file read as stats said UnicodeDecodeError.
    frame = tmp_path / "raw.tthr"
    frame.write_bytes(tether.dumps(b"abc"))
    out = run("stats", "--json", str(frame))
    assert out.returncode == 1 and "is not a worker's stats.json (not JSON text)" in out.stderr
    error = json.loads(out.stdout)
    assert error["target"] == str(frame) and error["error"]["type"] == "StatsError"
    out = run("stats", "٣")  # an Arabic digit is not a pid
    assert out.returncode == 1 and "Traceback" not in out.stderr and "pid 3" not in out.stderr


def test_shm_ls_names_a_file_that_is_no_region_and_says_when_there_is_nothing(tmp_path):
    # A tether-* file that is no region read "Region ... has 8 bytes, less than its 4096-byte header"; an empty
    # directory printed nothing at all.
    out = run("shm", "ls", "--shm-dir", str(tmp_path))
    assert out.returncode == 0 and f"no tether regions or BEAM workers' private directories in {tmp_path}" in out.stdout
    (tmp_path / "tether-notes.txt").write_bytes(b"garbage!")
    out = run("shm", "ls", "--shm-dir", str(tmp_path))
    assert "tether-notes.txt  unreadable: not a tether region (no region header)" in out.stdout
