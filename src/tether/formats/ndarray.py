"""ndarray: NumPy arrays with exact dtype, shape and memory order; zero-copy reads.

The payload is the array's elements in the recorded ``order`` ("C" or "F"),
contiguous, in the dtype's own byte order. For a BEAM reader
(``reader="beam"``) the order is always "C", whatever the array's layout: Nx
reads row-major, so an ``arr.T`` is written transposed in memory, with the
same values, and in native byte order: Nx reads native-endian binaries, so a
``>f4`` array is written as ``<f4`` (on a little-endian host), with the same
values and an Nx type. The dtype is stored as its
``numpy.lib.format`` descr (the one ``.npy`` files use), so structured,
nested, datetime and byte-swapped dtypes survive. ``nx`` carries the Nx type
(``["f", 32]`` is ``{:f, 32}``) where one exists.
"""

from __future__ import annotations

import functools
import math
import reprlib
import warnings
from typing import Any, Mapping

import numpy as np
from numpy.lib import format as npformat

from .. import frame, memory
from .._errors import DecodeError, EncodeError, LimitError, ValidationError
from .._buffers import Segment
from ._base import PLAIN_TYPES, DecodeContext, EncodeContext, Format, Payload

_NX_KIND = {"f": "f", "i": "s", "u": "u", "c": "c", "b": "u"}
# Arrays up to this size are written by the one-step writer (dumps_plain): the
# general path's machinery costs several times a small tensor's own bytes.
PLAIN_MAX = 64 << 10
_NDARRAY, _GENERIC = np.ndarray, np.generic  # auto_pick asks on every dumps: no attribute lookups
_PLAIN_KINDS = frozenset("biufcmM")  # plain dtypes: one descr string, no fields or subarrays
_INTP_MAX = int(np.iinfo(np.intp).max)  # the most elements (and the longest axis) NumPy can index


def nx_type(dtype: np.dtype) -> list[Any] | None:
    """The Nx type of ``dtype`` as ``[kind, bits]``, or None when Nx has no such type.

    Examples
    --------
    >>> nx_type(np.dtype("<f4")), nx_type(np.dtype("int64")), nx_type(np.dtype(">f4"))
    (['f', 32], ['s', 64], None)
    """
    kind = _NX_KIND.get(dtype.kind)
    if kind is None or dtype.fields is not None or dtype.subdtype is not None:
        return None
    if dtype.itemsize > 1 and dtype.byteorder == ">" or (dtype.byteorder == "=" and np.little_endian is False):
        return None  # Nx tensors are native (little) endian here
    bits = dtype.itemsize * 8
    if kind == "f" and bits not in (16, 32, 64):
        return None
    if kind == "c" and bits not in (64, 128):
        return None
    return [kind, bits]


def dtype_from_nx(kind: str, bits: int) -> np.dtype:
    """The little-endian NumPy dtype for an Nx type such as ``("f", 32)``.

    Examples
    --------
    >>> dtype_from_nx("s", 64)
    dtype('int64')
    >>> dtype_from_nx("bf", 16)
    Traceback (most recent call last):
    ...
    tether._errors.ValidationError: bfloat16 has no NumPy dtype; install ml_dtypes and convert, or send f32.
    """
    table = {"f": "f", "s": "i", "u": "u", "c": "c"}
    if kind == "bf" and bits == 16:
        raise ValidationError("bfloat16 has no NumPy dtype; install ml_dtypes and convert, or send f32.")
    if kind not in table or bits % 8:
        raise ValidationError(f"Unknown Nx type {{{kind}, {bits}}}. Valid kinds: f, s, u, c.")
    return np.dtype(f"<{table[kind]}{bits // 8}")


class NdarrayFormat(Format):
    id = 3
    name = "ndarray"
    option_keys = frozenset()
    intos = ("numpy", "bytes")
    auto_priority = 30

    def can_encode(self, obj: Any) -> bool:
        """NumPy arrays and scalars, except those of object dtype (Python objects: pickle's)."""
        return (type(obj) is np.ndarray or isinstance(obj, np.generic)) and not np.asarray(obj).dtype.hasobject

    def auto_pick(self, obj: Any, transport: str) -> tuple[str, int | None] | None:
        """Claim NumPy arrays and scalars that are not of object dtype; the size is ``nbytes``.

        Examples
        --------
        >>> FORMAT.auto_pick(np.float32(1.5), "pipe")
        ('numpy float32 array of shape ()', 4)
        >>> FORMAT.auto_pick(np.array([None]), "pipe") is None
        True
        """
        t = type(obj)
        if t is _NDARRAY or (t not in PLAIN_TYPES and isinstance(obj, _GENERIC)):
            arr = np.asarray(obj)
            if not arr.dtype.hasobject:  # object elements are Python objects: pickle takes them
                return _pick_reason(arr.dtype, arr.shape), arr.nbytes
        return None

    def dumps_plain(
        self, obj: Any, kind: int, transport: str, stamp: Mapping[str, Any] | None = None
    ) -> tuple[bytes, int] | None:
        """A whole plain frame around a small C-contiguous array and its payload size; None for anything else.

        The bytes :func:`tether.frame.build` would write (the general path
        writes a C-contiguous array as "C" for every reader), without its
        machinery; the type information is built once per dtype and shape.

        Examples
        --------
        >>> import numpy as np, tether
        >>> frame, size = FORMAT.dumps_plain(np.arange(4.0), -1, "memory")
        >>> size, tether.loads(frame).tolist()
        (32, [0.0, 1.0, 2.0, 3.0])
        """
        if type(obj) is not np.ndarray or obj.nbytes > PLAIN_MAX or not obj.flags.c_contiguous:
            return None
        dtype = obj.dtype
        if dtype.kind not in _PLAIN_KINDS or dtype.fields is not None or dtype.subdtype is not None:
            return None
        if not dtype.isnative:  # byte-swapped: a BEAM reader gets it swapped, which the general path does
            return None
        key = (dtype.str, obj.shape)
        info = _plain_info(*key)
        data = _byte_view(obj, "C")
        kind = frame.checksum.kind_for(kind, len(data), transport, False)
        return frame.plain(self, info, data, kind, type_key=key, stamp=stamp), len(data)

    def element_size(self, type_info: dict[str, Any]) -> int:
        """Plain numeric elements of 2 to 16 bytes shuffle well; anything else is left alone.

        Examples
        --------
        >>> FORMAT.element_size({"dtype": "<f4"}), FORMAT.element_size({"dtype": "|u1"})
        (4, 0)
        """
        descr = type_info.get("dtype")
        try:
            dtype = np.dtype(descr) if isinstance(descr, str) else None
        except TypeError:
            return 0
        if dtype is None or dtype.kind not in "iufcmM" or dtype.itemsize not in (2, 4, 8, 16):
            return 0
        return dtype.itemsize

    def encode(self, obj: Any, ctx: EncodeContext) -> Payload:
        """The array's bytes in C or Fortran order, whichever needs no copy (always C for the BEAM).

        A non-contiguous array is copied once, straight into the frame; so is a
        byte-swapped one for the BEAM, which reads native byte order.

        Examples
        --------
        >>> import tether
        >>> frame = tether.dumps(np.array([1.5, 2.5], dtype=">f4"), reader="beam")
        >>> tether.inspect(frame).type["nx"], tether.loads(frame).dtype.isnative
        (['f', 32], True)
        """
        if ctx.options:
            self.check_reader_versions(ctx.options)
        scalar = isinstance(obj, np.generic)
        arr = np.asarray(obj)
        if arr.dtype.hasobject:
            raise EncodeError("An object array has no ndarray form (its elements are Python objects): auto sends it "
                              "as pickle; with format=\"ndarray\", convert it to a numeric or string dtype first.")
        beam = ctx.options.get("reader") == "beam"
        dtype = arr.dtype.newbyteorder("=") if beam and _swapped(arr.dtype) else arr.dtype
        if arr.flags.c_contiguous or beam:
            order = "C"
        elif arr.flags.f_contiguous:
            order = "F"
        else:
            # One copy, in whichever order the strides already favour.
            order = "F" if arr.ndim > 1 and abs(arr.strides[0]) < abs(arr.strides[-1]) else "C"
        info = _type_info(dtype, arr.shape, order)
        if scalar:
            info["scalar"] = True
        p = Payload(info)
        if dtype == arr.dtype and (arr.flags.c_contiguous or (arr.flags.f_contiguous and order == "F")):
            if arr.nbytes:
                p.add(_byte_view(arr, order))
        else:
            def write(dest: memoryview, arr: np.ndarray = arr, order: str = order, dtype: np.dtype = dtype) -> None:
                out = np.frombuffer(dest, dtype=dtype, count=arr.size).reshape(arr.shape, order=order)
                np.copyto(out, arr, casting="equiv")  # "equiv": the same values, byte order aside

            if memory.low_peak(arr.nbytes):  # a compressor then reads slices, never a whole copy
                p.add(memory.Chunked(arr.nbytes, write, functools.partial(_slices, arr, order, dtype=dtype)))
            else:
                p.add(Segment(arr.nbytes, write))
        return p

    def decode(self, payload: memoryview, type_info: dict[str, Any], ctx: DecodeContext) -> Any:
        """A read-only array over the payload (no copy unless ``copy=True``), or its bytes for ``into="bytes"``.

        Examples
        --------
        >>> import tether
        >>> arr = tether.loads(tether.dumps(np.arange(3.0)))
        >>> arr.tolist(), arr.flags.writeable
        ([0.0, 1.0, 2.0], False)
        """
        dtype, shape, order = parse_type_info(type_info)
        count = math.prod(shape)
        expected = count * dtype.itemsize
        if len(payload) != expected:
            raise DecodeError(
                f"ndarray payload has {len(payload)} bytes, but dtype {dtype} and shape {tuple(shape)} "
                f"need {expected}."
            )
        if ctx.into == "bytes":
            return bytes(payload)
        if dtype.itemsize == 0 or count == 0:
            arr = _no_bytes(dtype, shape, order, count)
        else:
            arr = np.frombuffer(payload, dtype=dtype, count=count).reshape(shape, order=order)
            if ctx.copy:
                arr = arr.copy(order="K")
        if not ctx.copy:
            arr.flags.writeable = False
        if type_info.get("scalar"):
            return arr[()]
        return arr

    def describe(self, type_info: dict[str, Any]) -> dict[str, Any]:
        """The dtype, shape, Nx type (where there is one) and memory order.

        Examples
        --------
        >>> FORMAT.describe({"dtype": "<f4", "shape": [2, 3], "order": "F", "nx": ["f", 32]})
        {'dtype': '<f4', 'shape': (2, 3), 'nx type': '{:f, 32}', 'order': 'F'}
        """
        out: dict[str, Any] = {"dtype": str(type_info.get("dtype")), "shape": tuple(type_info.get("shape", ()))}
        if "nx" in type_info:
            kind, bits = type_info["nx"]
            out["nx type"] = f"{{:{kind}, {bits}}}"
        out["order"] = type_info.get("order")
        return out


@functools.lru_cache(maxsize=256)
def _pick_reason(dtype: np.dtype, shape: tuple[int, ...]) -> str:
    """Why auto picked ndarray, per dtype and shape: formatting a dtype costs more than a small array's write."""
    return f"numpy {dtype} array of shape {shape}"


def _type_info(dtype: np.dtype, shape: tuple[int, ...], order: str) -> dict[str, Any]:
    """An array's type information (docs/format.md §4): descr, shape, order and, where one exists, the Nx type."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # descr drops dtype metadata; documented
        descr = npformat.dtype_to_descr(dtype)
    info: dict[str, Any] = {"dtype": descr, "shape": list(shape), "order": order}
    nx = nx_type(dtype)
    if nx is not None:
        info["nx"] = nx
    return info


@functools.lru_cache(maxsize=256)
def _plain_info(dtype_str: str, shape: tuple[int, ...]) -> dict[str, Any]:
    """The type information of a C-contiguous array of a plain dtype, built once per dtype and shape (never mutated)."""
    return _type_info(np.dtype(dtype_str), shape, "C")


def parse_type_info(type_info: dict[str, Any]) -> tuple[np.dtype, list[int], str]:
    """Validate and return (dtype, shape, order) from ndarray type information.

    Examples
    --------
    >>> parse_type_info({"dtype": "<f4", "shape": [2, 3], "order": "C"})
    (dtype('float32'), [2, 3], 'C')
    >>> parse_type_info({"dtype": "|O", "shape": [2]})
    Traceback (most recent call last):
    ...
    tether._errors.DecodeError: ndarray frame declares an object dtype; object arrays are only read from pickle frames.
    """
    descr = type_info.get("dtype")
    shape = type_info.get("shape")
    order = type_info.get("order", "C")
    dtype = _str_dtype(descr) if isinstance(descr, str) else _array_dtype(descr)
    if (
        not isinstance(shape, (list, tuple))
        or len(shape) > 64
        or not all(type(d) is int and 0 <= d <= _INTP_MAX for d in shape)
    ):
        raise DecodeError(f"ndarray frame has an invalid shape {_shown(shape)}: expected a list of at most 64 "
                          "ints in 0..2**63-1.")
    if order not in ("C", "F"):
        raise DecodeError(f"ndarray frame has invalid order {_shown(order)}: expected 'C' or 'F'.")
    return dtype, list(shape), order


@functools.lru_cache(maxsize=256)
def _str_dtype(descr: str) -> np.dtype:
    # Most frames name a plain dtype such as "<f4": parsing and checking it once per descr keeps small reads fast.
    return _array_dtype(descr)


def _array_dtype(descr: Any) -> np.dtype:
    """The dtype ``descr`` names, refused unless an array can have it: what no array has, no writer wrote.

    Examples
    --------
    >>> _array_dtype([["x", "<i4"], ["y", "<f8", [2]]])
    dtype([('x', '<i4'), ('y', '<f8', (2,))])
    >>> _array_dtype("<U0")
    Traceback (most recent call last):
    ...
    tether._errors.DecodeError: ndarray frame declares dtype '<U0', text of 0 characters, which no array has ...
    """
    try:
        dtype = npformat.descr_to_dtype(_lists_to_tuples(descr))
    except Exception as exc:  # numpy raises many kinds on a bad descr
        raise DecodeError(f"ndarray frame has an invalid dtype descr {_shown(descr)}: {exc}") from exc
    if dtype.hasobject:
        raise DecodeError("ndarray frame declares an object dtype; object arrays are only read from pickle frames.")
    if dtype.subdtype is not None:
        raise DecodeError(f"ndarray frame declares the subarray dtype {dtype}, which no array has (NumPy moves "
                          "a subarray's shape into the array's): the frame is damaged or forged.")
    if dtype.itemsize == 0 and dtype.kind in "SU":
        # np.zeros would make it one character long: a vast shape passes the payload check, then allocates.
        raise DecodeError(f"ndarray frame declares dtype {dtype.str!r}, text of 0 characters, which no array has "
                          f"(NumPy makes such arrays {dtype.str[:2]}1): the frame is damaged or forged.")
    return dtype


def _no_bytes(dtype: np.dtype, shape: list[int], order: str, count: int) -> np.ndarray:
    """An array of no bytes, for no elements or elements of no size (a struct without fields, ``V0``).

    :func:`_array_dtype` refused the dtypes NumPy widens (``<U0``, ``|S0``): ``np.zeros`` allocates
    ``count * dtype.itemsize``, nothing, whatever the shape, so no limit applies. Past intp elements
    NumPy's own count overflows without an error (to 0, or negative): no writer has such an array.
    """
    if count > _INTP_MAX:
        raise LimitError(f"ndarray frame declares dtype {dtype} and shape {tuple(shape)}: {count} elements, more "
                         f"than NumPy can index ({_INTP_MAX}); the frame is damaged or forged.")
    return np.zeros(shape, dtype=dtype, order=order)


def _shown(value: Any) -> str:
    """``value`` for a message, cut short: metadata may be of any size or depth."""
    try:
        return reprlib.repr(value)
    except ValueError:  # an int past Python's digit limit has no repr
        return f"a {type(value).__name__} holding an int too long to print"


def _lists_to_tuples(descr: Any) -> Any:
    # Structured descrs are lists of (name, descr[, shape]) tuples; shapes are tuples.
    if isinstance(descr, list):
        return [tuple(_lists_to_tuples(x) for x in f) if isinstance(f, (list, tuple)) else f for f in descr]
    if isinstance(descr, tuple):
        return tuple(_lists_to_tuples(x) for x in descr)
    return descr


def _swapped(dtype: np.dtype) -> bool:
    """Whether a plain (not structured) dtype is in the other byte order than this host's."""
    return dtype.fields is None and dtype.subdtype is None and not dtype.isnative


def _slices(arr: np.ndarray, order: str, n: int, dtype: np.dtype | None = None) -> Any:
    """A non-contiguous array's elements in ``order``, as contiguous copies of about ``n`` bytes each.

    Slices run along the slowest axis of ``order`` (the first for C, the
    last for F), so their bytes follow one another as the whole array's would.

    Examples
    --------
    >>> a = np.arange(12).reshape(3, 4)[:, ::2]
    >>> b"".join(_slices(a, "C", 16)) == a.tobytes(order="C")
    True
    """
    outer = arr if order == "C" else arr.T  # C order of the transpose is F order of the array
    step = max(1, n // max(1, outer[:1].nbytes))
    for i in range(0, len(outer), step):
        yield memoryview(np.ascontiguousarray(outer[i : i + step], dtype=dtype)).cast("B")


def _byte_view(arr: np.ndarray, order: str) -> memoryview:
    """A flat uint8 view of a contiguous array's memory, without a copy."""
    flat = arr.ravel(order="K")  # memory order: a view for contiguous input
    if flat.dtype.itemsize == 0:
        return memoryview(b"")
    return memoryview(flat.view(np.uint8))


FORMAT = NdarrayFormat()
