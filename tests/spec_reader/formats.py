"""Payload decoders for docs/format.md §4, one per format, from its table row alone."""

from __future__ import annotations

import math
import pickle
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.ipc

from . import etf
from .frame import Frame, SpecError, decompress, read_frame


def _raw(frame: Frame, data: bytes) -> Any:
    t = frame.type
    kind = t.get("kind")
    if kind not in ("bytes", "bytearray", "memoryview"):
        raise SpecError("raw", f"kind {kind!r}")
    if kind == "memoryview" and "itemformat" in t:
        return memoryview(data).cast(t["itemformat"], t["shape"])
    return {"bytes": bytes, "bytearray": bytearray, "memoryview": memoryview}[kind](data)


def _scalar(frame: Frame, data: bytes) -> Any:
    kind = frame.type.get("kind")
    if kind == "int":
        return int.from_bytes(data, "little", signed=True)
    if kind == "float":
        if len(data) != 8:
            raise SpecError("scalar", "a float is 8 bytes")
        return float(np.frombuffer(data, "<f8")[0])
    if kind == "bool":
        if data not in (b"\x00", b"\x01"):
            raise SpecError("scalar", "a bool is one byte 0 or 1")
        return data == b"\x01"
    if kind == "none":
        if data:
            raise SpecError("scalar", "none has an empty payload")
        return None
    if kind == "str":
        return data.decode("utf-8")
    raise SpecError("scalar", f"kind {kind!r}")


def numpy_dtype(descr: Any) -> np.dtype:
    """The numpy.lib.format descr as ETF carries it: a string, or a list of (name, descr[, shape]) tuples.

    A field named "" of a void type is padding (numpy.lib.format's rule): it
    takes its bytes but is no field.
    """
    if isinstance(descr, str):
        return np.dtype(descr)
    names, formats, offsets, pos = [], [], [], 0
    for item in descr:
        sub = numpy_dtype(item[1])
        if len(item) == 3:
            sub = np.dtype((sub, tuple(item[2])))
        if not (item[0] == "" and sub.kind == "V"):
            names.append(item[0])
            formats.append(sub)
            offsets.append(pos)
        pos += sub.itemsize
    return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": pos})


def _ndarray(frame: Frame, data: bytes) -> Any:
    t = frame.type
    dtype = numpy_dtype(t["dtype"])
    shape = tuple(t["shape"])
    order = t.get("order", "C")
    if order not in ("C", "F"):
        raise SpecError("ndarray", f"order {order!r}")
    count = math.prod(shape)
    if count * dtype.itemsize != len(data):
        raise SpecError("ndarray", f"{len(data)} bytes for {count} x {dtype.itemsize}")
    arr = np.frombuffer(data, dtype=dtype, count=count).reshape(shape, order=order)
    if "nx" in t:
        _check_nx(t["nx"], dtype)
    if t.get("scalar") is True:
        return arr[()]
    return arr


# §4 ndarray `nx`: [Kind, Bits] for little-endian dtypes Nx has; booleans are
# Nx's u8, and ["bf", 16] (a BEAM writer's bfloat16) is carried as "<u2" bits.
_NX_KIND = {"f": "f", "i": "s", "u": "u", "c": "c", "b": "u"}


def _check_nx(nx: list, dtype: np.dtype) -> None:
    kind, bits = nx
    if dtype.byteorder == ">":
        raise SpecError("ndarray", "nx on a big-endian dtype")
    if [kind, bits] == ["bf", 16] and dtype == np.dtype("<u2"):
        return
    if _NX_KIND.get(dtype.kind) != kind or dtype.itemsize * 8 != bits:
        raise SpecError("ndarray", f"nx {nx} does not describe {dtype}")


_FLOAT_ATOMS = {"nan": float("nan"), "infinity": float("inf"), "neg_infinity": float("-inf")}


def _floats(value: Any) -> Any:
    """§4 etf, `nan`: "atoms": the three atoms stand for floats wherever they are a value (not a map key)."""
    if isinstance(value, etf.SAtom):
        return _FLOAT_ATOMS.get(value.name, value)
    if isinstance(value, list):
        return [_floats(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_floats(v) for v in value)
    if isinstance(value, dict):
        return {k: _floats(v) for k, v in value.items()}
    return value


def _etf(frame: Frame, data: bytes) -> Any:
    t = frame.type
    value = etf.decode(data, binaries=t.get("binaries", "tagged"), none_atom=t.get("none_atom", "nil"))
    return _floats(value) if t.get("nan") == "atoms" else value


def _arrow(frame: Frame, data: bytes) -> Any:
    reader = pa.ipc.open_stream(pa.py_buffer(data))
    table = reader.read_all()
    t = frame.type
    for key in ("rows", "columns"):
        want = t.get(key)
        got = table.num_rows if key == "rows" else table.num_columns
        if isinstance(want, int) and want != got:
            raise SpecError("arrow", f"type {key} {want}, stream has {got}")
    if "fields" in t:
        fields = [(f.name, str(f.type), f.nullable) for f in table.schema]
        want = [(f["name"], f["type"], f["nullable"]) for f in t["fields"]]
        if fields != want:
            raise SpecError("arrow", f"fields {want} but the stream has {fields}")
    return table


def _pickle(frame: Frame, data: bytes) -> Any:
    t = frame.type
    buffers = [pickle.PickleBuffer(data[o : o + n]) for o, n in t.get("buffers", [])]
    for o, _ in t.get("buffers", []):
        if o % 64:
            raise SpecError("pickle", f"buffer offset {o} is not 64-byte aligned")
    return pickle.loads(data[: t["pickle_len"]], buffers=buffers)


def _sparse(frame: Frame, data: bytes) -> Any:
    t = frame.type
    comps = {}
    for c in t["components"]:
        if c["offset"] % 64:
            raise SpecError("sparse", f"component {c['name']} offset not aligned")
        dtype = np.dtype(c["dtype"])
        raw = data[c["offset"] : c["offset"] + c["nbytes"]]
        comps[c["name"]] = np.frombuffer(raw, dtype).reshape(tuple(c["shape"]))
    return {"layout": t["layout"], "shape": tuple(t["shape"]), "kind": t["kind"], "components": comps}


DECODERS = {
    "raw": _raw,
    "scalar": _scalar,
    "ndarray": _ndarray,
    "etf": _etf,
    "arrow": _arrow,
    "pickle": _pickle,
    "sparse": _sparse,
}


def decode_payload(frame: Frame) -> Any:
    """The value a frame holds, by its format's §4 rules, after §5 decompression."""
    data = decompress(frame)
    decoder = DECODERS.get(frame.format_name)
    if decoder is None:
        raise SpecError("format", f"no decoder for {frame.format_name!r}")
    return decoder(frame, data)


def loads(buf: bytes, verify: bool = True) -> Any:
    """read_frame + decode_payload: a spec-only tether.loads."""
    return decode_payload(read_frame(buf, verify=verify))
