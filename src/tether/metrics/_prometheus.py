"""A ``prometheus_client`` collector for :mod:`tether.metrics` (``prometheus_client`` is imported only here, lazily)."""

from __future__ import annotations

from typing import Any, Iterator

from .._errors import ValidationError
from . import _alerts, _core

LABELS = ("op", "format", "compression", "transport", "size_class")
# The counters per operation key, as collect() names them (describe() lists the same).
_OPERATION_COUNTERS = ("tether_operations", "tether_bytes_in", "tether_bytes_out")
# Histogram bounds: powers of two of nanoseconds from 1 us to 34 s (the log buckets' octave edges, so exact).
_BOUNDS_BITS = range(10, 36)


def _client() -> Any:
    try:
        from prometheus_client import core
    except ImportError:
        raise ValidationError(
            "The Prometheus collector needs prometheus_client: pip install 'tether[prometheus]' "
            "(or pip install prometheus_client)."
        ) from None
    return core


def _buckets(hist: list[int]) -> list[tuple[str, int]]:
    """Cumulative (le, count) pairs at each power of two of nanoseconds, then +Inf."""
    out, seen, index = [], 0, 0
    for bits in _BOUNDS_BITS:
        bound = 1 << bits
        while index < len(hist) and _core.bucket_bounds(index)[1] <= bound:
            seen += hist[index]
            index += 1
        out.append((repr(bound / 1e9), seen))
    out.append(("+Inf", sum(hist)))
    return out


class Collector:
    """Exposes the operation counts, bytes, duration histograms, errors, fallbacks, compression and alerts.

    Examples
    --------
    >>> import tether.metrics
    >>> collector = tether.metrics.prometheus_collector()  # doctest: +SKIP
    >>> from prometheus_client import REGISTRY  # doctest: +SKIP
    >>> REGISTRY.register(collector)  # doctest: +SKIP
    """

    def __init__(self) -> None:
        _client()  # fail now, with the install hint, rather than at the first scrape

    def describe(self) -> list[Any]:
        """The metric families without samples: their names let a registry refuse a second tether collector.

        Without them, registering twice (two parts of an application each adding one) was accepted and every
        scrape then carried each family twice, which a Prometheus server rejects ("second TYPE line").
        """
        core = _client()
        return [
            *(core.CounterMetricFamily(name, "", labels=LABELS) for name in _OPERATION_COUNTERS),
            core.HistogramMetricFamily("tether_operation_seconds", "", labels=LABELS),
            core.CounterMetricFamily("tether_errors", "", labels=(*LABELS, "type")),
            core.CounterMetricFamily("tether_fallbacks", "", labels=(*LABELS, "kind")),
            core.GaugeMetricFamily("tether_compression_ratio", "", labels=("codec", "transport")),
            core.CounterMetricFamily("tether_compression_seconds", "", labels=("codec", "transport")),
            core.GaugeMetricFamily("tether_alert_active", "", labels=("name",)),
        ]

    def collect(self) -> Iterator[Any]:
        """The metric families, from a fresh merge of every thread's counts.

        The merge reads memory pressure too (:func:`tether.metrics._core.check_memory`), so that
        ``tether_alert_active`` shows ``memory_pressure`` as memory stands at the scrape, also in a process
        whose work never reads it.
        """
        core = _client()
        ops = core.CounterMetricFamily("tether_operations", "tether operations", labels=LABELS)
        nin = core.CounterMetricFamily("tether_bytes_in", "Bytes taken by tether operations", labels=LABELS)
        nout = core.CounterMetricFamily("tether_bytes_out", "Bytes produced by tether operations", labels=LABELS)
        secs = core.HistogramMetricFamily("tether_operation_seconds", "Duration of tether operations", labels=LABELS)
        errors = core.CounterMetricFamily("tether_errors", "Failed tether operations", labels=(*LABELS, "type"))
        fallbacks = core.CounterMetricFamily("tether_fallbacks", "tether fallbacks", labels=(*LABELS, "kind"))
        for key, entry in sorted(_core.merged().items()):
            values = [*key[:4], _core.SIZE_CLASSES[key[4]]]
            if entry[_core.COUNT]:
                ops.add_metric(values, entry[_core.COUNT])
                nin.add_metric(values, entry[_core.BYTES_IN])
                nout.add_metric(values, entry[_core.BYTES_OUT])
                secs.add_metric(values, _buckets(entry[_core.HIST]), entry[_core.NANOS] / 1e9)
            for kind, n in entry[_core.ERRORS].items():
                errors.add_metric([*values, kind], n)
            for kind, n in entry[_core.FALLBACKS].items():
                fallbacks.add_metric([*values, kind], n)
        yield from (ops, nin, nout, secs, errors, fallbacks)
        yield from self._compression_and_alerts(core)

    def _compression_and_alerts(self, core: Any) -> Iterator[Any]:
        ratio = core.GaugeMetricFamily("tether_compression_ratio", "Stored / raw payload bytes",
                                       labels=("codec", "transport"))
        secs = core.CounterMetricFamily("tether_compression_seconds", "Time spent compressing",
                                        labels=("codec", "transport"))
        for (codec, transport), (_n, raw, stored, ns) in sorted(_core.compression_totals().items()):
            if raw:
                ratio.add_metric([codec, transport], stored / raw)
                secs.add_metric([codec, transport], ns / 1e9)
        active = core.GaugeMetricFamily("tether_alert_active", "Alerts firing now (1)", labels=("name",))
        for event in _alerts.active_alerts():
            active.add_metric([event.name], 1)
        yield from (ratio, secs, active)
