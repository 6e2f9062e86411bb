"""Encoding a payload in the format a decision names, falling back, under ``format="auto"``, to one the reader reads.

A format that cannot take a value hands it on only under ``format="auto"``:
to its own ``fallback``, else to the next format in ``auto_priority`` order
that claims the value, skipping formats the frame's reader cannot decode
(``reader="beam"`` reads no pickle). A fallback caused by user code (a custom
format, a registered type's ``encode``, a struct mapping's ``from_python``)
always comes with a :class:`tether.FallbackWarning` naming it and its error,
and so does one caused by an error a tether format did not raise itself
(NumPy's or pyarrow's, on a value the format claimed: a structured array with
out-of-order fields). The warning comes once, when a format took the value: it
names that format and every refusal on the way. An error in tether's own code
(a TypeError, AttributeError, KeyError... raised by a tether module) is a bug,
not a refusal: it propagates, so no fallback hides it. Every step logs at
DEBUG on ``tether.types``. With an explicit ``format=``, the error is raised,
naming the format and the path.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, NamedTuple

from .._errors import EncodeError, FallbackWarning, TetherError, in_tether, warn_at_caller
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

    ``decision`` records who took the value and why. One FallbackWarning, once a format took the
    value, names that format and every refusal on the way (see :func:`_warn`).
    """
    fmt = get(decision.format)
    steps: list[_Step] = []
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
            if auto and _is_bug(fmt, exc):
                raise  # tether's own TypeError/AttributeError/KeyError: another format would only hide it
            fmt = get(_hand_on(fmt, obj, exc, decision, ctx, auto, transport, steps))
            continue
        check = getattr(fmt, "check_reader_versions", None)
        if check is not None:  # the reader named the format schemas it reads: refuse one it cannot
            check(ctx.options)
        decision.payload_size = payload.nbytes
        if any(s.warns for s in steps):
            _warn(steps, fmt.name)
        return fmt, payload, ctx


class _Step(NamedTuple):
    """One format's refusal on the way to the one that took the value."""

    fmt: Format
    err: Exception
    warns: bool

    def said(self) -> str:
        who = getattr(self.err, "serializer", None) or f"format {self.fmt.name}"
        return f"{who} failed: {self.err}"


def _hand_on(fmt: Format, obj: Any, exc: Exception, decision: Any, ctx: EncodeContext, auto: bool, transport: str,
             steps: list[_Step]) -> str:
    """The format that takes over from ``fmt`` after ``exc`` (recorded in ``steps``); the typed error if none."""
    err = _typed(fmt, obj, exc)
    unexpected = err is not exc
    nxt = None
    if auto and _may_fall_back(err):
        nxt = _next_format(fmt, obj, [s.fmt.name for s in steps] + [fmt.name], ctx.options.get("reader", "python"),
                           transport, err, unexpected, _why(steps, fmt, err))
    if nxt is None:
        log.debug("%s failed with no fallback: %s", fmt.name, err)
        if steps:  # the error is the last format's; the note says what the earlier ones refused
            err.add_note("Before it: " + _chain(steps))
        if err is exc:
            raise err
        raise err from exc
    steps.append(_Step(fmt, err, _warns(fmt, err, unexpected)))
    return _fall_back(fmt, err, decision, nxt)


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


def _is_bug(fmt: Format, exc: Exception) -> bool:
    """Whether ``exc`` is a bug in tether's own code (raised by a tether module, of a type bugs raise).

    A user format's errors are its own to explain (they always fall back, with a warning); tether's typed
    errors are decisions. An exception class of a library's own (pyarrow's ArrowInvalid, NumPy's
    DTypePromotionError) is the library refusing the value, and so is any exception raised in a library's
    Python code (NumPy's dtype.descr). Raised in tether's code, a ValueError or OverflowError is most
    likely NumPy's or pyarrow's from a conversion call written in C (no frame of its own); any other
    builtin exception there (TypeError, AttributeError, KeyError...) is tether's bug.
    """
    if fmt.id >= USER_FORMAT_IDS or isinstance(exc, (TetherError, ValueError, OverflowError)):
        return False
    if type(exc).__module__ != "builtins":
        return False
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return in_tether(tb.tb_frame.f_globals.get("__name__", ""))


def _warns(fmt: Format, err: Exception, unexpected: bool) -> bool:
    """Whether handing on after ``err`` warns: user code failed, the format asks for it, or the error was
    ``unexpected`` (not the format's own: the caller could not have known)."""
    return bool(unexpected or getattr(err, "serializer", None) or fmt.id >= USER_FORMAT_IDS
                or fmt.warns_on_fallback(err))


def _chain(steps: list[_Step]) -> str:
    """Every refusal, in order, as one sentence."""
    return "; then ".join(s.said().rstrip(".") for s in steps[:-1]) + ("; then " if len(steps) > 1 else "") + \
        steps[-1].said()


def _why(steps: list[_Step], fmt: Format, err: Exception) -> str:
    """Why the value is where it is, every refusal in order: what an error about the last step says."""
    said = [f"{s.fmt.name} could not take the value: {str(s.err).rstrip('.')}" for s in steps]
    return "; then ".join([*said, f"{fmt.name} could not take the value: {err}"])


def _next_format(fmt: Format, obj: Any, tried: list[str], reader: str, transport: str, err: Exception,
                 unexpected: bool = False, why: str = "") -> str | None:
    """The format that takes over from ``fmt``: its own fallback, else the next automatic claim the reader reads.

    tether's own formats that name no fallback hand on only an ``unexpected`` error (one they did
    not raise themselves); their own EncodeErrors say no other format should take the value.
    A named fallback the reader cannot decode is an EncodeError that says why the value went there
    (``why``: every refusal so far).
    """
    unreadable = UNREADABLE_FORMATS.get(reader, ())
    if fmt.fallback is not None:
        if fmt.fallback in tried:
            return None
        check_format(fmt.fallback, reader, why or f"{fmt.name} could not take the value: {err}")
        return fmt.fallback
    if fmt.id < USER_FORMAT_IDS and not unexpected:
        return None  # tether's own formats name their fallback; none named means none
    for candidate in auto_order():
        if candidate.name in tried or candidate.name in unreadable or candidate.auto_priority is None:
            continue
        if fmt.auto_priority is not None and candidate.auto_priority < fmt.auto_priority:
            continue
        try:
            if candidate.auto_pick_for(obj, transport, reader) is not None:
                return get(candidate.name).name
        except Exception:  # a broken claim is no claim
            log.debug("auto_pick of %s raised while finding a fallback", candidate.name, exc_info=True)
    return None


def _fall_back(fmt: Format, exc: Exception, decision: Any, target: str) -> str:
    """Record that ``target`` takes over from ``fmt`` (the warning waits for the format that takes the value)."""
    decision.notes.append(str(exc))
    decision.fallback_from = decision.fallback_from or fmt.name
    decision.reason = f"{fmt.name} could not take the value: {exc}"
    decision.format = target
    log.debug("fall back from %s to %s: %s", fmt.name, target, exc)
    return target


def _warn(steps: list[_Step], final: str) -> None:
    """One FallbackWarning naming the format that took the value and every refusal before it, at the line of
    the caller's code that called tether (the first frame outside tether, whichever public call it made)."""
    warn_at_caller(f"Sent as {final} instead of {steps[0].fmt.name}: " + _chain(steps), FallbackWarning)
