"""Handlers for beam/test/tether_bytes_test.exs: what a marked binary arrives as, and frames returned as bytes."""

from __future__ import annotations

import tether


def kind(value):
    """The argument's Python type name and its bytes (a decoded value's repr when it is not a binary)."""
    if isinstance(value, (bytes, memoryview)):
        return (type(value).__name__, bytes(value), isinstance(value, memoryview) and value.readonly)
    return (type(value).__name__, repr(value).encode(), False)


def frame_of(value):
    """``value`` written as an etf frame, returned as the frame's bytes."""
    return tether.dumps(value, format="etf", reader="beam")


def raw_frame(n):
    """A raw frame of ``n`` bytes of payload, returned as bytes (64 KiB and over: sent embedded)."""
    return tether.dumps(b"\x5a" * n, format="raw", reader="beam")


def forward(blob):
    """The bytes received, returned as they came (a memoryview when large)."""
    return blob
