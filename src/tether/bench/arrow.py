"""Arrow: tables into frames against pyarrow's own IPC, ``from_etf``, DataFrames, and where Arrow beats ETF."""

from __future__ import annotations

import importlib.util
import pickle
from typing import Any

import numpy as np

import tether

from . import data
from .harness import Report, fmt_time, median, median_pair, per_call


def _crossover(rep: Report) -> None:
    rep.note("  etf vs arrow for n Python rows {id, name, score}: dumps + loads back to rows, and frame size")
    for n in (16, 256, 4096, 65536):
        value = [{"id": i, "name": f"n{i}", "score": i * 0.5} for i in range(n)]
        number = max(1, 4096 // n)
        te = per_call(lambda: tether.loads(tether.dumps(value, format="etf")), number, 5)
        ta = per_call(lambda: tether.loads(tether.dumps(value, format="arrow")), number, 5)
        se, sa = len(tether.dumps(value, format="etf")), len(tether.dumps(value, format="arrow"))
        rep.note(f"    {n:>6} rows: etf {fmt_time(te)} {se:>9,} B   arrow {fmt_time(ta)} {sa:>9,} B   "
                 f"faster: {'arrow' if ta < te else 'etf'}, smaller: {'arrow' if sa < se else 'etf'}")
        for fmt, t, size in (("etf", te, se), ("arrow", ta, sa)):
            rep.record(f"{n} rows as {fmt}: dumps + loads", t, "s",
                       meta={"plot": "crossover", "series": fmt, "rows": n, "measure": "time"})
            rep.record(f"{n} rows as {fmt}: frame", size, "B",
                       meta={"plot": "crossover", "series": fmt, "rows": n, "measure": "size"})
    cols = {"x": np.arange(65536, dtype="f8"), "id": np.arange(65536)}
    ta = per_call(lambda: tether.loads(tether.dumps(cols, format="arrow")), 20, 5)
    tp = per_call(lambda: tether.loads(tether.dumps(cols, format="pickle"), allow_pickle=True), 20, 5)
    rep.note(f"    dict of two 65,536-row NumPy columns: arrow {fmt_time(ta)}, pickle {fmt_time(tp)} "
             "(etf cannot hold arrays)")
    rep.record("dict of two 65,536-row NumPy columns as arrow: dumps + loads", ta, "s")
    rep.record("dict of two 65,536-row NumPy columns as pickle: dumps + loads", tp, "s")


def _loads(rep: Report, frame: bytes, table: Any, repeat: int) -> None:
    """Reading the frame back: trusted (O(1), zero-copy) and validated (the default, O(data)).

    The 100 µs target is for the zero-copy read, which only ``validate="basic"``
    still is. The default validates every offset and UTF-8 string: its cost is
    pyarrow's own ``validate(full=True)``, so its target is a ratio to reading
    and fully validating the same IPC stream with pyarrow alone (tether adds the
    inflation bound and the schema's text checks, both O(messages + fields)).
    """
    import pyarrow as pa

    t_basic = per_call(lambda: tether.loads(frame, options={"validate": "basic"}), 100)
    rep.row("tether.loads, trusted (validate='basic', zero-copy)", t_basic)
    rep.target("arrow loads, trusted (validate='basic')", t_basic, 100e-6, unit="s")
    ipc = memoryview(frame)[tether.inspect(frame).payload_offset:]

    def pyarrow_validated() -> None:
        pa.ipc.open_stream(pa.py_buffer(ipc)).read_all().validate(full=True)

    t_pa, t_full = median_pair(pyarrow_validated, lambda: tether.loads(frame), 2 * repeat + 1)
    rep.row("pyarrow open_stream + read_all + validate(full=True)", t_pa, f"{table.nbytes / t_pa / 1e9:.2f} GB/s")
    rep.row("tether.loads, validated (default)", t_full, f"{table.nbytes / t_full / 1e9:.2f} GB/s")
    rep.target("arrow validated loads vs pyarrow's read + full validate", t_full / t_pa, 1.1)


def run(rep: Report, quick: bool) -> None:
    """Arrow tables, ``tether.arrow.from_etf``, pandas round trips and the ETF/Arrow crossover for rows.

    The sections share one function body (the crossover, last, aside) because
    what each leaves allocated is the heap the next is timed on.

    Parameters
    ----------
    rep : Report
        Where the figures go.
    quick : bool
        A tenth of the rows, fewer repeats.

    Examples
    --------
    Run this group alone, at the quick sizes: ``tether bench --only arrow --quick``.
    """
    import pyarrow as pa

    rows = 400_000 if quick else 4_000_000
    repeat = 3 if quick else 5
    rep.section(f"arrow: {rows:,}-row table (int64, float64, utf8, bool)")
    rng = np.random.default_rng(3)
    words = np.array(["alpha", "beta", "gamma", "delta", "epsilon"])
    table = pa.table({
        "id": np.arange(rows, dtype="i8"),
        "price": rng.random(rows),
        "name": pa.array(words[rng.integers(0, 5, rows)]),
        "ok": rng.random(rows) > 0.5,
    })
    holder: dict[str, Any] = {}

    def arrow_write() -> None:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as w:
            w.write_table(table)
        holder["b"] = sink.getvalue()

    t_pa = median(arrow_write, repeat, holder.clear)
    t_tt = median(lambda: holder.__setitem__("f", tether.dumps(table)), repeat, holder.clear)
    rep.row("pyarrow IPC stream write", t_pa)
    rep.row("tether.dumps", t_tt, f"{table.nbytes / t_tt / 1e9:.2f} GB/s")
    rep.target("arrow dumps vs pyarrow's own IPC write", t_tt / t_pa, 1.1)
    frame = tether.dumps(table)
    _loads(rep, frame, table, repeat)

    n = data.ROWS // 10 if quick else data.ROWS
    payload, _ = data.erl_rows(n)
    if payload is not None:
        t_from = median(lambda: tether.arrow.from_etf(payload), repeat)
        t_base = median(lambda: pa.Table.from_pylist(tether.etf.decode(payload)), repeat)
        rep.row(f"tether.arrow.from_etf ({n:,} maps from erl)", t_from)
        rep.row("tether.etf.decode + Table.from_pylist", t_base)
        rep.target("from_etf vs decode + from_pylist", t_from / t_base, 0.7)

    if importlib.util.find_spec("pandas") is None:
        rep.note("  (pandas not installed: DataFrame round trip skipped)")
    else:
        df = table.slice(0, rows // 4).to_pandas()
        t_tt = median(lambda: tether.loads(tether.dumps(df)), repeat)
        t_pk = median(lambda: pickle.loads(pickle.dumps(df, protocol=5)), repeat)
        rep.row(f"pandas DataFrame ({len(df):,} rows) round trip: tether", t_tt)
        rep.row("pandas DataFrame round trip: pickle", t_pk)
        rep.target("pandas round trip vs pickle", t_tt / t_pk, 0.5)
    _crossover(rep)
