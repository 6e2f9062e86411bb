"""ETF against a real Erlang VM, both directions."""

from __future__ import annotations

import binascii

import pytest

from tether import Atom, ImproperList, OpaqueTerm, Pid, Port, Reference, etf

# Erlang expressions covering every tag term_to_binary writes.
TERMS = {
    "small_int": "42",
    "neg_int": "-7",
    "int32": "2147483647",
    "int32_min": "-2147483648",
    "big_pos": "1 bsl 100",
    "big_neg": "-(1 bsl 64) - 5",
    "huge": "1 bsl 4000",
    "float": "3.141592653589793",
    "neg_float": "-1.0e-300",
    "atom": "hello",
    "utf8_atom": "'héllo_wörld'",
    "emoji_atom": "list_to_atom([128512, $a])",
    "long_atom": "list_to_atom(lists:duplicate(255, $x))",
    "true": "true",
    "nil": "nil",
    "binary": "<<\"bytes\", 0, 255>>",
    "empty_binary": "<<>>",
    "bitstring": "<<5:3>>",
    "string": "\"charlist\"",
    "unicode_list": "[1000, 2000]",
    "list": "[1, a, <<\"b\">>, 2.5]",
    "improper": "[1, 2 | 3]",
    "nil_list": "[]",
    "tuple": "{ok, 1, {nested, []}}",
    "large_tuple": "list_to_tuple(lists:seq(1, 300))",
    "empty_tuple": "{}",
    "map": "#{a => 1, <<\"b\">> => [x], 3 => {t}}",
    "map_list_key": "#{[1, 2] => a, #{k => v} => b}",
    "big_map": "maps:from_list([{I, I * 2} || I <- lists:seq(1, 100)])",
    "pid": "self()",
    "ref": "make_ref()",
    "port": "hd(erlang:ports())",
    "export": "fun erlang:abs/1",
    "fun": "fun(X) -> X + 1 end",
    "deep": "lists:foldl(fun(_, Acc) -> [Acc] end, [], lists:seq(1, 100000))",
    "long_list": "lists:seq(1, 70000)",
    "nested_maps": "[#{id => I, name => <<\"n\">>, tags => [a, b], pos => {I, I}} || I <- lists:seq(1, 50)]",
}

OPTIONS = {
    "default": "[]",
    "compressed": "[compressed]",
    "minor1": "[{minor_version, 1}]",
    "minor2": "[{minor_version, 2}]",
    "minor0": "[{minor_version, 0}]",
}


@pytest.fixture(scope="module")
def erl_binaries(erl):
    lines = []
    for name, expr in TERMS.items():
        for opt, opts in OPTIONS.items():
            lines.append(
                f'    io:format("~s ~s ~s~n", ["{name}", "{opt}", binary:encode_hex(term_to_binary({expr}, {opts}))]),'
            )
    out = erl("main(_) ->\n" + "\n".join(lines) + "\n    ok.\n")
    result = {}
    for line in out.splitlines():
        name, opt, hexdata = line.split()
        result[(name, opt)] = binascii.unhexlify(hexdata)
    assert len(result) == len(TERMS) * len(OPTIONS)
    return result


@pytest.mark.parametrize("opt", list(OPTIONS))
def test_decode_everything_erl_writes(erl_binaries, opt):
    for name in TERMS:
        data = erl_binaries[(name, opt)]
        value = etf.decode(data)
        # Re-encoding what we decoded must be what OTP wrote, when written with OTP's options.
        if opt == "compressed":
            assert name == "deep" or etf.decode(etf.encode(value, compressed=True)) == value
        minor = {"minor0": 0, "minor1": 1, "minor2": 2, "default": 1}.get(opt)
        if minor is not None and name not in ("big_map", "map", "map_list_key"):
            assert etf.encode(value, minor_version=minor) == data, name


def test_decoded_values(erl_binaries):
    d = lambda n: etf.decode(erl_binaries[(n, "default")])  # noqa: E731
    assert d("big_pos") == 1 << 100
    assert d("big_neg") == -(1 << 64) - 5
    assert d("huge") == 1 << 4000
    assert d("atom") == Atom("hello") and type(d("atom")) is Atom
    assert d("utf8_atom") == "héllo_wörld"
    assert d("emoji_atom") == "\U0001F600a"
    assert d("true") is True and d("nil") is None
    assert d("binary") == b"bytes\x00\xff"
    assert d("string") == list(b"charlist")
    assert etf.decode(erl_binaries[("string", "default")], charlists="str") == "charlist"
    assert d("improper") == ImproperList([1, 2], 3)
    assert d("large_tuple") == tuple(range(1, 301))
    assert d("map")[b"b"] == [Atom("x")]
    assert isinstance(d("pid"), Pid) and isinstance(d("ref"), Reference) and isinstance(d("port"), Port)
    assert isinstance(d("fun"), OpaqueTerm) and isinstance(d("export"), OpaqueTerm)
    assert len(d("long_list")) == 70000
    assert d("bitstring").bits == 3


def test_deep_nesting_is_iterative(erl_binaries):
    value = etf.decode(erl_binaries[("deep", "compressed")])
    depth = 0
    while value:
        (value,) = value
        depth += 1
    assert depth == 100000


def _erl_literal(value) -> str:
    """Render a Python value as an Erlang expression (for the reverse direction)."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "nil"
    if isinstance(value, Atom):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = repr(value)
        mant, _, exp = text.partition("e")
        if "." not in mant:
            mant += ".0"
        return mant + ("e" + exp if exp else "")
    if isinstance(value, str):
        return "<<" + ",".join(str(b) for b in value.encode()) + ">>"
    if isinstance(value, bytes):
        return "<<" + ",".join(str(b) for b in value) + ">>"
    if isinstance(value, list):
        return "[" + ",".join(_erl_literal(v) for v in value) + "]"
    if isinstance(value, tuple):
        return "{" + ",".join(_erl_literal(v) for v in value) + "}"
    if isinstance(value, dict):
        return "#{" + ",".join(f"{_erl_literal(k)} => {_erl_literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, ImproperList):
        return "[" + ",".join(_erl_literal(v) for v in value.items) + " | " + _erl_literal(value.tail) + "]"
    raise TypeError(value)


PY_VALUES = [
    0, 255, 256, -1, 2**31 - 1, -(2**31), 2**31, 2**64, -(2**200), 10**300,
    1.5, -0.25, 1e300, 5e-324,
    Atom("ok"), Atom("héllo"), Atom("x" * 255), True, False, None,
    "", "text", "héllo wörld ✓", b"", b"\x00\x01\xff",
    [], [1, 2, 3], [1000], [Atom("a"), "b", b"c"], list(range(300)),
    (), (1,), tuple(range(300)),
    {}, {"a": 1}, {Atom("k"): [1, {"n": None}]}, {(1, 2): "t", 5: 6.5},
    ImproperList([1, 2], Atom("tail")),
    [[[[["deep"]]]]],
]


@pytest.mark.parametrize("minor", [1, 2])
@pytest.mark.parametrize("compressed", [False, True])
def test_erl_decodes_what_tether_writes(erl, minor, compressed):
    cases = []
    for i, value in enumerate(PY_VALUES):
        data = etf.encode(value, minor_version=minor, compressed=compressed)
        cases.append(f'    check({i}, <<16#{data.hex() or "0"}:{len(data) * 8}>>, {_erl_literal(value)}),')
    body = (
        "main(_) ->\n" + "\n".join(cases) + "\n    io:format(\"done~n\").\n"
        "check(I, Bin, Expected) ->\n"
        "    case binary_to_term(Bin) =:= Expected of\n"
        "        true -> ok;\n"
        "        false -> io:format(\"MISMATCH ~p ~p~n\", [I, binary_to_term(Bin)])\n"
        "    end.\n"
    )
    out = erl(body)
    assert "MISMATCH" not in out, out
    assert out.strip().endswith("done")


def test_erl_safe_decodes_frame_metadata(erl):
    import tether

    frame = tether.dumps([1, 2], metadata={"run": "r1", "n": 3})
    info = tether.inspect(frame)
    meta = frame[64 : 64 + info.metadata_size]
    out = erl(
        "main(_) ->\n"
        f"    M = binary_to_term(<<16#{meta.hex()}:{len(meta) * 8}>>, [safe]),\n"
        "    io:format(\"~s ~p~n\", [maps:get(<<\"format\">>, M), maps:get(<<\"user\">>, M)]).\n"
    )
    assert out.startswith("etf ")
    assert "<<\"run\">> => <<\"r1\">>" in out


def test_erl_reads_header_with_documented_match(erl):
    import tether

    frame = tether.dumps({"k": [1, 2, 3]}, checksum="crc32")
    out = erl(
        "main(_) ->\n"
        f"    Frame = <<16#{frame.hex()}:{len(frame) * 8}>>,\n"
        "    <<\"TTHR\", 1:16/little, 64:16/little, Format:16/little, Comp:8, CkKind:8,\n"
        "      _Flags:32/little, MLen:32/little, MCrc:32/little, PLen:64/little, RLen:64/little,\n"
        "      Ck:64/little, Schema:16/little, _Level:8/signed, 0:8, 0:8, _:7/binary, HCrc:32/little,\n"
        "      _/binary>> = Frame,\n"
        "    HCrc = erlang:crc32(binary:part(Frame, 0, 60)),\n"
        "    Meta = binary:part(Frame, 64, MLen),\n"
        "    MCrc = erlang:crc32(Meta),\n"
        "    P = (64 + MLen + 63) band (bnot 63),\n"
        "    Payload = binary:part(Frame, P, PLen),\n"
        "    Ck = erlang:crc32(Payload), PLen = RLen,\n"
        "    io:format(\"~p ~p ~p ~p ~p~n\", [Format, Comp, CkKind, Schema, binary_to_term(Payload)]).\n"
    )
    assert out.strip() == '4 0 2 1 #{<<"k">> => [1,2,3]}'
