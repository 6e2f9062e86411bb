"""The frame layer: the fixed header, the ETF metadata block and checksums.

See ``docs/format.md`` for the byte layout.
"""

from ._header import ALIGN, FRAME_VERSION, HEADER_SIZE, MAGIC, Header, align, unpack

__all__ = ["ALIGN", "FRAME_VERSION", "HEADER_SIZE", "MAGIC", "Header", "align", "unpack"]
