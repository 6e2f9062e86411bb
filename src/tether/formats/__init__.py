"""The format registry, and how a format joins ``format="auto"``.

Formats are registered by name and numeric id. Ids 0-127 are reserved for
tether; user formats take 128-65535. The last registration under an id wins.
Plugins in the ``tether.formats`` entry-point group (``[project.entry-points."tether.formats"]
mything = "mypkg.formats:MyFormat"``) are registered before the first automatic
choice and on the first lookup of an unknown name or id.

``format="auto"`` asks every format with an ``auto_priority`` (an int; None:
never automatic), in ascending priority, whether it claims the value: its
``auto_pick(obj, transport)`` returns ``(reason, estimated payload size or None)``
to claim it, or None. tether's own priorities leave room around them: raw 10,
scalar 20, ndarray 30, sparse 35, arrow 40, etf 50, pickle 1000. A claim must be cheap
(it runs on every ``dumps``): look at the type, not the contents.

Under ``format="auto"``, a format whose ``encode`` fails hands the value on:
to its ``fallback`` when it names one, else (user formats, ids from 128) to the
next format that claims it and that the reader reads, with a
:class:`tether.FallbackWarning` naming the format and its error.

Examples
--------
>>> import tether
>>> tether.formats.get("ndarray").id
3
>>> sorted(tether.formats.names())[:3]
['arrow', 'etf', 'ndarray']

A format of your own, picked automatically for its type before etf (50) asks:

>>> class Celsius(float):
...     pass
>>> class CelsiusFormat(tether.formats.Format):
...     id, name, auto_priority, kind = 65001, "doc-celsius", 15, Celsius
...     def auto_pick(self, obj, transport):
...         return ("a Celsius reading", 8) if type(obj) is self.kind else None
...     def encode(self, obj, ctx):
...         p = tether.formats.Payload({"unit": "C"})
...         p.add(float(obj).hex().encode())
...         return p
...     def decode(self, payload, type_info, ctx):
...         return self.kind(float.fromhex(bytes(payload).decode()))
>>> _ = tether.formats.register(CelsiusFormat)
>>> frame = tether.dumps(Celsius(21.5))
>>> tether.last_decision().format, tether.loads(frame)
('doc-celsius', 21.5)
>>> _ = tether.formats.unregister("doc-celsius")  # a plugin's or a test's format can be removed again
"""

from __future__ import annotations

from typing import Any, Mapping

from .. import schemas
from .._errors import ValidationError
from .._registry import Registry
from ._base import DecodeContext, EncodeContext, Format, Migration, Payload, Segment
from ._encode import encode

__all__ = [
    "DecodeContext", "EncodeContext", "Format", "Migration", "Payload", "Segment", "auto_order", "encode", "get",
    "names", "register", "registry", "unregister", "GENERAL_OPTIONS", "check_option_keys",
]

_MAX_ID = 0xFFFF  # format_id and schema_version are 16-bit header fields


def _check(fmt: object) -> None:
    """A format's own rules, checked at registration so that a bad plugin fails there, not in a later dumps."""
    if not isinstance(fmt, Format):
        raise ValidationError(
            f"A format must be an instance of tether.formats.Format (subclass it), got {type(fmt).__name__}."
        )
    where = f"Format {fmt.name!r}"
    if fmt.auto_priority is not None and type(fmt.auto_priority) is not int:
        raise ValidationError(
            f"{where}: auto_priority must be an int (lower is asked first) or None (never automatic), "
            f"got {fmt.auto_priority!r}."
        )
    if type(fmt.schema_version) is not int or not 0 <= fmt.schema_version <= _MAX_ID:
        raise ValidationError(f"{where}: schema_version must be an int in 0..{_MAX_ID}, got {fmt.schema_version!r}.")
    if not isinstance(fmt.intos, (tuple, list, frozenset)) or not all(isinstance(i, str) for i in fmt.intos):
        raise ValidationError(f"{where}: intos must be a tuple of str (the into= values it gives), got {fmt.intos!r}.")
    if fmt.fallback is not None and not isinstance(fmt.fallback, str):
        raise ValidationError(f"{where}: fallback must be a format name or None, got {fmt.fallback!r}.")


# Ids below 128 are tether's (docs/format.md): they can be replaced but not unregistered.
registry: Registry[Format] = Registry("format", "tether.formats", _MAX_ID, check=_check, own_below=128)


def register(fmt: Format | type[Format]) -> Format:
    """Register a format instance (or class, instantiated with no arguments).

    Parameters
    ----------
    fmt : Format or type of Format
        Needs a non-empty ``name`` and an ``id`` in 0..65535 (user formats: 128 and up). The last
        registration under an id wins, so registering again replaces a format in place; a name
        already registered under another id is refused. ``auto_priority`` is an int or None,
        ``schema_version`` an int in 0..65535, ``intos`` a tuple of str.

    Returns
    -------
    Format
        The registered instance.

    Examples
    --------
    A raw-bytes format under a name of its own, never picked automatically (``auto_priority``
    None), used when asked for by name:

    >>> import tether
    >>> class Blob(type(tether.formats.get("raw"))):
    ...     id, name, auto_priority = 65002, "doc-blob", None
    >>> register(Blob)
    <format doc-blob id=65002 schema=1>
    >>> tether.inspect(tether.dumps(b"abc", format="doc-blob")).format
    'doc-blob'
    >>> unregister("doc-blob")
    <format doc-blob id=65002 schema=1>
    """
    return registry.register(registry.instance(fmt))


def unregister(key: str | int) -> Format:
    """Remove a registered format (a plugin's, or one of yours); tether's own (ids below 128) stay.

    Parameters
    ----------
    key : str or int
        The format's name or id.

    Returns
    -------
    Format
        The format removed. It is no longer chosen automatically, and frames written with it
        fail to read, naming the valid formats, until it is registered again.

    Raises
    ------
    tether.UnsupportedFormatError
        Nothing is registered under ``key``.
    tether.ValidationError
        ``key`` names one of tether's own formats.

    Examples
    --------
    >>> import tether
    >>> class Blob(type(tether.formats.get("raw"))):
    ...     id, name, auto_priority = 65003, "doc-blob2", None
    >>> _ = register(Blob)
    >>> unregister(65003).name, "doc-blob2" in names()
    ('doc-blob2', False)
    """
    return registry.unregister(key)


# options= keys every format may see: what the reader reads (docs/format.md §4.1), and who reads the frame.
GENERAL_OPTIONS = frozenset(("versions", "reader"))


def check_option_keys(options: Mapping[str, Any]) -> None:
    """A ValidationError naming an ``options=`` key no registered format reads (a typo would be ignored).

    With the built-in formats, ``{"nan_mode": "atom"}`` is refused, listing the valid keys; while a
    format that does not declare its ``option_keys`` is registered, every key passes.

    Examples
    --------
    >>> check_option_keys({"binaries": "str", "versions": {}})  # etf reads the first, every format the second
    """
    known = set(GENERAL_OPTIONS)
    for fmt in registry:
        if fmt.option_keys is None:
            return  # a format that does not say which keys it reads: any key may be its
        known |= fmt.option_keys
    for key in options:
        if key not in known:
            raise ValidationError(f"Unknown option {key!r}. Valid options are: {', '.join(sorted(known))}.")


def get(key: str | int) -> Format:
    """Return the format registered under a name or id.

    An unknown key loads the ``tether.formats`` entry-point plugins once before it is refused.

    Parameters
    ----------
    key : str or int
        The format's name, or its id as a frame header stores it.

    Returns
    -------
    Format

    Raises
    ------
    tether.UnsupportedFormatError
        Nothing is registered under ``key``; the message lists the names that are.

    Examples
    --------
    >>> get("ndarray") is get(3)
    True
    >>> get("parquet")
    Traceback (most recent call last):
    ...
    tether._errors.UnsupportedFormatError: Invalid format 'parquet'. Valid options are: arrow, ...
    """
    return registry.get(key)


def names() -> list[str]:
    """Names of the registered formats, sorted.

    Returns
    -------
    list of str

    Examples
    --------
    >>> {"arrow", "etf", "ndarray", "pickle", "raw"} <= set(names())
    True
    """
    return registry.names()


_auto: list = [-1, ()]  # registry version, formats in auto_priority order


def auto_order() -> tuple[Format, ...]:
    """The formats ``format="auto"`` asks, in ascending ``auto_priority`` (kept until a registration).

    Entry-point plugins (group ``tether.formats``) are loaded before the first answer, so a plugin's
    ``auto_pick`` takes part in the very first automatic choice.

    Examples
    --------
    >>> [f.name for f in auto_order()][-1]
    'pickle'
    """
    if not registry.entry_points_loaded:
        registry.load_entry_points()
    if _auto[0] != registry.version:
        ranked = [f for f in registry.by_id.values() if getattr(f, "auto_priority", None) is not None]
        _auto[:] = [registry.version, tuple(sorted(ranked, key=lambda f: (f.auto_priority, f.id)))]
    return _auto[1]


from . import arrow, etf, ndarray, pickle, raw, scalar, sparse  # noqa: E402  (registration on import)

for _mod in (raw, scalar, ndarray, etf, arrow, pickle, sparse):
    register(_mod.FORMAT)
del _mod


def _versions() -> dict[str, list[int]]:
    """``{name: [oldest_readable, schema_version]}`` of every registered format, as of now."""
    return {f.name: [f.oldest_readable, f.schema_version] for f in registry}


# tether.schemas.capabilities() reports what this process reads through this: schemas cannot import this
# package, whose arrow format imports schemas.
schemas.read_formats_from(_versions)
