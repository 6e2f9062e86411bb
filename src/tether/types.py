"""Versioned user types: a name and a version on the wire, migrations on read, in both runtimes.

A registered class travels in etf frames as one documented term, the
``%Tether.Type{}`` struct of the Elixir companion (``docs/format.md``,
"Versioned user types")::

    %{__struct__: Tether.Type, name: "acme.Point", version: 3, value: Wire}

``Wire`` is what the type's ``encode`` returns (a dict's ``str`` keys are
written as atoms, as an Elixir struct's fields are). A reader that meets an
older version runs the registered migrations one step at a time
(``1 → 2 → 3``) before ``decode``; a newer version than it knows is a
:class:`TypeVersionError` that names the type, both versions and what to
upgrade. A writer told that its reader knows only an older version
(``options={"versions": {"types": {"acme.Point": 2}}}``) writes that version
through the registered ``downgrades``, or fails with :class:`TypeDowngradeError`.

A name nobody registered stays the plain map (a ``dict`` with ``__struct__``),
which encodes back unchanged. Every step logs at DEBUG on ``tether.types``.

Examples
--------
>>> import tether
>>> from dataclasses import dataclass
>>> @dataclass
... class Span:
...     start: int
...     stop: int
>>> _ = tether.types.register_type(Span, name="doc.Span", version=2,
...     migrations={1: lambda w: {"start": w["first"], "stop": w["last"]}})
>>> tether.loads(tether.dumps([Span(1, 5)]))
[Span(start=1, stop=5)]
>>> old = tether.types.wire("doc.Span", 1, {"first": 2, "last": 3})  # as a v1 writer sent it
>>> tether.loads(tether.dumps(old))
Span(start=2, stop=3)
>>> tether.types.unregister_type("doc.Span")
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from ._errors import DecodeError, EncodeError, MappingError, UnsupportedVersionError, ValidationError
from ._types import Atom

__all__ = [
    "TypeDowngradeError", "TypeEncodeError", "TypeRegistrationError", "TypeVersionError", "UserType", "any_registered",
    "get", "register_type", "unregister_type", "versions", "wire",
]

log = logging.getLogger("tether.types")

STRUCT = Atom("__struct__")
WIRE_STRUCT = Atom("Elixir.Tether.Type")
NAME, VERSION, VALUE = Atom("name"), Atom("version"), Atom("value")
# Classes the codecs write by their base type (the C encoder never asks a hook), so a registration would be ignored.
_BUILTIN_BASES = (dict, list, tuple, set, frozenset, str, bytes, bytearray, int, float)
# Classes every codec writes before it would ask for a registration (datetime.datetime before its base, date).
_NATIVE = (type(None), datetime.datetime)
# At most this many missing steps are listed (a message, an error's ``missing``): a gap up to version 10**6
# would otherwise build a list and a message of millions of steps.
_LISTED = 100


class TypeEncodeError(MappingError):
    """A user's encoder (a registered type's ``encode``, a struct mapping's ``from_python``) raised.

    ``serializer`` names it, ``path`` is where the value sits (``$.a[2].b``).
    """

    def __init__(self, message: str, serializer: str = "", path: str = "$"):
        super().__init__(message)
        self.serializer = serializer
        self.path = str(path)  # the encoder's path object moves on; keep where it stood


class TypeVersionError(UnsupportedVersionError):
    """A value's type version is newer than this reader knows, or older than it migrates."""

    def __init__(self, message: str, name: str = "", found: int = 0, known: int = 0):
        super().__init__(message)
        self.name, self.found, self.known = name, found, known


class TypeDowngradeError(EncodeError):
    """The reader knows only an older version of a type than this writer can downgrade to.

    Never answered by a fallback: sending another format would not make the reader newer.
    """

    fallback = False


class TypeRegistrationError(ValidationError):
    """Registering a name again would leave the earlier registration's migrations or downgrades without a chain.

    ``name``, ``kind`` (``"migrations"`` or ``"downgrades"``), ``missing`` (the versions whose step the
    call must pass, the first 100 when more are missing) and ``nmissing`` (how many are missing) say what;
    the message says how. The message comes first, as in tether's other errors, so the error pickles (a
    process pool hands it back to its parent) with its fields.
    """

    def __init__(self, message: str, name: str = "", kind: str = "", missing: Sequence[int] = (),
                 nmissing: int | None = None):
        super().__init__(message)
        self.name, self.kind, self.missing = name, kind, list(missing)
        self.nmissing = len(self.missing) if nmissing is None else nmissing

    @classmethod
    def unchained(cls, earlier: UserType, kind: str, version: int, missing: list[int],
                  nmissing: int) -> TypeRegistrationError:
        """The error for ``earlier``'s ``kind`` steps that do not chain up to ``version`` (``missing`` breaks them).

        ``nmissing`` is how many steps are missing; ``missing`` may list only the first of them.
        """
        if kind == "migrations":
            reach = f"reads from version {earlier.oldest_readable}"
        else:
            reach = f"writes down to version {earlier.oldest_writable}"
        pairs = _steps_text(kind, missing, nmissing)
        return cls(
            f"Type {earlier.name} is registered at version {earlier.version} and {reach}; registering version "
            f"{version} keeps those {kind}, but they do not chain up to it. Pass {kind}={{{pairs}}} (the earlier "
            f"steps are kept), or call tether.types.unregister_type({earlier.name!r}) first to start afresh with "
            "only the steps this call passes.",
            earlier.name, kind, missing, nmissing,
        )


Step = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class UserType:
    """One registered type: see :func:`register_type`."""

    cls: type
    name: str
    version: int
    encode: Callable[[Any], Any]
    decode: Callable[[Any], Any]
    migrations: Mapping[int, Step]
    downgrades: Mapping[int, Step]
    oldest_readable: int  # the oldest version a reader of this registration migrates
    oldest_writable: int  # the oldest version a writer of this registration downgrades to


# Both are replaced whole under _writing on every change and never changed in place, so that an encoder or
# reader on another thread iterates a consistent snapshot.
_by_name: dict[str, UserType] = {}
_by_cls: dict[type, UserType] = {}
_writing = threading.Lock()


def _steps_text(kind: str, missing: list[int], nmissing: int) -> str:
    """``missing`` as the dict of steps to pass (``{2: <step 2 -> 3>, ...}``): the first five, then how many more."""
    sign = 1 if kind == "migrations" else -1
    shown = missing[:5]
    pairs = ", ".join(f"{v}: <step {v} -> {v + sign}>" for v in shown)
    more = nmissing - len(shown)
    return f"{pairs}, ... ({more:,} more steps)" if more > 0 else pairs


def _check_steps(name: str, kind: str, steps: Mapping[int, Step] | None, wanted: range) -> dict[int, Step]:
    """Steps keyed by the version they start from, one for each version of ``wanted`` from the first given."""
    if steps is not None and not isinstance(steps, Mapping):
        raise ValidationError(
            f"register_type({name!r}): {kind} must be a dict of version to step function, such as "
            f"{{1: up_1_2}}; got {type(steps).__name__}."
        )
    steps = dict(steps or {})
    bad = [k for k in steps if type(k) is not int or k not in wanted or not callable(steps[k])]
    if bad and not wanted:
        raise ValidationError(
            f"register_type({name!r}): version 1 takes no {kind} (there is no other version to step to); "
            f"got keys {bad[:_LISTED]!r}."
        )
    if bad:
        raise ValidationError(
            f"register_type({name!r}): {kind} are keyed by the version each step starts from ({wanted.start}.."
            f"{wanted.stop - 1} here) and map to callables; invalid: {bad[:_LISTED]!r}."
        )
    return steps


def _gaps(steps: Mapping[int, Step], wanted: range) -> tuple[list[int], int]:
    """The first :data:`_LISTED` versions without a step between the oldest step and the newest version (each
    one breaks the chain), and how many there are in all. Bounded by the steps given, not by the version.
    """
    if not steps:
        return [], 0
    low = min(steps)
    present = sum(1 for v in steps if low <= v < wanted.stop)
    first, v = [], low
    while len(first) < _LISTED and v < wanted.stop:
        if v not in steps:
            first.append(v)
        v += 1
    return first, (wanted.stop - low) - present


def _keep_steps(name: str, old: UserType | None, kind: str, given: dict[int, Step], version: int) -> dict[int, Step]:
    """``given`` plus the earlier registration's steps of ``kind`` that still apply at ``version``, checked to chain.

    Dropping them silently would surface much later, as a version "too old to migrate" on some read.
    """
    wanted = range(1, version) if kind == "migrations" else range(2, version + 1)
    earlier = {} if old is None else old.migrations if kind == "migrations" else old.downgrades
    kept = {v: fn for v, fn in earlier.items() if v in wanted and v not in given}
    steps = {**kept, **given}
    missing, nmissing = _gaps(steps, wanted)
    if missing and not kept:
        raise ValidationError(f"register_type({name!r}): {kind} must chain without gaps up to version {version}; "
                              f"pass {kind}={{{_steps_text(kind, missing, nmissing)}}}.")
    if missing:
        raise TypeRegistrationError.unchained(old, kind, version, missing, nmissing)
    if not kept:
        return given
    log.debug("type %s version %d keeps the %s %s of its earlier registration", old.name, version, kind,
              sorted(kept))
    return dict(sorted(steps.items()))


def _check_args(cls: Any, name: Any, version: Any, encode: Any, decode: Any) -> str:
    """The checked arguments' name, as a plain str: a str subclass (an Atom) would be written as an atom."""
    if not isinstance(name, str) or not name or name.startswith("Elixir."):
        raise ValidationError(
            f"register_type({cls!r}): a type name is a non-empty str such as 'acme.Point', got {name!r}"
            + (": names starting with 'Elixir.' are Elixir modules' (docs/format.md §6.1)." if
               isinstance(name, str) and name.startswith("Elixir.") else ".")
        )
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(f"register_type({cls!r}): a type name is UTF-8 on the wire, and {name!r} has no "
                              "UTF-8 form (a lone surrogate, from decoding bytes with errors='surrogateescape'?): "
                              "pass the name as text.") from None
    name = _plain_name(name)
    if not isinstance(cls, type) or cls is object or issubclass(cls, _BUILTIN_BASES + _NATIVE):
        raise ValidationError(
            f"register_type({name!r}) needs a class of your own, not {cls!r}: dicts, lists, tuples, strings, "
            "numbers, None and datetime.datetime (and their subclasses) are written as themselves, and object "
            "would claim every value. Wrap the value in a class of your own."
        )
    if type(version) is not int or version < 1:
        raise ValidationError(f"register_type({name!r}): a type version is an int of 1 or more, got {version!r}.")
    for what, fn in (("encode", encode), ("decode", decode)):
        if fn is not None and not callable(fn):
            raise ValidationError(f"register_type({name!r}): {what} must be callable, got {fn!r}.")
    return name


def register_type(
    cls: type,
    *,
    name: str,
    version: int = 1,
    encode: Callable[[Any], Any] | None = None,
    decode: Callable[[Any], Any] | None = None,
    migrations: Mapping[int, Step] | None = None,
    downgrades: Mapping[int, Step] | None = None,
) -> UserType:
    """Register ``cls`` as the versioned type ``name``, readable and writable by both runtimes.

    Parameters
    ----------
    cls : type
        Instances of it (and of its subclasses) encode as the type.
    name : str
        The name on the wire, shared with the BEAM's ``use Tether.Type, name: ...``,
        e.g. ``"acme.Point"``.
    version : int
        The version this process writes and decodes (1 or more).
    encode : callable, optional
        ``value -> wire term`` at ``version``. Default: a dataclass's fields, or
        ``vars(value)``. A dict's ``str`` keys are written as atoms.
    decode : callable, optional
        ``wire term at version -> value``. Default: ``cls(**wire)``.
    migrations : dict, optional
        ``{1: up_1_2, 2: up_2_3}``: each step takes the wire term of its key's
        version and returns the next version's. Keys run without gaps up to
        ``version - 1``; the smallest is the oldest version this reader reads.
    downgrades : dict, optional
        ``{3: down_3_2, 2: down_2_1}``: the reverse steps, used only when the
        caller says its reader knows an older version
        (``options={"versions": {"types": {name: 2}}}``).

    Returns
    -------
    UserType
        The registration. The last registration of a name or class wins, but a
        name registered again keeps the earlier registration's migrations and
        downgrades that this call does not replace (they describe the name's
        older wire versions, whichever class reads them). When the kept steps
        would not chain up to ``version`` (a step is missing), the call raises
        :class:`TypeRegistrationError` naming the step to pass; call
        :func:`unregister_type` first to start the name afresh.

    Examples
    --------
    >>> import tether
    >>> class Money:
    ...     def __init__(self, cents, currency):
    ...         self.cents, self.currency = cents, currency
    >>> t = tether.types.register_type(Money, name="doc.Money", version=2,
    ...     encode=lambda m: {"cents": m.cents, "currency": m.currency},
    ...     decode=lambda w: Money(w["cents"], w["currency"]),
    ...     migrations={1: lambda w: {"cents": w["amount"] * 100, "currency": "EUR"}})
    >>> m = tether.loads(tether.dumps(Money(250, "USD")))
    >>> (m.cents, m.currency, t.oldest_readable)
    (250, 'USD', 1)
    >>> tether.types.unregister_type("doc.Money")
    """
    name = _check_args(cls, name, version, encode, decode)
    with _writing:
        spec = _register(cls, name, version, encode, decode, migrations, downgrades)
    log.debug("registered type %s version %d for %s.%s (reads from %d, writes down to %d)", name, version,
              cls.__module__, cls.__qualname__, spec.oldest_readable, spec.oldest_writable)
    return spec


def _register(cls: type, name: str, version: int, encode: Any, decode: Any, migrations: Any,
              downgrades: Any) -> UserType:
    """register_type's work once checked, under ``_writing``: the registration, swapped in."""
    global _by_name, _by_cls
    old = _by_name.get(name)
    ups = _keep_steps(name, old, "migrations", _check_steps(name, "migrations", migrations, range(1, version)),
                      version)
    downs = _keep_steps(name, old, "downgrades",
                        _check_steps(name, "downgrades", downgrades, range(2, version + 1)), version)
    spec = UserType(cls, name, version, encode or _default_encode, decode or _default_decoder(cls), ups, downs,
                    min(ups, default=version), min(downs) - 1 if downs else version)
    by_cls = dict(_by_cls)
    if old is not None and old.cls is not cls and by_cls.get(old.cls) is old:
        del by_cls[old.cls]  # unless the old class took another name since: it keeps that one
    by_cls[cls] = spec
    _by_cls, _by_name = by_cls, {**_by_name, name: spec}
    return spec


def unregister_type(name: str) -> None:
    """Forget the type registered as ``name`` (a no-op when there is none).

    Examples
    --------
    >>> unregister_type("doc.Nothing")
    """
    global _by_name, _by_cls
    with _writing:
        spec = _by_name.get(name)
        if spec is None:
            return
        if _by_cls.get(spec.cls) is spec:
            _by_cls = {c: s for c, s in _by_cls.items() if c is not spec.cls}
        _by_name = {n: s for n, s in _by_name.items() if n != name}
    log.debug("unregistered type %s", name)


def get(name: str) -> UserType | None:
    """The registration of ``name``, or None.

    Examples
    --------
    >>> get("doc.Nothing") is None
    True
    """
    if not isinstance(name, str):
        raise ValidationError(f"A type name is a str such as 'acme.Point', got {name!r}.")
    return _by_name.get(name)


def versions() -> dict[str, int]:
    """The version of every registered type, by name: what this process reads (for a worker handshake).

    Examples
    --------
    >>> isinstance(versions(), dict)
    True
    """
    return {name: spec.version for name, spec in _by_name.items()}


def any_registered() -> bool:
    """Whether any type is registered (the encoder's fast check).

    Examples
    --------
    >>> isinstance(any_registered(), bool)
    True
    """
    return bool(_by_cls)


def wire(name: str, version: int, value: Any) -> dict:
    """The wire term of a type value written at ``version``: what an older (or other) writer sends.

    Examples
    --------
    >>> w = wire("acme.Point", 1, {"x": 1})
    >>> w["name"], w["version"], w["value"]
    ('acme.Point', 1, {Atom('x'): 1})
    """
    if isinstance(value, dict):
        value = {Atom(k) if type(k) is str else k: v for k, v in value.items()}
    return {STRUCT: WIRE_STRUCT, NAME: _plain_name(name), VERSION: version, VALUE: value}


def _plain_name(name: Any) -> Any:
    """A str subclass's text as a plain str: an Atom would be written as an atom, and the BEAM reads a binary."""
    return str.__str__(name) if isinstance(name, str) and type(name) is not str else name


# The field names of each dataclass the default encoder met: dataclasses.fields costs more than the encoding.
_FIELDS: dict[type, tuple[str, ...]] = {}


def _default_encode(value: Any) -> Any:
    names = _FIELDS.get(type(value))
    if names is None:
        if not dataclasses.is_dataclass(value):
            return dict(vars(value))
        names = _FIELDS[type(value)] = tuple(f.name for f in dataclasses.fields(value))
    return {name: getattr(value, name) for name in names}


def _default_decoder(cls: type) -> Callable[[Any], Any]:
    def decode(w: Any) -> Any:
        return cls(**{_field_name(k): v for k, v in w.items()})

    return decode


def _field_name(key: Any) -> str:
    """A wire map's key as a field name: an atom's text, or a binary key's (an Elixir type whose ``to_wire``
    writes ``%{"label" => ...}`` reads in Python as ``{b"label": ...}``), as Elixir's default ``from_wire`` takes."""
    if isinstance(key, (bytes, bytearray, memoryview)):
        try:
            return bytes(key).decode("utf-8")
        except UnicodeDecodeError:
            pass
    return str(key)


# ---------------------------------------------------------------- codec hooks


def lookup(value: Any) -> UserType | None:
    """The registration ``value`` encodes through, or None.

    Examples
    --------
    >>> lookup(object()) is None
    True
    """
    spec = _by_cls.get(type(value))
    if spec is None and _by_cls:
        for cls, s in _by_cls.items():
            if isinstance(value, cls):
                return s
    return spec


def to_wire(value: Any, spec: UserType, path: object, reader_versions: Mapping[str, int] | None = None) -> dict:
    """The encoder's hook: ``value`` as the wire term, at the version its reader knows.

    ``reader_versions`` maps type names to the newest version the reader reads; ``path`` (a str,
    or the encoder's position, which renders as one) is where the value sits, for messages.

    Examples
    --------
    >>> class Flag:
    ...     def __init__(self, on):
    ...         self.on = on
    >>> spec = register_type(Flag, name="doc.Flag", version=2, downgrades={2: lambda w: {"v": w["on"]}})
    >>> to_wire(Flag(True), spec, "$", {"doc.Flag": 1})["value"]
    {Atom('v'): True}
    >>> unregister_type("doc.Flag")
    """
    target = spec.version
    if reader_versions and spec.name in reader_versions:
        target = min(spec.version, _reader_version(spec.name, reader_versions[spec.name]))
    try:
        w = spec.encode(value)
    except Exception as exc:  # a user's function: whatever it raises, the caller gets a typed error
        raise TypeEncodeError(
            f"The encoder of type {spec.name} (register_type encode) failed on {type(value).__qualname__} at "
            f"{path}: {type(exc).__name__}: {exc}",
            f"{spec.name} encode", path,
        ) from exc
    if isinstance(w, spec.cls) and lookup(w) is spec:  # isinstance first: plain data skips lookup's scan
        raise TypeEncodeError(
            f"The encoder of type {spec.name} (register_type encode) returned a {type(w).__qualname__} at {path}, "
            f"a value of the type it encodes: it must return plain data (a dict, list or tuple of basic values).",
            f"{spec.name} encode", path,
        )
    if target < spec.version:
        w = _downgrade(spec, w, target, path)
    if log.isEnabledFor(logging.DEBUG):
        # str(path) now: the encoder's position object moves on before a buffered handler formats the record.
        log.debug("encode %s at %s as version %d%s", spec.name, str(path), target,
                  f" (downgraded from {spec.version})" if target < spec.version else "")
    return wire(spec.name, target, w)


def _reader_version(name: str, v: Any) -> int:
    if type(v) is not int or v < 1:
        raise ValidationError(f"options['versions']['types'][{name!r}] must be an int of 1 or more, got {v!r}.")
    return v


def _downgrade(spec: UserType, w: Any, target: int, path: object) -> Any:
    if target < spec.oldest_writable:
        raise TypeDowngradeError(
            f"The reader knows type {spec.name} up to version {target}; this writer has version {spec.version} "
            f"at {path} and downgrades only to {spec.oldest_writable}. Upgrade the reader's {spec.name} to version "
            f"{spec.oldest_writable} or later, or register downgrades down to {target} here."
        )
    for v in range(spec.version, target, -1):
        log.debug("downgrade %s from version %d to %d", spec.name, v, v - 1)
        w = _step(spec, spec.downgrades[v], w, "downgrade", v)
    return w


def _step(spec: UserType, fn: Step, w: Any, kind: str, v: int) -> Any:
    """One migration (``v`` → ``v + 1``) or downgrade (``v`` → ``v - 1``) step; its failure is a typed error."""
    try:
        return fn(w)
    except Exception as exc:  # a user's function
        up = kind == "migration"
        cls = DecodeError if up else TypeDowngradeError
        what = f"{kind} {v} -> {v + 1 if up else v - 1}"
        raise cls(f"Type {spec.name}: the {what} step failed: {type(exc).__name__}: {exc}. Fix the step "
                  "registered with tether.types.register_type.") from exc


def from_wire(d: dict) -> Any:
    """The decoder's hook for a ``Tether.Type`` map: the registered type's value, migrated; else the map.

    Examples
    --------
    >>> from_wire(wire("doc.Unregistered", 1, {"a": 1}))["version"]
    1
    """
    name, version, value = d.get(NAME), d.get(VERSION), d.get(VALUE)
    if isinstance(name, (bytes, bytearray, memoryview)):
        name = bytes(name).decode("utf-8", "replace")
    if not isinstance(name, str) or type(version) is not int or VALUE not in d:
        raise DecodeError(
            f"A Tether.Type term needs a binary name, an integer version and a value; got name={name!r}, "
            f"version={version!r}{'' if VALUE in d else ', no value'}."
        )
    spec = _by_name.get(name)
    if spec is None:
        log.debug("type %s version %d is not registered here: kept as a map", name, version)
        return d
    if version < 1:
        raise TypeVersionError(
            f"Type {name} arrived at version {version}, which no writer makes (versions start at 1; this reader "
            f"knows {spec.oldest_readable} to {spec.version}): the value was forged or damaged on its way. Send it "
            "again from a tether writer.",
            name, version, spec.version,
        )
    if version > spec.version:
        raise TypeVersionError(
            f"Type {name} arrived at version {version}; this reader knows up to version {spec.version} "
            f"({spec.cls.__module__}.{spec.cls.__qualname__}). Upgrade the reader's registration of {name} to "
            f"version {version}, or have the writer send version {spec.version} (options={{'versions': "
            f"{{'types': {{'{name}': {spec.version}}}}}}} in Python; versions: in Tether.Type.to_wire/2).",
            name, version, spec.version,
        )
    if version < spec.oldest_readable:
        raise TypeVersionError(
            f"Type {name} arrived at version {version}; this reader migrates from version "
            f"{spec.oldest_readable} up to {spec.version}. Register migrations from {version} with "
            f"tether.types.register_type, or re-encode the value with a release that reads version {version}.",
            name, version, spec.version,
        )
    debug = log.isEnabledFor(logging.DEBUG)
    for v in range(version, spec.version):
        if debug:
            log.debug("migrate %s from version %d to %d", name, v, v + 1)
        value = _step(spec, spec.migrations[v], value, "migration", v)
    try:
        out = spec.decode(value)
    except Exception as exc:  # a user's function
        raise DecodeError(f"The decoder of type {name} (register_type decode) failed on version {spec.version}: "
                          f"{type(exc).__name__}: {exc}") from exc
    if debug:
        log.debug("decoded %s version %d as %s", name, version, type(out).__qualname__)
    return out
