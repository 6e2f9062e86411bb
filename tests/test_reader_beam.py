"""Frames both runtimes read by default: the CRC-32 default checksum, ``reader="beam"``, and etf read as tables."""

from __future__ import annotations

import binascii
import io
import pathlib
import subprocess
import time
import zlib

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

import tether
from conftest import split_stream
from tether import Atom as A
from tether.frame import checksum

BEAM = pathlib.Path(__file__).resolve().parent.parent / "beam"
GOLDEN = pathlib.Path(__file__).resolve().parent / "golden"
TEXT = b"".join(b"line %d of a log that repeats itself\n" % (i % 50) for i in range(40_000))  # 1.4 MB
# A 200 Mbit/s link, where gzip pays for TEXT by a wide margin: it stays the choice with the
# samples timed up to ~12x slower (a slower or busy CI core). At the default 1 Gbit/s the
# choice is the host's speed (gzip wins there until ~2.5x slower than a 2026 dev core).
PAYS = 25e6


# ------------------------------------------------------------------ the default checksum


def payload(frame: bytes) -> bytes:
    return frame[tether.frame.unpack(memoryview(frame), tether.get_limits()).payload_offset :]


@pytest.mark.parametrize("value", [b"abc", {"k": [1, 2]}, np.arange(10.0), "text", 7])
def test_the_default_payload_checksum_is_crc32_as_erlang_computes_it(value):
    frame = tether.dumps(value)
    info = tether.inspect(frame)
    assert info.checksum == "crc32"
    assert tether.frame.unpack(memoryview(frame), tether.get_limits()).payload_checksum == zlib.crc32(payload(frame))
    assert tether.inspect(bytes(tether.encode(value))).checksum == "crc32"
    assert tether.inspect(tether.dumps(value, checksum=True)).checksum == "crc32"
    assert tether.inspect(tether.dumps(value, checksum="xxh3-64")).checksum == "xxh3-64"


def test_crc32_is_computed_by_isal_and_agrees_with_zlib():
    data = np.random.default_rng(1).bytes(1 << 20)
    assert checksum.crc32(data) == zlib.crc32(data) == checksum.compute(checksum.CRC32, memoryview(data))
    assert checksum.crc32.__module__ == checksum.__name__
    from isal import isal_zlib

    assert checksum.crc32(b"x") == isal_zlib.crc32(b"x")


def test_the_auto_rule_is_unchanged_but_for_the_kind():
    big = np.zeros(1 << 18)
    assert tether.inspect(tether.dumps(big)).checksum == "none"  # large and in memory
    assert tether.inspect(tether.dumps(big, transport="disk")).checksum == "crc32"
    assert tether.inspect(tether.dumps(big, compression="zstd")).checksum == "crc32"


def test_frames_written_with_xxh3_keep_reading():
    frame = (GOLDEN / "raw_bytes.tthr").read_bytes()
    assert tether.inspect(frame).checksum == "xxh3-64"
    tether.verify(frame)
    broken = bytearray(frame)
    broken[-1] ^= 1
    with pytest.raises(tether.ChecksumError, match="xxh3-64"):
        tether.loads(bytes(broken))


# ------------------------------------------------------------------ reader="beam"


def test_auto_compression_for_the_beam_is_gzip_where_it_pays():
    frame = tether.dumps(TEXT, compression="auto", transport="network", bandwidth=PAYS, reader="beam")
    assert tether.inspect(frame).compression == "gzip"
    assert "fastest predicted" in tether.last_decision().compression_reason
    assert tether.loads(frame) == TEXT
    # Python's reader gets lz4 or zstd for the same bytes.
    python = tether.dumps(TEXT, compression="auto", transport="network", bandwidth=PAYS)
    assert tether.inspect(python).compression in ("lz4", "zstd")


def test_one_stalled_sample_does_not_flip_the_choice(monkeypatch):
    # One sample can cost far more than the rest (a page fault, an interrupt, caches
    # cooled by another process): the policy takes the samples' median rate, so one
    # 30 ms stall (100x a sample's time) is ignored. The stall spins, so it is CPU
    # time as well as wall time: whichever clock the policy reads, it sees it.
    gz = tether.compression.get("gzip")
    real = gz.compress
    calls = []

    def stalls_once(segments, n, level, **context):  # once per level: both gzip levels are timed
        if level not in calls:
            until = time.thread_time() + 0.03
            while time.thread_time() < until:
                pass
        calls.append(level)
        return real(segments, n, level, **context)

    monkeypatch.setattr(gz, "compress", stalls_once)
    frame = tether.dumps(TEXT, compression="auto", transport="network", bandwidth=PAYS, reader="beam")
    assert len(calls) > 6 and len(set(calls)) > 1  # three samples at two levels, then the payload
    assert tether.inspect(frame).compression == "gzip"


@pytest.mark.parametrize("reader, chosen", [("beam", ("gzip",)), ("python", ("lz4", "zstd"))])
def test_waiting_for_a_core_through_every_sample_does_not_flip_the_choice(monkeypatch, reader, chosen):
    # On 2 shared cores the writer can be off-CPU while it times every sample (the
    # median cannot help then). Modelled exactly: each compress call, the wall clocks
    # jump 20 ms (another process ran) while this thread's CPU time does not. The
    # policy charges codecs their CPU time, so the choice stays an idle host's; timed
    # by the wall it was "none". (A real sleep would also cool the caches: a slower
    # codec, which the policy should see.)
    away = [0]
    for name in ("perf_counter_ns", "monotonic_ns", "time_ns"):
        monkeypatch.setattr(time, name, lambda _real=getattr(time, name): _real() + away[0])
    for name in ("perf_counter", "monotonic", "time"):
        monkeypatch.setattr(time, name, lambda _real=getattr(time, name): _real() + away[0] / 1e9)
    calls = []
    for name in ("lz4", "zstd", "gzip"):
        codec = tether.compression.get(name)

        def preempted(*args, _real=codec.compress, **kwargs):
            calls.append(1)
            out = _real(*args, **kwargs)
            away[0] += 20_000_000
            return out

        monkeypatch.setattr(codec, "compress", preempted)
    frame = tether.dumps(TEXT, compression="auto", transport="network", bandwidth=PAYS, reader=reader)
    assert len(calls) >= 6  # lz4's samples, another codec's samples, then the payload
    assert tether.inspect(frame).compression in chosen, tether.last_decision().compression_reason
    assert tether.loads(frame) == TEXT


@pytest.mark.parametrize("value, transport, why", [
    (TEXT, "memory", "stays on this host"),
    (np.random.default_rng(0).bytes(1 << 20), "network", "incompressible"),
    (TEXT[:1000], "network", "too small"),
    (TEXT, None, "no compressor beats"),  # a 10 GB/s link: gzip's time never pays
])
def test_auto_compression_for_the_beam_is_none_where_gzip_does_not_pay(value, transport, why):
    kw = {"transport": transport} if transport else {"transport": "network", "bandwidth": 10e9}
    frame = tether.dumps(value, compression="auto", reader="beam", **kw)
    assert tether.inspect(frame).compression == "none"
    assert why in tether.last_decision().compression_reason


def test_an_explicit_codec_the_beam_cannot_undo_is_refused():
    for codec in ("lz4", "zstd"):
        with pytest.raises(tether.ValidationError, match="it reads none and gzip"):
            tether.dumps(TEXT, compression=codec, reader="beam")
    assert tether.inspect(tether.dumps(TEXT, compression="gzip", reader="beam")).compression == "gzip"
    with pytest.raises(tether.ValidationError, match="Valid options are: python, beam"):
        tether.dumps(b"x", reader="erlang")
    with pytest.raises(tether.ValidationError, match="Valid options are: python, beam"):
        tether.dumps({"a": 1}, reader=None)


def test_pickle_is_refused_for_the_beam():
    with pytest.raises(tether.ValidationError, match="format='pickle' cannot be read by reader='beam'"):
        tether.dumps([1], format="pickle", reader="beam")
    with pytest.raises(tether.EncodeError, match="cannot read pickle frames.*builtins.object"):
        tether.dumps(object(), reader="beam")
    with pytest.raises(tether.EncodeError, match=r"cannot read pickle frames.*\$\.k"):
        tether.encode({"k": object()}, reader="beam")  # etf's fallback would have been pickle
    assert tether.inspect(tether.dumps({"k": object()})).format == "pickle"  # Python readers: as before


@pytest.mark.parametrize("make", [lambda a: a.T, lambda a: np.asfortranarray(a), lambda a: a[:, ::2],
                                  lambda a: a[::-1]])
def test_arrays_for_the_beam_are_row_major_with_the_same_values(make):
    arr = make(np.arange(24, dtype="<f4").reshape(4, 6))
    frame = tether.dumps(arr, reader="beam")
    assert tether.inspect(frame).type["order"] == "C"
    flat = np.frombuffer(payload(frame), dtype="<f4").reshape(arr.shape)  # how Nx reads it
    np.testing.assert_array_equal(flat, arr)
    np.testing.assert_array_equal(tether.loads(frame), arr)


def test_arrays_for_python_keep_their_layout():
    arr = np.arange(6.0).reshape(2, 3).T
    assert tether.inspect(tether.dumps(arr)).type["order"] == "F"


def test_arrow_for_the_beam_is_not_compressed_inside_the_ipc_stream():
    table = pa.table({"x": list(range(100_000)), "s": ["same text"] * 100_000})
    frame = tether.dumps(table, compression="auto", transport="network", reader="beam")
    info = tether.inspect(frame)
    assert "ipc_compression" not in info.type and info.compression in ("none", "gzip")
    assert tether.loads(frame).equals(table)
    assert tether.inspect(tether.dumps(table, compression="auto", transport="network")).type["ipc_compression"]


def test_the_one_step_writer_and_the_general_path_agree_for_the_beam(monkeypatch):
    monkeypatch.setattr(time, "time_ns", lambda: 1_795_000_000_123_456_789)
    for value in ({"id": 1, "tags": [A("a")], "x": 2.5}, [b"y"], np.arange(3)):
        fast = tether.dumps(value, reader="beam")
        assert fast == bytes(tether.encode(value, reader="beam"))
        assert tether.inspect(fast).checksum == "crc32"


# ------------------------------------------------------------------ etf read as tables


ROWS = [{"id": 1, "name": "a", "score": 0.5}, {"id": 2, "name": "b", "score": None}]
COLUMNS = {A("id"): [1, 2, 3], A("ok"): [True, False, None], A("name"): [b"x", b"y", b"z"]}


@pytest.mark.parametrize("value", [ROWS, COLUMNS])
def test_etf_rows_and_columns_read_as_tables(value):
    frame = tether.dumps(value, format="etf")
    table = tether.loads(frame, into="arrow")
    assert isinstance(table, pa.Table) and table.num_rows == len(ROWS) if value is ROWS else 3
    assert isinstance(tether.loads(frame, into="pandas"), pd.DataFrame)
    assert isinstance(tether.loads(frame, into="polars"), pl.DataFrame)
    assert table.to_pylist() == tether.arrow.from_etf(payload(frame)).to_pylist()


def test_etf_tables_use_the_typed_column_path():
    table = tether.loads(tether.dumps(ROWS, format="etf"), into="arrow")
    assert table.schema.field("id").type == pa.int64() and table.schema.field("score").type == pa.float64()
    assert table.column("name").to_pylist() == ["a", "b"] and table.column("score").null_count == 1


def test_etf_frames_the_beam_wrote_read_as_tables():
    frame = tether.dumps([{A("id"): 1, A("tag"): A("x")}, {A("id"): 2, A("tag"): A("y")}], format="etf",
                         compression="gzip")
    assert tether.loads(frame, into="polars")["id"].to_list() == [1, 2]


def test_pylist_reads_an_etf_list():
    assert tether.loads(tether.dumps([1, (2, 3)], format="etf"), into="pylist") == [1, (2, 3)]
    with pytest.raises(tether.ValidationError, match="into='pylist' needs an etf frame holding a list, or columns "
                                                     r"\(a map of equal-length lists\); this one holds a dict"):
        tether.loads(tether.dumps({"a": 1}), into="pylist")


def test_pylist_reads_etf_columns_as_rows_as_it_reads_an_arrow_table():
    # An Elixir stream of column maps read with into="pylist" failed at its first chunk.
    columns = {"id": [1, 2], "name": ["a", None], "at": [(1, 2), (3, 4)]}
    rows = [{"id": 1, "name": "a", "at": (1, 2)}, {"id": 2, "name": None, "at": (3, 4)}]
    assert tether.loads(tether.dumps(columns, format="etf"), into="pylist") == rows
    flat = {"id": [1, 2], "name": ["a", None]}
    assert tether.loads(tether.dumps(flat, format="etf"), into="pylist") == tether.loads(
        tether.dumps(flat, format="arrow"), into="pylist")


@pytest.mark.parametrize("value, what", [((1, 2), "a tuple"), (5, "an int"), ([1, 2], "a list that is neither"),
                                         ({"a": [1, 2], "b": [3]}, "a dict that is neither")])
def test_etf_terms_that_are_no_table_say_so(value, what):
    with pytest.raises(tether.ValidationError, match=f"needs rows .a list of maps. or columns .a map of "
                                                     f"equal-length lists.; this frame holds {what}"):
        tether.loads(tether.dumps(value, format="etf"), into="arrow")


def test_an_etf_column_arrow_cannot_hold_is_a_column_error():
    with pytest.raises(tether.ColumnError, match="into='pandas'.*beyond 64 bits"):
        tether.loads(tether.dumps([{"a": 2**70}], format="etf"), into="pandas")
    with pytest.raises(tether.ValidationError, match="Valid options are: arrow, pandas, polars, pylist"):
        tether.loads(tether.dumps([1], format="etf"), into="numpy")


# ------------------------------------------------------------------ a real erl reads them


SHUFFLY = np.repeat(np.arange(8000, dtype="<f8"), 4)  # 256 KB: auto compresses it for a slow disk


def _filter_id(frame: bytes) -> int:
    return tether.frame.unpack(memoryview(frame), tether.get_limits()).filter_id


@pytest.fixture(scope="module")
def ebin(tmp_path_factory):
    out = tmp_path_factory.mktemp("ebin")
    subprocess.run(["erlc", "-I", str(BEAM / "include"), "-o", str(out), *map(str, (BEAM / "src").glob("*.erl"))],
                   check=True)
    return out


def test_the_beam_decodes_python_defaults_and_beam_auto_compression(ebin):
    frames = {
        "etf": tether.dumps({"a": [1, 2.5, b"x"]}),
        "array": tether.dumps(np.arange(6, dtype="<f4").reshape(2, 3).T, reader="beam"),
        # A small C-contiguous array: ndarray's one-step writer.
        "small": tether.dumps(np.arange(6, dtype="<f4").reshape(2, 3)),
        # A slow link makes gzip's win independent of how loaded this machine is when it times the sample.
        "network": tether.dumps(TEXT, compression="auto", transport="network", bandwidth=5e6, reader="beam"),
        # Floats whose high bytes repeat: byte-shuffling would win for Python, which alone undoes it.
        "floats": tether.dumps(SHUFFLY, compression="gzip", reader="beam"),
        "floats_auto": tether.dumps(SHUFFLY, compression="auto", transport="disk", bandwidth=1e6, reader="beam"),
    }
    assert tether.inspect(frames["network"]).compression == "gzip"
    for name in ("floats", "floats_auto"):
        assert (tether.inspect(frames[name]).compression, _filter_id(frames[name])) == ("gzip", 0)
    assert _filter_id(tether.dumps(SHUFFLY, compression="gzip")) == 1  # what a Python reader gets
    checks = {
        "etf": "V =:= #{<<\"a\">> => [1, 2.5, <<\"x\">>]}",
        "array": "is_map(V)",
        "small": "maps:get(type, V) =:= {f, 32} andalso maps:get(shape, V) =:= {2, 3} andalso "
                 "maps:get(data, V) =:= << <<X:32/float-little>> || X <- [0.0, 1.0, 2.0, 3.0, 4.0, 5.0] >>",
        "network": f"byte_size(V) =:= {len(TEXT)}",
        "floats": f"erlang:crc32(maps:get(data, V)) =:= {zlib.crc32(SHUFFLY.tobytes())}",
        "floats_auto": f"erlang:crc32(maps:get(data, V)) =:= {zlib.crc32(SHUFFLY.tobytes())}",
    }
    body = ", ".join(
        f'{{ok, V{i}}} = tether:decode(binary:decode_hex(<<"{binascii.hexlify(f).decode()}">>)), '
        f'io:format("~s ~p~n", ["{name}", (fun(V) -> {checks[name]} end)(V{i})])'
        for i, (name, f) in enumerate(frames.items())
    )
    proc = subprocess.run(["erl", "-noshell", "-pa", str(ebin), "-eval", body + ", halt()."],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(proc.stdout.split()) == sorted([*frames, *["true"] * len(frames)]), proc.stdout


def test_the_beam_unpacks_large_user_metadata_only_when_asked(ebin, tmp_path):
    labels = {f"label{i}": f"value {i % 97}" for i in range(5000)}  # well over the 16 KiB packing threshold
    big = tether.dumps(b"payload", metadata={"labels": labels, "run": 7})
    small = tether.dumps(b"payload", metadata={"run": 8})
    assert "user_packed" in _raw_metadata(big) and "user" in _raw_metadata(small)
    (tmp_path / "big").write_bytes(big)
    (tmp_path / "small").write_bytes(small)
    body = (
        f'{{ok, B}} = file:read_file("{tmp_path / "big"}"), {{ok, S}} = file:read_file("{tmp_path / "small"}"), '
        '{ok, #{metadata := M}} = tether:inspect(B), false = maps:is_key(<<"user">>, M), '
        '{ok, #{<<"run">> := R1, <<"labels">> := L}} = tether:user_metadata(B), '
        '{ok, #{<<"run">> := R2}} = tether:user_metadata(S), '
        'Cut = binary:replace(B, <<"zlib">>, <<"zzzz">>), '
        '{error, _} = tether:user_metadata(Cut), '
        'io:format("~p ~p ~p ~p~n", [R1, R2, map_size(L), maps:get(<<"label5">>, L)])'
    )
    proc = subprocess.run(["erl", "-noshell", "-pa", str(ebin), "-eval", body + ", halt()."],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.split() == ["7", "8", "5000", '<<"value', '5">>'], proc.stdout


def _raw_metadata(frame: bytes) -> dict:
    return tether.frame.read(memoryview(frame), tether.get_limits())[1]


def test_lineage_runs_python_to_beam_to_python(ebin, tmp_path):
    first = tether.dumps({"n": 1}, step="ingest")
    _, info = tether.loads(first, with_info=True)
    second = tether.dumps({"n": 2}, parent=info, step="normalize")
    (tmp_path / "in").write_bytes(second)
    body = (
        f'{{ok, F}} = file:read_file("{tmp_path / "in"}"), {{ok, #{{metadata := M}}}} = tether:inspect(F), '
        f'{{ok, V}} = tether:decode(F), '
        f'ok = file:write_file("{tmp_path / "out"}", tether:encode(V, #{{parent => M, step => <<"beam.enrich">>}}))'
    )
    proc = subprocess.run(["erl", "-noshell", "-pa", str(ebin), "-eval", body + ", halt()."],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    value, out = tether.loads((tmp_path / "out").read_bytes(), with_info=True)
    assert value == {b"n": 2} or value == {"n": 2}
    steps = [(e.get("producer", "").split("/")[0], e.get("step")) for e in out.lineage]
    assert steps == [("tether-beam", "beam.enrich"), ("tether-py", "normalize"), ("tether-py", "ingest")], out.lineage


@pytest.mark.parametrize("transport", ["memory", "stream", "network", "disk"])
def test_auto_keeps_python_rows_and_columns_etf_for_the_beam(transport):
    # A StreamWriter(reader="beam") chunk of 256 rows reached Elixir as Arrow bytes, one of 255 as maps.
    rows = [{"id": i, "x": float(i)} for i in range(300)]
    columns = {"id": list(range(300))}
    for value in (rows, columns):
        frame = tether.dumps(value, reader="beam", transport=transport)
        assert tether.inspect(frame).format == "etf" and tether.loads(frame) == value
    assert tether.inspect(tether.dumps(pa.table(columns), reader="beam", transport=transport)).format == "arrow"
    assert tether.inspect(tether.dumps(columns, transport=transport)).format == "arrow"  # Python readers


def test_a_beam_stream_of_row_chunks_stays_etf_whatever_their_length():
    sink = io.BytesIO()
    with tether.stream.StreamWriter(sink, reader="beam") as w:
        for n in (255, 256, 5000):
            w.write([{"id": i} for i in range(n)])
    assert {tether.inspect(f).format for f in split_stream(sink.getvalue())[:-1]} == {"etf"}


def test_columns_of_numpy_arrays_still_go_as_arrow_for_the_beam():
    # etf has no arrays: declining them left the value nowhere but pickle, which the BEAM cannot read.
    value = {"a": np.arange(300), "b": np.arange(300.0)}
    assert tether.inspect(tether.dumps(value, reader="beam", transport="stream")).format == "arrow"


def test_pylist_of_etf_columns_is_held_to_the_limit_an_arrow_tables_is(limit):
    frame = tether.dumps({"a": list(range(1_000_000))}, format="etf")
    limit(64 << 20)
    with pytest.raises(tether.LimitError, match="into='pylist' of 1 columns of 1000000 values would build"):
        tether.loads(frame, into="pylist")
