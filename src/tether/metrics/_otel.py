"""An OpenTelemetry meter for :mod:`tether.metrics`: observable instruments read at each collection.

Only ``opentelemetry-api`` is needed (imported here, lazily); the SDK or
exporter the application configured reads the instruments.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

from .._errors import ValidationError
from . import _core

_KEYS = ("op", "format", "compression", "transport", "size_class")


def _api() -> Any:
    try:
        from opentelemetry import metrics
    except ImportError:
        raise ValidationError(
            "The OpenTelemetry meter needs opentelemetry-api: pip install 'tether[otel]' "
            "(or pip install opentelemetry-api)."
        ) from None
    return metrics


def _rows() -> Iterator[tuple[dict[str, str], list]]:
    for key, entry in sorted(_core.merged().items()):
        yield dict(zip(_KEYS, (*key[:4], _core.SIZE_CLASSES[key[4]]))), entry


def _field(index: int, scale: float = 1.0) -> Callable[[Any], list]:
    def callback(_options: Any) -> list:
        observation = _api().Observation
        return [observation(entry[index] * scale, attrs) for attrs, entry in _rows() if entry[_core.COUNT]]

    return callback


def _quantile(q: float) -> Callable[[Any], list]:
    def callback(_options: Any) -> list:
        observation = _api().Observation
        return [observation(_core.percentile(entry[_core.HIST], q), attrs)
                for attrs, entry in _rows() if entry[_core.COUNT]]

    return callback


def _errors(_options: Any) -> list:
    observation = _api().Observation
    return [observation(n, {**attrs, "type": kind})
            for attrs, entry in _rows() for kind, n in entry[_core.ERRORS].items()]


def register(meter: Any) -> list[Any]:
    """Create tether's observable instruments on ``meter``; return them.

    Counters ``tether.operations``, ``tether.bytes_in``, ``tether.bytes_out``,
    ``tether.operation.time`` (seconds) and ``tether.errors``; gauges
    ``tether.operation.duration.p50``/``p95``/``p99`` (seconds). Attributes:
    op, format, compression, transport, size_class (and type for errors).

    Examples
    --------
    >>> from opentelemetry import metrics  # doctest: +SKIP
    >>> import tether.metrics
    >>> tether.metrics.otel_register(metrics.get_meter("tether"))  # doctest: +SKIP
    """
    _api()
    made = [
        meter.create_observable_counter("tether.operations", [_field(_core.COUNT)], unit="{operation}",
                                        description="tether operations"),
        meter.create_observable_counter("tether.bytes_in", [_field(_core.BYTES_IN)], unit="By",
                                        description="Bytes taken by tether operations"),
        meter.create_observable_counter("tether.bytes_out", [_field(_core.BYTES_OUT)], unit="By",
                                        description="Bytes produced by tether operations"),
        meter.create_observable_counter("tether.operation.time", [_field(_core.NANOS, 1e-9)], unit="s",
                                        description="Time spent in tether operations"),
        meter.create_observable_counter("tether.errors", [_errors], unit="{error}",
                                        description="Failed tether operations"),
    ]
    for q in (50, 95, 99):
        made.append(meter.create_observable_gauge(f"tether.operation.duration.p{q}", [_quantile(q / 100)], unit="s",
                                                  description=f"p{q} duration of tether operations"))
    return made
