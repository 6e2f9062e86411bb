"""Inputs shared by several benchmark groups.

The ETF rows come from a real ``erl`` when one is installed, so that tether
decodes bytes it did not write itself. The generator stays a string here (not
a file under ``beam/``) because it needs only ``escript``, not a checkout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from typing import Any

import numpy as np

import tether

ROWS = 100_000

_ROWS_SCRIPT = (
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


def erl_rows(rows: int) -> tuple[bytes | None, dict[str, float]]:
    """The benchmark term made by a real erl, plus erl's own codec timings.

    Parameters
    ----------
    rows : int
        How many Elixir-style maps the list holds.

    Returns
    -------
    tuple
        The ETF bytes and ``{"encode": s, "decode": s}`` as timed inside erl;
        ``(None, {})`` when erl is missing or failed.

    Examples
    --------
    >>> data, timings = erl_rows(10)
    >>> data is None or (tether.etf.decode(data) == tether_rows(10) and sorted(timings) == ["decode", "encode"])
    True
    """
    if shutil.which("escript") is None:
        return None, {}
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "rows.etf")
        script = os.path.join(tmp, "gen.erl")
        with open(script, "w") as f:
            f.write(_ROWS_SCRIPT)
        proc = subprocess.run(["escript", script, out, str(rows)], capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            return None, {}
        enc_us, dec_us = (int(x) for x in proc.stdout.split())
        with open(out, "rb") as f:
            return f.read(), {"encode": enc_us / 1e6, "decode": dec_us / 1e6}


def tether_rows(rows: int) -> list[dict[tether.Atom, Any]]:
    """The same term as `erl_rows` makes, built in Python for machines without erl.

    Parameters
    ----------
    rows : int
        How many maps.

    Returns
    -------
    list of dict
        Maps keyed by atoms, like Elixir's.

    Examples
    --------
    >>> tether_rows(1)[0][tether.Atom("pos")]
    (1, 2)
    """
    A = tether.Atom
    return [
        {A("id"): i, A("price"): i * 1.5, A("name"): b"item%d" % i, A("tags"): [A("alpha"), A("beta")],
         A("pos"): (i, i + 1), A("active"): i % 2 == 0}
        for i in range(1, rows + 1)
    ]


def compression_data(mib: int) -> dict[str, Any]:
    """Three kinds of data of ``mib`` MiB each, from very to not at all compressible.

    Parameters
    ----------
    mib : int
        Size of each, in MiB.

    Returns
    -------
    dict
        ``"floats with repeats"`` (a float64 array), ``"text-like bytes"`` and
        ``"random bytes"`` (bytes), always the same for the same size.

    Examples
    --------
    >>> data = compression_data(1)
    >>> {name: len(memoryview(v).cast("B")) for name, v in data.items()} == dict.fromkeys(data, 1 << 20)
    True
    >>> compression_data(1)["random bytes"] == data["random bytes"]
    True
    """
    rng = np.random.default_rng(7)
    n = mib * (1 << 20)
    # Floats with many repeats: a sensor that holds its value for a while.
    steps = rng.normal(0, 1, n // 8 // 64).round(2)
    floats = np.repeat(np.cumsum(steps), 64)[: n // 8].astype("f8")
    words = np.array([b"alpha", b"beta", b"gamma", b"delta", b"error", b"warning", b"user_id=", b"42"])
    text = b" ".join(words[rng.integers(0, len(words), n // 6)])[:n]
    noise = rng.bytes(n)
    return {"floats with repeats": floats, "text-like bytes": text, "random bytes": noise}
