"""Write the ticks format's golden frames, one per schema version, ONCE: an existing file is never rewritten.

Run ``python tests/evolution_goldens.py`` from the repository root. Each
frame is what that release of the format wrote (see tests/evolution_format.py).
"""

from __future__ import annotations

import pathlib

import tether
from evolution_format import Ticks, TicksFormat, TicksV1, TicksV2, use

HERE = pathlib.Path(__file__).parent / "golden" / "evolution"

# The value each golden holds: v1 could hold milliseconds in int32 only.
VALUE = Ticks((1_700_000_000, 1_700_000_250, 1_700_000_500, 1_700_001_000, -5))
VALUE_V2 = Ticks((1_700_000_000_123, 1_700_000_000_500, 2**40, -(2**40)), "us")
# Long enough for zstd to pay, so the reader decompresses before it migrates the payload.
VALUE_LONG = Ticks(tuple(range(0, 40_000, 10)), "s")
GOLDENS = {
    "ticks_v1": (TicksV1, VALUE, {}),
    "ticks_v2": (TicksV2, VALUE_V2, {}),
    "ticks_v2_zstd": (TicksV2, VALUE_LONG, {"compression": "zstd"}),
    "ticks_v3": (TicksFormat, VALUE_V2, {}),
}

if __name__ == "__main__":
    HERE.mkdir(parents=True, exist_ok=True)
    for name, (fmt, value, kw) in GOLDENS.items():
        path = HERE / f"{name}.tthr"
        if path.exists():
            continue  # never regenerate
        use(fmt)
        path.write_bytes(tether.dumps(value, format="ticks", checksum="crc32", **kw))
        print("wrote", path)
    use(TicksFormat)
