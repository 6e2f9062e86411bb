"""Shared fixtures: a real Erlang VM (never a mock), seeded randomness."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import textwrap

import pytest
from hypothesis import HealthCheck, settings

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


@pytest.fixture(scope="session")
def erl():
    return run_escript


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
