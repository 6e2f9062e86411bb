"""Streams: data larger than memory as a sequence of bounded, checked frames.

A stream is ordinary tether frames written back to back. Each chunk frame sets
header flag bit 0 and carries a ``stream`` map in its metadata (stream id,
chunk number, offset); a final *end frame* records how many chunks and bytes
the stream holds and a digest chained over every chunk's payload checksum.
The byte layout is in docs/format.md, "Streams".

What a reader gets:

* **bounded memory**: one chunk is read and decoded at a time; values are
  views into that chunk's own buffer, which stays alive as long as they do;
* **completeness**: a missing, repeated, reordered or foreign chunk, or a
  stream that stops before its end frame, raises :class:`StreamError`;
  nothing a corrupted chunk holds is returned (each chunk's payload checksum
  is verified before it is decoded);
* **resumable checkpoints**: :meth:`StreamReader.checkpoint` says where a
  reader stands; a writer started with ``resume=`` continues the same stream
  from there (same id, numbering and digest), and a reader started with the
  same checkpoint accepts the continuation and checks the whole stream;
* **backpressure**: the writer never holds more than the chunk it is
  writing; a slow sink blocks :meth:`StreamWriter.write`, and so the producer;
* **compression** per chunk (``compression="auto"`` by default, chosen for
  the ``stream`` transport's bandwidth, or ``bandwidth=``).

Examples
--------
>>> import io, tether
>>> sink = io.BytesIO()
>>> with tether.stream.StreamWriter(sink, chunk_size=4) as w:
...     _ = w.write({"header": True})
...     _ = w.write_buffer(b"0123456789")
>>> reader = tether.stream.StreamReader(sink.getvalue())
>>> [bytes(v) if isinstance(v, memoryview) else v for v in reader]
[{'header': True}, b'0123', b'4567', b'89']
>>> reader.complete, reader.checkpoint().seq
(True, 4)
"""

from __future__ import annotations

import dataclasses
import io
import mmap
import operator
import os
import secrets
import selectors
import struct
import time
from typing import Any, Iterator, Mapping

import xxhash

from . import compression, formats, frame
from .compression import check_codec
from ._api import decode_read, prepare
from ._request import Request, check_metadata, check_readable
from ._buffers import as_view, flat_bytes, new_bytes, to_bytes
from ._errors import ChecksumError, LimitError, StreamError, TetherError, TruncatedError, ValidationError
from ._limits import get_limits
from .frame import HEADER_SIZE, Header
from .memory import CHUNK_SIZE  # StreamWriter's default chunk; memory owns it, as prefer_streaming advises it
from .metrics import core as _metrics

__all__ = ["Checkpoint", "StreamError", "StreamReader", "StreamWriter", "summarize_stream", "verify_stream"]

# Reading from a pipe, a frame's buffer starts at this much and doubles as bytes arrive.
_GROW_STEP = 1 << 20
_CHAIN = struct.Struct("<QQQ")
# Chunk numbers, byte offsets and digests are 64-bit on the wire (docs/format.md, "Streams").
_U64_END = 1 << 64
CHECKPOINT_KEYS = ("stream_id", "seq", "offset", "digest", "ended")
# A sink that takes no byte of a frame for this long (a non-blocking fd nothing drains, a write() that keeps
# returning 0) fails the chunk rather than hold its producer forever; any byte taken restarts the wait.
_STALL_SECONDS = 60.0


def _flag(value: Any) -> bool:
    """A stored checkpoint's ``ended``: None (absent), a bool, a NumPy bool or 0/1; TypeError for anything else."""
    if value is None:
        return False
    if isinstance(value, (str, bytes, float)):
        raise TypeError
    try:
        if value == 0 or value == 1:  # bool, numpy.bool_, and 0/1 ints
            return bool(value)
    except (TypeError, ValueError):  # an array's ambiguous truth, say
        pass
    raise TypeError


def _check_keys(data: Mapping[str, Any]) -> None:
    """Refuse keys a checkpoint does not have: a misspelt ``ended`` must not read as a stream still open."""
    unknown = [key for key in (data.keys() if isinstance(data, Mapping) else ()) if key not in CHECKPOINT_KEYS]
    if unknown:
        shown = ", ".join(repr(key)[:40] for key in unknown[:5])
        shown += f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise ValidationError(f"Not a stream checkpoint: unknown key(s) {shown}. A checkpoint has only "
                              f"{', '.join(CHECKPOINT_KEYS)}: pass what Checkpoint.as_dict() returned.")


def _chain(digest: int, seq: int, payload_checksum: int) -> int:
    # Chained over the payload checksums already in each header: no second
    # pass over the data, and the state is three integers a checkpoint holds.
    return xxhash.xxh3_64_intdigest(_CHAIN.pack(digest, seq, payload_checksum))


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """Where a stream stands: the next chunk number, the bytes before it, the digest so far.

    Store it with :meth:`as_dict` (plain ints, a str and a bool) and rebuild it
    with :meth:`from_dict`. ``ended`` marks the checkpoint of a complete stream
    (a writer's after :meth:`StreamWriter.close`, a reader's after the end
    frame): nothing can follow it, so ``resume=`` refuses it.

    Examples
    --------
    >>> cp = Checkpoint("ab" * 16, seq=3, offset=4096, digest=7)
    >>> Checkpoint.from_dict(cp.as_dict()) == cp
    True
    """

    stream_id: str
    seq: int = 0
    offset: int = 0
    digest: int = 0
    ended: bool = False

    def as_dict(self) -> dict[str, Any]:
        """The checkpoint as plain values, to store (JSON, a database row) until the stream resumes.

        Returns
        -------
        dict
            ``stream_id`` (str), ``seq``, ``offset`` and ``digest`` (ints), ``ended`` (bool).

        Examples
        --------
        >>> Checkpoint("ab" * 16, seq=3, offset=4096, digest=7).as_dict()["seq"]
        3
        """
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Checkpoint:
        """Rebuild a checkpoint from what :meth:`as_dict` returned.

        Parameters
        ----------
        data : Mapping
            Needs ``stream_id`` (a str, or ASCII bytes: a BEAM checkpoint read from an etf frame),
            ``seq``, ``offset`` and ``digest`` (each number in 0..2**64-1, as on the wire); ``ended`` is False when missing or None (checkpoints stored before
            it existed), and may be a NumPy bool or 0/1 (a table or a database without booleans).
            No other key is accepted: a misspelt ``ended`` would otherwise let a writer append
            after a stream's end.

        Returns
        -------
        Checkpoint

        Raises
        ------
        tether.ValidationError
            A key is missing or unknown, or a value is not a number or out of range.

        Examples
        --------
        >>> Checkpoint.from_dict({"seq": 3})
        Traceback (most recent call last):
        ...
        tether._errors.ValidationError: Not a stream checkpoint: KeyError('stream_id'). Pass what ...
        """
        try:
            fields = [data[name] for name in ("stream_id", "seq", "offset", "digest")]
        except (KeyError, TypeError) as exc:
            raise ValidationError(f"Not a stream checkpoint: {exc!r}. Pass what Checkpoint.as_dict() returned.") from None
        # A float or a bool here is a checkpoint someone edited or mangled: int() would round it into a resume
        # at the wrong place, which the chained digest then reports far from the cause.
        # operator.index: ints and integer types (NumPy's, from a checkpoint kept in a table), not floats;
        # bools apart, since index(True) is 1.
        if isinstance(fields[0], (bytes, bytearray, memoryview)) and bytes(fields[0]).isascii():
            # A BEAM checkpoint sent through tether (an etf frame): its binaries read as bytes.
            fields[0] = bytes(fields[0]).decode("ascii")
        try:
            if not isinstance(fields[0], str) or any(isinstance(v, bool) for v in fields[1:]):
                raise TypeError
            ended = _flag(data.get("ended"))
            cp = cls(fields[0], *(operator.index(v) for v in fields[1:]), ended)
        except TypeError:
            raise ValidationError(f"Checkpoint fields must be a str stream_id, int seq, offset and digest and a "
                                  f"bool ended, got {[type(v).__name__ for v in [*fields, data.get('ended')]]}. "
                                  "Pass what Checkpoint.as_dict() returned.") from None
        _check_keys(data)
        for name in ("seq", "offset", "digest"):
            if not 0 <= getattr(cp, name) < _U64_END:
                raise ValidationError(f"Checkpoint {name} must be in 0..2**64-1 (it is 64-bit on the wire), got "
                                      f"{getattr(cp, name)}. Pass what Checkpoint.as_dict() returned.")
        if len(cp.stream_id) != 32 or cp.stream_id.strip("0123456789abcdef"):
            raise ValidationError(f"Checkpoint stream_id must be 32 lowercase hex digits (a stream's id), "
                                  f"got {cp.stream_id!r}.")
        return cp

    @classmethod
    def of(cls, resume: Any) -> Checkpoint | None:
        """``resume=`` as a checkpoint: a :class:`Checkpoint`, what :meth:`as_dict` returned, or None.

        The checkpoint of a complete stream (``ended``) is refused: a chunk
        appended after an end frame would make the whole stream unreadable.

        Examples
        --------
        >>> Checkpoint.of({"stream_id": "ab" * 16, "seq": 2, "offset": 8, "digest": 5}).seq
        2
        >>> Checkpoint.of(3)
        Traceback (most recent call last):
        ...
        tether._errors.ValidationError: resume= takes a Checkpoint (a reader's checkpoint()) or its as_dict(), got int.
        """
        if resume is None:
            return None
        if isinstance(resume, cls):  # built by hand, it may hold what no reader accepts: checked as its dict is
            cp = cls.from_dict(resume.as_dict())
        elif isinstance(resume, Mapping):
            cp = cls.from_dict(resume)
        else:
            raise ValidationError(f"resume= takes a Checkpoint (a reader's checkpoint()) or its as_dict(), "
                                  f"got {type(resume).__name__}.")
        if cp.ended:
            raise ValidationError(
                f"resume= got the checkpoint of a complete stream (ended=True, chunk {cp.seq}): its end frame is "
                "written, and a chunk after it would make the stream unreadable. Start a new stream, or resume "
                "from a checkpoint taken before the end (abort()'s, or a reader's after an error).")
        return cp


class StreamWriter:
    """Write values and large data to ``sink`` as a stream of bounded chunk frames.

    Parameters
    ----------
    sink : binary file-like or callable
        Anything with ``write(bytes)`` (a file, socket file, ``io.BytesIO``),
        or a function taking each frame's bytes. A ``write`` that returns a
        count may take part of a frame; the rest is written next. A raw sink
        (``io.FileIO``, ``socket.makefile("wb", buffering=0)``) returns None
        when its non-blocking fd would block, and a buffered one raises
        ``BlockingIOError``: the writer waits for the fd to take more. From
        any other sink, None means all of it was written. A sink that takes
        nothing for 60 s raises :class:`StreamError`, the checkpoint still
        before the chunk it was writing.
    chunk_size : int
        Largest payload :meth:`write_buffer`, :meth:`write_table` and
        :meth:`write_array` put in one chunk (default 8 MiB).
    compression, level, bandwidth :
        As :func:`tether.encode`; ``"auto"`` decides per chunk for the
        ``stream`` transport.
    checksum : {"crc32", "xxh3-64"}
        Every chunk carries a payload checksum: CRC-32 by default, which the
        BEAM verifies at native speed; ``"xxh3-64"`` is faster in Python on
        large chunks, and the BEAM's stream reader verifies it in Erlang, far
        slower. The end frame's chained digest is xxh3 over the checksums
        either way.
    reader : {"python", "beam"}
        Who reads the stream. ``"beam"`` (``Tether.Stream.read`` in Elixir)
        keeps ``compression="auto"`` to what the BEAM undoes (gzip or none)
        and refuses a chunk format it cannot read, as :func:`tether.dumps` does.
    resume : Checkpoint or dict, optional
        Continue the stream a reader stopped in (same id, numbering, digest).
        A ``sink`` that is a file opened for appending is checked first: a
        new stream goes only onto an empty file, a continuation only onto a
        file that ends where its checkpoint stands (a :class:`StreamError`
        otherwise, nothing written), as the BEAM's writer checks.

    Examples
    --------
    >>> import io, numpy as np, tether
    >>> sink = io.BytesIO()
    >>> with tether.stream.StreamWriter(sink, chunk_size=1 << 10) as w:
    ...     _ = w.write_array(np.arange(1000.0))
    >>> float(tether.stream.StreamReader(sink.getvalue()).read_array().sum())
    499500.0
    """

    def __init__(
        self,
        sink: Any,
        *,
        chunk_size: int = CHUNK_SIZE,
        compression: str = "auto",
        level: int | None = None,
        bandwidth: float | None = None,
        checksum: str = "crc32",
        resume: Checkpoint | None = None,
        reader: str = "python",
    ):
        if checksum not in ("crc32", "xxh3-64"):
            raise ValidationError(f"Invalid checksum {checksum!r} for a stream. Valid options are: crc32, xxh3-64.")
        if type(chunk_size) is not int or chunk_size < 1:
            raise ValidationError(f"chunk_size must be a positive int, got {chunk_size!r}.")
        write = getattr(sink, "write", None) or (sink if callable(sink) else None)
        if write is None:
            raise ValidationError(f"A stream sink needs a write() method or must be callable, got {type(sink).__name__}.")
        _check_file(sink, "sink", "write", "wb")
        check_codec(compression, level)  # here, not at the first chunk: a writer may write none
        self._write = write
        self._sink = sink
        self.chunk_size = chunk_size
        self._request = Request.of(compression=compression, level=level, bandwidth=bandwidth, checksum=checksum,
                                   transport="stream", reader=reader)
        resumed = Checkpoint.of(resume)
        if (path := _appended_path(sink)) is not None:
            _check_append(path, resumed)
        cp = resumed or Checkpoint(secrets.token_hex(16))
        self.stream_id, self._seq, self._offset, self._digest = cp.stream_id, cp.seq, cp.offset, cp.digest
        self.closed = False
        self._ended = False  # the end frame is written

    # -- chunks

    def write(self, value: Any, *, format: str = "auto", metadata: Mapping[str, Any] | None = None) -> Checkpoint:
        """Write ``value`` as one chunk; return the checkpoint after it.

        One value is one chunk, whatever its size: split large data with
        :meth:`write_buffer`, :meth:`write_table` or :meth:`write_array`.

        Parameters
        ----------
        value : Any
            Anything :func:`tether.dumps` takes.
        format : str, default "auto"
            As :func:`tether.dumps`.
        metadata : Mapping, optional
            User metadata for this chunk's frame.

        Returns
        -------
        Checkpoint

        Examples
        --------
        >>> import io
        >>> w = StreamWriter(io.BytesIO())
        >>> w.write({"rows": 2}).seq, w.write([1, 2]).seq
        (1, 2)
        """
        if self.closed:
            raise ValidationError("This stream is closed; start a new StreamWriter (or resume=) to write more.")
        check_readable(format, self._request.reader)
        check_metadata(metadata)
        req = self._request._replace(format=format, metadata=metadata)
        t0 = _metrics.clock() if _metrics.on else None
        if self._seq >= _U64_END - 1:  # the checkpoint after this chunk could not be stored, nor read
            raise ValidationError(f"This stream has {self._seq} chunks, the most a stream holds (chunk numbers are "
                                  "64-bit); start a new stream.")
        enc = prepare(value, req, stream={"id": self.stream_id, "seq": self._seq, "offset": self._offset},
                      op="stream_chunk")
        if self._offset + enc.raw_length >= _U64_END:  # checked before a byte goes out
            raise ValidationError(f"This chunk ({enc.raw_length} B after {self._offset} B) would take the stream "
                                  "past 2**64-1 bytes (offsets are 64-bit); start a new stream.")
        self._digest = _chain(self._digest, self._seq, self._emit(enc))
        if t0 is not None:
            d = enc.decision
            _metrics.observe("stream_chunk", d.format, d.compression, "stream", enc.raw_length, enc.nbytes,
                             _metrics.clock() - t0, d)
        self._offset += enc.raw_length
        self._seq += 1
        return self.checkpoint()

    def write_buffer(self, data: Any) -> Checkpoint:
        """Write bytes as raw chunks of at most ``chunk_size``.

        ``data`` is a bytes-like object (sliced without copies) or a binary
        file-like object, read ``chunk_size`` bytes at a time so it never has
        to fit in memory.

        Parameters
        ----------
        data : bytes-like or binary file-like

        Returns
        -------
        Checkpoint
            After the last chunk written.

        Examples
        --------
        Ten bytes in chunks of at most four:

        >>> import io
        >>> w = StreamWriter(io.BytesIO(), chunk_size=4)
        >>> cp = w.write_buffer(io.BytesIO(b"0123456789"))
        >>> cp.seq, cp.offset
        (3, 10)
        """
        readinto = getattr(data, "readinto", None)
        if readinto is None:
            try:
                view = flat_bytes(data)
            except TypeError:
                raise ValidationError(f"write_buffer needs bytes-like data or a binary file, "
                                      f"got {type(data).__name__}.") from None
            for start in range(0, len(view), self.chunk_size):
                self.write(view[start : start + self.chunk_size], format="raw")
            return self.checkpoint()
        block = bytearray(self.chunk_size)
        view = memoryview(block)
        while True:
            got = 0
            while got < len(block):  # fill whole chunks, whatever the source's read sizes
                n = readinto(view[got:])
                if not n:
                    break
                got += n
            if got:
                self.write(view[:got], format="raw")
            if got < len(block):
                return self.checkpoint()

    def write_table(self, table: Any) -> Checkpoint:
        """Write a pyarrow Table (or a DataFrame) as record batches of about ``chunk_size`` bytes.

        Parameters
        ----------
        table : pyarrow.Table, pyarrow.RecordBatch or DataFrame
            Or anything else :func:`tether.arrow.to_table` converts.

        Returns
        -------
        Checkpoint
            After the last batch written. A table without rows is one empty
            batch, so that :meth:`StreamReader.read_table` gives back its schema.

        Examples
        --------
        >>> import io, pyarrow as pa
        >>> sink = io.BytesIO()
        >>> with StreamWriter(sink, chunk_size=64) as w:
        ...     w.write_table(pa.table({"id": list(range(20))})).seq
        3
        >>> StreamReader(sink.getvalue()).read_table().num_rows
        20
        """
        import pyarrow as pa

        from . import arrow

        _, table = arrow.to_table(table)
        if isinstance(table, pa.RecordBatch):
            table = pa.Table.from_batches([table])
        rows = max(1, table.num_rows)
        per_chunk = max(1, self.chunk_size * rows // max(1, table.nbytes))
        # A table without rows has no batches at all, and a stream without chunks reads back without columns:
        # one empty batch carries the schema.
        batches = table.to_batches(max_chunksize=per_chunk) or [pa.RecordBatch.from_pylist([], schema=table.schema)]
        for batch in batches:
            self.write(batch, format="arrow")
        return self.checkpoint()

    def write_array(self, array: Any) -> Checkpoint:
        """Write a NumPy array as slices along its first axis of about ``chunk_size`` bytes each.

        Parameters
        ----------
        array : array-like
            Converted with ``numpy.asarray``. A 0-d array, and an array with no
            rows, is one chunk, so that :meth:`StreamReader.read_array` gives back
            its dtype and shape.

        Returns
        -------
        Checkpoint
            After the last slice written.

        Examples
        --------
        A 100 x 4 float64 array (32 bytes a row) in 1 KiB chunks is 32 rows a chunk:

        >>> import io, numpy as np
        >>> w = StreamWriter(io.BytesIO(), chunk_size=1 << 10)
        >>> w.write_array(np.ones((100, 4))).seq
        4
        >>> w.write_array(np.zeros((0, 4))).seq  # no rows: one chunk all the same
        5
        """
        import numpy as np

        arr = np.asarray(array)
        if arr.ndim == 0 or len(arr) == 0:
            return self.write(arr, format="ndarray")
        row_bytes = max(1, arr.nbytes // max(1, len(arr)))
        per_chunk = max(1, self.chunk_size // row_bytes)
        for start in range(0, len(arr), per_chunk):
            self.write(arr[start : start + per_chunk], format="ndarray")
        return self.checkpoint()

    # -- bookkeeping

    def checkpoint(self) -> Checkpoint:
        """Where the stream stands after the last chunk written.

        Returns
        -------
        Checkpoint

        Examples
        --------
        >>> import io
        >>> w = StreamWriter(io.BytesIO(), chunk_size=4)
        >>> _ = w.write_buffer(b"012345")
        >>> w.checkpoint().seq, w.checkpoint().offset
        (2, 6)
        """
        return Checkpoint(self.stream_id, self._seq, self._offset, self._digest, self._ended)

    def _emit(self, enc: Any) -> int:
        """Write one whole frame, waiting while the sink takes nothing; return its payload checksum."""
        data = memoryview(bytes(enc))
        progress = [0]
        try:
            done = _write_all(self._write, self._sink, data, progress)
        finally:
            if 0 < progress[0] < len(data):  # the sink ends inside this frame: what came next would be unreadable
                self.closed = True
        if done < len(data):
            took = f"took {done} of this frame's {len(data)} bytes, then none" if done else \
                f"took none of this frame's {len(data)} bytes"
            raise self._stalled(took, done)
        return enc.header.payload_checksum

    def _flush(self) -> None:
        """Flush the sink, if it can be, waiting while a buffered file over a non-blocking fd cannot drain."""
        flush, idle, since = getattr(self._sink, "flush", None), 0, time.monotonic()
        while flush is not None:
            try:
                flush()
                return
            except BlockingIOError:
                if time.monotonic() - since >= _STALL_SECONDS:
                    raise self._stalled("could not flush the end frame out of its buffer", 1) from None
                _wait_writable(self._sink, idle, since)
                idle += 1

    def _stalled(self, what: str, done: int) -> StreamError:
        """The error for a sink that took nothing for ``_STALL_SECONDS``; ``done``: bytes of the frame it took."""
        where = f"stream {self.stream_id} frame {self._seq}: the sink {what} for {_STALL_SECONDS:g} s"
        cause = ("It is non-blocking and nothing drains it, or its write() returns 0: make it blocking "
                 "(os.set_blocking(fd, True)) or drain it.")
        if not done:
            return StreamError(f"{where}. {cause} Nothing of this frame was written: write it again, or resume= "
                               "from writer.checkpoint().")
        return StreamError(f"{where}, and it ends inside this frame: this writer is closed. {cause} Cut what the "
                           f"sink received back to its last whole frame (summarize_stream says where), then "
                           "continue with StreamWriter(resume=writer.checkpoint()).")

    def close(self) -> Checkpoint:
        """Write the end frame (chunk count, bytes, digest) that makes the stream complete.

        Closing again does nothing; leaving a ``with`` block without an exception closes.

        Returns
        -------
        Checkpoint

        Examples
        --------
        >>> import io
        >>> sink = io.BytesIO()
        >>> w = StreamWriter(sink)
        >>> _ = w.write("only chunk")
        >>> w.close().seq
        1
        >>> verify_stream(sink.getvalue())["chunks"]
        1
        """
        if not self.closed:
            end = {"id": self.stream_id, "seq": self._seq, "offset": self._offset, "end": True,
                   "count": self._seq, "bytes": self._offset, "digest": self._digest}
            end_request = Request(format="scalar", checksum=self._request.checksum, transport="stream")
            self._emit(prepare(None, end_request, stream=end))
            self.closed = True
            self._flush()
            self._ended = True  # only once the end frame is out of the sink's buffer
        return self.checkpoint()

    def abort(self) -> Checkpoint:
        """Stop without an end frame: readers see an incomplete stream they can resume.

        An exception inside a ``with`` block aborts.

        Returns
        -------
        Checkpoint

        Examples
        --------
        >>> import io, tether
        >>> sink = io.BytesIO()
        >>> w = StreamWriter(sink)
        >>> _ = w.write("first")
        >>> _ = w.abort()
        >>> verify_stream(sink.getvalue())
        Traceback (most recent call last):
        ...
        tether._errors.StreamError: The stream ended after chunk 0 (...) without its end frame: ...
        """
        self.closed = True
        return self.checkpoint()

    def __enter__(self) -> StreamWriter:
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        # A failure inside the block must not look like a complete stream.
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _write_all(write: Any, sink: Any, data: memoryview, progress: list[int]) -> int:
    """Write ``data`` whole through ``write`` (``sink``'s), waiting while the sink takes nothing; return the bytes
    taken: fewer than all only when it took none for ``_STALL_SECONDS``. ``progress[0]`` follows the count, so
    that a caller knows how much went out when a write raises."""
    done = progress[0] = _taken(write, sink, data)
    if done == len(data):  # the common case, without the clock
        return done
    idle, since = 0, time.monotonic()
    while done < len(data):
        n = _taken(write, sink, data[done:])
        if n:
            done, idle, since = done + n, 0, time.monotonic()
            progress[0] = done
        elif time.monotonic() - since < _STALL_SECONDS:
            _wait_writable(sink, idle, since)
            idle += 1
        else:
            break
    return done


def _taken(write: Any, sink: Any, view: memoryview) -> int:
    """How many bytes of ``view`` one ``write`` took: 0 when a non-blocking sink would block.

    A count is what it says. None is all of it, from a custom writer or a function, but nothing
    from a raw sink (``io.RawIOBase``), whose None means its non-blocking fd is full; a buffered
    file over such an fd raises ``BlockingIOError`` instead, having taken ``characters_written``.
    """
    try:
        n = write(view)
    except BlockingIOError as exc:  # socket.send as the sink raises it without characters_written: none taken
        return getattr(exc, "characters_written", 0)
    if n is None:
        return 0 if isinstance(sink, io.RawIOBase) and _nonblocking(sink) else len(view)
    try:
        n = operator.index(n) if not isinstance(n, bool) else len(view)
    except TypeError:  # a function's result that is not a count
        return len(view)
    if n < 0:
        raise StreamError(f"The stream sink's write() returned {n}, not a count of bytes written: a sink's write "
                          "returns how many bytes it took (or None for all of them), and raises on failure.")
    return min(n, len(view))


def _nonblocking(sink: Any) -> bool:
    """Whether a raw sink's fd is non-blocking, so that its None means "would block"; a hand-written RawIOBase
    whose write returns None having written it all has no such fd."""
    try:
        return not os.get_blocking(sink.fileno())
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return False


def _wait_writable(sink: Any, idle: int, since: float) -> None:
    """Wait for a sink that took nothing: for its fd to be writable, then (if it still takes nothing) a backoff.

    A writable fd that takes nothing, or a sink without one, would otherwise be written to in a tight loop.
    Never waits past ``since + _STALL_SECONDS``.
    """
    left = max(0.0, since + _STALL_SECONDS - time.monotonic())
    fileno = getattr(sink, "fileno", None)
    if idle == 0 and fileno is not None:
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(fileno(), selectors.EVENT_WRITE)
                selector.select(left)
            return
        except (OSError, ValueError, TypeError):  # no fd (BytesIO), a closed one, or one no selector takes
            pass
    time.sleep(min(left, 0.001 * 2 ** min(idle, 6)))


def _appended_path(sink: Any) -> Any:
    """The path of a file object opened for appending (mode 'ab', 'a+b'), or None for any other sink."""
    mode, name = getattr(sink, "mode", None), getattr(sink, "name", None)
    if isinstance(mode, str) and "a" in mode and isinstance(name, (str, bytes, os.PathLike)):
        return name
    return None


def _check_file(f: Any, what: str, op: str, mode: str) -> None:
    """Refuse a file object that cannot do ``op`` with bytes (text mode, closed, the wrong direction) up front,
    with the fix, instead of a bare error from its first read or write."""
    if isinstance(f, io.TextIOBase):
        raise ValidationError(f"A stream {what} must be a binary file, got one in text mode ({type(f).__name__}): "
                              f"open it with mode {mode!r}, or pass its .buffer.")
    if getattr(f, "closed", False) is True:
        raise ValidationError(f"The stream {what} is closed: pass an open file.")
    able = getattr(f, "readable" if op == "read" else "writable", None)
    try:
        usable = able() if callable(able) else True
    except (ValueError, OSError):  # a file that cannot say: its first read or write will
        usable = True
    if usable is False:
        raise ValidationError(f"The stream {what} cannot {op} (opened for {'writing' if op == 'read' else 'reading'}): "
                              f"open it with mode {mode!r}.")


def _check_append(path: Any, cp: Checkpoint | None) -> None:
    """Refuse to append to ``path`` what would make it unreadable; the BEAM's writer checks the same.

    A new stream (``cp`` None) goes only onto an empty file; a continuation only onto a file whose last
    frame is chunk ``cp.seq - 1`` of the same stream, ending at ``cp.offset``, and not an end frame. Reads
    headers and metadata, never a payload.
    """
    last, pos, limits, digest = None, 0, get_limits(), 0
    with open(path, "rb") as f:
        src = _Source(f)
        try:
            while (head := src.next_head(limits.max_frame_size, f"appending to {path!r}")) is not None:
                header, meta, _ = frame.read(head, limits, whole=False)
                digest = _next_digest(digest, meta.get("stream"), header.payload_checksum, first=last is None)
                last, pos = (meta.get("stream"), header.raw_length), pos + header.frame_size
        except TruncatedError:
            raise StreamError(f"{path!r} ends inside its last frame, which starts at byte {pos} (a writer stopped "
                              "mid-chunk): truncate the file to that size, then append from its reader's checkpoint.")
        if last is not None:
            _check_last_payload(f, pos - header.frame_size, header.frame_size, limits, path)
    if last is None:
        return
    info, raw = last if isinstance(last[0], dict) else ({}, 0)
    if cp is None:
        raise StreamError(f"{path!r} holds frames already, and a new stream appended to it would make it "
                          "unreadable: write the stream to a new file, or pass resume= to continue the one it holds.")
    if info.get("end") is True or info.get("id") != cp.stream_id or info.get("seq") != cp.seq - 1 \
            or not isinstance(info.get("offset"), int) or info["offset"] + raw != cp.offset:
        found = ("its end frame" if info.get("end") is True
                 else f"chunk {info.get('seq')!r} of stream {info.get('id')!r}")
        raise StreamError(f"{path!r} ends with {found}, and the checkpoint continues after chunk {cp.seq - 1} of "
                          f"stream {cp.stream_id}: appending there would make it unreadable. Resume from the "
                          "checkpoint this file's reader gave when it stopped, or write the continuation to a "
                          "new file.")
    if digest is not None and digest != cp.digest:
        raise StreamError(f"The checkpoint's digest ({cp.digest}) is not the one chained over the {cp.seq} chunks in "
                          f"{path!r} ({digest}): every reader would refuse the stream at its end frame. A digest "
                          "is a 64-bit integer, which a store that keeps numbers as doubles (JavaScript, jq) rounds: "
                          "keep it there as a string and pass int(digest), or resume from the reader's checkpoint.")


def _check_last_payload(f: Any, at: int, size: int, limits: Any, path: Any) -> None:
    """The file's last frame read whole and its payload checked: a writer that died writing it may have left
    its header whole and its payload not, and chunks appended after it would all be unreadable."""
    f.seek(at)
    try:
        header, _, stored = frame.read(memoryview(f.read(size)), limits)
        frame.verify_payload(stored, header, f"the last chunk of {path!r}")
    except TetherError as exc:
        raise StreamError(f"{path!r}: its last chunk, at byte {at}, does not check out ({exc}): the writer stopped "
                          f"while writing it. Truncate the file to {at} bytes (`tether verify` names the checkpoint "
                          "there), then append from that checkpoint.") from exc


def _next_digest(digest: int | None, info: Any, payload_checksum: int, *, first: bool) -> int | None:
    """The digest chained over a file's chunks so far, or None where it cannot be known: a file that starts
    past chunk 0 (a continuation) chains from a checkpoint it does not hold, and an end frame is not chained."""
    seq = info.get("seq") if isinstance(info, dict) and info.get("end") is not True else None
    if digest is None or type(seq) is not int or (first and seq != 0):
        return None
    return _chain(digest, seq, payload_checksum)

class _Source:
    """Frames from a buffer (zero-copy slices) or a binary file-like (one buffer per frame)."""

    def __init__(self, source: Any):
        if getattr(source, "read", None) is not None or getattr(source, "readinto", None) is not None:
            _check_file(source, "source", "read", "rb")
        self.readinto = getattr(source, "readinto", None)
        self.read = getattr(source, "read", None)
        self.seekable = getattr(source, "seekable", None)
        self.tell = getattr(source, "tell", None)
        self.seek = getattr(source, "seek", None)
        self.view: memoryview | None = None
        self.pos = 0
        if isinstance(source, (bytes, bytearray, memoryview, mmap.mmap)) or (self.readinto is None and self.read is None):
            self.readinto = self.read = None
            try:
                self.view = memoryview(source)
            except TypeError:
                raise ValidationError(
                    f"A stream source must be bytes-like or a binary file-like object, got {type(source).__name__}."
                ) from None
            self.view = as_view(self.view)  # a strided or F-ordered buffer is a ValidationError

    def _fill(self, view: memoryview) -> int:
        got = 0
        while got < len(view):
            if self.readinto is not None:
                n = self.readinto(view[got:])
            else:
                data = self.read(len(view) - got)
                n = len(data) if data else 0
                view[got : got + n] = data or b""
            if not n:
                break
            got += n
        return got

    def _view_next(self, max_frame: int, where: str, whole: bool) -> memoryview | None:
        """The buffer's next frame (``whole``) or its header and metadata, stepped past; None at its end.

        The whole frame is checked to be there either way.
        """
        if self.pos == len(self.view):
            return None
        left = len(self.view) - self.pos
        if left < HEADER_SIZE:
            raise TruncatedError(f"{where}: {left} bytes left, a frame header needs {HEADER_SIZE}.")
        header = frame.unpack(self.view, get_limits(), offset=self.pos)
        _check_size(header.frame_size, max_frame, where)
        if header.frame_size > left:
            raise TruncatedError(f"{where}: the frame declares {header.frame_size} bytes, {left} remain.")
        start = self.pos
        self.pos += header.frame_size
        return self.view[start : start + (header.frame_size if whole else header.payload_offset)]

    def _read_header(self, max_frame: int, where: str) -> tuple[bytearray, Header] | None:
        """The next frame's header bytes read from a file-like source, and the header; None at a clean end."""
        head = bytearray(HEADER_SIZE)
        got = self._fill(memoryview(head))
        if got == 0:
            return None
        if got < HEADER_SIZE:
            raise TruncatedError(f"{where}: the input ends {got} bytes into a frame header.")
        header = frame.unpack(memoryview(head), get_limits())  # bounds the metadata by Limits.max_metadata_size
        _check_size(header.frame_size, max_frame, where)
        return head, header

    def next_frame(self, max_frame: int, where: str) -> memoryview | None:
        """The next whole frame, or None at a clean end of input."""
        if self.view is not None:
            return self._view_next(max_frame, where, True)
        read = self._read_header(max_frame, where)
        if read is None:
            return None
        head, header = read
        size = header.frame_size
        left = self._remaining()
        if left is not None and left < size - HEADER_SIZE:
            raise TruncatedError(f"{where}: the frame declares {size} bytes, the input holds {HEADER_SIZE + left}.")
        if left is not None or size <= _GROW_STEP:
            # The bytes are there (or the frame is small): one buffer, filled in place.
            obj, view = new_bytes(size)
            view[:HEADER_SIZE] = head
            got = self._fill(view[HEADER_SIZE:])
            view.release()
            if got < size - HEADER_SIZE:
                raise TruncatedError(f"{where}: the input ends {HEADER_SIZE + got} bytes into a {size}-byte frame.")
            return memoryview(to_bytes(obj))
        # A pipe or socket: grow the buffer as bytes arrive, so a forged length
        # cannot make us allocate more than about twice what was sent.
        buf = head
        while len(buf) < size:
            start = len(buf)
            buf.extend(bytes(min(size - start, max(_GROW_STEP, start))))
            got = self._fill(memoryview(buf)[start:])
            if start + got < len(buf):
                raise TruncatedError(f"{where}: the input ends {start + got} bytes into a {size}-byte frame.")
        return memoryview(buf)

    def next_head(self, max_frame: int, where: str) -> memoryview | None:
        """The next frame's header and metadata (up to its payload), the payload skipped unread; None at a clean end.

        A buffer's payload is stepped over, a seekable file's sought past, a pipe's read and dropped in
        blocks of at most ``_GROW_STEP``: memory holds one frame's metadata, never a payload.
        """
        if self.view is not None:
            return self._view_next(max_frame, where, False)
        read = self._read_header(max_frame, where)
        if read is None:
            return None
        buf, header = read
        buf.extend(bytes(header.payload_offset - HEADER_SIZE))
        got = self._fill(memoryview(buf)[HEADER_SIZE:])
        if HEADER_SIZE + got < len(buf):
            raise TruncatedError(f"{where}: the input ends {HEADER_SIZE + got} bytes into a {header.frame_size}-byte frame.")
        self._skip(header.payload_length, f"{where}: the input ends inside the frame's {header.payload_length}-byte payload.")
        return memoryview(buf)

    def _skip(self, n: int, short: str) -> None:
        """Step over ``n`` bytes of a file-like source; ``short`` is the message when fewer remain."""
        left = self._remaining()
        if left is not None:
            if left < n:
                raise TruncatedError(f"{short} ({left} bytes remain)")
            self.seek(self.tell() + n)
            return
        block = memoryview(bytearray(min(n, _GROW_STEP)))
        while n:
            got = self._fill(block[: min(n, len(block))])
            if not got:
                raise TruncatedError(short)
            n -= got

    def check_end(self, where: str) -> None:
        """Refuse bytes after the end frame in a buffer or a file; a pipe or socket is not read past it."""
        left = len(self.view) - self.pos if self.view is not None else self._remaining()
        if left:
            raise StreamError(
                f"{where}: {left} bytes follow the end frame, which ends the stream. The input holds "
                "something else after the stream (two streams joined, or junk): pass only the stream's bytes."
            )

    def _remaining(self) -> int | None:
        """Bytes left in a seekable source (a file, BytesIO), or None for pipes and sockets."""
        try:
            if self.seekable is None or not self.seekable():
                return None
            here = self.tell()
            end = self.seek(0, 2)
            self.seek(here)
            return end - here
        except (AttributeError, OSError, TypeError, ValueError):
            return None


def _is_u64(value: Any) -> bool:
    return type(value) is int and 0 <= value < _U64_END


def _is_stream_id(value: Any) -> bool:
    return type(value) is str and len(value) == 32 and not value.strip("0123456789abcdef")


def _kind(value: Any) -> str:
    """A value from a stream map, named for a message without printing it whole: it may be any size or depth."""
    if _is_u64(value) or (type(value) is str and len(value) <= 40):
        return repr(value)
    size = f" of {value.bit_length()} bits" if type(value) is int else ""
    return f"{type(value).__name__}{size}"


def _check_size(size: int, max_frame: int, where: str) -> None:
    if size > max_frame:
        raise LimitError(
            f"{where} is a {size}-byte frame, over this reader's max_frame of {max_frame}; "
            "pass a larger max_frame= if the sender's chunks are that large."
        )


def _resumable(exc: ChecksumError, where: str) -> ChecksumError:
    """A chunk's checksum error, saying which chunk and that the stream resumes before it."""
    return ChecksumError(f"{where}: {exc} The chunks before it checked out: resume from reader.checkpoint().",
                         stored=exc.stored, computed=exc.computed)


class StreamReader:
    """Read a stream chunk by chunk, checking order, completeness and every checksum.

    Parameters
    ----------
    source : bytes-like or binary file-like
        The stream's bytes (chunks decode as views into them), or a file,
        pipe or socket file read one frame at a time.
    resume : Checkpoint or dict, optional
        Accept a stream that continues from this checkpoint (see
        :meth:`StreamWriter.__init__`'s ``resume``).
    max_frame : int, optional
        Largest chunk frame accepted (default: ``Limits.max_frame_size``).
        Bounds the memory one chunk can take.
    into, copy, allow_pickle, options :
        As :func:`tether.loads`, for every chunk.

    Attributes
    ----------
    position : int
        Bytes of the source the frames read so far take. A reader that stops part-way
        through a file resumes in it from ``f.seek(position)`` with ``resume=`` its
        :meth:`checkpoint` (whose ``offset`` counts data bytes, not frame bytes).

    Iterating yields each chunk's value; the iteration ends at the end frame,
    and raises :class:`StreamError` if the input ends before it, or if a
    buffer or file holds bytes after it. A pipe or socket is not read past
    the end frame: what follows it there may be the next message.

    Examples
    --------
    >>> import io, tether
    >>> sink = io.BytesIO()
    >>> with tether.stream.StreamWriter(sink) as w:
    ...     _ = w.write([1, 2])
    ...     _ = w.write("three")
    >>> list(tether.stream.StreamReader(io.BytesIO(sink.getvalue())))
    [[1, 2], 'three']
    """

    def __init__(
        self,
        source: Any,
        *,
        resume: Checkpoint | None = None,
        max_frame: int | None = None,
        into: str | None = None,
        copy: bool = False,
        allow_pickle: bool = False,
        options: Mapping[str, Any] | None = None,
    ):
        self._source = _Source(source)
        if max_frame is not None and (type(max_frame) is not int or max_frame < HEADER_SIZE):
            raise ValidationError(f"max_frame must be an int of at least {HEADER_SIZE} (a frame's header), "
                                  f"got {max_frame!r}.")
        self._max_frame = get_limits().max_frame_size if max_frame is None else max_frame
        self._decode_args = (into, copy, allow_pickle, True, options)
        cp = Checkpoint.of(resume) or Checkpoint("")
        self._resumed_at = cp.seq if resume is not None else None  # for the message when the input starts earlier
        self.stream_id: str | None = cp.stream_id or None
        self._seq, self._offset, self._digest = cp.seq, cp.offset, cp.digest
        self.complete = False
        self.totals: dict[str, Any] = {}
        # Bytes of the source the frames read so far take: where a reader of the same file resumes.
        self.position = 0
        self._end_read = False

    def checkpoint(self) -> Checkpoint:
        """Where this reader stands: hand it to the writer (``resume=``) to continue the stream.

        Returns
        -------
        Checkpoint

        Raises
        ------
        tether.ValidationError
            No chunk was read yet.

        Examples
        --------
        A writer stops after two chunks; the reader's checkpoint lets a new writer finish the
        stream, and a reader resumed from it checks the rest:

        >>> import io, tether
        >>> sink = io.BytesIO()
        >>> w = StreamWriter(sink)
        >>> _, _ = w.write("a"), w.write("b")
        >>> _ = w.abort()
        >>> reader = StreamReader(sink.getvalue())
        >>> try:
        ...     for value in reader:
        ...         pass
        ... except tether.StreamError:
        ...     cp = reader.checkpoint()
        >>> cp.seq
        2
        >>> rest = io.BytesIO()
        >>> with StreamWriter(rest, resume=cp) as w:
        ...     _ = w.write("c")
        >>> StreamReader(rest.getvalue(), resume=cp).read_all()
        ['c']
        """
        if self.stream_id is None:
            raise ValidationError("No chunk read yet: there is no stream to resume.")
        return Checkpoint(self.stream_id, self._seq, self._offset, self._digest, self.complete)

    def __iter__(self) -> Iterator[Any]:
        while True:
            item = self._next(decode=True)
            if item is None:
                return
            yield item[0]

    def _where(self) -> str:
        return f"stream {self.stream_id or '?'} chunk {self._seq}"

    def _ended_early(self) -> StreamError:
        return StreamError(
            f"The stream ended after chunk {self._seq - 1} ({self._offset} bytes) without its end frame: "
            "the sender stopped early or the input was cut. Resume it from reader.checkpoint()."
            if self._seq else "The input holds no stream: no chunk and no end frame."
        )

    def _next(self, decode: bool) -> tuple[Any, int] | None:
        if self.complete:
            return None
        where, limits = self._where(), get_limits()
        try:
            data = self._source.next_frame(self._max_frame, where)
            if data is None:
                raise self._ended_early()
            # After the wait for the source (a pipe may take seconds): a chunk's loads time is its parse and decode.
            t0 = _metrics.clock() if decode and _metrics.on else None
            read = frame.read(data, limits)  # once: a chunk decodes from what this read
        except ChecksumError as exc:
            raise _resumable(exc, where) from exc
        header, meta, stored = read
        info = meta.get("stream")
        if decode and not (isinstance(info, dict) and info.get("end") is True):
            value = self._decode(read, len(data), limits, where, t0)
        else:  # the end frame holds no chunk: `into` is not for it
            frame.verify_payload(stored, header, where)
            value = None
        accepted = self._accept(header, meta, where, value)
        self.position += len(data)
        return accepted

    def _decode(self, read: tuple[Any, dict[str, Any], memoryview], size: int, limits: Any, where: str,
                t0: int | None) -> Any:
        """One chunk's frame (as :func:`tether.frame.read` gave it) decoded as the reader was asked (``into``,
        ``copy``, ...), and counted."""
        try:
            value, header, _ = decode_read(read, size, limits, *self._decode_args)
        except ChecksumError as exc:
            raise _resumable(exc, where) from exc
        if t0 is not None:
            # .get: the frame decoded, but another thread may have unregistered its codec or format since.
            comp = getattr(compression.registry.by_id.get(header.compression_id), "name", "unknown")
            fmt = getattr(formats.registry.by_id.get(header.format_id), "name", "unknown")
            _metrics.observe("loads", fmt, comp, "stream", header.frame_size, header.raw_length,
                             _metrics.clock() - t0)
        return value

    def _accept(self, header: Any, meta: dict[str, Any], where: str, value: Any) -> tuple[Any, int] | None:
        """Check one frame's place in the stream from its header and metadata; None once the end frame checks out."""
        info = meta.get("stream")
        if not header.flags & frame.FLAG_STREAM_CHUNK or not isinstance(info, dict):
            raise StreamError(f"{where}: this frame is not a stream chunk (flag bit 0 and a 'stream' map are missing).")
        if header.checksum_kind == frame.checksum.NONE:
            raise StreamError(f"{where}: the chunk carries no payload checksum, so the stream cannot be checked.")
        sid, seq, offset = info.get("id"), info.get("seq"), info.get("offset")
        if not _is_stream_id(sid) or not _is_u64(seq) or not _is_u64(offset):
            # Checked before any of them is compared or shown: a forged map may hold an int of a million
            # digits (str() refuses it) or a list nested past repr's recursion.
            raise StreamError(
                f"{where}: the chunk's stream map needs an id of 32 lowercase hex digits and a seq and offset that "
                f"are ints in 0..2**64-1 (docs/format.md, \"Streams\"); got {_kind(sid)}, {_kind(seq)} and "
                f"{_kind(offset)}. The frame was not written by a stream writer, or was altered after its checksums."
            )
        if self.stream_id is None:
            self.stream_id = sid
        if sid != self.stream_id:
            raise StreamError(f"{where}: the chunk belongs to stream {sid!r}; a chunk from another stream was mixed in.")
        if seq != self._seq and self._seq == 0 and isinstance(seq, int) and seq > 0:
            raise StreamError(
                f"{where}: the input starts at chunk {seq}, not 0: chunk 0 is missing, or this continues an "
                "earlier part of the stream. For a part, read it with resume= the checkpoint the earlier part "
                "ended at, or read the parts joined in order."
            )
        if seq != self._seq:
            missing = "missing" if isinstance(seq, int) and seq > self._seq else "repeated or out of order"
            if self._resumed_at is not None and self._resumed_at == self._seq and seq < self._seq:
                raise StreamError(
                    f"{where}: got chunk {seq}: this input starts before the checkpoint it resumes from. A reader "
                    "that resumes the file it stopped in starts where it stood: f.seek() to the reader's position "
                    "(reader.position, stored with its checkpoint) first, or pass the continuation alone."
                )
            # The chunk at fault: the one expected when it is missing, the one that came when it came again.
            which = self._seq if missing == "missing" else seq
            raise StreamError(
                f"{where}: got chunk {seq} instead: chunk {which} is {missing}. "
                "Resume the stream from reader.checkpoint()."
            )
        if offset != self._offset:
            raise StreamError(f"{where}: the chunk says it starts at byte {offset}, the stream is at {self._offset}.")
        if info.get("end") is True:
            if header.payload_length or header.raw_length:
                raise StreamError(
                    f"{where}: the end frame carries a payload of {header.raw_length} bytes ({header.payload_length} "
                    "stored); a writer's end frame holds none (docs/format.md, \"Streams\"): data was put in it "
                    "after it was written, which no reader would ever see."
                )
            expect = {"count": self._seq, "bytes": self._offset, "digest": self._digest}
            for key, have in expect.items():
                if info.get(key) != have:
                    said = info.get(key) if _is_u64(info.get(key)) else _kind(info.get(key))
                    raise StreamError(
                        f"{where}: the end frame declares {key} {said}, the chunks received give {have}: "
                        "a chunk was altered, dropped or replaced on the way."
                    )
            self._end_read = True  # bytes after it are what check_end refuses: nothing to resume
            self._source.check_end(where)
            self.complete = True
            self.totals = {"chunks": self._seq, "bytes": self._offset}
            return None
        self._digest = _chain(self._digest, self._seq, header.payload_checksum)
        self._seq += 1
        self._offset += header.raw_length
        return value, seq

    # -- conveniences

    def read_all(self) -> list[Any]:
        """Every chunk's value, in order (holds them all: for streams that fit in memory).

        Returns
        -------
        list

        Examples
        --------
        >>> import io
        >>> sink = io.BytesIO()
        >>> with StreamWriter(sink) as w:
        ...     _, _ = w.write({"part": 1}), w.write({"part": 2})
        >>> StreamReader(sink.getvalue()).read_all()
        [{'part': 1}, {'part': 2}]
        """
        return list(self)

    def read_table(self) -> Any:
        """The chunks of a :meth:`StreamWriter.write_table` stream as one pyarrow Table.

        Returns
        -------
        pyarrow.Table
            Empty (no columns) for a stream without chunks.

        Raises
        ------
        tether.StreamError
            A chunk is not an Arrow record batch.

        Examples
        --------
        >>> import io, pyarrow as pa
        >>> sink = io.BytesIO()
        >>> with StreamWriter(sink, chunk_size=64) as w:
        ...     _ = w.write_table(pa.table({"px": [1.5] * 30}))
        >>> StreamReader(sink.getvalue()).read_table().column("px").to_pylist() == [1.5] * 30
        True
        """
        import pyarrow as pa

        batches = [b if isinstance(b, pa.RecordBatch) else None for b in self]
        if any(b is None for b in batches):
            raise StreamError("read_table needs a stream of Arrow record batches (StreamWriter.write_table).")
        if not batches:
            return pa.table({})
        try:
            return pa.Table.from_batches(batches)
        except (ValueError, TypeError):  # ArrowInvalid is a ValueError
            raise _unjoined("read_table", "schemas", {str(b.schema) for b in batches}) from None

    def read_array(self) -> Any:
        """The chunks of a :meth:`StreamWriter.write_array` stream as one NumPy array.

        Returns
        -------
        numpy.ndarray
            The slices joined along the first axis; a 0-d array written alone
            comes back 0-d.

        Raises
        ------
        tether.StreamError
            The stream is empty, a chunk is not an array, or the chunks do not
            join (arrays of different shapes written to one stream).

        Examples
        --------
        >>> import io, numpy as np
        >>> sink = io.BytesIO()
        >>> with StreamWriter(sink, chunk_size=1 << 10) as w:
        ...     _ = w.write_array(np.ones((100, 4)))
        >>> StreamReader(sink.getvalue()).read_array().shape
        (100, 4)
        """
        import numpy as np

        parts = list(self)
        if not parts or not all(isinstance(p, np.ndarray) for p in parts):
            raise StreamError("read_array needs a stream of NumPy arrays (StreamWriter.write_array).")
        if len(parts) == 1 and parts[0].ndim == 0:  # write_array's one chunk for a 0-d array: no axis to join on
            return parts[0].copy()
        try:
            return np.concatenate(parts)
        except (ValueError, TypeError):
            raise _unjoined("read_array", "shapes and dtypes", {f"{p.shape} {p.dtype}" for p in parts}) from None

    def copy_to(self, sink: Any) -> int:
        """Write a :meth:`StreamWriter.write_buffer` stream's bytes to ``sink`` chunk by chunk; return the count.

        Parameters
        ----------
        sink : binary file-like
            Anything with ``write(bytes)``. Partial writes and a non-blocking
            sink's would-block are handled as :class:`StreamWriter` does.

        Returns
        -------
        int
            Bytes written.

        Raises
        ------
        tether.StreamError
            A chunk is not bytes.

        Examples
        --------
        >>> import io
        >>> stream = io.BytesIO()
        >>> with StreamWriter(stream, chunk_size=1 << 10) as w:
        ...     _ = w.write_buffer(b"x" * 3000)
        >>> out = io.BytesIO()
        >>> StreamReader(stream.getvalue()).copy_to(out), out.getvalue() == b"x" * 3000
        (3000, True)
        """
        total = 0
        for part in self:
            if not isinstance(part, (bytes, bytearray, memoryview)):
                raise StreamError(f"copy_to needs a byte stream, got a {type(part).__name__} chunk.")
            view = memoryview(part).cast("B")
            done = _write_all(sink.write, sink, view, [0])
            total += done
            if done < len(view):  # a raw sink may take part of a chunk, or nothing while its fd is full
                raise StreamError(f"copy_to: the sink took {total} bytes, then none for {_STALL_SECONDS:g} s "
                                  "(non-blocking and not drained, or its write() returns 0): make it blocking, "
                                  "or drain it.")
        return total


def _unjoined(method: str, what: str, seen: set[str]) -> StreamError:
    """The error for chunks that do not make one array or table: a stream holding several writes."""
    shown = "; ".join(sorted(seen)[:3]) + ("; ..." if len(seen) > 3 else "")
    return StreamError(f"{method}: the stream's chunks do not join into one ({what}: {shown[:300]}): it holds "
                       f"more than one array or table. Iterate the StreamReader to get each chunk instead.")


def verify_stream(source: Any, *, resume: Any = None, max_frame: int | None = None) -> dict[str, Any]:
    """Check a whole stream without decoding any chunk: checksums, order, completeness.

    Returns the stream id, chunk count and byte count; raises
    :class:`StreamError` (or another :class:`tether.TetherError`) otherwise.

    Parameters
    ----------
    source : bytes-like or binary file-like
        As :class:`StreamReader`.
    resume : Checkpoint or dict, optional
        As :class:`StreamReader`: the checkpoint a continuation file (written with
        ``StreamWriter(resume=...)``) starts from, so that its chunks and end frame are checked
        against the whole stream.
    max_frame : int, optional
        As :class:`StreamReader`.

    Returns
    -------
    dict
        ``stream_id``, ``chunks`` and ``bytes`` (of the whole stream, with ``resume``).

    Raises
    ------
    tether.TetherError
        The first problem. It carries ``checkpoint``, the :class:`Checkpoint` after the last chunk
        that checked out (None when none did), ``good_bytes``, how many bytes of the source those
        chunks take (cut a file there and a writer resumed from ``checkpoint`` continues it), and
        ``first_chunk``, the number of the first of them.

    Examples
    --------
    >>> import io
    >>> sink = io.BytesIO()
    >>> with StreamWriter(sink, chunk_size=4) as w:
    ...     _ = w.write_buffer(b"0123456789")
    >>> info = verify_stream(sink.getvalue())
    >>> info["chunks"], info["bytes"]
    (3, 10)

    A stream cut short, here by one byte of its end frame, is refused:

    >>> verify_stream(sink.getvalue()[:-1])
    Traceback (most recent call last):
    ...
    tether._errors.TruncatedError: stream ... chunk 3: the frame declares ... bytes, ... remain.
    """
    reader = StreamReader(source, resume=resume, max_frame=max_frame)
    first = reader._seq
    try:
        while reader._next(decode=False) is not None:
            pass
    except TetherError as exc:
        # Where the stream still checks out, for the caller to cut the file there and resume a writer: after
        # the last chunk that did, when one did (a continuation read without resume= has none).
        took = reader.position > 0 and not reader._end_read
        exc.checkpoint = reader.checkpoint() if took else None
        exc.good_bytes, exc.first_chunk = reader.position, first
        raise
    return {"stream_id": reader.stream_id, **reader.totals}


def summarize_stream(source: Any, *, resume: Any = None, max_frame: int | None = None) -> dict[str, Any]:
    """What a stream holds, from its frames' headers and metadata alone: no payload is read, checked or decoded.

    Every frame's header and metadata checksums and its place in the stream (id, chunk number, offset)
    are checked as :class:`StreamReader` checks them, and the end frame's count, bytes and digest
    against the headers (the digest chains the payload checksums stored there); only whether each
    payload matches its checksum is left to :func:`verify_stream`. Memory holds one frame's metadata at
    a time: a file's payloads are sought past, a pipe's read and dropped.

    Parameters
    ----------
    source : bytes-like or binary file-like
        As :class:`StreamReader`.
    max_frame : int, optional
        As :class:`StreamReader`.

    Returns
    -------
    dict
        ``state``: ``"complete"`` (the end frame is there and checks out), ``"incomplete"`` (the input
        ends without it, at or inside a frame) or ``"damaged"`` (a frame fails a check); ``problem``:
        None, or the ``error`` (its class name), ``message`` and ``chunk`` where reading stopped;
        ``stream_id``, ``end_frame`` (present or not), ``chunks``, ``payload_bytes`` (stored),
        ``raw_bytes`` (uncompressed), ``frame_bytes`` (every frame read, the end frame too);
        ``formats``, ``compressions`` and ``checksums``: chunk counts by name; ``declared``: the end
        frame's ``count``, ``bytes`` and ``digest``, or None; ``checkpoint``: where a writer resumes
        (:meth:`Checkpoint.as_dict`; ``ended`` when the stream is complete, and then nothing resumes
        from it), or None before any chunk; ``first_chunk``: chunk 0's
        :class:`tether.FrameInfo`, or None; ``payloads_checked``: False.

    Examples
    --------
    >>> import io
    >>> sink = io.BytesIO()
    >>> with StreamWriter(sink, chunk_size=4, compression="none") as w:
    ...     _ = w.write({"header": True})
    ...     _ = w.write_buffer(b"0123456789")
    >>> s = summarize_stream(sink.getvalue())
    >>> s["state"], s["chunks"], s["formats"], s["checkpoint"]["seq"], s["frame_bytes"] == len(sink.getvalue())
    ('complete', 4, {'etf': 1, 'raw': 3}, 4, True)
    >>> cut = summarize_stream(sink.getvalue()[:-1])  # one byte short of the end frame
    >>> cut["state"], cut["end_frame"], cut["chunks"], cut["problem"]["error"]
    ('incomplete', False, 4, 'TruncatedError')
    """
    reader = StreamReader(source, resume=resume, max_frame=max_frame)
    out: dict[str, Any] = {
        "state": "incomplete", "problem": None, "stream_id": None, "end_frame": False, "chunks": 0,
        "continues_from": None,
        "payload_bytes": 0, "raw_bytes": 0, "frame_bytes": 0, "formats": {}, "compressions": {}, "checksums": {},
        "declared": None, "checkpoint": None, "first_chunk": None, "payloads_checked": False,
    }
    try:
        _summarize(reader, out)
    except TruncatedError as exc:  # the input ends inside a frame: the chunks before it stand
        out["problem"] = {"error": type(exc).__name__, "message": str(exc), "chunk": reader._seq}
    except TetherError as exc:  # a frame fails a check, or is over a limit: reading stops there
        out["state"] = "damaged"
        out["problem"] = {"error": type(exc).__name__, "message": str(exc), "chunk": reader._seq}
    out["stream_id"] = reader.stream_id
    unchained = out["continues_from"] is not None and out["state"] != "complete"  # its digest is unknown
    out["checkpoint"] = reader.checkpoint().as_dict() if reader.stream_id and reader._seq and not unchained else None
    return out


def _summarize(reader: StreamReader, out: dict[str, Any]) -> None:
    """Walk ``reader``'s frames by header and metadata, counting into ``out``; raises where a frame fails."""
    limits = get_limits()
    while not reader.complete:
        where = reader._where()
        head = reader._source.next_head(reader._max_frame, where)
        if head is None:
            if not reader._seq:
                raise reader._ended_early()  # no chunk at all: not a stream
            return  # ends at a frame boundary without the end frame
        header, meta, _ = frame.read(head, limits, whole=False)
        info = meta.get("stream")
        if reader.stream_id is None and isinstance(info, dict) and _continues(info):
            # A continuation file (StreamWriter(resume=...) into a new sink): its chain starts at a checkpoint
            # this input does not hold, so only count and bytes can be checked against its end frame.
            reader._seq, reader._offset = info["seq"], info["offset"]
            out["continues_from"] = {"seq": info["seq"], "offset": info["offset"]}
        if out["continues_from"] is not None and isinstance(info, dict) and info.get("end") is True:
            reader._digest = info.get("digest")
        end = isinstance(info, dict) and info.get("end") is True
        if end:  # before the checks, which may refuse it (or the bytes after it): it was read all the same
            out["end_frame"] = True
            # As declared, but only ints a summary can print (str() of a forged million-digit int raises).
            out["declared"] = {k: v if _is_u64(v) else _kind(v) for k in ("count", "bytes", "digest")
                               for v in (info.get(k),)}
            out["frame_bytes"] += header.frame_size
        reader._accept(header, meta, where, None)
        if not end:
            out["frame_bytes"] += header.frame_size
        if reader.complete:
            out["state"] = "complete"
            return
        if not out["chunks"]:
            out["first_chunk"] = _frame_info(header, meta)
        out["chunks"] += 1
        out["payload_bytes"] += header.payload_length
        out["raw_bytes"] += header.raw_length
        fmt = formats.registry.by_id.get(header.format_id)
        comp = compression.registry.by_id.get(header.compression_id)
        for key, name in (("formats", fmt.name if fmt else f"unknown ({header.format_id})"),
                          ("compressions", comp.name if comp else f"unknown ({header.compression_id})"),
                          ("checksums", frame.checksum.NAMES.get(header.checksum_kind, str(header.checksum_kind)))):
            out[key][name] = out[key].get(name, 0) + 1


def _continues(info: dict[str, Any]) -> bool:
    """Whether a stream's first frame continues an earlier part: a chunk number and offset past the start."""
    seq, offset = info.get("seq"), info.get("offset")
    return _is_u64(seq) and _is_u64(offset) and seq > 0


def _frame_info(header: Any, meta: dict[str, Any]) -> Any:
    return frame.info(header, meta, formats.registry.by_id.get(header.format_id),
                      compression.registry.by_id.get(header.compression_id))
