"""Arrow: round trips over rich schemas, DataFrames, lists of maps from a real erl, malformed IPC."""

from __future__ import annotations

import binascii
import datetime as dt
import decimal
import math
import warnings

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, strategies as st

import tether
from tether import Atom, arrow, etf


inf_f = float("inf")


def roundtrip(value, **kw):
    return tether.loads(tether.dumps(value, **kw))


# ---------------------------------------------------------------- hypothesis over schemas

leaf_types = st.sampled_from([
    pa.int8(), pa.int64(), pa.uint64(), pa.float32(), pa.float64(), pa.bool_(), pa.utf8(), pa.binary(),
    pa.large_utf8(), pa.large_binary(), pa.date32(), pa.timestamp("us", tz="Europe/Paris"),
    pa.timestamp("ns"), pa.decimal128(20, 4), pa.dictionary(pa.int32(), pa.utf8()),
])
arrow_types = st.recursive(
    leaf_types,
    lambda inner: st.one_of(
        inner.map(pa.list_),
        st.lists(inner, min_size=1, max_size=3).map(lambda ts: pa.struct([(f"f{i}", t) for i, t in enumerate(ts)])),
    ),
    max_leaves=4,
)


def _values(t: pa.DataType, n: int, draw) -> list:
    if pa.types.is_dictionary(t):
        return draw(st.lists(st.one_of(st.none(), st.sampled_from(["a", "b", "ccc"])), min_size=n, max_size=n))
    if pa.types.is_list(t):
        return [None if draw(st.booleans()) and i % 3 == 0 else _values(t.value_type, draw(st.integers(0, 3)), draw)
                for i in range(n)]
    if pa.types.is_struct(t):
        cols = {t.field(j).name: _values(t.field(j).type, n, draw) for j in range(t.num_fields)}
        return [{k: cols[k][i] for k in cols} for i in range(n)]
    strategy = {
        "int8": st.integers(-128, 127), "int64": st.integers(-(2**63), 2**63 - 1), "uint64": st.integers(0, 2**64 - 1),
        "float": st.floats(width=32, allow_nan=False), "double": st.floats(allow_nan=False), "bool": st.booleans(),
        "string": st.text(max_size=20), "binary": st.binary(max_size=20), "large_string": st.text(max_size=20),
        "large_binary": st.binary(max_size=20), "date32[day]": st.dates(),
        "timestamp[us, tz=Europe/Paris]": st.datetimes(timezones=st.just(dt.timezone.utc)),
        "timestamp[ns]": st.datetimes(min_value=dt.datetime(1700, 1, 1), max_value=dt.datetime(2200, 1, 1)),
        "decimal128(20, 4)": st.decimals(min_value=-(10**15), max_value=10**15, places=4, allow_nan=False, allow_infinity=False),
    }[str(t)]
    return draw(st.lists(st.one_of(st.none(), strategy), min_size=n, max_size=n))


@st.composite
def tables(draw):
    n = draw(st.integers(0, 30))
    types = draw(st.lists(arrow_types, min_size=1, max_size=4))
    cols = {f"c{i}": pa.array(_values(t, n, draw), type=t) for i, t in enumerate(types)}
    return pa.table(cols)


@given(tables(), st.sampled_from(["none", "lz4", "zstd", "gzip"]))
def test_table_roundtrip_any_schema(table, comp):
    frame = tether.dumps(table, compression=comp)
    out = tether.loads(frame)
    assert isinstance(out, pa.Table)
    assert out.schema.equals(table.schema) and out.equals(table)
    assert tether.loads(frame, into="pylist") == table.to_pylist()


def test_loads_is_zero_copy_and_inspect_shows_schema():
    table = pa.table({"x": np.arange(100_000, dtype="f8"), "s": ["a"] * 100_000})
    frame = tether.dumps(table)
    out = tether.loads(frame)
    col = out.column("x").chunk(0).to_numpy()
    assert np.shares_memory(col, np.frombuffer(frame, np.uint8))
    info = tether.inspect(frame)
    assert info.type["rows"] == 100_000 and info.type["batches"] == 1
    assert "x: double" in info.type["schema"] and "schema" in str(info)


def test_batches_and_into():
    table = pa.table({"a": [1, 2, 3], "b": [1.5, None, 3.0]})
    batch = table.to_batches()[0]
    assert roundtrip(batch).equals(batch)
    assert tether.loads(tether.dumps(table), into="pylist") == table.to_pylist()
    cols = tether.loads(tether.dumps(table), into="numpy")
    np.testing.assert_array_equal(cols["a"], [1, 2, 3])
    with pytest.raises(tether.ValidationError, match="Valid options are: arrow, pandas, polars, pylist, numpy"):
        tether.loads(tether.dumps(table), into="excel")


def test_pandas_and_polars_roundtrip():
    pd = pytest.importorskip("pandas")
    pl = pytest.importorskip("polars")
    df = pd.DataFrame({"id": np.arange(5), "name": list("abcde"), "t": pd.date_range("2024-01-01", periods=5, tz="UTC")})
    df.index = pd.Index([10, 11, 12, 13, 14], name="row")
    out = roundtrip(df)
    assert isinstance(out, pd.DataFrame)
    pd.testing.assert_frame_equal(out, df)
    pdf = pl.DataFrame({"id": [1, 2, 3], "v": [0.5, None, 2.5], "tag": ["x", "y", "z"]})
    out = roundtrip(pdf)
    assert isinstance(out, pl.DataFrame) and out.equals(pdf)
    assert isinstance(tether.loads(tether.dumps(pdf), into="pandas"), pd.DataFrame)


def test_pandas_fast_conversion_equals_arrows_own():
    pd = pytest.importorskip("pandas")
    n = 1000
    frames = [
        pd.DataFrame({"f": np.linspace(0, 1, n), "g": np.arange(n, dtype="f4"), "i": np.arange(n),
                      "s": [f"s{i}" for i in range(n)], "b": np.arange(n) % 3 == 0}),
        pd.DataFrame({"f": [1.0, np.nan, 3.0], "o": ["a", None, "c"], "c": pd.Categorical(["x", "y", "x"])}),
        pd.DataFrame({"t": pd.date_range("2024-01-01", periods=4, tz="Europe/Paris"), "f": [0.5, -0.0, np.inf, 2.0]}),
        pd.DataFrame({"f": [1.5, 2.5]}, index=pd.Index(["a", "b"], name="k")),  # Arrow's own path
        pd.DataFrame({"f": np.arange(6.0)}).iloc[2:5],  # a RangeIndex that does not start at 0
        pd.DataFrame({"f": [], "s": []}),
    ]
    for df in frames:
        ours = arrow._pandas_to_table(df)
        assert ours.equals(pa.Table.from_pandas(df), check_metadata=True)
        pd.testing.assert_frame_equal(roundtrip(df), df)


def test_columns_and_rows_roundtrip_their_kind():
    columns = {"a": list(range(500)), "b": np.arange(500, dtype="f4"), "s": [str(i) for i in range(500)]}
    out = roundtrip(columns)
    assert tether.last_decision().format == "arrow"
    assert out["a"] == columns["a"] and out["s"] == columns["s"]
    assert isinstance(out["b"], np.ndarray) and out["b"].dtype == np.float32
    rows = [{"id": i, "name": f"n{i}", "score": i / 2, "ok": i % 2 == 0, "blob": b"\x00\xff"} for i in range(500)]
    assert roundtrip(rows, transport="network") == rows
    assert tether.last_decision().format == "arrow"
    assert roundtrip(rows) == rows and tether.last_decision().format == "etf"  # in memory ETF is faster
    small = rows[:10]
    assert roundtrip(small, transport="network") == small and tether.last_decision().format == "etf"


def test_unrepresentable_columns_fall_back_with_warning():
    rows = [{"id": i, "pos": (i, i)} for i in range(500)]
    with pytest.warns(tether.FallbackWarning, match="'pos'"):
        out = roundtrip(rows, transport="network")
    assert out == rows
    d = tether.last_decision()
    assert d.format == "etf" and d.fallback_from == "arrow" and "pos" in d.reason
    huge = {"n": [2**70] * 300}
    with pytest.warns(tether.FallbackWarning, match="beyond 64 bits"):
        assert roundtrip(huge) == huge


def test_lossy_inference_warns_with_column_and_row():
    with pytest.warns(tether.LossyConversionWarning, match=r"Column 'price' row 1: integers mixed with floats"):
        t = arrow.from_etf(tether.etf.encode([{Atom("price"): 1.5}, {Atom("price"): 2}]))
    assert t.column("price").type == pa.float64()
    with pytest.warns(tether.LossyConversionWarning, match=r"above 2\*\*53"):
        arrow.column_to_arrow("big", [2**60, 1.5])
    with pytest.raises(arrow.ColumnError, match="beyond 64 bits"):
        arrow.column_to_arrow("n", [-(2**70)])
    assert arrow.column_to_arrow("u", [2**64 - 1]).type == pa.uint64()


def test_inference_table():
    cases = {
        "int": ([1, None, 3], pa.int64()),
        "float": ([1.5, None], pa.float64()),
        "utf8": ([b"ok", b"\xc3\xa9"], pa.utf8()),
        "binary": ([b"\xff\xfe"], pa.binary()),
        "atom": ([Atom("a"), Atom("b"), Atom("a")], pa.dictionary(pa.int32(), pa.utf8())),
        "bool": ([True, False], pa.bool_()),
        "null": ([None, None], pa.null()),
        "list": ([[1, 2], [], None], pa.list_(pa.int64())),
        "struct": ([{Atom("x"): 1, Atom("y"): b"a"}], pa.struct([("x", pa.int64()), ("y", pa.utf8())])),
    }
    for name, (values, expected) in cases.items():
        assert arrow.column_to_arrow(name, values).type == expected, name


# ---------------------------------------------------------------- from BEAM


@pytest.fixture(scope="module")
def erl_rows(erl):
    out = erl(
        "main(_) ->\n"
        "    Rows = [#{id => I, price => I * 1.5, name => <<\"item\", (integer_to_binary(I))/binary>>,\n"
        "             kind => case I rem 2 of 0 -> even; 1 -> odd end, tags => [a, b], ok => I rem 3 =:= 0,\n"
        "             note => case I of 2 -> nil; _ -> <<\"n\">> end,\n"
        "             at => #{'__struct__' => 'Elixir.DateTime', year => 2024, month => 1, day => 2, hour => 3,\n"
        "                     minute => 4, second => 5, microsecond => {I, 6}, time_zone => <<\"Etc/UTC\">>,\n"
        "                     zone_abbr => <<\"UTC\">>, utc_offset => 0, std_offset => 0,\n"
        "                     calendar => 'Elixir.Calendar.ISO'},\n"
        "             amount => #{'__struct__' => 'Elixir.Decimal', sign => -1, coef => 12345 + I, exp => -2}}\n"
        "            || I <- lists:seq(1, 1000)],\n"
        "    io:format(\"~s~n~s~n\", [binary:encode_hex(term_to_binary(Rows)),\n"
        "                             binary:encode_hex(term_to_binary(Rows, [compressed]))]).\n"
    )
    plain, packed = out.split()
    return binascii.unhexlify(plain), binascii.unhexlify(packed)


def test_from_etf_on_erl_rows(erl_rows):
    plain, packed = erl_rows
    table = arrow.from_etf(plain)
    assert table.num_rows == 1000
    assert table.schema.field("id").type == pa.int64()
    assert table.schema.field("name").type == pa.utf8()
    assert table.schema.field("kind").type == pa.dictionary(pa.int32(), pa.utf8())
    assert table.schema.field("tags").type == pa.list_(pa.dictionary(pa.int32(), pa.utf8()))
    assert table.schema.field("ok").type == pa.bool_()
    assert table.schema.field("at").type == pa.timestamp("us", tz="UTC")
    assert table.schema.field("amount").type == pa.decimal128(5, 2) or pa.types.is_decimal(table.schema.field("amount").type)
    first = table.slice(0, 2).to_pylist()
    assert first[0]["name"] == "item1" and first[1]["note"] is None
    assert first[0]["at"] == dt.datetime(2024, 1, 2, 3, 4, 5, 1, tzinfo=dt.timezone.utc)
    assert first[0]["amount"] == decimal.Decimal("-123.46")
    assert arrow.from_etf(packed).equals(table)
    # The same rows through a frame: etf from BEAM, then into Arrow.
    py_rows = tether.etf.decode(plain)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frame = tether.dumps(table)
    assert tether.loads(frame).equals(table)
    assert len(py_rows) == 1000


def test_from_etf_map_of_columns_and_errors():
    data = tether.etf.encode({Atom("a"): [1, 2], Atom("b"): [b"x", b"y"]})
    assert arrow.from_etf(data).to_pydict() == {"a": [1, 2], "b": ["x", "y"]}
    with pytest.raises(arrow.ColumnError, match="list of maps"):
        arrow.from_etf(tether.etf.encode([1, 2]))
    rows = tether.etf.encode([{Atom("a"): 1}, {Atom("b"): 2}])
    assert arrow.from_etf(rows).to_pydict() == {"a": [1, None], "b": [None, 2]}


_cell = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**64), 2**64),
    st.sampled_from([2**63 - 1, -(2**63), 2**63, 2**53 + 1]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.binary(max_size=6),
    st.text(max_size=4).map(str.encode),
    st.sampled_from([Atom("red"), Atom("green"), Atom("é"), Atom("nan")]),
)
_float_atoms = st.sampled_from([Atom("nan"), Atom("infinity"), Atom("neg_infinity")])
_nested = st.recursive(
    _cell,
    lambda inner: st.lists(inner, max_size=3) | st.tuples(inner, inner) | st.tuples(inner)
    | st.dictionaries(st.sampled_from([Atom("x"), Atom("y")]), inner, max_size=2),
    max_leaves=6,
)


def _column_values(kind):
    # mostly one kind per column (the typed path), sometimes anything (the general path)
    return st.lists(st.one_of(st.none(), kind), min_size=1, max_size=8)


def _nan_as_text(value):
    if isinstance(value, dict):
        return {k: _nan_as_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_as_text(v) for v in value]
    return "NaN" if value != value else value


@given(st.data())
def test_from_etf_typed_columns_match_the_general_path(data):
    keys = data.draw(st.lists(st.sampled_from([Atom("a"), Atom("b"), Atom("c"), b"d"]), min_size=1, max_size=3, unique=True))
    kinds = [data.draw(st.sampled_from([_cell, _nested, st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                                        st.lists(st.sampled_from([Atom("p"), Atom("q"), True]), max_size=3),
                                        st.tuples(st.integers(-3, 3), st.binary(max_size=3)), _float_atoms,
                                        st.floats(allow_nan=False, allow_infinity=False) | _float_atoms]))
             for _ in keys]
    float_atoms = data.draw(st.booleans())
    columns = [data.draw(_column_values(k)) for k in kinds]
    n = min(map(len, columns))
    rows = []
    for r in range(n):
        row = {k: col[r] for k, col in zip(keys, columns) if data.draw(st.booleans()) or r == 0}
        rows.append(row)
    payload = tether.etf.encode(rows)

    def outcome(fn):
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            try:
                table = fn()
            except tether.TetherError as exc:
                return ("error", type(exc).__name__, str(exc)), []
        table.validate(full=True)
        rows = [_nan_as_text(row) for row in table.to_pylist()]  # NaN != NaN, at any depth (a struct's field too)
        return ("table", table.schema, rows), [str(w.message) for w in seen]

    typed = outcome(lambda: arrow.from_etf(payload, float_atoms=float_atoms))
    general = outcome(lambda: arrow._from_value(tether.etf.decode(payload, charlists="list"), float_atoms))
    assert typed == general


# ---------------------------------------------------------------- hostile input


def test_ipc_compression_outgrowing_its_buffer_still_writes_the_table(monkeypatch):
    table = pa.table({"x": np.arange(100_000), "s": [f"v{i}" for i in range(100_000)]})
    real = pa.allocate_buffer
    monkeypatch.setattr(pa, "allocate_buffer", lambda n: real(min(n, 1024)))  # a bound that is too small
    frame = tether.dumps(table, compression="lz4")
    monkeypatch.undo()
    assert tether.loads(frame).equals(table)
    assert tether.loads(tether.dumps(table, compression="zstd")).equals(table)


def test_deep_nesting_is_a_column_error_not_a_recursion_overflow():
    for depth in (100, 50_000):
        v = 1
        for _ in range(depth):
            v = [v]
        with pytest.raises(arrow.ColumnError, match="more than 64 levels"):
            arrow.from_etf(tether.etf.encode([{Atom("a"): v}]))
        with pytest.warns(tether.FallbackWarning):
            frame = tether.dumps([{"a": v}] * 300, transport="network")
        assert tether.inspect(frame).format == "etf"


def test_from_etf_on_truncated_and_flipped_input_raises_typed_errors():
    rows = [{Atom("id"): i, Atom("tags"): [Atom("a"), None], Atom("pos"): (i, b"x"), Atom("f"): i * 0.5}
            for i in range(20)]
    payload = tether.etf.encode(rows)
    for cut in range(len(payload)):
        with pytest.raises(tether.TetherError):
            arrow.from_etf(payload[:cut])
    for i in range(0, len(payload) * 8, 7):
        bad = bytearray(payload)
        bad[i // 8] ^= 1 << (i % 8)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                arrow.from_etf(bytes(bad)).validate(full=True)
            except tether.TetherError:
                pass


def test_malformed_ipc_inside_valid_frame():
    frame = tether.dumps(pa.table({"s": ["abc", "def"] * 100}), checksum=False)
    info = tether.inspect(frame)
    start = info.payload_offset
    for pos in range(start, len(frame), 7):
        broken = bytearray(frame)
        broken[pos] ^= 0xFF
        try:
            out = tether.loads(bytes(broken), options={"validate": "full"})
        except tether.TetherError:
            continue
        assert isinstance(out, pa.Table)
    with pytest.raises(tether.DecodeError, match="Arrow IPC stream is malformed"):
        tether.loads(frame[:start] + bytes(len(frame) - start))


def test_rows_with_a_non_map_in_the_middle_are_not_columnar():
    # Found by hypothesis: the shape check sampled the middle row without checking it was a map.
    value = [{"": None}, None, {"": None}]
    assert tether.arrow.columnar_shape(value) is None
    assert tether.loads(tether.dumps(value, transport="network")) == value


def test_from_etf_given_what_is_not_a_buffer_is_a_validation_error():
    for data in ("rows", 5, [131, 106]):
        with pytest.raises(tether.ValidationError, match="Expected bytes"):
            tether.arrow.from_etf(data)
    assert tether.arrow.from_etf(bytearray(tether.etf.encode([{"a": 1}]))).to_pydict() == {"a": [1]}


def test_column_to_arrow_refuses_an_iterator_a_string_or_a_bad_name_instead_of_a_wrong_column():
    for name, values in (("c", (i for i in range(3))), ("c", "abc"), ("c", 5), (5, [1])):
        with pytest.raises(tether.ValidationError, match=r"column_to_arrow takes a column name \(str\) and its values"):
            arrow.column_to_arrow(name, values)
    assert arrow.column_to_arrow("c", (1, 2)).to_pylist() == [1, 2]


def test_from_etf_reads_the_beams_nan_atoms_as_floats_when_asked():
    nan, inf, ninf = Atom("nan"), Atom("infinity"), Atom("neg_infinity")
    typed = {Atom("a"): [nan, inf, ninf, None], Atom("b"): [Atom("x"), Atom("y"), Atom("x"), None]}
    general = [{Atom("a"): 1.5}, {Atom("a"): nan}, {Atom("a"): 2.5}, {Atom("a"): None}]
    got = arrow.from_etf(etf.encode(typed), float_atoms=True)
    assert got.schema.field("a").type == pa.float64() and got.column("a").to_pylist()[1:] == [inf_f, -inf_f, None]
    assert math.isnan(got.column("a").to_pylist()[0])
    assert got.column("b").to_pylist() == ["x", "y", "x", None]  # other atoms: a column of atoms, as before
    got = arrow.from_etf(etf.encode(general), float_atoms=True).column("a").to_pylist()
    assert got[0] == 1.5 and math.isnan(got[1]) and got[2:] == [2.5, None]
    # Wherever they stand: inside structs, tuples and lists too.
    nested = [{Atom("s"): {Atom("x"): nan}, Atom("t"): (1.5, ninf), Atom("l"): [1.0, inf]}]
    row = arrow.from_etf(etf.encode(nested), float_atoms=True).to_pylist()[0]
    assert math.isnan(row["s"]["x"]) and row["t"] == {"0": 1.5, "1": -inf_f} and row["l"] == [1.0, inf_f]
    # Lists and tuples of atoms alone are typed columns of atom dictionaries: read again when one is a float.
    got = arrow.from_etf(etf.encode({Atom("a"): [[inf], [ninf]], Atom("p"): [(1, inf), (2, inf)]}), float_atoms=True)
    assert got.to_pylist() == [{"a": [inf_f], "p": {"0": 1, "1": inf_f}}, {"a": [-inf_f], "p": {"0": 2, "1": inf_f}}]
    # A name or a value that merely contains "nan" keeps the typed path, and its strings.
    plain = {Atom("tenant_id"): [1, 2], Atom("fruit"): [b"banana", b"nan"], Atom("k"): [Atom("ok"), Atom("ok")]}
    assert arrow.from_etf(etf.encode(plain), float_atoms=True).equals(arrow.from_etf(etf.encode(plain)))
    # A column that mixes them with other atoms is mixed, as any such column.
    with pytest.raises(tether.ColumnError, match="holds Atom, float|holds float, Atom"):
        arrow.from_etf(etf.encode({Atom("m"): [Atom("x"), nan]}), float_atoms=True)
    # Without the flag the atoms stay atoms: an atom column, and a mixed one Arrow cannot hold.
    assert arrow.from_etf(etf.encode(typed)).column("a").to_pylist() == ["nan", "infinity", "neg_infinity", None]
    with pytest.raises(tether.ColumnError, match="holds Atom"):
        arrow.from_etf(etf.encode(general))


def test_an_etf_frame_of_rows_with_nan_reads_into_a_table():
    # tether.dumps marks the frame ("nan": "atoms"); into= used to refuse the column as "Atom, float".
    rows = [{"x": 1.0, "n": 1}, {"x": float("nan"), "n": 2}, {"x": float("-inf"), "n": 3}]
    frame = tether.dumps(rows, format="etf")
    for into in ("arrow", "pandas"):
        table = tether.loads(frame, into=into)
        xs = list(table["x"]) if into == "pandas" else table.column("x").to_pylist()
        assert xs[0] == 1.0 and math.isnan(xs[1]) and xs[2] == -inf_f
    assert math.isnan(tether.loads(frame)[1]["x"])
    nested = tether.loads(tether.dumps([{"s": {"x": float("nan")}}], format="etf"), into="arrow").to_pylist()
    assert math.isnan(nested[0]["s"]["x"])  # was the string 'nan'
