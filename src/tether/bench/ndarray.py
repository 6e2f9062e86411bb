"""ndarray: ``dumps`` of a large float64 array against one memory copy, and zero-copy ``loads``."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np

import tether

from .harness import Report, median, per_call


def _dumps(rep: Report, arr: np.ndarray, holder: dict[str, Any], repeat: int) -> float:
    def fresh_copy() -> None:
        out = np.empty_like(arr)
        np.copyto(out, arr)
        holder["out"] = out

    t_copy = median(fresh_copy, repeat, holder.clear)
    rep.row("np.copyto into a new array", t_copy, f"{arr.nbytes / t_copy / 1e9:.1f} GB/s")
    holder["warm"] = np.empty_like(arr)
    t_warm = median(lambda: np.copyto(holder["warm"], arr), repeat)
    rep.row("np.copyto into a warm array (memcpy)", t_warm, f"{arr.nbytes / t_warm / 1e9:.1f} GB/s")
    holder.clear()

    def dump() -> None:
        holder["frame"] = tether.dumps(arr)

    t_dump = median(dump, repeat, holder.clear)
    rep.row("tether.dumps", t_dump, f"{arr.nbytes / t_dump / 1e9:.1f} GB/s")
    rep.target("dumps vs one np.copyto (new array)", t_dump / t_copy, 1.3)
    return t_dump


def _peer_dumps(rep: Report, arr: np.ndarray, holder: dict[str, Any], repeat: int, t_dump: float) -> None:
    t = median(lambda: holder.__setitem__("p", pickle.dumps(arr, protocol=5)), max(3, repeat // 2), holder.clear)
    rep.row("pickle.dumps (protocol 5, in-band)", t, f"tether {t_dump / t:.2f}×")
    try:
        import pyarrow as pa

        def arrow_dump() -> None:
            tensor = pa.Tensor.from_numpy(arr)
            sink = pa.BufferOutputStream()
            pa.ipc.write_tensor(tensor, sink)
            holder["a"] = sink.getvalue()

        t = median(arrow_dump, max(3, repeat // 2), holder.clear)
        rep.row("pyarrow write_tensor", t, f"tether {t_dump / t:.2f}×")
    except Exception as exc:  # pragma: no cover - pyarrow is a dependency
        rep.note(f"  pyarrow: {exc}")


def _loads(rep: Report, arr: np.ndarray, holder: dict[str, Any], mib: int) -> None:
    frame = tether.dumps(arr)
    small = tether.dumps(arr[: len(arr) // 16])
    t_load = per_call(lambda: tether.loads(frame), 200)
    t_small = per_call(lambda: tether.loads(small), 200)
    rep.row("tether.loads (zero-copy)", t_load)
    rep.row(f"tether.loads of a {mib // 16} MiB frame", t_small, f"size ratio 16×, time {t_load / t_small:.2f}×")
    rep.target(f"loads of {mib} MiB", t_load, 100e-6, unit="s")
    t = median(lambda: pickle.loads(holder.get("p") or pickle.dumps(arr, 5)), 3)
    rep.row("pickle.loads", t, f"tether {t_load / t:.5f}×")


def run(rep: Report, quick: bool) -> None:
    """``tether.dumps`` of a large float64 array against memory copies and peers, then ``loads``.

    Parameters
    ----------
    rep : Report
        Where the figures go.
    quick : bool
        32 MiB instead of 256 MiB, fewer repeats.

    Examples
    --------
    Run this group alone, at the quick sizes: ``tether bench --only ndarray --quick``.
    """
    mib = 32 if quick else 256
    repeat = 3 if quick else 7
    n = mib * (1 << 20) // 8
    rep.section(f"ndarray: {mib} MiB float64")
    arr = np.random.default_rng(0).random(n)
    holder: dict[str, Any] = {}
    t_dump = _dumps(rep, arr, holder, repeat)
    _peer_dumps(rep, arr, holder, repeat, t_dump)
    _loads(rep, arr, holder, mib)
