"""The format registry: what ``format=`` names and frame headers' ids resolve to, and the order
``format="auto"`` asks formats in.

Its own module, below the encoder, which looks formats up; :mod:`tether.formats` re-exports all of it.
"""

from __future__ import annotations

from typing import Mapping

from .._errors import ValidationError
from .._registry import Registry
from ._base import Format, Migration


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
    if type(fmt.oldest_readable) is not int or not 0 <= fmt.oldest_readable <= max(fmt.schema_version, 1):
        raise ValidationError(f"{where}: oldest_readable must be an int from 0 to schema_version "
                              f"({fmt.schema_version}), got {fmt.oldest_readable!r}.")
    _check_migrations(fmt, where)


def _check_migrations(fmt: Format, where: str) -> None:
    """``migrations`` maps schema versions (ints) to :class:`Migration` steps: a lambda or a dict there would
    fail only when an old frame is read."""
    steps = fmt.migrations
    if not isinstance(steps, Mapping):
        raise ValidationError(f"{where}: migrations must be a dict of schema version -> tether.formats.Migration, "
                              f"got {type(steps).__name__}.")
    for version, step in steps.items():
        if type(version) is not int or not isinstance(step, Migration):
            raise ValidationError(
                f"{where}: migrations[{version!r}] must be a tether.formats.Migration under an int schema version "
                f"(the version it upgrades from), got a {type(step).__name__}: "
                "Migration(type_info=..., payload=...).")


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
    version, by_id = registry.version, registry.by_id  # in this order: a registration between them recomputes
    if _auto[0] != version:
        ranked = [f for f in by_id.values() if getattr(f, "auto_priority", None) is not None]
        _auto[:] = [version, tuple(sorted(ranked, key=lambda f: (f.auto_priority, f.id)))]
    return _auto[1]
