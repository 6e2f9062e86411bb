"""arrow: tables, record batches, DataFrames and columnar Python data as an Arrow IPC stream.

The payload is a standard Arrow IPC *stream* (schema message, record batches,
end-of-stream marker), written straight into the frame: its size is measured
first with a ``MockOutputStream`` (no data copied), then the stream is written
once into the destination with a ``FixedSizeBufferWriter``. Reading opens the
stream over the frame's memory, so every column buffer is a zero-copy view.

What ``loads`` returns by default is what was dumped, recorded as
``type.source``:

=================  ==============================================
dumped             loaded
=================  ==============================================
pyarrow.Table      pyarrow.Table
RecordBatch        pyarrow.RecordBatch (one batch)
pandas DataFrame   pandas DataFrame
polars DataFrame   polars DataFrame
dict of columns    dict of lists, or of NumPy arrays where given
list of dicts      list of dicts
written by BEAM    pyarrow.Table
=================  ==============================================

``into=`` picks another: ``"arrow"``, ``"pandas"``, ``"polars"``, ``"pylist"``
or ``"numpy"`` (a dict of column arrays, zero-copy where a column has no nulls).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import pyarrow as pa

from .. import arrow as arrow_api
from .. import memory, schemas
from .._buffers import Segment
from .._errors import DecodeError, EncodeError, MappingError, ValidationError
from .._transport import LEAVING
from ._base import DecodeContext, EncodeContext, Format, Payload

# Below this many rows columnar data stays etf: measured in `tether bench`,
# ETF is faster than building an Arrow table for small data.
AUTO_MIN_ROWS = 256
# Lists of dicts go to Arrow only when the frame leaves the host (LEAVING):
# in memory ETF round-trips rows 1.7-4x faster at every size measured (16 to
# 262,144 rows), while Arrow frames are about half the size.
IPC_CODECS = ("lz4", "zstd")

# Under memory pressure Arrow's own compression works on record batches of about this many bytes:
# each buffer is compressed whole into a buffer of its own, so this bounds that temporary. Smaller
# batches compress worse (256 KiB: frames 2.6 % larger than 1 MiB, for no lower peak).
PRESSURE_BATCH = 1 << 20

SOURCES = ("table", "batch", "pandas", "polars", "columns", "rows")


def _write_stream(sink: Any, schema: pa.Schema, batches: list, options: pa.ipc.IpcWriteOptions) -> None:
    with pa.ipc.new_stream(sink, schema, options=options) as writer:
        for batch in batches:
            writer.write_batch(batch)


class _Collect:
    """A write-only file for ``pa.PythonFile`` that keeps what the IPC writer hands it until taken.

    Arrow hands large buffers over as zero-copy ``pa.Buffer`` views of the table.
    """

    closed = False

    def __init__(self) -> None:
        self.parts: list[Any] = []

    def write(self, data: Any) -> int:
        self.parts.append(data)
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> list[Any]:
        out, self.parts = self.parts, []
        return out


def _stream_pieces(schema: pa.Schema, batches: list, options: pa.ipc.IpcWriteOptions, n: int) -> Any:
    """The IPC stream as the writer produces it, a batch at a time (``n`` is unused: Arrow sets the pieces)."""
    sink = _Collect()
    with pa.ipc.new_stream(pa.PythonFile(sink, mode="w"), schema, options=options) as writer:
        for batch in batches:
            writer.write_batch(batch)
            yield from sink.take()
    yield from sink.take()  # the end-of-stream marker


def _low_peak(p: Payload, schema: pa.Schema, batches: list, options: pa.ipc.IpcWriteOptions, ipc_codec: str | None,
              size: int) -> Payload:
    """Under memory pressure: the stream is written straight into the frame, never into a buffer of its own.

    With Arrow's own compression the compressed size is measured first on a
    mock stream (compressing twice), in batches of about `PRESSURE_BATCH`
    bytes so Arrow's per-buffer compression buffers stay small; without it
    the payload can also be read piece by piece (:class:`tether.memory.Chunked`)
    by an outer compressor, never existing whole.
    """
    if ipc_codec:
        rows = max(1, sum(b.num_rows for b in batches) * PRESSURE_BATCH // max(1, size))
        batches = [b.slice(i, rows) for b in batches for i in range(0, b.num_rows, rows)] or batches
        p.type_info["batches"] = len(batches)

    def write(dest: memoryview, batches: list = batches) -> None:
        sink = pa.FixedSizeBufferWriter(pa.py_buffer(dest))
        _write_stream(sink, schema, batches, options)
        if sink.tell() != len(dest):  # a column changed between the measuring pass and this one
            raise EncodeError(f"the Arrow stream came out {sink.tell()} B on its second pass, {len(dest)} B on "
                              "its first; was the table changed while it was written?")

    if not ipc_codec:
        p.add(memory.Chunked(size, write, partial(_stream_pieces, schema, batches, options)))
        return p
    mock = pa.MockOutputStream()
    _write_stream(mock, schema, batches, options)
    memory.decide("dumps", f"memory pressure: Arrow IPC ({ipc_codec}) compressed twice in {len(batches)} batches, "
                  f"measured on a mock stream then written straight into the frame ({size} B → {mock.size()} B)",
                  path="arrow in place", codec=ipc_codec, nbytes=size, stored=mock.size(), batches=len(batches))
    p.add(Segment(mock.size(), write))
    return p


class ArrowFormat(Format):
    id = 5
    name = "arrow"
    option_keys = frozenset(("schema", "registry", "validate"))
    intos = ("arrow", "pandas", "polars", "pylist", "numpy")
    auto_priority = 40
    # A value that is not a table after all goes as rows, and the caller hears of it.
    fallback = "etf"
    fallback_warns = True

    def can_encode(self, obj: Any) -> bool:
        """Tables, record batches and pandas or polars DataFrames; :meth:`encode` also converts rows and columns."""
        return isinstance(obj, (pa.Table, pa.RecordBatch)) or arrow_api.is_dataframe(obj) is not None

    def auto_pick(self, obj: Any, transport: str = "memory") -> tuple[str, int | None] | None:
        """Claim tables, DataFrames and large columnar Python data for ``format="auto"``.

        Lists of dicts are claimed only when the frame leaves the host (``LEAVING`` transports), and
        columnar Python data only from ``AUTO_MIN_ROWS`` rows.

        Examples
        --------
        >>> import pyarrow as pa
        >>> FORMAT.auto_pick(pa.table({"id": [1, 2]}), "pipe")
        ('pyarrow Table with 2 rows', 16)
        >>> FORMAT.auto_pick([{"id": 1}, {"id": 2}], "pipe") is None  # two rows: etf takes them
        True
        """
        t = type(obj)
        if t is not dict and t is not list:  # only these are columnar Python data; a table is neither
            if isinstance(obj, (pa.Table, pa.RecordBatch)):
                return f"pyarrow {t.__name__} with {obj.num_rows} rows", obj.nbytes
            kind = arrow_api.is_dataframe(obj)
            return (f"{kind} DataFrame", None) if kind is not None else None
        shape = arrow_api.columnar_shape(obj)
        if shape is None or shape[1] < AUTO_MIN_ROWS:
            return None
        what, rows = shape
        if what == "list of dicts" and transport not in LEAVING:
            return None
        return f"{what} with {rows} rows (columnar; ≥ {AUTO_MIN_ROWS} rows go to Arrow)", None

    def inner_compression(self, compression: str, transport: str) -> tuple[str, str, str] | None:
        """Arrow compresses per buffer inside the IPC stream, so readers still get Arrow buffers.

        Examples
        --------
        >>> FORMAT.inner_compression("lz4", "memory")
        ('lz4', 'arrow-ipc/lz4', 'Arrow compresses per buffer inside the IPC stream')
        >>> FORMAT.inner_compression("gzip", "memory") is None  # not an IPC codec: the frame compresses
        True
        """
        codec = compression
        if compression == "auto":
            codec = "lz4" if transport in LEAVING else "none"
        if codec not in IPC_CODECS:
            return None
        return codec, f"arrow-ipc/{codec}", "Arrow compresses per buffer inside the IPC stream"

    def encode(self, obj: Any, ctx: EncodeContext) -> Payload:
        """An Arrow IPC stream of ``obj`` (see :func:`tether.arrow.to_table`), compressed inside when asked.

        Under ``format="auto"`` the conversion is strict, so a value Arrow would change falls
        back to etf instead.
        """
        self.check_reader_versions(ctx.options)
        source, table = arrow_api.to_table(obj, strict=ctx.auto)
        info: dict[str, Any] = {"source": source}
        if ctx.options.get("schema") is not None:
            if isinstance(table, pa.RecordBatch):
                table = pa.Table.from_batches([table])
            table, info["table_schema"] = schemas.for_write(table, ctx.options)
        if source == "columns":
            info["numpy_columns"] = [name for name, col in obj.items() if arrow_api.is_numpy(col)]
        ipc_codec = ctx.inner_compression
        options = pa.ipc.IpcWriteOptions(compression=ipc_codec) if ipc_codec else pa.ipc.IpcWriteOptions()
        if ipc_codec:
            info["ipc_compression"] = ipc_codec
        batches = table.to_batches() if isinstance(table, pa.Table) else [table]
        info["rows"] = table.num_rows
        info["batches"] = len(batches)
        info["schema"] = str(table.schema)
        info["fields"] = schemas.describe(table.schema)
        info["columns"] = list(table.schema.names)
        p = Payload(info)
        # A mock write measures the uncompressed stream without touching the data.
        mock = pa.MockOutputStream()
        _write_stream(mock, table.schema, batches, pa.ipc.IpcWriteOptions())
        if memory.low_peak(mock.size()):
            return _low_peak(p, table.schema, batches, options, ipc_codec, mock.size())
        if ipc_codec:
            # Only compressing tells the compressed size: compress once into a
            # buffer and hand the (smaller) result to the frame, rather than
            # twice. The buffer is sized for the worst case up front, so it is
            # never regrown and copied while Arrow writes into it.
            # (LZ4 and Zstd grow incompressible data by well under 1/128, plus
            # a length prefix, frame header and padding per buffer.)
            nbuf = sum(len(col.buffers()) for b in batches for col in b.columns)
            bound = mock.size() + mock.size() // 128 + 64 * nbuf + 4096
            buf = pa.allocate_buffer(bound)
            sink = pa.FixedSizeBufferWriter(buf)
            try:
                _write_stream(sink, table.schema, batches, options)
            except (pa.ArrowInvalid, OSError):  # a layout the bound missed: let the buffer grow
                grown = pa.BufferOutputStream()
                _write_stream(grown, table.schema, batches, options)
                p.add_temporary(memoryview(grown.getvalue()))
                return p
            p.add_temporary(memoryview(buf)[: sink.tell()], allocated=buf.size)  # sized for the worst case
            return p

        def write(dest: memoryview, schema: pa.Schema = table.schema, batches: list = batches) -> None:
            _write_stream(pa.FixedSizeBufferWriter(pa.py_buffer(dest)), schema, batches, options)

        p.add(Segment(mock.size(), write))
        return p

    def decode(self, payload: memoryview, type_info: dict[str, Any], ctx: DecodeContext) -> Any:
        """The table, validated, in the form it was written from (or ``into=``).

        ``options={"validate": "full"}`` also checks every offset and UTF-8 string: ask for it on
        frames from untrusted sources.

        Examples
        --------
        >>> import tether
        >>> frame = tether.dumps({"id": [1, 2]}, format="arrow")
        >>> tether.loads(frame, into="pylist", options={"validate": "full"})
        [{'id': 1}, {'id': 2}]
        """
        into = ctx.into
        validate = ctx.options.get("validate", "basic")
        if validate not in ("basic", "full"):
            raise ValidationError(f"Invalid validate {validate!r}. Valid options are: basic, full.")
        source = type_info.get("source", "table")
        target = into or {"table": "arrow", "batch": "batch", "pandas": "pandas", "polars": "polars",
                          "columns": "columns", "rows": "pylist"}.get(source, "arrow")
        try:
            buf = pa.py_buffer(payload)
            if ctx.copy and target in KEEPS_BUFFERS:
                buf = pa.py_buffer(bytes(payload))  # the others copy in convert(), writable
            reader = pa.ipc.open_stream(buf)
            table = reader.read_all()
            # Structural checks are O(columns); full=True also checks every
            # offset and UTF-8 string, O(data): ask for it on untrusted frames.
            table.validate(full=validate == "full")
        except (pa.ArrowInvalid, pa.ArrowException, OSError) as exc:
            raise DecodeError(f"{ctx.frame_id}: the Arrow IPC stream is malformed: {exc}") from exc
        if isinstance(type_info.get("table_schema"), dict):
            table = schemas.for_read(table, type_info["table_schema"], ctx.options, ctx.frame_id)
        return convert(table, target, type_info, copy=ctx.copy)

    def describe(self, type_info: dict[str, Any]) -> dict[str, Any]:
        """Rows, batches, the source kind, inner compression, the registered schema and the fields.

        Examples
        --------
        >>> import pyarrow as pa, tether
        >>> tether.inspect(tether.dumps(pa.table({"id": [1, 2]}))).details["fields"]
        [{'name': 'id', 'type': 'int64', 'nullable': True}]
        """
        out: dict[str, Any] = {
            "rows": type_info.get("rows"),
            "batches": type_info.get("batches"),
            "source": type_info.get("source"),
        }
        if type_info.get("ipc_compression"):
            out["arrow compression"] = type_info["ipc_compression"]
        named = type_info.get("table_schema")
        if isinstance(named, dict):
            out["table schema"] = f"{named.get('name')} v{named.get('version')} (fingerprint {named.get('fingerprint')})"
        fields = type_info.get("fields")
        if isinstance(fields, list):
            # Structured: one {name, type, nullable} map per column, as the frame carries it.
            out["fields"] = [f for f in fields if isinstance(f, dict)]
        elif type_info.get("schema"):  # frames from before fields were written carry the schema as text
            out["schema"] = "\n" + "\n".join("    " + line for line in str(type_info["schema"]).splitlines())
        return out


# The targets that hand Arrow's buffers out as they are: copy=True copies the payload before reading it.
KEEPS_BUFFERS = ("arrow", "batch", "polars")


def convert(table: pa.Table, target: str, type_info: dict[str, Any] | None = None, *, copy: bool = False) -> Any:
    """``table`` in the Python form ``target`` names: an ``into=`` value, or ``"batch"``/``"columns"``.

    ``type_info`` (an arrow frame's) says which columns were NumPy arrays for ``"columns"``.
    ``copy`` makes pandas and NumPy results writable: Arrow hands its buffers to
    both read-only, so without it ``df.loc[0, "x"] = 1`` raises even on a copy.

    Examples
    --------
    >>> import pyarrow as pa
    >>> convert(pa.table({"a": [1, 2]}), "pylist")
    [{'a': 1}, {'a': 2}]
    """
    type_info = type_info or {}
    if target == "arrow":
        return table
    if target == "batch":
        return table.combine_chunks().to_batches()[0] if table.num_rows else pa.RecordBatch.from_pylist([], schema=table.schema)
    if target == "pandas":
        _need("pandas")
        # One block per column: no consolidation copy (the frame is equal either way).
        df = table.to_pandas(split_blocks=True)
        return df.copy(deep=True) if copy else df
    if target == "polars":
        pl = _need("polars")
        return pl.from_arrow(table)
    if target == "pylist":
        return table.to_pylist()
    if target == "numpy":
        out = {}
        for name, col in zip(table.column_names, table.columns):
            out[name] = col.to_numpy(zero_copy_only=False) if col.null_count or col.num_chunks != 1 else _np(col)
            if copy and not out[name].flags.writeable:
                out[name] = out[name].copy()
        return out
    if target == "columns":
        numpy_cols = set(type_info.get("numpy_columns", ()))
        return {
            name: ((_np(col).copy() if copy else _np(col)) if name in numpy_cols and not col.null_count
                   else col.to_pylist())
            for name, col in zip(table.column_names, table.columns)
        }
    raise DecodeError(f"Unknown arrow target {target!r}.")  # pragma: no cover


def _np(col: pa.ChunkedArray) -> Any:
    try:
        return col.chunk(0).to_numpy(zero_copy_only=True) if col.num_chunks == 1 else col.to_numpy()
    except pa.ArrowInvalid:
        return col.to_numpy(zero_copy_only=False)


def _need(module: str) -> Any:
    try:
        return __import__(module)
    except ImportError:
        raise MappingError(
            f"into={module!r} needs {module}, which is not installed. Install it with: pip install 'tether[{module}]'"
        ) from None


FORMAT = ArrowFormat()
