"""The bounded loop every decompressor runs: output grows with what a stream produces, never with what it declares.

The zlib codecs of the compressors (gzip) and the ETF decoder (compressed
terms, tag 80) both inflate through it, so it lives here, below both, rather
than in :mod:`tether.compression`: the compression package imports the frame
layer, which imports the ETF codec. It depends on nothing of tether but the
errors and the limits. :mod:`tether.compression` re-exports these names.
"""

from __future__ import annotations

import zlib
from typing import Any, Callable

from ._errors import DecodeError, LimitError, TetherError, foreign
from ._limits import Limits

# A decompressor produces at most this many bytes per step: output memory
# grows with what the stream really produces, never with what it declares.
STEP = 4 << 20


def check_declared(declared: int, limits: Limits, what: str) -> None:
    """Refuse a declared uncompressed size over ``Limits.max_uncompressed_size``, before any work.

    For tether's own modules (the codecs and the ETF decoder's tag-80
    values), not a user API.

    Examples
    --------
    >>> import tether
    >>> check_declared(2**40, tether.Limits(), "frame (raw, 445 B): gzip payload")
    Traceback (most recent call last):
    ...
    tether._errors.LimitError: frame (raw, 445 B): gzip payload declares 1099511627776 uncompressed bytes, ...
    """
    if declared > limits.max_uncompressed_size:
        raise LimitError(
            f"{what} declares {declared} uncompressed bytes, over the limit of {limits.max_uncompressed_size} "
            "(Limits.max_uncompressed_size); raise it with tether.set_limits if such data is expected."
        )


def bounded(step: Callable[[int], Any], declared: int, what: str) -> memoryview:
    """Run a decompressor to exactly ``declared`` bytes; return them as a read-only view.

    ``step(n)`` returns at most ``n`` more bytes of output, and an empty
    result once the stream has ended; a step whose input ran out before the
    stream's end raises (as :func:`zlib_steps` does). Each step asks
    for at most :data:`STEP` bytes, and the output buffer grows by what each
    step produced, so a stream that declares gigabytes and produces a few
    bytes costs a few bytes. One byte more than declared is asked for, so a
    stream that runs long is caught before it produces more. Any error the
    codec library raises becomes a :class:`tether.DecodeError` naming ``what``.

    For tether's own modules (the codecs and the ETF decoder's tag-80
    values), not a user API.

    Examples
    --------
    >>> import zlib
    >>> d = zlib.decompressobj()
    >>> data = [zlib.compress(b"ab" * 10)]
    >>> def step(n):
    ...     out = d.decompress(data[0], n)
    ...     data[0] = d.unconsumed_tail
    ...     return out
    >>> bytes(bounded(step, 20, "example"))
    b'abababababababababab'
    """
    out: Any = None
    total = 0
    try:
        while True:
            chunk = step(min(STEP, declared + 1 - total))
            if not chunk:
                break
            total += len(chunk)
            if total > declared:
                raise DecodeError(f"{what} declares {declared} bytes but inflates to more. The input is corrupted.")
            if out is None:
                out = chunk  # a stream done in one step is returned without a copy
            else:
                if type(out) is not bytearray:
                    out = bytearray(out)
                out += chunk
    except TetherError:
        raise
    except Exception as exc:  # the codec library's own error for bad bytes
        raise foreign(exc, f"{what} is corrupted") from exc
    if total != declared:
        raise DecodeError(f"{what} declares {declared} bytes but inflates to {total}. The input is corrupted.")
    return memoryview(out if out is not None else b"").toreadonly()


def stream_end(decompressor: Any, what: str) -> bytes:
    """A step's answer once ``decompressor`` has reached the end of its stream: no more bytes, or an error for bytes after it.

    Examples
    --------
    >>> d = zlib.decompressobj()
    >>> d.decompress(zlib.compress(b"x") + b"!!")
    b'x'
    >>> stream_end(d, "the zlib stream")
    Traceback (most recent call last):
    ...
    tether._errors.DecodeError: 2 bytes follow the end of the zlib stream
    """
    if decompressor.unused_data:
        raise DecodeError(f"{len(decompressor.unused_data)} bytes follow the end of {what}")
    return b""


def zlib_steps(data: Any, wbits: int, what: str = "the compressed stream") -> Callable[[int], bytes]:
    """The steps of :func:`bounded` over one zlib stream (``wbits`` 31: gzip; 15: zlib, as ETF tag 80 uses).

    For tether's own modules (gzip and the ETF decoder's tag-80 values), not
    a user API.

    Examples
    --------
    >>> data = zlib.compress(b"tether " * 1000)
    >>> len(bounded(zlib_steps(data, 15), 7000, "example"))
    7000
    >>> bounded(zlib_steps(data[:-4], 15, "the example"), 7000, "example")  # cut before its Adler-32
    Traceback (most recent call last):
    ...
    tether._errors.DecodeError: the example ends before its end marker and checksum: it was cut short
    """
    d = zlib.decompressobj(wbits)
    src = [data]

    def step(n: int) -> bytes:
        if d.eof:
            return stream_end(d, what)
        out = d.decompress(src[0], n)
        src[0] = d.unconsumed_tail
        if not out and not d.eof:  # every byte read and no end marker: the stream was cut short
            raise DecodeError(f"{what} ends before its end marker and checksum: it was cut short")
        return out

    return step
