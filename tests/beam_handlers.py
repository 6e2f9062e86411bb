"""Handlers the BEAM tests and the demo call through tether.worker."""

from __future__ import annotations

import os

import numpy as np


def add(a, b):
    return a + b


def echo(value):
    return value


def fail(message):
    raise ValueError(message.decode() if isinstance(message, bytes) else message)


def crash():
    os._exit(3)


def scale(tensor, factor):
    return np.asarray(tensor) * factor


def describe(value):
    kind = type(value).__name__
    if isinstance(value, np.ndarray):
        return (kind, str(value.dtype), list(value.shape), bool(value.flags.writeable))
    return (kind, len(value) if hasattr(value, "__len__") else None)


def rows(n):
    return [{"id": i, "name": f"row{i}", "score": i * 0.5} for i in range(n)]


def _private():
    return "never callable from BEAM"
