"""A list of maps decoded column by column, for ``tether.arrow.from_etf``.

Both decoders here run in C and only take the clean case; they return None
whenever the term is something else (or the C extension is not built), and
the caller then decodes the value with ``tether._etf.decode``, which reports
bad input with its typed errors.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .decoder import inflate
from .native import c, options
from .options import Options
from .tags import COMPRESSED, VERSION_MAGIC


class Columns(NamedTuple):
    """The columns of a list of maps, each key once, in the order keys were first seen.

    From ``decode_columns`` each column is a list of Python values (None
    where a row lacks the key). From ``decode_typed_columns`` each is a spec
    tuple of Arrow-layout buffers, ``(kind, length, null_count, validity,
    ...)``: ``kind`` is one of null, int64, float64, bool, atom, binary, list
    or tuple, and the fields after ``validity`` (None when nothing is null)
    are the data buffer for int64/float64/bool; codes and categories for
    atom; offsets and data for binary; offsets and the child spec for list;
    and the list of field specs for tuple.
    """

    keys: list
    columns: list
    rows: int


def uncompressed(data: Any, opts: Options) -> Any:
    """``data`` with a compressed (tag 80) body expanded into a plain ETF value; anything else as it is."""
    if len(data) > 1 and data[0] == VERSION_MAGIC and data[1] == COMPRESSED:
        return inflate(data, 2, opts.limits, prefix=bytes((VERSION_MAGIC,)))
    return data


def decode_columns(data: Any, opts: Options) -> Columns | None:
    """The columns of the list of maps in ``data`` as Python lists, or None when the fast path cannot."""
    return None if c is None else _run(c.decode_columns, data, opts)


def decode_typed_columns(data: Any, opts: Options) -> Columns | None:
    """The columns of the list of maps in ``data`` as Arrow buffers, or None when one is not of a clean kind.

    Reads only ``none_atom`` and the limits from ``opts``: binaries come out
    as bytes and atoms as dictionary codes whatever the other options say.
    """
    return None if c is None else _run(c.decode_typed, data, opts)


def _run(decoder: Any, data: Any, opts: Options) -> Columns | None:
    buf = uncompressed(data, opts)
    if len(buf) < 2 or buf[0] != VERSION_MAGIC:
        return None
    try:
        keys, columns, rows, end = decoder(buf, 1, opts.native or options(opts))
    except c.Fallback:
        return None
    return Columns(keys, columns, rows) if end == len(buf) else None
