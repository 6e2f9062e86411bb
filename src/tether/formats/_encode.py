"""Encoding a payload in the format a decision names, following each format's fallback rule."""

from __future__ import annotations

import warnings
from typing import Any, Mapping

from .._errors import EncodeError, FallbackWarning, TetherError
from ._base import EncodeContext, Format, Payload

# What a format raises on a value it cannot take, beyond tether's own errors.
_ENCODE_FAILURES = (TypeError, ValueError, OverflowError)


def encode(
    obj: Any, decision: Any, options: Mapping[str, Any] | None, *, auto: bool, compression: str, transport: str
) -> tuple[Format, Payload, EncodeContext]:
    """The payload of ``obj`` in ``decision.format``, or in its fallbacks when ``auto``.

    A format that cannot take the value hands it to its ``fallback`` (under
    ``format="auto"`` only); ``decision`` records who took it and why.
    """
    from . import get

    fmt = get(decision.format)
    while True:
        inner = fmt.inner_compression(compression, transport)
        if inner is not None:
            decision.notes.append(f"{fmt.name} compresses inside its payload with {inner[0]}")
            _, decision.compression, decision.compression_reason = inner
        ctx = EncodeContext(dict(options or {}), auto, inner and inner[0])
        try:
            payload = fmt.encode(obj, ctx)
        except EncodeError as exc:
            if not auto or fmt.fallback is None:
                raise
            fmt = get(_fall_back(fmt, exc, decision))
            continue
        except TetherError:
            raise
        except _ENCODE_FAILURES as exc:
            raise EncodeError(f"{fmt.name} cannot encode {type(obj).__qualname__}: {exc}") from exc
        decision.payload_size = payload.nbytes
        return fmt, payload, ctx


def _fall_back(fmt: Format, exc: Exception, decision: Any) -> str:
    """The name of the format that takes over from ``fmt``; the decision, and a warning where due, say why."""
    decision.notes.append(str(exc))
    decision.fallback_from = decision.fallback_from or fmt.name
    decision.reason = f"{fmt.name} could not take the value: {exc}"
    decision.format = fmt.fallback
    if fmt.fallback_warns:
        # stacklevel: _fall_back, encode, prepare, the public call, its caller.
        warnings.warn(f"Sent as {fmt.fallback} instead of {fmt.name}: {exc}", FallbackWarning, stacklevel=5)
    return fmt.fallback  # type: ignore[return-value]
