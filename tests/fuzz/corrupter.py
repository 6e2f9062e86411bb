"""The corrupter: every mutation of every golden frame and stream, through every public reader.

Run it as ``python -m fuzz.corrupter`` from ``tests/`` (``tests/test_corrupter.py``
does, in a child process, so that a crash is reported instead of taking
pytest down). It prints one JSON summary: per pass, how many mutants were
tried and how they ended. The contract it checks:

* every failure is a :class:`tether.TetherError` (``untyped`` stays empty);
* a frame with a payload checksum accepts no flipped byte (``accepted``
  stays 0 in the ``flips`` pass): nothing wrong is ever returned.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time
import warnings
from collections import Counter
from typing import Any, Callable, Iterable

import tether
from tether.stream import StreamReader, verify_stream

from . import mutate

GOLDEN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "golden")


def seeds() -> dict[str, bytes]:
    """Every golden frame (tests/golden/*.tthr, tests/golden/beam/*.tthr) and stream (*.tthrs), by name."""
    out = {}
    for path in sorted(glob.glob(os.path.join(GOLDEN, "*.tthr*")) + glob.glob(os.path.join(GOLDEN, "beam", "*.tthr"))):
        with open(path, "rb") as f:
            out[os.path.relpath(path, GOLDEN)] = f.read()
    return out


def _frame_ops(allow_pickle: bool) -> list[tuple[str, Callable[[bytes], Any]]]:
    return [
        ("loads", lambda m: tether.loads(m, allow_pickle=allow_pickle)),
        ("inspect", tether.inspect),
        ("verify", tether.verify),
    ]


STREAM_OPS: list[tuple[str, Callable[[bytes], Any]]] = [
    ("StreamReader", lambda m: list(StreamReader(m))),
    ("verify_stream", verify_stream),
]


class Tally:
    """How the mutants of one pass ended."""

    def __init__(self) -> None:
        self.mutants = 0
        self.calls = 0
        self.outcomes: Counter = Counter()
        self.untyped: dict[str, str] = {}  # "op: Type: message" -> hex of one mutant
        self.accepted: list[str] = []

    def as_dict(self) -> dict[str, Any]:
        return {"mutants": self.mutants, "calls": self.calls, "outcomes": dict(self.outcomes),
                "untyped": self.untyped, "accepted": self.accepted[:5], "accepted_count": len(self.accepted)}


def _run(tally: Tally, name: str, mutants: Iterable[bytes], ops: list, must_refuse: tuple[str, ...]) -> None:
    for mutant in mutants:
        tally.mutants += 1
        for op, call in ops:
            tally.calls += 1
            try:
                call(mutant)
            except tether.TetherError:
                tally.outcomes["typed"] += 1
                continue
            except Exception as exc:  # the finding: anything else escaped
                tally.outcomes["untyped"] += 1
                key = f"{name} {op}: {type(exc).__module__}.{type(exc).__qualname__}: {str(exc)[:120]}"
                tally.untyped.setdefault(key, mutant.hex() if len(mutant) <= 4096 else f"{len(mutant)} bytes")
                continue
            tally.outcomes["ok"] += 1
            if op in must_refuse:
                tally.accepted.append(f"{name} {op}")


def _checksummed(data: bytes) -> bool:
    return all(data[off + 11] != 0 for off in mutate.frame_offsets(data))


def run_seed(name: str, data: bytes) -> dict[str, dict[str, Any]]:
    """Every pass over one seed."""
    passes = {"truncations": Tally(), "flips": Tally(), "crafted": Tally()}
    stream = name.endswith(".tthrs")
    refuse = (("StreamReader", "verify_stream") if stream else ("loads", "verify")) if _checksummed(data) else ()
    ops = STREAM_OPS if stream else _frame_ops(allow_pickle=True)
    _run(passes["truncations"], name, mutate.truncations(data), ops, ())
    _run(passes["flips"], name, mutate.flips(data), ops, refuse)
    # Crafted pickle payloads are arbitrary code by design: only the refusal is checked there.
    crafted_ops = STREAM_OPS if stream else _frame_ops(allow_pickle=False)
    _run(passes["crafted"], name, mutate.crafted(data), crafted_ops, ())
    return {k: v.as_dict() for k, v in passes.items()}


def _merge(total: dict[str, Any], part: dict[str, Any]) -> None:
    for key, value in part.items():
        if isinstance(value, int):
            total[key] = total.get(key, 0) + value
        elif isinstance(value, dict):
            _merge(total.setdefault(key, {}), value)
        else:
            total[key] = (total.get(key) or []) + value


def run(only: str | None = None, workers: int = 2) -> dict[str, Any]:
    """Every pass over every seed, the largest seeds first, over ``workers`` processes; the summary ``main`` prints.

    A mutant that crashes the interpreter breaks the pool, and the summary says so.
    """
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    started = time.perf_counter()
    chosen = sorted(((n, d) for n, d in seeds().items() if not only or only in n), key=lambda nd: -len(nd[1]))
    passes: dict[str, Any] = {}
    crashed = None
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [(name, pool.submit(run_seed, name, data)) for name, data in chosen]
        for name, future in futures:
            try:
                _merge(passes, future.result())
            except BrokenProcessPool as exc:
                crashed = f"{name}: {exc}"
                break
    return {"seconds": round(time.perf_counter() - started, 1), "seeds": [n for n, _ in chosen],
            "crashed": crashed, "passes": passes}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="only seeds whose name contains this")
    parser.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")  # lossy-conversion warnings from mutated values are expected
    json.dump(run(args.only, args.workers), sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
