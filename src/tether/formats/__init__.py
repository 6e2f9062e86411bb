"""The format registry, and how a format joins ``format="auto"``.

Formats are registered by name and numeric id. Ids 0-127 are reserved for
tether; user formats take 128-65535. The last registration under an id wins.
Plugins in the ``tether.formats`` entry-point group (``[project.entry-points."tether.formats"]
mything = "mypkg.formats:MyFormat"``) are registered before the first automatic
choice and on the first lookup of an unknown name or id.

``format="auto"`` asks every format with an ``auto_priority`` (an int; None:
never automatic), in ascending priority, whether it claims the value: its
``auto_pick(obj, transport)`` returns ``(reason, estimated payload size or None)``
to claim it, or None (for a reader other than Python, ``auto_pick_for(obj, transport,
reader)`` is what is asked; it calls ``auto_pick`` unless a format declines or claims a
value for that reader, as Arrow leaves Python rows and columns to etf for the BEAM;
a Python reader's first choice asks ``auto_pick`` directly, every ``dumps`` being one). tether's own priorities leave room around them: raw 10,
scalar 20, ndarray 30, sparse 35, arrow 40, etf 50, pickle 1000. A claim must be cheap
(it runs on every ``dumps``): look at the type, not the contents.

Under ``format="auto"``, a format whose ``encode`` fails hands the value on:
to its ``fallback`` when it names one, else (user formats, ids from 128) to the
next format that claims it and that the reader reads, with a
:class:`tether.FallbackWarning` naming the format and its error.

Examples
--------
>>> import tether
>>> tether.formats.get("ndarray").id
3
>>> sorted(tether.formats.names())[:3]
['arrow', 'etf', 'ndarray']

A format of your own, picked automatically for its type before etf (50) asks:

>>> class Celsius(float):
...     pass
>>> class CelsiusFormat(tether.formats.Format):
...     id, name, auto_priority, kind = 65001, "doc-celsius", 15, Celsius
...     def auto_pick(self, obj, transport):
...         return ("a Celsius reading", 8) if type(obj) is self.kind else None
...     def encode(self, obj, ctx):
...         p = tether.formats.Payload({"unit": "C"})
...         p.add(float(obj).hex().encode())
...         return p
...     def decode(self, payload, type_info, ctx):
...         return self.kind(float.fromhex(bytes(payload).decode()))
>>> _ = tether.formats.register(CelsiusFormat)
>>> frame = tether.dumps(Celsius(21.5))
>>> tether.last_decision().format, tether.loads(frame)
('doc-celsius', 21.5)
>>> _ = tether.formats.unregister("doc-celsius")  # a plugin's or a test's format can be removed again
"""

from __future__ import annotations

from typing import Any, Mapping

from .. import schemas
from .._errors import ValidationError
from ._base import DecodeContext, EncodeContext, Format, Migration, Payload, Segment
from ._encode import encode
from ._registered import auto_order, get, names, register, registry, unregister

__all__ = [
    "DecodeContext", "EncodeContext", "Format", "Migration", "Payload", "Segment", "auto_order", "encode", "get",
    "names", "register", "registry", "unregister", "GENERAL_OPTIONS", "check_option_keys",
]


# options= keys every format may see: what the reader reads (docs/format.md §4.1), and who reads the frame.
GENERAL_OPTIONS = frozenset(("versions", "reader"))


def check_option_keys(options: Mapping[str, Any]) -> None:
    """A ValidationError naming an ``options=`` key no registered format reads (a typo would be ignored).

    With the built-in formats, ``{"nan_mode": "atom"}`` is refused, listing the valid keys; while a
    format that does not declare its ``option_keys`` is registered, every key passes.

    Examples
    --------
    >>> check_option_keys({"binaries": "str", "versions": {}})  # etf reads the first, every format the second
    """
    known = set(GENERAL_OPTIONS)
    for fmt in registry:
        if fmt.option_keys is None:
            return  # a format that does not say which keys it reads: any key may be its
        known |= fmt.option_keys
    for key in options:
        if key not in known:
            raise ValidationError(f"Unknown option {key!r}. Valid options are: {', '.join(sorted(known))}.")


from . import arrow, etf, ndarray, pickle, raw, scalar, sparse  # noqa: E402  (registration on import)

for _mod in (raw, scalar, ndarray, etf, arrow, pickle, sparse):
    register(_mod.FORMAT)
del _mod


def _versions() -> dict[str, list[int]]:
    """``{name: [oldest_readable, schema_version]}`` of every registered format, as of now."""
    return {f.name: [f.oldest_readable, f.schema_version] for f in registry}


# tether.schemas.capabilities() reports what this process reads through this: schemas cannot import this
# package, whose arrow format imports schemas.
schemas.read_formats_from(_versions)
