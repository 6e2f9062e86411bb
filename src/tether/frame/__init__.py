"""The frame layer: the fixed header, the metadata block, checksums, building and reading frames.

Everything about a frame's bytes is owned here; formats own payloads and
compressors own compressed streams. See ``docs/format.md`` for the layout.
"""

from . import _checksum as checksum
from ._build import JOIN_BELOW, Encoded, Stored, build, plain
from ._header import ALIGN, FLAG_STREAM_CHUNK, FRAME_VERSION, HEADER_SIZE, MAGIC, Header, align, unpack
from ._read import SHOWN_DEPTH, FrameInfo, frame_name, info, read, shown, verify_payload

__all__ = [
    "ALIGN",
    "FLAG_STREAM_CHUNK",
    "FRAME_VERSION",
    "HEADER_SIZE",
    "JOIN_BELOW",
    "MAGIC",
    "SHOWN_DEPTH",
    "Encoded",
    "FrameInfo",
    "Header",
    "Stored",
    "align",
    "build",
    "checksum",
    "frame_name",
    "info",
    "plain",
    "read",
    "shown",
    "unpack",
    "verify_payload",
]
