"""The automatic compression policy: one function, :func:`resolve`.

1. Frames that stay on this host (``transport`` "memory" or "shm") are not
   compressed: a memcpy is faster than any compressor.
2. Payloads under ``MIN_SIZE`` are not compressed: headers and call overhead eat the gain.
3. Otherwise a few samples (start, middle, end) are compressed with lz4. If
   they do not shrink below ``GIVE_UP_RATIO``, the payload is incompressible
   and stays raw; the sampling costs well under a percent of the write.
4. Otherwise each candidate's measured ratio and compression speed on the
   samples, with its typical decompression speed (``DECOMPRESS_SPEED``),
   predict the time to compress, transfer at the transport's bandwidth, and
   decompress. The fastest prediction wins, "none" included.
5. A payload like one measured lately (same format, size class (the same
   power of two), transport, bandwidth and reader, the same registered
   codecs, and lz4 samples within ``REUSE_RATIO`` of its ratio) reuses that
   choice instead of timing every candidate again, and its byte-shuffle
   choice when its shuffled samples' lz4 ratio is within ``REUSE_SHUFFLED``;
   every ``REUSE_MAX`` uses they are measured anew. One choice is kept per
   key, so kinds of payload that alternate under one key measure every time.
   The reason says when a choice was reused. :func:`forget_choices` drops them.

The candidates are those the frame's reader can undo (``READABLE``): every
codec for Python, gzip alone for the BEAM (``reader="beam"``), where it
competes on the same prediction.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Sequence

from .._errors import ValidationError
from .._buffers import Segment
from ..memory import Chunked
from ._registered import get, registry
from ._shuffle import GAIN, shuffle

# Bytes per second assumed per transport; ``bandwidth=`` overrides.
BANDWIDTH: dict[str, float | None] = {
    "memory": None,
    "shm": None,
    # A conservative 1 Gbit/s; pass bandwidth= for the real link. On fast
    # links the model often finds that sending raw beats any compressor.
    "network": 125e6,
    "stream": 125e6,
    "disk": 500e6,  # a SATA SSD
}
MIN_SIZE = 64 << 10
SAMPLE_SIZE = 16 << 10
# Typical decompression throughput, bytes/s (measured by `tether bench`; timing
# the decompression of 16 KiB samples would mostly measure noise).
DECOMPRESS_SPEED = {"lz4": 2.0e9, "zstd": 1.0e9, "gzip": 0.4e9}
GIVE_UP_RATIO = 0.9
# Step 5: timing the candidates and the byte-shuffle costs 0.2-0.7 ms a payload here, as much as compressing
# a few hundred KiB; a stream of like payloads (tensors of one shape, batches of one table) pays it once.
# Like payloads (random walks of other seeds, slices of one text) varied by 0.005 here; 0.02 keeps a payload
# whose lz4 ratio differs more (0.29 against 0.34) from a choice zstd's gain may not carry over to.
REUSE_RATIO = 0.02
# The same check of a kept byte-shuffle choice, on the shuffled samples: like random walks varied by 0.03
# there, and a payload that shuffling hurts lands far off (0.9 against 0.15).
REUSE_SHUFFLED = 0.05
REUSE_MAX = 32
_CHOICES_MAX = 64
# Choices by (format, size class, transport, bandwidth, reader, codec registry version): [codec, level,
# reason, lz4 ratio, uses, filters by (codec, level, element size) -> (shuffle size, lz4 ratio shuffled)].
# Plain dict operations: safe under the GIL, and a race between threads only measures once more.
_choices: dict[tuple, list] = {}
_last = threading.local()  # .kept: the choice resolve took or made last on this thread (taken by take_kept)
CHOICES = ("auto", "none", "lz4", "zstd", "gzip")
# The codecs each reader undoes (None: every registered one). The BEAM inflates
# gzip with zlib; it has no lz4 or zstd without a NIF.
READABLE: dict[str, tuple[str, ...] | None] = {"python": None, "beam": ("none", "gzip")}
# The readers that undo a byte-shuffle filter: the BEAM refuses filtered frames (docs/format.md §5).
UNFILTERS = frozenset({"python"})


def check_reader(name: Any, reader: str) -> None:
    """Refuse an explicit ``compression=name`` that ``reader`` cannot undo, naming the ones it can.

    For tether's own modules (as ``tether.compression.check_reader``, which the
    request checks call), not a user API: ``dumps(..., reader=...)`` runs it.

    Parameters
    ----------
    name : object
        The ``compression`` option as passed; ``"auto"`` and non-str values pass (other checks judge them).
    reader : str
        One of ``tether._request.READERS``.

    Raises
    ------
    tether.ValidationError
        ``reader`` cannot undo the codec ``name``.

    Examples
    --------
    >>> check_reader("gzip", "beam")
    >>> check_reader("auto", "beam")
    """
    readable = READABLE[reader]
    if readable is None or name == "auto" or name in readable or not isinstance(name, str):
        return
    raise ValidationError(
        f"compression={name!r} cannot be undone by reader={reader!r}: it reads {' and '.join(readable)}. "
        "Pass compression='auto' (it then picks gzip or none) or 'gzip'."
    )


def resolve(
    name: str, level: int | None, payload: Any, transport: str, fmt: Any, *, bandwidth: float | None = None,
    reader: str = "python",
) -> tuple[Any, int, str]:
    """Return (compressor, level, reason) for a payload about to be written.

    ``bandwidth`` (bytes per second) overrides the transport's assumed bandwidth;
    ``reader`` limits ``"auto"`` to the codecs that reader undoes (:data:`READABLE`).
    """
    if name == "none" and level is None:  # most writes: the registry's id 0 without the lookup's checks
        return registry.by_id.get(0) or get(0), 0, "not requested"
    if not isinstance(name, str):
        raise ValidationError(f"compression must be a str, got {type(name).__name__}.")
    _last.kept = None  # a choice of an earlier payload's is not this one's
    if name != "auto":
        if name not in registry:
            raise ValidationError(
                f"Invalid compression {name!r}. Valid options are: auto, {', '.join(registry.names())}."
            )
        codec = get(name)
        return codec, codec.check_level(level), "requested by the caller" if name != "none" else "not requested"
    return _auto(level, payload, transport, fmt, bandwidth, reader)


def _auto(level: int | None, payload: Any, transport: str, fmt: Any, bandwidth: float | None,
          reader: str) -> tuple[Any, int, str]:
    """:func:`resolve` for ``"auto"``: the module docstring's steps 1-5."""
    none = get("none")
    if bandwidth is not None:
        if not isinstance(bandwidth, (int, float)) or isinstance(bandwidth, bool) or not bandwidth > 0:
            raise ValidationError(f"bandwidth must be a positive number of bytes per second, got {bandwidth!r}.")
    else:
        bandwidth = BANDWIDTH.get(transport)
    if bandwidth is None:
        return none, 0, f"transport {transport!r} stays on this host: compression only costs time"
    n = payload.nbytes
    if n < MIN_SIZE:
        return none, 0, f"payload of {n} B is under {MIN_SIZE} B: too small to pay"
    samples = _samples(payload.segments, n)
    if not samples:
        return none, 0, "payload is produced by a writer and cannot be sampled cheaply"
    # lz4 on the samples is the cheap test of whether anything compresses, whoever reads the frame.
    lz4 = get("lz4")
    ratio, ctime, dtime = _measure(lz4, samples, lz4.default_level)
    if ratio > GIVE_UP_RATIO:
        return none, 0, f"incompressible: lz4 sample ratio {ratio:.2f} > {GIVE_UP_RATIO}"
    key = (getattr(fmt, "name", None), n.bit_length(), transport, bandwidth, reader, registry.version)
    kept = _reuse(key, ratio)
    if kept is not None:
        codec, lvl, reason = kept
        return codec, (lvl if level is None or codec is none else codec.check_level(level)), reason
    candidates = _candidates(READABLE[reader], bandwidth, samples, (lz4, lz4.default_level, ratio, ctime, dtime))
    codec, lvl, why = _fastest(candidates, n, sum(len(s) for s in samples), bandwidth, none)
    if codec is none:
        return _keep(key, ratio, none, 0, f"no compressor beats sending raw at {bandwidth / 1e6:.0f} MB/s")
    reason = f"fastest predicted for {transport} at {bandwidth / 1e6:.0f} MB/s ({why})"
    _keep(key, ratio, codec, lvl, reason)
    return codec, (lvl if level is None else codec.check_level(level)), reason


def _fastest(candidates: list[tuple], n: int, sampled: int, bandwidth: float, none: Any) -> tuple[Any, int, str]:
    """(codec, level, why) of the candidate predicted to compress, send and decompress ``n`` bytes first."""
    best = (n / bandwidth, none, 0, "none")
    for codec, lvl, r, c, _ in candidates:
        speedup = codec.speedup(n)  # the samples were timed on one thread
        predicted = c * n / sampled / speedup + n / DECOMPRESS_SPEED.get(codec.name, 1e9) + n * r / bandwidth
        if predicted < best[0]:
            threads = f", {speedup:.2f}x faster on its threads" if speedup != 1.0 else ""
            best = (predicted, codec, lvl, f"ratio {r:.2f} on samples{threads}")
    return best[1:]


def _reuse(key: tuple, ratio: float) -> tuple[Any, int, str] | None:
    """The choice kept for ``key`` when the payload's lz4 sample ratio is close to its own (step 5), else None."""
    kept = _choices.get(key)
    if kept is None or kept[4] >= REUSE_MAX or abs(ratio - kept[3]) > REUSE_RATIO:
        return None
    kept[4] += 1
    _last.kept = kept
    return kept[0], kept[1], (f"{kept[2]}; reused for a like payload (lz4 sample ratio {ratio:.2f}, "
                              f"{kept[3]:.2f} when measured; use {kept[4]} of {REUSE_MAX})")


def _keep(key: tuple, ratio: float, codec: Any, level: int, reason: str) -> tuple[Any, int, str]:
    """Remember a measured choice for like payloads (step 5); return it."""
    if len(_choices) >= _CHOICES_MAX:
        _choices.clear()  # many kinds of payload: start again rather than track which is stale
    _choices[key] = _last.kept = [codec, level, reason, ratio, 1, {}]
    return codec, level, reason


def take_kept() -> list | None:
    """The choice :func:`resolve` reused or kept for the payload it just judged on this thread, once.

    :func:`tether.compression.pack` passes it to :func:`choose_filter` (``kept=``), which then reuses or
    keeps that payload kind's byte-shuffle choice.

    Examples
    --------
    >>> take_kept() is None  # nothing judged on this thread yet, or already taken
    True
    """
    kept, _last.kept = getattr(_last, "kept", None), None
    return kept


def forget_choices() -> None:
    """Drop the choices kept for like payloads: the next ``compression="auto"`` measures every candidate again.

    Examples
    --------
    >>> forget_choices()
    """
    _choices.clear()


def _candidates(readable: tuple[str, ...] | None, bandwidth: float, samples: list[bytes], lz4: tuple) -> list[tuple]:
    """(codec, level, ratio, compress seconds, 0.0) per codec worth predicting for this link and reader."""
    if readable is not None:
        # A reader limited to gzip gets it wherever its prediction wins, on any link; its
        # fastest level is tried too, as the default level rarely pays above ~20 MB/s.
        if "gzip" not in readable:
            return []
        gz = get("gzip")
        levels = sorted({lvl for lvl in (1, gz.default_level) if lvl in gz.levels})
        return [(gz, lvl, *_measure(gz, samples, lvl)) for lvl in levels]
    candidates = [lz4]
    zstd = get("zstd")
    # Slower levels only where the link is slow enough for their ratio to pay.
    for zlevel in (1, 3) if bandwidth < 200e6 else (1,):
        r, c, d = _measure(zstd, samples, zlevel)
        candidates.append((zstd, zlevel, r, c, d))
    if bandwidth < 20e6:
        gz = get("gzip")
        candidates.append((gz, gz.default_level, *_measure(gz, samples, gz.default_level)))
    return candidates


def _samples(segments: Sequence[Any], n: int, align: int = 1) -> list[bytes]:
    """Up to three SAMPLE_SIZE pieces at the start, middle and end of the payload's buffers."""
    spans = []
    pos = 0
    for seg in segments:
        size = seg.nbytes
        if not isinstance(seg, Segment):
            spans.append((pos, seg))
        pos += size
    if not spans:
        chunked = len(segments) == 1 and isinstance(segments[0], Chunked)
        return _first_pieces(segments[0], align) if chunked else []
    out = []
    for want in sorted({0, max(0, n // 2 - SAMPLE_SIZE // 2), max(0, n - SAMPLE_SIZE)}):
        want -= want % align
        for start, seg in spans:
            if start <= want < start + seg.nbytes:
                off = want - start
                out.append(bytes(seg[off : off + SAMPLE_SIZE]))
                break
    return out


def _first_pieces(seg: Chunked, align: int) -> list[bytes]:
    """Up to three SAMPLE_SIZE samples from the start of a payload produced piece by piece.

    Its middle and end would mean producing all of it; the start is what a
    writer under memory pressure can offer cheaply.
    """
    head = bytearray()
    for piece in seg.pieces(SAMPLE_SIZE):
        head += piece
        if len(head) >= 3 * SAMPLE_SIZE:
            break
    cut = SAMPLE_SIZE - SAMPLE_SIZE % align
    return [bytes(head[i : i + cut]) for i in range(0, len(head) - cut + 1, cut)][:3]


def _measure(codec: Any, samples: list[bytes], level: int) -> tuple[float, float, float]:
    """(ratio, compress seconds for all the samples, 0.0).

    The seconds are this thread's CPU time, not wall time: on a busy host the
    writer waits for a core while it times a ~0.1 ms sample, and that wait is
    the host's, not the codec's. Counted in, it multiplied the predicted cost
    several times over and flipped the choice to "none" (CI: a 1.4 MB log for
    the BEAM, on 2 shared cores). They are the samples' bytes at their median
    per-byte rate (the lower middle of an even count), so one slow sample (a page
    fault, an interrupt) is ignored too.
    """
    raw = sum(len(s) for s in samples)
    packed = 0
    rates = []
    for s in samples:
        t0 = time.thread_time_ns()
        out = codec.compress([memoryview(s)], len(s), level)
        rates.append((time.thread_time_ns() - t0) * 1e-9 / len(s))
        packed += sum(map(len, out)) if out is not None else len(s)
    return packed / raw, sorted(rates)[(len(rates) - 1) // 2] * raw, 0.0


def choose_filter(codec: Any, level: int, payload: Any, fmt: Any, reader: str = "python", *,
                  kept: list | None = None) -> int:
    """The shuffle element size when byte-shuffling beats plain compression on samples, else 0.

    Always 0 for a ``reader`` that cannot undo the filter (the BEAM). ``kept`` is the choice
    :func:`resolve` took for this payload (:func:`take_kept`): a shuffle choice kept with it is reused
    when this payload's shuffled samples compress with lz4 within ``REUSE_SHUFFLED`` of the measured ones'.
    """
    if reader not in UNFILTERS or payload.nbytes < MIN_SIZE:  # before asking the format: most payloads stop here
        return 0
    size = fmt.element_size(payload.type_info)
    if not size or payload.nbytes % size:
        return 0
    samples = [s[: len(s) - len(s) % size] for s in _samples(payload.segments, payload.nbytes, align=size)]
    samples = [s for s in samples if s]
    if not samples:
        return 0
    shuffled = [bytes(shuffle(s, size)) for s in samples]
    if kept is None:
        return _shuffle_pays(codec, level, samples, shuffled, size)
    lz4 = get("lz4")
    seen_now = _measure(lz4, shuffled, lz4.default_level)[0]  # how this payload takes shuffling, cheaply
    chosen, seen = kept[5].get((codec.name, level, size), (None, None))
    if chosen is None or abs(seen_now - seen) > REUSE_SHUFFLED:
        chosen = _shuffle_pays(codec, level, samples, shuffled, size)
        kept[5][(codec.name, level, size)] = (chosen, seen_now)
    return chosen


def _shuffle_pays(codec: Any, level: int, samples: list[bytes], shuffled: list[bytes], size: int) -> int:
    """``size`` when ``codec`` shrinks the shuffled samples by :data:`GAIN` more than the plain ones, else 0."""
    plain, _, _ = _measure(codec, samples, level)
    after, _, _ = _measure(codec, shuffled, level)
    return size if after < plain * GAIN else 0
