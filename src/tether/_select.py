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
per thread, for :func:`last_decision`. While :mod:`tether.metrics` is on, the
decisions of the last ``HISTORY`` operations (every thread's) are kept too,
with the time each operation took: :func:`decisions`.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ._errors import UnsupportedFormatError, ValidationError

log = logging.getLogger("tether.select")
_local = threading.local()
HISTORY = 256
# The decisions of the operations tether.metrics folded in, newest last: (decision, operation, nanoseconds);
# the decision is a Decision or record_lazy's tuple.
history: deque = deque(maxlen=HISTORY)


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
    operation : str or None
        In :func:`decisions`: the operation it steered (``"dumps"``, ``"dump_into"``, ``"stream_chunk"``).
    seconds : float or None
        In :func:`decisions`: how long that operation took.
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
    operation: str | None = None
    seconds: float | None = None

    def __str__(self) -> str:
        text = f"format={self.format} ({self.reason}); payload {self.payload_size} B; compression={self.compression} ({self.compression_reason})"
        if self.fallback_from:
            text += f"; fell back from {self.fallback_from}"
        if self.seconds is not None:
            text += f"; {self.operation} took {self.seconds * 1e6:.1f} us"
        return text

    def as_dict(self) -> dict[str, Any]:
        """The decision as plain data (JSON-serialisable).

        Examples
        --------
        >>> Decision("raw", "bytes is written as is").as_dict()["format"]
        'raw'
        """
        return {name: getattr(self, name) if name != "notes" else list(self.notes) for name in self.__slots__}


def record(decision: Decision) -> None:
    _local.last = decision
    log.debug("tether decision: %s", decision)


def record_lazy(fmt: str, reason: str, requested: str, payload_size: int, estimate: int | None = None,
                compression_reason: str = "not requested") -> tuple:
    """Record an uncompressed decision; the :class:`Decision` is built only when someone looks.

    Returns the record, for the decision history (:mod:`tether.metrics`).
    """
    item = _local.last = (fmt, reason, requested, payload_size, estimate, compression_reason)
    if log.isEnabledFor(logging.DEBUG):
        log.debug("tether decision: %s", last_decision())
    return item


def _materialize(item: Any) -> Decision:
    if type(item) is tuple:
        fmt, reason, requested, size, estimate, why = item
        return Decision(fmt, reason, estimate, payload_size=size, requested=requested, compression_reason=why)
    return item


def decisions(n: int | None = None) -> list[Decision]:
    """The decisions of the last ``n`` (at most ``HISTORY``) timed operations, oldest first.

    Each is a copy of the :class:`Decision` with ``operation`` and ``seconds``
    set. Kept while :mod:`tether.metrics` is enabled, for every thread; call
    it as :func:`tether.metrics.decisions`, which folds in the newest first.

    Examples
    --------
    >>> import tether, tether.metrics
    >>> _ = tether.dumps(b"abc")
    >>> d = tether.metrics.decisions(1)[0]
    >>> d.format, d.operation, d.seconds > 0
    ('raw', 'dumps', True)
    """
    items = list(history)
    if n is not None:
        items = items[-n:] if n > 0 else []
    out = []
    for item, operation, ns in items:
        d = _materialize(item)
        out.append(Decision(d.format, d.reason, d.estimated_size, d.payload_size, d.requested, d.fallback_from,
                            d.compression, d.compression_reason, list(d.notes), operation, ns / 1e9))
    return out


def clear_history() -> None:
    """Forget the decision history (:func:`tether.metrics.reset` calls it)."""
    history.clear()


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
        last = _local.last = _materialize(last)
    return last


_formats: Any = None  # tether.formats, once imported (it imports this module: not at the top)


def _load_formats() -> Any:
    global _formats
    from . import formats

    _formats = formats
    return formats


def choice(obj: Any, format: str, transport: str, reader: str = "python") -> tuple[str, str, int | None]:
    """(format name, reason, estimated payload size) for ``format=``: "auto" or a registered name.

    Examples
    --------
    >>> choice([1], "pickle", "memory")
    ('pickle', 'requested by the caller', None)
    """
    if format == "auto":
        return choose(obj, transport, reader)
    if not isinstance(format, str):
        raise ValidationError(f"format must be a str, got {type(format).__name__}.")
    from . import formats

    return formats.get(format).name, "requested by the caller", None


def choose(obj: Any, transport: str = "memory", reader: str = "python") -> tuple[str, str, int | None]:
    """Pick a format for ``obj`` headed for ``transport`` and ``reader``: (name, reason, estimated payload size).

    Every format with an ``auto_priority`` is asked, in ascending priority;
    the first whose ``auto_pick_for`` claims the value wins.

    Examples
    --------
    >>> choose(b"abc")
    ('raw', 'bytes is written as is', 3)
    """
    for fmt in (_formats or _load_formats()).auto_order():
        # Python readers (every dumps but the BEAM's) skip auto_pick_for's call: a few hundred ns a dumps.
        hit = fmt.auto_pick(obj, transport) if reader == "python" else fmt.auto_pick_for(obj, transport, reader)
        if hit is not None:
            try:
                reason, size = hit
            except (TypeError, ValueError):  # a plugin's auto_pick: its mistake named, not a bare error
                raise ValidationError(f"Format {fmt.name!r}: auto_pick must return (reason, estimated size or None) "
                                      f"or None, got {hit!r:.80}.") from None
            return fmt.name, reason, size
    t = type(obj)  # only when pickle was unregistered
    raise UnsupportedFormatError(f"No registered format takes a {t.__module__}.{t.__qualname__} automatically.")
