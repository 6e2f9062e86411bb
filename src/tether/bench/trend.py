"""``tether bench --compare OLD.json``: each figure's change against an earlier run, and which moves are real.

A figure moved beyond noise when the ranges of samples behind the two medians
no longer overlap (the change exceeds the sum of their recorded spreads) and
the change is larger than `FLOOR` as well: on a shared machine, medians of
tight samples still drift by a few percent from one minute to the next.
Figures without a recorded spread (a peer's own timing, ratios of one run)
use `DEFAULT_NOISE`; sizes in bytes are exact, so any change to them counts.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from .._errors import ValidationError
from .harness import JSON_SCHEMA

# The smallest relative change reported as beyond noise, whatever the spreads say.
FLOOR = 0.03
# The noise assumed for a timed figure that recorded no spread.
DEFAULT_NOISE = 0.10


@dataclass(frozen=True)
class Change:
    """One figure in both runs.

    Attributes
    ----------
    group, name, unit : str
        The figure.
    old, new : float or None
        Its values; None when one run does not have it.
    change : float or None
        ``new / old - 1`` (0.10 is 10 % more), None when a value is missing or zero.
    noise : float
        The relative change that this figure's spreads account for.
    beyond_noise : bool
        Whether the change is larger than the noise.
    worse : bool
        Whether the move is in the bad direction: up for times, sizes and
        stored/raw ratios; down for figures whose ``meta`` says
        ``"higher_is_better"`` (a hit rate).
    """

    group: str
    name: str
    unit: str
    old: float | None
    new: float | None
    change: float | None
    noise: float
    beyond_noise: bool
    worse: bool


def load(path: str) -> dict[str, Any]:
    """Read an earlier run written by ``tether bench --json``.

    Parameters
    ----------
    path : str
        The file.

    Returns
    -------
    dict
        The run's data.

    Raises
    ------
    ValidationError
        When the file is missing, is not JSON, or is not a bench run this version reads (the message names
        the first place that is not, e.g. ``$.figures[3].value``).

    Examples
    --------
    >>> load("/no/such/run.json")
    Traceback (most recent call last):
    ...
    tether._errors.ValidationError: --compare: cannot read /no/such/run.json: No such file or directory
    """
    try:
        with open(path) as f:
            data = json.load(f)
    except OSError as exc:
        raise ValidationError(f"--compare: cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise ValidationError(f"--compare: {path} is not JSON ({exc}); pass a file written by --json") from None
    schema = data.get("schema") if isinstance(data, dict) else None
    if type(schema) is not int or schema != JSON_SCHEMA or not isinstance(data.get("figures"), list):
        raise ValidationError(
            f"--compare: {path} is not a tether bench run of schema {JSON_SCHEMA}; pass a file written by --json"
        )
    problem = _problem(data)
    if problem:
        raise ValidationError(f"--compare: {path} is not a run --json wrote: {problem}; pass a file written by --json")
    return data


def _problem(data: dict[str, Any]) -> str | None:
    """What in a run's data `compare` and `print_changes` could not read (the place and what it needs), or None.

    Checked when the file is loaded, before the run, so that a foreign or edited file fails at once with
    a usage error rather than with a traceback once every group has run.
    """
    if not isinstance(data.get("context", {}), dict):
        return "$.context must be an object"
    if not isinstance(data.get("context", {}).get("groups", []), list):
        return "$.context.groups must be a list"
    for i, fig in enumerate(data["figures"]):
        if not isinstance(fig, dict):
            return f"$.figures[{i}] must be an object, not {type(fig).__name__}"
        for key in ("group", "name", "unit"):
            if not isinstance(fig.get(key), str):
                return f"$.figures[{i}].{key} must be a string, got {fig.get(key)!r}"
        for key in ("value", "spread"):
            value = fig.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value) or (key == "spread" and value < 0)):
                return f"$.figures[{i}].{key} must be a finite number{' from 0' if key == 'spread' else ''} or null, " \
                       f"got {value!r}"
        if not isinstance(fig.get("meta", {}), dict):
            return f"$.figures[{i}].meta must be an object"
    return None


def _noise(unit: str, old: dict[str, Any], new: dict[str, Any]) -> float:
    if unit == "B":
        return 0.0
    spreads = [f.get("spread") for f in (old, new)]
    if any(s is None for s in spreads):
        return max([DEFAULT_NOISE, *(s for s in spreads if s is not None)])
    return max(FLOOR, spreads[0] + spreads[1])


def _change(old: dict[str, Any] | None, new: dict[str, Any] | None) -> Change:
    ref = new or old
    assert ref is not None
    a = old.get("value") if old else None
    b = new.get("value") if new else None
    if a is None or b is None or not a:
        return Change(ref["group"], ref["name"], ref["unit"], a, b, None, 0.0, False, False)
    rel = b / a - 1
    noise = _noise(ref["unit"], old or {}, new or {})
    beyond = abs(rel) > noise
    up_is_worse = not ref.get("meta", {}).get("higher_is_better", False)
    return Change(ref["group"], ref["name"], ref["unit"], a, b, rel, noise, beyond, beyond and (rel > 0) == up_is_worse)


def compare(old: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    """Each figure of either run, matched by group and name, with its change and whether it is beyond noise.

    Parameters
    ----------
    old, new : dict
        Runs as ``Report.to_json`` writes them.

    Returns
    -------
    list of Change
        The new run's figures in order, then those only the old run has, in
        the groups the new run ran.

    Examples
    --------
    >>> fig = lambda v, s: {"group": "g", "name": "t", "unit": "s", "value": v, "spread": s}
    >>> [c.beyond_noise for c in compare({"figures": [fig(1.0, 0.02)]}, {"figures": [fig(1.03, 0.02)]})]
    [False]
    >>> c, = compare({"figures": [fig(1.0, 0.02)]}, {"figures": [fig(1.5, 0.02)]})
    >>> round(c.change, 2), c.beyond_noise, c.worse
    (0.5, True, True)
    """
    key = lambda f: (f["group"], f["name"])  # noqa: E731
    before = {key(f): f for f in old["figures"]}
    seen = set()
    out = []
    for fig in new["figures"]:
        seen.add(key(fig))
        out.append(_change(before.get(key(fig)), fig))
    ran = {f["group"] for f in new["figures"]} | set(new.get("context", {}).get("groups", ()))
    # A figure of a group this run did not run is not a change; one of a group it ran, but lost, is.
    out += [_change(f, None) for k, f in before.items() if k not in seen and k[0] in ran]
    return out


def _show(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "s":
        from .harness import fmt_time

        return fmt_time(value).strip()
    return f"{value:,.0f} B" if unit == "B" else f"{value:.4g}"


def print_changes(changes: list[Change], quick_differs: bool = False) -> None:
    """Print each figure's change, marking the moves beyond noise (``!`` worse, ``+`` better).

    Parameters
    ----------
    changes : list of Change
        From `compare`.
    quick_differs : bool, default False
        Say first that one run was ``--quick`` and the other not.

    Examples
    --------
    >>> fig = {"group": "g", "name": "frame", "unit": "B", "value": 100, "spread": None}
    >>> print_changes(compare({"figures": [fig]}, {"figures": [{**fig, "value": 120}]}))  # doctest: +NORMALIZE_WHITESPACE
    <BLANKLINE>
    == change against the earlier run (! worse, + better, beyond noise; ~ within noise)
      [g]
        ! frame  100 B -> 120 B  +20.0% (noise ±0%)
      1 figure(s) moved beyond noise: 1 worse, 0 better
    """
    print("\n== change against the earlier run (! worse, + better, beyond noise; ~ within noise)")
    if quick_differs:
        print("  (one run used --quick and the other did not: sizes differ, so figures named alike are not alike)")
    group = None
    for c in changes:
        if c.group != group:
            group = c.group
            print(f"  [{group}]")
        if c.change is None:
            what = "only in the earlier run" if c.new is None else "new" if c.old is None else "n/a"
            print(f"    {' '} {c.name:<52} {_show(c.old, c.unit):>12} -> {_show(c.new, c.unit):<12} {what}")
            continue
        mark = ("!" if c.worse else "+") if c.beyond_noise else "~"
        print(f"    {mark} {c.name:<52} {_show(c.old, c.unit):>12} -> {_show(c.new, c.unit):<12} "
              f"{c.change:+7.1%} (noise ±{c.noise:.0%})")
    moved = [c for c in changes if c.beyond_noise]
    worse = sum(c.worse for c in moved)
    print(f"  {len(moved)} figure(s) moved beyond noise: {worse} worse, {len(moved) - worse} better")
