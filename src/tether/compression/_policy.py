"""The automatic compression policy: one function, :func:`resolve`.

1. Frames that stay on this host (``transport`` "memory" or "shm") are not
   compressed: a memcpy is faster than any compressor.
2. Payloads under ``MIN_SIZE`` are not compressed: headers and call overhead eat the gain.
3. Otherwise a few samples (start, middle, end) are compressed with lz4. If
   they do not shrink below ``GIVE_UP_RATIO``, and, where the payload can be
   byte-shuffled (numeric elements of 2-16 bytes, a reader that unshuffles),
   a small shuffled piece of them does not shrink below ``GIVE_UP_SHUFFLED``
   either, and the first sample does not shrink below ``GIVE_UP_SHUFFLED`` with
   zstd-1 (lz4 has no entropy coding, and leaves a float32 ramp or hex text as
   it is; the reader's own codecs are measured next, gzip for the BEAM),
   the payload is incompressible and stays raw; the sampling costs well under
   a percent of the write.
4. Otherwise, where the payload can be byte-shuffled, its shuffled samples are
   compressed with lz4 too, and the candidates are timed on them when they
   shrink by :data:`~tether.compression._shuffle.GAIN` more than the plain ones
   (the frame is then byte-shuffled). Each candidate's measured ratio and
   compression speed on the samples, with its typical decompression speed
   (``DECOMPRESS_SPEED``) and the shuffle's (``SHUFFLE_SPEED``), predict the
   time to compress, transfer at the transport's bandwidth, and decompress.
   The fastest prediction wins, "none" included.
5. A payload like one measured lately (same format, size class (the same
   power of two), transport, bandwidth, reader and shuffle element size, the
   same registered codecs, and lz4 samples within ``REUSE_RATIO`` of its
   ratio, shuffled ones within ``REUSE_SHUFFLED``) reuses that choice, its
   byte-shuffle included, instead of timing every candidate again; every
   ``REUSE_MAX`` uses they are measured anew. One choice is kept per key, so
   kinds of payload that alternate under one key measure every time. The
   reason says when a choice was reused. :func:`forget_choices` drops them.

The candidates are those the frame's reader can undo (``READABLE``): every
codec for Python, gzip alone for the BEAM (``reader="beam"``), where it
competes on the same prediction.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

from .._errors import ValidationError
from .._buffers import Segment, join
from ..frame import SHUFFLE_SIZES  # the element sizes a reader takes (docs/format.md §1, filter_size)
from ..memory import Chunked, low_peak, note_temporary
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
# Step 5: timing the candidates costs 0.05-0.7 ms a payload here, as much as compressing a few hundred KiB;
# a stream of like payloads (tensors of one shape, batches of one table) pays it once.
# Like payloads (random walks of other seeds, slices of one text) varied by 0.005 here; 0.02 keeps a payload
# whose lz4 ratio differs more (0.29 against 0.34) from a choice zstd's gain may not carry over to.
REUSE_RATIO = 0.02
# The same check on the shuffled samples, where the payload can be shuffled: like random walks varied by 0.03
# there, and a payload that shuffling hurts lands far off (0.9 against 0.15).
REUSE_SHUFFLED = 0.05
REUSE_MAX = 32
_CHOICES_MAX = 64
# Byte-shuffling on write and unshuffling on read together, bytes/s by element size (numpy on this host, 1-16
# MiB: shuffle 3.5-4 GB/s; unshuffle 0.9 GB/s for 2-byte elements, 1.2-1.5 for 4, 2.6 for 8, 1.0-1.8 for 16).
SHUFFLE_SPEED = {2: 0.7e9, 4: 1.0e9, 8: 1.6e9, 16: 0.9e9}
# Step 3: shuffled samples must beat the give-up ratio by the shuffle's own GAIN. Uniform random floats shuffle
# to ~0.89 with lz4 (their exponent bytes repeat): at 1 Gbit/s the two extra passes cost more than 11 % saves.
GIVE_UP_SHUFFLED = GIVE_UP_RATIO * GAIN
# Step 3's shuffled piece: this much of each sample, shuffled as one. Random floats, most of the payloads that
# reach it, pay for it on every write (~3 us, against ~10 us for the plain check), so it is small: it rates
# shuffled data worse than the whole samples do (a float32 ramp 0.27 against 0.11, linspace 0.33 against 0.11),
# yet far from the give-up line, and random floats no better (uniform 0.89, normal 0.98, random walk 0.83).
PROBE_SIZE = 1 << 10
# Choices by (format, size class, transport, bandwidth, reader, codec registry version, shuffle element size):
# [codec, level, reason, lz4 ratio, uses, shuffle element size or 0, lz4 ratio shuffled or None].
# Plain dict operations: safe under the GIL, and a race between threads only measures once more.
_choices: dict[tuple, list] = {}
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
    return resolve_with_filter(name, level, payload, transport, fmt, bandwidth=bandwidth, reader=reader)[:3]


def resolve_with_filter(
    name: str, level: int | None, payload: Any, transport: str, fmt: Any, *, bandwidth: float | None = None,
    reader: str = "python",
) -> tuple[Any, int, str, int | None]:
    """:func:`resolve`, with the byte-shuffle element size chosen along with the codec (0: no shuffle).

    For :func:`tether.compression.pack`. ``"auto"`` weighs the shuffle with the codecs (step 4), so it
    decides it; a codec the caller named gets None, and :func:`choose_filter` decides for it.
    """
    if name == "none" and level is None:  # most writes: the registry's id 0 without the lookup's checks
        return registry.by_id.get(0) or get(0), 0, "not requested", None
    named = check_codec(name, level)
    if named is not None:
        reason = "requested by the caller" if name != "none" else "not requested"
        return named, named.check_level(level), reason, None
    codec, lvl, reason, size = _auto(payload, transport, fmt, _bandwidth(bandwidth, transport), reader)
    return codec, (lvl if level is None or codec.id == 0 else codec.check_level(level)), reason, size


def check_codec(name: Any, level: int | None = None) -> Any:
    """The compressor ``compression=name`` names with ``level`` checked, None for ``"auto"``; a
    ValidationError naming the valid ones for anything else.

    Examples
    --------
    >>> check_codec("zstd", 3).name, check_codec("auto") is None
    ('zstd', True)
    """
    if not isinstance(name, str):
        raise ValidationError(f"compression must be a str, got {type(name).__name__}.")
    if name == "auto":
        return None
    if name not in registry:
        raise ValidationError(f"Invalid compression {name!r}. Valid options are: auto, {', '.join(registry.names())}.")
    codec = get(name)
    codec.check_level(level)
    return codec


def _bandwidth(bandwidth: Any, transport: str) -> float | None:
    """The link's bytes per second: ``bandwidth=`` checked, else the transport's (None: it stays on this host)."""
    if bandwidth is None:
        return BANDWIDTH.get(transport)
    if not isinstance(bandwidth, (int, float)) or isinstance(bandwidth, bool) or not bandwidth > 0:
        raise ValidationError(f"bandwidth must be a positive number of bytes per second, got {bandwidth!r}.")
    return bandwidth


def plain_reason(bandwidth: float | None, transport: str, nbytes: int | None) -> str | None:
    """Why ``"auto"`` leaves a payload of ``nbytes`` uncompressed without looking at it (steps 1-2), or None.

    ``bandwidth`` is the caller's (None: the transport's); ``nbytes`` None is
    a size not known yet, which only the transport can decide. Lets a writer
    of small frames skip the general path under ``compression="auto"``.

    Examples
    --------
    >>> plain_reason(None, "memory", None)
    "transport 'memory' stays on this host: compression only costs time"
    >>> plain_reason(None, "network", 1 << 20) is None, plain_reason(None, "network", None) is None
    (True, True)
    """
    if _bandwidth(bandwidth, transport) is None:
        return f"transport {transport!r} stays on this host: compression only costs time"
    if nbytes is not None and nbytes < MIN_SIZE:
        return f"payload of {nbytes} B is under {MIN_SIZE} B: too small to pay"
    return None


def _auto(payload: Any, transport: str, fmt: Any, bandwidth: float | None, reader: str) -> tuple[Any, int, str, int]:
    """(codec, level, reason, shuffle element size) for ``"auto"``: the module docstring's steps 1-5."""
    none = get("none")
    n = payload.nbytes
    why = plain_reason(bandwidth, transport, n)
    if why is not None:
        return none, 0, why, 0
    size = _shuffle_size(payload, fmt, reader)
    samples = _samples(payload.segments, n, size or 1)
    if not samples and _written_out(payload):
        samples = _samples(payload.segments, n, size or 1)
    if not samples:
        return none, 0, "payload is produced by a writer and cannot be sampled under memory pressure", 0
    ratios, shuffled, incompressible = _lz4_ratios(samples, size)
    if incompressible and not _entropy_coded(samples, reader):
        return none, 0, incompressible, 0
    key = (getattr(fmt, "name", None), n.bit_length(), transport, bandwidth, reader, registry.version, size)
    kept = _reuse(key, *ratios)
    if kept is not None:
        return kept
    return _keep(key, ratios, *_measured(samples, shuffled, ratios, size, n, transport, bandwidth, reader))


def _lz4_ratios(samples: list[Any], size: int) -> tuple[tuple[float, float | None], list[Any] | None, str]:
    """Steps 3-4's lz4 ratios (plain, byte-shuffled or None), the shuffled samples, and why it gives up ("" if not).

    lz4 on the samples is the cheap test of whether anything compresses, whoever reads the frame.
    """
    lz4 = get("lz4")
    ratio = _ratio(lz4, samples, lz4.default_level)
    if ratio > GIVE_UP_RATIO:
        probe = _probe(lz4, samples, size) if size else None
        if probe is None or probe > GIVE_UP_SHUFFLED:
            return (ratio, None), None, _incompressible(ratio, probe, size)
    if not size:
        return (ratio, None), None, ""
    shuffled = [shuffle(s, size) for s in samples]
    return (ratio, _ratio(lz4, shuffled, lz4.default_level)), shuffled, ""


# Where lz4 finds nothing to take, an entropy coder may still: a float32 ramp lz4 leaves at 1.00, gzip-1
# takes to 0.25. zstd-1 on one sample decides for every reader (the fastest entropy coder: gzip-1 as the
# probe made an incompressible 64 KiB write for the BEAM 3.5x slower); the reader's own codecs are then
# measured as for any compressible payload.
ENTROPY_PROBE = "zstd"


def _entropy_coded(samples: list[Any], reader: str) -> bool:
    """Whether the first sample shrinks under ``GIVE_UP_SHUFFLED`` with zstd-1: as strict as the shuffled
    probe, so that uniform random floats (about 0.87) still stay raw unmeasured."""
    readable = READABLE[reader]
    if ENTROPY_PROBE not in registry or (readable is not None and not set(readable) - {"none"}):
        return False
    return _ratio(get(ENTROPY_PROBE), samples[:1], 1) <= GIVE_UP_SHUFFLED


def _measured(samples: list[Any], shuffled: list[Any] | None, ratios: tuple[float, float | None], size: int,
              n: int, transport: str, bandwidth: float, reader: str) -> tuple[Any, int, str, int]:
    """Step 4: the candidates timed on the samples, shuffled where that shrinks them by GAIN; the fastest."""
    ratio, shuffled_ratio = ratios
    filter_size = size if shuffled_ratio is not None and shuffled_ratio < ratio * GAIN else 0
    form = shuffled if filter_size else samples
    extra = n / SHUFFLE_SPEED.get(filter_size, SHUFFLE_SPEED[2]) if filter_size else 0.0  # its two passes
    none = get("none")
    codec, lvl, why = _fastest(_candidates(READABLE[reader], bandwidth, form), n, sum(len(s) for s in form),
                               bandwidth, none, extra, "byte-shuffled samples" if filter_size else "samples")
    note = _shuffled_note(ratio, shuffled_ratio, size)
    if codec is none:
        return none, 0, f"no compressor beats sending raw at {bandwidth / 1e6:.0f} MB/s{note}", 0
    return codec, lvl, f"fastest predicted for {transport} at {bandwidth / 1e6:.0f} MB/s ({why}){note}", filter_size


def _incompressible(ratio: float, probe: float | None, size: int) -> str:
    """The reason for step 3's giving up, with the shuffled piece's ratio when one was measured."""
    reason = f"incompressible: lz4 sample ratio {ratio:.2f} > {GIVE_UP_RATIO}"
    if probe is not None:
        reason += f", {probe:.2f} byte-shuffled ({size}-byte elements) > {GIVE_UP_SHUFFLED:.2f}"
    return reason


def _shuffled_note(ratio: float, shuffled_ratio: float | None, size: int) -> str:
    """What the shuffled samples showed, for a measured choice's reason ("" where none were measured)."""
    if shuffled_ratio is None:
        return ""
    pays = "" if shuffled_ratio < ratio * GAIN else ": too little gain to shuffle"
    return f"; lz4 sample ratio {ratio:.2f}, {shuffled_ratio:.2f} byte-shuffled ({size}-byte elements){pays}"


def _fastest(candidates: list[tuple], n: int, sampled: int, bandwidth: float, none: Any, extra: float,
             label: str) -> tuple[Any, int, str]:
    """(codec, level, why) of the candidate predicted to compress, send and decompress ``n`` bytes first.

    ``extra`` is the seconds every candidate adds besides its codec (the byte-shuffle's passes); ``label``
    names the samples the candidates were timed on.
    """
    best = (n / bandwidth, none, 0, "none")
    for codec, lvl, r, c, _ in candidates:
        speedup = codec.speedup(n)  # the samples were timed on one thread
        predicted = (c * n / sampled / speedup + n / DECOMPRESS_SPEED.get(codec.name, 1e9) + n * r / bandwidth
                     + extra)
        if predicted < best[0]:
            threads = f", {speedup:.2f}x faster on its threads" if speedup != 1.0 else ""
            best = (predicted, codec, lvl, f"ratio {r:.2f} on {label}{threads}")
    return best[1:]


def _reuse(key: tuple, ratio: float, shuffled_ratio: float | None) -> tuple[Any, int, str, int] | None:
    """The choice kept for ``key`` when the payload's lz4 sample ratios are close to its own (step 5), else None.

    ``key`` holds the shuffle element size, so a kept choice has a shuffled ratio exactly when this payload does.
    """
    kept = _choices.get(key)
    if kept is None or kept[4] >= REUSE_MAX or abs(ratio - kept[3]) > REUSE_RATIO:
        return None
    if shuffled_ratio is not None and abs(shuffled_ratio - kept[6]) > REUSE_SHUFFLED:
        return None
    kept[4] += 1
    shuffled = "" if shuffled_ratio is None else f"; byte-shuffled {shuffled_ratio:.2f}, {kept[6]:.2f} when measured"
    return kept[0], kept[1], (f"{kept[2]}; reused for a like payload (lz4 sample ratio {ratio:.2f}, "
                              f"{kept[3]:.2f} when measured{shuffled}; use {kept[4]} of {REUSE_MAX})"), kept[5]


def _keep(key: tuple, ratios: tuple[float, float | None], codec: Any, level: int, reason: str,
          filter_size: int) -> tuple[Any, int, str, int]:
    """Remember a measured choice for like payloads (step 5); return it."""
    if len(_choices) >= _CHOICES_MAX:
        _choices.clear()  # many kinds of payload: start again rather than track which is stale
    _choices[key] = [codec, level, reason, ratios[0], 1, filter_size, ratios[1]]
    return codec, level, reason, filter_size


def forget_choices() -> None:
    """Drop the choices kept for like payloads: the next ``compression="auto"`` measures every candidate again.

    Examples
    --------
    >>> forget_choices()
    """
    _choices.clear()


def _candidates(readable: tuple[str, ...] | None, bandwidth: float, samples: list[Any]) -> list[tuple]:
    """(codec, level, ratio, compress seconds, 0.0) per codec worth predicting for this link and reader."""
    if readable is not None:
        # A reader limited to gzip gets it wherever its prediction wins, on any link; its
        # fastest level is tried too, as the default level rarely pays above ~20 MB/s.
        if "gzip" not in readable:
            return []
        gz = get("gzip")
        levels = sorted({lvl for lvl in (1, gz.default_level) if lvl in gz.levels})
        return [(gz, lvl, *_measure(gz, samples, lvl)) for lvl in levels]
    lz4, zstd = get("lz4"), get("zstd")
    candidates = [(lz4, lz4.default_level, *_measure(lz4, samples, lz4.default_level))]
    # Slower levels only where the link is slow enough for their ratio to pay.
    for zlevel in (1, 3) if bandwidth < 200e6 else (1,):
        r, c, d = _measure(zstd, samples, zlevel)
        candidates.append((zstd, zlevel, r, c, d))
    if bandwidth < 20e6:
        gz = get("gzip")
        candidates.append((gz, gz.default_level, *_measure(gz, samples, gz.default_level)))
    return candidates


def _shuffle_size(payload: Any, fmt: Any, reader: str) -> int:
    """The element size a byte-shuffle of ``payload`` would group by, or 0: not for this reader, format or length."""
    if reader not in UNFILTERS:  # the BEAM refuses filtered frames (docs/format.md §5)
        return 0
    size = fmt.element_size(payload.type_info)
    # A registered format may report any width (a 3-byte RGB pixel); the header allows only these, and a reader
    # refuses a frame shuffled by another (docs/format.md §1), so such payloads are compressed unshuffled.
    return size if size in SHUFFLE_SIZES and payload.nbytes % size == 0 else 0


def _samples(segments: Sequence[Any], n: int, align: int = 1) -> list[Any]:
    """Up to three SAMPLE_SIZE pieces at the start, middle and end of the payload's buffers.

    Each starts and ends on a multiple of ``align`` (a shuffle's element size). They are views, not
    copies (the payload's buffers are flat byte views): copying took a tenth of the decision that an
    incompressible payload gets.
    """
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
                end = min(off + SAMPLE_SIZE, seg.nbytes)
                end -= (end - off) % align
                if end > off:
                    out.append(seg[off:end])
                break
    return out


def _written_out(payload: Any) -> bool:
    """Write a payload that writers produce (a strided array's rows, an Arrow stream for the BEAM) into one
    buffer that samples can be taken from, unless memory is short; whether it did.

    The copy costs a memory pass (a millisecond or two for 8 MB) where the frame is leaving the host, whose
    link takes far longer; never sampled, an 8 MB strided array of compressible floats went out whole, 114x
    slower at 10 MB/s than lz4 would have sent it.
    """
    n = payload.nbytes
    if not any(isinstance(seg, Segment) for seg in payload.segments) or low_peak(n):
        return False
    payload.segments = [join(payload.segments, n)]
    note_temporary("compress", n)
    return True


def _first_pieces(seg: Chunked, align: int) -> list[Any]:
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


def _measure(codec: Any, samples: list[Any], level: int) -> tuple[float, float, float]:
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


def _ratio(codec: Any, samples: Sequence[Any], level: int) -> float:
    """The samples' compressed size over their size, untimed: giving up (step 3) and reuse (step 5) need no speed."""
    raw = packed = 0
    for s in samples:
        out = codec.compress([memoryview(s)], len(s), level)
        packed += sum(map(len, out)) if out is not None else len(s)
        raw += len(s)
    return packed / raw


def _probe(lz4: Any, samples: list[Any], size: int) -> float:
    """lz4's ratio on the first ``PROBE_SIZE`` bytes of each sample byte-shuffled as one piece (step 3)."""
    cut = PROBE_SIZE - PROBE_SIZE % size  # whole elements: a plugin's element size need not divide PROBE_SIZE
    piece = b"".join(s[: min(cut, len(s) - len(s) % size)] for s in samples)
    return _ratio(lz4, [shuffle(piece, size)], lz4.default_level)


def choose_filter(codec: Any, level: int, payload: Any, fmt: Any, reader: str = "python") -> int:
    """The shuffle element size when byte-shuffling beats plain compression on samples, else 0.

    For a codec the caller named; ``"auto"`` weighs the shuffle with the codecs (:func:`resolve`'s
    step 4). Always 0 for a ``reader`` that cannot undo the filter (the BEAM).
    """
    if reader not in UNFILTERS or payload.nbytes < MIN_SIZE:  # before asking the format: most payloads stop here
        return 0
    size = _shuffle_size(payload, fmt, reader)
    samples = _samples(payload.segments, payload.nbytes, size) if size else []
    if not samples:
        return 0
    return _shuffle_pays(codec, level, samples, [shuffle(s, size) for s in samples], size)


def _shuffle_pays(codec: Any, level: int, samples: list[Any], shuffled: list[Any], size: int) -> int:
    """``size`` when ``codec`` shrinks the shuffled samples by :data:`GAIN` more than the plain ones, else 0."""
    plain, _, _ = _measure(codec, samples, level)
    after, _, _ = _measure(codec, shuffled, level)
    return size if after < plain * GAIN else 0
