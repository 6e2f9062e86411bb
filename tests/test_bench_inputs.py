"""``tether bench`` given foreign or edited files, and paths it cannot write: a usage error, before the run.

Each test here failed before its fix: such a file used to pass the shallow check and
crash the comparison with a traceback (exit status 1, as for a MISSED target) after every group had run.
"""

from __future__ import annotations

import importlib.util
import json
import os
from types import MappingProxyType

import pytest

import tether.bench as bench
from tether import ValidationError
from tether._cli import main
from tether.bench import plot, trend
from tether.bench.harness import Report, Timing

GOOD = {"group": "g", "name": "t", "unit": "s", "value": 1.0, "spread": 0.01, "meta": {}}


@pytest.mark.parametrize("data, place", [
    ({"schema": 1, "figures": [1, 2]}, r"\$\.figures\[0\] must be an object"),
    ({"schema": 1, "figures": [GOOD, {**GOOD, "value": "fast"}]}, r"\$\.figures\[1\]\.value must be a finite number"),
    ({"schema": 1, "figures": [{"name": "x"}]}, r"\$\.figures\[0\]\.group must be a string"),
    ({"schema": 1, "figures": [{**GOOD, "unit": None}]}, r"\$\.figures\[0\]\.unit must be a string"),
    ({"schema": 1, "figures": [{**GOOD, "spread": -0.5}]}, r"\$\.figures\[0\]\.spread must be a finite number from 0"),
    ({"schema": 1, "figures": [{**GOOD, "value": True}]}, r"\$\.figures\[0\]\.value"),
    ({"schema": 1, "figures": [{**GOOD, "meta": []}]}, r"\$\.figures\[0\]\.meta must be an object"),
    ({"schema": 1, "figures": [], "context": "x"}, r"\$\.context must be an object"),
    ({"schema": True, "figures": []}, "not a tether bench run of schema 1"),
])
def test_compare_refuses_a_malformed_run_naming_the_place(tmp_path, data, place):
    path = tmp_path / "old.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValidationError, match=place):
        trend.load(str(path))


def test_compare_refuses_infinity_which_is_not_json(tmp_path):
    path = tmp_path / "old.json"
    path.write_text('{"schema": 1, "figures": [{"group": "g", "name": "t", "unit": "s", "value": Infinity}]}')
    with pytest.raises(ValidationError, match=r"\$\.figures\[0\]\.value must be a finite number or null, got inf"):
        trend.load(str(path))


def test_a_malformed_run_is_a_usage_error_before_any_group_runs(monkeypatch, tmp_path, capsys):
    ran = []
    monkeypatch.setattr(bench, "GROUPS", MappingProxyType({"g": lambda rep, quick: ran.append(1)}))
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"schema": 1, "figures": [{"name": "x"}]}))
    assert main(["bench", "--compare", str(path)]) == 2
    err = capsys.readouterr().err
    assert "$.figures[0].group must be a string" in err and "Traceback" not in err
    assert ran == []


def test_a_run_written_by_json_is_read_back(monkeypatch, tmp_path, capsys):
    def group(rep, quick):
        rep.record("t", Timing.of([1.0, 1.1]), "s")
        rep.record("ratio to a time too short to read", float("inf"), "ratio")
        rep.record("size", 10, "B", meta={"higher_is_better": False})

    monkeypatch.setattr(bench, "GROUPS", MappingProxyType({"g": group}))
    path = tmp_path / "run.json"
    assert main(["bench", "--json", str(path)]) == 0
    text = path.read_text()
    assert "Infinity" not in text  # JSON has no infinity: other readers and --compare would refuse the file
    assert [f["value"] for f in json.loads(text)["figures"]] == [1.05, None, 10]
    assert main(["bench", "--compare", str(path)]) == 0
    assert "0 figure(s) moved beyond noise" in capsys.readouterr().out


def test_report_json_has_no_value_that_is_not_finite():
    rep = Report(group="g")
    rep.row("nan", None, value=float("nan"), unit="ratio")
    rep.record("inf", float("-inf"), "ratio")
    assert [f["value"] for f in rep.to_json()["figures"]] == [None, None]
    json.dumps(rep.to_json(), allow_nan=False)


needs_matplotlib = pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None,
                                      reason="matplotlib is not installed: pip install matplotlib")


@needs_matplotlib
def test_plot_directory_is_made_before_the_run_and_unwritable_ones_are_validation_errors(tmp_path):
    where = tmp_path / "a" / "b"
    plot.require(str(where))
    assert where.is_dir()
    (tmp_path / "file").write_text("")
    with pytest.raises(ValidationError, match="--plot: cannot create"):
        plot.require(str(tmp_path / "file"))
    data = {"figures": [{"value": 1e-3, "meta": {"plot": "throughput", "series": "tether raw", "bytes": 1 << 20,
                                                 "peer": False}}]}
    if not os.path.isdir("/proc/self"):
        pytest.skip("needs /proc: a directory that exists and takes no files, even for root")
    with pytest.raises(ValidationError, match="--plot: cannot write /proc/throughput.png"):
        plot.draw(data, "/proc")  # used to be a bare FileNotFoundError from matplotlib
