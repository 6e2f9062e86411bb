"""tether.stream: bounded chunks, completeness, resume, compression, hostile input."""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow as pa
import pytest

import tether
from conftest import split_stream
from tether._api import prepare
from tether._request import Request
from tether.stream import Checkpoint, StreamError, StreamReader, StreamWriter, summarize_stream, verify_stream

MIB = 1 << 20



def _text(n: int) -> bytes:
    words = np.array([b"alpha ", b"beta ", b"gamma ", b"error ", b"user_id=42 "])
    return b"".join(words[np.random.default_rng(1).integers(0, len(words), n // 5)])[:n]


@pytest.mark.parametrize("compression", ["none", "lz4", "zstd", "gzip", "auto"])
def test_values_round_trip_with_every_compressor(compression):
    values = [{"id": 1, "tags": ("a", b"b")}, np.arange(10_000.0), _text(200_000), "done", None]
    sink = io.BytesIO()
    with StreamWriter(sink, compression=compression) as w:
        for v in values:
            w.write(v)
    got = list(StreamReader(io.BytesIO(sink.getvalue())))
    assert got[0] == values[0] and np.array_equal(got[1], values[1])
    assert bytes(got[2]) == values[2] and got[3:] == values[3:]
    comps = {tether.inspect(f).compression for f in split_stream(sink.getvalue())}
    if compression in ("lz4", "zstd", "gzip"):
        assert compression in comps
    elif compression == "none":
        assert comps == {"none"}


def test_auto_compression_decides_per_chunk():
    sink = io.BytesIO()
    noise = np.random.default_rng(0).bytes(4 * MIB)
    with StreamWriter(sink, chunk_size=MIB) as w:
        w.write_buffer(_text(4 * MIB))
        w.write_buffer(noise)
    frames = split_stream(sink.getvalue())
    kinds = [tether.inspect(f).compression for f in frames[:-1]]
    assert kinds[:4] != ["none"] * 4 and kinds[4:] == ["none"] * 4
    assert all(tether.inspect(f).checksum == "crc32" for f in frames)


def test_large_data_moves_in_bounded_chunks_from_a_file():
    data = _text(6 * MIB + 123)
    sink = io.BytesIO()
    with StreamWriter(sink, chunk_size=MIB, compression="none") as w:
        w.write_buffer(io.BytesIO(data))  # read a chunk at a time, never whole
    frames = split_stream(sink.getvalue())
    assert len(frames) == 8  # 7 chunks and the end frame
    assert max(tether.inspect(f).payload_size for f in frames) == MIB
    out = io.BytesIO()
    reader = StreamReader(io.BytesIO(sink.getvalue()), max_frame=MIB + 4096)
    assert reader.copy_to(out) == len(data) and out.getvalue() == data
    assert reader.complete and reader.totals == {"chunks": 7, "bytes": len(data)}
    with pytest.raises(tether.LimitError, match="max_frame"):
        list(StreamReader(sink.getvalue(), max_frame=MIB // 2))


def test_tables_and_arrays_split_and_reassemble():
    table = pa.table({"id": np.arange(200_000), "x": np.random.default_rng(2).random(200_000)})
    arr = np.arange(300_000, dtype="f4").reshape(100_000, 3)
    for writer_call, reader_call, value, equal in [
        ("write_table", "read_table", table, lambda a, b: a.equals(b)),
        ("write_array", "read_array", arr, np.array_equal),
    ]:
        sink = io.BytesIO()
        with StreamWriter(sink, chunk_size=256 << 10) as w:
            getattr(w, writer_call)(value)
        assert len(split_stream(sink.getvalue())) > 5
        assert equal(getattr(StreamReader(sink.getvalue()), reader_call)(), value)


def _stream_of(n: int = 6, **kw) -> bytes:
    sink = io.BytesIO()
    with StreamWriter(sink, **kw) as w:
        for i in range(n):
            w.write({"i": i, "pad": b"x" * 100})
    return sink.getvalue()


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda fr: fr[:-1], "without its end frame"),
        (lambda fr: fr[:2] + fr[3:], "chunk 2 is missing"),
        (lambda fr: fr[:3] + fr[2:], "got chunk 2 instead: chunk 2 is repeated or out of order"),  # it named 3
        (lambda fr: [fr[1], fr[0], *fr[2:]], "chunk 0 is missing"),
        (lambda fr: fr[:2] + [split_stream(_stream_of())[2]] + fr[3:], "another stream"),
        (lambda fr: [], "no chunk and no end frame"),
    ],
)
def test_incomplete_and_disordered_streams_are_refused(edit, message):
    frames = split_stream(_stream_of())
    data = b"".join(edit(frames))
    with pytest.raises(StreamError, match=message):
        list(StreamReader(data))
    with pytest.raises(StreamError, match=message):
        verify_stream(io.BytesIO(data))


def test_end_frame_must_match_what_arrived():
    frames = split_stream(_stream_of())
    info = tether.inspect(frames[-1]).stream
    # A forged end frame that claims fewer chunks: the counts disagree.
    request = Request.of(format="scalar", checksum=True, transport="stream")
    forged = prepare(None, request, stream={**info, "count": info["count"] - 1})
    with pytest.raises(StreamError, match="end frame declares count"):
        list(StreamReader(b"".join(frames[:-1]) + bytes(forged)))


@pytest.mark.parametrize("value, request_kw", [(7, {"format": "scalar"}), (b"hidden", {"format": "raw"})])
def test_an_end_frame_that_carries_a_payload_is_refused(value, request_kw):
    """Data put in the end frame would never reach a reader: the stream is refused, not read without it."""
    frames = split_stream(_stream_of())
    info = tether.inspect(frames[-1]).stream
    forged = prepare(value, Request.of(checksum=True, transport="stream", **request_kw), stream=info)
    data = b"".join(frames[:-1]) + bytes(forged)
    with pytest.raises(StreamError, match=r"the end frame carries a payload of \d+ bytes"):
        list(StreamReader(data))
    with pytest.raises(StreamError, match="end frame carries a payload"):
        verify_stream(io.BytesIO(data))


def test_corruption_anywhere_never_yields_wrong_data():
    data = _stream_of(4, compression="lz4")
    assert len(list(StreamReader(data))) == 4
    rng = np.random.default_rng(5)
    for bit in rng.integers(0, len(data) * 8, 300):
        bad = bytearray(data)
        bad[bit // 8] ^= 1 << (bit % 8)
        # header, metadata, padding and payload are all covered: every flip is caught
        with pytest.raises(tether.TetherError):
            list(StreamReader(bytes(bad)))
    for cut in range(0, len(data), 37):
        with pytest.raises(tether.TetherError):
            list(StreamReader(io.BytesIO(data[:cut])))


def test_resume_from_a_readers_checkpoint():
    data = _text(5 * MIB)
    first = io.BytesIO()
    w = StreamWriter(first, chunk_size=MIB)
    w.write_buffer(data[: 3 * MIB])
    w.abort()  # the producer died: no end frame
    received = io.BytesIO()
    reader = StreamReader(first.getvalue())
    with pytest.raises(StreamError, match="without its end frame"):
        for part in reader:
            received.write(part)
    cp = Checkpoint.from_dict(reader.checkpoint().as_dict())  # what a consumer would persist
    assert cp.seq == 3 and cp.offset == 3 * MIB
    second = io.BytesIO()
    with StreamWriter(second, chunk_size=MIB, resume=cp) as w2:
        w2.write_buffer(data[cp.offset :])
    reader2 = StreamReader(second.getvalue(), resume=cp)
    reader2.copy_to(received)
    assert reader2.complete and received.getvalue() == data
    assert reader2.totals == {"chunks": 5, "bytes": len(data)}
    # The continuation does not fit any other point of the stream.
    with pytest.raises(StreamError):
        list(StreamReader(second.getvalue()))
    with pytest.raises(StreamError):
        list(StreamReader(second.getvalue(), resume=Checkpoint(cp.stream_id, cp.seq, cp.offset, cp.digest ^ 1)))


def test_failure_inside_the_writer_block_leaves_the_stream_incomplete():
    sink = io.BytesIO()
    with pytest.raises(RuntimeError):
        with StreamWriter(sink) as w:
            w.write(1)
            raise RuntimeError("producer failed")
    with pytest.raises(StreamError, match="without its end frame"):
        list(StreamReader(sink.getvalue()))


def test_backpressure_the_writer_holds_one_chunk_and_waits_for_the_sink():
    seen = []

    class SlowSink:
        def write(self, frame):
            seen.append(len(frame))
            return len(frame)

    w = StreamWriter(SlowSink(), chunk_size=1000, compression="none")
    w.write_buffer(b"x" * 10_000)
    # Every chunk reached the sink before write_buffer returned: nothing queued.
    assert len(seen) == 10 and w.checkpoint().seq == 10


def test_cli_verify_and_inspect_know_streams(tmp_path, capsys):
    from tether._cli import main

    path = tmp_path / "s.tthr"
    path.write_bytes(_stream_of(3))
    assert main(["verify", str(path)]) == 0
    out = capsys.readouterr().out
    assert "stream" in out and "3 chunks" in out
    path.write_bytes(b"".join(split_stream(_stream_of(3))[:-1]))
    assert main(["verify", str(path)]) == 1
    assert "end frame" in capsys.readouterr().err


def test_a_forged_frame_length_cannot_make_the_reader_allocate_it():
    frame = split_stream(_stream_of(1))[0]
    info = tether.inspect(frame)
    # Rewrite the header to declare a 512 GiB payload (with a valid header CRC).
    import struct
    import zlib

    head = bytearray(frame[:64])
    struct.pack_into("<QQ", head, 24, 512 << 30, 512 << 30)
    struct.pack_into("<I", head, 60, zlib.crc32(head[:60]))
    forged = bytes(head) + frame[64 : info.payload_offset + 10]

    class Pipe(io.RawIOBase):  # not seekable, like a socket
        def __init__(self, data):
            self.data = io.BytesIO(data)

        def readable(self):
            return True

        def readinto(self, b):
            return self.data.readinto(b)

    for source in (io.BytesIO(forged), Pipe(forged), forged):
        with pytest.raises(tether.TruncatedError):
            list(StreamReader(source))


def test_bad_arguments_are_validation_errors():
    with pytest.raises(tether.ValidationError):
        StreamWriter(object())
    with pytest.raises(tether.ValidationError):
        StreamWriter(io.BytesIO(), chunk_size=0)
    with pytest.raises(tether.ValidationError):
        StreamReader(12)
    with pytest.raises(tether.ValidationError):
        Checkpoint.from_dict({"seq": 1})


def test_resume_takes_a_checkpoint_or_its_dict_and_refuses_anything_else():
    sink = io.BytesIO()
    w = StreamWriter(sink)
    w.write("a")
    w.abort()
    reader = StreamReader(sink.getvalue())
    with pytest.raises(StreamError):
        list(reader)
    saved = reader.checkpoint().as_dict()  # as an application stores it: plain data
    rest = StreamWriter(sink, resume=saved)
    rest.write("b")
    rest.close()
    assert list(StreamReader(sink.getvalue())) == ["a", "b"]  # the whole stream, checked end to end
    assert [v for v in StreamReader(_after(sink.getvalue(), saved), resume=saved)] == ["b"]
    for bad in (5, "cp", [saved]):
        for make in (lambda r: StreamWriter(io.BytesIO(), resume=r), lambda r: StreamReader(b"", resume=r)):
            with pytest.raises(tether.ValidationError, match="resume= takes a Checkpoint"):
                make(bad)
    with pytest.raises(tether.ValidationError, match="32 lowercase hex digits"):
        Checkpoint.from_dict({**saved, "stream_id": "zz"})
    assert Checkpoint.from_dict(json.loads(json.dumps(saved))) == reader.checkpoint()  # stored as JSON
    as_numpy = {**saved, "seq": np.int64(saved["seq"]), "offset": np.uint64(saved["offset"])}  # kept in a table
    assert Checkpoint.from_dict(as_numpy) == reader.checkpoint()
    for field, mangled in (("seq", 1.5), ("seq", True), ("offset", "8"), ("digest", 2.0), ("stream_id", 7)):
        with pytest.raises(tether.ValidationError, match="must be a str stream_id, int seq"):
            Checkpoint.from_dict({**saved, field: mangled})
    for max_frame in (-1, 0, "big"):
        with pytest.raises(tether.ValidationError, match="max_frame"):
            StreamReader(b"", max_frame=max_frame)


def _after(stream: bytes, checkpoint: dict) -> bytes:
    """The bytes of ``stream`` from the chunk ``checkpoint`` names on (frame sizes read from the headers)."""
    pos = 0
    for _ in range(checkpoint["seq"]):
        pos += tether.inspect(stream[pos:]).frame_size
    return stream[pos:]


def test_a_stream_for_the_beam_uses_only_codecs_and_formats_the_beam_reads():
    text = b"the same line of text, again and again. " * 50_000  # 2 MB that compresses well
    for reader, allowed in (("beam", {"none", "gzip"}), ("python", None)):
        sink = io.BytesIO()
        with StreamWriter(sink, compression="auto", bandwidth=10e6, reader=reader, chunk_size=1 << 20) as w:
            w.write_buffer(text)
        data, pos, codecs = sink.getvalue(), 0, set()
        while pos < len(data):
            info = tether.inspect(data[pos:])
            codecs.add(info.compression)
            pos += info.frame_size
        if allowed is not None:
            assert codecs <= allowed and "gzip" in codecs, codecs
        else:
            assert codecs - {"none", "gzip"}, codecs  # auto picks lz4 or zstd when the BEAM need not read it
        assert b"".join(bytes(v) for v in StreamReader(data)) == text
    with pytest.raises(tether.ValidationError, match="cannot be read by reader='beam'"):
        StreamWriter(io.BytesIO(), reader="beam").write({1, 2}, format="pickle")
    with pytest.raises(tether.ValidationError, match="reader"):
        StreamWriter(io.BytesIO(), reader="erlang")


@pytest.mark.parametrize("metadata", ["run 7", [("k", "v")], 7])
def test_chunk_metadata_that_is_not_a_mapping_is_a_validation_error(metadata):
    # Before, a str reached dict() and raised a bare ValueError; dumps names the problem, and so does write.
    w = StreamWriter(io.BytesIO())
    with pytest.raises(tether.ValidationError, match="metadata must be a mapping of str to values"):
        w.write({"a": 1}, metadata=metadata)
    w.write({"a": 1}, metadata={"k": "v"})  # the writer goes on


def test_a_complete_streams_checkpoint_is_ended_and_no_writer_resumes_from_it():
    sink = io.BytesIO()
    w = StreamWriter(sink)
    w.write("a")
    assert not w.checkpoint().ended
    closed = w.close()
    assert closed.ended and w.checkpoint().ended and closed.seq == 1
    whole = sink.getvalue()
    # Writing on after the end frame used to succeed and leave a stream no reader accepts.
    for resume in (closed, closed.as_dict(), json.loads(json.dumps(closed.as_dict()))):
        for make in (lambda r: StreamWriter(io.BytesIO(), resume=r), lambda r: StreamReader(b"", resume=r)):
            with pytest.raises(tether.ValidationError, match="complete stream .*abort"):
                make(resume)
    reader = StreamReader(whole)
    assert reader.read_all() == ["a"] and reader.checkpoint().ended
    assert summarize_stream(whole)["checkpoint"]["ended"] is True
    # Before the end: not ended. Stored before the field existed: not ended, and resumable.
    stopped = StreamWriter(io.BytesIO())
    stopped.write("x")
    cp = stopped.abort()
    assert not cp.ended
    legacy = {k: v for k, v in cp.as_dict().items() if k != "ended"}
    assert Checkpoint.from_dict(legacy) == cp
    StreamWriter(io.BytesIO(), resume=legacy).close()
    for stored, ended in ((None, False), (np.bool_(True), True), (np.False_, False), (1, True), (0, False)):
        assert Checkpoint.from_dict({**cp.as_dict(), "ended": stored}).ended is ended  # a table, SQLite, NULL
    for mangled in (2, "yes", 1.0, np.array([1, 0])):
        with pytest.raises(tether.ValidationError, match="bool ended"):
            Checkpoint.from_dict({**cp.as_dict(), "ended": mangled})


def test_appending_to_a_file_is_checked_against_what_it_ends_with(tmp_path):
    path = tmp_path / "s.tthr"
    with open(path, "ab") as f:
        w = StreamWriter(f)
        w.write("a")
        w.write("b")
        stopped = w.abort()
    reader = StreamReader(path.read_bytes())
    with pytest.raises(StreamError):
        reader.read_all()
    assert reader.checkpoint() == stopped
    before = path.read_bytes()
    # A new stream after one, or a continuation from a place the file has passed: refused, nothing written.
    for resume, message in ((None, "holds frames already"), (Checkpoint(stopped.stream_id, 1, 1, 0), "ends with chunk 1")):
        with open(path, "ab") as f, pytest.raises(StreamError, match=message):
            StreamWriter(f, resume=resume)
    assert path.read_bytes() == before
    with open(path, "ab") as f:  # from the reader's checkpoint: where the file ends
        with StreamWriter(f, resume=stopped) as w:
            w.write("c")
    assert StreamReader(path.read_bytes()).read_all() == ["a", "b", "c"]
    # Complete now; a checkpoint from before its end frame cannot append after it.
    with open(path, "ab") as f, pytest.raises(StreamError, match="ends with its end frame"):
        StreamWriter(f, resume=Checkpoint(stopped.stream_id, 3, 3, 0))
    # A writer that died mid-chunk: the error says where to cut the file.
    cut = tmp_path / "cut.tthr"
    cut.write_bytes(before[:-5])
    with open(cut, "ab") as f, pytest.raises(StreamError, match="truncate the file to that size"):
        StreamWriter(f, resume=Checkpoint(stopped.stream_id, 1, 1, 0))


@pytest.mark.parametrize("into, kind", [("arrow", pa.Table), ("pandas", "DataFrame"), ("pylist", list)])
def test_into_applies_to_the_chunks_and_the_stream_completes(into, kind):
    # The end frame holds no chunk: converting it too failed every stream read with into= at its very end.
    sink = io.BytesIO()
    with tether.stream.StreamWriter(sink) as w:
        w.write_table(pa.table({"id": [1, 2, 3]}))
        w.write([{"id": 4}, {"id": 5}])  # etf rows: the reader chooses the form
    reader = tether.stream.StreamReader(sink.getvalue(), into=into)
    chunks = list(reader)
    assert reader.complete and len(chunks) == 2
    assert all(type(c).__name__ == kind if isinstance(kind, str) else isinstance(c, kind) for c in chunks)


def test_a_chunk_whose_header_checksum_fails_is_named_with_where_to_resume():
    # The header was read before the wrapper that names the chunk: the error said neither.
    sink = io.BytesIO()
    with tether.stream.StreamWriter(sink) as w:
        for i in range(3):
            w.write({"i": i})
    frames = split_stream(sink.getvalue())
    data = bytearray(b"".join(frames))
    data[len(frames[0]) + len(frames[1]) + 20] ^= 1  # chunk 2's header
    with pytest.raises(tether.ChecksumError, match=r"chunk 2: Frame header checksum mismatch.*resume from"):
        list(tether.stream.StreamReader(bytes(data)))
