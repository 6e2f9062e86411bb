"""The format registry.

Formats are registered by name and numeric id. Ids 0-127 are reserved for
tether; user formats take 128-65535. The last registration under an id wins,
and a miss falls back to the ``tether.formats`` entry-point group.

Examples
--------
>>> import tether
>>> tether.formats.get("ndarray").id
3
>>> sorted(tether.formats.names())[:3]
['arrow', 'etf', 'ndarray']
"""

from __future__ import annotations

from .._registry import Registry
from ._base import DecodeContext, EncodeContext, Format, Payload, Segment
from ._encode import encode

__all__ = [
    "DecodeContext", "EncodeContext", "Format", "Payload", "Segment", "auto_order", "encode", "get", "names",
    "register", "registry",
]

registry: Registry[Format] = Registry("format", "tether.formats", 0xFFFF)


def register(fmt: Format | type[Format]) -> Format:
    """Register a format instance (or class, instantiated with no arguments)."""
    return registry.register(fmt() if isinstance(fmt, type) else fmt)


def get(key: str | int) -> Format:
    """Return the format registered under a name or id."""
    return registry.get(key)


def names() -> list[str]:
    """Names of the registered formats."""
    return registry.names()


_auto: list = [-1, ()]  # registry version, formats in auto_priority order


def auto_order() -> tuple[Format, ...]:
    """The formats ``format="auto"`` asks, in ascending ``auto_priority`` (kept until a registration)."""
    if _auto[0] != registry.version:
        ranked = [f for f in registry.by_id.values() if getattr(f, "auto_priority", None) is not None]
        _auto[:] = [registry.version, tuple(sorted(ranked, key=lambda f: (f.auto_priority, f.id)))]
    return _auto[1]


from . import arrow, etf, ndarray, pickle, raw, scalar  # noqa: E402  (registration on import)

for _mod in (raw, scalar, ndarray, etf, arrow, pickle):
    register(_mod.FORMAT)
del _mod
