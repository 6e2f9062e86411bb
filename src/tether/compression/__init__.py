"""Compressors and the policy that chooses one.

Compressors are registered by name and id like formats (ids 0-127 are tether's).
``resolve`` turns ``compression="auto"`` into a concrete compressor at write
time; the choice goes into the frame header and the decision record.
"""

from __future__ import annotations

from .._registry import Registry
from ._apply import pack, unpack
from ._base import Compressor
from ._codecs import GzipCompressor, Lz4Compressor, NoCompressor, ZstdCompressor
from ._policy import BANDWIDTH, choose_filter, resolve

__all__ = [
    "BANDWIDTH", "Compressor", "choose_filter", "get", "names", "pack", "register", "registry", "resolve", "unpack",
]

registry: Registry[Compressor] = Registry("compression", "tether.compressors", 0xFF)


def register(codec: Compressor | type[Compressor]) -> Compressor:
    """Register a compressor instance (or class); the last registration under an id wins."""
    return registry.register(codec() if isinstance(codec, type) else codec)


def get(key: str | int) -> Compressor:
    """Return the compressor registered under a name or id."""
    return registry.get(key)


def names() -> list[str]:
    """Names of the registered compressors."""
    return registry.names()


for _codec in (NoCompressor, Lz4Compressor, ZstdCompressor, GzipCompressor):
    register(_codec)
del _codec
