"""Build tether's sdist and wheel, install the wheel into a fresh venv, and smoke-test it there.

An editable install hides packaging mistakes: a module, ``py.typed`` or the C
extension missing from the wheel still imports from the checkout. This check
uses only what a user gets:

1. ``python -m build`` makes the sdist, then the wheel from that sdist (so the
   sdist must hold everything a build needs); their file lists and metadata
   are checked.
2. The wheel goes into a new venv (no checkout on ``sys.path``: commands run
   with ``python -I`` from a temporary directory).
3. There: ``python -m tether.demo``; a round trip of every built-in format,
   compressor and checksum; ``python -m tether.worker`` echoing a ``PING``;
   the C speedups active; ``py.typed`` present; ``tether --version``.

Run ``python tools/dist_check.py`` (``make dist-check``); ``--keep DIR``
keeps the artifacts and the venv. Exit status 0 when every check passes.
The same file, run as ``--smoke`` by the fresh venv's interpreter, is step 3.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEEDUPS_SRC = "src/tether/_speedups_src"


class CheckFailed(Exception):
    """One check of the built artifacts failed; the message says which and how to fix it."""


def _run(cmd: list[str], *, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300,
         input: bytes | None = None) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, input=input, capture_output=True, timeout=timeout)
    if proc.returncode != 0:
        raise CheckFailed(
            f"`{' '.join(map(str, cmd))}` exited with {proc.returncode}:\n"
            f"{proc.stdout.decode(errors='replace')[-3000:]}\n{proc.stderr.decode(errors='replace')[-3000:]}"
        )
    return proc.stdout.decode(errors="replace")


def _expect(ok: bool, message: str) -> None:
    if not ok:
        raise CheckFailed(message)


def source_version() -> str:
    """The version in src/tether/_version.py, read as setuptools reads it (without importing tether)."""
    text = (ROOT / "src/tether/_version.py").read_text()
    found = re.search(r'^__version__ = "([^"]+)"$', text, re.M)
    _expect(found is not None, "src/tether/_version.py has no line `__version__ = \"X.Y.Z\"`")
    return found.group(1)


# ---------------------------------------------------------------- 1. build and inspect the artifacts


def build(outdir: Path) -> tuple[Path, Path]:
    """sdist, then the wheel built from it, into ``outdir``; installs ``build`` into this Python if missing."""
    try:
        import build  # noqa: F401
    except ImportError:
        _run([sys.executable, "-m", "pip", "install", "-q", "build"], cwd=ROOT)
    _run([sys.executable, "-m", "build", "--outdir", str(outdir), str(ROOT)], cwd=ROOT, timeout=600)
    sdists, wheels = sorted(outdir.glob("*.tar.gz")), sorted(outdir.glob("*.whl"))
    _expect(len(sdists) == 1 and len(wheels) == 1,
            f"expected one sdist and one wheel in {outdir}, got {sdists + wheels}")
    return sdists[0], wheels[0]


def check_sdist(sdist: Path, version: str) -> None:
    """The sdist holds what a wheel build and a reader need, and no half test suite or binaries."""
    top = f"tether-{version}/"
    with tarfile.open(sdist) as tar:
        names = {n[len(top):] for n in tar.getnames() if n.startswith(top)}
    c_sources = {str(p.relative_to(ROOT)) for p in (ROOT / SPEEDUPS_SRC).glob("*.[ch]")}
    required = {"LICENSE", "CHANGELOG.md", "README.md", "pyproject.toml", "setup.py", "docs/format.md",
                "src/tether/py.typed", "src/tether/_version.py", *c_sources}
    missing = sorted(required - names)
    _expect(not missing, f"{sdist.name} lacks {missing}: add them to MANIFEST.in or setup.py's sources")
    stray = sorted(n for n in names if n.startswith("tests/") or n.endswith((".so", ".pyc")))
    _expect(not stray, f"{sdist.name} holds {stray[:5]}: MANIFEST.in prunes tests/ and binaries")


def check_wheel(wheel: Path, version: str) -> None:
    """The wheel's files (extension, py.typed, license; no C sources) and its metadata."""
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        meta = zf.read(f"tether-{version}.dist-info/METADATA").decode()
    license_file = f"tether-{version}.dist-info/licenses/LICENSE"
    for need in ("tether/py.typed", "tether/worker.py", "tether/demo.py", license_file):
        _expect(need in names, f"{wheel.name} lacks {need}")
    _expect(any(re.fullmatch(r"tether/_speedups\..*\.so", n) for n in names),
            f"{wheel.name} has no tether/_speedups extension: the C build failed (see the build log)")
    sources = sorted(n for n in names if n.startswith("tether/_speedups_src/"))
    _expect(not sources,
            f"{wheel.name} ships C sources {sources[:3]}: pyproject's exclude-package-data should drop them")
    fields = [tuple(line.split(": ", 1)) for line in meta.splitlines() if ": " in line and not line.startswith(" ")]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [("Version", version), ("License-Expression", "Apache-2.0"), ("Requires-Python", ">=3.11"),
              ("Classifier", "Operating System :: POSIX :: Linux"),
              *(("Requires-Dist", dep) for dep in project["dependencies"])]
    lacking = [f"{k}: {v}" for k, v in wanted if (k, v) not in fields]
    _expect(not lacking, f"{wheel.name} METADATA lacks {lacking}")


# ---------------------------------------------------------------- 2. a fresh venv with only the wheel


def clean_env() -> dict[str, str]:
    """This environment without anything that would put a checkout or another venv on the path."""
    drop = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONSAFEPATH", "VIRTUAL_ENV", "PYTHONUSERBASE")
    return {k: v for k, v in os.environ.items() if k not in drop}


def fresh_venv(where: Path, wheel: Path) -> Path:
    """A new venv holding the wheel and its dependencies (pip's cache makes repeats fast); returns its python."""
    _run([sys.executable, "-m", "venv", "--without-pip", str(where)], cwd=where.parent)
    python = where / "bin" / "python"
    # This interpreter's pip installs into the new venv: no pip bootstrap in it.
    # --no-compile halves the install (no .pyc for numpy and pyarrow up front).
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-compile", str(wheel)],
         cwd=where.parent, env=clean_env(), timeout=600)
    return python


def smoke_in(python: Path, workdir: Path, version: str) -> list[str]:
    """Run the smoke test, the demo and the console script with the fresh venv; returns the log lines."""
    env = clean_env()
    log = []
    out = _run([str(python), "-I", str(Path(__file__).resolve()), "--smoke", "--expect-version", version],
               cwd=workdir, env=env)
    log += out.splitlines()
    t0 = time.perf_counter()
    demo = _run([str(python), "-I", "-m", "tether.demo"], cwd=workdir, env=env)
    _expect(demo.rstrip().endswith("OK"), f"python -m tether.demo did not end with OK:\n{demo[-2000:]}")
    log.append(f"python -m tether.demo: OK ({time.perf_counter() - t0:.1f} s)")
    cli = _run([str(python.parent / "tether"), "--version"], cwd=workdir, env=env)
    lines = cli.splitlines()
    _expect(bool(lines) and lines[0] == f"tether {version}", f"`tether --version` printed {lines[:1]}")
    _expect(any(line.startswith("C speedups: active") for line in lines), f"`tether --version`:\n{cli}")
    log += ["tether --version:", *("  " + line for line in lines)]
    return log


# ---------------------------------------------------------------- 3. the smoke test, inside the fresh venv


def _samples() -> dict[str, list]:
    import numpy as np
    import pyarrow as pa

    from tether import Atom

    try:
        import scipy.sparse as sp
    except ImportError:
        sp = None
    return {
        "raw": [b"\x00raw bytes" * 20_000, b"small"],
        "scalar": [2**80 + 1, "héllo", 2.5, None, True],
        "ndarray": [np.arange(12, dtype="f4").reshape(3, 4), np.asfortranarray(np.arange(6, dtype="i8").reshape(2, 3))],
        "etf": [{"status": (Atom("ok"), 200), "body": b"\x00", "tags": ["a", "b"]}],
        "arrow": [pa.table({"id": list(range(300)), "name": [f"n{i}" for i in range(300)]})],
        "pickle": [{frozenset({1, 2}), 3}],
        # scipy is an optional extra: the fresh venv has it only if asked for.
        "sparse": [sp.csr_array(np.arange(12.0).reshape(3, 4) % 3)] if sp is not None else [],
    }


def _same(out: object, value: object) -> bool:
    import numpy as np
    import pyarrow as pa

    if type(value).__module__.startswith("scipy.sparse"):
        return type(out) is type(value) and out.shape == value.shape and (out != value).nnz == 0
    if isinstance(value, pa.Table):
        return isinstance(out, pa.Table) and out.equals(value)
    if isinstance(value, np.ndarray):
        return isinstance(out, np.ndarray) and out.dtype == value.dtype and np.array_equal(out, value)
    if isinstance(value, bytes) and isinstance(out, memoryview):
        return out == value
    return out == value and type(out) is type(value)


def smoke_round_trips() -> list[str]:
    """Every built-in format (forced), every compressor and every checksum, dumped and loaded back."""
    import tether

    samples, done = _samples(), []
    for fmt in sorted(f.name for f in tether.formats.registry if f.id < 128):
        _expect(fmt in samples, f"format {fmt!r} has no sample in tools/dist_check.py's _samples(): add one")
        for value in samples[fmt]:
            frame = tether.dumps(value, format=fmt)
            _expect(tether.inspect(frame).format == fmt, f"format={fmt!r} wrote a {tether.inspect(frame).format} frame")
            _expect(_same(tether.loads(frame, allow_pickle=True), value), f"{fmt}: {value!r:.80} did not round-trip")
        done.append(fmt)
    data = b"compressible text line\n" * 20_000
    for comp in sorted(c.name for c in tether.compression.registry if c.id < 128):
        for checksum in ("crc32", "xxh3-64"):
            frame = tether.dumps(data, format="raw", compression=comp, checksum=checksum)
            info = tether.verify(frame)
            _expect(bytes(tether.loads(frame)) == data and info.compression == comp,
                    f"compression={comp!r}, checksum={checksum!r}: round trip or verify failed")
    return [f"round trips: formats {', '.join(done)}; every compressor with crc32 and xxh3-64"]


def smoke_worker() -> str:
    """``python -m tether.worker`` answers a {packet,4}-framed PING with the same bytes."""
    ping = b"PING"
    proc = subprocess.Popen([sys.executable, "-I", "-m", "tether.worker", "--module", "tether.demo"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(len(ping).to_bytes(4, "big") + ping, timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise CheckFailed("python -m tether.worker did not answer a PING within 60 s") from None
    _expect(out == len(ping).to_bytes(4, "big") + ping,
            f"python -m tether.worker answered a PING with {out[:40]!r} (exit {proc.returncode}): "
            f"{err.decode(errors='replace')[-2000:]}")
    return "python -m tether.worker: PING echoed"


def smoke(expect_version: str) -> list[str]:
    """Checks that need the installed tether: where it comes from, its version, speedups, py.typed, round trips."""
    import tether

    where = Path(tether.__file__).resolve().parent
    _expect(Path(sys.prefix).resolve() in where.parents,
            f"tether imported from {where}, not from this venv {sys.prefix}")
    _expect(not (ROOT / "src") in where.parents, f"tether imported from the checkout ({where})")
    _expect(tether.__version__ == expect_version, f"tether.__version__ is {tether.__version__}, built {expect_version}")
    from importlib.metadata import version

    _expect(version("tether") == expect_version, f"installed metadata says {version('tether')}")
    _expect((where / "py.typed").is_file(), f"{where}/py.typed is missing: type checkers will ignore tether's hints")
    info = tether.build_info()
    _expect(info.speedups, f"the C speedups are not active in the installed wheel: {info.speedups_reason}")
    _expect(info.crc32.startswith("isal "), f"CRC-32 runs on {info.crc32}, not isal (a dependency of the wheel)")
    return [f"imported tether {tether.__version__} from {where}", "py.typed present",
            f"C speedups active, CRC-32 {info.crc32}", *smoke_round_trips(), smoke_worker()]


# ---------------------------------------------------------------- the whole check


def check(keep: Path | None) -> list[str]:
    """Build, inspect, install fresh and smoke-test; returns the log; raises CheckFailed."""
    version = source_version()
    work = keep if keep is not None else Path(tempfile.mkdtemp(prefix="tether-dist-"))
    work.mkdir(parents=True, exist_ok=True)
    log, t0 = [], time.perf_counter()
    try:
        dist, venv = work / "dist", work / "venv"
        shutil.rmtree(dist, ignore_errors=True)
        shutil.rmtree(venv, ignore_errors=True)
        sdist, wheel = build(dist)
        check_sdist(sdist, version)
        check_wheel(wheel, version)
        log.append(f"built {sdist.name} and {wheel.name} ({time.perf_counter() - t0:.1f} s); contents and metadata OK")
        t1 = time.perf_counter()
        python = fresh_venv(venv, wheel)
        log.append(f"fresh venv with the wheel and its dependencies ({time.perf_counter() - t1:.1f} s)")
        run_dir = work / "run"
        run_dir.mkdir(exist_ok=True)
        log += smoke_in(python, run_dir, version)
    finally:
        if keep is None:
            shutil.rmtree(work, ignore_errors=True)
    log.append(f"dist check passed in {time.perf_counter() - t0:.1f} s")
    return log


def main(argv: list[str] | None = None) -> int:
    """Run the artifact check (or, with ``--smoke``, its in-venv part); print what was checked; 0 when all pass."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", type=Path, help="build and install in this directory and keep it")
    parser.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)  # run by the fresh venv
    parser.add_argument("--expect-version", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        log = smoke(args.expect_version) if args.smoke else check(args.keep)
    except CheckFailed as exc:
        print(f"dist check FAILED: {exc}", file=sys.stderr)
        return 1
    print("\n".join(log))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
