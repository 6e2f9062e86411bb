"""etf: BEAM terms as Erlang External Term Format, the payload ``binary_to_term/1`` reads.

Frames written by Python record ``type.binaries = "tagged"``: ``str`` is written
as BINARY_EXT and ``bytes`` as BIT_BINARY_EXT with all 8 bits of the last byte
used (0 for an empty binary). BEAM reads both as ordinary binaries; Python
reads them back as ``str`` and ``bytes``. Frames written by BEAM carry
``"binaries" => "beam"``, where binaries decode as ``bytes`` unless the caller
asks for ``options={"binaries": "str"}``.
"""

from __future__ import annotations

import functools
from typing import Any

from .. import _etf
from .._limits import get_limits
from .._errors import ValidationError
from ._base import DecodeContext, EncodeContext, Format, Payload

@functools.lru_cache(maxsize=4)
def _default_options(limits: Any) -> _etf.Options:
    return _etf.Options(limits=limits)


@functools.lru_cache(maxsize=64)
def _decode_options(limits: Any, items: tuple) -> _etf.Options:
    return _etf.Options(limits=limits, **dict(items))


DECODE_OPTIONS = ("binaries", "charlists", "atoms", "none_atom", "views")
# Binaries at least this large decode as views into the frame unless copy=True.
VIEW_MIN = 64 << 10
ENCODE_OPTIONS = ("minor_version", "none_atom", "nan")


class EtfFormat(Format):
    id = 4
    name = "etf"
    intos = ()

    def can_encode(self, obj: Any) -> bool:
        return True  # attempted; unsupported types raise MappingError

    def encode(self, obj: Any, ctx: EncodeContext) -> Payload:
        kwargs = {k: v for k, v in ctx.options.items() if k in ENCODE_OPTIONS}
        opts = _etf.Options(**kwargs) if kwargs else _default_options(get_limits())
        data = _etf.encode(obj, opts, bytes_tag=_etf.BIT_BINARY)
        info: dict[str, Any] = {"binaries": "tagged"}
        if opts.none_atom != "nil":
            info["none_atom"] = opts.none_atom
        p = Payload(info)
        p.add(data)
        return p

    def decode(self, payload: memoryview, type_info: dict[str, Any], ctx: DecodeContext) -> Any:
        if ctx.into is not None:
            raise ValidationError(f"Invalid into {ctx.into!r} for an etf frame: etf frames have one Python form.")
        mode = type_info.get("binaries", "beam")
        # Python wrote lists of small ints as lists: no charlist warning for them.
        kwargs: dict[str, Any] = {"binaries": "tagged" if mode == "tagged" else "bytes", "warn_charlists": mode != "tagged"}
        if "none_atom" in type_info:
            kwargs["none_atom"] = type_info["none_atom"]
        if not ctx.copy:
            kwargs["views"] = VIEW_MIN  # large binaries: read-only views into the frame
        for key in DECODE_OPTIONS:
            if key in ctx.options:
                kwargs[key] = ctx.options[key]
        return _etf.decode(payload, decode_options(ctx.limits, kwargs))


def decode_options(limits: Any, kwargs: dict[str, Any]) -> _etf.Options:
    """The (cached) decoder options for ``kwargs``; unhashable values are invalid options."""
    try:
        return _decode_options(limits, tuple(sorted(kwargs.items())))
    except TypeError:
        bad = {k: v for k, v in kwargs.items() if not isinstance(v, (str, int, type(None)))}
        raise ValidationError(f"Invalid etf decode options {bad!r}: option values are str, int or None.") from None


FORMAT = EtfFormat()
