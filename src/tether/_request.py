"""The checked options of one encode, shared by :func:`tether.encode` and the stream writer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from . import _transport
from ._errors import EncodeError, ValidationError
from .compression import _policy as _compression_policy
from .frame import checksum as _checksum

# Who will read the frame: "python" reads every format and codec; "beam"
# (``tether:decode/1``) reads no pickle, and of the codecs only gzip.
READERS = ("python", "beam")
# Formats a reader cannot decode at all; ``format="auto"`` never lands on them for that reader.
UNREADABLE_FORMATS = {"python": (), "beam": ("pickle",)}


def check_format(name: str, reader: str, why: str = "") -> None:
    """Refuse a format ``reader`` cannot decode, saying why the value landed there (``why``) and what to do.

    Examples
    --------
    >>> check_format("etf", "beam")
    >>> check_format("pickle", "python")
    """
    if name in UNREADABLE_FORMATS[reader]:
        raise EncodeError(
            f"reader={reader!r} cannot read {name} frames{f' ({why})' if why else ''}. Send lists, maps, "
            "tuples, numbers, strings, bytes, arrays or tables (etf, raw, scalar, ndarray, arrow), or "
            "register a struct mapping with tether.etf.register_struct."
        )


@dataclass(frozen=True, slots=True)
class Request:
    """The checked options of one encode: what :func:`tether.encode` takes, validated once.

    Examples
    --------
    >>> Request.of(checksum="crc32", transport="disk").checksum
    2
    >>> Request.of(reader="beam", compression="auto").reader
    'beam'
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
    reader: str = "python"

    @classmethod
    def of(cls, *, checksum: Any = "auto", transport: Any = "memory", metadata: Any = None, format: Any = "auto",
           reader: Any = "python", compression: Any = "none", **rest: Any) -> Request:
        """Validate ``encode``'s keyword options."""
        _transport.check(transport)
        kind = _checksum.requested(checksum)
        if metadata is not None and not isinstance(metadata, Mapping):
            raise ValidationError(f"metadata must be a mapping of str to values, got {type(metadata).__name__}.")
        if not isinstance(format, str):
            raise ValidationError(f"format must be a str, got {type(format).__name__}.")
        check_reader_name(reader)
        if format in UNREADABLE_FORMATS[reader]:
            raise ValidationError(
                f"format={format!r} cannot be read by reader={reader!r}: the BEAM reads raw, scalar, ndarray, "
                "etf and arrow frames. Use format='auto' or 'etf', or reader='python' for Python-only data."
            )
        _compression_policy.check_reader(compression, reader)
        return cls(format=format, checksum=kind, transport=transport, metadata=metadata, reader=reader,
                   compression=compression, **rest)


def check_reader_name(reader: Any) -> str:
    """``reader`` if it is one of :data:`READERS`; a ValidationError lists them otherwise."""
    if type(reader) is not str or reader not in READERS:
        raise ValidationError(f"Invalid reader {reader!r}. Valid options are: {', '.join(READERS)}.")
    return reader
