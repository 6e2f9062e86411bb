"""The OTP-style corrupter over every golden frame and stream: no untyped error, no crash, nothing wrong accepted.

The mutations and the readers are in tests/fuzz (``mutate``, ``corrupter``);
this test runs them in a child process, so that a crash is a failure with a
name instead of the end of the test run. The BEAM side of the same check is
beam/test/tether_hardening_test.exs.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys

TESTS = os.path.dirname(os.path.abspath(__file__))


def test_corrupter_finds_no_untyped_error_and_no_crash():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([TESTS, *sys.path])}
    proc = subprocess.run([sys.executable, "-m", "fuzz.corrupter"], capture_output=True, text=True, timeout=600,
                          env=env, cwd=TESTS)
    assert proc.returncode == 0, f"the corrupter died (status {proc.returncode}):\n{proc.stderr[-3000:]}"
    summary = json.loads(proc.stdout)
    assert summary["crashed"] is None, summary["crashed"]
    golden = glob.glob(os.path.join(TESTS, "golden", "*.tthr*")) + glob.glob(os.path.join(TESTS, "golden", "beam", "*.tthr"))
    assert len(summary["seeds"]) == len(golden)  # every format, compressor and stream kind the golden files hold
    passes = summary["passes"]
    for name, tally in passes.items():
        assert tally["untyped"] == {}, f"{name}: errors that are not tether.TetherError: {tally['untyped']}"
        assert tally["outcomes"].get("untyped", 0) == 0
        assert tally["accepted_count"] == 0, f"{name}: a checksummed frame accepted a flipped byte: {tally['accepted']}"
    # Every truncation, and three masks per byte: the counts follow from the seeds' sizes.
    total_bytes = sum(os.path.getsize(p) for p in golden)
    assert passes["truncations"]["mutants"] == total_bytes
    assert passes["flips"]["mutants"] == 3 * total_bytes
    assert passes["crafted"]["mutants"] > total_bytes
    print(f"corrupter: {sum(t['mutants'] for t in passes.values())} mutants, "
          f"{sum(t['calls'] for t in passes.values())} reader calls in {summary['seconds']} s")
