"""Registered table schemas: versions, migrations between them, validation, and what a reader reads.

A table schema has a name and a version. Registering the newest version with
the steps that bring each older version up to the next one lets every older
frame be read::

    import pyarrow as pa, tether
    from tether.schemas import add, rename, widen

    tether.schemas.register("events", version=3, schema=pa.schema([
        ("id", pa.int64()), ("time", pa.int64()), ("source", pa.string()),
    ]), migrations={
        1: [add("source", pa.string(), default="web")],       # v1 -> v2
        2: [rename("ts", "time"), widen("id", pa.int32(), pa.int64())],  # v2 -> v3
    })
    frame = tether.dumps(table, options={"schema": "events"})

Frames written with ``options={"schema": name}`` carry the schema's name,
version and fingerprint (docs/format.md §4.2); ``loads`` migrates an older
version to the newest registered one, chaining the steps. Steps that only
add or rename columns leave every other column a zero-copy view of the frame.

A writer that knows what its reader reads (``options={"versions":
reader_capabilities}``, the shape :func:`capabilities` returns) writes the
newest version the reader understands, undoing steps where each can be
undone, or fails with an error that says which side to upgrade.
docs/evolution.md is the guide.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, NamedTuple, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from . import types
from ._errors import DecodeError, UnsupportedVersionError, ValidationError

__all__ = [
    "DowngradeError", "MigrationError", "Mismatch", "Registry", "Schema", "SchemaMismatchError", "Step", "add", "capabilities", "describe", "drop",
    "fingerprint", "get", "migrate", "register", "rename", "step", "unregister", "validate", "versions", "widen",
]

# The type changes a declarative widen may make: every value of the first fits the second.
WIDENINGS = {
    ("int8", "int16"), ("int8", "int32"), ("int8", "int64"), ("int16", "int32"), ("int16", "int64"),
    ("int32", "int64"), ("uint8", "uint16"), ("uint8", "uint32"), ("uint8", "uint64"), ("uint16", "uint32"),
    ("uint16", "uint64"), ("uint32", "uint64"), ("uint8", "int16"), ("uint8", "int32"), ("uint8", "int64"),
    ("uint16", "int32"), ("uint16", "int64"), ("uint32", "int64"), ("halffloat", "float"), ("halffloat", "double"),
    ("float", "double"), ("string", "large_string"), ("binary", "large_binary"),
}
# Types that differ only in how Arrow lays the values out (offset width, views): a writer's
# table is cast to the schema's type for these before it is validated, because pandas and
# polars write large_string where a schema says string, with the very same values.
LAYOUTS_ONLY = {
    ("large_string", "string"), ("string", "large_string"), ("string_view", "string"), ("string_view", "large_string"),
    ("large_binary", "binary"), ("binary", "large_binary"), ("binary_view", "binary"), ("binary_view", "large_binary"),
}


class Mismatch(NamedTuple):
    """One way a table differs from a schema: the column, expected and found type, the first offending row."""

    column: str
    expected: str
    found: str
    row: int | None
    problem: str

    def __str__(self) -> str:
        at = f", first at row {self.row}" if self.row is not None else ""
        return f"column {self.column!r}: {self.problem} (expected {self.expected}, found {self.found}{at})"


class SchemaMismatchError(ValidationError):
    """A table does not match its registered schema; ``mismatches`` lists every difference."""

    def __init__(self, message: str, mismatches: Sequence[Mismatch] = ()) -> None:
        super().__init__(message)
        self.mismatches = list(mismatches)


# The largest schema version: a JSON number every reader keeps exactly, and a small integer on the BEAM.
MAX_VERSION = 2**31 - 1


@dataclass(frozen=True)
class Step:
    """One migration step between adjacent versions; build one with :func:`add`, :func:`rename`,
    :func:`widen`, :func:`drop` or :func:`step`.

    ``kind`` is the step's name, ``args`` its arguments; ``up`` and ``down``
    are the functions of a :func:`step`.
    """

    kind: str
    args: tuple = ()
    up: Callable[[pa.Table], pa.Table] | None = None
    down: Callable[[pa.Table], pa.Table] | None = None

    def __str__(self) -> str:
        if self.kind == "function":
            return f"step({getattr(self.up, '__qualname__', self.up)})"
        return f"{self.kind}({', '.join(repr(str(a)) if isinstance(a, pa.DataType) else repr(a) for a in self.args)})"


def _check_column(where: str, *columns: Any) -> None:
    for column in columns:
        if not isinstance(column, str) or not column:
            raise ValidationError(f"{where}: a column name is a non-empty str, got {column!r}.")


def _check_type(where: str, *types: Any) -> None:
    for t in types:
        if not isinstance(t, pa.DataType):
            raise ValidationError(f"{where}: a column type is a pyarrow.DataType such as pa.int64(), got {t!r}.")


def _check_schema(where: str, schema: Any) -> None:
    if not isinstance(schema, pa.Schema):
        raise ValidationError(f"{where}: schema must be a pyarrow.Schema, got {type(schema).__name__}.")


def _check_table(where: str, table: Any) -> None:
    if not isinstance(table, (pa.Table, pa.RecordBatch)):
        raise ValidationError(f"{where}: table must be a pyarrow.Table, got {type(table).__name__}.")


def add(column: str, type: pa.DataType, default: Any = None) -> Step:
    """A step that adds ``column`` of ``type``, every row ``default`` (null when None).

    Examples
    --------
    >>> import pyarrow as pa
    >>> str(add("source", pa.string(), "web"))
    "add('source', 'string', 'web')"
    """
    _check_column("add", column)
    _check_type(f"add({column!r})", type)
    if default is not None:
        try:
            pa.scalar(default, type)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
            raise ValidationError(f"add({column!r}): default {default!r} is not a {type}: {exc}") from None
    return Step("add", (column, type, default))


def rename(old: str, new: str) -> Step:
    """A step that renames column ``old`` to ``new`` (zero-copy).

    Examples
    --------
    >>> str(rename("ts", "time"))
    "rename('ts', 'time')"
    """
    _check_column("rename", old, new)
    return Step("rename", (old, new))


def widen(column: str, from_type: pa.DataType, to_type: pa.DataType) -> Step:
    """A step that widens ``column`` from ``from_type`` to ``to_type`` (int32→int64, float32→float64,
    string→large_string, binary→large_binary and the like: see :data:`WIDENINGS`).

    Undone for an older reader, it narrows back only when every value fits
    ``from_type``: an integer in range, a string or binary within 32-bit
    offsets, a float that reads back equal once narrowed (NaN stays NaN and
    ±inf stays ±inf, but 1e300 does not become inf nor 0.1 become
    0.100000001). Otherwise the write fails with :class:`DowngradeError`.

    Examples
    --------
    >>> import pyarrow as pa
    >>> widen("n", pa.int32(), pa.int64()).kind
    'widen'
    """
    _check_column("widen", column)
    _check_type(f"widen({column!r})", from_type, to_type)
    if (str(from_type), str(to_type)) not in WIDENINGS:
        raise ValidationError(
            f"widen({column!r}, {from_type}, {to_type}) is not a widening: every value of the first type must "
            f"fit the second ({', '.join(sorted(f'{a}→{b}' for a, b in WIDENINGS))}). Use step(fn) for other changes."
        )
    return Step("widen", (column, from_type, to_type))


def drop(column: str) -> Step:
    """A step that drops ``column``. It cannot be undone, so a writer cannot write the version before it.

    Examples
    --------
    >>> drop("legacy").args
    ('legacy',)
    """
    _check_column("drop", column)
    return Step("drop", (column,))


def step(up: Callable[[pa.Table], pa.Table], down: Callable[[pa.Table], pa.Table] | None = None) -> Step:
    """A step that runs ``up(table) -> table``; ``down`` undoes it, for writers whose reader is older.

    Examples
    --------
    >>> import pyarrow as pa
    >>> s = step(lambda t: t.append_column("two", pa.array([2] * t.num_rows)))
    >>> s.up(pa.table({"one": [1]})).column_names
    ['one', 'two']
    """
    for what, fn in (("up", up), ("down", down)):
        if (fn is not None or what == "up") and not callable(fn):
            raise ValidationError(f"step: {what} must be a function of a pyarrow.Table, got {fn!r}.")
    return Step("function", (), up, down)


@dataclass
class Schema:
    """A registered schema: its name, version, Arrow schema, and the steps from each older version."""

    name: str
    version: int
    schema: pa.Schema
    migrations: dict[int, list[Step]] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.schema)


def fingerprint(schema: pa.Schema) -> str:
    """A short hash of a schema's structure (names, types, nullability, in order), as hex.

    Examples
    --------
    >>> import pyarrow as pa
    >>> fingerprint(pa.schema([("a", pa.int64())])) == fingerprint(pa.schema([("a", pa.int64())]))
    True
    """
    _check_schema("fingerprint", schema)
    text = ";".join(f"{f.name}:{f.type}:{int(f.nullable)}" for f in schema)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def describe(schema: pa.Schema) -> list[dict[str, Any]]:
    """The schema as plain data: one ``{"name", "type", "nullable"}`` map per field, in order.

    Examples
    --------
    >>> import pyarrow as pa
    >>> describe(pa.schema([pa.field("id", pa.int64(), nullable=False)]))
    [{'name': 'id', 'type': 'int64', 'nullable': False}]
    """
    _check_schema("describe", schema)
    return [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in schema]


class Registry:
    """A set of registered schemas. tether has one (the module functions use it); a test may build another
    to play a reader of another release and pass it as ``options={"registry": reg}``.

    Examples
    --------
    >>> import pyarrow as pa
    >>> reg = Registry()
    >>> _ = reg.register("points", version=1, schema=pa.schema([("x", pa.float64())]))
    >>> reg.versions()
    {'points': 1}
    """

    def __init__(self) -> None:
        # Replaced whole under the lock on every change, never changed in place: readers take no lock and
        # see a registry from before or after a change, never halfway.
        self._by_name: dict[str, dict[int, Schema]] = {}
        self._lock = threading.Lock()

    def register(self, name: str, version: int, schema: pa.Schema,
                 migrations: Mapping[int, Step | Sequence[Step]] | None = None) -> Schema:
        """Register version ``version`` of table schema ``name``: see :func:`register`.

        Examples
        --------
        >>> import pyarrow as pa
        >>> reg = Registry()
        >>> reg.register("points", version=1, schema=pa.schema([("x", pa.float64())])).version
        1
        >>> reg.register("points", version=0, schema=pa.schema([]))
        Traceback (most recent call last):
        ...
        tether._errors.ValidationError: Schema 'points': version must be an int from 1 to 2147483647, got 0.
        """
        if not isinstance(name, str) or not name:
            raise ValidationError(f"A schema name must be a non-empty str, got {name!r}.")
        if type(version) is not int or not 1 <= version <= MAX_VERSION:
            # Bounded: a version is stamped into frames both runtimes read, and counted through step by step.
            raise ValidationError(f"Schema {name!r}: version must be an int from 1 to {MAX_VERSION}, got {version!r}.")
        if not isinstance(schema, pa.Schema):
            raise ValidationError(f"Schema {name!r}: schema must be a pyarrow.Schema, got {type(schema).__name__}.")
        if migrations is not None and not isinstance(migrations, Mapping):
            raise ValidationError(f"Schema {name!r}: migrations must be a dict of version to steps, such as "
                                  f"{{1: [rename('a', 'b')]}}; got {type(migrations).__name__}.")
        steps = {}
        for v, s in (migrations or {}).items():
            if type(v) is not int or not 1 <= v < version:
                raise ValidationError(f"Schema {name!r}: migrations are keyed by the version they upgrade "
                                      f"from, 1 to {version - 1}; got {v!r}.")
            steps[v] = [s] if isinstance(s, Step) or not isinstance(s, Iterable) else list(s)
            if not all(isinstance(x, Step) for x in steps[v]):
                raise ValidationError(f"Schema {name!r}: migrations[{v}] must be steps (add, rename, widen, "
                                      "drop or step(fn)).")
        entry = Schema(name, version, schema, steps)
        with self._lock:
            known = self._by_name.get(name, {})
            old = known.get(version)
            if old is not None and fingerprint(old.schema) != fingerprint(schema):
                # Frames stamped with this version would read against another schema than they were written with.
                raise ValidationError(
                    f"Schema {name!r} v{version} is already registered with another schema (fingerprint "
                    f"{fingerprint(old.schema)}, not {fingerprint(schema)}). Register the change as version "
                    f"{max(known) + 1} with migrations={{{max(known)}: [...]}}, or use a fresh "
                    "tether.schemas.Registry() for experiments."
                )
            self._by_name = {**self._by_name, name: {**known, version: entry}}
        return entry

    def versions(self) -> dict[str, int]:
        """The newest registered version of each schema name.

        Examples
        --------
        >>> import pyarrow as pa
        >>> reg = Registry()
        >>> for v in (1, 2):
        ...     _ = reg.register("points", version=v, schema=pa.schema([("x", pa.float64())]))
        >>> reg.versions()
        {'points': 2}
        """
        return {name: max(by_version) for name, by_version in self._by_name.items()}

    def get(self, name: str, version: int | None = None) -> Schema | None:
        """The registered schema ``name`` at ``version`` (the newest when None), or None.

        Examples
        --------
        >>> import pyarrow as pa
        >>> reg = Registry()
        >>> _ = reg.register("points", version=1, schema=pa.schema([("x", pa.float64())]))
        >>> reg.get("points").schema.names, reg.get("points", 2), reg.get("lines")
        (['x'], None, None)
        """
        by_version = self._by_name.get(name)
        if not by_version:
            return None
        return by_version.get(max(by_version) if version is None else version)

    def unregister(self, name: str) -> list[Schema]:
        """Forget every version of schema ``name``; return them, oldest first (empty when none was registered).

        Frames stamped with the name then read with no migration, as from a writer this registry does not know.

        Examples
        --------
        >>> import pyarrow as pa
        >>> reg = Registry()
        >>> _ = reg.register("points", version=1, schema=pa.schema([("x", pa.float64())]))
        >>> [s.version for s in reg.unregister("points")], reg.versions(), reg.unregister("points")
        ([1], {}, [])
        """
        with self._lock:
            removed = self._by_name.get(name, {})
            self._by_name = {k: v for k, v in self._by_name.items() if k != name}
        return [removed[v] for v in sorted(removed)]

    def steps(self, name: str, from_version: int) -> list[Step]:
        """The steps from ``from_version`` to ``from_version + 1``, from whichever registration has them.

        Examples
        --------
        >>> import pyarrow as pa
        >>> reg = Registry()
        >>> _ = reg.register("points", version=2, schema=pa.schema([("x", pa.float64()), ("y", pa.float64())]),
        ...                  migrations={1: add("y", pa.float64(), 0.0)})
        >>> [s.kind for s in reg.steps("points", 1)]
        ['add']
        >>> reg.steps("points", 2)
        Traceback (most recent call last):
        ...
        tether._errors.UnsupportedVersionError: Schema 'points' has no migration from version 2 to 3. ...
        """
        for entry in sorted(self._by_name.get(name, {}).values(), key=lambda e: -e.version):
            if from_version in entry.migrations:
                return entry.migrations[from_version]
        raise UnsupportedVersionError(
            f"Schema {name!r} has no migration from version {from_version} to {from_version + 1}. Register one: "
            f"tether.schemas.register({name!r}, version=..., schema=..., migrations={{{from_version}: [...]}})."
        )

    def capabilities(self) -> dict[str, Any]:
        """What a reader with this registry reads, in the shape writers take as ``options={"versions": ...}``.

        Examples
        --------
        >>> import pyarrow as pa
        >>> reg = Registry()
        >>> _ = reg.register("points", version=3, schema=pa.schema([("x", pa.float64())]))
        >>> caps = reg.capabilities()
        >>> caps["schemas"], caps["formats"]["arrow"]
        ({'points': 3}, [1, 1])
        """
        return {"formats": _format_versions(), "schemas": self.versions(), "types": types.versions()}


DEFAULT = Registry()

# The formats this process reads, {name: [oldest, newest]}: tether.formats registers its answer once its own
# formats are registered (read_formats_from). Schemas never imports formats, whose arrow format imports schemas.
_format_versions: Callable[[], dict[str, list[int]]] = dict  # none until then


def read_formats_from(versions: Callable[[], dict[str, list[int]]]) -> None:
    """Report the formats this process reads as ``versions()`` returns them, ``{name: [oldest, newest]}``.

    For tether's own modules: :mod:`tether.formats` registers its answer as
    it loads. :func:`capabilities` calls it each time, so formats registered
    later count.

    Parameters
    ----------
    versions : callable
        Returns each readable format's name with its oldest readable and its newest schema version.

    Examples
    --------
    >>> registered = _format_versions  # tether.formats'
    >>> read_formats_from(lambda: {"doc-format": [1, 2]})
    >>> capabilities()["formats"]
    {'doc-format': [1, 2]}
    >>> read_formats_from(registered)
    """
    global _format_versions
    _format_versions = versions


def register(name: str, version: int, schema: pa.Schema,
             migrations: Mapping[int, Step | Sequence[Step]] | None = None) -> Schema:
    """Register version ``version`` of table schema ``name`` (the newest registered version is current).

    ``migrations`` maps each older version ``v`` to the step (or list of
    steps) that turns a version ``v`` table into a version ``v + 1`` one.

    Examples
    --------
    >>> import pyarrow as pa, tether
    >>> s = tether.schemas.register("doc-example", version=2, schema=pa.schema([("n", pa.int64())]),
    ...                             migrations={1: tether.schemas.widen("n", pa.int32(), pa.int64())})
    >>> s.version, tether.schemas.versions()["doc-example"]
    (2, 2)
    >>> _ = tether.schemas.unregister("doc-example")
    """
    return DEFAULT.register(name, version, schema, migrations)


def unregister(name: str) -> list[Schema]:
    """Forget every registered version of table schema ``name``; return them, oldest first.

    Examples
    --------
    >>> unregister("no-such-schema")
    []
    """
    return DEFAULT.unregister(name)


def versions() -> dict[str, int]:
    """The newest registered version of each table schema: what this process reads.

    Examples
    --------
    >>> isinstance(versions(), dict)
    True
    """
    return DEFAULT.versions()


def get(name: str, version: int | None = None) -> Schema | None:
    """The registered schema ``name`` at ``version`` (the newest when None), or None.

    Examples
    --------
    >>> get("no-such-schema") is None
    True
    """
    return DEFAULT.get(name, version)


def capabilities(registry: Registry | None = None) -> dict[str, Any]:
    """What this process reads: ``{"formats": {name: [oldest, newest]}, "schemas": {name: newest}, "types": {name: version}}``.

    The worker handshake sends it; a writer takes the peer's as ``options={"versions": ...}``.

    Examples
    --------
    >>> capabilities()["formats"]["etf"]
    [1, 1]
    """
    if registry is not None and not isinstance(registry, Registry):
        raise ValidationError(f"registry must be a tether.schemas.Registry or None, got {type(registry).__name__}.")
    return (registry or DEFAULT).capabilities()


def reader_reads(versions: Any, kind: str) -> Mapping[str, Any]:
    """What the reader's ``options["versions"]`` says it reads of ``kind`` ("formats" or "schemas"); {} if unsaid.

    Parameters
    ----------
    versions : Any
        ``options["versions"]``: the reader's :func:`capabilities`, or None.
    kind : {"formats", "schemas"}

    Returns
    -------
    Mapping
        Name to version(s).

    Raises
    ------
    tether.ValidationError
        ``versions``, or its entry for ``kind``, is not a mapping.

    Examples
    --------
    >>> reader_reads({"schemas": {"events": 2}}, "schemas"), reader_reads(None, "formats")
    ({'events': 2}, {})
    >>> reader_reads([1], "formats")
    Traceback (most recent call last):
    ...
    tether._errors.ValidationError: options['versions'] must be a dict, got list [1]. ...
    """
    if type(versions) is dict:  # what capabilities() gives: skip the slower Mapping check on every write
        found = versions.get(kind)
        if type(found) is dict:
            return found
    where, found = "options['versions']", versions
    if isinstance(versions, Mapping):
        where, found = f"options['versions'][{kind!r}]", versions.get(kind)
        if isinstance(found, Mapping):
            return found
    if found is None:
        return {}
    raise ValidationError(
        f"{where} must be a dict, got {type(found).__name__} {found!r:.80}. Pass the reader's "
        "tether.schemas.capabilities() as it is: {'formats': {name: [oldest, newest]}, 'schemas': {name: newest}}."
    )


def _registry(options: Mapping[str, Any] | None) -> Registry:
    reg = (options or {}).get("registry")
    if reg is None:
        return DEFAULT
    if not isinstance(reg, Registry):
        raise ValidationError(f"options['registry'] must be a tether.schemas.Registry, got {type(reg).__name__}.")
    return reg


class MigrationError(DecodeError):
    """A migration step cannot apply to the table it was given; the message names the step, column and types."""


class DowngradeError(ValidationError):
    """The reader reads an older version than this writer can write; the message says which side to upgrade.

    A ValidationError, not an EncodeError: ``format="auto"`` must not fall
    back to another format, which would hand the reader rows it cannot tell
    from the table it expects.
    """


# ------------------------------------------------------------------ running steps


def _impossible(name: str, frm: int, to: int, s: Step, why: str, *, writing: bool = False) -> Exception:
    where = f"Schema {name!r} v{frm}→v{to}, step {s}: {why}."
    if writing:  # migrate() says which versions the reader and the writer are at
        return DowngradeError(f"{where} This writer cannot undo the step for an older reader.")
    return MigrationError(
        f"{where} Register a migration that handles it: tether.schemas.register({name!r}, version=..., "
        f"schema=..., migrations={{{frm}: [tether.schemas.step(fn)]}})."
    )


def _column(table: pa.Table, column: str, name: str, frm: int, to: int, s: Step, writing: bool) -> pa.ChunkedArray:
    if column not in table.column_names:
        raise _impossible(name, frm, to, s, f"the table has no column {column!r} (it has "
                          f"{', '.join(table.column_names) or 'none'})", writing=writing)
    return table.column(column)


def _up(table: pa.Table, s: Step, name: str, frm: int) -> pa.Table:
    """``table`` (version ``frm``) after step ``s``."""
    to = frm + 1
    if s.kind == "add":
        column, typ, default = s.args
        if column in table.column_names:
            raise _impossible(name, frm, to, s, f"column {column!r} is already there ({table.column(column).type})")
        values = pa.nulls(table.num_rows, typ) if default is None else pa.repeat(pa.scalar(default, typ), table.num_rows)
        return table.append_column(pa.field(column, typ), values)
    if s.kind == "rename":
        return _renamed(table, *s.args, name, frm, to, s, False)
    if s.kind == "widen":
        column, frm_type, to_type = s.args
        col = _column(table, column, name, frm, to, s, False)
        if col.type != frm_type:
            raise _impossible(name, frm, to, s, f"column {column!r} is {col.type}, not {frm_type}, so it cannot "
                              f"widen to {to_type}")
        return table.set_column(table.schema.get_field_index(column), pa.field(column, to_type), col.cast(to_type))
    if s.kind == "drop":
        _column(table, s.args[0], name, frm, to, s, False)
        return table.drop_columns([s.args[0]])
    return _run(s.up, table, name, frm, to, s, False)  # type: ignore[arg-type]


def _renamed(table: pa.Table, old: str, new: str, name: str, frm: int, to: int, s: Step,
             writing: bool) -> pa.Table:
    _column(table, old, name, frm, to, s, writing)
    if new in table.column_names:
        # Arrow would keep both under one name, and no later step or reader could tell them apart.
        raise _impossible(name, frm, to, s, f"column {new!r} is already there ({table.column(new).type})",
                          writing=writing)
    return table.rename_columns({old: new})


def _run(fn: Callable[[pa.Table], pa.Table], table: pa.Table, name: str, frm: int, to: int, s: Step,
         writing: bool) -> pa.Table:
    """``fn(table)`` for a function step, its failures named by schema, versions and step."""
    which = "down= function" if writing else "function"
    try:
        out = fn(table)
    except MemoryError:
        raise
    except Exception as exc:  # user code: any error it raises is this step failing on this table
        raise _impossible(name, frm, to, s, f"its {which} raised {type(exc).__name__}: {exc}",
                          writing=writing) from exc
    if not isinstance(out, pa.Table):
        raise _impossible(name, frm, to, s, f"its {which} returned {type(out).__name__}, not a pyarrow.Table",
                          writing=writing)
    return out


def _down(table: pa.Table, s: Step, name: str, frm: int) -> pa.Table:
    """``table`` (version ``frm``) with step ``s`` (from ``frm - 1``) undone, for an older reader."""
    to = frm - 1
    if s.kind == "add":
        _column(table, s.args[0], name, frm, to, s, True)
        return table.drop_columns([s.args[0]])
    if s.kind == "rename":
        old, new = s.args
        return _renamed(table, new, old, name, frm, to, s, True)
    if s.kind == "widen":
        column, frm_type, _ = s.args
        col = _column(table, column, name, frm, to, s, True)
        narrowed, why = _narrowed(col, frm_type)
        if narrowed is None:
            raise _impossible(name, frm, to, s, f"column {column!r} has values that {why}", writing=True)
        return table.set_column(table.schema.get_field_index(column), pa.field(column, frm_type), narrowed)
    if s.kind == "function" and s.down is not None:
        return _run(s.down, table, name, frm, to, s, True)
    why = "a dropped column cannot come back" if s.kind == "drop" else "the step has no down= function"
    raise _impossible(name, frm, to, s, why, writing=True)


def _narrowed(col: pa.ChunkedArray, typ: pa.DataType) -> tuple[pa.ChunkedArray | None, str]:
    """``col`` cast to the narrower ``typ`` and "", or None and which value does not fit."""
    try:
        narrowed = col.cast(typ, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        row = _first_bad_row(col, typ)
        value = f": {col[row].as_py()!r}" if row < len(col) else ""
        return None, f"{typ} cannot hold (first at row {row}){value}"
    if not pa.types.is_floating(typ):
        return narrowed, ""  # a safe integer or offset cast fails on any value that does not fit
    # A float cast never fails: it rounds, and overflows to ±inf. So a value fits when it reads back equal.
    back = narrowed.cast(col.type)
    lost = pc.and_(pc.not_equal(back, col), pc.invert(pc.and_(pc.is_nan(col), pc.is_nan(back))))
    row = pc.index(lost, True).as_py()
    if row < 0:
        return narrowed, ""
    return None, (f"{typ} cannot hold exactly (first at row {row}): {col[row].as_py()!r} would read as "
                  f"{narrowed[row].as_py()!r}. To write it anyway, round the column to {typ} first")


def migrate(table: pa.Table, name: str, from_version: int, to_version: int | None = None, *,
            registry: Registry | None = None) -> pa.Table:
    """``table``, a version ``from_version`` table of schema ``name``, as version ``to_version``.

    Upgrading chains the registered steps; downgrading (for an older reader)
    undoes them, newest first. Columns a step does not touch stay as they
    were: added and renamed-only columns are not copied.

    Examples
    --------
    >>> import pyarrow as pa
    >>> reg = Registry()
    >>> _ = reg.register("ex", version=2, schema=pa.schema([("b", pa.int64())]), migrations={1: rename("a", "b")})
    >>> migrate(pa.table({"a": [1]}), "ex", 1, registry=reg).column_names
    ['b']
    """
    _check_table("migrate", table)
    reg = registry or DEFAULT
    current = reg.get(name)
    if current is None:
        raise ValidationError(f"No table schema {name!r} is registered. Register it: tether.schemas.register(...).")
    for what, v in (("from_version", from_version), ("to_version", to_version)):
        if (v is not None or what == "from_version") and type(v) is not int:
            raise ValidationError(f"migrate({name!r}): {what} must be an int (a schema version), got {v!r}.")
    target = current.version if to_version is None else to_version
    for v in range(from_version, target):
        for s in reg.steps(name, v):
            table = _up(table, s, name, v)
    try:
        for v in range(from_version, target, -1):
            for s in reversed(_steps_down(reg, name, v)):
                table = _down(table, s, name, v)
    except DowngradeError as exc:
        raise DowngradeError(
            f"{exc} The reader reads {name!r} up to v{target}, and this table is v{from_version}. Upgrade the "
            f"reader: register {name!r} v{from_version} there (tether.schemas.register({name!r}, "
            f"version={from_version}, ...)), or give the step a way down."
        ) from exc.__cause__
    return table


def _steps_down(reg: Registry, name: str, v: int) -> list[Step]:
    """The steps from ``v - 1`` to ``v``, to undo; their absence is the writer's problem, not a frame's."""
    try:
        return reg.steps(name, v - 1)
    except UnsupportedVersionError:
        raise DowngradeError(f"Schema {name!r} has no migration from v{v - 1} to v{v} registered here, so there is "
                             f"no way down from v{v}.") from None


def renames(name: str, from_version: int, to_version: int | None = None, *,
            registry: Registry | None = None) -> dict[str, str | None]:
    """Where :func:`migrate`'s upgrade from ``from_version`` takes each column its steps name: the new name,
    or None once dropped.

    Only :func:`rename` and :func:`drop` steps move a column; a column no step
    names keeps its name (a :func:`step` function is taken to keep the names it
    leaves). What a reader uses to carry notes about the written columns (their
    pandas dtypes, say) over to the migrated table. Upgrades only: a
    ``to_version`` at or below ``from_version`` moves nothing.

    Parameters
    ----------
    name : str
        The registered schema.
    from_version : int
        The version the table was written at.
    to_version : int, optional
        Where the upgrade ends (default: the newest registered).
    registry : Registry, optional
        Default: the process-wide one.

    Returns
    -------
    dict
        Each original column name a step moved, to its name after the upgrade (None: dropped).

    Examples
    --------
    >>> import pyarrow as pa
    >>> reg = Registry()
    >>> _ = reg.register("ex", 1, pa.schema([("a", pa.int64()), ("x", pa.int64())]))
    >>> _ = reg.register("ex", 2, pa.schema([("b", pa.int64())]), migrations={1: [rename("a", "b"), drop("x")]})
    >>> renames("ex", 1, registry=reg)
    {'a': 'b', 'x': None}
    """
    reg = registry or DEFAULT
    current = reg.get(name)
    target = current.version if current is not None and to_version is None else to_version or from_version
    moved: dict[str, str | None] = {}
    fresh: set[str] = set()  # names of columns the steps added: renaming or dropping one moves no original
    for v in range(from_version, target):
        for s in reg.steps(name, v):
            if s.kind == "add":
                fresh.add(s.args[0])
            elif s.kind in ("rename", "drop"):
                _move(moved, fresh, s.args[0], s.args[1] if s.kind == "rename" else None)
    return moved


def _move(moved: dict[str, str | None], fresh: set[str], name: str, new: str | None) -> None:
    """The column now called ``name`` is called ``new`` (None: dropped), in :func:`renames`' records."""
    if name in fresh:
        fresh.discard(name)
        if new is not None:
            fresh.add(new)
        return
    holder = next((orig for orig, at in moved.items() if at == name), None)
    if holder is None and name not in moved:
        holder = name  # an original column no step has moved yet
    if holder is not None:
        moved[holder] = new


# ------------------------------------------------------------------ validation


def _first_bad_row(col: pa.ChunkedArray, typ: pa.DataType) -> int:
    """The first row of ``col`` a safe cast to ``typ`` refuses (bisecting on prefixes), or 0 if none can cast."""
    lo, hi = 0, len(col)  # the prefix of length hi fails; find the shortest that does
    while lo < hi:
        mid = (lo + hi) // 2
        try:
            col.slice(0, mid + 1).cast(typ, safe=True)
            lo = mid + 1
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            hi = mid
    return lo if lo < len(col) else 0


def mismatches(table: pa.Table, schema: pa.Schema) -> list[Mismatch]:
    """Every difference between ``table`` and ``schema``, in schema order, then the extra columns.

    Examples
    --------
    >>> import pyarrow as pa
    >>> [m.column for m in mismatches(pa.table({"a": [1]}), pa.schema([("a", pa.int64()), ("b", pa.string())]))]
    ['b']
    """
    _check_table("mismatches", table)
    _check_schema("mismatches", schema)
    out = []
    for f in schema:
        if f.name not in table.column_names:
            out.append(Mismatch(f.name, str(f.type), "missing", None, "the column is missing"))
            continue
        col = table.column(f.name)
        if col.type != f.type:
            try:
                col.cast(f.type, safe=True)
                row, problem = None, "the type differs (every value casts: register a widen or step)"
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                row, problem = _first_bad_row(col, f.type), "the type differs and values do not cast"
            out.append(Mismatch(f.name, str(f.type), str(col.type), row, problem))
        if not f.nullable and col.null_count:
            row = pc.index(pc.is_null(col), True).as_py()
            out.append(Mismatch(f.name, f"{f.type} not null", f"{col.type} with {col.null_count} nulls", row,
                                "nulls in a non-nullable column"))
    for name in table.column_names:
        if schema.get_field_index(name) < 0:
            out.append(Mismatch(name, "absent", str(table.column(name).type), None, "the column is not in the schema"))
    return out


def validate(table: pa.Table, name: str | pa.Schema, version: int | None = None, *,
             registry: Registry | None = None) -> None:
    """Check ``table`` against a registered schema (or a ``pyarrow.Schema``), reporting every mismatch.

    Raises :class:`SchemaMismatchError` whose message lists each mismatch
    (column, expected type, found type, first offending row) and whose
    ``mismatches`` holds them as :class:`Mismatch` tuples.

    Examples
    --------
    >>> import pyarrow as pa
    >>> validate(pa.table({"a": [1]}), pa.schema([("a", pa.int64())]))
    """
    _check_table("validate", table)
    if isinstance(name, pa.Schema):
        schema, label = name, "the schema"
    else:
        entry = (registry or DEFAULT).get(name, version)
        if entry is None:
            raise ValidationError(f"No table schema {name!r}{f' v{version}' if version else ''} is registered.")
        schema, label = entry.schema, f"schema {name!r} v{entry.version}"
    found = mismatches(table, schema)
    if found:
        lines = "\n".join(f"  - {m}" for m in found)
        raise SchemaMismatchError(f"The table does not match {label} ({len(found)} mismatches):\n{lines}", found)


def _same_layout(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with columns whose type differs from ``schema``'s only in layout cast to it (see LAYOUTS_ONLY).

    Examples
    --------
    >>> import pyarrow as pa
    >>> _same_layout(pa.table({"s": pa.array(["a"], pa.large_string())}), pa.schema([("s", pa.string())])).schema.types
    [DataType(string)]
    """
    for f in schema:
        i = table.schema.get_field_index(f.name)
        if i < 0 or (str(table.schema.field(i).type), str(f.type)) not in LAYOUTS_ONLY:
            continue
        try:
            col = table.column(i).cast(f.type, safe=True)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue  # too large for 32-bit offsets: validation reports the column
        table = table.set_column(i, pa.field(f.name, f.type, table.schema.field(i).nullable), col)
    return table


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with its columns in ``schema``'s order (zero-copy), when it has exactly those columns."""
    if table.column_names != schema.names and sorted(table.column_names) == sorted(schema.names):
        table = table.select(schema.names)
    return table


# ------------------------------------------------------------------ the arrow format's hooks


def for_write(table: pa.Table, options: Mapping[str, Any]) -> tuple[pa.Table, dict[str, Any]]:
    """The table an arrow frame carries for ``options={"schema": name, ...}``, and its ``table_schema`` map.

    The table is validated against the newest registered version (every
    mismatch reported), then written at the newest version the reader reads
    (``options["versions"]["schemas"][name]``, when given).

    Examples
    --------
    >>> import pyarrow as pa
    >>> reg = Registry()
    >>> _ = reg.register("ex", version=2, schema=pa.schema([("b", pa.int64())]), migrations={1: rename("a", "b")})
    >>> table, info = for_write(pa.table({"b": [1]}), {"schema": "ex", "registry": reg,
    ...                                                "versions": {"schemas": {"ex": 1}}})
    >>> table.column_names, info["version"]
    (['a'], 1)
    """
    name = options["schema"]
    reg = _registry(options)
    current = reg.get(name) if isinstance(name, str) else None
    if current is None:
        raise ValidationError(f"options['schema']={name!r} names no registered table schema. Register it: "
                              f"tether.schemas.register({name!r}, version=1, schema=pa.schema([...])).")
    table = _same_layout(table, current.schema)
    validate(table, name, registry=reg)
    table = _conform(table, current.schema)
    version = current.version
    reader = reader_reads(options.get("versions"), "schemas").get(name)
    if reader is not None and type(reader) is not int:
        raise ValidationError(f"options['versions']['schemas'][{name!r}] must be the newest version the reader "
                              f"reads (an int), got {reader!r}.")
    if reader is not None and reader < version:
        if reader < 1:
            raise DowngradeError(f"The reader reads schema {name!r} at version {reader}; versions start at 1.")
        table, version = migrate(table, name, version, reader, registry=reg), reader
    info = {"name": name, "version": version, "fingerprint": fingerprint(table.schema)}
    return table, info


def for_read(table: pa.Table, info: Mapping[str, Any], options: Mapping[str, Any], frame_id: str) -> pa.Table:
    """A table read from a frame whose ``table_schema`` is ``info``, migrated to the newest registered version.

    A schema this reader has not registered leaves the table as written.

    Examples
    --------
    >>> import pyarrow as pa
    >>> reg = Registry()
    >>> _ = reg.register("ex", version=2, schema=pa.schema([("b", pa.int64())]), migrations={1: rename("a", "b")})
    >>> for_read(pa.table({"a": [1]}), {"name": "ex", "version": 1}, {"registry": reg}, "frame").column_names
    ['b']
    """
    name, version = info.get("name"), info.get("version")
    reg = _registry(options)
    current = reg.get(name) if isinstance(name, str) else None
    if current is None or type(version) is not int:
        return table
    if version > current.version:
        raise UnsupportedVersionError(
            f"{frame_id} holds table schema {name!r} v{version}; this reader knows {name!r} up to "
            f"v{current.version}. Upgrade the reader (register {name!r} v{version} with its migrations), or have "
            f"the writer pass this reader's tether.schemas.capabilities() as options={{'versions': ...}}."
        )
    if version < current.version:
        table = migrate(table, name, version, registry=reg)
    table = _conform(table, current.schema)
    if fingerprint(table.schema) != current.fingerprint:
        found = mismatches(table, current.schema)
        if found:
            lines = "\n".join(f"  - {m}" for m in found)
            raise SchemaMismatchError(f"{frame_id}: the table read as {name!r} v{current.version} does not match "
                                      f"the registered schema ({len(found)} mismatches):\n{lines}", found)
    return table
