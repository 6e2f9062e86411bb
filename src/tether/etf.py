"""Erlang External Term Format: exactly what ``term_to_binary`` and ``binary_to_term`` use.

Type mapping (Python ⇄ BEAM), the defaults:

=====================  ==========================================================
BEAM                   Python
=====================  ==========================================================
integer (any size)     ``int``
float                  ``float`` (NaN/inf raise, or become atoms with ``nan="atom"``)
atom                   :class:`tether.Atom` (a ``str``); ``true``/``false`` → ``bool``;
                       ``nil`` → ``None`` (``none_atom=`` picks another, e.g. ``"undefined"``)
binary                 ``bytes`` (``binaries="str"`` gives ``str``); Python ``str`` encodes
                       as a UTF-8 binary, an Elixir string
bitstring              :class:`tether.BitBinary`
charlist / list        ``list`` of ints (``charlists="str"`` gives ``str``)
improper list          :class:`tether.ImproperList`
tuple                  ``tuple``
map                    ``dict``; list and map keys become :class:`tether.FrozenList` /
                       :class:`tether.FrozenMap` so they can be hashed
pid / port / ref       :class:`tether.Pid` / :class:`tether.Port` / :class:`tether.Reference`
Elixir structs         ``Date``/``Time``/``NaiveDateTime``/``DateTime`` → ``datetime``
                       types, ``Decimal`` → ``decimal.Decimal``, ``MapSet`` → ``set``,
                       ``Range`` → ``range``; others stay dicts with ``__struct__``;
                       :func:`register_struct` adds more (see ``docs/types.md``)
fun / export           :class:`tether.OpaqueTerm`, kept byte for byte
=====================  ==========================================================

Decoding is iterative at any depth and bounded by :class:`tether.Limits`.
"""

from __future__ import annotations

import zlib
from typing import Any

from . import _etf
from ._errors import ValidationError
from ._limits import Limits
from ._structs import register_struct, unregister_struct
from ._types import Atom, BitBinary, FrozenList, FrozenMap, ImproperList, OpaqueTerm, Pid, Port, Reference

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
    "decode",
    "encode",
    "register_struct",
    "unregister_struct",
]


def encode(
    term: Any,
    *,
    minor_version: int = 2,
    compressed: bool | int = False,
    none_atom: str | None = "nil",
    nan: str = "error",
    limits: Limits | None = None,
) -> bytes:
    """Encode ``term`` as ETF, starting with byte 131, as ``term_to_binary`` does.

    Parameters
    ----------
    term : Any
        The value; see the module docstring for the mapping.
    minor_version : {2, 1, 0}
        As ``term_to_binary``'s option: 2 writes UTF-8 atoms (OTP 26 default),
        1 writes latin-1 atoms where possible (OTP 25 default), 0 also writes
        floats as text.
    compressed : bool or int
        zlib-compress (tag 80) at level 6, or at the given level 0-9. As in
        OTP, the uncompressed form is kept when compression does not shrink it.
    none_atom : str or None
        The atom ``None`` encodes as; None refuses ``None``.
    nan : {"error", "atom"}
        Whether NaN and infinities raise or become ``nan``/``infinity``/``neg_infinity``.
    limits : Limits, optional
        Nesting bound while encoding.

    Examples
    --------
    >>> from tether import etf, Atom
    >>> etf.encode((Atom("ok"), 1))
    b'\\x83h\\x02w\\x02oka\\x01'
    >>> etf.decode(etf.encode({"a": [1, 2.5]}), binaries="str")
    {'a': [1, 2.5]}
    """
    opts = _etf.Options(minor_version=minor_version, none_atom=none_atom, nan=nan, limits=limits)
    data = _etf.encode(term, opts)
    if compressed is not False:
        level = 6 if compressed is True else compressed
        if type(level) is not int or not 0 <= level <= 9:
            raise ValidationError(f"Invalid compressed level {compressed!r}. Valid options are: True, False, 0-9.")
        body = memoryview(data)[1:]
        packed = zlib.compress(body, level)
        if len(packed) + 5 < len(body):
            data = b"\x83P" + len(body).to_bytes(4, "big") + packed
    return data


def decode(
    data: Any,
    *,
    binaries: str = "bytes",
    charlists: str = "list",
    atoms: str = "atom",
    none_atom: str | None = "nil",
    structs: bool = True,
    limits: Limits | None = None,
) -> Any:
    """Decode one ETF value, as ``binary_to_term`` does, iteratively and within limits.

    Parameters
    ----------
    data : bytes-like
        Starts with byte 131; may be compressed (tag 80).
    binaries : {"bytes", "str", "tagged"}
        ``"str"`` decodes binaries as UTF-8 text (invalid UTF-8 raises);
        ``"tagged"`` is the mode of frames Python writes (see ``tether.formats.etf``).
    charlists : {"list", "str"}
        Lists of bytes (STRING_EXT) as lists of ints or as ``str``.
    atoms : {"atom", "str"}
        :class:`tether.Atom` or plain ``str``.
    none_atom : str or None
        The atom decoded as ``None``; None keeps every atom an atom.
    structs : bool
        Map Elixir structs to Python types (``DateTime`` → ``datetime``, see
        ``docs/types.md`` and :func:`register_struct`); False keeps them dicts.
    limits : Limits, optional
        Depth, atom-count and size bounds; the process-wide limits by default.

    Raises
    ------
    tether.DecodeError
        On malformed input, with the path and offset at fault; its subclasses
        ``TruncatedError`` and ``LimitError`` for short input and exceeded limits.

    Examples
    --------
    >>> from tether import etf
    >>> etf.decode(bytes([131, 104, 2, 119, 2, 111, 107, 97, 7]))
    (Atom('ok'), 7)
    """
    opts = _etf.Options(
        binaries=binaries, charlists=charlists, atoms=atoms, none_atom=none_atom, structs=structs, limits=limits
    )
    return _etf.decode(data, opts)
