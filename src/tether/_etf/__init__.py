"""tether's Erlang External Term Format codec: iterative, complete, bounded.

The package, by job:

* ``tags``: every ETF tag by its OTP name, once.
* ``options``: ``Options``, validated once and shared by every codec.
* ``decoder`` / ``encoder``: the reference codec in Python, which owns every
  tag, every typed error and its path.
* ``keys``: the key-safety rule both decoders apply to map keys (hashable,
  and no more than ``MAX_SAME_HASH`` keys of one map with one hash).
* ``native``: glue to the C fast path (``tether._speedups``), which takes
  the bulk-data tags and falls back to Python for anything else; the two are
  tested against each other and against a real ``erl``.
* ``columns``: a list of maps decoded column by column, for Arrow.

This module holds the entry points the rest of tether calls.
"""

from __future__ import annotations

import struct
from typing import Any, Sequence

from .._buffers import as_view
from .._errors import DecodeError, TruncatedError
from .._structs import convert as struct_convert
from . import decoder, encoder, native
from .columns import Columns, decode_columns, decode_typed_columns, uncompressed
from .decoder import CHARLIST_SINK, inflate, readonly_view
from .prepare import prepare
from .encoder import check_finite
from .native import c as _c, options as _native_options, shallow_options as _shallow_options
from .options import ATOM_MODES, BINARY_MODES, CHARLIST_MODES, NAN_MODES, Options
from .tags import BINARY_EXT, BIT_BINARY_EXT, COMPRESSED, DIST_FRAG_HEADER, DIST_HEADER, DIST_HEADER_H, VERSION_MAGIC

__all__ = [
    "ATOM_MODES", "BINARY", "BINARY_MODES", "BIT_BINARY", "CHARLIST_MODES", "CHARLIST_SINK", "COMPRESSED", "Columns",
    "NAN_MODES", "Options", "VERSION", "decode", "decode_columns", "decode_term", "decode_typed_columns", "encode",
    "uncompressed",
]

VERSION = VERSION_MAGIC
BINARY = BINARY_EXT
BIT_BINARY = BIT_BINARY_EXT
# Distribution headers that can follow the version byte; DIST_FRAG_CONT is not
# here, as its 70 is also NEW_FLOAT_EXT, a valid term.
_DIST_HEADERS = (DIST_HEADER, DIST_FRAG_HEADER, DIST_HEADER_H)
# When the C encoder's first try fails, a term is looked through this deep for a container that contains
# itself before anything else walks it; a term deeper than this is tried in C at its full depth first.
PROBE_DEPTH = 10_000


def decode(data: Any, opts: Options | None = None, *, bytearrays: Sequence[int] | None = None,
           where: str | None = None) -> Any:
    """Decode one complete ETF value (starting with byte 131).

    Parameters
    ----------
    data : bytes-like
        Exactly one ``term_to_binary`` result, compressed (tag 80) or not.
    opts : Options, optional
        How binaries, charlists and atoms read, and the limits (default: ``Options()``).
    bytearrays : sequence of int, optional
        Under ``binaries="tagged"``: runs ``[start, count, ...]`` (rising, apart) of the tagged binaries,
        counted from 0 as they are read, to give back as ``bytearray`` (what :func:`encode` found).
    where : str, optional
        Where ``bytearrays`` came from, e.g. ``"frame 0: type.bytearrays"``: the error for runs that name
        more tagged binaries than the value holds then names it, and says how to read the frame anyway.

    Returns
    -------
    Any

    Raises
    ------
    tether.DecodeError
        Not an ETF value, a distribution header, bytes after the value, or ``bytearrays`` runs that
        name more tagged binaries than it holds; ``TruncatedError`` when the input ends early,
        ``LimitError`` over a limit of ``opts.limits`` (both subclasses).

    Examples
    --------
    ``term_to_binary({ok, 1})`` as Erlang writes it:

    >>> decode(bytes([131, 104, 2, 119, 2, 111, 107, 97, 1]))
    (Atom('ok'), 1)
    >>> decode(bytes([131, 97, 1, 0]))
    Traceback (most recent call last):
    ...
    tether._errors.DecodeError: 1 trailing bytes after the ETF value at offset 3: pass exactly one ...
    """
    opts = opts or Options()
    t = type(data)
    if bytearrays:  # the Python decoder counts the binaries
        return _decode_counted(data, opts, bytearrays, where)
    if _c is not None and (t is bytes or t is memoryview):
        # The usual input in one call: exactly one uncompressed term in a flat buffer. The C side
        # declines anything else (Fallback), and the steps below check it and name what is wrong.
        try:
            views = opts.views and len(data) - 1 >= opts.views
            native = opts.native or _native_options(opts)
            return _c.decode_whole(data, native, readonly_view(data) if views else None)
        except _c.Fallback:
            pass
    return _decode_counted(data, opts, None)


def _decode_counted(data: Any, opts: Options, bytearrays: Sequence[int] | None, where: str | None = None) -> Any:
    """:func:`decode` past its C attempt; with ``bytearrays``, in Python throughout."""
    # The C decoder reads any buffer in place; only the Python fallback needs bytes.
    flat = type(data) is memoryview and data.c_contiguous and data.ndim == 1 and data.format == "B"
    buf = data if flat or isinstance(data, bytes) else as_view(data)  # as_view: typed errors for odd buffers
    if not len(buf):
        raise TruncatedError(f"Empty input: an ETF value starts with byte {VERSION_MAGIC}.")
    if buf[0] != VERSION_MAGIC:
        raise DecodeError(
            f"Not an ETF value: first byte is {buf[0]}, expected {VERSION_MAGIC} (as written by term_to_binary)."
        )
    if len(buf) < 2:
        raise TruncatedError("ETF value ends after the version byte.")
    tag = buf[1]
    if tag == COMPRESSED:
        buf = inflate(buf, 2, opts.limits)
        value, pos = decode_term(buf, 0, opts, bytearrays, where=where)
    elif tag in _DIST_HEADERS:
        raise DecodeError(
            "This is a distribution header (tag %d), not a term: strip the distribution "
            "protocol framing and pass the term that follows it." % tag
        )
    else:
        value, pos = decode_term(buf, 1, opts, bytearrays, where=where)
    end = len(buf)
    if pos != end:
        raise DecodeError(
            f"{end - pos} trailing bytes after the ETF value at offset {pos}: "
            "pass exactly one term_to_binary result."
        )
    return value


def decode_term(buf: Any, pos: int, opts: Options, bytearrays: Sequence[int] | None = None, *,
                where: str | None = None) -> tuple[Any, int]:
    """Decode the term whose tag is at ``buf[pos]``; return it and the end offset.

    The C fast path runs first; on anything it does not handle (rare tags,
    malformed input, limits) the Python decoder takes the whole term, so
    errors always carry the Python decoder's path and message.

    Parameters
    ----------
    buf : bytes-like
    pos : int
        Offset of the term's tag (after the version byte, for a whole value).
    opts : Options
    bytearrays : sequence of int, optional
        As for :func:`decode`.
    where : str, optional
        As for :func:`decode`.

    Returns
    -------
    tuple of (Any, int)
        The term and the offset just past it; bytes after it are left alone.

    Examples
    --------
    A term inside a larger buffer:

    >>> buf = b"head" + encode([1, 2])[1:] + b"tail"
    >>> decode_term(buf, 4, Options())
    ([1, 2], 9)
    """
    if _c is not None and not bytearrays:
        try:
            # Only a buffer that can hold a binary of `views` bytes needs the view to slice them from.
            views = opts.views and len(buf) - pos >= opts.views
            return _c.decode(buf, pos, opts.native or _native_options(opts), readonly_view(buf) if views else None)
        except _c.Fallback:
            pass
    try:
        return decoder.decode_term(buf if isinstance(buf, bytes) else bytes(buf), pos, opts, buf, bytearrays, where)
    except (IndexError, struct.error) as exc:  # pragma: no cover - every read is bounds-checked
        raise TruncatedError(f"ETF input ends early: {exc}.") from exc


def encode(term: Any, opts: Options | None = None, *, bytes_tag: int = BINARY_EXT, convert: Any = None,
           bytearrays: list[int] | None = None) -> bytes:
    """Encode ``term`` as one ETF value starting with byte 131.

    ``bytes_tag`` selects how ``bytes`` are written (BIT_BINARY marks them in
    tether's tagged mode); ``convert`` maps otherwise unknown objects to terms.
    In tagged mode, ``bytearrays`` gets the ordinals of the bytearrays among
    the tagged binaries, for :func:`decode`'s ``bytearrays``.

    Parameters
    ----------
    term : Any
    opts : Options, optional
        Default: ``Options()``.
    bytes_tag : int, default BINARY
        ``BINARY`` or ``BIT_BINARY``.
    convert : callable, optional
        Called with an object of no known type; returns the term to write instead.

    Returns
    -------
    bytes

    Raises
    ------
    tether.EncodeError
        A value with no ETF form; the message names its path. A term that contains itself
        (``l.append(l)``) is one: it is refused where the cycle closes, without writing it out
        to ``Limits.max_depth`` first.

    Examples
    --------
    >>> from tether import Atom
    >>> list(encode((Atom("ok"), 1)))
    [131, 104, 2, 119, 2, 111, 107, 97, 1]

    In tagged mode ``str`` and ``bytes`` both survive the round trip:

    >>> data = encode(["text", b"raw"], bytes_tag=BIT_BINARY)
    >>> decode(data), decode(data, Options(binaries="tagged"))
    ([b'text', b'raw'], ['text', b'raw'])

    and so do bytearrays, given their places:

    >>> found = []
    >>> data = encode([b"a", bytearray(b"b")], bytes_tag=BIT_BINARY, bytearrays=found)
    >>> found, decode(data, Options(binaries="tagged"), bytearrays=[1, 1])
    ([1], [b'a', bytearray(b'b')])
    """
    opts = opts or Options()
    if _c is not None and opts.nan == "error":
        # Lists mutated while encoding are the caller's bug; the C path reads
        # containers in place, and anything it does not know goes to Python.
        # The first try stops at SHALLOW_DEPTH: a term that contains itself must not be written
        # 4,000,000 levels deep before anything looks for the cycle.
        tagged = bytes_tag == BIT_BINARY_EXT
        try:
            return _c.encode(term, opts.shallow or _shallow_options(opts), tagged)
        except _c.Fallback:
            pass
        native = opts.native or _native_options(opts)
        # Cycles are short in practice: looking this deep finds them at once, or says the term is deep.
        if check_finite(term, opts.limits.max_depth, give_up=PROBE_DEPTH) < 0:
            if native is not opts.shallow:
                try:  # deep: the whole depth Limits allow, in C
                    return _c.encode(term, native, tagged)
                except _c.Fallback:
                    pass
            check_finite(term, opts.limits.max_depth)  # before the slower paths walk it
        if opts.structs:  # values of registered types: their wire terms, then C again
            prepared = prepare(term, convert or struct_convert, opts.limits.max_depth)
            if prepared is not term:
                try:
                    return _c.encode(prepared, native, tagged)
                except _c.Fallback:
                    term = prepared
    else:
        check_finite(term, opts.limits.max_depth)
    if convert is None and opts.structs:
        convert = struct_convert
    out = bytearray((VERSION_MAGIC,))
    encoder.encode_into(out, term, opts, bytes_tag, convert, bytearrays)
    return bytes(out)
