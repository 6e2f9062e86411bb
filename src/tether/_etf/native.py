"""Glue to the C fast path, ``tether._speedups``, when it was built.

The C module reads its options from a ``CodecOptions`` object parsed once
per ``Options`` (and kept on it), not from positional arguments per call.
It builds tether's Python types through ``configure``, and raises
``c.Fallback`` whenever the Python codec must take the whole term instead.
"""

from __future__ import annotations

import secrets
import warnings
from typing import Any

from .._structs import to_python as struct_to_python
from .._types import Atom
from .decoder import improper
from .keys import MAX_SAME_HASH, freeze
from .options import Options

try:
    from .. import _speedups as c
except ImportError:  # no compiler at install time: the Python codec does everything
    c = None
# The calls this glue makes; the C module says which it answers (tether._speedups.API).
API = 5
if c is not None and getattr(c, "API", None) != API:
    # A build left over from an older tether (a failed optional rebuild keeps
    # the old file): its calls do not match this glue, so Python does the work.
    warnings.warn(
        "tether._speedups is out of date with this tether; rebuild it (pip install -e .). "
        "Using the pure-Python ETF codec meanwhile.",
        RuntimeWarning,
        stacklevel=2,
    )
    c = None


def options(opts: Options) -> Any:
    """The C extension's parsed copy of ``opts``, built on first use and kept on ``opts``."""
    native = opts.native
    if native is None:
        native = opts.native = _codec_options(opts, opts.limits.max_depth)
    return native


# The C encoder's first try goes no deeper than this: a term that contains itself would otherwise
# be written Limits.max_depth (4,000,000) levels deep before the limit stopped it. 100,000 keeps the
# deepest terms seen in practice (a list nested 100,000 deep from the BEAM, round-tripped) on one pass.
SHALLOW_DEPTH = 100_000


def shallow_options(opts: Options) -> Any:
    """``options(opts)`` for the C encoder's first try: at most :data:`SHALLOW_DEPTH` deep (kept on ``opts``)."""
    shallow = opts.shallow
    if shallow is None:
        depth = opts.limits.max_depth
        shallow = opts.shallow = options(opts) if depth <= SHALLOW_DEPTH else _codec_options(opts, SHALLOW_DEPTH)
    return shallow


def _codec_options(opts: Options, max_depth: int) -> Any:
    return c.CodecOptions(
        binaries=opts.binaries,
        charlists=opts.charlists,
        warn_charlists=opts.warn_charlists,
        atoms=opts.atoms,
        none_atom=opts.none_atom,
        max_depth=max_depth,
        max_atoms=opts.limits.max_atoms,
        max_terms=opts.limits.max_terms,
        struct_hook=struct_to_python if opts.structs else None,
        views=opts.views,
        minor_version=opts.minor_version,
        plain=opts.plain,
    )


def make_improper(items: list, tail: Any) -> Any:
    """Join list items and a non-NIL tail the way binary_to_term does (called by the C decoder)."""
    value = improper(items, tail)
    if value is None:
        raise c.Fallback("empty list with a non-list tail")  # Python reports it with its path
    return value


if c is not None:
    # The key-safety rule's bound is keys.MAX_SAME_HASH on both paths; the seed keys C's own tables.
    c.configure(Atom, make_improper, freeze, MAX_SAME_HASH, secrets.randbits(64))
