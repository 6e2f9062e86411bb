"""``tether bench``: the group table, the report's data, and the small group run as a user would."""

from __future__ import annotations

import pkgutil
import re
import subprocess
import sys

import tether.bench as bench
from tether.bench.harness import Report

SMALL_ROWS = [
    f"tether.{op}, {label}"
    for label in ("5-key map", "20-int list", "100 bytes", "int", "16-float ndarray")
    for op in ("dumps", "loads")
] + ["bytes(tether.encode), 5-key map"]


def test_group_table_lists_every_group_in_order():
    assert list(bench.GROUPS) == ["small", "etf", "ndarray", "shm", "arrow", "compression", "stream", "beam"]
    # Every module of the package other than the harness and shared inputs is a group, and in the table.
    modules = {m.name for m in pkgutil.iter_modules(bench.__path__)} - {"harness", "data"}
    assert modules == set(bench.GROUPS)
    for name, group in bench.GROUPS.items():
        assert group is getattr(bench, name).run


def test_report_prints_and_keeps_figures_and_targets(capsys):
    rep = Report()
    rep.group = "g"
    rep.row("a time", 22.6e-6, "extra")
    rep.row("not a time", None, "1.0 MiB", value=1 << 20, unit="B")
    rep.record("kept only", 0.5, "ratio")
    rep.target("ratio", 0.069, 0.65)
    rep.target("time", 53.9e-6, 100e-6, unit="s")
    rep.target("missed", 1.7, 1.5)
    rep.summary()
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"  {'a time':<44}     22.6 µs  extra"
    assert out[1] == f"  {'not a time':<44} {' ' * 11}  1.0 MiB"
    assert out[2] == "  -> ratio: 0.069×, target ≤ 0.65×: MET"
    assert out[3] == "  -> time: 53.9 µs, target ≤ 100 µs: MET"
    assert out[4] == "  -> missed: 1.700×, target ≤ 1.50×: MISSED"
    assert out[6:] == [
        "== targets",
        "  MET    ratio: 0.069× (target ≤ 0.65×)",
        "  MET    time: 53.9 µs (target ≤ 100 µs)",
        "  MISSED missed: 1.700× (target ≤ 1.50×)",
    ]
    assert [(f.group, f.name, f.value, f.unit) for f in rep.figures] == [
        ("g", "a time", 22.6e-6, "s"), ("g", "not a time", 1 << 20, "B"), ("g", "kept only", 0.5, "ratio"),
    ]
    assert [(t.what, t.met, t.unit, t.limit) for t in rep.targets] == [
        ("ratio", True, "×", 0.65), ("time", True, "s", 100e-6), ("missed", False, "×", 1.5),
    ]


def test_bench_only_small_from_the_command_line():
    out = subprocess.run([sys.executable, "-m", "tether", "bench", "--quick", "--only", "small"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "== small values: per-call dumps and loads" in lines
    for name in SMALL_ROWS:  # each row once, with a time
        assert sum(bool(re.match(rf"  {re.escape(name)} +[0-9.]+ (µs|ms)  ", line)) for line in lines) == 1, name
    # Only the group asked for, and it has no targets.
    assert sum(line.startswith("== ") for line in lines) == 1
