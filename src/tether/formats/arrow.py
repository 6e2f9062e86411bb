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
pandas Series      pandas Series (name and index kept)
polars Series      polars Series
pyarrow Array      pyarrow Array
ChunkedArray       pyarrow ChunkedArray
dict of columns    dict of lists, or of NumPy arrays where given
list of dicts      list of dicts
written by BEAM    pyarrow.Table
=================  ==============================================

``into=`` picks another: ``"arrow"``, ``"pandas"``, ``"polars"``, ``"pylist"``
or ``"numpy"`` (a dict of column arrays, zero-copy where a column has no nulls).
A one-column value (a Series, an array) comes back as a column in each form: a
Series, a pyarrow array, a list of values, a NumPy array.
"""

from __future__ import annotations

import struct
from functools import partial
from typing import Any, Callable

import pyarrow as pa

from .. import arrow as arrow_api
from .. import memory, schemas
from .._buffers import Segment, text_offsets
from .._errors import DecodeError, EncodeError, LimitError, MappingError, TetherError, ValidationError
from .._transport import LEAVING
from . import _pandas_form
from ._arrow_cost import VIEW_TYPES, check_materialised
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

SOURCES = ("table", "batch", "pandas", "polars", "columns", "rows") + _pandas_form.ONE_COLUMN


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
        """Tables, record batches, pyarrow arrays, pandas or polars DataFrames and Series; :meth:`encode` also
        converts rows and columns."""
        return (isinstance(obj, (pa.Table, pa.RecordBatch, pa.Array, pa.ChunkedArray))
                or arrow_api.is_dataframe(obj) is not None or arrow_api.is_series(obj) is not None)

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
            if isinstance(obj, (pa.Array, pa.ChunkedArray)):
                return f"pyarrow {t.__name__} of {len(obj)} values", obj.nbytes
            kind = arrow_api.is_dataframe(obj)
            if kind is not None:
                return f"{kind} DataFrame", None
            kind = arrow_api.is_series(obj)
            return (f"{kind} Series", None) if kind is not None else None
        shape = arrow_api.columnar_shape(obj)
        if shape is None or shape[1] < AUTO_MIN_ROWS:
            return None
        what, rows = shape
        if what == "list of dicts" and transport not in LEAVING:
            return None
        return f"{what} with {rows} rows (columnar; ≥ {AUTO_MIN_ROWS} rows go to Arrow)", None

    def auto_pick_for(self, obj: Any, transport: str, reader: str) -> tuple[str, int | None] | None:
        """:meth:`auto_pick`, but Python rows and columns stay etf for the BEAM: it reads an Arrow frame only as
        its IPC bytes, and an etf one as the lists of maps or maps of lists they were. Tables and DataFrames
        still go as Arrow, as a worker's replies do.

        Examples
        --------
        >>> rows = [{"id": i} for i in range(300)]
        >>> FORMAT.auto_pick_for(rows, "stream", "python")[0], FORMAT.auto_pick_for(rows, "stream", "beam")
        ('list of dicts with 300 rows (columnar; ≥ 256 rows go to Arrow)', None)
        """
        if reader == "beam" and _etf_takes(obj):
            return None
        return self.auto_pick(obj, transport)

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
        if source in ("pandas_series", "polars_series"):
            info["series_name"] = obj.name
        if source in ("pandas", "pandas_series"):
            noted = _pandas_form.record(obj, table)
            if noted:
                info["pandas"] = noted
        if ctx.options.get("schema") is not None:
            if isinstance(table, pa.RecordBatch):
                table = pa.Table.from_batches([table])
            table, info["table_schema"] = schemas.for_write(table, ctx.options)
        if source == "columns":
            info["numpy_columns"] = [name for name, col in obj.items() if arrow_api.is_numpy(col)]
            # Dtypes Arrow alone gives back otherwise (str, bytes, object, byte-swapped, NaT-able): loads restores them.
            recorded = {name: obj[name].dtype.str for name in info["numpy_columns"]
                        if arrow_api.numpy_dtype_recorded(obj[name].dtype)}
            if recorded:
                info["numpy_dtypes"] = recorded
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
        """The table, fully validated, in the form it was written from (or ``into=``).

        By default (``options={"validate": "full"}``) every offset, dictionary
        index, string view and UTF-8 string is checked before anything reads the
        table: a frame whose checksums a hostile peer recomputed can then only
        raise a :class:`~tether.DecodeError`. That pass is O(data): measured at
        about 10.5 ms for a 4,000,000-row table (int64, float64, 5-letter utf8,
        bool), almost all of it in the string column.

        ``options={"validate": "basic"}`` checks only the structure (O(columns))
        and keeps ``loads`` O(1). Use it **only for frames from a writer you
        trust**: a corrupt offset or dictionary index in a frame read that way
        can crash the process (a segmentation fault) when the table is used.

        Whatever the mode, only metadata version V5 batches are read, compressed
        buffers inside the IPC stream may expand to at most
        ``Limits.max_uncompressed_size`` in all, and so may a conversion to a
        Python form (estimated from lengths first), every string in the schema
        (field names, time zones, metadata) must be UTF-8, and an error raised by
        pyarrow, pandas or polars (a polars panic too) becomes a
        :class:`~tether.DecodeError` whose message is cut to a few hundred characters.

        Examples
        --------
        >>> import tether
        >>> frame = tether.dumps({"id": [1, 2]}, format="arrow")
        >>> tether.loads(frame, into="pylist")
        [{'id': 1}, {'id': 2}]
        >>> tether.loads(frame, into="pylist", options={"validate": "basic"})  # a trusted writer only
        [{'id': 1}, {'id': 2}]
        """
        validate = ctx.options.get("validate", "full")
        if validate not in ("basic", "full"):
            raise ValidationError(f"Invalid validate {validate!r}. Valid options are: basic, full "
                                  "(the default; basic only for frames from a trusted writer).")
        source = type_info.get("source", "table")
        target = ctx.into or {"table": "arrow", "batch": "batch", "pandas": "pandas", "polars": "polars",
                              "columns": "columns", "rows": "pylist", "pandas_series": "pandas",
                              "polars_series": "polars"}.get(source, "arrow")
        table = _read_table(payload, ctx, copy=ctx.copy and target in KEEPS_BUFFERS, full=validate == "full")
        if isinstance(type_info.get("table_schema"), dict):
            table, type_info = _migrated(table, type_info, ctx)
        try:
            if target not in ("arrow", "batch"):  # those stay Arrow: views of the frame, nothing materialised
                check_materialised(table, target, ctx.limits.max_uncompressed_size, ctx.frame_id,
                                    numpy_columns=type_info.get("numpy_columns"),
                                    object_columns=_pandas_form.object_columns(target, type_info))
            if source in _pandas_form.ONE_COLUMN:
                return _pandas_form.one_column(table, target, type_info, partial(
                    convert, table, target, type_info, copy=ctx.copy, limit=ctx.limits.max_uncompressed_size))
            return convert(table, target, type_info, copy=ctx.copy, limit=ctx.limits.max_uncompressed_size)
        except (TetherError, *PASS_THROUGH):
            raise
        except BaseException as exc:  # polars panics (pyo3's PanicException) are BaseExceptions
            raise _typed(exc, f"{ctx.frame_id}: converting the Arrow table to {target}", target) from exc

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


def _migrated(table: pa.Table, type_info: dict[str, Any], ctx: DecodeContext) -> tuple[pa.Table, dict[str, Any]]:
    """The table migrated to the registered schema's newest version, and the frame's notes on its columns (pandas
    dtypes, NumPy columns) carried over to the columns as they are now."""
    written = table.schema
    info = type_info["table_schema"]
    read = schemas.for_read(table, info, ctx.options, ctx.frame_id)
    if read is table:  # neither migrated nor reordered
        return table, type_info
    table = read
    moved = schemas.renames(info["name"], info["version"], registry=ctx.options.get("registry")) \
        if isinstance(info.get("name"), str) and type(info.get("version")) is int else {}
    return _pandas_form.follow(table, type_info, written, moved)


def _etf_takes(obj: Any) -> bool:
    """Rows, or columns of lists: what etf writes as the BEAM's lists of maps and maps of lists. Columns of NumPy
    arrays (etf has no arrays) stay Arrow's.

    Examples
    --------
    >>> import numpy as np
    >>> _etf_takes([{"a": 1}]), _etf_takes({"a": [1]}), _etf_takes({"a": np.arange(2)})
    (True, True, False)
    """
    if type(obj) is list:
        return True
    return type(obj) is dict and all(type(col) is list for col in obj.values())


# The targets that hand Arrow's buffers out as they are: copy=True copies the payload before reading it.
KEEPS_BUFFERS = ("arrow", "batch", "polars")

# What a conversion may raise that is not about the data, and so is never turned into a DecodeError.
PASS_THROUGH = (KeyboardInterrupt, SystemExit, GeneratorExit)

# What is kept of a message from pyarrow or a DataFrame library: on a corrupt stream, pyarrow may quote
# bytes from past the end of a buffer (raw process memory) at any length.
SAID_MAX = 300


def _read_table(payload: memoryview, ctx: DecodeContext, *, copy: bool, full: bool) -> pa.Table:
    """The IPC stream in ``payload`` as a table: its inflation bounded, its field names and data validated."""
    try:
        buf = pa.py_buffer(bytes(payload) if copy else payload)  # copied: the others copy in convert(), writable
        _check_inflation(buf, ctx.limits.max_uncompressed_size, ctx.frame_id)
        table = pa.ipc.open_stream(buf).read_all()
        _check_text(table.schema, ctx.frame_id)
        # Structural checks are O(columns); full=True also checks every offset, dictionary index
        # and UTF-8 string, O(data): without it a hostile frame can crash the process later.
        table.validate()
        if full:
            _validate_data(table)
            _check_views(table, ctx.frame_id)
    except TetherError:
        raise
    except Exception as exc:  # pyarrow's own, OSError, and whatever else a corrupt stream provokes
        raise _typed(exc, f"{ctx.frame_id}: the Arrow IPC stream is malformed") from exc
    return table


# Plain string columns of at least this many values are checked by offsets and one UTF-8 pass over their
# data (text_offsets); smaller ones by pyarrow value by value, which costs less than setting that up.
FAST_TEXT_MIN = 4096
_TEXT_IDS = {pa.string().id: False, pa.large_string().id: True}  # by id: an extension type need not hash


def _validate_data(table: pa.Table) -> None:
    """``table.validate(full=True)``'s guarantee, its plain string columns checked in two passes, not per value.

    Measured on pyarrow 26 for a million short strings: 2.7 ms value by
    value, 0.4 ms this way. A chunk the fast check does not pass is left to
    pyarrow, whose verdict and message stand (the fast check is stricter: it
    also reads the bytes under null slots).
    """
    if table.num_rows < FAST_TEXT_MIN:
        table.validate(full=True)
        return
    for column in table.columns:
        wide = _TEXT_IDS.get(column.type.id)
        for chunk in column.chunks if wide is not None else ():
            if len(chunk) < FAST_TEXT_MIN or not _text_sound(chunk, wide):
                chunk.validate(full=True)
        if wide is None:
            column.validate(full=True)


def _text_sound(chunk: pa.Array, wide: bool) -> bool:
    """Whether a string chunk's offsets rise, stay in its data and split no character, and that data is UTF-8."""
    _, offsets, data = chunk.buffers()
    if offsets is None or data is None:
        return False
    if text_offsets(offsets, data, chunk.offset, len(chunk), wide) != -1:  # None too: the C part is missing
        return False
    fmt, width = ("=q", 8) if wide else ("=i", 4)
    first = struct.unpack_from(fmt, offsets, chunk.offset * width)[0]
    last = struct.unpack_from(fmt, offsets, (chunk.offset + len(chunk)) * width)[0]
    whole = pa.Array.from_buffers(pa.large_string(), 1, [None, pa.py_buffer(struct.pack("=qq", first, last)), data])
    try:
        whole.validate(full=True)  # one value: pyarrow's UTF-8 check over the whole range at once
    except pa.ArrowInvalid:
        return False
    return True


def _said(exc: BaseException) -> str:
    """What ``exc`` says, cut to ``SAID_MAX`` characters and with unprintable characters escaped.

    Examples
    --------
    >>> len(_said(ValueError("x" * 4000))), _said(ValueError("x" * 4000))[-8:]
    (307, 'x… (cut)')
    >>> _said(ValueError("bad\\x00"))
    'bad\\\\x00'
    """
    text = str(exc)
    shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text[:SAID_MAX])
    return shown if len(shown) <= SAID_MAX and len(text) <= SAID_MAX else f"{shown[:SAID_MAX]}… (cut)"


def _typed(exc: BaseException, where: str, target: str | None = None) -> TetherError:
    """The typed error for ``exc``, raised by pyarrow, pandas or polars on a bad table, with a bounded message."""
    if isinstance(exc, MemoryError):  # pa.ArrowMemoryError too
        return LimitError(f"{where}: out of memory: {_said(exc)}. Lower the sizes in tether.Limits, and report "
                          "this frame as a bug: a size in it was not bounded.")
    hint = (" If the frame is sound, load it with into='arrow' and convert the table yourself."
            if target not in (None, "arrow") else "")
    return DecodeError(f"{where}: {type(exc).__name__}: {_said(exc)}.{hint}")


def _check_text(schema: pa.Schema, where: str) -> None:
    """Every string in the schema (field names, time zones, metadata) must be UTF-8, as the Arrow format says.

    pyarrow decodes them only when asked, so a bad one would surface in the
    caller's code, far from the frame; polars panics on one.
    """
    _utf8(lambda: schema.metadata, "the metadata", where)
    stack: list[Any] = [schema.field(i) for i in range(len(schema))]
    while stack:  # explicit: the nesting depth is the frame's to choose
        field = stack.pop()
        name = _utf8(lambda: field.name, "a field name", where)
        _utf8(lambda: field.metadata, f"the metadata of field {name!r}", where)
        t = field.type
        while isinstance(t, (pa.DictionaryType, pa.BaseExtensionType)):
            t = t.value_type if isinstance(t, pa.DictionaryType) else t.storage_type
        if isinstance(t, pa.TimestampType):
            _utf8(lambda: t.tz, f"the time zone of field {name!r}", where)
        stack.extend(t.field(i) for i in range(t.num_fields))


def _utf8(get: Callable[[], Any], what: str, where: str) -> Any:
    """What ``get()`` returns, checked as UTF-8: a str pyarrow decodes when asked, or a metadata dict of bytes."""
    try:
        value = get()
        for key, item in value.items() if isinstance(value, dict) else ():
            key.decode("utf-8"), item.decode("utf-8")
        return value
    except UnicodeDecodeError as exc:
        raise DecodeError(f"{where}: {what} in the Arrow schema is not UTF-8, as the Arrow format requires "
                          f"({exc.reason} at byte {exc.start} of {_said(repr(exc.object))}); the frame is corrupt."
                          ) from None


# String and binary views (pyarrow 16 on); a pyarrow without them cannot read a frame holding them.
_VIEW_INLINE = 12  # a view of at most this many bytes holds them itself; a longer one points into a data buffer


def _check_views(table: pa.Table, where: str) -> None:
    """Check the views of null slots too: full validation skips them, and a cast (to pandas) reads them.

    Measured on pyarrow 26: a null slot whose view claims -2**31 bytes passes
    ``validate(full=True)`` and then crashes the process in
    ``cast(large_string)``. O(rows) of the view columns only, vectorized; nothing
    for a table without views.
    """
    if not VIEW_TYPES or not any(_holds_views(t) for t in table.schema.types):
        return
    for column in table.columns:
        if _holds_views(column.type):
            for chunk in column.chunks:
                for array in _view_arrays(chunk):
                    _check_view_array(array, where)


def _holds_views(t: pa.DataType) -> bool:
    stack = [t]
    while stack:
        t = stack.pop()
        if t in VIEW_TYPES:
            return True
        if isinstance(t, pa.DictionaryType):
            stack.append(t.value_type)
        elif isinstance(t, pa.BaseExtensionType):
            stack.append(t.storage_type)
        else:
            stack.extend(t.field(i).type for i in range(t.num_fields))
    return False


def _view_arrays(array: pa.Array) -> Any:
    """The view arrays in ``array``, nested ones too (an explicit stack: the depth is the frame's)."""
    stack = [array]
    while stack:
        a = stack.pop()
        if a.type in VIEW_TYPES:
            yield a
        elif isinstance(a, pa.DictionaryArray):
            stack.append(a.dictionary)
        elif isinstance(a, pa.ExtensionArray):
            stack.append(a.storage)
        elif isinstance(a, (pa.StructArray, pa.UnionArray)):
            stack.extend(a.field(i) for i in range(a.type.num_fields))
        elif hasattr(a, "values") and _holds_views(a.type):  # lists, list views, maps, run-end encoded
            stack.append(a.values)


def _check_view_array(array: pa.Array, where: str) -> None:
    import numpy as np

    bufs = array.buffers()
    views = np.frombuffer(bufs[1], dtype="<i4").reshape(-1, 4)[array.offset : array.offset + len(array)]
    lengths = views[:, 0].astype(np.int64)
    long = views[lengths > _VIEW_INLINE].astype(np.int64)
    sizes = np.array([0 if b is None else b.size for b in bufs[2:]] or [0], dtype=np.int64)
    index, offset = long[:, 2], long[:, 3]
    inside = (index >= 0) & (index < len(bufs) - 2) & (offset >= 0)
    if (lengths < 0).any() or not inside.all() or (offset + long[:, 0] > sizes[np.where(inside, index, 0)]).any():
        raise DecodeError(f"{where}: a {array.type} column holds a view (a null slot's, which Arrow's own "
                          "validation skips) with a negative length or pointing outside its data buffers; "
                          "the frame is corrupt.")


# -- Arrow IPC metadata (format/Message.fbs), read only as far as bounding decompression needs.

_U16, _U32, _I32, _I64 = struct.Struct("<H"), struct.Struct("<I"), struct.Struct("<i"), struct.Struct("<q")
_BUFFER = struct.Struct("<qq")  # struct Buffer {offset: long; length: long}
_MESSAGE_HEADER_TYPE, _MESSAGE_HEADER = 1, 2  # Message: version, header_type, header, bodyLength, ...
_DICTIONARY_DATA = 1  # DictionaryBatch: id, data, isDelta
_BATCH_BUFFERS, _BATCH_COMPRESSION = 2, 3  # RecordBatch: length, nodes, buffers, compression, ...
_DICTIONARY_BATCH, _RECORD_BATCH = 2, 3  # members of the MessageHeader union
_STORED_AS_IS = -1  # a compressed body's buffer whose length prefix says it was not compressed
_DATA_MESSAGES = ("record batch", "dictionary")  # pyarrow's names for the messages that carry a body


class _Flat:
    """Bounds-checked reads of the FlatBuffers tables in one message's metadata.

    pyarrow verifies the metadata when it reads the message, but this reader
    trusts nothing: every position is checked before it is read or followed.
    """

    def __init__(self, data: memoryview, where: str):
        self.data, self.where = data, where

    def read(self, fmt: struct.Struct, pos: int) -> int:
        if not 0 <= pos <= len(self.data) - fmt.size:
            raise DecodeError(f"{self.where}: an offset in an Arrow IPC message's metadata points outside it "
                              f"({pos} of {len(self.data)} B); the frame is corrupt.")
        return fmt.unpack_from(self.data, pos)[0]

    def field(self, table: int, index: int) -> int | None:
        """Where field ``index`` of the table at ``table`` is stored; None when it is absent (its default)."""
        vtable = table - self.read(_I32, table)
        slot = 4 + 2 * index  # past the vtable's own size and the table's size
        if slot + 2 > self.read(_U16, vtable):
            return None
        offset = self.read(_U16, vtable + slot)
        return table + offset if offset else None

    def follow(self, pos: int) -> int:
        """The table or vector the offset stored at ``pos`` points to."""
        return pos + self.read(_U32, pos)

    def vector(self, pos: int, item_size: int) -> tuple[int, int]:
        """(first element, count) of the vector at ``pos``, whose elements are ``item_size`` bytes."""
        count = self.read(_U32, pos)
        if count > (len(self.data) - pos - 4) // item_size:
            raise DecodeError(f"{self.where}: a vector in an Arrow IPC message's metadata claims {count} "
                              "elements, more than the metadata holds; the frame is corrupt.")
        return pos + 4, count


def _compressed_buffers(message: Any, where: str) -> tuple[_Flat, int, int] | None:
    """``message``'s buffer list as (metadata, first, count) when its body is compressed; otherwise None."""
    flat = _Flat(memoryview(message.metadata), where)
    root = flat.read(_U32, 0)
    kind, header = flat.field(root, _MESSAGE_HEADER_TYPE), flat.field(root, _MESSAGE_HEADER)
    if kind is None or header is None:
        return None
    batch = flat.follow(header)
    kind = flat.data[kind]
    if kind == _DICTIONARY_BATCH:
        data = flat.field(batch, _DICTIONARY_DATA)
        if data is None:
            return None
        batch = flat.follow(data)
    elif kind != _RECORD_BATCH:
        return None
    buffers = flat.field(batch, _BATCH_BUFFERS)
    if flat.field(batch, _BATCH_COMPRESSION) is None or buffers is None:
        return None  # stored as is: every buffer is a view of the frame
    return (flat, *flat.vector(flat.follow(buffers), _BUFFER.size))


def _inflation(message: Any, where: str) -> int:
    """What Arrow allocates to decompress ``message``'s body: its buffers' uncompressed-length prefixes, summed.

    Each compressed buffer starts with its uncompressed length (8 bytes,
    little-endian; -1 when stored as is, and an empty buffer may omit it), and
    Arrow allocates that much before it decompresses: summing them bounds the
    allocation without decompressing anything.
    """
    found = _compressed_buffers(message, where)
    if found is None:
        return 0
    flat, first, count = found
    body = memoryview(message.body) if message.body is not None else memoryview(b"")
    total = 0
    for i in range(count):
        offset, length = _BUFFER.unpack_from(flat.data, first + i * _BUFFER.size)
        if length == 0:
            continue
        if offset < 0 or length < _I64.size or offset > len(body) - length:
            raise DecodeError(f"{where}: a compressed buffer of an Arrow IPC message lies outside its body "
                              f"(offset {offset}, {length} B, body {len(body)} B); the frame is corrupt.")
        size = _I64.unpack_from(body, offset)[0]
        if size < _STORED_AS_IS:
            raise DecodeError(f"{where}: a compressed buffer of an Arrow IPC message declares {size} "
                              "uncompressed bytes; the frame is corrupt.")
        total += max(size, 0)
    return total


def _check_version(message: Any, where: str) -> None:
    """Refuse a data message older than metadata version V5, the only one tether writes.

    Before V5 a batch could be compressed without a BodyCompression field,
    named only in the message's custom metadata (``ARROW:experimental_compression``):
    Arrow C++ still decompresses it, and :func:`_inflation` would not see it.
    """
    if message.type in _DATA_MESSAGES and message.metadata_version < pa.ipc.MetadataVersion.V5:
        raise DecodeError(f"{where}: an Arrow IPC {message.type} message has metadata version "
                          f"{message.metadata_version.name}; tether writes and reads V5 (Arrow 1.0 on) only. "
                          "Rewrite the stream with a current Arrow writer.")


def _check_inflation(buf: pa.Buffer, limit: int, where: str) -> None:
    """Refuse a stream whose compressed buffers would expand past ``limit`` in all, before Arrow decompresses any.

    Arrow's compression is inside the IPC stream: the frame header says
    "none", so the frame-level check of ``Limits.max_uncompressed_size`` never
    sees it. This reads only the messages' metadata (O(messages), no pass over
    the data), and for an uncompressed stream only a few fields of each.
    """
    total = 0
    for message in pa.ipc.MessageReader.open_stream(buf):
        if message.type == "schema":  # no body; pyarrow read the type from the same metadata
            continue
        _check_version(message, where)
        total += _inflation(message, where)
        if total > limit:
            raise LimitError(
                f"{where}: the Arrow IPC stream's compressed buffers expand to at least {total} bytes, over the "
                f"limit of {limit} (Limits.max_uncompressed_size); raise it with "
                "tether.set_limits(max_uncompressed_size=...) if such data is expected.")


def _no_list_views(table: pa.Table) -> pa.Table:
    """An empty table with its list views as lists: pyarrow aborts the process (a failed check in
    ChunkedArray, not an exception) converting an empty list-view column to pandas or NumPy."""
    schema = pa.schema([f.with_type(_listed(f.type)) for f in table.schema], metadata=table.schema.metadata)
    return table if schema.equals(table.schema) else table.cast(schema)


def _listed(t: pa.DataType) -> pa.DataType:
    if pa.types.is_list_view(t) or pa.types.is_list(t):
        return pa.list_(t.value_field.with_type(_listed(t.value_type)))
    if pa.types.is_large_list_view(t) or pa.types.is_large_list(t):
        return pa.large_list(t.value_field.with_type(_listed(t.value_type)))
    if pa.types.is_struct(t):
        return pa.struct([f.with_type(_listed(f.type)) for f in t])
    return t


def convert(table: pa.Table, target: str, type_info: dict[str, Any] | None = None, *, copy: bool = False,
            limit: int | None = None) -> Any:
    """``table`` in the Python form ``target`` names: an ``into=`` value, or ``"batch"``/``"columns"``.

    ``type_info`` (an arrow frame's) says which columns were NumPy arrays for ``"columns"``,
    and the dtypes Arrow alone would not give back. ``copy`` makes pandas and NumPy results
    writable: Arrow hands its buffers to both read-only, so without it ``df.loc[0, "x"] = 1``
    raises even on a copy. ``limit`` bounds the bytes the recorded dtypes may allocate, all
    columns together (default ``Limits.max_uncompressed_size``).

    Examples
    --------
    >>> import pyarrow as pa
    >>> convert(pa.table({"a": [1, 2]}), "pylist")
    [{'a': 1}, {'a': 2}]
    """
    type_info = type_info or {}
    if target == "arrow":
        return table
    if table.num_rows == 0:
        table = _no_list_views(table)
    if target == "batch":
        return table.combine_chunks().to_batches()[0] if table.num_rows else pa.RecordBatch.from_pylist([], schema=table.schema)
    if target == "pandas":
        _need("pandas")
        # One block per column: no consolidation copy (the frame is equal either way).
        df = _pandas_form.restore(table.to_pandas(split_blocks=True, types_mapper=_pandas_form.arrow_dtypes(table)),
                                  table, type_info.get("pandas"))
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
        dtypes = _recorded_dtypes(table, numpy_cols, type_info.get("numpy_dtypes"), limit)
        return {
            name: _numpy_back(name, col, dtypes.get(name), copy) if name in numpy_cols else col.to_pylist()
            for name, col in zip(table.column_names, table.columns)
        }
    raise DecodeError(f"Unknown arrow target {target!r}.")  # pragma: no cover


def _numpy_back(name: str, col: pa.ChunkedArray, dtype: Any, copy: bool) -> Any:
    """A column dumped as a NumPy array, as one again: of its recorded dtype (checked) when the frame has one.

    Frames from before dtypes were recorded, and dtypes Arrow gives back as
    they were, carry none: a column with nulls then comes back as a list, as it always did.
    """
    if dtype is None:
        if col.null_count:
            return col.to_pylist()
        return _np(col).copy() if copy else _np(col)
    import numpy as np

    if dtype.kind == "O":  # the elements as Python has them; fromiter keeps a list element whole
        return np.fromiter(col.to_pylist(), dtype=object, count=len(col))
    out = col.to_numpy(zero_copy_only=False) if col.null_count or col.num_chunks != 1 else _np(col)
    if out.dtype == dtype:
        return out.copy() if copy and not out.flags.writeable else out
    try:
        # Raise, not warn: a value the dtype cannot hold (a NaN as an integer) is a frame tether never writes.
        with np.errstate(all="raise"):
            return out.astype(dtype)
    except FloatingPointError as exc:
        raise DecodeError(f"The arrow frame's column {name[:80]!r} holds values its recorded NumPy dtype "
                          f"{dtype.str} cannot hold ({exc}); the frame is damaged.") from None


def _recorded_dtypes(table: pa.Table, numpy_cols: set, recorded: Any, limit: int | None) -> dict[str, Any]:
    """The checked dtype of each NumPy column that records one, their bytes bounded by ``limit`` in all.

    One running total for the whole frame: a bound per column would let N columns allocate N times the limit.
    """
    if not isinstance(recorded, dict):
        return {}
    if limit is None:
        from .._limits import get_limits

        limit = get_limits().max_uncompressed_size
    dtypes, total = {}, 0
    for name, col in zip(table.column_names, table.columns):
        if name not in numpy_cols or recorded.get(name) is None:
            continue
        dtypes[name] = dtype = _recorded_dtype(name, recorded[name])
        if dtype.itemsize == 0 and len(col):  # astype would size it to the longest value: unbounded
            raise DecodeError(f"The arrow frame records NumPy dtype {dtype.str} (0 bytes an item) for column "
                              f"{name[:80]!r} of {len(col)} rows, which tether never writes (NumPy makes "
                              "such a column <U1 or |S1); the frame is damaged.")
        total += len(col) * dtype.itemsize
        if total > limit:
            raise LimitError(f"The arrow frame's NumPy dtypes would allocate {total} bytes by column {name[:80]!r} "
                             f"({dtype.str}, {len(col)} rows), over the limit of {limit} "
                             "(Limits.max_uncompressed_size); raise it with "
                             "tether.set_limits(max_uncompressed_size=...) if such data is expected.")
    return dtypes


# The dtype kinds a frame records for a NumPy column (tether.arrow.numpy_dtype_recorded): anything else,
# byte-swapped numbers aside, is a damaged or hostile frame.
RECORDED_KINDS = "USOMm"


def _recorded_dtype(name: str, recorded: Any) -> Any:
    """The NumPy dtype a frame recorded for a column, checked: a kind tether records, no fields."""
    import numpy as np

    try:
        dtype = np.dtype(recorded) if type(recorded) is str else None
    except (TypeError, ValueError):
        dtype = None
    if (dtype is None or dtype.fields is not None or dtype.subdtype is not None
            or (dtype.kind not in RECORDED_KINDS and (dtype.isnative or dtype.kind not in "biuf"))):
        raise DecodeError(f"The arrow frame records NumPy dtype {str(recorded)[:40]!r} for column {name[:80]!r}, "
                          "which tether never writes; the frame is damaged.")
    return dtype


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
