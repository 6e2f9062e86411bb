"""The built artifacts: tools/dist_check.py end to end, and proof that its checks can fail.

The full check (build the sdist and wheel, install the wheel in a fresh venv,
smoke-test it there) takes about 25 s here; pip's cache makes the install
fast after the first run. Deselect with ``-m "not dist"`` when iterating.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import tether

pytestmark = pytest.mark.dist

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tools" / "dist_check.py"


def _load_check():
    spec = importlib.util.spec_from_file_location("dist_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    """The whole check, run once as `make dist-check` runs it, keeping the artifacts and the venv."""
    work = tmp_path_factory.mktemp("dist")
    out = subprocess.run([sys.executable, str(SCRIPT), "--keep", str(work)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"{out.stdout}\n{out.stderr}"
    yield work, out.stdout
    shutil.rmtree(work, ignore_errors=True)


def test_wheel_installs_and_passes_the_smoke_test_outside_the_checkout(dist):
    work, log = dist
    v = tether.__version__
    assert f"built tether-{v}.tar.gz and tether-{v}-" in log
    assert f"imported tether {v} from {work / 'venv'}" in log
    for line in ("py.typed present", "python -m tether.worker: PING echoed", "python -m tether.demo: OK",
                 f"  tether {v}", "C speedups active"):
        assert line in log, log
    assert "round trips: formats " + ", ".join(sorted(f.name for f in tether.formats.registry if f.id < 128)) in log


def _doctored(wheel: Path, to: Path, *, drop: str = "", add: str = "") -> Path:
    to.mkdir(exist_ok=True)
    out = to / wheel.name
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            if not (drop and item.filename.startswith(drop)):
                dst.writestr(item, src.read(item))
        if add:
            dst.writestr(add, b"/* a C source */\n")
    return out


@pytest.mark.parametrize("change, message", [
    ({"drop": "tether/py.typed"}, "lacks tether/py.typed"),
    ({"drop": "tether/_speedups."}, "no tether/_speedups extension"),
    ({"add": "tether/_speedups_src/decode.c"}, "ships C sources"),
])
def test_wheel_check_fails_on_a_broken_wheel(dist, tmp_path, change, message):
    check = _load_check()
    wheel = next((dist[0] / "dist").glob("*.whl"))
    check.check_wheel(wheel, tether.__version__)  # the real one passes
    with pytest.raises(check.CheckFailed, match=message):
        check.check_wheel(_doctored(wheel, tmp_path, **change), tether.__version__)


def test_smoke_test_fails_when_the_speedups_are_missing(dist):
    python = dist[0] / "venv" / "bin" / "python"
    code = ("import runpy, sys; sys.modules['tether._speedups'] = None; "
            f"sys.argv = [{str(SCRIPT)!r}, '--smoke', '--expect-version', {tether.__version__!r}]; "
            f"runpy.run_path({str(SCRIPT)!r}, run_name='__main__')")
    out = subprocess.run([str(python), "-I", "-c", code], capture_output=True, text=True, timeout=120, cwd=dist[0])
    assert out.returncode == 1
    assert "C speedups are not active in the installed wheel" in out.stderr, out.stderr


def test_smoke_test_fails_on_a_version_mismatch(dist):
    python = dist[0] / "venv" / "bin" / "python"
    out = subprocess.run([str(python), "-I", str(SCRIPT), "--smoke", "--expect-version", "9.9.9"],
                         capture_output=True, text=True, timeout=120, cwd=dist[0])
    assert out.returncode == 1 and "built 9.9.9" in out.stderr, out.stderr
