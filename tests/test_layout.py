"""The package layout rules: no module uses another's ``_``-names, and modules import in no loop.

A ``_``-name defined in a module (a function, a constant) belongs to that
module alone. A ``_``-module belongs to the package that holds it: the
top-level ``tether._x`` modules (``_etf``, ``_api``, ``_errors``, ...) are
tether-internal and may be imported from anywhere inside tether; a
subpackage's own ``_`` modules only from inside that subpackage. Both are
checked in import statements and in attribute chains through an imported
name (``frame._header.ALIGN`` after ``from tether import frame``). Anything
another package needs is re-exported under a plain name by its owner
(``tether.frame.FIELDS``, ``tether.shm.MAGIC``, ``tether.metrics.core``, ...).

Modules import each other in one direction: there is no loop of imports,
counting those inside functions, across packages or inside one. A lower
module that needs something of a higher one is handed it (``tether.memory.report_alerts_to``,
``tether.schemas.read_formats_from``) or the shared part moves below both
(``tether._bounded``; a package's registry in its own ``_registered``
module, below the modules that look things up in it).
"""

from __future__ import annotations

import ast
import functools
import re
from importlib.machinery import EXTENSION_SUFFIXES
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


# The public API of named tuples (build_info()._asdict(), Header._fields): underscored, but not private.
NAMEDTUPLE_API = frozenset({"_asdict", "_fields", "_field_defaults", "_make", "_replace"})


def _bound_names(tree: ast.AST, package: list[str]) -> dict[str, list[str]]:
    """What each name an import binds stands for (``from tether import frame as f``: f -> tether.frame).

    Scopes are not told apart: a name bound by an import anywhere in the module counts everywhere.
    """
    bound = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    bound[alias.asname] = alias.name.split(".")
                else:  # `import tether.shm` binds tether
                    bound[alias.name.split(".")[0]] = alias.name.split(".")[:1]
        elif isinstance(node, ast.ImportFrom):
            for alias, dotted in zip(node.names, _imported(node, package)):
                bound[alias.asname or alias.name] = dotted
    return bound


def _attribute_chains(tree: ast.AST, bound: dict[str, list[str]]) -> list[tuple[ast.Attribute, list[str]]]:
    """``frame._header.ALIGN`` after ``from tether import frame``: the chain as a dotted name, outermost only."""
    inner = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    chains = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute) or id(node) in inner:
            continue
        parts, at = [], node
        while isinstance(at, ast.Attribute):
            parts.append(at.attr)
            at = at.value
        if isinstance(at, ast.Name) and at.id in bound:
            chains.append((node, bound[at.id] + parts[::-1]))
    return chains


def violations(source: str, path: Path) -> list[Violation]:
    """Every import in ``source`` (the module at ``path``) of a ``_``-name another package owns, and every
    attribute chain that reaches one through an imported name (``frame._header.X``)."""
    package = _package_of(path)
    tree = ast.parse(source, str(path))
    uses = [(node, dotted) for node in ast.walk(tree) for dotted in _imported(node, package)]
    uses += _attribute_chains(tree, _bound_names(tree, package))
    found = []
    for node, dotted in sorted(uses, key=lambda use: use[0].lineno):
        if dotted[0] == "tether":
            found += _private_part(dotted, package, path, node.lineno)
    return list(dict.fromkeys(found))


def _is_module(parts: list[str]) -> bool:
    here = SRC.joinpath(*parts)
    return (here.with_suffix(".py").is_file() or (here / "__init__.py").is_file()
            or any(here.with_name(here.name + suffix).is_file() for suffix in EXTENSION_SUFFIXES))


def _private_part(dotted: list[str], package: list[str], path: Path, line: int) -> list[Violation]:
    """A ``_``-part of ``dotted`` that is not the importer's to use.

    A ``_``-module or subpackage when a package other than ``package`` (or one above it) owns it; and
    a ``_``-name defined inside a module (``tether._api._note_region``), from any other module.
    """
    where = path.relative_to(ROOT).as_posix()
    for i, part in enumerate(dotted[1:], 1):
        if not part.startswith("_") or part.startswith("__") or part in NAMEDTUPLE_API:
            continue
        if not _is_module(dotted[: i + 1]):
            return [Violation(where, line, ".".join(dotted[: i + 1]), ".".join(dotted[:i]))]
        owner = _owner(dotted[: i + 1])
        if package[: len(owner)] != owner:  # neither the owner itself nor a package inside it
            return [Violation(where, line, ".".join(dotted[: i + 1]), ".".join(owner))]
    return []  # `from ._m import a, b` is one import of _m, said once


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
    # Through an imported name's attributes, not only in the import itself.
    ("bench/shm.py", "from tether import frame\nx = frame._header.ALIGN\n", ["tether.frame._header"]),
    ("bench/shm.py", "import tether\nx = tether.shm._region.MAGIC\n", ["tether.shm._region"]),
    ("metrics/_core.py", "def f():\n    from .. import formats as f\n    return f._registered.registry\n",
     ["tether.formats._registered"]),
    # A _-name defined in a module belongs to that module alone, even in tether's top-level private modules.
    ("frame/_read.py", "from .._api import _note_region\n", ["tether._api._note_region"]),
    ("bench/shm.py", "from tether import _api\n_api._note_region()\n", ["tether._api._note_region"]),
    ("_etf/decoder.py", "from ..shm import _region\n", ["tether.shm._region"]),
    # Allowed: tether's top-level private modules from anywhere, a package's own ones from inside it.
    ("metrics/_recommend.py", "from .. import _api\nfrom .._etf import tags\nfrom . import _core\n", []),
    ("frame/_read.py", "from . import _checksum\nfrom ._header import ALIGN\nfrom .._api import dumps\n", []),
    ("formats/etf.py", "from . import _registered\nr = _registered.registry\nfrom tether.frame import Header\n"
                       "f = Header._fields\n", []),
    ("bench/shm.py", "import tether\nx = tether._api.dumps\ny = tether.frame.Header\n", []),
    ("frame/__init__.py", "from . import _checksum as checksum\n", []),
    ("_etf/decoder.py", "from ..frame import FIELDS\nfrom .._version import __version__\n", []),
    ("_wire.py", "from . import frame, shm\nfrom .compression import bounded\n", []),
])
def test_the_checker_flags_what_the_rule_forbids(module, source, flagged):
    found = violations(source, ROOT / module)
    assert [v.imported for v in found] == flagged, [str(v) for v in found]
    assert all(v.file == module and v.line >= 1 for v in found)


# ---------------------------------------------------------------- import loops



def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _compiled() -> set[str]:
    """The C extension's module names, built here or not (setup.py declares it; it is optional)."""
    built = {".".join([*p.relative_to(SRC).parent.parts, p.name.split(".")[0]])
             for p in ROOT.rglob("*") if p.name.endswith(tuple(EXTENSION_SUFFIXES))}
    setup = SRC.parent / "setup.py"
    declared = re.findall(r'Extension\(\s*"([\w.]+)"', setup.read_text()) if setup.is_file() else []
    return built | set(declared)


@functools.cache
def _modules() -> dict[str, Path | None]:
    """Every module of tether by dotted name, to its source (None for a compiled one, which imports none of ours)."""
    found: dict[str, Path | None] = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}
    return {**dict.fromkeys(_compiled()), **found}


def _landing(dotted: list[str], modules: dict[str, Path | None]) -> str:
    """The module an imported name is in: the name itself when it is a module, else the nearest one above it."""
    while len(dotted) > 1 and ".".join(dotted) not in modules:
        dotted = dotted[:-1]
    return ".".join(dotted)


def imports_of(source: str, path: Path, modules: dict[str, Path | None]) -> dict[str, int]:
    """Each tether module ``source`` (the module at ``path``) imports, inside functions too: to its first line."""
    package, found = _package_of(path), {}
    for node in ast.walk(ast.parse(source, str(path))):
        for dotted in _imported(node, package):
            if dotted[0] == "tether":
                found.setdefault(_landing(dotted, modules), node.lineno)
    found.pop(_module_name(path), None)  # `from . import x` in a package's __init__ names the package itself too
    return dict(sorted(found.items(), key=lambda kv: kv[1]))


def import_graph() -> dict[str, dict[str, int]]:
    """Each module of tether -> the modules it imports (at any depth in its code) -> the first line that does."""
    modules = _modules()
    return {name: imports_of(path.read_text(), path, modules) if path else {} for name, path in modules.items()}


def _reach(graph: dict[str, dict[str, int]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for module in graph.get(todo.pop(), {}).keys() - seen:
            seen.add(module)
            todo.append(module)
    return seen


def cycles(graph: dict[str, dict[str, int]]) -> set[frozenset[str]]:
    """The import loops: each set of modules that all reach each other through imports (a strong component)."""
    reach = {module: _reach(graph, module) for module in graph}
    return {frozenset(o for o in reach[m] if m in reach[o]) for m in graph if m in reach[m]}


def _file(module: str) -> str:
    path = _modules()[module]
    return path.relative_to(ROOT).as_posix() if path else module


def _described(loop: frozenset[str], graph: dict[str, dict[str, int]]) -> str:
    """A loop's files, and the imports that tie them: ``file:line -> file``."""
    ties = [f"    {_file(m)}:{line} -> {_file(t)}" for m in sorted(loop) for t, line in graph[m].items() if t in loop]
    return "  " + ", ".join(sorted(_file(m) for m in loop)) + ":\n" + "\n".join(ties)


def _directories(loop: frozenset[str]) -> set[str]:
    return {Path(_file(module)).parent.as_posix() for module in loop}


def test_no_import_loop_spans_package_directories():
    graph = import_graph()
    bad = [_described(loop, graph) for loop in cycles(graph) if len(_directories(loop)) > 1]
    assert not bad, ("these modules import each other in a loop across packages (imports inside functions count); "
                     "hand the lower module what it needs, or move the shared part below both:\n" + "\n".join(bad))


def test_no_import_loop_inside_a_package_either():
    graph = import_graph()
    bad = [_described(loop, graph) for loop in cycles(graph) if len(_directories(loop)) == 1]
    assert not bad, ("these modules of one package import each other in a loop; move what they share into a module "
                     "below them, as compression/_registered.py and formats/_registered.py hold the registries that "
                     "__init__ re-exports:\n" + "\n".join(bad))


def test_the_loop_finder_follows_imports_inside_functions():
    modules = _modules()
    late = imports_of("def f():\n    from . import metrics\n    from .shm import POOLS\n", ROOT / "memory.py", modules)
    assert late == {"tether.metrics": 2, "tether.shm": 3}
    graph = {"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1, "d": 1}, "d": {}, "e": {"e": 1}}
    assert cycles(graph) == {frozenset("abc"), frozenset("e")}
