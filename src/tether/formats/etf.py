"""etf: BEAM terms as Erlang External Term Format, the payload ``binary_to_term/1`` reads.

Frames written by Python record ``type.binaries = "tagged"``: ``str`` is written
as BINARY_EXT and ``bytes`` as BIT_BINARY_EXT with all 8 bits of the last byte
used (0 for an empty binary). BEAM reads both as ordinary binaries; Python
reads them back as ``str`` and ``bytes``. Frames written by BEAM carry
``"binaries" => "beam"``, where binaries decode as ``bytes`` unless the caller
asks for ``options={"binaries": "str"}``.

Small terms are the most common frames there are (a worker call, a message
between processes), so this format also writes whole plain frames in one step
(:meth:`EtfFormat.dumps_plain`), from the frame layer's own pieces: the same
bytes and the same decision record as the general path.

Whatever the writer sent, the reader chooses the Python form: ``loads(frame,
into="arrow" | "pandas" | "polars")`` reads rows (a list of maps) or columns
(a map of equal-length lists) as a table, through :func:`tether.arrow.from_etf`
(clean columns go from ETF straight into Arrow buffers, in C), and
``into="pylist"`` reads a list.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Mapping

from .. import _etf, _structs, frame
from .. import arrow as arrow_api
from .._errors import ColumnError, ValidationError
from .._limits import Limits, get_limits
from .._types import Atom, BitBinary, FrozenList, FrozenMap, ImproperList, OpaqueTerm, Pid, Port, Reference
from ._base import DecodeContext, EncodeContext, Format, Payload

DECODE_OPTIONS = ("binaries", "charlists", "atoms", "none_atom", "views")
# Binaries at least this large decode as views into the frame unless copy=True.
VIEW_MIN = 64 << 10
ENCODE_OPTIONS = ("minor_version", "none_atom", "nan")

_TYPE = {"binaries": "tagged"}
_BEAM_TYPES = (Atom, BitBinary, FrozenList, FrozenMap, ImproperList, OpaqueTerm, Pid, Port, Reference)


# The into= forms that read the term as a table.
TABLE_INTOS = ("arrow", "pandas", "polars")


class EtfFormat(Format):
    id = 4
    name = "etf"
    intos = (*TABLE_INTOS, "pylist")
    auto_priority = 50
    fallback = "pickle"  # a part ETF cannot map: the decision says which

    def __init__(self) -> None:
        self._encode_options: tuple[Limits | None, _etf.Options | None] = (None, None)
        self._decode_options: dict[tuple, _etf.Options] = {}
        self._decode_limits: Limits | None = None

    def can_encode(self, obj: Any) -> bool:
        return True  # attempted; unsupported types raise MappingError

    def auto_pick(self, obj: Any, transport: str) -> tuple[str, int | None] | None:
        t = type(obj)
        if isinstance(obj, (dict, list, tuple)) or isinstance(obj, _BEAM_TYPES):
            return f"{t.__name__} of BEAM-representable values", None
        if t is not frozenset and _structs.has_mapping(obj):  # a frozenset would come back a set
            return f"{t.__name__} maps to an Elixir struct", None
        return None

    def encode(self, obj: Any, ctx: EncodeContext) -> Payload:
        kwargs = {k: v for k, v in ctx.options.items() if k in ENCODE_OPTIONS}
        opts = _etf.Options(**kwargs) if kwargs else self._default_options()
        data = _etf.encode(obj, opts, bytes_tag=_etf.BIT_BINARY, convert=_type_versions(ctx.options))
        info: dict[str, Any] = {"binaries": "tagged"}
        if opts.none_atom != "nil":
            info["none_atom"] = opts.none_atom
        p = Payload(info)
        p.add(data)
        return p

    def dumps_plain(self, obj: Any, kind: int, transport: str) -> tuple[bytes, int] | None:
        """A whole plain frame (default options, no compression or user metadata) and its payload size, or None.

        None means the general path must take the value (it raises, or falls
        back, with its own message). ``kind`` is
        :func:`tether.frame.checksum.requested`'s answer.
        """
        try:
            data = _etf.encode(obj, self._default_options(), bytes_tag=_etf.BIT_BINARY)
        except Exception:
            return None
        kind = frame.checksum.kind_for(kind, len(data), transport, False)
        return frame.plain(self, _TYPE, data, kind, type_key="tagged"), len(data)

    def _default_options(self) -> _etf.Options:
        limits = get_limits()
        if self._encode_options[0] is not limits:
            self._encode_options = (limits, _etf.Options(limits=limits))
        return self._encode_options[1]  # type: ignore[return-value]

    def decode(self, payload: memoryview, type_info: dict[str, Any], ctx: DecodeContext) -> Any:
        if ctx.into is None:
            return _etf.decode(payload, self.decode_options(type_info, ctx))
        if ctx.into == "pylist":
            value = _etf.decode(payload, self.decode_options(type_info, ctx))
            if type(value) is not list:
                raise ValidationError(
                    f"{ctx.frame_id}: into='pylist' needs an etf frame holding a list; this one holds "
                    f"{_kind(value)}. Leave into unset to get the value as it is."
                )
            return value
        return self._decode_table(payload, type_info, ctx)

    def _decode_table(self, payload: memoryview, type_info: dict[str, Any], ctx: DecodeContext) -> Any:
        """The term as a table in the form ``ctx.into`` names (see :data:`TABLE_INTOS`)."""
        from .arrow import convert

        shape = "rows (a list of maps) or columns (a map of equal-length lists)"
        try:
            table = arrow_api.from_etf(payload, limits=ctx.limits)
        except ColumnError as exc:
            value = _etf.decode(payload, self.decode_options(type_info, ctx._replace(into=None)))
            if _table_shaped(value):  # the right shape; a column Arrow cannot hold
                raise ColumnError(f"{ctx.frame_id}: into={ctx.into!r}: {exc}") from exc
            what = _kind(value) + (" that is neither" if type(value) in (list, dict) else "")
            raise ValidationError(
                f"{ctx.frame_id}: into={ctx.into!r} needs {shape}; this frame holds {what}. "
                "Leave into unset to get the value as it is."
            ) from None
        return convert(table, ctx.into)

    def decode_options(self, type_info: dict[str, Any], ctx: DecodeContext) -> _etf.Options:
        """The decoder options for a frame's type information and a ``loads`` call (cached)."""
        if self._decode_limits is not ctx.limits:  # by identity: hashing Limits costs more than small decodes
            self._decode_options.clear()
            self._decode_limits = ctx.limits
        mode = type_info.get("binaries", "beam")
        none_atom = type_info.get("none_atom", "nil")
        options = ctx.options
        try:
            key = (mode, none_atom, ctx.copy, tuple(options.items()) if options else ())
            cached = self._decode_options.get(key)
        except TypeError:
            key = cached = None
        if cached is None:
            cached = _options(ctx.limits, mode, none_atom, ctx.copy, options)
            if key is not None:
                if len(self._decode_options) > 64:
                    self._decode_options.clear()
                self._decode_options[key] = cached
        return cached


def _type_versions(options: Any) -> Any:
    """The encoder hook for a reader that knows older user-type versions (``options["versions"]["types"]``), or None.

    None keeps the default hook (:func:`tether._structs.convert` at each type's own version).
    """
    versions = options.get("versions") if options else None
    types = versions.get("types") if isinstance(versions, Mapping) else None
    if not types:
        return None
    if not isinstance(types, Mapping):
        raise ValidationError(f"options['versions']['types'] maps type names to versions, got {types!r}.")
    return partial(_structs.convert, versions=types)


def _table_shaped(value: Any) -> bool:
    """Whether a decoded term is rows (a list of maps) or columns (a map of equal-length lists)."""
    if type(value) is list:
        return all(type(row) is dict for row in value)
    if type(value) is dict:
        return all(type(col) is list for col in value.values()) and len({len(c) for c in value.values()}) <= 1
    return False


def _kind(value: Any) -> str:
    """What a decoded term is, for messages: "a tuple", "an int"."""
    name = type(value).__name__
    return f"{'an' if name[:1] in 'aeiou' else 'a'} {name}"


def _options(limits: Limits, mode: Any, none_atom: Any, copy: bool, options: dict[str, Any]) -> _etf.Options:
    # Python wrote lists of small ints as lists: no charlist warning for them.
    kwargs: dict[str, Any] = {"binaries": "tagged" if mode == "tagged" else "bytes", "warn_charlists": mode != "tagged"}
    if none_atom != "nil":
        kwargs["none_atom"] = none_atom
    if not copy:
        kwargs["views"] = VIEW_MIN  # large binaries: read-only views into the frame
    for key in DECODE_OPTIONS:
        if key in options:
            kwargs[key] = options[key]
    try:
        hash(tuple(kwargs.values()))
    except TypeError:
        bad = {k: v for k, v in kwargs.items() if not isinstance(v, (str, int, type(None)))}
        raise ValidationError(f"Invalid etf decode options {bad!r}: option values are str, int or None.") from None
    return _etf.Options(limits=limits, **kwargs)


FORMAT = EtfFormat()
