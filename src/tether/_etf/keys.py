"""The key-safety rule: what a decoded map key must be, in both ETF decoders.

A peer chooses the keys of every map it sends, and Python keeps a map in a
``dict``. Two things can go wrong, and this rule answers both, for the
Python decoder here and for the C decoder (``_speedups_src/keys.c``, given
:data:`MAX_SAME_HASH` and the seed by ``tether._etf.native``):

1. **A key must be hashable.** Lists, maps and sets inside a key, at any
   depth, become :class:`tether.FrozenList`, :class:`tether.FrozenMap` and
   ``frozenset`` (:func:`freeze`). A key that still cannot be hashed (a
   registered struct whose Python type is unhashable) is a ``DecodeError``
   naming the key's path.

2. **No hash flooding.** Python's hash of an int is the int modulo
   2**61 - 1, and floats, Decimals, tuples and frozen containers hash from
   those, so a peer can send thousands of distinct keys with one hash
   (``k * (2**61 - 1)``): each insert then compares against every earlier
   key, and a 300 KB map takes seconds. ``str``, ``bytes`` and atoms hash
   with the interpreter's per-process random key (SipHash), and ints
   below 2**60 hash to themselves, so they cannot collide; every other key
   is *counted*: at most :data:`MAX_SAME_HASH` keys of one map may share a
   hash, and the next one is a ``LimitError``. Distinct hashes are spread
   by Python's probing, so with this bound a decode is linear in its
   input. Real data never has more than a handful of equal hashes in one
   map.

msgpack answers the same attack with ``strict_map_key`` (only str and
bytes keys); Elixir maps keyed by integers, tuples and dates are common, so
tether keeps every key type and bounds the collisions instead.
"""

from __future__ import annotations

from typing import Any

from .._errors import DecodeError
from .._types import Atom, FrozenList, FrozenMap, ImproperList

# The most keys of one map that may share one Python hash value.
MAX_SAME_HASH = 32
# Ints inside this bound hash to themselves: distinct ones never collide (bar -1 and -2).
SMALL_INT = 1 << 60
# Key types whose hash the peer cannot choose: randomized per process, or the value itself.
TRUSTED = frozenset({str, Atom, bytes, bool, type(None)})


def trusted(key: Any) -> bool:
    """Whether ``key``'s hash is out of the peer's hands (the keys the rule does not count).

    Examples
    --------
    >>> trusted(Atom("id")), trusted(2**40), trusted(2**61 - 1), trusted((1, 2))
    (True, True, False, False)
    """
    t = type(key)
    return t in TRUSTED or (t is int and -SMALL_INT < key < SMALL_INT)


def count(counts: dict[int, int], key_hash: int) -> bool:
    """Count one more key with ``key_hash`` in a map's ``counts``; False once there are too many.

    Examples
    --------
    >>> counts = {}
    >>> all(count(counts, 0) for _ in range(MAX_SAME_HASH)), count(counts, 0)
    (True, False)
    """
    n = counts.get(key_hash, 0) + 1
    counts[key_hash] = n
    return n <= MAX_SAME_HASH


# Map keys nest at most this deep: hashing a tuple is recursive in CPython, and a key a million levels
# deep crashed the interpreter (from about 200,000 here; the 8 MiB main thread stack).
MAX_KEY_DEPTH = 10_000


def tuple_depth_ok(key: tuple) -> bool:
    """Whether ``key`` nests tuples at most :data:`MAX_KEY_DEPTH` deep (checked before it is hashed).

    Examples
    --------
    >>> tuple_depth_ok((1, (2, (3,)))), tuple_depth_ok(((),) * 3)
    (True, True)
    """
    stack = [(key, 1)]
    while stack:
        node, depth = stack.pop()
        for item in node:
            if isinstance(item, tuple):
                if depth + 1 > MAX_KEY_DEPTH:
                    return False
                stack.append((item, depth + 1))
    return True


def _hashable_leaf(value: Any) -> Any:
    """A large binary decoded as a view of a writable buffer (a bytearray frame, the worker's pipe buffer) hashes
    as that buffer, which cannot be hashed: as a key, it is its bytes. A set is its frozenset: its members are
    hashable already (frozen when they went in), so they are not walked again, which made nested sets cost
    the square of their depth."""
    if type(value) is memoryview:
        return value.tobytes()
    return frozenset(value) if type(value) is set else value


def freeze(value: Any) -> Any:
    """A hashable stand-in for a decoded map key: lists, maps and sets inside it become frozen, at any depth.

    Iterative, as keys may nest as deeply as values. Values it does not know
    are kept as they are (the caller hashes the result and reports one that
    still cannot be hashed).

    Examples
    --------
    >>> freeze([{1, 2}, {"a": [3]}])
    FrozenList([frozenset({1, 2}), FrozenMap({'a': FrozenList([3])})])
    """
    if _children(value) is None:
        return _hashable_leaf(value)
    # Post-order rebuild with an explicit stack; each level is hashed as it is built, its parts first.
    work: list[tuple[Any, bool, int]] = [(value, False, 1)]
    results: list[Any] = []
    while work:
        node, done, depth = work.pop()
        children = _children(node)
        if children is None:
            results.append(_hashable_leaf(node))
            continue
        if not done:
            if depth > MAX_KEY_DEPTH:
                raise DecodeError(f"A map key (or set member) nests deeper than {MAX_KEY_DEPTH} levels: Python "
                                  "cannot hash a key that deep. Send such data as a value, not a key.")
            work.append((node, True, depth))
            work.extend((c, False, depth + 1) for c in reversed(children))
            continue
        n = len(children)
        vals = results[len(results) - n :] if n else []
        del results[len(results) - n :]
        results.append(_hashed(_rebuild(node, vals)))
    return results[0]


def _hashed(key: Any) -> Any:
    """``key``, hashed now if it keeps its hash (a FrozenList or FrozenMap), so that its parent's hash does not
    recurse; a tuple keeps none, and hashing each level of a chain of them would cost the square of its depth."""
    if isinstance(key, (FrozenList, FrozenMap)):
        try:
            hash(key)
        except TypeError:  # a part that cannot be hashed: the caller reports it, with the key's place
            pass
    return key


def _rebuild(node: Any, vals: list) -> Any:
    if isinstance(node, dict):
        return FrozenMap(zip(vals[0::2], vals[1::2]))
    if isinstance(node, (set, frozenset)):
        return frozenset(vals)
    if isinstance(node, tuple):
        return tuple(vals)
    if isinstance(node, list):
        return FrozenList(vals)
    return ImproperList(vals[:-1], vals[-1])


def _children(node: Any) -> list | None:
    """The values ``freeze`` rebuilds ``node`` from, or None when it stays as it is."""
    if isinstance(node, (FrozenMap, FrozenList, frozenset)) or type(node) is set:
        return None  # frozen all the way down: built by freeze, or a set's members
    if isinstance(node, dict):
        return [c for kv in node.items() for c in kv]
    if isinstance(node, (list, tuple, set)):
        return list(node)
    if isinstance(node, ImproperList):
        return [*node.items, node.tail]
    return None
