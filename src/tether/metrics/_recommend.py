"""Recommendations: specific advice drawn from what :mod:`tether.metrics` observed.

Each rule reads the counts (per-key operations, and the notes the entry
points leave on rarer paths) and, when it matches at least ``min_count``
times, says what it saw (the evidence: counts, bytes, seconds) and the change
to make.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator

from .._errors import ValidationError
from . import _core

TABLE_INTOS = ("arrow", "pandas", "polars")
SHM_THRESHOLD = 1 << 20  # the worker's default --shm-threshold
ON_HOST = ("memory", "shm")  # transports whose frames stay on this host
_LARGE_CLASSES = tuple(i for i, name in enumerate(_core.SIZE_CLASSES) if i >= 3)  # 1 MiB and up


@dataclass(frozen=True)
class Recommendation:
    """One piece of advice: the ``rule`` that matched, what was seen, the ``evidence`` and the ``change``.

    Examples
    --------
    >>> r = Recommendation("pickle-type", "Pickle used for Foo", {"count": 3}, "Register a serializer.")
    >>> str(r)
    'Pickle used for Foo (count=3). Register a serializer.'
    """

    rule: str
    message: str
    evidence: dict[str, Any]
    change: str

    def __str__(self) -> str:
        figures = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.evidence.items())
        return f"{self.message} ({figures}). {self.change}"

    def as_dict(self) -> dict[str, Any]:
        """Plain data (JSON-serialisable)."""
        return {"rule": self.rule, "message": self.message, "evidence": dict(self.evidence), "change": self.change}


def recommendations(min_count: int = 3) -> list[Recommendation]:
    """Advice from what was observed since the last :func:`tether.metrics.reset`.

    Rules: rows sent as ETF and converted to a table on every read; pickle
    used for a type; compression that does not pay (ratio above 0.9, over all
    of a codec's payloads or over those it could not shrink; more
    time than the transfer it saves, at the bandwidth passed to ``dumps``,
    else the one observed over ``record("transfer", ...)``, else the one
    assumed for the transport; or any compression of frames that stay on
    this host, unless ``bandwidth=`` says they travel); fresh
    shared-memory regions where a pool would keep pages warm; large payloads
    copied where ``dump_into`` or views would not; checksums on large
    in-memory frames; worker frames over the shared-memory threshold sent inline.

    Parameters
    ----------
    min_count : int
        How many times a pattern must be seen before it is advice (1 or more).

    Raises
    ------
    ValidationError
        When ``min_count`` is not a positive int (advice needs evidence).

    Examples
    --------
    >>> import tether, tether.metrics as m
    >>> m.reset()
    >>> for _ in range(3):
    ...     _ = tether.loads(tether.dumps([{"a": 1}, {"a": 2}]), into="arrow")
    >>> [r.rule for r in m.recommendations()]
    ['send-table']
    """
    if type(min_count) is not int or min_count < 1:
        raise ValidationError(f"recommendations() needs min_count as a positive int (times a pattern was seen), "
                              f"got {min_count!r}.")
    rows = _core.merged()
    out: list[Recommendation] = []
    for rule in _RULES:
        out.extend(r for r in rule(rows, min_count))
    return out


def _send_table(rows: dict, min_count: int) -> Iterator[Recommendation]:
    for (fmt, into), (n, nbytes, _stored, ns) in _core.notes("into").items():
        if fmt == "etf" and into in TABLE_INTOS and n >= min_count:
            yield Recommendation(
                "send-table", f"{n} etf frames (rows) were converted to {into} on read",
                {"frames": n, "bytes": nbytes, "seconds": ns / 1e9, "into": into},
                "Send a table: build it once on the writer (pyarrow.Table.from_pylist(rows), or "
                "tether.dumps(rows, format='arrow')) so readers get Arrow columns without converting every time.")


def _pickle_types(rows: dict, min_count: int) -> Iterator[Recommendation]:
    for type_name, (n, nbytes, _stored, _ns) in _core.notes("pickle").items():
        if n >= min_count:
            yield Recommendation(
                "pickle-type", f"{type_name} was pickled {n} times",
                {"type": type_name, "count": n, "bytes": nbytes},
                f"Register a serializer for {type_name} (tether.etf.register_struct, or tether.register_type where "
                "available) so it travels as ETF: the BEAM reads it and loads needs no allow_pickle=True.")


def _compression(rows: dict, min_count: int) -> Iterator[Recommendation]:
    observed = _observed_bandwidths(rows)
    poor = _core.notes(_core.INCOMPRESSIBLE)
    for (codec, transport, passed), (n, raw, stored, ns) in _core.notes("compress").items():
        if n < min_count or not raw:
            continue
        ratio, seconds = stored / raw, ns / 1e9
        evidence = {"codec": codec, "transport": transport, "count": n, "raw_bytes": raw, "stored_bytes": stored,
                    "ratio": ratio, "compress_seconds": seconds}
        if ratio > _core.POOR_RATIO:
            yield Recommendation(
                "compression-ratio", f"{codec} on {transport} only shrinks payloads to {ratio:.0%}", evidence,
                "Use compression='none' for these values (or 'auto', which measures before it compresses).")
            continue
        yield from _poor_part(evidence, poor.get((codec, transport, passed)), min_count)
        if transport in ON_HOST and passed is None:  # bandwidth= says the frames do travel: judged below
            yield Recommendation(
                "compression-time", f"{codec} compressed {n} frames that stay on this host ({transport})",
                {**evidence, "bandwidth_source": "on host"},
                f"Use compression='none' (or 'auto', which never compresses for transport='{transport}' without "
                "bandwidth=): "
                "the reader maps or copies the bytes at memory speed, which no compressor beats. Keep it only where "
                "frames are kept for their size.")
        else:
            yield from _too_slow(evidence, *_bandwidth(transport, passed, observed))


def _poor_part(evidence: dict, poor: tuple | None, min_count: int) -> Iterator[Recommendation]:
    """compression-ratio for the payloads a codec could not shrink, among others it did (``poor``: their note).

    Examples
    --------
    >>> e = {"codec": "zstd", "transport": "memory", "count": 6, "ratio": 0.5}
    >>> [r.evidence["ratio"] for r in _poor_part(e, (3, 900, 900, 10), 3)]
    [1.0]
    """
    if poor is None or poor[0] < min_count or not poor[1]:  # empty payloads: no ratio to speak of
        return
    n, raw, stored, ns = poor
    ratio, codec, transport = stored / raw, evidence["codec"], evidence["transport"]
    yield Recommendation(
        "compression-ratio", f"{codec} on {transport} only shrinks {n} of {evidence['count']} payloads to "
        f"{ratio:.0%} (all of them to {evidence['ratio']:.0%})",
        {"codec": codec, "transport": transport, "count": n, "raw_bytes": raw, "stored_bytes": stored,
         "ratio": ratio, "compress_seconds": ns / 1e9, "of_count": evidence["count"]},
        "Use compression='none' for the values that do not shrink (or 'auto', which measures before it "
        "compresses); keep the codec for the others.")


def _observed_bandwidths(rows: dict) -> dict[str, tuple[float, int]]:
    """Per transport, the bytes per second of the transfers an application recorded, and how many."""
    sums: dict[str, list[int]] = {}
    for key, entry in rows.items():
        if key[0] == "transfer":
            total = sums.setdefault(key[3], [0, 0, 0])
            total[0] += entry[_core.BYTES_OUT]
            total[1] += entry[_core.NANOS]
            total[2] += entry[_core.COUNT]
    return {t: (nbytes / ns * 1e9, n) for t, (nbytes, ns, n) in sums.items() if nbytes and ns}


def _bandwidth(transport: str, passed: float | None, observed: dict) -> tuple[float | None, str]:
    """The bandwidth to judge compression at, and where it came from: passed, observed, or assumed."""
    if passed is not None:
        return passed, "bandwidth= passed to dumps"
    if transport in observed:
        bandwidth, n = observed[transport]
        return bandwidth, f"observed over {n} recorded transfers"
    from ..compression import BANDWIDTH

    return BANDWIDTH.get(transport), f"assumed for transport='{transport}' (record transfers to observe it)"


def _too_slow(evidence: dict, bandwidth: float | None, source: str) -> Iterator[Recommendation]:
    raw, stored, seconds = evidence["raw_bytes"], evidence["stored_bytes"], evidence["compress_seconds"]
    if not bandwidth or seconds <= (raw - stored) / bandwidth:
        return
    saved = (raw - stored) / bandwidth
    codec, transport = evidence["codec"], evidence["transport"]
    yield Recommendation(
        "compression-time", f"{codec} on {transport} takes {seconds:.3g} s to save {saved:.3g} s of transfer",
        {**evidence, "bandwidth_bytes_per_s": bandwidth, "bandwidth_source": source,
         "transfer_seconds_saved": saved},
        f"Use compression='none' (or a faster codec) at {bandwidth / 1e6:.0f} MB/s: compressing costs more time "
        "than sending the bytes. If the link is slower than that, pass bandwidth= or record its transfers "
        "(tether.metrics.record('transfer', ...)).")


def _fresh_regions(rows: dict, min_count: int) -> Iterator[Recommendation]:
    regions = _core.notes("region")
    fresh, reused = regions.get("fresh", (0, 0, 0, 0)), regions.get("reused", (0, 0, 0, 0))
    if fresh[0] >= min_count and fresh[0] >= reused[0]:
        yield Recommendation(
            "shm-pool", f"{fresh[0]} dump_into calls wrote into a fresh shared-memory region",
            {"fresh_regions": fresh[0], "bytes": fresh[1], "reused_regions": reused[0]},
            "Keep pages warm with a pool: pool = tether.shm.RegionPool(); region = pool.acquire(n); "
            "tether.dump_into(value, region); pool.release(region) when the reader is done.")


def _large_copies(rows: dict, min_count: int) -> Iterator[Recommendation]:
    n = sum(e[_core.COUNT] for k, e in rows.items() if k[0] == "dumps" and k[4] in _LARGE_CLASSES)
    nbytes = sum(e[_core.BYTES_OUT] for k, e in rows.items() if k[0] == "dumps" and k[4] in _LARGE_CLASSES)
    if n >= min_count:
        yield Recommendation(
            "large-copy", f"{n} dumps of 1 MiB or more built a new bytes object each",
            {"count": n, "bytes": nbytes},
            "Write large values where they go: tether.dump_into(value, region) for shared memory, or "
            "enc = tether.encode(value); enc.write_into(buffer) for a buffer you own.")
    copies = _core.notes("copy")
    n, nbytes = sum(v[0] for v in copies.values()), sum(v[1] for v in copies.values())
    if n >= min_count:
        yield Recommendation(
            "large-copy-read", f"{n} loads of 1 MiB or more used copy=True",
            {"count": n, "bytes": nbytes, "formats": sorted(copies)},
            "Read with copy=False (read-only views into the frame) or into='numpy'/'memoryview'; copy only what "
            "you must modify.")


def _large_checksums(rows: dict, min_count: int) -> Iterator[Recommendation]:
    for (fmt, transport), (n, nbytes, _stored, _ns) in _core.notes("checksum").items():
        if n >= min_count:
            yield Recommendation(
                "large-checksum", f"{n} in-memory {fmt} frames of 1 MiB or more carried a payload checksum",
                {"format": fmt, "transport": transport, "count": n, "bytes": nbytes},
                "Use checksum='auto' (the default): in memory, a large frame is guarded by its region's commit "
                "protocol, so loads stays O(1); keep checksums for frames that leave the host.")


def _inline_frames(rows: dict, min_count: int) -> Iterator[Recommendation]:
    hits = [(k, e) for k, e in rows.items() if k[0] == "worker_call" and k[3] != "shm" and k[4] in _LARGE_CLASSES]
    n = sum(e[_core.COUNT] for _, e in hits)
    if n >= min_count:
        nbytes = sum(max(e[_core.BYTES_IN], e[_core.BYTES_OUT]) for _, e in hits)
        yield Recommendation(
            "inline-large", f"{n} worker calls moved frames over {SHM_THRESHOLD >> 20} MiB inline",
            {"count": n, "bytes": nbytes, "transports": sorted({k[3] for k, _ in hits})},
            "Let large frames go through shared memory: keep the worker's --shm-threshold (Tether.Worker "
            "option shm_threshold) at or below the frame size, and pass large arguments as frames, not terms.")


_RULES: tuple[Callable[[dict, int], Iterator[Recommendation]], ...] = (
    _send_table, _pickle_types, _compression, _fresh_regions, _large_copies, _large_checksums, _inline_frames,
)
