"""Automatic format choice, and the decision record every choice leaves.

Rules for ``format="auto"``, first match wins (each is its format's
``auto_pick``, asked in ``auto_priority`` order):

1. ``bytes``, ``bytearray``, ``memoryview`` → raw
2. ``None``, ``bool``, ``int``, ``float``, ``str`` (not :class:`tether.Atom`) → scalar
3. NumPy arrays and NumPy scalars without object fields → ndarray
4. tables and DataFrames → arrow; dicts of ≥ 256-row columns → arrow; lists of
   ≥ 256 same-keyed dicts → arrow when the frame leaves the host (half the
   bytes), etf in memory (faster back to rows at every size measured)
5. dicts, lists, tuples, BEAM terms and values with an Elixir struct mapping
   (datetime, Decimal, set, range, registered types) → etf; a value with a
   part ETF cannot map falls back to pickle, and the decision says why
6. anything else → pickle

Each decision is logged at DEBUG on the ``tether.select`` logger and kept,
per thread, for :func:`last_decision`.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from ._errors import UnsupportedFormatError, ValidationError

log = logging.getLogger("tether.select")
_local = threading.local()


@dataclass(slots=True)
class Decision:
    """Why a value got the format and compression it got.

    Attributes
    ----------
    format : str
        The format used.
    reason : str
        The rule that chose it, in words.
    estimated_size : int or None
        Payload size estimated before encoding (None when unknown until encoded).
    payload_size : int
        Payload bytes actually written (before compression).
    requested : str
        What the caller asked for (``"auto"`` or a format name).
    fallback_from : str or None
        A format that was tried first and could not take the value.
    compression : str
        The compressor used, after resolving ``"auto"``.
    compression_reason : str
        Why that compressor.
    notes : list of str
        Anything else worth knowing (e.g. the error that caused a fallback).
    """

    format: str
    reason: str
    estimated_size: int | None = None
    payload_size: int = 0
    requested: str = "auto"
    fallback_from: str | None = None
    compression: str = "none"
    compression_reason: str = "not requested"
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        text = f"format={self.format} ({self.reason}); payload {self.payload_size} B; compression={self.compression} ({self.compression_reason})"
        if self.fallback_from:
            text += f"; fell back from {self.fallback_from}"
        return text


def record(decision: Decision) -> None:
    _local.last = decision
    log.debug("tether decision: %s", decision)


def record_lazy(fmt: str, reason: str, requested: str, payload_size: int) -> None:
    """Record an uncompressed decision; the :class:`Decision` is built only when someone looks."""
    _local.last = (fmt, reason, requested, payload_size)
    if log.isEnabledFor(logging.DEBUG):
        log.debug("tether decision: %s", last_decision())


def last_decision() -> Decision | None:
    """The decision of the last ``dumps``/``encode`` call in this thread.

    Examples
    --------
    >>> import tether
    >>> _ = tether.dumps(b"abc")
    >>> tether.last_decision().format
    'raw'
    """
    last = getattr(_local, "last", None)
    if type(last) is tuple:
        fmt, reason, requested, size = last
        last = _local.last = Decision(fmt, reason, None, payload_size=size, requested=requested)
    return last


def choice(obj: Any, format: str, transport: str) -> tuple[str, str, int | None]:
    """(format name, reason, estimated payload size) for ``format=``: "auto" or a registered name.

    Examples
    --------
    >>> choice([1], "pickle", "memory")
    ('pickle', 'requested by the caller', None)
    """
    if format == "auto":
        return choose(obj, transport)
    if not isinstance(format, str):
        raise ValidationError(f"format must be a str, got {type(format).__name__}.")
    from . import formats

    return formats.get(format).name, "requested by the caller", None


def choose(obj: Any, transport: str = "memory") -> tuple[str, str, int | None]:
    """Pick a format for ``obj`` headed for ``transport``: (name, reason, estimated payload size).

    Every format with an ``auto_priority`` is asked, in ascending priority;
    the first whose ``auto_pick`` claims the value wins.

    Examples
    --------
    >>> choose(b"abc")
    ('raw', 'bytes is written as is', 3)
    """
    from . import formats

    for fmt in formats.auto_order():
        hit = fmt.auto_pick(obj, transport)
        if hit is not None:
            return fmt.name, hit[0], hit[1]
    t = type(obj)  # only when pickle was unregistered
    raise UnsupportedFormatError(f"No registered format takes a {t.__module__}.{t.__qualname__} automatically.")
