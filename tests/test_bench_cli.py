"""``tether bench`` as something to gate on: JSON results, exit codes, --compare and --plot.

Fast by construction: the real groups run only where they are cheap (the
small group, quick); exit codes, comparison and plots run on stand-in groups
that record known figures, through the same command line.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from types import MappingProxyType

import pytest

import tether
import tether.bench as bench
from tether import ValidationError
from tether._cli import main
from tether.bench import plot, trend
from tether.bench.harness import Timing


def _fake_groups(monkeypatch, *, missed: bool, slow: float = 1.0):
    """Replace the group table with two cheap groups whose figures and targets are known."""

    def sizes(rep, quick):
        rep.section("fake sizes")
        for fmt in ("raw", "etf"):
            for n in (1024, 65536):
                t = Timing.of([n / 1e9 * slow, n / 1e9 * slow * 1.02])
                rep.record(f"{fmt}, {n} B", t, "s", meta={"plot": "throughput", "series": f"tether {fmt}",
                                                          "format": fmt, "bytes": n, "peer": False})
                rep.record(f"{fmt}, {n} B peer", t, "s", meta={"plot": "throughput", "series": f"pickle ({fmt})",
                                                               "format": fmt, "bytes": n, "peer": True})

    def gate(rep, quick):
        rep.section("fake gate")
        rep.row("frame", None, value=100, unit="B")
        rep.target("a ratio", 2.0 if missed else 0.5, 1.0)

    monkeypatch.setattr(bench, "GROUPS", MappingProxyType({"sizes": sizes, "gate": gate}))


SMALL_ROWS = [
    f"tether.{op}, {label}"
    for label in ("5-key map", "20-int list", "100 bytes", "int", "16-float ndarray")
    for op in ("dumps", "loads")
] + ["bytes(tether.encode), 5-key map"]


def test_small_group_as_a_user_runs_it_prints_rows_and_writes_json(tmp_path):
    out_file = tmp_path / "run.json"
    out = subprocess.run([sys.executable, "-m", "tether", "bench", "--quick", "--only", "small", "--json", str(out_file)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "== small values: per-call dumps and loads" in lines
    for name in SMALL_ROWS:  # each row once, with a time
        assert sum(bool(re.match(rf"  {re.escape(name)} +[0-9.]+ (µs|ms)  ", line)) for line in lines) == 1, name
    assert sum(line.startswith("== ") for line in lines) == 1  # only the group asked for, and it has no targets
    assert lines[-1] == f"wrote 11 figures and 0 targets to {out_file}"
    data = json.loads(out_file.read_text())
    assert data["schema"] == 1 and data["targets"] == []
    ctx = data["context"]
    assert ctx["version"] == tether.__version__ and ctx["groups"] == ["small"] and ctx["quick"] is True
    assert ctx["build"] == json.loads(json.dumps(tether.build_info()._asdict()))
    assert ctx["cores"] >= 1 and ctx["machine"] and ctx["python"] and ctx["date"][:2] == "20"
    assert ctx["memory"]["limit"] > 0 and ctx["cpu"]
    assert [f["name"] for f in data["figures"]] == SMALL_ROWS
    for f in data["figures"]:
        assert f["group"] == "small" and f["unit"] == "s" and f["value"] > 0
        assert 0 <= f["spread"] < 100  # every small figure is a median of 7 runs
    assert data["sections"] == {"small": "small values: per-call dumps and loads"}


def test_missed_target_exits_non_zero_unless_no_fail(monkeypatch, tmp_path, capsys):
    _fake_groups(monkeypatch, missed=True)
    assert main(["bench", "--only", "gate"]) == 1
    assert "1 target(s) MISSED" in capsys.readouterr().out
    assert main(["bench", "--only", "gate", "--no-fail"]) == 0
    assert "(--no-fail: exit status 0)" in capsys.readouterr().out
    _fake_groups(monkeypatch, missed=False)
    assert main(["bench", "--only", "gate"]) == 0


def test_unknown_group_is_a_usage_error_listing_the_groups(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--only", "small", "--only", "nope"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "usage: tether bench" in err
    assert "unknown benchmark group 'nope'; the groups are: " + ", ".join(bench.GROUPS) in err
    with pytest.raises(ValidationError, match="small, metrics, sizes"):
        bench.measure(only=["nope"])


def test_compare_flags_moves_beyond_noise(monkeypatch, tmp_path, capsys):
    old = tmp_path / "old.json"
    _fake_groups(monkeypatch, missed=False)
    assert main(["bench", "--json", str(old)]) == 0
    capsys.readouterr()
    _fake_groups(monkeypatch, missed=False, slow=1.5)  # every time 50 % longer; the spreads say ±1 %
    assert main(["bench", "--compare", str(old)]) == 0
    out = capsys.readouterr().out
    lines = [line.split() for line in out.splitlines()]
    assert ["!", "raw,", "1024", "B", "1.0", "µs", "->", "1.6", "µs", "+50.0%", "(noise", "±3%)"] in lines
    assert ["~", "frame", "100", "B", "->", "100", "B", "+0.0%", "(noise", "±0%)"] in lines  # a size that stayed
    assert "8 figure(s) moved beyond noise: 8 worse, 0 better" in out
    assert "used --quick" not in out
    assert main(["bench", "--quick", "--compare", str(old)]) == 0
    assert "(one run used --quick and the other did not" in capsys.readouterr().out


def test_compare_judges_noise_by_recorded_spreads():
    fig = lambda v, s, unit="s", **meta: {"group": "g", "name": "t", "unit": unit, "value": v, "spread": s,  # noqa: E731
                                           "meta": meta}
    run = lambda f: {"figures": [f], "context": {"groups": ["g"]}}  # noqa: E731
    (c,) = trend.compare(run(fig(1.0, 0.2)), run(fig(1.3, 0.2)))
    assert not c.beyond_noise and c.noise == pytest.approx(0.4)  # wide samples: 30 % is noise
    (c,) = trend.compare(run(fig(1.0, 0.01)), run(fig(1.3, 0.01)))
    assert c.beyond_noise and c.worse
    (c,) = trend.compare(run(fig(1.0, None)), run(fig(1.05, None)))
    assert not c.beyond_noise and c.noise == trend.DEFAULT_NOISE  # no spread recorded: the default
    (c,) = trend.compare(run(fig(100, None, "B")), run(fig(101, None, "B")))
    assert c.beyond_noise and c.worse  # sizes are exact
    (c,) = trend.compare(run(fig(0.5, 0.0, "ratio", higher_is_better=True)),
                         run(fig(0.9, 0.0, "ratio", higher_is_better=True)))
    assert c.beyond_noise and not c.worse
    other = {"group": "h", "name": "gone", "unit": "s", "value": 1.0, "spread": 0.0, "meta": {}}
    changes = trend.compare({"figures": [fig(1.0, 0.0), other]}, run(fig(1.0, 0.0)))
    assert [c.name for c in changes] == ["t"]  # group h did not run: not a change


def test_compare_refuses_a_file_that_is_not_a_run(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"figures": 3}')
    with pytest.raises(ValidationError, match="not a tether bench run"):
        trend.load(str(bad))
    assert main(["bench", "--only", "small", "--compare", str(tmp_path / "missing.json")]) == 2
    assert "cannot read" in capsys.readouterr().err


# The drawing tests need matplotlib (the `plot` extra; `make test` installs it through the `test` extra).
needs_matplotlib = pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None,
                                      reason="matplotlib is not installed: pip install matplotlib")


@needs_matplotlib
def test_plot_writes_the_files_it_has_figures_for(monkeypatch, tmp_path, capsys):
    _fake_groups(monkeypatch, missed=False)
    assert main(["bench", "--plot", str(tmp_path / "plots")]) == 0
    out = capsys.readouterr().out
    png = tmp_path / "plots" / "throughput.png"
    assert f"plot: {png}" in out and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "rows_crossover.png skipped, no figures for it (run the 'arrow' group)" in out
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["throughput.png"]


@needs_matplotlib
def test_plot_draws_crossover_and_codecs_from_saved_figures(tmp_path):
    figures = []
    for fmt in ("etf", "arrow"):
        for n in (16, 4096):
            for measure, value in (("time", n * 1e-6), ("size", n * 30)):
                figures.append({"value": value, "meta": {"plot": "crossover", "series": fmt, "rows": n,
                                                         "measure": measure}})
    for algorithm in ("lz4 0", "zstd 3"):
        for kind in ("text", "floats"):
            where = {"plot": "codec", "algorithm": algorithm, "kind": kind, "bytes": 1 << 20}
            figures.append({"value": 0.4, "meta": {**where, "measure": "ratio"}})
            figures.append({"value": 1e-3, "meta": {**where, "measure": "compress"}})
    written = plot.draw({"figures": figures}, str(tmp_path))
    assert sorted(p.rsplit("/", 1)[1] for p in written) == ["compression.png", "rows_crossover.png"]
    for path in written:
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


@needs_matplotlib
def test_plots_of_the_real_groups_figures_hold_every_series(tmp_path, monkeypatch):
    import gc

    from tether.bench import arrow, compression, data, sizes
    from tether.bench.harness import Report

    # The timers collect garbage before each sample, 10-25 ms in a test process: seconds over these groups,
    # for timings this test does not judge.
    monkeypatch.setattr(gc, "collect", lambda *generation: 0)

    rep = Report(group="sizes")
    sizes.run(rep, quick=True)
    rep.group = "arrow"
    arrow._crossover(rep)
    rep.group = "compression"
    kinds = {kind: value[: 1 << 16] for kind, value in data.compression_data(1).items()}  # 64 KiB: quick enough
    compression._algorithm_table(rep, kinds, True, {})
    run = json.loads(json.dumps(rep.to_json()))  # as --json writes it and --plot reads it back

    lines = plot.throughput_lines(plot.figures_for(run, "throughput"))
    formats = {"raw", "ndarray", "arrow", "etf"}
    assert {(fmt, peer) for fmt, peer, _ in lines} == {(f, p) for f in formats for p in (False, True)}
    for (fmt, peer, label), points in lines.items():
        assert label.startswith("tether") is not peer
        sizes_seen = [n for n, _ in points]
        assert sizes_seen == sorted(sizes_seen) and sizes_seen[0] == 1 << 10 and sizes_seen[-1] == 1 << 20
        assert all(0 < gbps < 1e3 for _, gbps in points)

    series = plot.crossover_series(plot.figures_for(run, "crossover"))
    assert set(series) == {(m, f) for m in ("time", "size") for f in ("etf", "arrow")}
    for (measure, fmt), points in series.items():
        assert [n for n, _ in points] == [16, 256, 4096, 65536]
    etf_sizes, arrow_sizes = dict(series[("size", "etf")]), dict(series[("size", "arrow")])
    assert arrow_sizes[65536] < etf_sizes[65536]  # columns beat per-row maps at scale: what the plot shows

    points = plot.codec_points(plot.figures_for(run, "codec"))
    assert len({a for a, _ in points}) == 7 and {k for _, k in points} == set(kinds)
    for (algorithm, kind), p in points.items():
        assert set(p) == {"ratio", "compress"} and p["compress"] > 0
        assert (p["ratio"] > 0.99) is (kind == "random bytes"), (algorithm, kind, p)

    import matplotlib.image

    written = plot.draw(run, str(tmp_path))
    assert sorted(p.rsplit("/", 1)[1] for p in written) == ["compression.png", "rows_crossover.png", "throughput.png"]
    for path in written:
        pixels = matplotlib.image.imread(path)
        assert pixels.shape[0] >= 400 and pixels.shape[1] >= 700
        assert len({tuple(px) for px in pixels.reshape(-1, pixels.shape[2])[::97]}) > 20  # drawn, not blank


def test_plot_without_matplotlib_says_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    with pytest.raises(ValidationError, match="pip install matplotlib"):
        plot.require()


def test_a_group_that_crashes_keeps_the_others_figures_and_fails_the_run(monkeypatch, tmp_path, capsys):
    def broken(rep, quick):
        rep.record("before the crash", 1.0, "ratio")
        raise RuntimeError("boom")

    def fine(rep, quick):
        rep.record("after", 2.0, "ratio")

    monkeypatch.setattr(bench, "GROUPS", MappingProxyType({"broken": broken, "fine": fine}))
    out_file = tmp_path / "run.json"
    assert main(["bench", "--no-fail", "--json", str(out_file)]) == 1  # a crash is not a missed target
    data = json.loads(out_file.read_text())
    assert [f["name"] for f in data["figures"]] == ["before the crash", "after"]
    assert data["failed"] == [{"group": "broken", "error": "RuntimeError: boom"}]
    captured = capsys.readouterr()
    assert "1 group(s) FAILED: broken" in captured.out and "RuntimeError: boom" in captured.err
