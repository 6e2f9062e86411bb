"""The codec registry: what ``compression=`` names and frame headers' ids resolve to.

Its own module, below the policy and the codecs' application, which look codecs up at call time;
:mod:`tether.compression` re-exports all of it.
"""

from __future__ import annotations

from .._errors import ValidationError
from .._registry import Registry
from ._base import Compressor


def _check(codec: object) -> None:
    """A compressor's own rules, checked at registration so that a bad plugin fails there, not in a later dumps."""
    if not isinstance(codec, Compressor):
        raise ValidationError(
            f"A compressor must be an instance of tether.compression.Compressor (subclass it), "
            f"got {type(codec).__name__}."
        )
    if not isinstance(codec.levels, range) or not codec.levels:
        raise ValidationError(f"Compressor {codec.name!r}: levels must be a non-empty range, got {codec.levels!r}.")
    if type(codec.default_level) is not int or codec.default_level not in codec.levels:
        raise ValidationError(
            f"Compressor {codec.name!r}: default_level {codec.default_level!r} is not one of its levels "
            f"{codec.levels.start}..{codec.levels.stop - 1}."
        )


# Ids 0-127 are tether's (docs/format.md): they can be replaced but not unregistered.
registry: Registry[Compressor] = Registry("compression", "tether.compressors", 0xFF, check=_check, own_below=128)


def register(codec: Compressor | type[Compressor]) -> Compressor:
    """Register a compressor instance (or class); the last registration under an id wins.

    Parameters
    ----------
    codec : Compressor or type of Compressor
        Needs a non-empty ``name`` and an ``id`` in 0..255 (ids 0-127 are tether's), ``levels`` a
        range holding ``default_level``; a name already registered under another id is refused.

    Returns
    -------
    Compressor
        The registered instance.

    Examples
    --------
    gzip at level 1 by default, under a name of its own:

    >>> import tether
    >>> class FastGzip(type(get("gzip"))):
    ...     id, name, default_level = 200, "doc-gzip1", 1
    >>> register(FastGzip)
    <compressor doc-gzip1 id=200>
    >>> frame = tether.dumps(b"ab" * 1000, compression="doc-gzip1")
    >>> tether.inspect(frame).compression, tether.loads(frame) == b"ab" * 1000
    ('doc-gzip1', True)
    >>> unregister("doc-gzip1")
    <compressor doc-gzip1 id=200>
    """
    return registry.register(registry.instance(codec))


def unregister(key: str | int) -> Compressor:
    """Remove a registered compressor (a plugin's, or one of yours); tether's own (ids 0-127) stay.

    Parameters
    ----------
    key : str or int
        The compressor's name or id.

    Returns
    -------
    Compressor
        The compressor removed. Frames compressed with it then fail to read, naming the valid
        compressions, until it is registered again.

    Raises
    ------
    tether.UnsupportedFormatError
        Nothing is registered under ``key``.
    tether.ValidationError
        ``key`` names one of tether's own compressors.

    Examples
    --------
    >>> class Gzip9(type(get("gzip"))):
    ...     id, name, default_level = 201, "doc-gzip9", 9
    >>> _ = register(Gzip9)
    >>> unregister(201).name, "doc-gzip9" in names()
    ('doc-gzip9', False)
    """
    return registry.unregister(key)


def get(key: str | int) -> Compressor:
    """Return the compressor registered under a name or id.

    Parameters
    ----------
    key : str or int
        The compressor's name, or its id as a frame header stores it.

    Returns
    -------
    Compressor

    Raises
    ------
    tether.UnsupportedFormatError
        Nothing is registered under ``key``; the message lists the names that are.

    Examples
    --------
    >>> get("zstd")
    <compressor zstd id=2>
    >>> get("zstd") is get(get("zstd").id)
    True
    """
    return registry.get(key)


def names() -> list[str]:
    """Names of the registered compressors, sorted.

    Returns
    -------
    list of str

    Examples
    --------
    >>> {"gzip", "lz4", "none", "zstd"} <= set(names())
    True
    """
    return registry.names()
