"""A test format whose schema went through three major versions: ``ticks``, id 240.

A ``Ticks`` value is a list of integer timestamps and their unit. Its layout
changed twice, for real:

==  ===============================================  =========================================
v   type information                                 payload
==  ===============================================  =========================================
1   ``{"n": count}`` (the unit was always "ms")      count × int32, little-endian
2   ``{"count": count, "unit": unit}``               count × int64, little-endian
3   ``{"count", "unit", "encoding": "delta"}``       int64 LE: the first value, then differences
==  ===============================================  =========================================

:class:`TicksFormat` is today's (v3) reader and writer; ``TicksV1`` and
``TicksV2`` are the writers of the two earlier releases, kept so
``tests/evolution_goldens.py`` could write the golden frames of each version
once (tests/golden/evolution/). The reader migrates v1 and v2 frames by
chaining its ``migrations``: type information first, payload once decompressed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

import tether
from tether.formats import DecodeContext, EncodeContext, Format, Payload
from tether.formats._base import Migration

TICKS_ID = 240  # user formats take ids 128 and up


@dataclass(frozen=True)
class Ticks:
    """Integer timestamps in one unit."""

    values: tuple[int, ...]
    unit: str = "ms"


def _v1_to_v2_info(info: dict[str, Any]) -> dict[str, Any]:
    return {"count": info["n"], "unit": "ms"}


def _v1_to_v2_payload(payload: Any, info: dict[str, Any]) -> bytes:
    return np.frombuffer(payload, "<i4", count=info["n"]).astype("<i8").tobytes()


def _v2_to_v3_info(info: dict[str, Any]) -> dict[str, Any]:
    return {**info, "encoding": "delta"}


def _v2_to_v3_payload(payload: Any, info: dict[str, Any]) -> bytes:
    return _delta(np.frombuffer(payload, "<i8", count=info["count"]))


def _delta(values: np.ndarray) -> bytes:
    out = values.astype("<i8", copy=True)
    out[1:] = np.diff(values)
    return out.tobytes()


class TicksFormat(Format):
    """Schema 3, reading 1 and 2 by migration."""

    id = TICKS_ID
    name = "ticks"
    schema_version = 3
    oldest_readable = 1
    migrations = {
        1: Migration(type_info=_v1_to_v2_info, payload=_v1_to_v2_payload),
        2: Migration(type_info=_v2_to_v3_info, payload=_v2_to_v3_payload),
    }

    def can_encode(self, obj: Any) -> bool:
        return isinstance(obj, Ticks)

    def encode(self, obj: Ticks, ctx: EncodeContext) -> Payload:
        p = Payload({"count": len(obj.values), "unit": obj.unit, "encoding": "delta"})
        p.add(_delta(np.asarray(obj.values, "<i8")))
        return p

    def decode(self, payload: memoryview, type_info: dict[str, Any], ctx: DecodeContext) -> Ticks:
        payload = self.upgrade_payload(payload, type_info)
        deltas = np.frombuffer(payload, "<i8", count=type_info["count"])
        return Ticks(tuple(int(v) for v in np.cumsum(deltas)), type_info["unit"])


class TicksV2(TicksFormat):
    """The writer of schema 2 (an earlier release)."""

    schema_version = 2
    migrations = {1: TicksFormat.migrations[1]}

    def encode(self, obj: Ticks, ctx: EncodeContext) -> Payload:
        p = Payload({"count": len(obj.values), "unit": obj.unit})
        p.add(np.asarray(obj.values, "<i8").tobytes())
        return p


class TicksV1(TicksFormat):
    """The writer of schema 1 (the first release): milliseconds as int32."""

    schema_version = 1
    migrations = {}

    def encode(self, obj: Ticks, ctx: EncodeContext) -> Payload:
        assert obj.unit == "ms", "schema 1 had milliseconds only"
        p = Payload({"n": len(obj.values)})
        p.add(np.asarray(obj.values, "<i4").tobytes())
        return p


def use(fmt: type[Format] = TicksFormat) -> Format:
    """Register ``fmt`` under the ticks id (the last registration wins) and return it."""
    return tether.formats.register(fmt)
