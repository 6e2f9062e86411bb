"""The frame layer: the fixed header, the metadata block, checksums, building and reading frames.

Everything about a frame's bytes is owned here; formats own payloads and
compressors own compressed streams. See ``docs/format.md`` for the layout.

For tether's own modules, not listed in ``__all__``: :data:`FIELDS` (the
header's fields and ``struct`` codes, the one definition of the layout) and
the payload filter ids :data:`FILTER_NONE`, :data:`FILTER_SHUFFLE` and
:data:`FILTER_NAMES` (id to name), and :data:`SHUFFLE_SIZES` (the element sizes
a byte-shuffle may group by), which the compressors and the wire tables use.

Examples
--------
>>> from tether import frame
>>> frame.FIELDS[0], frame.FILTER_NAMES[frame.FILTER_SHUFFLE]
(('magic', '4s'), 'byte-shuffle')
"""

from . import _checksum as checksum
from ._build import JOIN_BELOW, Encoded, Stored, build, plain
from ._header import ALIGN, FLAG_STREAM_CHUNK, FRAME_VERSION, HEADER_SIZE, MAGIC, Header, align, unpack
from ._read import SHOWN_DEPTH, FrameInfo, frame_name, info, read, shown, trailing, verify_payload

# Re-exported (the same objects) so that other packages never reach into _header; kept out of __all__.
from ._header import FIELDS, FILTER_NAMES, FILTER_NONE, FILTER_SHUFFLE, SHUFFLE_SIZES

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
    "trailing",
    "unpack",
    "verify_payload",
]
