"""``tether bench --plot DIR``: a run's figures as pictures, drawn with matplotlib (an optional extra).

Three plots, each from the figures whose ``meta["plot"]`` names it, so any
run (a new one, or a ``--json`` file) can be drawn without re-measuring:

- ``throughput.png``: round-trip throughput against payload size, one line
  per format, the peers dashed (the ``sizes`` group);
- ``rows_crossover.png``: ETF against Arrow for n rows, time and frame size
  (the ``arrow`` group);
- ``compression.png``: stored/raw ratio against compression throughput, per
  algorithm and kind of data (the ``compression`` group).

A plot whose group did not run is skipped, and the skip is said.
"""

from __future__ import annotations

import importlib.util
import os
from collections import defaultdict
from typing import Any

from .._errors import ValidationError

HOW_TO_INSTALL = "pip install matplotlib (or the tether[plot] extra)"


def require(directory: str | None = None) -> None:
    """Check that matplotlib can be imported, and make ``directory``, before a long run rather than after it.

    Parameters
    ----------
    directory : str, optional
        Where the plots will go: created now (when missing), so that a path that cannot be one fails
        before the groups run.

    Raises
    ------
    ValidationError
        When matplotlib is not installed, saying how to install it, or ``directory`` cannot be made.

    Examples
    --------
    >>> require()  # quiet when matplotlib is installed  # doctest: +SKIP
    >>> require("/proc/no/such/plots")  # doctest: +SKIP
    Traceback (most recent call last):
    ...
    tether._errors.ValidationError: --plot: cannot create /proc/no/such/plots: No such file or directory
    """
    if importlib.util.find_spec("matplotlib") is None:
        raise ValidationError(f"--plot needs matplotlib, which is not installed: {HOW_TO_INSTALL}")
    if directory is not None:
        _make(directory)


def _make(directory: str) -> None:
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as exc:
        raise ValidationError(f"--plot: cannot create {directory}: {exc.strerror}") from None
    if not os.access(directory, os.W_OK | os.X_OK):  # found only after the groups ran, before
        raise ValidationError(f"--plot: cannot write into {directory}: name a directory this user may write")


def _pyplot() -> Any:
    require()
    import matplotlib

    matplotlib.use("Agg")  # files only: no display is needed or wanted
    import matplotlib.pyplot as plt

    return plt


def figures_for(data: dict[str, Any], plot: str) -> list[dict[str, Any]]:
    """The figures of a run (``Report.to_json`` or a ``--json`` file) that plot ``plot`` places.

    Parameters
    ----------
    data : dict
        The run, with its ``"figures"``.
    plot : str
        ``"throughput"``, ``"crossover"`` or ``"codec"``: the ``meta["plot"]`` the groups record.

    Returns
    -------
    list of dict
        Those figures that have a value, in the run's order.

    Examples
    --------
    >>> figures_for({"figures": [{"value": 1.0, "meta": {"plot": "codec"}}, {"value": 2.0}]}, "codec")
    [{'value': 1.0, 'meta': {'plot': 'codec'}}]
    """
    return [f for f in data["figures"] if f.get("meta", {}).get("plot") == plot and f.get("value")]


def throughput_lines(figures: list[dict[str, Any]]) -> dict[tuple[str, bool, str], list[tuple[int, float]]]:
    """``throughput.png``'s lines: (format, is a peer, label) → sorted (payload bytes, round-trip GB/s).

    Parameters
    ----------
    figures : list of dict
        The ``sizes`` group's figures (:func:`figures_for` ``"throughput"``): seconds per round trip.

    Returns
    -------
    dict
        One line per series, its points sorted by payload size.

    Examples
    --------
    >>> throughput_lines([{"value": 1e-3, "meta": {"series": "tether raw", "format": "raw", "bytes": 10**6,
    ...                                             "peer": False}}])
    {('raw', False, 'tether raw'): [(1000000, 1.0)]}
    """
    lines: dict[tuple[str, bool, str], list[tuple[int, float]]] = defaultdict(list)
    for f in figures:
        m = f["meta"]
        lines[(m.get("format", m["series"]), bool(m["peer"]), m["series"])].append((m["bytes"],
                                                                                  m["bytes"] / f["value"] / 1e9))
    return {key: sorted(points) for key, points in lines.items()}


def crossover_series(figures: list[dict[str, Any]]) -> dict[tuple[str, str], list[tuple[int, float]]]:
    """``rows_crossover.png``'s series: (``"time"`` or ``"size"``, format) → sorted (rows, seconds or bytes).

    Parameters
    ----------
    figures : list of dict
        The ``arrow`` group's crossover figures (:func:`figures_for` ``"crossover"``).

    Returns
    -------
    dict
        One series per measure and format, its points sorted by row count.

    Examples
    --------
    >>> crossover_series([{"value": 0.5, "meta": {"measure": "time", "series": "etf", "rows": 16}}])
    {('time', 'etf'): [(16, 0.5)]}
    """
    series: dict[tuple[str, str], list[tuple[int, float]]] = defaultdict(list)
    for f in figures:
        m = f["meta"]
        series[(m["measure"], m["series"])].append((m["rows"], f["value"]))
    return {key: sorted(points) for key, points in series.items()}


def codec_points(figures: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, float]]:
    """``compression.png``'s points: (algorithm, kind of data) → its ``ratio`` and ``compress`` GB/s.

    Parameters
    ----------
    figures : list of dict
        The ``compression`` group's codec table (:func:`figures_for` ``"codec"``): ratios, and seconds to
        compress ``meta["bytes"]``.

    Returns
    -------
    dict
        Per algorithm and kind, what was measured of the two (a point is drawn only with both).

    Examples
    --------
    >>> where = {"algorithm": "lz4 0", "kind": "text", "bytes": 10**9}
    >>> codec_points([{"value": 0.4, "meta": {**where, "measure": "ratio"}},
    ...               {"value": 0.5, "meta": {**where, "measure": "compress"}}])
    {('lz4 0', 'text'): {'ratio': 0.4, 'compress': 2.0}}
    """
    points: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    for f in figures:
        m = f["meta"]
        points[(m["algorithm"], m["kind"])][m["measure"]] = (f["value"] if m["measure"] == "ratio"
                                                             else m["bytes"] / f["value"] / 1e9)
    return dict(points)


def _throughput(plt: Any, figures: list[dict[str, Any]], path: str) -> None:
    lines = throughput_lines(figures)
    colours = {fmt: f"C{i}" for i, fmt in enumerate(sorted({k[0] for k in lines}))}
    fig, ax = plt.subplots(figsize=(8, 5))
    for (fmt, peer, series), points in sorted(lines.items()):  # a format's peer in its colour, dashed
        xs, ys = zip(*points)
        ax.plot(xs, ys, "--" if peer else "-", color=colours[fmt], marker="o", markersize=3, label=series)
    ax.set(xscale="log", yscale="log", xlabel="payload (bytes)", ylabel="round trip (GB/s)",
           title="dumps + loads throughput by payload size (peers dashed)")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _crossover(plt: Any, figures: list[dict[str, Any]], path: str) -> None:
    fig, (t_ax, s_ax) = plt.subplots(1, 2, figsize=(10, 4.5))
    for (measure, fmt), points in sorted(crossover_series(figures).items()):
        xs, ys = zip(*points)
        ax = t_ax if measure == "time" else s_ax
        ys = [y * 1e3 for y in ys] if measure == "time" else [y / 1024 for y in ys]
        ax.plot(xs, ys, marker="o", label=fmt)
    t_ax.set(xscale="log", yscale="log", xlabel="rows", ylabel="dumps + loads (ms)", title="time")
    s_ax.set(xscale="log", yscale="log", xlabel="rows", ylabel="frame (KiB)", title="frame size")
    for ax in (t_ax, s_ax):
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.suptitle("Python rows {id, name, score}: ETF against Arrow")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _codecs(plt: Any, figures: list[dict[str, Any]], path: str) -> None:
    points = codec_points(figures)
    algorithms = sorted({a for a, _ in points})
    kinds = sorted({k for _, k in points})
    colour = {a: f"C{i % 10}" for i, a in enumerate(algorithms)}
    shape = {k: "osD^v<>p"[i % 8] for i, k in enumerate(kinds)}
    fig, ax = plt.subplots(figsize=(8, 5))
    for (algorithm, kind), p in sorted(points.items()):  # colour: algorithm; marker: kind of data
        if {"ratio", "compress"} <= p.keys():
            ax.plot([p["compress"]], [p["ratio"]], linestyle="none", marker=shape[kind], color=colour[algorithm])
    handles = [plt.Line2D([], [], linestyle="none", marker="o", color=colour[a], label=a) for a in algorithms]
    handles += [plt.Line2D([], [], linestyle="none", marker=shape[k], color="grey", label=k) for k in kinds]
    ax.set(xscale="log", xlabel="compress throughput (GB/s)", ylabel="stored / raw (lower is smaller)",
           title="compression ratio against throughput, per algorithm and kind of data")
    ax.grid(True, alpha=0.3)
    ax.legend(handles=handles, fontsize="small", loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


PLOTS = (
    ("throughput", "throughput.png", _throughput, "sizes"),
    ("crossover", "rows_crossover.png", _crossover, "arrow"),
    ("codec", "compression.png", _codecs, "compression"),
)


def draw(data: dict[str, Any], directory: str) -> list[str]:
    """Draw every plot the run has figures for into ``directory``; print the ones skipped.

    Parameters
    ----------
    data : dict
        A run, as ``Report.to_json`` returns it or ``--json`` wrote it.
    directory : str
        Where the PNG files go; created when missing.

    Returns
    -------
    list of str
        The paths written.

    Raises
    ------
    ValidationError
        When matplotlib is missing or ``directory`` cannot be created.

    Examples
    --------
    >>> import tempfile
    >>> data = {"figures": [{"value": 1e-3, "meta": {"plot": "throughput", "series": "tether raw",
    ...                                              "bytes": 1 << 20, "peer": False}}]}
    >>> with tempfile.TemporaryDirectory() as d:  # needs matplotlib  # doctest: +SKIP
    ...     [os.path.basename(p) for p in draw(data, d)]
    plot: rows_crossover.png skipped, no figures for it (run the 'arrow' group)
    plot: compression.png skipped, no figures for it (run the 'compression' group)
    ['throughput.png']
    """
    plt = _pyplot()
    _make(directory)
    written = []
    for key, filename, fn, group in PLOTS:
        figures = figures_for(data, key)
        if not figures:
            print(f"plot: {filename} skipped, no figures for it (run the {group!r} group)")
            continue
        path = os.path.join(directory, filename)
        try:
            fn(plt, figures, path)
        except OSError as exc:  # a directory that exists but takes no files (read-only, /proc)
            plt.close("all")
            raise ValidationError(f"--plot: cannot write {path}: {exc.strerror or exc}") from None
        written.append(path)
    return written
