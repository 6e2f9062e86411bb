"""pickle: arbitrary Python objects, protocol 5, with out-of-band buffers.

Only for trusted data: unpickling runs code named by the payload, so ``loads``
refuses pickle frames unless ``allow_pickle=True``.

Payload: the pickle stream, then each out-of-band buffer at a 64-byte aligned
offset. ``type.buffers`` lists ``[offset, length]`` pairs, so large arrays inside
objects are neither copied in-band nor copied on read. ``type.python_type`` is
the pickled object's ``module.qualname``, so ``inspect`` can say what is inside
without unpickling (frames from writers before it have no such key).
"""

from __future__ import annotations

import pickle
from typing import Any

from .._errors import DecodeError, EncodeError, UntrustedPickleError, ValidationError
from ._base import DecodeContext, EncodeContext, Format, Payload

# Buffers smaller than this stay in-band: out-of-band bookkeeping costs more.
OUT_OF_BAND_MIN = 4096


def _pad(n: int) -> int:
    return (-n) & 63


def _type_name(obj: Any) -> str:
    """``module.qualname`` of ``obj``'s type, as metrics and ``auto_pick`` name it."""
    t = type(obj)
    return f"{t.__module__}.{t.__qualname__}"


class PickleFormat(Format):
    id = 6
    name = "pickle"
    option_keys = frozenset()
    auto_priority = 1000  # last: whatever no other format claims

    def can_encode(self, obj: Any) -> bool:
        """Always True: what pickle refuses shows only in :meth:`encode` (an EncodeError)."""
        return True

    def auto_pick(self, obj: Any, transport: str) -> tuple[str, int | None] | None:
        """Claim anything: pickle is asked last (priority 1000), for what no other format took.

        Examples
        --------
        >>> import fractions
        >>> FORMAT.auto_pick(fractions.Fraction(1, 3), "pipe")
        ('fractions.Fraction has no BEAM mapping', None)
        """
        return f"{_type_name(obj)} has no BEAM mapping", None

    def encode(self, obj: Any, ctx: EncodeContext) -> Payload:
        """Pickle protocol 5; buffers of 4 KiB and more go out of band, 64-byte aligned after the pickle."""
        buffers: list[memoryview] = []

        def callback(pb: pickle.PickleBuffer) -> bool:
            raw = pb.raw()
            if raw.nbytes < OUT_OF_BAND_MIN:
                return True  # serialize in-band
            buffers.append(raw)
            return False

        try:
            data = pickle.dumps(obj, protocol=5, buffer_callback=callback)
        except Exception as exc:
            raise EncodeError(f"pickle cannot encode {type(obj).__qualname__}: {exc}") from exc
        table = []
        p = Payload({"pickle_len": len(data), "buffers": table, "python_type": _type_name(obj)})
        p.add_temporary(data)  # out-of-band buffers below are views of the value
        for buf in buffers:
            pad = _pad(p.nbytes)
            if pad:
                p.add(bytes(pad))
            table.append([p.nbytes, buf.nbytes])
            p.add(buf)
        return p

    def describe(self, type_info: dict[str, Any]) -> dict[str, Any]:
        """The pickled object's type, as the writer recorded it; the payload is not unpickled.

        Examples
        --------
        >>> import fractions, tether
        >>> tether.inspect(tether.dumps(fractions.Fraction(1, 3))).details
        {'python type': 'fractions.Fraction'}
        """
        name = type_info.get("python_type")
        if type(name) is not str:
            return {"python type": "not recorded (written by an older tether)"}
        # `tether inspect` prints it unquoted: a forged name must bring no terminal escapes, no lines of its own.
        return {"python type": name if name.isprintable() and len(name) <= 256 else repr(name[:256])}

    def decode(self, payload: memoryview, type_info: dict[str, Any], ctx: DecodeContext) -> Any:
        """Unpickle, only with ``allow_pickle=True``: unpickling runs arbitrary code.

        Examples
        --------
        >>> import fractions, tether
        >>> frame = tether.dumps(fractions.Fraction(1, 3))
        >>> tether.loads(frame, allow_pickle=True)
        Fraction(1, 3)
        >>> tether.loads(frame)
        Traceback (most recent call last):
        ...
        tether._errors.UntrustedPickleError: frame (pickle, ...) holds a pickle payload, and unpickling runs ...
        """
        if ctx.allow_pickle is not True:
            if ctx.allow_pickle is not False:  # "no" or "false" would read as consent
                raise ValidationError(f"allow_pickle must be True or False, got {ctx.allow_pickle!r}.")
            raise UntrustedPickleError(
                f"{ctx.frame_id} holds a pickle payload, and unpickling runs arbitrary code. "
                "Pass allow_pickle=True only for frames from a trusted source."
            )
        n = type_info.get("pickle_len")
        table = type_info.get("buffers", [])
        if type(n) is not int or not 0 <= n <= len(payload) or not isinstance(table, list):
            raise DecodeError(f"pickle frame has invalid pickle_len {n!r} for a {len(payload)}-byte payload.")
        views = []
        for entry in table:
            if not (isinstance(entry, (list, tuple)) and len(entry) == 2 and all(type(x) is int for x in entry)):
                raise DecodeError(f"pickle frame has an invalid buffer entry {entry!r}.")
            off, length = entry
            if off < n or length < 0 or off + length > len(payload):
                raise DecodeError(f"pickle buffer [{off}, {length}] lies outside the {len(payload)}-byte payload.")
            view = payload[off : off + length]
            views.append(memoryview(bytes(view)) if ctx.copy else view)
        try:
            return pickle.loads(payload[:n], buffers=views)
        except Exception as exc:
            raise DecodeError(f"pickle payload cannot be loaded: {type(exc).__name__}: {exc}") from exc


FORMAT = PickleFormat()
