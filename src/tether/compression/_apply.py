"""Compressing a payload for its frame, and undoing it: the compression stage of dumps and loads."""

from __future__ import annotations

from typing import Any

from .. import memory
from .._buffers import Segment, join
from .._errors import EncodeError
from .._limits import Limits
from ..frame import Header, Stored
from . import _codecs, _shuffle
from ._policy import choose_filter, resolve_with_filter
from ._registered import get


def _pieces(parts: list[Any], chunk: int) -> list[Any]:
    """The payload's buffers cut into views of at most ``chunk`` bytes (writer segments stay whole)."""
    out = []
    for part in parts:
        if isinstance(part, Segment):
            out.append(part)
            continue
        view = memoryview(part).cast("B")
        out.extend(view[pos : pos + chunk] for pos in range(0, len(view), chunk))
    return out


def _under_pressure(parts: list[Any], raw: int, filter_size: int, decision: Any) -> tuple[list[Any], int]:
    """Under memory pressure: smaller compression chunks, and no byte-shuffle (two whole-payload copies)."""
    chunk = memory.compression_chunk(_codecs.CHUNK)
    if chunk >= _codecs.CHUNK or raw <= chunk:
        return parts, filter_size
    why = f"memory pressure: compressed in {chunk} B chunks"
    if filter_size:
        why += f", byte-shuffle skipped (it copies the {raw} B payload twice)"
    memory.decide("compression", f"{why} for a {raw} B payload", chunk=chunk, nbytes=raw, shuffle_skipped=filter_size)
    decision.compression_reason += f"; {why}"
    return _pieces(list(parts), chunk), 0


def _in_place(codec: Any, level: int, segments: list[Any], raw: int, decision: Any, own: bool = False) -> Stored:
    """Under pressure: compress twice, once to learn the size, then straight into the frame.

    The compressed stream never exists whole outside the frame, and the
    input is read a piece at a time (a :class:`~tether.memory.Chunked`
    payload never exists whole at all): the peak is one chunk, at the cost of
    a second compression. The codecs are deterministic, so both passes make
    the same bytes; a pass that does not is caught when the frame is written.
    """
    # The pressure chunk even if pressure has lifted since low_peak() said yes: both passes must cut the input
    # alike, and this path holds little (zstd starts no worker threads on it: zstd_threads).
    chunk = min(_codecs.CHUNK, memory.PRESSURE_CHUNK)
    size = peak = 0
    extra = {"own_checksum": True} if own and codec.id < 128 else {}  # tether's codecs take it; a plugin's need not
    for part in codec.pieces(segments, raw, level, chunk, **extra):
        size += len(part)
        peak = max(peak, len(part))
    memory.note_temporary("compress", peak)
    if size >= raw:
        decision.compression_reason += "; compressed output was not smaller, stored uncompressed"
        decision.compression = get(0).name
        return Stored(segments, raw, raw)
    why = f"memory pressure: compressed twice in {chunk} B chunks, the second time straight into the frame"
    pieces = any(isinstance(seg, memory.Chunked) for seg in segments)
    held = "neither the payload nor its compressed copy is held" if pieces else "the compressed copy is never held"
    memory.decide("dumps", f"{why} ({codec.name}, {raw} B → {size} B; {held})", path="compress in place",
                  codec=codec.name, nbytes=raw, stored=size, chunk=chunk, pieces=pieces)
    decision.compression_reason += f"; {why}"

    def write(dest: memoryview) -> None:
        pos = 0
        for part in codec.pieces(segments, raw, level, chunk, **extra):
            n = len(part)
            if pos + n > size:
                break
            dest[pos : pos + n] = part
            pos += n
        if pos != size:
            raise EncodeError(f"{codec.name} compressed the same {raw} B payload to a different size on its "
                              f"second pass ({size} B before); was the value changed while it was written?")

    return Stored([Segment(size, write)], raw, size, codec.id, level)


def pack(
    payload: Any, fmt: Any, name: str, level: int | None, transport: str, bandwidth: float | None, decision: Any,
    reader: str = "python", own_checksum: bool = False,
) -> Stored:
    """Resolve ``compression=name`` for ``payload`` and apply it; the choice lands in ``decision``.

    ``reader`` limits ``"auto"`` to the codecs that reader undoes. The result
    keeps the payload's own parts when nothing is compressed, or when
    compressing did not make it smaller (the policy's promise). ``own_checksum``
    (a frame that carries no payload checksum, ``checksum="none"``) makes the
    codec write its own (lz4's content checksum, zstd's; gzip always has one), so
    that a corrupted payload still fails to decompress instead of decoding to other bytes.
    """
    codec, clevel, reason, wanted = resolve_with_filter(name, level, payload, transport, fmt, bandwidth=bandwidth,
                                                        reader=reader)
    decision.compression, decision.compression_reason = codec.name, reason
    raw = payload.nbytes
    if codec.id == 0:
        return Stored(payload.segments, raw, raw)
    if memory.low_peak(raw) and getattr(codec, "pieces", None) is not None:
        if wanted:  # "auto" chose the codec on shuffled samples; this path compresses the payload as it is
            decision.compression_reason += "; byte-shuffle skipped (memory pressure: it copies the payload twice)"
        return _in_place(codec, clevel, payload.segments, raw, decision, own_checksum)
    if wanted is None:  # a codec the caller named: does shuffling help it?
        wanted = choose_filter(codec, clevel, payload, fmt, reader)
    parts, filter_size = _under_pressure(payload.segments, raw, wanted, decision)
    temporary = 0
    if filter_size:
        copied = len(parts) > 1 or isinstance(parts[0], Segment)  # join copies unless there is one buffer
        temporary = raw * (2 if copied else 1)
        parts = [_shuffle.shuffle(join(parts, raw), filter_size)]
        decision.compression_reason += f"; byte-shuffled ({filter_size}-byte elements)"
    packed = codec.compress(parts, raw, clevel, fmt=fmt, type_info=payload.type_info, own_checksum=own_checksum)
    # What compressing held besides input and frame: the shuffle's copies and the compressed parts.
    memory.note_temporary("compress", temporary + (sum(map(len, packed)) if packed is not None else 0))
    if packed is None:
        decision.compression_reason += "; compressed output was not smaller, stored uncompressed"
        decision.compression = get(0).name
        return Stored(payload.segments, raw, raw)
    out = [memoryview(part) for part in packed if part]
    filter_id = _shuffle.FILTER_SHUFFLE if filter_size else _shuffle.FILTER_NONE
    return Stored(out, raw, sum(len(part) for part in out), codec.id, clevel, filter_id, filter_size)


def unpack(
    stored: memoryview, header: Header, fmt: Any, type_info: dict[str, Any], limits: Limits, frame_id: str
) -> memoryview:
    """The raw payload of a frame from its stored bytes: decompressed and unshuffled, within ``limits``."""
    codec = get(header.compression_id)
    payload = codec.decompress(stored, header.raw_length, limits, fmt=fmt, type_info=type_info, frame_id=frame_id)
    if header.filter_id == _shuffle.FILTER_SHUFFLE:
        payload = _shuffle.unshuffle(payload, header.filter_size)
        memory.note_temporary("decompress", header.raw_length)  # the shuffled bytes, dropped once unshuffled
    return payload
