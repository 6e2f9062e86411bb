"""tether: move data between BEAM (Erlang/Elixir) and Python processes.

Framed, checked, zero-copy where the layout allows, with the right format
chosen automatically.

Examples
--------
>>> import tether, numpy as np
>>> frame = tether.dumps(np.arange(3, dtype="i8"))
>>> tether.inspect(frame).format
'ndarray'
>>> tether.loads(frame)
array([0, 1, 2])
"""

import logging

# A library leaves log output to the application: without a handler of its
# own, Python would print tether's warnings through its last-resort handler.
logging.getLogger("tether").addHandler(logging.NullHandler())

from ._version import __version__

from . import arrow, compression, etf, formats, frame, metrics, schemas, shm, stream, types
from ._api import dump_into, dumps, encode, inspect, loads, verify
from ._buildinfo import BuildInfo, build_info
from ._errors import (
    ChecksumError,
    ColumnError,
    DecodeError,
    EncodeError,
    FallbackWarning,
    LimitError,
    LossyConversionWarning,
    MappingError,
    RegionError,
    StreamError,
    TetherError,
    TruncatedError,
    UnsupportedFormatError,
    UnsupportedVersionError,
    UntrustedPickleError,
    ValidationError,
)
from ._limits import Limits, get_limits, set_limits
from ._select import Decision, last_decision
from .types import register_type
from .frame import Encoded, FrameInfo
from ._types import Atom, BitBinary, FrozenList, FrozenMap, ImproperList, OpaqueTerm, Pid, Port, Reference

__all__ = [
    "Atom",
    "BitBinary",
    "BuildInfo",
    "ChecksumError",
    "ColumnError",
    "Decision",
    "DecodeError",
    "EncodeError",
    "Encoded",
    "FallbackWarning",
    "FrameInfo",
    "FrozenList",
    "FrozenMap",
    "ImproperList",
    "LimitError",
    "Limits",
    "LossyConversionWarning",
    "MappingError",
    "OpaqueTerm",
    "Pid",
    "Port",
    "Reference",
    "RegionError",
    "StreamError",
    "TetherError",
    "TruncatedError",
    "UnsupportedFormatError",
    "UnsupportedVersionError",
    "UntrustedPickleError",
    "ValidationError",
    "__version__",
    "arrow",
    "build_info",
    "compression",
    "dump_into",
    "dumps",
    "encode",
    "etf",
    "formats",
    "frame",
    "get_limits",
    "inspect",
    "last_decision",
    "loads",
    "metrics",
    "register_type",
    "schemas",
    "set_limits",
    "shm",
    "stream",
    "types",
    "verify",
]

from . import _buildinfo  # noqa: E402

_buildinfo.announce()  # one INFO line on "tether.build" when CPython runs without the C speedups
