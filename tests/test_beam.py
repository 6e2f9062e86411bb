"""The BEAM companion against Python, both directions, with a real erl and elixir."""

from __future__ import annotations

import binascii
import datetime as dt
import decimal
import pathlib
import shutil
import subprocess

import numpy as np
import pyarrow as pa
import pytest

import tether
from tether import Atom
from tether.shm import Region

BEAM = pathlib.Path(__file__).resolve().parent.parent / "beam"


@pytest.fixture(scope="module")
def ebin(tmp_path_factory):
    out = tmp_path_factory.mktemp("ebin")
    subprocess.run(["erlc", "-o", str(out), *map(str, (BEAM / "src").glob("*.erl"))], check=True)
    return out


def erl_eval(ebin, expr: str) -> str:
    proc = subprocess.run(["erl", "-noshell", "-pa", str(ebin), "-eval", expr + ", halt()."],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def hexframes(ebin, exprs: dict[str, str]) -> dict[str, bytes]:
    body = ", ".join(
        f'io:format("~s ~s~n", ["{k}", binary:encode_hex(iolist_to_binary({v}))])' for k, v in exprs.items()
    )
    out = erl_eval(ebin, body)
    return {k: binascii.unhexlify(h) for k, h in (line.split() for line in out.splitlines())}


def test_python_reads_frames_beam_writes(ebin):
    frames = hexframes(ebin, {
        "etf": "tether:encode(#{<<\"id\">> => 1, tags => [a, b], pos => {1, 2.5}, name => <<\"n\">>})",
        "etf_z": "tether:encode(lists:seq(1, 1000), #{compressed => true, metadata => #{<<\"run\">> => 7}})",
        "raw": "tether:encode(<<0, 1, 2, 255>>, #{format => raw})",
        "f32": "tether:tensor(<< <<X:32/float-native>> || X <- lists:seq(1, 6) >>, {f, 32}, {2, 3})",
        "s64": "tether:tensor(<< <<X:64/signed-native>> || X <- [-1, 2, -3] >>, {s, 64}, {3})",
        "u8": "tether:tensor(<<1, 2, 3, 4>>, {u, 8}, [2, 2])",
        "c64": "tether:tensor(<<1.0:32/float-native, 2.0:32/float-native>>, {c, 64}, {1})",
        "bf16": "tether:tensor(<<16#3F80:16/native>>, {bf, 16}, {1})",
    })
    assert tether.loads(frames["etf"]) == {b"id": 1, Atom("tags"): [Atom("a"), Atom("b")],
                                          Atom("pos"): (1, 2.5), Atom("name"): b"n"}
    assert tether.loads(frames["etf"], options={"binaries": "str"})["id"] == 1
    assert tether.loads(frames["etf_z"]) == list(range(1, 1001))
    assert tether.inspect(frames["etf_z"]).user == {"run": 7}
    assert tether.inspect(frames["etf_z"]).producer.startswith("tether-beam/")
    assert bytes(tether.loads(frames["raw"])) == b"\x00\x01\x02\xff"
    np.testing.assert_array_equal(tether.loads(frames["f32"]), np.arange(1, 7, dtype="f4").reshape(2, 3))
    np.testing.assert_array_equal(tether.loads(frames["s64"]), np.array([-1, 2, -3]))
    np.testing.assert_array_equal(tether.loads(frames["u8"]), np.array([[1, 2], [3, 4]], dtype="u1"))
    assert tether.loads(frames["c64"])[0] == 1 + 2j
    bf = tether.loads(frames["bf16"])
    assert bf.dtype == np.dtype("<u2") and bf[0] == 0x3F80 and tether.inspect(frames["bf16"]).type["nx"] == ["bf", 16]
    for frame in frames.values():
        tether.verify(frame)


def test_beam_reads_frames_python_writes(ebin):
    frames = {
        "etf": tether.dumps({"a": [1, b"\x00", (Atom("x"), 2.5)], "n": None}, checksum="crc32"),
        "ndarray": tether.dumps(np.arange(6, dtype="<f8").reshape(2, 3), checksum="crc32"),
        "raw": tether.dumps(bytes(range(256)), checksum="crc32"),
        "scalar": tether.dumps(-(2**80), checksum="crc32"),
        "float": tether.dumps(1.25, checksum="crc32"),
        "str": tether.dumps("héllo", checksum="crc32"),
        "gzip": tether.dumps(b"z" * 100_000, compression="gzip", checksum="crc32"),
        "arrow": tether.dumps(pa.table({"x": [1, 2, 3]}), checksum="crc32"),
    }
    exprs = []
    for name, frame in frames.items():
        exprs.append(f'{{ok, {name.capitalize()}}} = tether:decode(<<16#{frame.hex()}:{len(frame) * 8}>>)')
    checks = (
        "Etf = #{<<\"a\">> => [1, <<0>>, {x, 2.5}], <<\"n\">> => nil}, "
        "#{type := {f, 64}, shape := {2, 3}, data := D} = Ndarray, "
        "D = << <<X:64/float-little>> || X <- [0.0, 1.0, 2.0, 3.0, 4.0, 5.0] >>, "
        "Raw = list_to_binary(lists:seq(0, 255)), Scalar = -(1 bsl 80), Float = 1.25, "
        "Str = <<\"héllo\"/utf8>>, Gzip = binary:copy(<<\"z\">>, 100000), "
        "<<255, 255, 255, 255, _/binary>> = Arrow, io:format(\"all ok~n\")"
    )
    out = erl_eval(ebin, ", ".join(exprs) + ", " + checks)
    assert "all ok" in out
    corrupt = bytearray(frames["raw"])
    corrupt[-1] ^= 1
    out = erl_eval(ebin, f'io:format("~p~n", [tether:decode(<<16#{bytes(corrupt).hex()}:{len(corrupt) * 8}>>)])')
    assert "checksum_mismatch" in out


def test_beam_reads_python_shm_region(ebin):
    arr = np.arange(1 << 16, dtype="<i4")
    with Region.create(1 << 20) as region:
        tether.dump_into({"first": 1}, region, checksum="crc32")
        tether.dump_into(arr, region, checksum="crc32")
        out = erl_eval(ebin, (
            f'{{ok, F}} = tether:read_region("{region.path}"), '
            "{ok, #{type := T, shape := S, data := D}} = tether:decode(F), "
            'io:format("~p ~p ~p~n", [T, S, erlang:crc32(D)])'
        ))
    import zlib
    assert out.split() == ["{s,32}", "{65536}", str(zlib.crc32(arr.tobytes()))]


@pytest.mark.skipif(shutil.which("elixir") is None, reason="elixir is installed by make test")
def test_elixir_structs_map_to_python_types(ebin):
    script = (
        'IO.puts(Base.encode16(:erlang.term_to_binary(['
        '~U[2024-01-02 03:04:05.123456Z], ~D[2024-02-29], ~T[10:11:12.5], ~N[2024-01-02 03:04:05], '
        'Decimal, MapSet.new([1, 2]), 1..10//3, %URI{host: "h"}, \'charlist\''
        '])))'
    ).replace("Decimal,", '%{__struct__: Decimal, sign: -1, coef: 12345, exp: -2},')
    out = subprocess.run(["elixir", "-e", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    data = binascii.unhexlify(out.stdout.strip())
    with pytest.warns(tether.LossyConversionWarning, match="charlist"):
        values = tether.etf.decode(data)
    assert values[0] == dt.datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=dt.timezone.utc)
    assert values[1] == dt.date(2024, 2, 29)
    assert values[2] == dt.time(10, 11, 12, 500000)
    assert values[3] == dt.datetime(2024, 1, 2, 3, 4, 5)
    assert values[4] == decimal.Decimal("-123.45")
    assert values[5] == {1, 2}
    assert list(values[6]) == [1, 4, 7, 10]
    assert values[7][Atom("__struct__")] == "Elixir.URI" and values[7][Atom("host")] == b"h"
    assert tether.etf.decode(tether.etf.encode(values[7])) == values[7]  # unknown structs round-trip
    assert values[8] == list(b"charlist")


def test_lossy_and_failed_mappings_name_the_path():
    with pytest.warns(tether.LossyConversionWarning, match="fixed offset"):
        tether.etf.encode({"at": dt.datetime(2024, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=2)))})
    with pytest.warns(tether.LossyConversionWarning, match=r"nan at \$\[1\]"):
        tether.etf.encode([1.0, float("nan")], nan="atom")
    with pytest.warns(tether.LossyConversionWarning, match=r"Charlist at \$\[0\]"):
        tether.etf.decode(tether.etf.encode([[104, 105]]))
    with pytest.raises(tether.MappingError, match=r"\$\.k\[0\].*register_struct"):
        tether.etf.encode({"k": [object()]})


def test_beam_reads_stream_chunks(ebin):
    import io

    sink = io.BytesIO()
    with tether.stream.StreamWriter(sink, chunk_size=1000, compression="gzip", checksum="crc32") as w:
        w.write({"part": 1})
        w.write_buffer(bytes(range(256)) * 10)
    data = sink.getvalue()
    # BEAM decodes every frame of the stream (flag bit 0 is a known required flag) and verifies CRC-32.
    out = erl_eval(ebin, f"""
        Data = <<16#{data.hex()}:{len(data) * 8}>>,
        Loop = fun L(<<>>, Acc) -> lists:reverse(Acc);
                   L(Bin, Acc) -> {{ok, #{{frame_size := N}}}} = tether:inspect(Bin),
                                  <<F:N/binary, Rest/binary>> = Bin,
                                  {{ok, V}} = tether:decode(F),
                                  L(Rest, [V | Acc]) end,
        [#{{<<"part">> := 1}}, C1, C2, C3, nil] = Loop(Data, []),
        Joined = <<C1/binary, C2/binary, C3/binary>>,
        Joined = binary:copy(list_to_binary(lists:seq(0, 255)), 10),
        io:format("stream ok~n")""")
    assert "stream ok" in out


def test_a_frame_holding_bytearrays_reads_as_binaries_on_the_beam(ebin):
    # Python records where its bytearrays are (type.bytearrays); the BEAM has one binary and ignores that.
    frame = tether.dumps({"k": [bytearray(b"ab"), b"cd", "ef"]})
    assert tether.inspect(frame).type["bytearrays"] == [0, 1]
    out = erl_eval(ebin, f'{{ok, T}} = tether:decode(binary:decode_hex(<<"{binascii.hexlify(frame).decode()}">>)), '
                         'io:format("~p~n", [T])')
    assert out.strip() == '#{<<"k">> => [<<"ab">>,<<"cd">>,<<"ef">>]}'
