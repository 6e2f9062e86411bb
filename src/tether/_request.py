"""The checked options of one encode, shared by :func:`tether.encode` and the stream writer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence  # not typing's aliases: their isinstance costs a microsecond
from typing import Any, NamedTuple

from . import _transport
from ._errors import EncodeError, ValidationError
from .compression import check_reader as _check_compression_reader
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


def check_readable(format: str, reader: str) -> None:
    """A ValidationError when ``format`` is asked for and ``reader`` cannot read it (where auto lands: check_format).

    Examples
    --------
    >>> check_readable("pickle", "python")
    >>> check_readable("pickle", "beam")
    Traceback (most recent call last):
    ...
    tether._errors.ValidationError: format='pickle' cannot be read by reader='beam': the BEAM reads raw, ...
    """
    if format in UNREADABLE_FORMATS[reader]:
        raise ValidationError(
            f"format={format!r} cannot be read by reader={reader!r}: the BEAM reads raw, scalar, ndarray, "
            "etf and arrow frames. Use format='auto' or 'etf', or reader='python' for Python-only data."
        )


class Request(NamedTuple):
    """The checked options of one encode: what :func:`tether.encode` takes, validated once.

    A named tuple: built on every encode, so as cheap to make as a tuple.

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
    step: str | None = None

    @classmethod
    def of(cls, *, format: Any = "auto", compression: Any = "none", level: Any = None, metadata: Any = None,
           checksum: Any = "auto", transport: Any = "memory", bandwidth: Any = None, lineage: Any = None,
           options: Any = None, reader: Any = "python", parent: Any = None, step: Any = None) -> Request:
        """Validate ``encode``'s keyword options (``parent``'s lineage follows ``lineage``)."""
        _transport.check(transport)
        if type(options) is not dict:  # a dict is a mapping: the check is for anything else
            check_options(options)
        check_lineage(lineage)
        if parent is not None:
            lineage = [*(lineage or ()), *parent_lineage(parent)]
        if step is not None and (type(step) is not str or not step):
            raise ValidationError(f"step must be a non-empty str naming what this write is, got {step!r}.")
        kind = _checksum.requested(checksum)
        check_metadata(metadata)
        if not isinstance(format, str):
            raise ValidationError(f"format must be a str, got {type(format).__name__}.")
        check_readable(format, check_reader_name(reader))
        _check_compression_reader(compression, reader)
        # The fields in order, without the keyword-handling constructor (this runs on every dumps with options).
        return _new_request(cls, (format, compression, level, metadata, kind, transport, bandwidth, lineage, options,
                                  reader, step))


_new_request = tuple.__new__


def parent_lineage(parent: Any) -> list[Any]:
    """The lineage a ``parent=`` FrameInfo carries forward; a ValidationError for anything else.

    Examples
    --------
    >>> import tether
    >>> parent_lineage(tether.inspect(tether.dumps(1)))[0]["format"]
    'scalar'
    """
    trail = getattr(parent, "lineage", None)
    if not isinstance(trail, list):
        raise ValidationError(
            f"parent must be the FrameInfo of the frame the value came from (tether.loads(frame, with_info=True) "
            f"or tether.inspect(frame)), got {type(parent).__name__}."
        )
    return trail


def check_options(options: Any) -> None:
    """A ValidationError unless ``options`` (a format's extra settings, for encode or decode) is None or a mapping.

    Examples
    --------
    >>> check_options({"binaries": "str"})
    >>> check_options(["binaries"])
    Traceback (most recent call last):
    ...
    tether._errors.ValidationError: options must be a mapping of option names to values, got list.
    """
    if options is not None and not isinstance(options, Mapping):
        raise ValidationError(f"options must be a mapping of option names to values, got {type(options).__name__}.")


def check_metadata(metadata: Any) -> None:
    """A ValidationError unless ``metadata`` is None or a mapping (its keys and values are checked when encoded).

    Examples
    --------
    >>> check_metadata({"run": 7})
    >>> check_metadata("run 7")
    Traceback (most recent call last):
    tether._errors.ValidationError: metadata must be a mapping of str to values, got str.
    """
    if metadata is not None and type(metadata) is not dict and not isinstance(metadata, Mapping):
        raise ValidationError(f"metadata must be a mapping of str to values, got {type(metadata).__name__}.")


def check_lineage(lineage: Any) -> None:
    """A ValidationError unless ``lineage`` is None or a sequence of maps, one per earlier step.

    Examples
    --------
    >>> check_lineage([{"step": "load"}])
    >>> check_lineage([{"step": "load"}, "clean"])
    Traceback (most recent call last):
    ...
    tether._errors.ValidationError: lineage[1] must be a map of str to values (one earlier step), got str.
    """
    if lineage is None:
        return
    if type(lineage) is not list and (isinstance(lineage, (str, bytes)) or not isinstance(lineage, Sequence)):
        raise ValidationError("lineage must be a list of maps, one per earlier step (as FrameInfo.lineage "
                              f"holds), got {type(lineage).__name__}.")
    for i, entry in enumerate(lineage):
        if type(entry) is not dict and not isinstance(entry, Mapping):
            raise ValidationError(f"lineage[{i}] must be a map of str to values (one earlier step), "
                                  f"got {type(entry).__name__}.")


def check_reader_name(reader: Any) -> str:
    """``reader`` if it is one of :data:`READERS`; a ValidationError lists them otherwise."""
    if type(reader) is not str or reader not in READERS:
        raise ValidationError(f"Invalid reader {reader!r}. Valid options are: {', '.join(READERS)}.")
    return reader
