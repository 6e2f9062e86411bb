"""The ETF codec's options, validated once and shared by both decoders and encoders."""

from __future__ import annotations

from typing import Any

from .._errors import ValidationError
from .._limits import Limits, get_limits

BINARY_MODES = ("bytes", "str", "tagged")
CHARLIST_MODES = ("list", "str")
ATOM_MODES = ("atom", "str")
# "marked": as "atom", without the warning: the frame says the atoms stand for floats (formats/etf.py).
NAN_MODES = ("error", "atom", "marked")
MINOR_VERSIONS = (0, 1, 2)


class Options:
    """Resolved decode/encode options, validated once per call.

    ``native`` holds the C fast path's parsed copy of these options, built on
    first use (see ``tether._etf.native``): options are never changed after
    construction, so one copy serves every call.
    """

    __slots__ = (
        "binaries", "charlists", "atoms", "none_atom", "nan", "minor_version", "limits", "structs",
        "warn_charlists", "views", "plain", "native", "shallow",
    )

    def __init__(
        self,
        *,
        binaries: str = "bytes",
        charlists: str = "list",
        atoms: str = "atom",
        none_atom: str | None = "nil",
        nan: str = "error",
        minor_version: int = 2,
        limits: Limits | None = None,
        structs: bool = True,
        warn_charlists: bool = True,
        views: int = 0,
        plain: bool = False,
    ):
        for name, value, modes in (
            ("binaries", binaries, BINARY_MODES),
            ("charlists", charlists, CHARLIST_MODES),
            ("atoms", atoms, ATOM_MODES),
            ("nan", nan, NAN_MODES),
        ):
            if value not in modes:
                raise ValidationError(
                    f"Invalid {name} {value!r}. Valid options are: {', '.join(modes)}."
                )
        # type() and not ==: 2.0 and True compare equal to versions but are not ints the C codec takes.
        if type(minor_version) is not int or minor_version not in MINOR_VERSIONS:
            raise ValidationError(f"Invalid minor_version {minor_version!r}. Valid options are: 0, 1, 2.")
        if none_atom is not None and not isinstance(none_atom, str):
            raise ValidationError(f"none_atom must be an atom name or None, got {none_atom!r}.")
        if limits is not None and not isinstance(limits, Limits):
            raise ValidationError(
                f"limits must be a tether.Limits, got {type(limits).__name__}; "
                "build one with tether.Limits(...) or tether.get_limits().replace(...)."
            )
        for name, flag in (("structs", structs), ("warn_charlists", warn_charlists), ("plain", plain)):
            if type(flag) is not bool:
                raise ValidationError(f"{name} must be True or False, got {flag!r}.")
        if type(views) is not int or views < 0:
            raise ValidationError(
                f"views must be a non-negative int (the smallest binary decoded as a view; 0: never), got {views!r}."
            )
        self.binaries = binaries
        self.charlists = charlists
        self.atoms = atoms
        self.none_atom = none_atom
        self.nan = nan
        self.minor_version = minor_version
        self.limits = limits if limits is not None else get_limits()
        self.structs = structs
        self.warn_charlists = warn_charlists
        # Binaries of at least this many bytes decode as read-only views of the input (0: never).
        self.views = views
        # Encoding only: refuse atoms (but true, false and None's atom) and the terms that carry one (pids,
        # ports, references, opaque terms), for data every node must decode with [safe]: frame metadata.
        self.plain = plain
        self.native: Any = None
        # The C encoder's first try, which stops at native.SHALLOW_DEPTH (see tether._etf.encode).
        self.shallow: Any = None
