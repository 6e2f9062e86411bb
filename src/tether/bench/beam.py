"""BEAM: a real erl driving ``python -m tether.worker``, against a bare ``{packet, 4}`` echo.

The Erlang side is ``beam/bench/worker_bench.escript`` in the checkout, run
against ``beam/src`` compiled into a scratch directory. An installed tether has
no ``beam/`` beside it, so the group then says so and skips.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

import tether

from .harness import Report

# Where a checkout keeps the companion, relative to the tether package (src/tether -> beam).
BEAM_DIR = os.path.join(os.path.dirname(tether.__file__), "..", "..", "beam")
SCRIPT = os.path.join(BEAM_DIR, "bench", "worker_bench.escript")


def _measure(quick: bool, mib: int) -> subprocess.CompletedProcess[str]:
    beam_src = os.path.join(BEAM_DIR, "src")
    with tempfile.TemporaryDirectory() as tmp:
        srcs = [os.path.join(beam_src, f) for f in os.listdir(beam_src) if f.endswith(".erl")]
        subprocess.run(["erlc", "-o", tmp, *srcs], check=True)
        return subprocess.run(
            ["escript", SCRIPT, sys.executable, "300" if quick else "2000", str(mib)],
            capture_output=True, text=True, timeout=600, env={**os.environ, "ERL_LIBS": tmp, "ERL_FLAGS": f"-pa {tmp}"},
        )


def run(rep: Report, quick: bool) -> None:
    """Small calls and large tensors through ``Tether.Worker``, timed inside erl.

    Parameters
    ----------
    rep : Report
        Where the figures go.
    quick : bool
        Fewer small calls and a 16 MiB tensor instead of 64 MiB.
    """
    rep.section("BEAM <-> Python worker (a real erl driving python -m tether.worker)")
    if shutil.which("erlc") is None or shutil.which("escript") is None:
        rep.note("  (erl not found: run `make bench`, which installs it)")
        return
    if not (os.path.isdir(os.path.join(BEAM_DIR, "src")) and os.path.isfile(SCRIPT)):
        rep.note("  (the beam/ companion is not beside this installation: run from a checkout)")
        return
    mib = 16 if quick else 64
    out = _measure(quick, mib)
    if out.returncode != 0:
        rep.note(f"  beam bench failed: {out.stderr.strip()[-400:]}")
        return
    fig = {k: int(v) / 1e6 for k, v in (line.split() for line in out.stdout.split("\n") if line.strip())}
    rep.row("minimal {packet,4} echo, 100 B", fig["echo_us"])
    rep.row("Tether.Worker.call with a 5-key map", fig["call_us"], f"{fig['call_us'] / fig['echo_us']:.2f}× the echo")
    rep.target("small call vs packet echo", fig["call_us"] / fig["echo_us"], 1.5)
    rep.row(f"{mib} MiB tensor round trip, inline through the port", fig["inline_us"])
    rep.row(f"{mib} MiB tensor round trip, via shared memory", fig["shm_us"],
            f"{fig['inline_us'] / fig['shm_us']:.1f}× faster")
    rep.target("shm tensor round trip vs inline (inverse)", fig["shm_us"] / fig["inline_us"], 0.2)
