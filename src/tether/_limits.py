"""Limits that bound what a decoder may allocate.

Every declared length in input is checked against the bytes actually present
and against these limits before anything is allocated.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ._errors import ValidationError

__all__ = ["Limits", "get_limits", "set_limits"]


@dataclass(frozen=True, slots=True)
class Limits:
    """Decoder bounds, applied to every frame and every ETF term.

    Parameters
    ----------
    max_frame_size : int
        Largest frame (header + metadata + stored payload) accepted.
    max_metadata_size : int
        Largest metadata block accepted.
    max_uncompressed_size : int
        Largest payload a compressed frame or an ETF tag-80 term may expand to.
    max_depth : int
        Deepest nesting of ETF containers. BEAM sends lists nested a million deep,
        so the default is generous; decoding is iterative at any depth.
    max_terms : int
        Most ETF terms in one value: the value itself, every element of a list or tuple, every key
        and every value of a map, and the tail of an improper list. A charlist (STRING_EXT) is a list
        of integers, one term per character, whatever it decodes to; an integer, float, atom, binary,
        pid, port, reference or fun is one term. ``[{"a": 1}, {"a": 2}]`` is 7 terms, a list of
        1,000,000 ints 1,000,001. Both decoders count a container's elements from its header, so a
        value over the limit is refused before they are read. Frame metadata counts too: every frame
        tether writes has at least 20 terms of it. The default, 2**31, refuses no value a Python
        process could hold in practice (its list alone would take 16 GiB).
    max_atoms : int
        Most distinct atoms in one ETF value.

    Each is an int from its floor to 2**63-1, the floor being the least value with which a frame
    could be read at all: ``max_frame_size`` 64 (the header), ``max_metadata_size`` 6 (an empty ETF
    map), ``max_depth`` 3 (the metadata's lineage entries), ``max_atoms`` 3 (``true``, ``false``,
    ``nil``), ``max_terms`` 1 (bare ETF; a frame's metadata alone is 20 terms); ``max_uncompressed_size`` may be 0 (then no compressed payload is
    read). Another value is a :class:`tether.ValidationError` naming the field and its range.

    Examples
    --------
    >>> import tether
    >>> tether.set_limits(max_depth=10_000).max_depth
    10000
    >>> _ = tether.set_limits(Limits())
    """

    max_frame_size: int = 1 << 40
    max_metadata_size: int = 16 << 20
    max_uncompressed_size: int = 4 << 30
    max_depth: int = 4_000_000
    max_terms: int = 1 << 31
    max_atoms: int = 1_048_576

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            _check(field.name, getattr(self, field.name))

    def replace(self, **changes: int) -> "Limits":
        """Return a copy with ``changes`` applied; an unknown name or a bad value is refused.

        Parameters
        ----------
        **changes : int
            New values by field name, each an int in the field's range (see :class:`Limits`).

        Returns
        -------
        Limits
            A new value; ``self`` is frozen and stays as it was.

        Examples
        --------
        >>> Limits().replace(max_depth=100).max_depth
        100
        >>> Limits().replace(max_dept=100)
        Traceback (most recent call last):
        ...
        tether._errors.ValidationError: Invalid limit 'max_dept'. Valid options are: max_atoms, max_depth, ...
        >>> Limits().replace(max_frame_size=0)
        Traceback (most recent call last):
        ...
        tether._errors.ValidationError: Limit 'max_frame_size' must be an int in 64..2**63-1 (a frame's header ...
        """
        fields = {f.name for f in dataclasses.fields(self)}
        for key, value in changes.items():
            if key not in fields:
                raise ValidationError(
                    f"Invalid limit {key!r}. Valid options are: {', '.join(sorted(fields))}."
                )
            _check(key, value)
        return dataclasses.replace(self, **changes)


# The decoders keep limits in C ssize_t fields: larger values could not be compared there.
_MAX = (1 << 63) - 1
# Below these, no frame at all could be read (docs/format.md §1-2): a limit that refuses everything is a
# typo, not a policy. max_uncompressed_size 0 is one (no compressed payload), so it has no floor.
FLOORS = {
    "max_frame_size": (64, "a frame's header alone is 64 bytes"),
    "max_metadata_size": (6, "a frame's metadata is an ETF map, 6 bytes when empty"),
    "max_depth": (3, "every frame's metadata nests a map in the lineage list in the metadata map"),
    # 1, not the 20 terms of a frame's metadata: tether.etf.decode reads bare ETF under the same limits.
    "max_terms": (1, "a value is at least one term"),
    "max_atoms": (3, "frame metadata may hold true, false and nil, which are atoms in ETF"),
}


def _check(name: str, value: object) -> None:
    floor, why = FLOORS.get(name, (0, ""))
    if not isinstance(value, int) or isinstance(value, bool) or not floor <= value <= _MAX:
        raise ValidationError(
            f"Limit {name!r} must be an int in {floor}..2**63-1{f' ({why})' if why else ''}, got {value!r}; "
            "2**63-1 means no practical limit."
        )


_current = Limits()


def get_limits() -> Limits:
    """Return the limits in force for this process.

    Returns
    -------
    Limits
        What :func:`set_limits` last set, or the defaults.

    Examples
    --------
    >>> get_limits().max_metadata_size == Limits().max_metadata_size
    True
    """
    return _current


def set_limits(limits: Limits | None = None, /, **changes: int) -> Limits:
    """Set the process-wide limits; return the new value.

    Pass a :class:`Limits`, keyword changes, or both.

    Parameters
    ----------
    limits : Limits, optional
        The base value; the limits in force when omitted.
    **changes : int
        Fields to change on top of the base, as for :meth:`Limits.replace`.

    Returns
    -------
    Limits
        The limits now in force, also what :func:`get_limits` returns.

    Examples
    --------
    Refuse frames over 1 MiB in this process, then restore the defaults:

    >>> set_limits(max_frame_size=1 << 20).max_frame_size
    1048576
    >>> get_limits().max_frame_size
    1048576
    >>> set_limits(Limits()) == Limits()
    True
    """
    global _current
    base = limits if limits is not None else _current
    if not isinstance(base, Limits):
        raise ValidationError(f"Expected a tether.Limits, got {type(base).__name__}.")
    _current = base.replace(**changes) if changes else base
    return _current


Limits.__module__ = "tether"
# doctest skips a class whose __module__ names another module; list it so its examples run.
__test__ = {"Limits": Limits}
