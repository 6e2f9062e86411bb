"""Compression: ``compression="auto"`` against no compression and bare lz4, byte-shuffle, and a table of codecs."""

from __future__ import annotations

import collections
import zlib
from typing import Any

import lz4.frame
import numpy as np
import zstandard

import tether

from . import data as bench_data
from .harness import Report, fmt_time, median, median_pair


def _incompressible(rep: Report, noise: bytes, repeat: int, holder: dict[str, Any]) -> None:
    t_none, t_auto = median_pair(
        lambda: holder.__setitem__("f", tether.dumps(noise, transport="network")),
        lambda: holder.__setitem__("f", tether.dumps(noise, compression="auto", transport="network")),
        3 * repeat, holder.clear,
    )
    rep.row("incompressible, compression='none' (network)", t_none)
    rep.row("incompressible, compression='auto' (network)", t_auto, tether.last_decision().compression_reason)
    rep.target("auto vs none on incompressible data", t_auto / t_none, 1.05)


def _shuffle_line(rep: Report, what: str, nbytes: int, plain: int, shuffled: int, filter_id: int, t: float) -> None:
    chose = "shuffle" if filter_id else "no shuffle"
    rep.note(f"    {what}: plain {plain / nbytes:.3f}, shuffled {shuffled / nbytes:.3f}; "
             f"tether chose {chose}, dumps {fmt_time(t).strip()}")
    rep.record(f"{what}: plain ratio", plain / nbytes, "ratio")
    rep.record(f"{what}: shuffled ratio", shuffled / nbytes, "ratio")
    rep.record(f"{what}: tether.dumps", t, "s", f"tether chose {chose}")


def _algorithms() -> list[tuple[str, Any, Any]]:
    dctx = zstandard.ZstdDecompressor()
    return [
        ("lz4 0", lambda b: lz4.frame.compress(b, compression_level=0), lz4.frame.decompress),
        ("lz4 9", lambda b: lz4.frame.compress(b, compression_level=9), lz4.frame.decompress),
        ("zstd 1", zstandard.ZstdCompressor(level=1).compress, dctx.decompress),
        ("zstd 3", zstandard.ZstdCompressor(level=3).compress, dctx.decompress),
        ("zstd 9", zstandard.ZstdCompressor(level=9).compress, dctx.decompress),
        ("gzip 1", lambda b: zlib.compress(b, 1), zlib.decompress),
        ("gzip 6", lambda b: zlib.compress(b, 6), zlib.decompress),
    ]


def _algorithm_table(rep: Report, data: dict[str, Any], quick: bool, holder: dict[str, Any]) -> None:
    # Quick runs check the table's code on 2 MiB: lz4 9 and gzip compress text at 10-30 MB/s, and 8 MiB
    # made this table half of a quick run (the suite runs one).
    table_mib = 2 if quick else 32
    rep.note(f"\n  ratio (stored/raw) and compress / decompress throughput, GB/s, on {table_mib} MiB of each kind:")
    kinds = list(data)
    rep.note("  " + f"{'algorithm':<14}" + "".join(f"{k:>34}" for k in kinds))
    for name, comp, decomp in _algorithms():
        cells = []
        for kind in kinds:
            value = data[kind]
            if isinstance(value, np.ndarray):
                raw = bytes(memoryview(value).cast("B")[: table_mib << 20])
            else:
                raw = value[: table_mib << 20]
            tc = median(lambda: holder.__setitem__("c", comp(raw)), 3)
            packed = comp(raw)
            td = median(lambda: decomp(packed), 3)
            cells.append(f"{len(packed) / len(raw):6.3f} {len(raw) / tc / 1e9:6.2f} / {len(raw) / td / 1e9:6.2f}")
            where = {"plot": "codec", "algorithm": name, "kind": kind, "bytes": len(raw)}
            rep.record(f"{name}, {kind}: ratio", len(packed) / len(raw), "ratio", meta={**where, "measure": "ratio"})
            rep.record(f"{name}, {kind}: compress", tc, "s", f"{len(raw)} B", meta={**where, "measure": "compress"})
            rep.record(f"{name}, {kind}: decompress", td, "s", f"{len(raw)} B")
        rep.note("  " + f"{name:<14}" + "".join(f"{c:>34}" for c in cells))


def _choices(frames: list[tuple[str, int]]) -> tuple[str, int]:
    """The codec the timed auto runs chose most (with the others' counts when they differ), and its frame size.

    Examples
    --------
    >>> _choices([("zstd", 10), ("lz4", 30), ("zstd", 12)])
    ('zstd (2 of 3 runs; lz4 in 1)', 12)
    >>> _choices([("lz4", 30)])
    ('lz4', 30)
    """
    counts = collections.Counter(codec for codec, _ in frames)
    (top, n), *others = counts.most_common()
    size = [s for codec, s in frames if codec == top][-1]
    if not others:
        return top, size
    rest = ", ".join(f"{codec} in {k}" for codec, k in others)
    return f"{top} ({n} of {len(frames)} runs; {rest})", size


def _auto_vs_lz4(rep: Report, kind: str, value: Any, raw: Any, repeat: int, holder: dict[str, Any]) -> Any:
    """``compression="auto"`` for the network against ``lz4.frame.compress`` of ``raw``, alternately; the frame.

    The row names what the timed auto runs chose, counted outside the timing from the decision each left.
    """
    frames: list[tuple[str, int]] = []  # what each timed auto run chose, and its frame's size
    holder.clear()  # an earlier section's frame is not one of these runs'

    def keep_choice() -> None:  # outside the timing: the frame the last auto run left, and its decision
        if "f" in holder:  # the decision names a codec inside the payload too (Arrow's IPC lz4)
            frames.append((tether.last_decision().compression, len(holder["f"])))
        holder.clear()

    t_lz4, t_auto = median_pair(
        lambda: holder.__setitem__("c", lz4.frame.compress(raw)),
        lambda: holder.__setitem__("f", tether.dumps(value, compression="auto", transport="network")),
        repeat, keep_choice,
    )
    keep_choice()
    chosen, size = _choices(frames)
    nbytes = len(raw)
    rep.row(f"{kind}: lz4.frame.compress", t_lz4, f"{nbytes / t_lz4 / 1e9:.2f} GB/s")
    rep.row(f"{kind}: tether auto -> {chosen}", t_auto, f"{nbytes / t_auto / 1e9:.2f} GB/s, ratio {size / nbytes:.3f}")
    rep.target(f"auto throughput vs lz4 ({kind})", t_auto / t_lz4, 1 / 0.9)
    return tether.dumps(value, compression="auto", transport="network")


def _shuffle_gains(rep: Report, floats_with_repeats: np.ndarray, repeat: int, holder: dict[str, Any]) -> None:
    """Stored/raw ratios plain and byte-shuffled per codec, and what auto's sampling chose, on two kinds of floats."""
    walk = np.cumsum(np.random.default_rng(9).integers(-3, 4, len(floats_with_repeats))).astype("f8")
    rep.note("  byte-shuffle (stored/raw ratio, plain vs shuffled; what auto's sampling chose):")
    for kind, floats, comp in [(k, a, c) for k, a in (("floats with repeats", floats_with_repeats),
                                                       ("random-walk floats", walk)) for c in ("lz4", "zstd")]:
        plain = tether.encode(floats, compression=comp, format="ndarray")
        codec = tether.compression.get(comp)
        packed = codec.compress([memoryview(floats).cast("B")], floats.nbytes, codec.default_level)
        shuffled = codec.compress([tether.compression.shuffle(memoryview(floats).cast("B"), 8)], floats.nbytes,
                                  codec.default_level)
        t = median(lambda: holder.__setitem__("f", tether.dumps(floats, compression=comp)), repeat, holder.clear)
        packed, shuffled = b"".join(packed), b"".join(shuffled)
        _shuffle_line(rep, f"{kind}, {comp}", floats.nbytes, len(packed), len(shuffled), plain.header.filter_id, t)


def _arrow_column(rep: Report, text: bytes, repeat: int, holder: dict[str, Any]) -> None:
    """A text-like Arrow column: auto (Arrow's own IPC compression) against lz4 on the same IPC stream."""
    import pyarrow as pa

    table = pa.table({"message": pa.array(text.split(b" "), pa.binary()).cast(pa.utf8())})
    ipc = tether.loads(tether.dumps(table), into="arrow")
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, ipc.schema) as w:
        w.write_table(ipc)
    _auto_vs_lz4(rep, "text-like Arrow column", table, memoryview(sink.getvalue()), repeat, holder)


def run(rep: Report, quick: bool) -> None:
    """``compression="auto"`` against none and lz4, byte-shuffle's gain, and a codec table.

    The sections run in one order on one heap (a shared ``holder`` keeps each
    timed result until the next call), since what each leaves allocated is
    the heap the next is timed on.

    Parameters
    ----------
    rep : Report
        Where the figures go.
    quick : bool
        16 MiB per kind of data instead of 64, fewer repeats.

    Examples
    --------
    Run this group alone, at the quick sizes: ``tether bench --only compression --quick``.
    """
    mib = 16 if quick else 64
    repeat = 3 if quick else 5
    rep.section(f"compression: {mib} MiB per kind of data")
    data = bench_data.compression_data(mib)
    holder: dict[str, Any] = {}
    _incompressible(rep, data["random bytes"], repeat, holder)
    for kind in ("floats with repeats", "text-like bytes"):
        value = data[kind]
        raw = memoryview(value).cast("B") if isinstance(value, np.ndarray) else value
        frame = _auto_vs_lz4(rep, kind, value, raw, repeat, holder)
        t_load = median(lambda: tether.loads(frame), repeat)
        rep.row(f"{kind}: tether.loads (decompress)", t_load, f"{len(raw) / t_load / 1e9:.2f} GB/s")
    _shuffle_gains(rep, data["floats with repeats"], repeat, holder)
    _arrow_column(rep, data["text-like bytes"], repeat + 2, holder)
    _algorithm_table(rep, data, quick, holder)
