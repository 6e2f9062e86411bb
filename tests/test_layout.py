"""The package layout rule: no module imports another package's ``_``-names.

A ``_``-prefixed module or name belongs to the package that holds it. The
top-level ``tether._x`` modules (``_etf``, ``_api``, ``_errors``, ...) are
tether-internal and may be imported from anywhere inside tether; a
subpackage's own ``_`` modules only from inside that subpackage. Anything
another package needs is re-exported under a plain name by its owner
(``tether.frame.FIELDS``, ``tether.shm.live_stats``, ``tether.metrics.core``, ...).
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import NamedTuple

import pytest

import tether

ROOT = Path(tether.__file__).resolve().parent  # src/tether
SRC = ROOT.parent

# (file relative to src/tether, module imported) -> why it is tolerated for now. Shrink only: an entry whose
# import is gone fails test_known_exceptions_are_still_needed, so the list cannot outlive its reason.
KNOWN: dict[tuple[str, str], str] = {}


def _is_package(parts: list[str]) -> bool:
    return (SRC.joinpath(*parts) / "__init__.py").is_file()


def _package_of(path: Path) -> list[str]:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return parts[:-1]  # an __init__ belongs to its own package; any other module to its directory's


def _owner(dotted: list[str]) -> list[str]:
    """The package a module or name belongs to: the nearest package above it (the one its file is in)."""
    owner = dotted[:-1]
    while owner and not _is_package(owner):
        owner = owner[:-1]
    return owner


def _imported(node: ast.AST, package: list[str]) -> list[list[str]]:
    """The dotted names an import statement (or ``import_module("tether...")`` call) brings in."""
    if isinstance(node, ast.Import):
        return [alias.name.split(".") for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        base = package[: len(package) - node.level + 1] if node.level else []
        base = base + (node.module.split(".") if node.module else [])
        return [base + [alias.name] for alias in node.names if alias.name != "*"]
    if (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) in ("import_module", "__import__")):
        return [node.args[0].value.split(".")]
    return []


class Violation(NamedTuple):
    file: str  # relative to src/tether
    line: int
    imported: str  # the dotted name up to its first private part
    owner: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: imports {self.imported}, a private name of {self.owner}"


def violations(source: str, path: Path) -> list[Violation]:
    """Every import in ``source`` (the module at ``path``) of a ``_``-name another package owns."""
    package = _package_of(path)
    found = []
    for node in ast.walk(ast.parse(source, str(path))):
        for dotted in _imported(node, package):
            if dotted[0] != "tether":
                continue
            for i, part in enumerate(dotted[1:], 1):
                if not part.startswith("_") or part.startswith("__"):
                    continue
                owner = _owner(dotted[: i + 1])
                if package[: len(owner)] != owner:  # neither the owner itself nor a package inside it
                    found.append(Violation(path.relative_to(ROOT).as_posix(), node.lineno, ".".join(dotted[: i + 1]),
                                           ".".join(owner)))
                break  # past the first private part, the rest is that owner's business
    return list(dict.fromkeys(found))  # `from ._m import a, b` is one import of _m, said once


def _all_violations() -> list[Violation]:
    return [v for path in sorted(ROOT.rglob("*.py")) for v in violations(path.read_text(), path)]


def test_no_module_imports_another_packages_private_names():
    bad = [str(v) for v in _all_violations() if (v.file, v.imported) not in KNOWN]
    assert not bad, "re-export what is needed under a plain name from its owning package instead:\n" + "\n".join(bad)


def test_known_exceptions_are_still_needed():
    seen = {(v.file, v.imported) for v in _all_violations()}
    stale = [f"{file}: {module} ({why})" for (file, module), why in KNOWN.items() if (file, module) not in seen]
    assert not stale, "fixed: remove from KNOWN in tests/test_layout.py:\n" + "\n".join(stale)


@pytest.mark.parametrize(("module", "source", "flagged"), [
    # What the rule was written against (each was in src/tether before the entry points existed).
    ("_wire.py", "from .frame import _checksum, _header\n", ["tether.frame._checksum", "tether.frame._header"]),
    ("_request.py", "from .compression import _policy\n", ["tether.compression._policy"]),
    ("compression/_shuffle.py", "from ..frame._header import FILTER_NAMES\n", ["tether.frame._header"]),
    ("memory.py", "def f():\n    from .shm import _pool, _region\n", ["tether.shm._pool", "tether.shm._region"]),
    ("_etf/decoder.py", "from ..compression import _base\n", ["tether.compression._base"]),
    ("bench/shm.py", "import tether.shm._region\n", ["tether.shm._region"]),
    ("bench/shm.py", "from tether.frame._header import _LAYOUT\n", ["tether.frame._header"]),
    ("bench/shm.py", "from tether.frame import _checksum as c\n", ["tether.frame._checksum"]),
    ("bench/shm.py", "importlib.import_module('tether.shm._region')\n", ["tether.shm._region"]),
    # Allowed: tether's top-level private modules from anywhere, a package's own ones from inside it.
    ("metrics/_bench.py", "from .. import _api\nfrom .._etf import tags\nfrom . import _core\n", []),
    ("frame/_read.py", "from . import _checksum\nfrom ._header import ALIGN\nfrom .._api import _note_region\n", []),
    ("frame/__init__.py", "from . import _checksum as checksum\n", []),
    ("_etf/decoder.py", "from . import _x\nfrom ..frame import FIELDS\nfrom .._version import __version__\n", []),
    ("_wire.py", "from . import frame, shm\nfrom .compression import bounded\n", []),
])
def test_the_checker_flags_what_the_rule_forbids(module, source, flagged):
    found = violations(source, ROOT / module)
    assert [v.imported for v in found] == flagged, [str(v) for v in found]
    assert all(v.file == module and v.line >= 1 for v in found)
