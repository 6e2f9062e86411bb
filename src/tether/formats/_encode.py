"""Encoding a payload in the format a decision names, falling back, under ``format="auto"``, to one the reader reads.

A format that cannot take a value hands it on only under ``format="auto"``:
to its own ``fallback``, else to the next format in ``auto_priority`` order
that claims the value, skipping formats the frame's reader cannot decode
(``reader="beam"`` reads no pickle). A fallback caused by user code (a custom
format, a registered type's ``encode``, a struct mapping's ``from_python``)
always comes with a :class:`tether.FallbackWarning` naming it and its error,
and so does one caused by an error a tether format did not raise itself
(NumPy's or pyarrow's, on a value the format claimed: a structured array with
out-of-order fields, a NumPy timedelta in a list). Every step logs at DEBUG
on ``tether.types``. With an explicit ``format=``, the error is raised,
naming the format and the path.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any, Mapping

from .._errors import EncodeError, FallbackWarning, TetherError
from .._request import UNREADABLE_FORMATS, check_format
from ._base import EncodeContext, Format, Payload
from ._registered import auto_order, get

log = logging.getLogger("tether.types")

# Ids from here on are user formats (docs/format.md §4): their failures always warn.
USER_FORMAT_IDS = 128


def encode(
    obj: Any, decision: Any, options: Mapping[str, Any] | None, *, auto: bool, compression: str, transport: str
) -> tuple[Format, Payload, EncodeContext]:
    """The payload of ``obj`` in ``decision.format``, or in its fallbacks when ``auto``.

    ``decision`` records who took the value and why.
    """
    fmt = get(decision.format)
    tried: list[str] = []
    while True:
        inner = fmt.inner_compression(compression, transport)
        if inner is not None:
            decision.notes.append(f"{fmt.name} compresses inside its payload with {inner[0]}")
            _, decision.compression, decision.compression_reason = inner
        ctx = EncodeContext(dict(options or {}), auto, inner and inner[0])
        try:
            payload = fmt.encode(obj, ctx)
        except MemoryError:
            raise
        except Exception as exc:
            err = _typed(fmt, obj, exc)
            tried.append(fmt.name)
            nxt = None
            if auto and _may_fall_back(err):
                nxt = _next_format(fmt, obj, tried, ctx.options.get("reader", "python"), transport, err, err is not exc)
            if nxt is None:
                log.debug("%s failed with no fallback: %s", fmt.name, err)
                if err is exc:
                    raise
                raise err from exc
            fmt = get(_fall_back(fmt, err, decision, nxt, err is not exc))
            continue
        check = getattr(fmt, "check_reader_versions", None)
        if check is not None:  # the reader named the format schemas it reads: refuse one it cannot
            check(ctx.options)
        decision.payload_size = payload.nbytes
        return fmt, payload, ctx


def _typed(fmt: Format, obj: Any, exc: Exception) -> Exception:
    """``exc`` when it is tether's own; an EncodeError naming the format and the place otherwise."""
    if isinstance(exc, TetherError):
        return exc
    where = getattr(exc, "path", "$")
    return EncodeError(
        f"The {fmt.name} format's encode failed on {type(obj).__module__}.{type(obj).__qualname__} at {where}: "
        f"{type(exc).__name__}: {exc}"
    )


def _may_fall_back(err: Exception) -> bool:
    """Whether another format may try, given the typed error (:func:`_typed`) of the one that failed.

    Any format's :class:`~tether.EncodeError` says it cannot take the value; so does an
    error a format did not raise itself (typed as an EncodeError here): a value its claim let
    in that NumPy or pyarrow refused. An error that says another format would not help
    (``fallback = False``, e.g. a reader that knows only an older type version) and errors
    in the caller's options (ValidationError) never fall back.
    """
    return isinstance(err, EncodeError) and getattr(err, "fallback", True)


def _next_format(fmt: Format, obj: Any, tried: list[str], reader: str, transport: str, err: Exception,
                 unexpected: bool = False) -> str | None:
    """The format that takes over from ``fmt``: its own fallback, else the next automatic claim the reader reads.

    tether's own formats that name no fallback hand on only an ``unexpected`` error (one they did
    not raise themselves); their own EncodeErrors say no other format should take the value.
    A named fallback the reader cannot decode is an EncodeError that says why the value went there.
    """
    unreadable = UNREADABLE_FORMATS.get(reader, ())
    if fmt.fallback is not None:
        if fmt.fallback in tried:
            return None
        check_format(fmt.fallback, reader, f"{fmt.name} could not take the value: {err}")
        return fmt.fallback
    if fmt.id < USER_FORMAT_IDS and not unexpected:
        return None  # tether's own formats name their fallback; none named means none
    for candidate in auto_order():
        if candidate.name in tried or candidate.name in unreadable or candidate.auto_priority is None:
            continue
        if fmt.auto_priority is not None and candidate.auto_priority < fmt.auto_priority:
            continue
        try:
            if candidate.auto_pick(obj, transport) is not None:
                return get(candidate.name).name
        except Exception:  # a broken claim is no claim
            log.debug("auto_pick of %s raised while finding a fallback", candidate.name, exc_info=True)
    return None


def _fall_back(fmt: Format, exc: Exception, decision: Any, target: str, unexpected: bool = False) -> str:
    """Record that ``target`` takes over from ``fmt``; warn when user code failed, the format asks for it, or
    the error was ``unexpected`` (not the format's own: the caller could not have known)."""
    decision.notes.append(str(exc))
    decision.fallback_from = decision.fallback_from or fmt.name
    decision.reason = f"{fmt.name} could not take the value: {exc}"
    decision.format = target
    serializer = getattr(exc, "serializer", None)
    log.debug("fall back from %s to %s: %s", fmt.name, target, exc)
    if unexpected or serializer or fmt.id >= USER_FORMAT_IDS or fmt.warns_on_fallback(exc):
        who = serializer or f"format {fmt.name}"
        # stacklevel: _fall_back, encode, prepare, the public call, its caller.
        warnings.warn(f"Sent as {target} instead of {fmt.name}: {who} failed: {exc}", FallbackWarning, stacklevel=5)
    return target
