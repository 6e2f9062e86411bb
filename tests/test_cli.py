"""The tether command line, run as a user would."""

from __future__ import annotations

import pathlib
import subprocess
import sys

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


def test_bench_quick_runs_and_prints_ratios():
    out = run("bench", "--quick")
    assert out.returncode == 0, out.stderr
    for needle in ("erlpack.unpack", "erlang_py.term_to_binary", "np.copyto", "tether.loads", "== targets"):
        assert needle in out.stdout
