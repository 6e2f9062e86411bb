"""Python values that stand for BEAM terms with no native Python equivalent."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

__all__ = [
    "Atom",
    "BitBinary",
    "FrozenList",
    "FrozenMap",
    "ImproperList",
    "OpaqueTerm",
    "Pid",
    "Port",
    "Reference",
]


class Atom(str):
    """An Erlang atom. A ``str`` subclass, so ``Atom("ok") == "ok"``.

    Atoms encode as atoms, plain ``str`` encodes as a UTF-8 binary (an Elixir
    string).

    Examples
    --------
    >>> from tether import Atom
    >>> Atom("ok") == "ok", repr(Atom("ok"))
    (True, "Atom('ok')")
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Atom({str.__repr__(self)})"


# The BEAM has no NaN or infinities: Nx, and tether on both sides, write them as these atoms. One table,
# here beside Atom, for every place that reads them back as floats (the etf format, the worker, from_etf).
FLOAT_ATOMS = {Atom("nan"): float("nan"), Atom("infinity"): float("inf"), Atom("neg_infinity"): float("-inf")}


class _TailSlot:
    """An ImproperList's tail as slot 0 of something indexable: what floats_for_atoms' walk reads and writes."""

    __slots__ = ("owner",)

    def __init__(self, owner: "ImproperList"):
        self.owner = owner

    def __getitem__(self, _key: int) -> Any:
        return self.owner.tail

    def __setitem__(self, _key: int, value: Any) -> None:
        self.owner.tail = value


def floats_for_atoms(value: Any) -> Any:
    """``value`` with the atoms nan, infinity and neg_infinity (not map keys) as the floats they stand for.

    Lists and dicts are changed in place; tuples are rebuilt.

    Examples
    --------
    >>> floats_for_atoms([Atom("nan"), {"x": (Atom("infinity"), Atom("ok"))}])
    [nan, {'x': (inf, Atom('ok'))}]
    """
    if type(value) is Atom:
        return FLOAT_ATOMS.get(value, value)
    root = [value]
    stack: list[tuple[Any, Any, bool]] = [(root, 0, False)]
    while stack:
        parent, key, seal = stack.pop()
        item = parent[key]
        if seal:  # a tuple whose items were fixed in a list: a tuple again
            parent[key] = tuple(item)
            continue
        t = type(item)
        if t is Atom and item in FLOAT_ATOMS:
            parent[key] = FLOAT_ATOMS[item]
        elif t is list:
            stack.extend((item, i, False) for i in range(len(item)))
        elif t is dict:
            stack.extend((item, k, False) for k in item)
        elif t is tuple:
            parent[key] = list(item)
            stack.append((parent, key, True))
            stack.extend((parent[key], i, False) for i in range(len(item)))
        elif t is ImproperList:  # its items list in place, and its tail through a slot of its own
            stack.extend((item.items, i, False) for i in range(len(item.items)))
            stack.append((_TailSlot(item), 0, False))
    return root[0]


class ImproperList:
    """A list whose tail is not ``[]``, as ``[1, 2 | tail]`` in Erlang.

    Examples
    --------
    >>> from tether import ImproperList
    >>> ImproperList([1, 2], 3)
    ImproperList([1, 2], tail=3)
    """

    __slots__ = ("items", "tail")

    def __init__(self, items: Iterable[Any], tail: Any):
        self.items = list(items)
        self.tail = tail

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ImproperList) and self.items == other.items and self.tail == other.tail

    def __hash__(self) -> int:
        return hash((tuple(_freeze_shallow(i) for i in self.items), _freeze_shallow(self.tail)))

    def __repr__(self) -> str:
        return f"ImproperList({self.items!r}, tail={self.tail!r})"


class FrozenList(tuple):
    """A BEAM list used where Python needs a hashable value: a map key.

    Maps whose keys are lists or maps decode with those keys wrapped in
    :class:`FrozenList` / :class:`FrozenMap`, and encode back to lists and maps.
    A ``FrozenList`` never equals a plain ``tuple``, so ``{[1, 2] => a, {1, 2} => b}``
    keeps both keys.
    """

    # No __slots__: the hash is kept in the instance's dict. A decoded key is hashed as it is built, from
    # the inside out (tether._etf.keys.freeze), so a key nested thousands deep hashes without recursing.

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FrozenList) and tuple.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        h = self.__dict__.get("_hash")
        if h is None:
            h = self.__dict__["_hash"] = hash(("FrozenList", tuple(self)))
        return h

    def __reduce__(self) -> tuple:
        return FrozenList, (list(self),)  # not the kept hash: str hashes differ from process to process

    def __repr__(self) -> str:
        return f"FrozenList({list(self)!r})"


class FrozenMap(dict):
    """A BEAM map used as a map key (see :class:`FrozenList`). Read-only; its hash is kept, as FrozenList's."""

    def __hash__(self) -> int:  # type: ignore[override]
        h = self.__dict__.get("_hash")
        if h is None:
            h = self.__dict__["_hash"] = hash(("FrozenMap", frozenset(self.items())))
        return h

    def _readonly(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("FrozenMap is read-only")

    # Every way to change it, |= included: its hash is kept, and a changed map would keep the old one.
    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = __ior__ = _readonly  # type: ignore

    def __reduce__(self) -> tuple:
        return FrozenMap, (dict(self),)  # not the kept hash, as FrozenList's

    def __repr__(self) -> str:
        return f"FrozenMap({dict(self)!r})"


def _freeze_shallow(value: Any) -> Any:
    if isinstance(value, list):
        return FrozenList(value)
    if isinstance(value, dict) and not isinstance(value, FrozenMap):
        return FrozenMap(value)
    return value


@dataclass(frozen=True, slots=True)
class BitBinary:
    """A bitstring whose length is not a whole number of bytes.

    ``data`` holds the bytes; only the high ``bits`` bits of the last byte count, and the rest are cleared, as
    the BEAM clears them: two equal bitstrings compare and hash equal whatever padding they were built with.

    Examples
    --------
    >>> BitBinary(bytes([6]), 4) == BitBinary(bytes([0]), 4)
    True
    """

    data: bytes
    bits: int

    def __post_init__(self) -> None:
        data, bits = self.data, self.bits
        if type(bits) is not int and type(bits) is not bool and hasattr(bits, "__index__"):  # np.int64(4)
            object.__setattr__(self, "bits", bits.__index__())
            bits = self.bits
        if type(bits) is int and 1 <= bits < 8 and len(data) and data[-1] & (0xFF >> bits):
            object.__setattr__(self, "data", bytes(data[:-1]) + bytes((data[-1] & (0xFF << (8 - bits)) & 0xFF,)))


@dataclass(frozen=True, slots=True)
class Pid:
    """An Erlang process identifier. ``creation`` keeps its width: ``tag`` is 88 (NEW_PID) or 103 (PID)."""

    node: Atom
    id: int
    serial: int
    creation: int
    tag: int = 88


@dataclass(frozen=True, slots=True)
class Port:
    """An Erlang port. ``tag`` is 120 (V4_PORT), 89 (NEW_PORT) or 102 (PORT)."""

    node: Atom
    id: int
    creation: int
    tag: int = 89


@dataclass(frozen=True, slots=True)
class Reference:
    """An Erlang reference. ``tag`` is 90 (NEWER_REFERENCE), 114 (NEW_REFERENCE) or 101 (REFERENCE)."""

    node: Atom
    creation: int
    ids: tuple[int, ...]
    tag: int = 90


@dataclass(frozen=True, slots=True)
class OpaqueTerm:
    """A term tether keeps as its exact ETF bytes: funs (NEW_FUN, EXPORT).

    ``data`` starts at the tag byte (without the 131 version byte) and is
    written back unchanged, so the term round-trips byte for byte.
    """

    tag: int
    data: bytes
