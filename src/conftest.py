"""The doctests of src/tether leave the format and codec registries as they found them.

Some examples register a format or a codec of their own (``CelsiusFormat``,
``doc-gzip1``). pytest runs them after tests/ (``testpaths``), so a suite run
never saw them; but a test run after them in one session, e.g. the doctests
of ``tether.compression`` and then tests/test_compression.py, found
``doc-gzip1`` among the valid compressions. This file is not part of the
package: only ``src/tether`` is.
"""

from __future__ import annotations

from typing import Iterator

import pytest

from tether import compression, formats


@pytest.fixture(autouse=True)
def registries_restored() -> Iterator[None]:
    saved = [(reg, dict(reg.by_name), dict(reg.by_id)) for reg in (formats.registry, compression.registry)]
    yield
    for reg, by_name, by_id in saved:
        if reg.by_name != by_name or reg.by_id != by_id:
            reg.by_name.clear()
            reg.by_name.update(by_name)
            reg.by_id.clear()
            reg.by_id.update(by_id)
            reg.version += 1  # what was derived from the registry (auto's kept choices) is stale again
