"""Regressions of the fuzz campaign of issue 14, each with its minimal reproducer.

A: metadata out of range; B: a compressed frame that claims 4 GiB; C: hash
flooding; D: a set inside a map key; E and F on the BEAM: its decoders never
raise, and its gzip is bounded (the ExUnit side is beam/test/tether_hardening_test.exs);
plus junk after a stream's end frame, the tag-80 peak, and the bomb
catalogue (tests/fuzz/bombs.py) with its memory measured by VmHWM.
"""

from __future__ import annotations

import io
import json
import os
import pathlib
import re
import shutil
import struct
import subprocess
import sys
import time

import numpy as np
import pytest

import tether
from tether import Atom, FrozenList, FrozenMap, _etf, etf
from tether._etf import decoder, keys
from tether.stream import StreamError, StreamReader, StreamWriter, verify_stream

from fuzz import bombs, mutate, targets

TESTS = pathlib.Path(__file__).resolve().parent
BEAM = TESTS.parent / "beam"
MIB = 1 << 20
P = 2**61 - 1  # Python hashes an int k to k mod P


def _with_meta(frame: bytes, **changes) -> bytes:
    """``frame`` with metadata fields changed and every checksum recomputed, as any peer can."""
    mlen = struct.unpack_from("<I", frame, 16)[0]
    meta = etf.decode(frame[64 : 64 + mlen], binaries="tagged", structs=False)
    meta.update(changes)
    return mutate.rebuild(frame, 0, etf.encode(meta))


def _child(code: str, timeout: float = 120) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), *sys.path])}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


# ---------------------------------------------------------------- A: metadata out of range


@pytest.mark.parametrize("created", [2**62, -(2**62), 253402300800000000, -62135596800000001, 10**30])
def test_a_created_at_out_of_range_reads_as_none(created):
    frame = _with_meta(tether.dumps(b"abc", checksum="crc32"), created_at=created)
    assert tether.inspect(frame).created_at is None
    assert tether.verify(frame).created_at is None
    assert tether.loads(frame) == b"abc"
    assert re.search(r"created at +unknown", str(tether.inspect(frame)))


def test_a_created_at_at_the_edges_of_datetime_reads():
    frame = _with_meta(tether.dumps(1), created_at=253402300799999999)
    assert tether.inspect(frame).created_at.year == 9999


def test_a_foreign_errors_become_typed_in_one_place():
    with pytest.raises(tether.DecodeError, match="here: OverflowError: boom"):
        with tether._errors.typed("here"):
            raise OverflowError("boom")
    with pytest.raises(tether.LimitError, match="out of memory"):
        with tether._errors.typed("here"):
            raise MemoryError()


# ---------------------------------------------------------------- B: a frame claiming 4 GiB


def test_b_lz4_frame_claiming_4gib_fails_typed_without_reserving_it():
    code = (
        "import struct, tether\n"
        "from fuzz import mutate\n"
        "f = bytearray(tether.dumps(b'a' * 10000, compression='lz4'))\n"
        "struct.pack_into('<Q', f, 32, 2**32 - 1)\n"
        "mutate.fix(f)\n"
        "peak = lambda: int([l for l in open('/proc/self/status') if l.startswith('VmPeak')][0].split()[1])\n"
        "before = peak()\n"
        "try:\n"
        "    tether.loads(bytes(f)); print('no error')\n"
        "except tether.TetherError as exc:\n"
        "    print(type(exc).__name__, (peak() - before) // 1024)\n"
    )
    name, vm_mib = _child(code).split()
    assert name == "DecodeError"
    assert int(vm_mib) < 64, f"loads reserved {vm_mib} MiB of address space for a 10 KB payload"


@pytest.mark.parametrize("codec", ["lz4", "zstd", "gzip"])
def test_b_every_codec_refuses_a_stream_longer_or_shorter_than_declared(codec):
    good = tether.dumps(b"xy" * 50_000, compression=codec, checksum="crc32")
    assert tether.loads(good) == b"xy" * 50_000
    for raw in (99_999, 100_001, 2**32 - 1):
        with pytest.raises(tether.DecodeError, match="declares"):
            tether.loads(bombs._with_raw_length(good, raw))


def test_b_trailing_bytes_after_a_compressed_stream_are_refused():
    for codec in ("lz4", "zstd", "gzip"):
        data = b"".join(tether.compression.get(codec).compress([memoryview(b"q" * 5000)], 5000, 1))
        frame = bombs._compressed_frame(codec, data + b"\x00junk", 5000)
        with pytest.raises(tether.DecodeError):
            tether.loads(frame)


# ---------------------------------------------------------------- C: hash flooding


def _map(pairs: list) -> bytes:
    """The ETF of a map with these (key, value) pairs, written without a Python dict (which would flood)."""
    body = b"".join(etf.encode(k)[1:] + etf.encode(v)[1:] for k, v in pairs)
    return b"\x83t" + len(pairs).to_bytes(4, "big") + body


def _flood(n: int) -> bytes:
    return _map([(k * P, 1) for k in range(1, n + 1)])


def _fastest(fn, data, repeat=3) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        try:
            fn(data)
        except tether.LimitError:
            pass
        best = min(best, time.perf_counter() - started)
    return best


@pytest.mark.parametrize("n", [20_000, 30_000])
def test_c_hash_flood_map_is_refused_on_both_paths_faster_than_an_ordinary_map_decodes(n):
    # The 50 ms bar is the bench's; here, a load-independent check: refusing the flood
    # costs no more than decoding an ordinary map of the same size (quadratic was ~1000x).
    data, ordinary = _flood(n), _map([(k, 1) for k in range(1, n + 1)])
    for decode in (etf.decode, lambda d: decoder.decode_term(d, 1, _etf.Options())):
        with pytest.raises(tether.LimitError, match="hash"):
            decode(data)
        assert _fastest(decode, data) < 3 * _fastest(decode, ordinary)


def test_c_hash_flood_is_refused_in_frames_tables_and_nested_keys():
    with pytest.raises(tether.LimitError):
        tether.loads(_etf_frame(_flood(20_000)))
    tuple_flood = _map([((1, k * P), 1) for k in range(1, 20_001)])
    with pytest.raises(tether.LimitError):
        etf.decode(tuple_flood)
    rows = etf.encode([{k * P: 1} for k in range(1, 20_001)])  # one colliding key per row: the column index
    assert _etf.decode_columns(rows, _etf.Options()) is None  # the C column decoders give up on it at once
    assert _etf.decode_typed_columns(rows, _etf.Options()) is None


def _etf_frame(payload: bytes) -> bytes:
    return bombs._etf_frame(payload)


def test_c_maps_with_few_equal_hashes_still_decode_alike_on_both_paths():
    data = etf.encode({k * P: k for k in range(1, keys.MAX_SAME_HASH + 1)} | {-1: "a", -2: "b", 2**60 - 1: 0})
    fast = etf.decode(data)
    slow, _ = decoder.decode_term(data, 1, _etf.Options())
    assert fast == slow and len(fast) == keys.MAX_SAME_HASH + 3
    over = _map([(k * P, k) for k in range(1, keys.MAX_SAME_HASH + 2)])
    for decode in (etf.decode, lambda d: decoder.decode_term(d, 1, _etf.Options())[0]):
        with pytest.raises(tether.LimitError, match=f"more than {keys.MAX_SAME_HASH} keys"):
            decode(over)


def test_c_ordinary_keys_are_not_counted():
    assert all(keys.trusted(k) for k in (Atom("a"), "s", b"b", True, None, 0, 2**60 - 1, -(2**60) + 1))
    assert not any(keys.trusted(k) for k in (2**60, P, 1.5, (1,), FrozenList([1])))
    atoms = etf.encode({Atom(f"k{i}"): i for i in range(50_000)})
    assert len(etf.decode(atoms)) == 50_000


# ---------------------------------------------------------------- D: a set inside a key

ELIXIR_KEYS = '%{[MapSet.new([1])] => 1, {MapSet.new([2]), %{a: MapSet.new([3])}} => 2, MapSet.new([[4]]) => 3}'


@pytest.mark.skipif(shutil.which("elixir") is None, reason="elixir is installed by make test")
def test_d_sets_inside_keys_decode_hashable_on_both_paths():
    out = subprocess.run(["elixir", "-e", f"IO.write(Base.encode16(:erlang.term_to_binary({ELIXIR_KEYS})))"],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    data = bytes.fromhex(out)
    want = {
        FrozenList([frozenset({1})]): 1,
        (frozenset({2}), FrozenMap({Atom("a"): frozenset({3})})): 2,
        frozenset({FrozenList([4])}): 3,
    }
    assert etf.decode(data) == want
    assert decoder.decode_term(data, 1, _etf.Options())[0] == want
    assert tether.loads(_etf_frame(data)) == want


def test_d_a_key_python_cannot_hash_is_a_typed_error():
    class Unhashable:
        __hash__ = None

    name = "Tether.Test.Unhashable"
    tether.etf.register_struct(name, python_type=Unhashable, to_python=lambda d: Unhashable(),
                               from_python=lambda v: {})
    data = _map([((1, {Atom("__struct__"): Atom("Elixir." + name)}), 1)])
    for decode in (etf.decode, lambda d: decoder.decode_term(d, 1, _etf.Options())[0]):
        with pytest.raises(tether.DecodeError, match="cannot be hashed"):
            decode(data)


# ---------------------------------------------------------------- streams: junk after the end


def _stream() -> bytes:
    import io

    sink = io.BytesIO()
    with StreamWriter(sink) as w:
        w.write([1, 2])
        w.write(b"three")
    return sink.getvalue()


@pytest.mark.parametrize("junk", [b"\x00", b"junk after the end", None])
def test_stream_refuses_bytes_after_its_end_frame(junk, tmp_path):
    import io

    data = _stream()
    tail = junk if junk is not None else data  # None: the same stream twice
    path = tmp_path / "s.tthrs"
    path.write_bytes(data + tail)
    for source in (data + tail, io.BytesIO(data + tail), open(path, "rb")):
        with pytest.raises(StreamError, match="follow the end frame"):
            list(StreamReader(source))
    with pytest.raises(StreamError, match="follow the end frame"):
        verify_stream(data + tail)
    assert verify_stream(data)["chunks"] == 2


def test_stream_writer_checksums_with_crc32_by_default():
    frames, pos, data = [], 0, _stream()
    while pos < len(data):
        info = tether.inspect(data[pos:])
        frames.append(info.checksum)
        pos += info.frame_size
    assert frames == ["crc32"] * 3


# ---------------------------------------------------------------- tag 80: the body once


def test_tag80_inflates_to_one_copy_of_its_body():
    code = (
        "from fuzz import bombs\n"
        "import tether\n"
        "from tether._etf import decoder\n"
        "n = 64 << 20\n"
        "data = bombs._tag80(n, n)\n"
        "frame = bombs._etf_frame(data)\n"
        "out = []\n"
        "for name, call in (('inflate', lambda: decoder.inflate(data, 2, tether.get_limits())),\n"
        "                   ('loads', lambda: tether.loads(frame))):\n"
        "    r = bombs.run_one(name, {}, lambda call=call: call)\n"
        "    out.append((r['outcome'], r['rss_rise'] / n))\n"
        "print(json.dumps(out))\n"
    )
    for outcome, ratio in json.loads(_child("import json\n" + code)):
        assert outcome == "no error" and ratio < 1.3, (outcome, ratio)


# ---------------------------------------------------------------- the bomb catalogue


def test_every_bomb_ends_typed_within_twice_its_limit():
    results = json.loads(_child("from fuzz import bombs; bombs.main()", timeout=300))
    assert len(results) == len(bombs.catalogue())
    for r in results:
        assert r["outcome"] in ("DecodeError", "LimitError", "TruncatedError", "StreamError"), r
        assert r["rss_rise"] <= 2 * r["limit"] + 16 * MIB, r
        assert r["vm_rise"] <= 2 * bombs.LIMIT + 64 * MIB, r  # nothing reserved for what a header claims


# ---------------------------------------------------------------- F: the BEAM's gzip, measured


@pytest.fixture(scope="module")
def ebin(tmp_path_factory):
    if shutil.which("erlc") is None:
        pytest.fail("erlc (erlang-nox) is not installed; `make test` installs it")
    out = tmp_path_factory.mktemp("ebin")
    subprocess.run(["erlc", "-o", str(out), *map(str, (BEAM / "src").glob("*.erl"))], check=True)
    return out


BEAM_BOMB = """
Hwm = fun(Key) -> {ok, S} = file:read_file("/proc/self/status"),
                 [L] = [L || L <- binary:split(S, <<"\\n">>, [global]), binary:match(L, Key) =:= {0, byte_size(Key)}],
                 [_, N | _] = binary:split(L, [<<" ">>, <<"\\t">>], [global, trim_all]), binary_to_integer(N) * 1024 end,
lists:foreach(fun({Name, Path, Max}) ->
    {ok, F} = file:read_file(Path),
    erlang:garbage_collect(),
    ok = file:write_file("/proc/self/clear_refs", <<"5">>),
    Base = Hwm(<<"VmRSS">>),
    {T, R} = timer:tc(fun() -> tether:decode(F, #{max_uncompressed_size => Max}) end),
    Rise = Hwm(<<"VmHWM">>) - Base,
    io:format("~s ~p ~p ~p~n", [Name, element(1, R), Rise, T div 1000]),
    io:format("~s reason ~0p~n", [Name, element(2, R)])
end, Bombs)
"""


def test_f_beam_gzip_checks_the_declared_size_and_stops_at_it(ebin, tmp_path):
    limit = bombs.LIMIT
    # Issue 14 F: a small gzip frame declaring 2**40 bytes; then one that honestly
    # declares the limit and inflates to eight times it; then a 2**40 compressed ETF term.
    files = {
        "claims_2_40": bombs._compressed_frame("gzip", bombs._zeros_stream("gzip", 8 * MIB), 2**40),
        "inflates_past": bombs._compressed_frame("gzip", bombs._zeros_stream("gzip", bombs.REAL), limit),
        "etf_claims_4g": bombs._etf_frame(bombs._tag80(MIB, 2**32 - 1)),
    }
    entries = []
    for name, frame in files.items():
        (tmp_path / name).write_bytes(frame)
        entries.append(f'{{"{name}", "{tmp_path / name}", {limit}}}')
    expr = f"Bombs = [{', '.join(entries)}], " + BEAM_BOMB.strip()
    proc = subprocess.run(["erl", "-noshell", "-pa", str(ebin), "-eval", expr + ", halt()."],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines() if " reason " not in line)
    reasons = dict(line.split(" reason ", 1) for line in proc.stdout.splitlines() if " reason " in line)
    for name in files:
        outcome, rise, _ms = lines[name].split()
        assert outcome == "error", (name, reasons[name])
        assert int(rise) <= 2 * limit + 16 * MIB, (name, int(rise) // MIB)
    assert reasons["claims_2_40"].startswith(f"{{too_large,{2**40},{limit}}}")
    assert reasons["inflates_past"].startswith("{decompressed_size_mismatch")
    assert reasons["etf_claims_4g"].startswith("{too_large")


# ---------------------------------------------------------------- the fuzz targets, without atheris


@pytest.mark.parametrize("name", sorted(targets.TARGETS))
def test_fuzz_targets_accept_their_seeds_and_mutants(name):
    target = targets.TARGETS[name]
    for seed in targets.seeds(name):
        target(seed)
        for mutant in list(mutate.flips(seed))[::97]:  # a sample: make fuzz runs them for real
            target(mutant)


# ------------------------------------------------------------------ F-ordered buffers

def _f_ordered(arr):
    """A memoryview that is contiguous in Fortran order only (memoryview.contiguous is True for it)."""
    view = memoryview(np.ascontiguousarray(arr).T)
    assert view.f_contiguous and not view.c_contiguous
    return view


def test_a_memoryview_of_a_transposed_array_round_trips_in_row_major_order():
    source = np.arange(6, dtype=np.float64).reshape(2, 3)
    view = _f_ordered(source)  # shape (3, 2)
    for fmt in ("auto", "raw"):
        out = tether.loads(tether.dumps(view, format=fmt))
        assert isinstance(out, memoryview) and out.shape == (3, 2) and out.format == "d"
        assert out.tolist() == view.tolist() == source.T.tolist()


def test_f_ordered_frame_buffers_are_validation_errors():
    frame = tether.dumps(b"x" * 100)
    flat = np.frombuffer(frame + b"\0" * (len(frame) % 2), dtype=np.uint8)
    with pytest.raises(tether.ValidationError, match="C-contiguous"):
        tether.loads(_f_ordered(flat.reshape(2, -1)))
    enc = tether.encode(b"abc")
    dest = np.zeros((enc.nbytes, 2), dtype=np.uint8, order="F")
    with pytest.raises(tether.ValidationError, match="C-contiguous"):
        enc.write_into(memoryview(dest))


def test_strided_and_f_ordered_buffers_are_written_in_row_major_order_or_refused_typed():
    f_view = _f_ordered(np.arange(6.0).reshape(2, 3))
    strided = memoryview(np.arange(12.0)[::2])
    for view in (f_view, strided):
        expected = view.tobytes()  # the elements row by row
        with pytest.warns(tether.LossyConversionWarning, match="comes back as plain bytes"):  # a 'd' view's format
            assert [bytes(b) for b in tether.loads(tether.dumps([view]))] == [expected]  # etf: a binary
            assert [bytes(b) for b in etf.decode(etf.encode([view]))] == [expected]
        sink = io.BytesIO()
        with StreamWriter(sink, chunk_size=16) as w:
            w.write_buffer(view)
        assert b"".join(bytes(v) for v in StreamReader(sink.getvalue())) == expected
        for read in (etf.decode, StreamReader):  # what reads a buffer in place refuses one out of order
            with pytest.raises(tether.ValidationError, match="C-contiguous"):
                read(view)
    with pytest.raises(tether.ValidationError, match="got int"):
        etf.decode(5)
    with pytest.raises(tether.ValidationError, match="got int"):
        StreamWriter(io.BytesIO()).write_buffer(5)
