"""BEAM: a real erl driving ``python -m tether.worker``, against echoes, erlport, and the bulk path's limit.

The Erlang side is ``beam/bench/worker_bench.escript`` in the checkout, run
against ``beam/src`` compiled into a scratch directory. An installed tether has
no ``beam/`` beside it, so the group then says so and skips.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from typing import Mapping

import tether

from .harness import Report

# Where a checkout keeps the companion, relative to the tether package (src/tether -> beam).
BEAM_DIR = os.path.join(os.path.dirname(tether.__file__), "..", "..", "beam")
SCRIPT = os.path.join(BEAM_DIR, "bench", "worker_bench.escript")


def _measure(quick: bool, mib: int) -> tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str] | None]:
    """The escript's whole run with the caller's emulator flags, and, unless those bind the schedulers
    themselves, its pools' throughput again with the schedulers bound (``BIND``)."""
    beam_src = os.path.join(BEAM_DIR, "src")
    rounds = "300" if quick else "2000"
    with tempfile.TemporaryDirectory() as tmp:
        srcs = [os.path.join(beam_src, f) for f in os.listdir(beam_src) if f.endswith(".erl")]
        subprocess.run(["erlc", "-o", tmp, *srcs], check=True)

        def escript(*extra: str, flags: str = "") -> subprocess.CompletedProcess[str]:
            env = {**os.environ, "ERL_LIBS": tmp, "ERL_FLAGS": f"{_erl_flags(tmp)} {flags}".strip()}
            return subprocess.run(["escript", SCRIPT, sys.executable, rounds, str(mib), *extra],
                                  capture_output=True, text=True, timeout=600, env=env)

        whole = escript()
        if _binds_already():
            return whole, None
        try:
            return whole, escript("throughput", flags=BIND)
        except subprocess.TimeoutExpired as exc:  # the whole run's figures stand on their own
            return whole, subprocess.CompletedProcess(exc.cmd, 1, "", f"timed out after {exc.timeout} s")


def _binds_already(env: Mapping[str, str] = os.environ) -> bool:
    """Whether the caller's emulator flags bind the schedulers themselves (``+sbt``, ``+stbt``, any spelling).

    Examples
    --------
    >>> _binds_already({"ERL_AFLAGS": "+sbtdb"}), _binds_already({"ERL_FLAGS": "+S 1 +sbwt none"})
    (True, False)
    """
    flags = " ".join(env.get(k, "") for k in ("ERL_AFLAGS", "ERL_FLAGS", "ERL_ZFLAGS"))
    return re.search(r"(^|\s)\+s?t?bt", flags) is not None


def _erl_flags(code_dir: str) -> str:
    """The scratch code path, then the caller's own ``ERL_FLAGS``: a deployment's emulator flags
    (``+S 1``, say) are measured as given, and the report says which they were."""
    return f"-pa {code_dir} {os.environ.get('ERL_FLAGS', '')}".strip()


# The binding the README recommends for a node whose pools have polling members (see tether_pool's
# pin_offset): the pools then keep their polling members off the CPUs of the schedulers the BEAM uses first.
# "Try to bind": where the emulator finds no CPU topology it starts unbound rather than refusing to start,
# and its "info bound 0" line then says so.
BIND = "+stbt db"


# Every figure this module places itself; others the escript prints are listed under their own names.
KNOWN = frozenset({
    "echo_us", "framed_us", "compact_us", "call_us", "call_nospin_us", "erlport_us", "call_encode_us",
    "call_python_us", "call_decode_us", "call_hops_us", "py_read_us", "py_handler_us", "py_write_us",
    "call_wakeup_us", "shm_us", "inline_us",
    "limit_pwrite_us", "limit_pread_us", "limit_pywrite_us", "limit_us",
    "pool4_sleep_us", "pool2_call_us", "pool1_call_us", "worker_call_us",
    *(f"shm_{stage}_us" for stage in ("encode", "write", "python", "read", "decode")),
})


def _figures(stdout: str) -> dict[str, float]:
    """The escript's ``name microseconds`` lines (an int, or a decimal such as 23.41), in seconds.

    Lines of another shape are skipped.
    """
    out = {}
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) != 2:
            continue
        try:
            out[parts[0]] = float(parts[1]) / 1e6
        except ValueError:
            continue
    return out


def _info(stdout: str) -> dict[str, str]:
    r"""The escript's ``info key value`` lines.

    Examples
    --------
    >>> _info("info otp 25\ncall_us 22.5\ninfo pool2_sleeper batch:0")
    {'otp': '25', 'pool2_sleeper': 'batch:0'}
    """
    info = {}
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "info":
            info[parts[1]] = parts[2]
    return info


def _vm(rep: Report, stdout: str) -> None:
    """Note the emulator the figures came from: the escript's ``info key value`` lines, and ``ERL_FLAGS``."""
    info = _info(stdout)
    if info:
        flags = os.environ.get("ERL_FLAGS", "")
        rep.context["erl"] = {**info, "erl_flags": flags}  # --json keeps it beside the run's other context
        rep.note(f"  erl: OTP {info.get('otp', '?')}, {info.get('schedulers_online', '?')} of "
                 f"{info.get('schedulers', '?')} schedulers online, {info.get('logical_processors', '?')} CPUs, "
                 f"schedulers {'bound' if info.get('bound') == '1' else 'unbound'}; ERL_FLAGS: {flags or '(none)'}")


def _pools(rep: Report, fig: dict[str, float], bound: dict[str, float] | None) -> None:
    """Concurrency on a pool of 4 and small-call throughput of a pool of 2 against one worker (#11's bars).

    ``bound``: the throughput figures again from an emulator with its schedulers bound (``BIND``), the
    deployment the README recommends for pools with polling members. The bar is then held against those, and
    the run's own (unbound) figures are shown above them.
    """
    if "pool4_sleep_us" in fig:
        rep.row("4 concurrent 0.5 s calls, pool of 4", fig["pool4_sleep_us"])
        rep.target("4 concurrent 0.5 s calls on a pool of 4", fig["pool4_sleep_us"], 0.7, "s")
    if bound is not None and "pool2_call_us" in bound and "worker_call_us" in bound:
        _throughput(rep, fig, "")
        rep.note(f"  the same with the schedulers bound ({BIND}; README, \"Tuning\"):")
        _throughput(rep, bound, ", bound", target=True)
    else:
        _throughput(rep, fig, "", target=True)


def _sleepers(rep: Report, runs: Mapping[str, str]) -> None:
    """Note the scheduling class the pool of 2's sleeping member ended each run in (``info pool2_sleeper``)."""
    said = {run: policy for run, policy in runs.items() if policy}
    if said:
        rep.note("  the pool of 2's sleeping member at the end (policy:times it went back to normal; "
                 "README, \"Tuning\"): " + "; ".join(f"{run} {policy}" for run, policy in said.items()))


def _throughput(rep: Report, fig: dict[str, float], tag: str, target: bool = False) -> None:
    """Rows for the pools' small-call throughput (8 callers), and the 1.6× bar when ``target``."""
    if "pool2_call_us" not in fig or "worker_call_us" not in fig:
        return
    # The bar's "one worker" is a Tether.Worker on its own. The pool of 1 is only shown beside it: it ran
    # 10 % slower than one until pool calls went straight to a member's queue.
    two, one = fig["pool2_call_us"], fig["worker_call_us"]
    rep.row(f"8 callers, 5-key echo, pool of 2, per call{tag}", two, f"{one / two:.2f}× one worker's throughput")
    rep.row(f"8 callers, 5-key echo, one worker (no pool), per call{tag}", one)
    if "pool1_call_us" in fig:
        rep.row(f"8 callers, 5-key echo, pool of 1, per call{tag}", fig["pool1_call_us"],
                f"pool of 2: {fig['pool1_call_us'] / two:.2f}× its throughput")
    if target:
        rep.target(f"pool of 2 throughput vs one worker{tag} (inverse)", two / one, 1 / 1.6)


def _small(rep: Report, fig: dict[str, float]) -> None:
    call, echo = fig["call_us"], fig["echo_us"]
    rep.row("minimal {packet,4} echo, 100 B", echo)
    if "framed_us" in fig:
        rep.row("tether-framed echo, no handler", fig["framed_us"])
    if "compact_us" in fig:
        rep.row("compact-message echo, no handler", fig["compact_us"], "the form calls take (docs/format.md §8)")
    rep.row("Tether.Worker.call with a 5-key map", call, f"{call / echo:.2f}× the echo"
            + (f", {call / fig['framed_us']:.2f}× the framed echo" if "framed_us" in fig else "")
            + (f", {call / fig['compact_us']:.2f}× the compact echo" if "compact_us" in fig else ""))
    if "call_nospin_us" in fig:
        rep.row("  the same, spin_us: 0 (Python sleeps at once)", fig["call_nospin_us"],
                f"{fig['call_nospin_us'] / call:.2f}× the call with the default spin")
    if "erlport_us" in fig:
        rep.row("erlport python:call, same map and function", fig["erlport_us"])
        rep.target("small call vs erlport's python:call", call / fig["erlport_us"], 0.5)
    else:
        rep.note("  (erlport could not be built here, see stderr: the call is compared with the echoes only)")
    parts = [("call_encode_us", "encode the request (BEAM)"), ("call_python_us", "request out to reply in"),
             ("py_read_us", "  Python: read and decode"), ("py_handler_us", "  Python: the handler"),
             ("py_write_us", "  Python: encode and write"), ("call_wakeup_us", "  pipe and process wake-ups"),
             ("call_decode_us", "decode the reply (BEAM)"), ("call_hops_us", "caller/gen_server/port hops")]
    if any(key in fig for key, _ in parts):
        rep.note("  the call's parts, measured in place (medians; the BEAM's stages in whole µs, Python's to 0.1 µs):")
        for key, label in parts:
            if key in fig:
                rep.row(f"  {label}", fig[key])


def _bulk(rep: Report, fig: dict[str, float], mib: int) -> None:
    shm, inline = fig["shm_us"], fig["inline_us"]
    rep.row(f"{mib} MiB tensor round trip, inline (port)", inline)
    rep.row(f"{mib} MiB tensor round trip, shared memory", shm, f"{inline / shm:.1f}× faster")
    rep.target("shm tensor round trip vs inline (inverse)", shm / inline, 0.2)
    for stage in ("encode", "write", "python", "read", "decode"):
        if f"shm_{stage}_us" in fig:
            rep.row(f"  stage: {stage}", fig[f"shm_{stage}_us"])
    if "limit_us" in fig:
        for key, label in (("limit_pwrite_us", "BEAM pwrite, warm file"), ("limit_pread_us", "BEAM pread, warm file"),
                           ("limit_pywrite_us", "Python pooled write")):
            if key in fig:
                rep.row(f"  limit: {label}", fig[key])
        rep.row("  limit: the sum, without a NIF", fig["limit_us"], f"shm round trip {shm / fig['limit_us']:.2f}×")
        rep.target("shm tensor round trip vs its limit", shm / fig["limit_us"], 1.5)


def run(rep: Report, quick: bool) -> None:
    """Small calls and large tensors through ``Tether.Worker``, timed inside erl, against their peers and limits.

    The small call is compared with a raw ``{packet,4}`` echo, a tether-framed
    echo and, where it builds, erlport's ``python:call`` (target ≤ 0.5×, #11),
    then broken into its parts. The tensor round trip through shared memory is
    compared with the same through the port, and with its limit without a
    NIF (target ≤ 1.5×), stage by stage.

    Parameters
    ----------
    rep : Report
        Where the figures go.
    quick : bool
        Fewer small calls and a 16 MiB tensor instead of 256 MiB.

    Examples
    --------
    Run this group alone, at the quick sizes: ``tether bench --only beam --quick``.
    """
    rep.section("BEAM <-> Python worker (a real erl driving python -m tether.worker)")
    if shutil.which("erlc") is None or shutil.which("escript") is None:
        rep.note("  (erl not found: run `make bench`, which installs it)")
        return
    if not (os.path.isdir(os.path.join(BEAM_DIR, "src")) and os.path.isfile(SCRIPT)):
        rep.note("  (the beam/ companion is not beside this installation: run from a checkout)")
        return
    mib = 16 if quick else 256
    out, bound_out = _measure(quick, mib)
    if out.returncode != 0:
        rep.note(f"  beam bench failed: {out.stderr.strip()[-400:]}")
        return
    fig = _figures(out.stdout)
    missing = [k for k in ("echo_us", "call_us", "shm_us", "inline_us") if k not in fig]
    if missing:
        rep.note(f"  beam bench printed no {', '.join(missing)}: {out.stdout.strip()[-300:]!r}")
        return
    _vm(rep, out.stdout)
    _small(rep, fig)
    bound = None
    if bound_out is not None:
        if bound_out.returncode != 0:
            rep.note(f"  the bound-schedulers run failed: {bound_out.stderr.strip()[-300:]}")
        elif "info bound 1" not in bound_out.stdout.splitlines():
            rep.note(f"  {BIND} bound no scheduler here (no CPU topology): the bar is held against the run above")
        else:
            bound = _figures(bound_out.stdout)
    _pools(rep, fig, bound)
    _sleepers(rep, {"unbound": _info(out.stdout).get("pool2_sleeper", ""),
                    "bound": _info(bound_out.stdout).get("pool2_sleeper", "") if bound is not None else ""})
    _bulk(rep, fig, mib)
    shown = {f.name for f in rep.figures}
    for key in sorted(set(fig) - KNOWN):  # a figure the escript added later is still shown and kept
        if key not in shown:
            rep.row(key, fig[key])
