"""sparse: scipy.sparse CSR, CSC and COO (arrays and matrices) and pydata ``sparse.COO``.

The payload is the matrix's component arrays back to back, each starting on
a 64-byte boundary (the payload itself starts on one), in the dtype each had:

======  =====================================================
layout  components, in payload order
======  =====================================================
csr     ``data`` (nnz), ``indices`` (nnz), ``indptr`` (rows + 1)
csc     ``data`` (nnz), ``indices`` (nnz), ``indptr`` (columns + 1)
coo     ``data`` (nnz), ``coords`` (ndim × nnz, row-major)
======  =====================================================

The type information records ``layout``, ``shape``, ``kind`` (what was
dumped: ``"scipy-array"``, ``"scipy-matrix"`` or ``"pydata"``) and per
component its ``name``, ``dtype`` (NumPy descr), ``shape``, ``offset`` and
``nbytes``; pydata frames add ``fill_value``, the value's bytes in the data
dtype (docs/format.md §4). Reading builds the same kind of object over
views of the frame: no component is copied. scipy and pydata sparse are
optional: this module imports neither until a frame or value needs one.
"""

from __future__ import annotations

import importlib
import math
import sys
from typing import Any

import numpy as np

from .._errors import (DecodeError, EncodeError, LimitError, LossyConversionWarning, MappingError, TetherError,
                       warn_at_caller)
from .._limits import get_limits
from ._base import PLAIN_TYPES, DecodeContext, EncodeContext, Format, Payload
from .ndarray import parse_type_info

ALIGN = 64  # every component starts on this boundary, as the payload does
LAYOUTS = {"csr": ("data", "indices", "indptr"), "csc": ("data", "indices", "indptr"), "coo": ("data", "coords")}
KINDS = ("scipy-array", "scipy-matrix", "pydata")
_PAD = bytes(ALIGN)
_INDEX_DTYPES = (np.dtype(np.int32), np.dtype(np.int64))  # what scipy's index arrays hold


def _kind(obj: Any) -> str | None:
    """Which supported sparse type ``obj`` is, without importing scipy or sparse."""
    sp = sys.modules.get("scipy.sparse")
    if sp is not None and sp.issparse(obj) and obj.format in LAYOUTS:
        return "scipy-array" if isinstance(obj, sp.sparray) else "scipy-matrix"
    pydata = sys.modules.get("sparse")
    if pydata is not None and isinstance(obj, getattr(pydata, "COO", ())):
        return "pydata"
    return None


def _other_scipy(obj: Any) -> bool:
    """Whether ``obj`` is a scipy sparse value in a layout frames do not carry (dok, lil, bsr, dia).

    A dok_matrix is a dict subclass: unclaimed here, etf would take it and it would come back a dict.
    """
    sp = sys.modules.get("scipy.sparse")
    return sp is not None and sp.issparse(obj) and obj.format not in LAYOUTS


def _components(obj: Any, kind: str) -> tuple[str, list[tuple[str, np.ndarray]]]:
    if kind == "pydata":
        return "coo", [("data", obj.data), ("coords", obj.coords)]
    layout = obj.format
    if layout == "coo":
        coords = obj.coords if hasattr(obj, "coords") else (obj.row, obj.col)
        return layout, [("data", obj.data), ("coords", np.stack(coords))]
    return layout, [("data", obj.data), ("indices", obj.indices), ("indptr", obj.indptr)]


class SparseFormat(Format):
    id = 7
    name = "sparse"
    option_keys = frozenset()
    intos = ("scipy", "pydata", "numpy")
    auto_priority = 35  # after ndarray: a sparse matrix is never an ndarray, so the order only saves a check
    fallback = "pickle"  # object-dtype entries are Python objects
    fallback_warns = True

    def can_encode(self, obj: Any) -> bool:
        """scipy.sparse CSR/CSC/COO arrays and matrices, and pydata ``sparse.COO``."""
        return _kind(obj) is not None

    def auto_pick(self, obj: Any, transport: str) -> tuple[str, int | None] | None:
        """Claim scipy.sparse CSR/CSC/COO and pydata ``sparse.COO`` values.

        Examples
        --------
        >>> import scipy.sparse
        >>> FORMAT.auto_pick(scipy.sparse.eye(3, format="csr"), "pipe")
        ('scipy-matrix sparse csr of shape (3, 3) with 3 stored values', None)
        """
        if type(obj) in PLAIN_TYPES:
            return None
        kind = _kind(obj)
        if kind is None:
            if _other_scipy(obj):
                return f"scipy sparse {obj.format} of shape {tuple(obj.shape)}, sent as csr", None
            return None
        return f"{kind} sparse {obj.format} of shape {tuple(obj.shape)} with {obj.nnz} stored values", None

    def encode(self, obj: Any, ctx: EncodeContext) -> Payload:
        """The stored values and index arrays as components, each 64-byte aligned, no dense copy.

        Little-endian for the BEAM (``reader="beam"``), which reads them as Nx tensors.
        """
        self.check_reader_versions(ctx.options)
        if _other_scipy(obj):
            warn_at_caller(f"A scipy sparse {obj.format} value is sent as csr (frames carry csr, csc and coo): it "
                           f"reads back as {type(obj).__name__.replace(obj.format, 'csr')}. Convert it with "
                           ".tocsr() first to silence this.", LossyConversionWarning)
            obj = obj.tocsr()
        kind = _kind(obj)
        if kind is None:
            raise MappingError(
                f"sparse takes scipy.sparse csr/csc/coo arrays and matrices and sparse.COO, not "
                f"{type(obj).__qualname__}. Convert it with .tocsr() (scipy) or sparse.COO(...) first."
            )
        if obj.dtype.hasobject:
            raise EncodeError("sparse values hold Python objects (dtype object); pickle takes them.")
        layout, parts = _components(obj, kind)
        p = Payload({"layout": layout, "shape": [int(d) for d in obj.shape], "kind": kind, "components": []})
        if kind == "pydata":
            # A sparse.COO is canonical once built (sorted, duplicates summed): readers need not redo it.
            # As the data dtype's bytes: NaN, infinities and complex values have no ETF number.
            p.type_info["fill_value"] = np.asarray(obj.fill_value, obj.dtype).tobytes()
        beam = ctx.options.get("reader") == "beam"
        for name, given in parts:
            arr = np.ascontiguousarray(given)
            if beam and arr.dtype.byteorder == ">":  # Nx tensors are little-endian
                arr = arr.astype(arr.dtype.newbyteorder("<"))
            p.type_info["components"].append({"name": name, "dtype": arr.dtype.str, "shape": list(arr.shape),
                                              "offset": p.nbytes, "nbytes": arr.nbytes})
            flat = arr.reshape(-1).view("u1") if arr.size else b""
            if arr is given:
                p.add(flat)
            else:  # made contiguous or little-endian: a copy
                p.add_temporary(flat)
            if p.nbytes % ALIGN:
                p.add(_PAD[: ALIGN - p.nbytes % ALIGN])
        return p

    def decode(self, payload: memoryview, type_info: dict[str, Any], ctx: DecodeContext) -> Any:
        """The sparse value as written (scipy or pydata), or as ``into=`` asks; ``"numpy"`` is dense.

        Examples
        --------
        >>> import scipy.sparse, tether
        >>> frame = tether.dumps(scipy.sparse.eye(3, format="csr"))
        >>> tether.loads(frame, into="numpy").tolist()
        [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
        """
        layout, shape, kind = type_info.get("layout"), type_info.get("shape"), type_info.get("kind")
        if layout not in LAYOUTS or kind not in KINDS or not isinstance(shape, list):
            raise DecodeError(f"{ctx.frame_id}: sparse type info names no known layout, kind and shape.")
        if not all(type(d) is int and d >= 0 for d in shape):
            raise DecodeError(f"{ctx.frame_id}: sparse shape {shape!r} is not a list of non-negative ints.")
        parts = _views(payload, type_info, layout, ctx)
        try:
            return self._assemble(parts, layout, shape, kind, type_info, ctx)
        except TetherError:
            raise
        except (ValueError, TypeError, IndexError, OverflowError) as exc:
            # scipy and sparse check the components against each other (index ranges, lengths).
            raise DecodeError(f"{ctx.frame_id}: the sparse {layout} components do not make a matrix of shape "
                              f"{shape}: {exc}") from exc

    def _assemble(self, parts: dict[str, np.ndarray], layout: str, shape: list[int], kind: str,
                  type_info: dict[str, Any], ctx: DecodeContext) -> Any:
        target = ctx.into or ("pydata" if kind == "pydata" else "scipy")
        _check_dtypes(parts, kind == "pydata" and target != "scipy", kind, ctx)
        if ctx.copy:
            parts = {name: arr.copy() for name, arr in parts.items()}
        if target == "numpy":
            dense = parts["data"].dtype.itemsize * math.prod(shape)
            if dense > get_limits().max_uncompressed_size:  # a few stored values may declare a vast shape
                raise LimitError(f"{ctx.frame_id}: into='numpy' would allocate {dense} bytes for shape {shape}, over "
                                 f"Limits.max_uncompressed_size ({get_limits().max_uncompressed_size}). Read it "
                                 "sparse (the default), or raise the limit with tether.set_limits.")
            value = _build(parts, layout, tuple(shape), kind, type_info)
            return value.todense() if kind == "pydata" else value.toarray()
        if target == "scipy" and kind == "pydata":
            kind = "scipy-array"
        elif target == "pydata" and kind != "pydata":
            return _need("sparse").COO.from_scipy_sparse(_build(parts, layout, tuple(shape), kind, type_info))
        return _build(parts, layout, tuple(shape), kind, type_info)

    def describe(self, type_info: dict[str, Any]) -> dict[str, Any]:
        """The kind, layout and shape, and each component's dtype and shape.

        Examples
        --------
        >>> import scipy.sparse, tether
        >>> tether.inspect(tether.dumps(scipy.sparse.eye(3, format="csr"))).details["components"]
        'data <f8 [3], indices <i4 [3], indptr <i4 [4]'
        """
        comps = type_info.get("components") or []
        return {
            "sparse": f"{type_info.get('kind')} {type_info.get('layout')} of shape {type_info.get('shape')}",
            "components": ", ".join(f"{c.get('name')} {c.get('dtype')} {c.get('shape')}" for c in comps
                                    if isinstance(c, dict)),
        }


def _views(payload: memoryview, type_info: dict[str, Any], layout: str, ctx: DecodeContext) -> dict[str, np.ndarray]:
    """Each component as a read-only view of the payload, every offset and size checked against it."""
    comps = type_info.get("components")
    names = LAYOUTS[layout]
    if not isinstance(comps, list) or [c.get("name") if isinstance(c, dict) else None for c in comps] != list(names):
        raise DecodeError(f"{ctx.frame_id}: a sparse {layout} frame has components {', '.join(names)}, in that order.")
    out = {}
    for c in comps:
        # A component is an array: the ndarray format's checks of dtype and shape apply as they are.
        try:
            dtype, shape, _ = parse_type_info({"dtype": c.get("dtype"), "shape": c.get("shape"), "order": "C"})
        except DecodeError as exc:
            raise DecodeError(f"{ctx.frame_id}: sparse component {c['name']!r}: {exc}") from exc
        offset, nbytes = c.get("offset"), c.get("nbytes")
        if type(offset) is not int or type(nbytes) is not int:
            raise DecodeError(f"{ctx.frame_id}: sparse component {c['name']!r} has no integer offset and size.")
        count = math.prod(shape)
        if offset < 0 or count * dtype.itemsize != nbytes or offset + nbytes > len(payload):
            raise DecodeError(f"{ctx.frame_id}: sparse component {c['name']!r} does not fit the payload "
                              f"({nbytes} B at offset {offset} of {len(payload)}, {dtype} {list(shape)}).")
        out[c["name"]] = np.frombuffer(payload, dtype, count=count, offset=offset).reshape(shape)
    return out


def _build(parts: dict[str, np.ndarray], layout: str, shape: tuple[int, ...], kind: str, info: dict[str, Any]) -> Any:
    if "coords" in parts:
        _check_coords(parts["coords"], shape)
    if kind == "pydata":
        return _need("sparse").COO(parts["coords"], parts["data"], shape=shape, sorted=True, has_duplicates=False,
                                   fill_value=_fill(info, parts["data"].dtype))
    sp = _need("scipy.sparse")
    parts = {**parts, "data": _native(parts["data"])}
    suffix = "array" if kind == "scipy-array" else "matrix"
    cls = getattr(sp, f"{layout}_{suffix}")
    if layout == "coo":
        coords = parts["coords"]
        value = cls((parts["data"], tuple(coords)), shape=shape, copy=False)
        built = value.coords[0] if hasattr(value, "coords") else value.row
        if _narrowed(built, coords):  # the values are checked: _check_coords
            if hasattr(value, "coords"):
                value.coords = tuple(coords)
            else:  # scipy before 1.13
                value.row, value.col = coords
        return value
    _check_indptr(parts["indptr"], parts["indices"], parts["data"], shape[0 if layout == "csr" else 1])
    value = cls((parts["data"], parts["indices"], parts["indptr"]), shape=shape, copy=False)
    if _narrowed(value.indices, parts["indices"]) and parts["indptr"].dtype == parts["indices"].dtype:
        value.indices, value.indptr = parts["indices"], parts["indptr"]
    # scipy checks only the lengths here; an index past the shape or a falling indptr would
    # make later reads go outside the arrays (a crash in C), so every index is checked once.
    value.check_format(full_check=True)
    return value


def _check_indptr(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, major: int) -> None:
    """Refuse an ``indptr`` that is not the running count of ``indices``: from 0, never falling, ending at their
    length. scipy trusts it (its full check skips a matrix whose last entry says it holds nothing), and reads
    and writes past the arrays by it: a negative last entry crashed the process in ``toarray()``.

    Examples
    --------
    >>> _check_indptr(np.array([0, 1, 3]), np.array([0, 0, 1]), np.ones(3), 2)
    >>> _check_indptr(np.array([0, 1, -3]), np.array([0, 0, 1]), np.ones(3), 2)
    Traceback (most recent call last):
    ...
    tether._errors.DecodeError: sparse indptr must rise from 0 to the 3 stored values, one entry per row or ...
    """
    n = len(indices)
    ok = (indptr.ndim == 1 and len(indptr) == major + 1 and len(data) == n and indptr[0] == 0 and indptr[-1] == n
          and bool((indptr[1:] >= indptr[:-1]).all()))  # not np.diff: it wraps, and 0, 2**31-1, -2 would pass
    if not ok:
        raise DecodeError(f"sparse indptr must rise from 0 to the {n} stored values, one entry per row or column "
                          f"and one more ({major + 1}); got {len(indptr)} entries from {indptr[:1].tolist()} to "
                          f"{indptr[-1:].tolist()} for {len(data)} values: the frame is damaged or forged.")


def _check_dtypes(parts: dict[str, np.ndarray], pydata: bool, kind: str, ctx: DecodeContext) -> None:
    """Refuse components the value cannot be built from: index arrays that are not integers, or data that
    scipy cannot hold when scipy builds it (``pydata``: pydata sparse builds it, which holds any dtype).

    scipy writes int32 or int64 indices and data of the dtypes it holds; pydata writes coords of any integer
    dtype and data of any dtype but object. Anything else loaded, then failed at first use, in scipy or sparse.
    """
    for name in LAYOUTS["csr"][1:] + LAYOUTS["coo"][1:]:
        if name in parts and parts[name].dtype.kind not in "iu":
            raise DecodeError(f"{ctx.frame_id}: sparse component {name!r} has dtype {parts[name].dtype.str}, "
                              "not an integer one (scipy writes int32 or int64, pydata any integer): the frame "
                              "is damaged or forged.")
    data = parts["data"].dtype
    if not pydata and not _scipy_holds(data):
        fix = ("read it as pydata (the default, or into='pydata')" if kind == "pydata"
               else "the frame is damaged or forged")
        raise DecodeError(f"{ctx.frame_id}: sparse component 'data' has dtype {data.str}, which scipy.sparse "
                          f"cannot hold (it holds bool, integer, float but float16, and complex values): {fix}.")


def _scipy_holds(dtype: np.dtype) -> bool:
    """Whether scipy.sparse holds values of ``dtype``, in either byte order (:func:`_native` makes it native).

    Examples
    --------
    >>> [_scipy_holds(np.dtype(d)) for d in ("?", ">u8", "<f2", "<f4", "<c16", "<M8[s]", "|S4")]
    [True, True, False, True, True, False, False]
    """
    return dtype.kind in "biuc" or (dtype.kind == "f" and dtype.itemsize > 2)


def _native(arr: np.ndarray) -> np.ndarray:
    """``arr`` in this host's byte order: scipy refuses others, which a writer on another host writes (a copy)."""
    return arr if arr.dtype.isnative else arr.astype(arr.dtype.newbyteorder("="))


def _narrowed(built: np.ndarray, written: np.ndarray) -> bool:
    """Whether scipy built index arrays of another dtype than the frame's int32 or int64 ones.

    scipy's matrix constructors copy int64 indices whose values fit into int32 arrays: a copy, and a dtype
    the writer did not have. Its formats take either width as it is, so the frame's own arrays (views, no
    copy) go back in; other dtypes (another width, a byte-swapped one) keep scipy's conversion.
    """
    return built.dtype != written.dtype and written.dtype.isnative and written.dtype in _INDEX_DTYPES


def _check_coords(coords: np.ndarray, shape: tuple[int, ...]) -> None:
    if coords.ndim != 2 or coords.shape[0] != len(shape):
        raise DecodeError(f"sparse coords have shape {coords.shape}; expected ({len(shape)}, nnz).")
    if coords.size and (coords.min() < 0 or (coords.max(axis=1) >= np.asarray(shape)).any()):
        raise DecodeError(f"sparse coords fall outside the shape {list(shape)}.")


def _fill(info: dict[str, Any], dtype: np.dtype) -> Any:
    raw = info.get("fill_value")
    if not isinstance(raw, bytes) or len(raw) != dtype.itemsize:
        return None  # pydata's default: zero of the dtype
    return np.frombuffer(raw, dtype)[0]


def _need(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        package = "scipy" if module.startswith("scipy") else "sparse"
        raise MappingError(
            f"this sparse frame needs {package}, which is not installed. Install it with: "
            f"pip install 'tether[{package}]'"
        ) from None


FORMAT = SparseFormat()
