"""The compressor protocol, and the one bounded loop every decompressor runs."""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Sequence

from .._errors import DecodeError, LimitError, TetherError, ValidationError, foreign
from .._limits import Limits

# A decompressor produces at most this many bytes per step: output memory
# grows with what the stream really produces, never with what it declares.
STEP = 4 << 20


def check_declared(declared: int, limits: Limits, what: str) -> None:
    """Refuse a declared uncompressed size over ``Limits.max_uncompressed_size``, before any work.

    For tether's own modules (as ``tether.compression.check_declared``: the
    codecs and the ETF decoder's tag-80 values), not a user API.

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
    result once the stream has ended (or its input ran out). Each step asks
    for at most :data:`STEP` bytes, and the output buffer grows by what each
    step produced, so a stream that declares gigabytes and produces a few
    bytes costs a few bytes. One byte more than declared is asked for, so a
    stream that runs long is caught before it produces more. Any error the
    codec library raises becomes a :class:`tether.DecodeError` naming ``what``.

    For tether's own modules (as ``tether.compression.bounded``: the codecs and
    the ETF decoder's tag-80 values), not a user API.

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


class Compressor:
    """Compress a payload's segments into one buffer, and decompress it within bounds.

    ``compress`` returns the compressed stream as a list of parts (never
    joined: the frame copies each once), or None when the output would not
    be smaller than the input, so the frame is stored uncompressed. ``decompress`` must never
    produce more than ``raw_length`` bytes, whatever the input claims, nor reserve memory for
    what it merely declares: the built-in codecs run :func:`bounded`.

    A compressor may also define ``pieces(segments, raw_length, level, chunk)``,
    yielding the same compressed stream piece by piece, deterministically:
    under memory pressure large payloads are then compressed once to learn
    the size and again straight into the frame (see :mod:`tether.memory`).
    """

    id: ClassVar[int]
    name: ClassVar[str]
    default_level: ClassVar[int] = 0
    levels: ClassVar[range] = range(0, 1)

    def check_level(self, level: int | None) -> int:
        if level is None:
            return self.default_level
        if type(level) is not int or level not in self.levels:
            if len(self.levels) == 1:  # "none": a level means a compressor was meant
                raise ValidationError(
                    f"level={level!r} needs a compressor, and compression is {self.name!r}: pass "
                    "compression='lz4', 'zstd' or 'gzip' with it, or leave level unset."
                )
            raise ValidationError(
                f"Invalid level {level!r} for {self.name}. Valid levels are {self.levels.start}..{self.levels.stop - 1}."
            )
        return level

    def compress(self, segments: Sequence[Any], raw_length: int, level: int, **context: Any) -> list[bytes] | None:
        raise NotImplementedError

    def decompress(self, data: memoryview, raw_length: int, limits: Limits, **context: Any) -> Any:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<compressor {self.name} id={self.id}>"
