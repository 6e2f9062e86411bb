"""The wire format's numbers gathered in one place, for tests and tools.

Nothing is defined here: every id and layout has one owner (the format and
compressor registries, the frame layer for the header and checksums,
``tether.shm`` for regions). :func:`tables` collects them so a
test can compare them with the BEAM's ``tether_wire:tables/0``.
"""

from __future__ import annotations

import struct
from typing import Any

from . import compression, formats, frame, shm


def _offsets(fields: tuple[tuple[str, str], ...]) -> list[tuple[str, int, int]]:
    out, pos = [], 0
    for name, code in fields:
        size = struct.calcsize("<" + code)
        out.append((name, pos, size))
        pos += size
    return out


def _compact() -> dict[str, Any]:
    """The worker protocol's compact message (its owner, tether.worker, is imported only here)."""
    from . import worker

    return {"magic": worker.COMPACT_MAGIC, "header": _offsets(worker.COMPACT_FIELDS)}


def _cancel_file() -> bytes:
    """The file in a worker's private directory that names the call a SIGUSR1 cancels."""
    from . import worker

    return worker.CANCEL_FILE.encode()


def tables() -> dict[str, Any]:
    """Every wire id and layout tether itself defines (ids below 128), as plain data.

    Examples
    --------
    >>> t = tables()
    >>> t["formats"]["etf"], t["checksums"]["crc32"], t["header"][0]
    (4, 2, ('magic', 0, 4))
    """
    return {
        "frame_version": frame.FRAME_VERSION,
        "magic": frame.MAGIC,
        "header_size": frame.HEADER_SIZE,
        "align": frame.ALIGN,
        "header": _offsets(frame.FIELDS),
        "flags": {"stream_chunk": frame.FLAG_STREAM_CHUNK},
        "formats": {f.name: f.id for f in formats.registry if f.id < 128},
        "compressions": {c.name: c.id for c in compression.registry if c.id < 128},
        "checksums": dict(frame.checksum.IDS),
        "filters": {name: ident for ident, name in frame.FILTER_NAMES.items()},
        "compact_message": _compact(),
        "cancel_file": _cancel_file(),
        "region": {
            "magic": shm.MAGIC,
            "version": shm.VERSION,
            "header_size": shm.HEADER_SIZE,
            "slot_size": shm.SLOT_SIZE,
            "slots": shm.SLOTS,
            "header": _offsets(shm.HEADER_FIELDS),
            "slot": _offsets(shm.SLOT_FIELDS),
        },
    }
