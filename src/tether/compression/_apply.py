"""Compressing a payload for its frame, and undoing it: the compression stage of dumps and loads."""

from __future__ import annotations

from typing import Any

from .._buffers import join
from .._limits import Limits
from ..frame import Header, Stored
from . import _shuffle
from ._policy import choose_filter, resolve


def pack(
    payload: Any, fmt: Any, name: str, level: int | None, transport: str, bandwidth: float | None, decision: Any,
    reader: str = "python",
) -> Stored:
    """Resolve ``compression=name`` for ``payload`` and apply it; the choice lands in ``decision``.

    ``reader`` limits ``"auto"`` to the codecs that reader undoes. The result
    keeps the payload's own parts when nothing is compressed, or when
    compressing did not make it smaller (the policy's promise).
    """
    from . import get

    codec, clevel, reason = resolve(name, level, payload, transport, fmt, bandwidth=bandwidth, reader=reader)
    decision.compression, decision.compression_reason = codec.name, reason
    raw = payload.nbytes
    if codec.id == 0:
        return Stored(payload.segments, raw, raw)
    parts = payload.segments
    filter_size = choose_filter(codec, clevel, payload, fmt)
    if filter_size:
        parts = [_shuffle.shuffle(join(parts, raw), filter_size)]
        decision.compression_reason += f"; byte-shuffled ({filter_size}-byte elements)"
    packed = codec.compress(parts, raw, clevel, fmt=fmt, type_info=payload.type_info)
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
    from . import get

    codec = get(header.compression_id)
    payload = codec.decompress(stored, header.raw_length, limits, fmt=fmt, type_info=type_info, frame_id=frame_id)
    if header.filter_id == _shuffle.FILTER_SHUFFLE:
        payload = _shuffle.unshuffle(payload, header.filter_size)
    return payload
