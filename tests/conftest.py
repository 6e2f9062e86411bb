"""Shared fixtures: a real Erlang VM (never a mock), seeded randomness, fake kernel memory files, quiet alerts."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import textwrap

import pytest
from hypothesis import HealthCheck, settings

# Handler modules whose import is the test (they log, alert, configure logging or exit at import): for
# workers to import, never this process, which --doctest-modules would make import every file here.
collect_ignore = ["early_basicconfig.py", "early_crash.py", "early_filtered.py", "early_handlers.py", "early_threads.py"]

settings.register_profile("ci", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else "dev")


def run_escript(body: str, *, stdin: bytes | None = None, timeout: float = 120) -> str:
    """Run Erlang code as an escript's main/1 and return its stdout."""
    if shutil.which("escript") is None:
        pytest.fail("escript (erlang-nox) is not installed; `make test` installs it")
    src = "#!/usr/bin/env escript\n%%! -noshell\n" + textwrap.dedent(body)
    with tempfile.NamedTemporaryFile("w", suffix=".erl", delete=False) as f:
        f.write(src)
        path = f.name
    try:
        proc = subprocess.run(["escript", path], input=stdin, capture_output=True, timeout=timeout)
    finally:
        os.unlink(path)
    if proc.returncode != 0:
        raise AssertionError(f"escript failed ({proc.returncode}):\n{proc.stdout.decode()}\n{proc.stderr.decode()}")
    return proc.stdout.decode()


@pytest.fixture(autouse=True)
def fresh_compression_choices():
    """Each test's compression="auto" measures its own payloads: a choice kept from another test's is not reused."""
    import tether

    tether.compression.forget_choices()
    yield


@pytest.fixture(scope="session")
def erl():
    return run_escript


@pytest.fixture
def limit():
    """``set_to(nbytes)``: sets ``Limits.max_uncompressed_size`` for the test, the limits restored after it."""
    import tether

    previous = tether.get_limits()

    def set_to(nbytes: int) -> int:
        tether.set_limits(max_uncompressed_size=nbytes)
        return nbytes

    yield set_to
    tether.set_limits(previous)


# Registry-driven parameters: every built-in format and compressor (ids below
# 128 are tether's own), so a new one is tested, and needs a golden frame,
# from the moment it is registered.
def _builtin(registry) -> list[str]:
    return sorted(item.name for item in registry if item.id < 128)


def pytest_generate_tests(metafunc):
    import tether

    if "every_format" in metafunc.fixturenames:
        metafunc.parametrize("every_format", _builtin(tether.formats.registry))
    if "every_compressor" in metafunc.fixturenames:
        metafunc.parametrize("every_compressor", _builtin(tether.compression.registry))


@pytest.fixture
def fake_system(tmp_path, monkeypatch):
    """A cgroup tree and /proc files under tmp_path for tether.memory.

    Returns ``write(rel, text)``, which writes a cgroup file; ``write.files`` holds the /proc files
    (their PSI reads ``some avg10=1.50`` until a test changes it).
    """
    from tether import memory

    root = tmp_path / "cgroup"
    root.mkdir()
    files = {"/proc/self/cgroup": "0::/\n", "/proc/meminfo": "MemTotal: 8388608 kB\nMemAvailable: 6291456 kB\n",
             "/proc/pressure/memory": "some avg10=1.50 avg60=0.00 avg300=0.00 total=0\n"}
    real_read = memory._read
    monkeypatch.setattr(memory, "_read", lambda path: files[path] if path in files else real_read(path))
    monkeypatch.setattr(memory, "CGROUP_ROOT", str(root))
    monkeypatch.setattr(memory, "CACHE_SECONDS", 0.0)

    def write(rel: str, text: str) -> None:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    write.files = files
    return write


@contextlib.contextmanager
def quiet_alerts(clock=None):
    """Metrics on and empty, no alert active, ``clock`` (if any) timing operations; yields the alert events.

    Afterwards the alert settings, the clock and the counts are put back and every alert cleared.
    """
    import tether.metrics as m

    m.enable()
    # Clear first: reset() keeps the baselines of alerts still firing, and an earlier test's real-clock
    # baseline would then sit in the window the test's own clock fills.
    for event in m.active_alerts():  # real-clock alerts from earlier tests' timings
        m.clear(event.name)
    m.reset()
    settings = m.configure_alerts()
    if clock is not None:
        m.set_clock(clock)
    events = []
    m.on_alert(events.append)
    try:
        yield events
    finally:
        m.on_alert(events.append, remove=True)
        m.set_clock(None)
        m.configure_alerts(**settings)
        for event in m.active_alerts():
            m.clear(event.name)
        m.reset()


def split_stream(data: bytes) -> list[bytes]:
    """A stream's frames, one bytes each (as a relay would see them), by each header's frame size."""
    import tether

    out, pos = [], 0
    while pos < len(data):
        size = tether.inspect(data[pos:]).frame_size
        out.append(data[pos : pos + size])
        pos += size
    return out
