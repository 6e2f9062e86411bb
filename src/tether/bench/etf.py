"""ETF: decode and encode a list of Elixir-style maps, against erl itself and the Python ETF libraries."""

from __future__ import annotations

import pickle
from typing import Any

import tether

from . import data
from .harness import Report, median


def run(rep: Report, quick: bool) -> None:
    """``tether.etf`` decode and encode of a list of maps made by erl, against its peers.

    One function on purpose: what each step leaves alive (the peers' decoded
    copies) is the heap the next step is timed on, and a large live graph
    moves the pickle figure by about a third.

    Parameters
    ----------
    rep : Report
        Where the figures go.
    quick : bool
        A tenth of the rows and fewer repeats.

    Examples
    --------
    Run this group alone, at the quick sizes: ``tether bench --only etf --quick``.
    """
    rows = data.ROWS // 10 if quick else data.ROWS
    repeat = 3 if quick else 5
    rep.section(f"ETF: {rows:,}-element list of Elixir-style maps")
    payload, erl_times = data.erl_rows(rows)
    if payload is None:
        rep.note("  (erl not found: data made by tether instead; run `make bench` to install erl)")
        value: Any = data.tether_rows(rows)
        payload = tether.etf.encode(value)
    rep.note(f"  {len(payload):,} bytes of ETF")
    rep.record("ETF payload", len(payload), "B")
    t_dec = median(lambda: tether.etf.decode(payload), repeat)
    rep.row("tether.etf.decode", t_dec)
    value = tether.etf.decode(payload)
    t_enc = median(lambda: tether.etf.encode(value), repeat)
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
        t = median(lambda: erlpack.unpack(payload), repeat)
        rep.row("erlpack.unpack", t, f"tether {t_dec / t:.2f}×")
        rep.target("decode vs erlpack", t_dec / t, 0.65)
        ev = erlpack.unpack(payload)
        try:
            t2 = median(lambda: erlpack.pack(ev), repeat)
            rep.row("erlpack.pack", t2, f"tether {t_enc / t2:.2f}×")
        except Exception as exc:  # erlpack cannot pack its own decoded maps everywhere
            rep.note(f"  erlpack.pack: failed ({type(exc).__name__})")
    if erlang_py is not None:
        t = median(lambda: erlang_py.binary_to_term(payload), repeat)
        rep.row("erlang_py.binary_to_term", t, f"tether {t_dec / t:.2f}×")
        ev = erlang_py.binary_to_term(payload)
        t = median(lambda: erlang_py.term_to_binary(ev), repeat)
        rep.row("erlang_py.term_to_binary", t, f"tether {t_enc / t:.2f}×")
        rep.target("encode vs erlang_py", t_enc / t, 0.5)
    t = median(lambda: pickle.loads(pickle.dumps(value, 5)), repeat)
    rep.row("pickle round trip (same value)", t, f"tether round trip {(t_enc + t_dec) / t:.2f}×")
