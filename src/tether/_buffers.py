"""Buffers: allocating frames, writing payload parts into them, and reading any buffer as bytes.

Everything that touches raw memory outside a codec lives here: the bytes
allocator that lets ``dumps`` copy a payload once, the huge-page advice for
large frames, the bulk copy of the C extension, and the views ``loads``
reads from.
"""

from __future__ import annotations

import ctypes
import os
import platform
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ._errors import EncodeError, ValidationError

try:
    from . import _speedups
except ImportError:  # built without a compiler: memoryview copies
    _speedups = None

# Above this size payload copies go through the alignment-aware bulk copy.
BULK_MIN = 1 << 20


@dataclass(slots=True)
class Segment:
    """Part of a payload written by a function, for data that is not one contiguous buffer.

    ``write(dest)`` must fill exactly ``nbytes`` bytes of the writable memoryview ``dest``.

    Examples
    --------
    >>> seg = Segment(3, lambda dest: dest.__setitem__(slice(None), b"abc"))
    >>> bytes(join([memoryview(b"<"), seg, memoryview(b">")], 5))
    b'<abc>'
    """

    nbytes: int
    write: Callable[[memoryview], None]


def write_parts(dest: memoryview, pos: int, parts: Sequence[Any]) -> int:
    """Write buffers and :class:`Segment` writers back to back into ``dest[pos:]``; return the end."""
    for part in parts:
        n = part.nbytes
        if isinstance(part, Segment):
            part.write(dest[pos : pos + n])
        elif n >= BULK_MIN and _speedups is not None:
            _speedups.copy(dest, pos, part)
        else:
            dest[pos : pos + n] = part
        pos += n
    return pos


def join(parts: Sequence[Any], n: int) -> memoryview:
    """One contiguous buffer of ``n`` bytes from ``parts`` (a view when it already is one)."""
    if len(parts) == 1 and not isinstance(parts[0], Segment):
        return memoryview(parts[0])
    out = memoryview(bytearray(n))
    write_parts(out, 0, parts)
    return out


def text_offsets(offsets: Any, data: Any, start: int, length: int, wide: bool) -> int | None:
    """Where a string column's offsets fall back or split a character: -1 when nowhere, None without the C part.

    ``offsets[start : start + length + 1]`` are int64 when ``wide``, else
    int32; they must rise, stay within ``data``, and start every non-empty
    value on a character (never on a UTF-8 continuation byte). With one UTF-8
    check of the whole range they cover, that is what Arrow's full
    validation guarantees for the column, in one pass instead of one check a
    value. An offsets buffer too short answers 0.

    Examples
    --------
    >>> import numpy as np
    >>> text_offsets(np.array([0, 1, 3], np.int32), "aé".encode(), 0, 2, False) in (-1, None)
    True
    >>> text_offsets(np.array([0, 2, 3], np.int32), "aé".encode(), 0, 2, False) in (1, None)  # splits the é
    True
    """
    check = getattr(_speedups, "text_offsets", None)  # a build from before it: None, and the caller checks
    return None if check is None else check(offsets, data, start, length, wide)


def read_view(buf: Any) -> tuple[memoryview, Callable[[], None] | None]:
    """:func:`as_view` of ``buf``, and for a shared-memory region the check to run once the frame is read.

    A region's frame can be rewritten by a writer that reuses the region while
    a reader decodes or copies it; the check raises ``RegionError`` when that
    happened, so a torn read is never returned.

    Examples
    --------
    >>> view, recheck = read_view(b"ab")
    >>> view.nbytes, recheck is None
    (2, True)
    """
    if type(buf) is not bytes:
        read = getattr(buf, "__tether_read__", None)
        if read is not None:
            view, recheck = read()
            return as_view(view), recheck
    return as_view(buf), None


def as_view(buf: Any) -> memoryview:
    """A flat byte view of a frame buffer (bytes, mmap, memoryview, a shared-memory region...).

    Examples
    --------
    >>> as_view(b"ab").nbytes
    2
    """
    if type(buf) is bytes:  # the common case, without the attribute lookup that misses on bytes
        return memoryview(buf)
    region_view = getattr(buf, "__tether_buffer__", None)
    if region_view is not None:
        buf = region_view()
    try:
        mv = memoryview(buf)
    except TypeError:
        raise ValidationError(
            f"Expected bytes, memoryview, mmap or another buffer, got {type(buf).__name__}."
        ) from None
    if not mv.c_contiguous:  # an F-ordered view is contiguous, but its bytes are not the frame's order
        # Not bytes(buf): that copies an F-ordered view's elements row by row, which reorders a frame's bytes.
        raise ValidationError("A buffer to read must be C-contiguous (its bytes in order): pass the flat buffer "
                              "the frame was written to (bytes, bytearray, mmap or a 1-D memoryview).")
    if mv.format != "B" or mv.ndim != 1:
        mv = mv.cast("B")
    return mv


def flat_bytes(value: Any) -> memoryview:
    """A value's bytes as one flat view, in row-major order: copied only when they are not laid out so.

    A strided or Fortran-ordered buffer (``memoryview(arr.T)``) is written as
    its elements read row by row, which is what a reader casting the bytes
    back to the value's shape expects.

    Examples
    --------
    >>> import numpy as np
    >>> bytes(flat_bytes(memoryview(np.arange(4, dtype=np.uint8).reshape(2, 2).T)))
    b'\\x00\\x02\\x01\\x03'
    >>> flat_bytes(b"ab").obj
    b'ab'
    """
    mv = memoryview(value)
    if mv.nbytes == 0 and mv.ndim > 1:
        # memoryview.cast refuses zeros in a shape, so a reader could not give this shape back either.
        raise EncodeError(f"An empty {mv.ndim}-d view (shape {mv.shape}) has no raw form: send it as a NumPy array "
                          "(np.asarray(view)), or let format=\"auto\" pick.")
    if not mv.c_contiguous:
        return memoryview(mv.tobytes())
    return mv if mv.format == "B" and mv.ndim == 1 else mv.cast("B")


# A frame's bytes object is allocated uninitialised and filled in place, so
# dumps copies the payload once instead of twice (bytearray -> bytes).
_BYTES_DIRECT = platform.python_implementation() == "CPython"
if _BYTES_DIRECT:
    _from_size = ctypes.pythonapi.PyBytes_FromStringAndSize
    _from_size.restype = ctypes.py_object
    _from_size.argtypes = (ctypes.c_void_p, ctypes.c_ssize_t)
    _BYTES_DATA_OFFSET = bytes.__basicsize__ - 1
_DIRECT_MIN = 1 << 16
# Faulting in fresh 4 KiB pages costs more than the copy itself; numpy asks for
# transparent huge pages on large arrays, and so do we for large frames.
_HUGE = 2 << 20
_MADV_HUGEPAGE = 14
try:
    _libc = ctypes.CDLL(None, use_errno=True)
    _madvise = _libc.madvise
    _madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    _madvise.restype = ctypes.c_int
except (OSError, AttributeError):  # pragma: no cover - not Linux/glibc
    _madvise = None


def advise_huge(addr: int, n: int) -> None:
    """Ask for transparent huge pages on the 2 MiB-aligned part of ``[addr, addr + n)`` (advice only)."""
    if _madvise is None or n < 2 * _HUGE or not hasattr(os, "sched_getaffinity"):
        return
    start = (addr + _HUGE - 1) & ~(_HUGE - 1)
    end = (addr + n) & ~(_HUGE - 1)
    if end > start:
        _madvise(start, end - start, _MADV_HUGEPAGE)  # failure is harmless


def new_bytes(n: int) -> tuple[Any, memoryview]:
    """A new object of ``n`` bytes and a writable view of it, to be filled before it is shared.

    The object is ``bytes`` on CPython for ``n`` of 64 KiB and more (written in
    place before anyone else sees it), a ``bytearray`` otherwise. Release the
    view before handing the object on.

    Examples
    --------
    >>> obj, view = new_bytes(3)
    >>> view[:] = b"abc"; view.release()
    >>> bytes(obj)
    b'abc'
    """
    if _BYTES_DIRECT and n >= _DIRECT_MIN:
        obj = _from_size(None, n)
        addr = id(obj) + _BYTES_DATA_OFFSET
        advise_huge(addr, n)
        raw = (ctypes.c_char * n).from_address(addr)
        return obj, memoryview(raw).cast("B")
    buf = bytearray(n)
    return buf, memoryview(buf)


def to_bytes(obj: Any) -> bytes:
    """``obj`` from :func:`new_bytes` as ``bytes`` (no copy when it already is)."""
    return obj if type(obj) is bytes else bytes(obj)
