"""Registered user types swapped for their wire terms ahead of encoding, so the C encoder can take the term.

The C fast path writes exact builtin types only and hands anything else to
the Python encoder, which then writes the whole term: about 15 times slower.
A term that holds values of registered types (:mod:`tether.types`) is walked
once, here, and each such value replaced by its wire map (containers are
copied only along the paths that change); the C encoder then writes the
result. The bytes are the ones the Python encoder writes for the original.
"""

from __future__ import annotations

from typing import Any, Callable

from .. import types as usertypes
from .._types import Atom
from .encoder import Where

# Values the walk never looks into: they are written as themselves.
_LEAVES = frozenset((int, float, str, bytes, bool, type(None), bytearray, Atom))


def prepare(term: Any, convert: Callable[[Any, object], Any], max_depth: int) -> Any:
    """``term`` with every value of a registered type replaced by ``convert``'s answer; ``term`` itself if none.

    Returns ``term`` unchanged also when the term nests deeper than ``max_depth``
    (the encoder then reports it, with its path).

    Examples
    --------
    >>> from tether._structs import convert
    >>> term = [1, {"a": (2.5, "x")}]
    >>> prepare(term, convert, 100) is term
    True
    """
    if not usertypes.any_registered():
        return term
    try:
        return _walk(term, convert, [], max_depth)
    except (RecursionError, _TooDeep):
        return term


class _TooDeep(Exception):
    pass


def _walk(value: Any, convert: Callable[[Any, object], Any], where: list, depth: int) -> Any:
    t = type(value)
    if t in _LEAVES:
        return value
    if depth <= 0:
        raise _TooDeep
    if t is list or t is tuple:
        return _walk_items(value, t, convert, where, depth - 1)
    if t is dict:
        return _walk_dict(value, convert, where, depth - 1)
    if usertypes.lookup(value) is not None:
        wire = convert(value, Where(where, _render))
        return _walk(wire, convert, where, depth)
    return value


def _walk_items(value: Any, t: type, convert: Callable[[Any, object], Any], where: list, depth: int) -> Any:
    out = None
    leaves = _LEAVES
    for i, x in enumerate(value):
        if type(x) in leaves:
            continue
        where.append(i)
        y = _walk(x, convert, where, depth)
        where.pop()
        if y is not x:
            if out is None:
                out = list(value)
            out[i] = y
    if out is None:
        return value
    return out if t is list else tuple(out)


def _walk_dict(value: dict, convert: Callable[[Any, object], Any], where: list, depth: int) -> Any:
    out = None
    leaves = _LEAVES
    for k, x in value.items():
        if type(x) in leaves:
            continue
        where.append((k,))
        y = _walk(x, convert, where, depth)
        where.pop()
        if y is not x:
            if out is None:
                out = dict(value)
            out[k] = y
    return value if out is None else out


def _render(where: list) -> str:
    """The path of the value being converted, as the encoder writes paths: ``$.a[2].b``."""
    parts = ["$"]
    for step in where:
        if type(step) is tuple:
            key = step[0]
            parts.append(f".{key}" if isinstance(key, str) and key.isidentifier() else f"[{key!r}]")
        else:
            parts.append(f"[{step}]")
    return "".join(parts)
