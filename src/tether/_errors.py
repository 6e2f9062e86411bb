"""The one error tree of tether.

Every failure tether reports on bad input or bad options is one of these::

    TetherError                      root; catch this to catch everything
    ├── EncodeError                  a value cannot be written in the asked format
    │   ├── MappingError             a type has no mapping; says how to register one
    │   └── ColumnError              a column Arrow cannot hold without losing meaning
    ├── DecodeError                  the bytes are not what their header says
    │   ├── TruncatedError           fewer bytes than declared
    │   ├── LimitError               a declared size, depth or count exceeds a limit
    │   ├── UnsupportedVersionError  a newer frame or schema version than this reader knows
    │   └── StreamError              a stream is incomplete, out of order, or not the one expected
    ├── ChecksumError                stored and computed checksums differ
    ├── ValidationError              an option or argument is invalid
    ├── UnsupportedFormatError       no format or compressor is registered under that id
    ├── UntrustedPickleError         a pickle frame was met without ``allow_pickle=True``
    └── RegionError                  a shared-memory region is missing, too small or in the wrong state

Warnings about conversions that lose meaning are :class:`LossyConversionWarning`;
a value sent in another format than the one first chosen warns with
:class:`FallbackWarning`.

Messages name the place at fault as a path (``$.rows[3].price``) and say what
to do about it.

Errors from elsewhere (a codec library, NumPy, pyarrow, ``datetime``) on bad
input become tether's in one place, :func:`typed`: readers wrap each call
into code they do not own with it.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from typing import Iterator

__all__ = [
    "ChecksumError",
    "ColumnError",
    "DecodeError",
    "EncodeError",
    "FallbackWarning",
    "LimitError",
    "LossyConversionWarning",
    "MappingError",
    "RegionError",
    "StreamError",
    "TetherError",
    "TruncatedError",
    "UnsupportedFormatError",
    "UnsupportedVersionError",
    "UntrustedPickleError",
    "ValidationError",
    "foreign",
    "typed",
]


class TetherError(Exception):
    """Root of every error tether raises."""


class EncodeError(TetherError, ValueError):
    """A value cannot be encoded in the requested format."""


class MappingError(EncodeError, TypeError):
    """A Python or BEAM type has no mapping in the chosen format."""


class ColumnError(EncodeError):
    """A column that Arrow cannot hold without losing meaning."""


class DecodeError(TetherError, ValueError):
    """Input bytes are malformed for the format their header declares."""


class TruncatedError(DecodeError):
    """The input ends before a declared length is satisfied."""


class LimitError(DecodeError):
    """A declared size, nesting depth or count exceeds the configured limit."""


class UnsupportedVersionError(DecodeError):
    """A frame, format schema or compression is newer than this reader."""


class StreamError(DecodeError):
    """A stream is incomplete, out of order, or not the stream expected."""


class ChecksumError(TetherError, ValueError):
    """A stored checksum does not match the bytes it covers."""

    def __init__(self, message: str, *, stored: int | None = None, computed: int | None = None):
        super().__init__(message)
        self.stored = stored
        self.computed = computed


class ValidationError(TetherError, ValueError):
    """An option or argument is invalid."""


class UnsupportedFormatError(TetherError, LookupError):
    """No format or compressor is registered under the requested name or id."""


class UntrustedPickleError(TetherError):
    """A pickle payload was met while pickle is not allowed."""


class RegionError(TetherError):
    """A shared-memory region is missing, too small, malformed, or in the wrong state."""


class LossyConversionWarning(UserWarning):
    """A value was converted in a way that loses meaning; the message says where."""


class FallbackWarning(UserWarning):
    """A value could not take the format chosen first and was sent in another; the message says why."""


def warn_at_caller(message: str, category: type[Warning]) -> None:
    """Warn at the line of the caller's code that called tether: the first frame outside the package.

    A fixed ``stacklevel`` is right for one way in only: the same conversion runs under
    ``tether.dumps``, ``tether.encode``, a stream writer or ``tether.arrow.to_table``, each at
    another depth.

    Examples
    --------
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     warn_at_caller("column 'x' lost its zone", LossyConversionWarning)
    >>> caught[0].filename.endswith("_errors.py")
    False
    """
    level, frame = 1, sys._getframe()
    while frame is not None and in_tether(frame.f_globals.get("__name__", "")):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)


def in_tether(module: str) -> bool:
    """Whether a module name is tether's own (the package or one of its modules)."""
    return module == "tether" or module.startswith("tether.")


@contextlib.contextmanager
def typed(where: str, cls: type[TetherError] | None = None) -> Iterator[None]:
    """Turn any exception that is not a :class:`TetherError` into one, naming ``where``.

    Code that reads input calls libraries that raise whatever they like on
    bad bytes (``ValueError``, ``OverflowError``, ``RuntimeError``, an
    ``ArrowInvalid``, a ``zlib.error``...). Inside this block such an error
    becomes ``cls`` (a :class:`DecodeError` by default), chained to the
    original; a ``MemoryError`` becomes a :class:`LimitError`, as only a size
    nothing checked can cause one. Tether's own errors, and what is not an
    ``Exception`` (``KeyboardInterrupt``), pass through unchanged.

    Examples
    --------
    >>> from tether._errors import typed
    >>> try:
    ...     with typed("frame (lz4, 40 B) payload"):
    ...         int("x")
    ... except DecodeError as exc:
    ...     print(exc)
    frame (lz4, 40 B) payload: ValueError: invalid literal for int() with base 10: 'x'. The input is malformed.
    """
    try:
        yield
    except TetherError:
        raise
    except Exception as exc:
        raise foreign(exc, where, cls) from exc


def foreign(exc: Exception, where: str, cls: type[TetherError] | None = None) -> TetherError:
    """The typed error :func:`typed` raises for ``exc``: for hot paths, in an ``except`` clause.

    Examples
    --------
    >>> print(foreign(OverflowError("timestamp out of range"), "created_at"))
    created_at: OverflowError: timestamp out of range. The input is malformed.
    """
    if isinstance(exc, TetherError):
        return exc
    if isinstance(exc, MemoryError):
        return LimitError(
            f"{where}: out of memory while decoding; a size in the input was not bounded. Lower the sizes in "
            "tether.Limits, and report this input as a bug."
        )
    return (cls or DecodeError)(f"{where}: {type(exc).__name__}: {exc}. The input is malformed.")
