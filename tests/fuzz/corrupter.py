"""The corrupter: every mutation of every golden frame and stream, through every public reader.

Run it as ``python -m fuzz.corrupter`` from ``tests/`` (``tests/test_corrupter.py``
does, in a child process, so that a crash is reported instead of taking
pytest down). It prints one JSON summary: per pass, how many mutants were
tried and how they ended. The contract it checks:

* every failure is a :class:`tether.TetherError` (``untyped`` stays empty);
* a frame with a payload checksum accepts no flipped byte (``accepted``
  stays 0 in the ``flips`` pass): nothing wrong is ever returned;
* an Arrow frame that still loads after a resealed flip is safe to *use*
  (the ``used`` pass): its table is read to Python objects, and it is loaded
  into pandas and polars, so a table that loads but crashes the interpreter
  when read (an offset or dictionary index pointing past its buffer) is caught.
  It runs over the golden Arrow frames and over a few built here (``arrow_seeds``)
  whose columns have nulls, strings, lists, dictionaries, timestamps and structs.
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import json
import os
import struct
import sys
import time
import warnings
from collections import Counter
from typing import Any, Callable, Iterable, Iterator

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


def _use(value: Any) -> Any:
    """Read every value of a loaded table, as an application would: a crash here is what the pass looks for."""
    if hasattr(value, "to_pylist"):  # pyarrow Table or RecordBatch
        return value.to_pylist()
    if hasattr(value, "to_dicts"):  # polars
        return value.to_dicts()
    if hasattr(value, "to_dict"):  # pandas
        return value.to_dict("list")
    return value


def _loads_then_use(mutant: bytes, into: str | None = None) -> Any:
    """``loads`` (whose errors must be typed), then :func:`_use` on what it returned.

    An exception from the use itself is the library's own on valid but extreme
    data (polars panics on a timestamp it cannot show): not tether's to type.
    What this looks for there is a crash, which takes the worker down.
    """
    value = tether.loads(mutant, into=into)
    try:
        return _use(value)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException:
        return None


def _used_ops() -> list[tuple[str, Callable[[bytes], Any]]]:
    ops = [("loads, used", _loads_then_use), ("into pylist", lambda m: tether.loads(m, into="pylist"))]
    for lib in ("pandas", "polars"):
        if importlib.util.find_spec(lib) is not None:
            ops.append((f"into {lib}, used", lambda m, lib=lib: _loads_then_use(m, lib)))
    return ops


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
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:  # the finding: anything else escaped (polars panics are BaseExceptions)
                tally.outcomes["untyped"] += 1
                key = f"{name} {op}: {type(exc).__module__}.{type(exc).__qualname__}: {str(exc)[:120]}"
                tally.untyped.setdefault(key, mutant.hex() if len(mutant) <= 4096 else f"{len(mutant)} bytes")
                continue
            tally.outcomes["ok"] += 1
            if op in must_refuse:
                tally.accepted.append(f"{name} {op}")


def _checksummed(data: bytes) -> bool:
    return all(data[off + 11] != 0 for off in mutate.frame_offsets(data))


def _is_arrow(data: bytes) -> bool:
    try:
        return tether.inspect(data).format == "arrow"
    except tether.TetherError:
        return False


# The used pass flips every byte of the first KiB of a payload with every mask (the IPC metadata and
# the small buffers are there), then every 97th byte with one mask in turn: past that, a large golden
# payload is lz4 data, where each mutant costs a decompression and finds nothing new (50 s for every byte).
USED_EVERY_MASK = 1024
USED_DEEP_STRIDE = 97


def payload_flips(data: bytes) -> Iterator[bytes]:
    """The frame's payload bytes flipped, checksums recomputed (a hostile peer's), as ``USED_*`` choose."""
    mlen, plen = struct.unpack_from("<I", data, 16)[0], struct.unpack_from("<Q", data, 24)[0]
    start = (mutate.HEADER_SIZE + mlen + 63) & ~63
    for pos in range(start, min(start + plen, len(data))):
        deep = pos - start >= USED_EVERY_MASK
        if deep and (pos - start) % USED_DEEP_STRIDE:
            continue
        for mask in (mutate.MASKS[pos // USED_DEEP_STRIDE % len(mutate.MASKS)],) if deep else mutate.MASKS:
            broken = bytearray(data)
            broken[pos] ^= mask
            mutate.fix(broken)
            yield bytes(broken)


def arrow_seeds() -> dict[str, bytes]:
    """Arrow frames built here, with the columns the golden ones lack (they depend on the installed libraries)."""
    import pyarrow as pa

    out = {"built/table_nulls_strings_lists": tether.dumps(pa.table(
        {"a": [1, 2, None], "s": ["x", None, "z"], "l": [[1], [], None]})),
        "built/table_dictionary_struct": tether.dumps(pa.table(
            {"d": pa.array(["x", "y", "x"]).dictionary_encode(), "st": [{"k": 1, "v": "a"}, None, {"k": 3, "v": "c"}],
             "ls": [["a", "b"], None, []]}))}
    if importlib.util.find_spec("pandas") is not None:
        import pandas as pd

        out["built/pandas_categorical_datetime"] = tether.dumps(pd.DataFrame(
            {"a": [1.0, 2.0], "c": pd.Categorical(["x", "y"]), "t": pd.date_range("2020", periods=2, tz="UTC")}))
    if importlib.util.find_spec("polars") is not None:
        import polars as pl

        out["built/polars_struct"] = tether.dumps(pl.DataFrame({"a": [1, 2], "s": [{"x": 1}, None]}))
    return out


def run_used(name: str, data: bytes) -> dict[str, dict[str, Any]]:
    """The ``used`` pass over one Arrow frame: every resealed payload flip that loads is read to the end."""
    tally = Tally()
    _run(tally, name, payload_flips(data), _used_ops(), ())
    return {"used": tally.as_dict()}


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
    out = {k: v.as_dict() for k, v in passes.items()}
    if not stream and _is_arrow(data):
        out.update(run_used(name, data))
    return out


def _merge(total: dict[str, Any], part: dict[str, Any]) -> None:
    for key, value in part.items():
        if isinstance(value, int):
            total[key] = total.get(key, 0) + value
        elif isinstance(value, dict):
            _merge(total.setdefault(key, {}), value)
        elif isinstance(value, str):  # one mutant's hex per untyped error: the first seen is kept
            total.setdefault(key, value)
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
    built = {n: d for n, d in arrow_seeds().items() if not only or only in n}
    passes: dict[str, Any] = {}
    crashed = None
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [(name, pool.submit(run_seed, name, data)) for name, data in chosen]
        futures += [(name, pool.submit(run_used, name, data)) for name, data in built.items()]
        for name, future in futures:
            try:
                _merge(passes, future.result())
            except BrokenProcessPool as exc:
                crashed = f"{name}: {exc}"
                break
    return {"seconds": round(time.perf_counter() - started, 1), "seeds": [n for n, _ in chosen],
            "built_seeds": sorted(built), "crashed": crashed, "passes": passes}


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
