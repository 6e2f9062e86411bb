"""Where a frame goes: the transports every policy (checksums, compression, format choice) keys on."""

from __future__ import annotations

from ._errors import ValidationError

TRANSPORTS = ("memory", "shm", "network", "disk", "stream")
# Transports where a frame leaves this process's memory: large payloads get
# checksums, and compression or a more compact format may pay for itself.
LEAVING = frozenset(("network", "disk", "stream"))


def check(transport: object) -> str:
    """Return ``transport`` when it is valid, else raise a ValidationError listing the choices.

    Examples
    --------
    >>> check("shm")
    'shm'
    """
    if type(transport) is not str or transport not in TRANSPORTS:
        raise ValidationError(f"Invalid transport {transport!r}. Valid options are: {', '.join(TRANSPORTS)}.")
    return transport
