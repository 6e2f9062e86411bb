"""``tether bench``: tether against its peers, measured in the same run.

Every figure is a median of repeated runs; targets are ratios against a peer
timed moments before, because the machine is shared and noisy.
"""

from __future__ import annotations

import gc
import os
import pickle
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from typing import Any, Callable

import numpy as np

import tether

ROWS = 100_000


def _median(fn: Callable[[], Any], repeat: int, setup: Callable[[], Any] | None = None) -> float:
    times = []
    for _ in range(repeat):
        if setup is not None:
            setup()
        gc.collect()
        gc.disable()
        try:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        finally:
            gc.enable()
    return statistics.median(times)


def _median_pair(a: Callable[[], Any], b: Callable[[], Any], repeat: int, setup: Callable[[], Any] | None = None) -> tuple[float, float]:
    """Medians of ``a`` and ``b`` timed alternately, so drift on a shared machine hits both alike."""
    ta, tb = [], []
    for _ in range(repeat):
        ta.append(_median(a, 1, setup))
        tb.append(_median(b, 1, setup))
    return statistics.median(ta), statistics.median(tb)


def _per_call(fn: Callable[[], Any], number: int, repeat: int = 7) -> float:
    """Median over ``repeat`` runs of the mean time of ``number`` back-to-back calls (as timeit does)."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - t0) / number)
    return statistics.median(times)


def _fmt_t(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:8.1f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:8.2f} ms"
    return f"{seconds:8.3f} s "


class Report:
    def __init__(self) -> None:
        self.checks: list[tuple[str, bool, str]] = []

    def section(self, title: str) -> None:
        print(f"\n== {title}")

    def row(self, name: str, seconds: float | None, extra: str = "") -> None:
        """One figure; ``seconds=None`` for rows that are not a time."""
        print(f"  {name:<44} {_fmt_t(seconds) if seconds is not None else ' ' * 11}  {extra}")

    def target(self, what: str, value: float, limit: float, unit: str = "×") -> None:
        ok = value <= limit
        shown = f"{value:.3f}{unit}" if unit == "×" else f"{value * 1e6:.1f} µs"
        bound = f"{limit:.2f}{unit}" if unit == "×" else f"{limit * 1e6:.0f} µs"
        self.checks.append((what, ok, f"{shown} (target ≤ {bound})"))
        print(f"  -> {what}: {shown}, target ≤ {bound}: {'MET' if ok else 'MISSED'}")


def _erl_rows(rows: int) -> tuple[bytes | None, dict[str, float]]:
    """The benchmark term made by a real erl, plus erl's own codec timings."""
    if shutil.which("escript") is None:
        return None, {}
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "rows.etf")
        script = os.path.join(tmp, "gen.erl")
        with open(script, "w") as f:
            f.write(
                "#!/usr/bin/env escript\n%%! -noshell\n"
                "main([Out, NStr]) ->\n"
                "    N = list_to_integer(NStr),\n"
                "    T = [#{id => I, price => I * 1.5, name => <<\"item\", (integer_to_binary(I))/binary>>,\n"
                "           tags => [alpha, beta], pos => {I, I + 1}, active => (I rem 2 =:= 0)}\n"
                "         || I <- lists:seq(1, N)],\n"
                "    B = term_to_binary(T),\n"
                "    ok = file:write_file(Out, B),\n"
                "    Enc = med([element(1, timer:tc(fun() -> term_to_binary(T) end)) || _ <- lists:seq(1, 5)]),\n"
                "    Dec = med([element(1, timer:tc(fun() -> binary_to_term(B) end)) || _ <- lists:seq(1, 5)]),\n"
                "    io:format(\"~p ~p~n\", [Enc, Dec]).\n"
                "med(L) -> lists:nth(3, lists:sort(L)).\n"
            )
        proc = subprocess.run(["escript", script, out, str(rows)], capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            return None, {}
        enc_us, dec_us = (int(x) for x in proc.stdout.split())
        with open(out, "rb") as f:
            return f.read(), {"encode": enc_us / 1e6, "decode": dec_us / 1e6}


def bench_etf(rep: Report, quick: bool) -> None:
    rows = ROWS // 10 if quick else ROWS
    repeat = 3 if quick else 5
    rep.section(f"ETF: {rows:,}-element list of Elixir-style maps")
    data, erl_times = _erl_rows(rows)
    if data is None:
        print("  (erl not found: data made by tether instead; run `make bench` to install erl)")
        A = tether.Atom
        value = [
            {A("id"): i, A("price"): i * 1.5, A("name"): b"item%d" % i, A("tags"): [A("alpha"), A("beta")],
             A("pos"): (i, i + 1), A("active"): i % 2 == 0}
            for i in range(1, rows + 1)
        ]
        data = tether.etf.encode(value)
    print(f"  {len(data):,} bytes of ETF")
    t_dec = _median(lambda: tether.etf.decode(data), repeat)
    rep.row("tether.etf.decode", t_dec)
    value = tether.etf.decode(data)
    t_enc = _median(lambda: tether.etf.encode(value), repeat)
    rep.row("tether.etf.encode", t_enc)
    if erl_times:
        rep.row("erlang:binary_to_term (in erl)", erl_times["decode"], f"tether {t_dec / erl_times['decode']:.2f}×")
        rep.row("erlang:term_to_binary (in erl)", erl_times["encode"], f"tether {t_enc / erl_times['encode']:.2f}×")
    try:
        import erlpack
    except ImportError:
        erlpack = None
    try:
        import erlang as erlang_py
    except ImportError:
        erlang_py = None
    if erlpack is not None:
        t = _median(lambda: erlpack.unpack(data), repeat)
        rep.row("erlpack.unpack", t, f"tether {t_dec / t:.2f}×")
        rep.target("decode vs erlpack", t_dec / t, 0.65)
        ev = erlpack.unpack(data)
        try:
            t2 = _median(lambda: erlpack.pack(ev), repeat)
            rep.row("erlpack.pack", t2, f"tether {t_enc / t2:.2f}×")
        except Exception as exc:  # erlpack cannot pack its own decoded maps everywhere
            print(f"  erlpack.pack: failed ({type(exc).__name__})")
    if erlang_py is not None:
        t = _median(lambda: erlang_py.binary_to_term(data), repeat)
        rep.row("erlang_py.binary_to_term", t, f"tether {t_dec / t:.2f}×")
        ev = erlang_py.binary_to_term(data)
        t = _median(lambda: erlang_py.term_to_binary(ev), repeat)
        rep.row("erlang_py.term_to_binary", t, f"tether {t_enc / t:.2f}×")
        rep.target("encode vs erlang_py", t_enc / t, 0.5)
    t = _median(lambda: pickle.loads(pickle.dumps(value, 5)), repeat)
    rep.row("pickle round trip (same value)", t, f"tether round trip {(t_enc + t_dec) / t:.2f}×")


def bench_ndarray(rep: Report, quick: bool) -> None:
    mib = 32 if quick else 256
    repeat = 3 if quick else 7
    n = mib * (1 << 20) // 8
    rep.section(f"ndarray: {mib} MiB float64")
    arr = np.random.default_rng(0).random(n)
    holder: dict[str, Any] = {}

    def fresh_copy() -> None:
        out = np.empty_like(arr)
        np.copyto(out, arr)
        holder["out"] = out

    def clear() -> None:
        holder.clear()

    t_copy = _median(fresh_copy, repeat, clear)
    rep.row("np.copyto into a new array", t_copy, f"{arr.nbytes / t_copy / 1e9:.1f} GB/s")
    holder["warm"] = np.empty_like(arr)
    t_warm = _median(lambda: np.copyto(holder["warm"], arr), repeat)
    rep.row("np.copyto into a warm array (memcpy)", t_warm, f"{arr.nbytes / t_warm / 1e9:.1f} GB/s")
    holder.clear()

    def dump() -> None:
        holder["frame"] = tether.dumps(arr)

    t_dump = _median(dump, repeat, clear)
    rep.row("tether.dumps", t_dump, f"{arr.nbytes / t_dump / 1e9:.1f} GB/s")
    rep.target("dumps vs one np.copyto (new array)", t_dump / t_copy, 1.3)
    t = _median(lambda: holder.__setitem__("p", pickle.dumps(arr, protocol=5)), max(3, repeat // 2), clear)
    rep.row("pickle.dumps (protocol 5, in-band)", t, f"tether {t_dump / t:.2f}×")
    try:
        import pyarrow as pa

        def arrow_dump() -> None:
            tensor = pa.Tensor.from_numpy(arr)
            sink = pa.BufferOutputStream()
            pa.ipc.write_tensor(tensor, sink)
            holder["a"] = sink.getvalue()

        t = _median(arrow_dump, max(3, repeat // 2), clear)
        rep.row("pyarrow write_tensor", t, f"tether {t_dump / t:.2f}×")
    except Exception as exc:  # pragma: no cover - pyarrow is a dependency
        print(f"  pyarrow: {exc}")

    frame = tether.dumps(arr)
    small = tether.dumps(arr[: n // 16])
    t_load = _per_call(lambda: tether.loads(frame), 200)
    t_small = _per_call(lambda: tether.loads(small), 200)
    rep.row("tether.loads (zero-copy)", t_load)
    rep.row(f"tether.loads of a {mib // 16} MiB frame", t_small, f"size ratio 16×, time {t_load / t_small:.2f}×")
    rep.target(f"loads of {mib} MiB", t_load, 100e-6, unit="s")
    t = _median(lambda: pickle.loads(holder.get("p") or pickle.dumps(arr, 5)), 3)
    rep.row("pickle.loads", t, f"tether {t_load / t:.5f}×")


def _compression_data(mib: int) -> dict[str, Any]:
    rng = np.random.default_rng(7)
    n = mib * (1 << 20)
    # Floats with many repeats: a sensor that holds its value for a while.
    steps = rng.normal(0, 1, n // 8 // 64).round(2)
    floats = np.repeat(np.cumsum(steps), 64)[: n // 8].astype("f8")
    words = np.array([b"alpha", b"beta", b"gamma", b"delta", b"error", b"warning", b"user_id=", b"42"])
    text = b" ".join(words[rng.integers(0, len(words), n // 6)])[:n]
    noise = rng.bytes(n)
    return {"floats with repeats": floats, "text-like bytes": text, "random bytes": noise}


def bench_compression(rep: Report, quick: bool) -> None:
    import lz4.frame
    import zstandard

    mib = 16 if quick else 64
    repeat = 3 if quick else 5
    rep.section(f"compression: {mib} MiB per kind of data")
    data = _compression_data(mib)
    noise = data["random bytes"]
    holder: dict[str, Any] = {}

    t_none, t_auto = _median_pair(
        lambda: holder.__setitem__("f", tether.dumps(noise, transport="network")),
        lambda: holder.__setitem__("f", tether.dumps(noise, compression="auto", transport="network")),
        3 * repeat, holder.clear,
    )
    rep.row("incompressible, compression='none' (network)", t_none)
    rep.row("incompressible, compression='auto' (network)", t_auto, tether.last_decision().compression_reason)
    rep.target("auto vs none on incompressible data", t_auto / t_none, 1.05)

    for kind in ("floats with repeats", "text-like bytes"):
        value = data[kind]
        raw = memoryview(value).cast("B") if isinstance(value, np.ndarray) else value
        nbytes = len(raw)
        t_lz4, t_auto = _median_pair(
            lambda: holder.__setitem__("c", lz4.frame.compress(raw)),
            lambda: holder.__setitem__("f", tether.dumps(value, compression="auto", transport="network")),
            repeat, holder.clear,
        )
        frame = tether.dumps(value, compression="auto", transport="network")
        chosen = tether.inspect(frame).compression
        rep.row(f"{kind}: lz4.frame.compress", t_lz4, f"{nbytes / t_lz4 / 1e9:.2f} GB/s")
        rep.row(f"{kind}: tether auto -> {chosen}", t_auto,
                f"{nbytes / t_auto / 1e9:.2f} GB/s, ratio {len(frame) / nbytes:.3f}")
        rep.target(f"auto throughput vs lz4 ({kind})", t_auto / t_lz4, 1 / 0.9)
        t_load = _median(lambda: tether.loads(frame), repeat)
        rep.row(f"{kind}: tether.loads (decompress)", t_load, f"{nbytes / t_load / 1e9:.2f} GB/s")

    walk = np.cumsum(np.random.default_rng(9).integers(-3, 4, len(data["floats with repeats"]))).astype("f8")
    print("  byte-shuffle (stored/raw ratio, plain vs shuffled; what auto's sampling chose):")
    for kind, floats, comp in [(k, a, c) for k, a in (("floats with repeats", data["floats with repeats"]),
                                                       ("random-walk floats", walk)) for c in ("lz4", "zstd")]:
        plain = tether.encode(floats, compression=comp, format="ndarray")
        from tether.compression import _shuffle

        packed = tether.compression.get(comp).compress([memoryview(floats).cast("B")], floats.nbytes,
                                                        tether.compression.get(comp).default_level)
        shuffled = tether.compression.get(comp).compress(
            [_shuffle.shuffle(memoryview(floats).cast("B"), 8)], floats.nbytes, tether.compression.get(comp).default_level)
        t = _median(lambda: holder.__setitem__("f", tether.dumps(floats, compression=comp)), repeat, holder.clear)
        packed, shuffled = b"".join(packed), b"".join(shuffled)
        print(f"    {kind}, {comp}: plain {len(packed) / floats.nbytes:.3f}, shuffled {len(shuffled) / floats.nbytes:.3f}; "
              f"tether chose {'shuffle' if plain.header.filter_id else 'no shuffle'}, dumps {_fmt_t(t).strip()}")

    import pyarrow as pa

    texts = data["text-like bytes"].split(b" ")
    table = pa.table({"message": pa.array(texts, pa.binary()).cast(pa.utf8())})
    ipc = tether.loads(tether.dumps(table), into="arrow")
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, ipc.schema) as w:
        w.write_table(ipc)
    stream = sink.getvalue()
    t_lz4, t_auto = _median_pair(
        lambda: holder.__setitem__("c", lz4.frame.compress(stream)),
        lambda: holder.__setitem__("f", tether.dumps(table, compression="auto", transport="network")),
        repeat + 2, holder.clear,
    )
    frame = tether.dumps(table, compression="auto", transport="network")
    rep.row("text-like Arrow column: lz4.frame.compress", t_lz4, f"{stream.size / t_lz4 / 1e9:.2f} GB/s")
    rep.row(f"text-like Arrow column: tether auto -> {tether.last_decision().compression}", t_auto,
            f"{stream.size / t_auto / 1e9:.2f} GB/s, ratio {len(frame) / stream.size:.3f}")
    rep.target("auto throughput vs lz4 (text-like Arrow column)", t_auto / t_lz4, 1 / 0.9)

    print("\n  ratio (stored/raw) and compress / decompress throughput, GB/s:")
    kinds = list(data)
    print("  " + f"{'algorithm':<14}" + "".join(f"{k:>34}" for k in kinds))
    dctx = zstandard.ZstdDecompressor()
    algos: list[tuple[str, Any, Any]] = [
        ("lz4 0", lambda b: lz4.frame.compress(b, compression_level=0), lz4.frame.decompress),
        ("lz4 9", lambda b: lz4.frame.compress(b, compression_level=9), lz4.frame.decompress),
        ("zstd 1", zstandard.ZstdCompressor(level=1).compress, dctx.decompress),
        ("zstd 3", zstandard.ZstdCompressor(level=3).compress, dctx.decompress),
        ("zstd 9", zstandard.ZstdCompressor(level=9).compress, dctx.decompress),
        ("gzip 1", lambda b: zlib.compress(b, 1), zlib.decompress),
        ("gzip 6", lambda b: zlib.compress(b, 6), zlib.decompress),
    ]

    table_mib = 8 if quick else 32
    for name, comp, decomp in algos:
        cells = []
        for kind in kinds:
            value = data[kind]
            raw = bytes(memoryview(value).cast("B")[: table_mib << 20]) if isinstance(value, np.ndarray) else value[: table_mib << 20]
            tc = _median(lambda: holder.__setitem__("c", comp(raw)), 3)
            packed = comp(raw)
            td = _median(lambda: decomp(packed), 3)
            cells.append(f"{len(packed) / len(raw):6.3f} {len(raw) / tc / 1e9:6.2f} / {len(raw) / td / 1e9:6.2f}")
        print("  " + f"{name:<14}" + "".join(f"{c:>34}" for c in cells))


def bench_arrow(rep: Report, quick: bool) -> None:
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

    t_pa = _median(arrow_write, repeat, holder.clear)
    t_tt = _median(lambda: holder.__setitem__("f", tether.dumps(table)), repeat, holder.clear)
    rep.row("pyarrow IPC stream write", t_pa)
    rep.row("tether.dumps", t_tt, f"{table.nbytes / t_tt / 1e9:.2f} GB/s")
    rep.target("arrow dumps vs pyarrow's own IPC write", t_tt / t_pa, 1.1)
    frame = tether.dumps(table)
    t_load = _per_call(lambda: tether.loads(frame), 100)
    rep.row("tether.loads (zero-copy Table)", t_load)
    rep.target("arrow loads", t_load, 100e-6, unit="s")

    n = ROWS // 10 if quick else ROWS
    data, _ = _erl_rows(n)
    if data is not None:
        t_from = _median(lambda: tether.arrow.from_etf(data), repeat)
        t_base = _median(lambda: pa.Table.from_pylist(tether.etf.decode(data)), repeat)
        rep.row(f"tether.arrow.from_etf ({n:,} maps from erl)", t_from)
        rep.row("tether.etf.decode + Table.from_pylist", t_base)
        rep.target("from_etf vs decode + from_pylist", t_from / t_base, 0.7)

    import importlib.util

    if importlib.util.find_spec("pandas") is None:
        print("  (pandas not installed: DataFrame round trip skipped)")
    else:
        df = table.slice(0, rows // 4).to_pandas()
        t_tt = _median(lambda: tether.loads(tether.dumps(df)), repeat)
        t_pk = _median(lambda: pickle.loads(pickle.dumps(df, protocol=5)), repeat)
        rep.row(f"pandas DataFrame ({len(df):,} rows) round trip: tether", t_tt)
        rep.row("pandas DataFrame round trip: pickle", t_pk)
        rep.target("pandas round trip vs pickle", t_tt / t_pk, 0.5)

    print("  etf vs arrow for n Python rows {id, name, score}: dumps + loads back to rows, and frame size")
    for n in (16, 256, 4096, 65536):
        value = [{"id": i, "name": f"n{i}", "score": i * 0.5} for i in range(n)]
        number = max(1, 4096 // n)
        te = _per_call(lambda: tether.loads(tether.dumps(value, format="etf")), number, 5)
        ta = _per_call(lambda: tether.loads(tether.dumps(value, format="arrow")), number, 5)
        se, sa = len(tether.dumps(value, format="etf")), len(tether.dumps(value, format="arrow"))
        print(f"    {n:>6} rows: etf {_fmt_t(te)} {se:>9,} B   arrow {_fmt_t(ta)} {sa:>9,} B   "
              f"faster: {'arrow' if ta < te else 'etf'}, smaller: {'arrow' if sa < se else 'etf'}")
    cols = {"x": np.arange(65536, dtype="f8"), "id": np.arange(65536)}
    ta = _per_call(lambda: tether.loads(tether.dumps(cols, format="arrow")), 20, 5)
    tp = _per_call(lambda: tether.loads(tether.dumps(cols, format="pickle"), allow_pickle=True), 20, 5)
    print(f"    dict of two 65,536-row NumPy columns: arrow {_fmt_t(ta)}, pickle {_fmt_t(tp)} (etf cannot hold arrays)")


_RSS_PROBE = """
import sys, numpy as np, tether
from tether.shm import RegionPool
n = int(sys.argv[1])
arr = np.random.default_rng(0).random(n // 8)
pool = RegionPool(prefault=True, sweep=False)
region = pool.acquire(n + (1 << 20))
def status(key):
    for line in open('/proc/self/status'):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
open('/proc/self/clear_refs', 'w').write('5')  # reset the peak (VmHWM) to the current RSS
before = status('VmRSS:')
tether.dump_into(arr, region)
print(status('VmHWM:') - before)
pool.close()
"""


def bench_shm(rep: Report, quick: bool) -> None:
    from tether.shm import Region, RegionPool

    mib = 64 if quick else 256
    repeat = 3 if quick else 5
    rep.section(f"shared memory: {mib} MiB float64 array")
    arr = np.random.default_rng(5).random(mib * (1 << 20) // 8)
    warm = np.empty_like(arr)
    np.copyto(warm, arr)  # fault the pages in first: this is the warm baseline
    t_copy = _median(lambda: np.copyto(warm, arr), repeat)
    rep.row("np.copyto into a warm array", t_copy, f"{arr.nbytes / t_copy / 1e9:.1f} GB/s")
    pool = RegionPool(prefault=True, sweep=False)
    region = pool.acquire(arr.nbytes + (1 << 20))
    pool.release(region)
    region = pool.acquire(arr.nbytes + (1 << 20))  # the same warm region again: a pool hit
    try:
        def pooled() -> None:
            region.reset()
            tether.dump_into(arr, region)

        t_pool = _median(pooled, repeat)
        rep.row("tether.dump_into a pooled (warm) region", t_pool, f"{arr.nbytes / t_pool / 1e9:.1f} GB/s")
        rep.target("pooled write bandwidth vs np.copyto (inverse)", t_pool / t_copy, 1 / 0.8)
        print(f"  pool: {pool.stats.prefaulted_bytes >> 20} MiB prefaulted, hit rate {pool.stats.hit_rate:.0%}")

        def fresh() -> None:
            with Region.create(arr.nbytes + (1 << 20)) as r:
                tether.dump_into(arr, r)

        t_fresh = _median(fresh, max(2, repeat // 2))
        rep.row("tether.dump_into a fresh region", t_fresh, f"{arr.nbytes / t_fresh / 1e9:.1f} GB/s, "
                f"{t_fresh / t_pool:.1f}× the pooled time")

        for size_mib in ((mib,) if quick else (256, 1024)):
            with Region.create(size_mib << 20) as r:
                tether.dump_into(np.zeros((size_mib << 20) // 8 - 1024), r)
                name = r.name

                def attach_load() -> None:
                    reader = Region.attach(name)
                    tether.loads(reader)
                    reader.close()

                t = _per_call(attach_load, 100)
                rep.row(f"attach + loads of a {size_mib} MiB frame", t)
                rep.target(f"attach + loads at {size_mib} MiB", t, 100e-6, unit="s")
    finally:
        pool.release(region)
        pool.close()
    out = subprocess.run([sys.executable, "-c", _RSS_PROBE, str(arr.nbytes)], capture_output=True, text=True, timeout=300)
    if out.returncode == 0:
        grown = int(out.stdout.strip())
        rep.row("peak RSS growth while writing into a region", None, f"{grown / 2**20:.1f} MiB "
                f"= {grown / arr.nbytes:.1%} of the payload")
        rep.target("peak RSS growth / payload (inverse %)", grown / arr.nbytes, 0.05)
    else:
        print(f"  RSS probe failed: {out.stderr.strip()[-200:]}")


_BEAM_SCRIPT = r"""#!/usr/bin/env escript
%%! -noshell
%% Compiled, not interpreted: the baseline echo must not carry erl_eval's overhead.
-mode(compile).
main([Python, N, Mib]) ->
    Rounds = list_to_integer(N),
    Size = list_to_integer(Mib) * 1048576,
    Exe = filename:absname(Python),
    %% The minimal baseline: a raw {packet, 4} echo with the worker program.
    Port = open_port({spawn_executable, Exe}, [{args, ["-m", "tether.worker", "--module", "tether.demo"]},
                                              {packet, 4}, binary, exit_status, use_stdio]),
    Ping = <<"PING", 0:(96 * 8)>>,
    Echo = fun() -> port_command(Port, Ping), receive {Port, {data, _}} -> ok end end,
    [Echo() || _ <- lists:seq(1, 200)],
    EchoUs = median([element(1, timer:tc(Echo)) || _ <- lists:seq(1, Rounds)]),
    {ok, W} = tether_worker:start(#{python => Exe, modules => [<<"tether.demo">>]}),
    Map = #{id => 1, name => <<"small">>, price => 9.5, tags => [a, b], ok => true},
    Call = fun() -> {ok, _} = tether_worker:call(W, <<"tether.demo">>, <<"echo">>, [Map]) end,
    [Call() || _ <- lists:seq(1, 200)],
    CallUs = median([element(1, timer:tc(Call)) || _ <- lists:seq(1, Rounds)]),
    {ok, Inline} = tether_worker:start(#{python => Exe, modules => [<<"tether.demo">>], shm_threshold => 1 bsl 40}),
    Tensor = iolist_to_binary(tether:tensor(binary:copy(<<1.5:32/float-native>>, Size div 4), {f, 32}, {Size div 4})),
    Big = fun(Wk) -> fun() -> {ok, #{data := D}} = tether_worker:call(Wk, <<"tether.demo">>, <<"echo">>, [Tensor], 120000), byte_size(D) end end,
    Size = (Big(W))(), Size = (Big(Inline))(),
    ShmUs = median([element(1, timer:tc(Big(W))) || _ <- lists:seq(1, 9)]),
    InlineUs = median([element(1, timer:tc(Big(Inline))) || _ <- lists:seq(1, 5)]),
    io:format("echo_us ~p~ncall_us ~p~nshm_us ~p~ninline_us ~p~n", [EchoUs, CallUs, ShmUs, InlineUs]).
median(L) -> lists:nth(length(L) div 2 + 1, lists:sort(L)).
"""


def bench_beam(rep: Report, quick: bool) -> None:
    rep.section("BEAM <-> Python worker (a real erl driving python -m tether.worker)")
    if shutil.which("erlc") is None or shutil.which("escript") is None:
        print("  (erl not found: run `make bench`, which installs it)")
        return
    beam_src = os.path.join(os.path.dirname(__file__), "..", "..", "beam", "src")
    if not os.path.isdir(beam_src):
        print("  (the beam/ companion is not beside this installation: run from a checkout)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        srcs = [os.path.join(beam_src, f) for f in os.listdir(beam_src) if f.endswith(".erl")]
        subprocess.run(["erlc", "-o", tmp, *srcs], check=True)
        script = os.path.join(tmp, "bench.erl")
        with open(script, "w") as f:
            f.write(_BEAM_SCRIPT)
        mib = 16 if quick else 64
        out = subprocess.run(
            ["escript", script, sys.executable, "300" if quick else "2000", str(mib)],
            capture_output=True, text=True, timeout=600, env={**os.environ, "ERL_LIBS": tmp, "ERL_FLAGS": f"-pa {tmp}"},
        )
    if out.returncode != 0:
        print(f"  beam bench failed: {out.stderr.strip()[-400:]}")
        return
    fig = {k: int(v) / 1e6 for k, v in (line.split() for line in out.stdout.split("\n") if line.strip())}
    rep.row("minimal {packet,4} echo, 100 B", fig["echo_us"])
    rep.row("Tether.Worker.call with a 5-key map", fig["call_us"], f"{fig['call_us'] / fig['echo_us']:.2f}× the echo")
    rep.target("small call vs packet echo", fig["call_us"] / fig["echo_us"], 1.5)
    rep.row(f"{mib} MiB tensor round trip, inline through the port", fig["inline_us"])
    rep.row(f"{mib} MiB tensor round trip, via shared memory", fig["shm_us"], f"{fig['inline_us'] / fig['shm_us']:.1f}× faster")
    rep.target("shm tensor round trip vs inline (inverse)", fig["shm_us"] / fig["inline_us"], 0.2)


def bench_stream(rep: Report, quick: bool) -> None:
    """A byte stream through a file: write, then read back checking every chunk, per compression choice."""
    mib = 32 if quick else 256
    rep.section(f"stream: {mib} MiB of text-like bytes through a file, 8 MiB chunks")
    text = _compression_data(16)["text-like bytes"]
    data = (text * (mib // 16 + 1))[: mib << 20]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "s.tthr")
        for compression in ("none", "auto", "zstd"):
            def write() -> None:
                with open(path, "wb") as f, tether.stream.StreamWriter(f, compression=compression) as w:
                    w.write_buffer(data)

            def read() -> None:
                with open(path, "rb") as f:
                    for _ in tether.stream.StreamReader(f, max_frame=16 << 20):
                        pass

            t_w = _median(write, 3)
            t_r = _median(read, 3)
            with open(path, "rb") as f:
                chosen = tether.inspect(f.read(1 << 20)).compression  # the first chunk's header and metadata
            rep.row(f"compression={compression!r} -> {chosen}: write", t_w,
                    f"{len(data) / t_w / 1e9:.2f} GB/s, file {os.path.getsize(path) / len(data):.3f} of the data")
            rep.row(f"compression={compression!r}: read, checking every chunk", t_r,
                    f"{len(data) / t_r / 1e9:.2f} GB/s")


def run(*, quick: bool = False, only: list[str] | None = None) -> int:
    """Run the benchmark groups and print their figures; 0 unless something crashed."""
    rep = Report()
    print(f"tether {tether.__version__} bench, {time.strftime('%Y-%m-%d')}, {platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}, numpy {np.__version__}"
          f"{', quick' if quick else ''}")
    groups = {
        "etf": bench_etf, "ndarray": bench_ndarray, "shm": bench_shm, "arrow": bench_arrow,
        "compression": bench_compression, "stream": bench_stream, "beam": bench_beam,
    }
    for name, fn in groups.items():
        if only and name not in only:
            continue
        fn(rep, quick)
    if rep.checks:
        print("\n== targets")
        for what, ok, text in rep.checks:
            print(f"  {'MET   ' if ok else 'MISSED'} {what}: {text}")
    return 0
