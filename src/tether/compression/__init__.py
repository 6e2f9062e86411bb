"""Compressors and the policy that chooses one.

Compressors are registered by name and id like formats (ids 0-127 are tether's).
``resolve`` turns ``compression="auto"`` into a concrete compressor at write
time; the choice goes into the frame header and the decision record.

For tether's own modules, not listed in ``__all__``: :func:`check_reader`
(the request checks refuse a codec the reader cannot undo) and
:func:`shuffle` (the benchmark measures the byte-shuffle filter). The bounded
loop every decompressor runs is :mod:`tether._bounded`'s, below this package,
because the ETF decoder inflates tag-80 values through it too.
"""

from __future__ import annotations

from ._apply import pack, unpack
from ._base import Compressor
from ._codecs import GzipCompressor, Lz4Compressor, NoCompressor, ZstdCompressor, zstd_threads
from ._policy import BANDWIDTH, choose_filter, forget_choices, resolve
from ._registered import get, names, register, registry, unregister

# Re-exported (the same objects; kept out of __all__): what other packages need of this package's modules,
# so that they never reach into them.
from ._policy import check_codec, check_reader, plain_reason
from ._shuffle import shuffle

__all__ = [
    "BANDWIDTH", "Compressor", "choose_filter", "forget_choices", "get", "names", "pack", "register", "registry",
    "resolve", "unpack", "unregister", "zstd_threads",
]

for _codec in (NoCompressor, Lz4Compressor, ZstdCompressor, GzipCompressor):
    register(_codec)
del _codec
