"""Values the fidelity fuzz of 2026-11-27 found changed without a word, each now kept or warned about.

* A subclass inside a term was written through its own ``__str__``/``__int__``/``__iter__``...: the
  ``class Color(str, Enum)`` idiom came back as ``'Color.RED'``, not ``'red'``.
* A non-finite float in a map key or set member, beside one elsewhere, came back as an atom.
* A pandas Timestamp lost its nanoseconds silently.
* ``copy=True`` gave a read-only memoryview.
"""

from __future__ import annotations

import enum
import math
import warnings

import pytest

import tether
from tether import Atom


class Color(str, enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


class LoudStr(str):
    def __str__(self):
        return "other"


class LoudInt(int):
    def __int__(self):
        return 99

    def __index__(self):
        return 98


class LoudFloat(float):
    def __float__(self):
        return 99.0


class LoudBytes(bytes):
    def __bytes__(self):
        return b"zz"


class LoudList(list):
    def __iter__(self):
        return iter([42])


class LoudTuple(tuple):
    def __iter__(self):
        return iter([42])


@pytest.mark.parametrize("value, data", [
    (Color.RED, "red"), (Level.HIGH, 3), (LoudStr("a"), "a"), (LoudInt(1), 1), (LoudFloat(1.5), 1.5),
    (LoudBytes(b"a"), b"a"), (LoudList([1]), [1]), (LoudTuple((1, 2)), (1, 2)),
], ids=["str-enum", "int-enum", "str", "int", "float", "bytes", "list", "tuple"])
@pytest.mark.parametrize("reader", ["python", "beam"])
def test_a_subclass_in_a_term_is_written_as_its_data_not_through_its_overrides(value, data, reader):
    for term, expect in (([value], [data]), ({"k": value}, {"k": data})):
        back = tether.loads(tether.dumps(term, reader=reader, format="etf"))
        assert back == expect and type(back[0] if isinstance(back, list) else back["k"]) is type(data)
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        assert tether.loads(tether.dumps({value: 1}, reader=reader, format="etf")) == {data: 1}


@pytest.mark.parametrize("value", [
    {math.inf: "k", "v": math.inf},
    [{1.0, math.inf}, math.inf],
    {(1, -math.inf): "k", "v": math.nan},
])
def test_a_non_finite_float_in_a_key_or_set_is_not_written_as_an_atom(value):
    with pytest.warns(tether.FallbackWarning, match="Erlang floats are finite"):
        frame = tether.dumps(value)
    assert tether.inspect(frame).format == "pickle"
    back = tether.loads(frame, allow_pickle=True)
    assert not any(isinstance(x, Atom) for x in _everything(back))
    with pytest.raises(tether.EncodeError):
        tether.dumps(value, reader="beam")


def _everything(value):
    stack = [value]
    while stack:
        x = stack.pop()
        yield x
        if isinstance(x, dict):
            stack.extend(x.keys())
            stack.extend(x.values())
        elif isinstance(x, (list, tuple, set, frozenset)):
            stack.extend(x)


def test_non_finite_floats_among_values_still_go_as_atoms():
    value = {"loss": math.inf, "keys": {1.5: [math.nan]}}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        back = tether.loads(tether.dumps(value))
    assert back["loss"] == math.inf and math.isnan(back["keys"][1.5][0])


def test_a_timestamps_nanoseconds_are_warned_about_where_they_are():
    pd = pytest.importorskip("pandas")
    ts = pd.Timestamp("2020-01-01 00:00:00.000000999")
    with pytest.warns(tether.LossyConversionWarning, match=r"Timestamp at \$\.t has 999 ns") as caught:
        frame = tether.dumps({"t": ts})
    assert caught[0].filename == __file__  # the caller's line, not tether's
    assert tether.loads(frame) == {"t": ts.floor("us").to_pydatetime()}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tether.dumps({"t": pd.Timestamp("2020-01-01 00:00:00.000001")})  # whole microseconds: nothing to say


@pytest.mark.parametrize("value, kw", [
    (memoryview(bytearray(b"ab")), {}), (memoryview(bytearray(100_000)), {}), (b"abc", {"into": "memoryview"}),
])
def test_copy_true_gives_a_writable_memoryview(value, kw):
    back = tether.loads(tether.dumps(value), copy=True, **kw)
    assert type(back) is memoryview and not back.readonly
    back[0] = 1


@pytest.mark.parametrize("codec", ["lz4", "zstd", "gzip"])
@pytest.mark.parametrize("size", [200_000, 3_000_000], ids=["one-shot", "in-pieces"])
def test_a_flipped_bit_in_a_compressed_frame_without_a_checksum_never_decodes(codec, size):
    # checksum="none": the codec's own check is what catches it (lz4's and zstd's were off before).
    text = b"".join(b"line %d status=ok path=/a/b/c\n" % i for i in range(size // 30))
    frame = tether.dumps(text, compression=codec, checksum="none")
    info = tether.inspect(frame)
    assert info.compression == codec and info.checksum == "none"
    start, stored = info.payload_offset, info.payload_size
    silent = 0
    for at in range(start + 16, start + stored - 8, max(1, (stored - 24) // 30)):
        broken = bytearray(frame)
        broken[at] ^= 0x10
        try:
            silent += bytes(tether.loads(bytes(broken))) != text
        except tether.TetherError:
            pass
    assert silent == 0


def test_a_lone_surrogate_alone_round_trips_in_python_and_is_refused_for_the_beam():
    text = "a\ud800b"  # what os.fsdecode leaves of an undecodable byte
    assert tether.loads(tether.dumps(text)) == text
    for value in (text, [text]):
        with pytest.raises(tether.EncodeError, match="lone surrogate"):
            tether.dumps(value, reader="beam")


def test_a_nan_beside_the_atom_nan_names_the_atom_as_what_stops_it():
    value = {"x": math.nan, "y": Atom("nan")}
    with pytest.raises(tether.EncodeError, match=r"also holds the atom 'nan'.*replace one of them"):
        tether.dumps(value, format="etf")
    with pytest.warns(tether.FallbackWarning, match="also holds the atom 'nan'"):
        tether.dumps(value)


@pytest.mark.parametrize("make", [
    lambda pa: pa.list_(pa.int64()), lambda pa: pa.struct([("x", pa.int64())]),
    lambda pa: pa.map_(pa.string(), pa.int64()), lambda pa: pa.large_list(pa.int8()),
    lambda pa: pa.dictionary(pa.int8(), pa.string()),
], ids=["list", "struct", "map", "large_list", "dictionary"])
def test_a_nested_arrow_dtype_column_loads_back_as_itself(make):
    pd = pytest.importorskip("pandas")
    pa = pytest.importorskip("pyarrow")
    typ = make(pa)
    column = pd.Series(pa.array([None], typ).to_pandas(types_mapper=pd.ArrowDtype))
    df = pd.DataFrame({"a": column, "n": [1]})
    back = tether.loads(tether.dumps(df))
    assert back.dtypes["a"] == df.dtypes["a"] and back.dtypes["n"] == df.dtypes["n"]
    pd.testing.assert_frame_equal(back, df)


def test_rows_read_as_a_table_warn_when_their_datetimes_are_in_several_zones():
    import datetime as dt

    rows = [{"a": dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)}, {"a": dt.datetime(2020, 1, 1, 12)}]
    frame = tether.dumps(rows, format="etf")
    with pytest.warns(tether.LossyConversionWarning, match=r"Column 'a' row 1: .* naive time taken as an instant"):
        tether.loads(frame, into="arrow")
    same = [{"a": dt.datetime(2020, 1, d, tzinfo=dt.timezone.utc)} for d in (1, 2)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tether.loads(tether.dumps(same, format="etf"), into="arrow")


@pytest.mark.parametrize("codec", ["lz4", "zstd"])
def test_a_flipped_bit_in_arrows_ipc_compression_without_a_checksum_never_reads_as_other_rows(codec):
    # Arrow's IPC buffers carry no checksum of their own: with checksum="none" a flipped bit read as other
    # rows 25-31 times in 60. Such a payload now gets CRC-32 whatever was asked.
    pa = pytest.importorskip("pyarrow")
    table = pa.table({"s": [f"line {i % 97} status=ok" for i in range(100_000)], "n": list(range(100_000))})
    frame = tether.dumps(table, format="arrow", compression=codec, checksum="none")
    info = tether.inspect(frame)
    assert info.type.get("ipc_compression") == codec and info.checksum == "crc32"
    start, stored = info.payload_offset, info.payload_size
    for at in range(start + 16, start + stored - 8, max(1, (stored - 24) // 60)):
        broken = bytearray(frame)
        broken[at] ^= 0x10
        with pytest.raises(tether.ChecksumError):
            tether.loads(bytes(broken))
    plain = tether.dumps(table, format="arrow", checksum="none")  # nothing compressed inside: as asked
    assert tether.inspect(plain).checksum == "none"
