"""docs/evolution.md's code runs as written: each ```python block, in order, in one namespace."""

from __future__ import annotations

import pathlib
import re

import tether

DOC = pathlib.Path(__file__).resolve().parent.parent / "docs" / "evolution.md"


def test_the_guide_runs(monkeypatch):
    # The guide registers "events" in the process-wide registry; give it a fresh one for this test.
    monkeypatch.setattr(tether.schemas, "DEFAULT", tether.schemas.Registry())
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 6
    namespace: dict = {}
    for i, block in enumerate(blocks):
        exec(compile(block, f"{DOC.name} block {i + 1}", "exec"), namespace)  # noqa: S102
