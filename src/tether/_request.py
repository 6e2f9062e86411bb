"""The checked options of one encode, shared by :func:`tether.encode` and the stream writer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from . import _transport
from ._errors import ValidationError
from .frame import checksum as _checksum


@dataclass(frozen=True, slots=True)
class Request:
    """The checked options of one encode: what :func:`tether.encode` takes, validated once.

    Examples
    --------
    >>> Request.of(checksum="crc32", transport="disk").checksum
    2
    """

    format: str = "auto"
    compression: str = "none"
    level: int | None = None
    metadata: Mapping[str, Any] | None = None
    checksum: int = -1  # frame.checksum.requested(): -1 is "auto"
    transport: str = "memory"
    bandwidth: float | None = None
    lineage: Sequence[Mapping[str, Any]] | None = None
    options: Mapping[str, Any] | None = None

    @classmethod
    def of(cls, *, checksum: Any = "auto", transport: Any = "memory", metadata: Any = None, format: Any = "auto",
           **rest: Any) -> Request:
        """Validate ``encode``'s keyword options."""
        _transport.check(transport)
        kind = _checksum.requested(checksum)
        if metadata is not None and not isinstance(metadata, Mapping):
            raise ValidationError(f"metadata must be a mapping of str to values, got {type(metadata).__name__}.")
        if not isinstance(format, str):
            raise ValidationError(f"format must be a str, got {type(format).__name__}.")
        return cls(format=format, checksum=kind, transport=transport, metadata=metadata, **rest)
