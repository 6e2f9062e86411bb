"""Automatic format choice, and the decision record every choice leaves.

Rules for ``format="auto"``, first match wins:

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


def choose(obj: Any, transport: str = "memory") -> tuple[str, str, int | None]:
    """Pick a format for ``obj`` headed for ``transport``: (name, reason, estimated payload size)."""
    t = type(obj)
    if t is bytes or t is bytearray or t is memoryview:
        return "raw", f"{t.__name__} is written as is", memoryview(obj).nbytes
    if obj is None or t in (bool, int, float, str):
        return "scalar", f"{t.__name__} scalar", None
    np = _numpy()
    if np is not None and (t is np.ndarray or isinstance(obj, np.generic)):
        arr = np.asarray(obj)
        if not arr.dtype.hasobject:
            return "ndarray", f"numpy {arr.dtype} array of shape {arr.shape}", arr.nbytes
        return "pickle", "numpy array with object elements", None
    from . import formats

    for fmt in formats.registry.by_id.values():
        picker = getattr(fmt, "auto_pick", None)
        if picker is not None:
            hit = picker(obj, transport)
            if hit is not None:
                return fmt.name, hit[0], hit[1]
    if isinstance(obj, (dict, list, tuple)) or _is_beam_type(obj):
        return "etf", f"{t.__name__} of BEAM-representable values", None
    if t is not frozenset and _has_struct_mapping(obj):
        # frozenset stays pickle: it would come back as a set.
        return "etf", f"{t.__name__} maps to an Elixir struct", None
    return "pickle", f"{t.__module__}.{t.__qualname__} has no BEAM mapping", None


def _is_beam_type(obj: Any) -> bool:
    from ._types import Atom, BitBinary, FrozenList, FrozenMap, ImproperList, OpaqueTerm, Pid, Port, Reference

    return isinstance(obj, (Atom, BitBinary, FrozenList, FrozenMap, ImproperList, OpaqueTerm, Pid, Port, Reference))


def _has_struct_mapping(obj: Any) -> bool:
    import datetime

    from ._structs import _by_type

    return isinstance(obj, datetime.datetime) or any(isinstance(obj, t) for t in _by_type)


def _numpy() -> Any:
    try:
        import numpy
    except ImportError:  # pragma: no cover
        return None
    return numpy
