"""Round-trip fidelity for the values a user trial found changing type or value in ``dumps``/``loads``.

Each case is ``tether.loads(tether.dumps(x))`` under ``format="auto"`` and under the format auto picks.
The rule (docs/types.md): what Python dumps, ``loads`` gives back as equal values of the same types; a
value no format keeps is refused, or goes to pickle under ``format="auto"`` by the documented rule.
NumPy scalars inside containers come back as the Python number of equal value (``[np.float32(2.5)]``
as ``[2.5]``), and are refused by name where no Python number holds them exactly.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import warnings
import zoneinfo

import numpy as np
import pytest
from hypothesis import given, strategies as st

import tether
from tether import Limits

NEW_YORK = zoneinfo.ZoneInfo("America/New_York")
WIDE_FLOAT = np.finfo(np.longdouble).nmant > np.finfo(np.float64).nmant  # x86-64 and aarch64 Linux; not macOS arm


def round_trip(value, **kw):
    """``value`` through dumps and loads with no warning allowed, and the format it took."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        frame = tether.dumps(value, **kw)
        back = tether.loads(frame, allow_pickle=True)
    return back, tether.inspect(frame).format


def both_ways(value):
    """The values back under format="auto" and under the format auto picked, and that format."""
    auto, fmt = round_trip(value)
    return auto, round_trip(value, format=fmt)[0], fmt


# ---------------------------------------------------------------- 1. aware datetimes and fold


def assert_same_instant_and_zone(back, value):
    assert type(back) is dt.datetime and type(back.tzinfo) is type(value.tzinfo) and back.tzinfo == value.tzinfo
    assert back == value and back.utcoffset() == value.utcoffset(), (back, value)
    if value.replace(fold=0).utcoffset() != value.replace(fold=1).utcoffset():  # an hour the clock repeats or skips
        assert back.fold == value.fold


@pytest.mark.parametrize("wrap", [lambda d: d, lambda d: [d], lambda d: {"at": d}], ids=["top", "list", "dict"])
def test_the_second_of_a_repeated_hour_keeps_its_zone_and_fold(wrap):
    value = dt.datetime(2026, 11, 1, 1, 30, tzinfo=NEW_YORK, fold=1)  # 01:30 EST, after the clocks went back
    for back in both_ways(wrap(value))[:2]:
        inner = back if isinstance(back, dt.datetime) else back[0] if isinstance(back, list) else back["at"]
        assert_same_instant_and_zone(inner, value)


@given(st.datetimes(min_value=dt.datetime(1970, 1, 1), max_value=dt.datetime(2100, 1, 1),
                    timezones=st.sampled_from([zoneinfo.ZoneInfo(k) for k in
                                               ("America/New_York", "Europe/Berlin", "Australia/Lord_Howe")])),
       st.sampled_from([0, 1]))
def test_zoned_datetimes_keep_zone_offset_and_fold(value, fold):
    value = value.replace(fold=fold)
    back, fmt = round_trip([value])
    assert fmt == "etf"
    assert_same_instant_and_zone(back[0], value)


def test_an_unambiguous_zoned_datetime_still_reads_back_in_its_zone():
    value = dt.datetime(2026, 7, 1, 12, tzinfo=NEW_YORK)
    back = both_ways([value])[0][0]
    assert_same_instant_and_zone(back, value)


# ---------------------------------------------------------------- 2. np.longdouble (and np.clongdouble) in containers


@pytest.mark.skipif(not WIDE_FLOAT, reason="np.longdouble is float64 on this platform")
@pytest.mark.parametrize("wrap", [lambda v: [v], lambda v: {"x": v}, lambda v: (1, [v])],
                         ids=["list", "dict", "nested"])
@pytest.mark.parametrize("make", [lambda: np.longdouble("1.1"), lambda: np.clongdouble("1.1+2.2j")],
                         ids=["longdouble", "clongdouble"])
def test_a_wider_than_double_numpy_scalar_in_a_container_goes_to_pickle_whole(wrap, make):
    """As np.timedelta64 in a list: etf has no number that holds it, so auto sends it to pickle by the
    documented rule (no warning), and it comes back with all its digits and its type."""
    value = wrap(make())
    back, fmt = round_trip(value)
    assert fmt == "pickle" and "numpy." in tether.last_decision().reason
    assert back == value and repr(back) == repr(value)


@pytest.mark.skipif(not WIDE_FLOAT, reason="np.longdouble is float64 on this platform")
def test_a_wider_than_double_numpy_scalar_is_refused_by_name_when_etf_is_asked_for():
    with pytest.raises(tether.MappingError, match=r"numpy\.longdouble at \$\.x\[0\].*float\(v\)"):
        tether.dumps({"x": [np.longdouble("1.1")]}, format="etf")
    with pytest.raises(tether.EncodeError, match="longdouble"):
        tether.dumps([np.longdouble("1.1")], reader="beam")


@pytest.mark.skipif(not WIDE_FLOAT, reason="np.longdouble is float64 on this platform")
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_a_longdouble_keeps_every_digit_inside_a_list(x):
    value = [np.longdouble(x) / np.longdouble(3)]
    back, _ = round_trip(value)
    assert type(back[0]) is np.longdouble and back[0] == value[0]


@pytest.mark.parametrize("value, expected", [(np.float32(2.5), 2.5), (np.int64(-3), -3), (np.float16(0.5), 0.5),
                                             (np.bool_(True), True), (np.uint8(7), 7)])
def test_numpy_scalars_that_a_python_number_holds_still_come_back_as_that_number(value, expected):
    back, fmt = round_trip([value])
    assert fmt == "etf" and back == [expected] and type(back[0]) is type(expected)


def test_non_finite_numpy_floats_in_a_container_are_written_as_python_floats_are():
    """As [float("nan")]: the atoms Nx writes, marked so that Python reads floats back; before, a NumPy NaN
    sent the whole value to pickle with a FallbackWarning."""
    value = {"loss": np.float64("nan"), "best": [np.float32("inf"), np.float16("-inf")]}
    back, fmt = round_trip(value)
    assert fmt == "etf" and math.isnan(back["loss"]) and back["best"] == [math.inf, -math.inf]
    assert type(back["loss"]) is float and tether.inspect(tether.dumps(value)).type["nan"] == "atoms"


def test_a_numpy_scalar_alone_still_keeps_its_type():
    for value in (np.longdouble("1.1"), np.float32(2.5), np.complex64(1 + 2j)):
        back, fmt = round_trip(value)
        assert fmt == "ndarray" and type(back) is type(value) and back == value


# ---------------------------------------------------------------- 3. sparse index dtypes


def _index_arrays(m):
    if m.format == "coo":
        return tuple(m.coords) if hasattr(m, "coords") else (m.row, m.col)
    return m.indices, m.indptr


@given(st.sampled_from(["csr", "csc", "coo"]), st.sampled_from(["matrix", "array"]),
       st.sampled_from([np.int32, np.int64]), st.integers(1, 6), st.integers(1, 6), st.integers(0, 2**32 - 1))
def test_sparse_index_arrays_keep_their_dtype(layout, kind, index_dtype, rows, cols, seed):
    sparse = pytest.importorskip("scipy.sparse")
    dense = np.random.default_rng(seed).integers(0, 3, (rows, cols)).astype(float)
    value = getattr(sparse, f"{layout}_{kind}")(dense)
    if layout == "coo":
        coords = tuple(a.astype(index_dtype) for a in _index_arrays(value))
        if hasattr(value, "coords"):  # scipy >= 1.13; the constructor would narrow int64 ones
            value.coords = coords
        else:
            value.row, value.col = coords
    else:
        value.indices, value.indptr = value.indices.astype(index_dtype), value.indptr.astype(index_dtype)
    for back in both_ways(value)[:2]:
        assert type(back) is type(value) and (back != value).nnz == 0
        assert [a.dtype for a in _index_arrays(back)] == [a.dtype for a in _index_arrays(value)]


def test_sparse_int64_indices_are_views_of_the_frame_not_copies():
    sparse = pytest.importorskip("scipy.sparse")
    value = sparse.csr_matrix(np.eye(4))
    value.indices, value.indptr = value.indices.astype(np.int64), value.indptr.astype(np.int64)
    frame = tether.dumps(value)
    back = tether.loads(frame)
    assert np.shares_memory(back.indices, np.frombuffer(frame, np.uint8))


# ---------------------------------------------------------------- 4. bytearray and memoryview in containers


@pytest.mark.parametrize("value", [bytearray(b"ab"), memoryview(b"ab")], ids=["bytearray", "memoryview"])
def test_a_buffer_alone_comes_back_as_its_type(value):
    back, fmt = round_trip(value)
    assert fmt == "raw" and type(back) is type(value) and back == value


@pytest.mark.parametrize("wrap", [lambda v: [v], lambda v: {"k": v}, lambda v: (v,)], ids=["list", "dict", "tuple"])
def test_a_bytearray_in_a_container_comes_back_a_bytearray(wrap):
    value = wrap(bytearray(b"ab"))
    back = both_ways(value)[0]
    inner = back["k"] if isinstance(back, dict) else back[0]
    assert type(inner) is bytearray and inner == b"ab"


@pytest.mark.parametrize("wrap", [lambda v: [v], lambda v: {"k": v}, lambda v: (v,)], ids=["list", "dict", "tuple"])
def test_a_memoryview_in_a_container_comes_back_equal_as_bytes(wrap):
    """docs/types.md: a byte memoryview inside a container reads back as bytes (a read-only memoryview from
    64 KiB), equal to it, as any binary there does."""
    back = both_ways(wrap(memoryview(b"ab")))[0]
    inner = back["k"] if isinstance(back, dict) else back[0]
    assert type(inner) is bytes and inner == memoryview(b"ab")


def test_a_typed_memoryview_in_a_container_warns_that_it_comes_back_as_its_bytes():
    value = [memoryview(np.arange(3.0))]
    with pytest.warns(tether.LossyConversionWarning, match=r"memoryview at \$\[0\] \(format 'd', shape \[3\]\)"):
        frame = tether.dumps(value)
    back = tether.loads(frame)
    assert back == [np.arange(3.0).tobytes()]


# ---------------------------------------------------------------- 5. complex numbers


@pytest.mark.parametrize("wrap", [lambda v: [v], lambda v: {"z": v}, lambda v: (v, 1)], ids=["list", "dict", "tuple"])
@pytest.mark.parametrize("make", [complex, np.complex128, np.complex64], ids=["complex", "complex128", "complex64"])
def test_complex_numbers_in_containers_come_back_as_complex(wrap, make):
    value = wrap(make(1.5 - 2j))
    auto, explicit, fmt = both_ways(value)
    assert fmt == "etf" and auto == explicit == value
    inner = auto["z"] if isinstance(auto, dict) else auto[0]
    assert type(inner) is complex


@given(st.complex_numbers(allow_nan=True, allow_infinity=True))
def test_any_builtin_complex_comes_back_alone_and_in_a_list(z):
    for value in (z, [z]):
        back, fmt = round_trip(value)
        inner = back if fmt != "etf" or not isinstance(back, list) else back[0]
        assert type(inner) is complex and _same_complex(inner, z)


def _same_complex(a, b):
    return all(x == y or (math.isnan(x) and math.isnan(y)) for x, y in ((a.real, b.real), (a.imag, b.imag)))


def test_a_numpy_complex_scalar_alone_keeps_its_type():
    for value in (np.complex128(1 + 2j), np.complex64(-1j)):
        back, fmt = round_trip(value)
        assert fmt == "ndarray" and type(back) is type(value) and back == value


# ---------------------------------------------------------------- 6. limits that no frame could pass


FLOORS = {"max_frame_size": 64, "max_metadata_size": 6, "max_depth": 3, "max_atoms": 3, "max_terms": 1}


@pytest.mark.parametrize("field", sorted(FLOORS))
@given(below=st.integers(min_value=-(2**70), max_value=-1))
def test_a_limit_below_its_floor_is_a_validation_error_naming_the_field_and_range(field, below):
    value = FLOORS[field] + below
    for build in (lambda: tether.set_limits(**{field: value}), lambda: Limits(**{field: value}),
                  lambda: Limits().replace(**{field: value})):
        with pytest.raises(tether.ValidationError, match=rf"Limit '{field}' must be an int in .*{FLOORS[field]}"):
            build()
    assert tether.get_limits() == Limits()


@pytest.mark.parametrize("field", sorted(FLOORS))
def test_a_limit_at_its_floor_is_accepted(field):
    try:
        assert tether.set_limits(**{field: FLOORS[field]}).__getattribute__(field) == FLOORS[field]
    finally:
        tether.set_limits(Limits())


def test_frames_read_at_the_floors_that_concern_them():
    """The floors are what every frame needs: the header, an ETF map, lineage entries, true/false/nil."""
    frame = tether.dumps({"ok": True, "n": None})
    try:
        tether.set_limits(max_depth=3, max_atoms=3)
        assert tether.loads(frame) == {"ok": True, "n": None}
    finally:
        tether.set_limits(Limits())


def test_max_uncompressed_size_zero_stays_a_policy_no_compressed_payload():
    try:
        tether.set_limits(max_uncompressed_size=0)
        assert tether.loads(tether.dumps([1, 2])) == [1, 2]
    finally:
        tether.set_limits(Limits())


@pytest.mark.parametrize("part", [b"1.5", "nan", None])
def test_a_complex_part_that_is_no_number_or_float_atom_is_refused(part):
    # A binary "1.5" decoded as 1.5, and "nan" as NaN: text is not what %Complex{} holds.
    term = {tether.Atom("__struct__"): tether.Atom("Elixir.Complex"), tether.Atom("re"): part, tether.Atom("im"): 0.0}
    with pytest.raises(tether.DecodeError, match="%Complex{} part must be a number"):
        tether.etf.decode(tether.etf.encode(term))


# ---------------------------------------------------------------- Decimal NaN variants


def test_a_negative_decimal_nan_keeps_its_sign():
    back, _ = round_trip([decimal.Decimal("-NaN"), decimal.Decimal("NaN")])
    assert [str(d) for d in back] == ["-NaN", "NaN"]


@pytest.mark.parametrize("text", ["sNaN", "NaN123", "-sNaN"])
def test_a_signalling_nan_or_nan_payload_warns_that_it_comes_back_a_quiet_nan(text):
    with pytest.warns(tether.LossyConversionWarning, match=r"comes back as -?NaN: Elixir's Decimal has no") as rec:
        frame = tether.dumps([decimal.Decimal(text)])
    assert rec[0].filename == __file__
    assert str(tether.loads(frame)[0]) == ("-NaN" if text.startswith("-") else "NaN")


@pytest.mark.parametrize("r", [range(2**64), range(0, 2**70, 3), range(5, 2), range(5, 2, 2), range(2, 5, -1)])
def test_a_range_past_2_63_elements_or_empty_goes_as_a_range(r):
    """len() of a range past 2**63 - 1 elements raises OverflowError; an empty range's last came from len."""
    for kw in ({}, {"reader": "beam"}):
        assert tether.loads(tether.dumps([r], **kw)) == [r]


@pytest.mark.parametrize("wrap", [bytearray, lambda f: memoryview(bytearray(f))], ids=["bytearray", "view"])
def test_a_large_binary_key_of_a_frame_in_a_writable_buffer_decodes_as_bytes(wrap):
    """A view of a writable buffer hashes as that buffer, which cannot be hashed: such keys failed the decode."""
    big = b"a" * 70_000
    back = tether.loads(wrap(tether.dumps({big: 1, (big,): 2}, format="etf")))
    assert back == {big: 1, (big,): 2} and all(type(k) is not memoryview for k in back)


def test_a_bitstrings_padding_bits_are_cleared_as_the_beam_clears_them():
    """BitBinary(b'\\x06', 4) came back from the BEAM as BitBinary(b'\\x00', 4) and compared unequal."""
    a, b = tether.BitBinary(bytes([0x06]), 4), tether.BitBinary(bytes([0x00]), 4)
    assert a == b and hash(a) == hash(b) and a.data == bytes([0])
    assert tether.BitBinary(bytes([1, 0xF6]), 4).data == bytes([1, 0xF0])
    assert tether.loads(tether.dumps([a], reader="beam")) == [b]


def test_nan_inside_improper_lists_and_container_subclasses_goes_for_the_beam_and_comes_back_a_float():
    from collections import OrderedDict, namedtuple

    point = namedtuple("Point", "x")
    value = [math.nan, tether.ImproperList([math.nan, (math.inf,)], -math.inf)]
    back = tether.loads(tether.dumps(value, reader="beam"))
    assert math.isnan(back[0]) and math.isnan(back[1].items[0]) and back[1].items[1] == (math.inf,)
    assert back[1].tail == -math.inf
    for v in (OrderedDict(a=math.nan), point(math.nan)):
        out = tether.loads(tether.dumps(v, reader="beam"))
        assert math.isnan(next(iter(out.values())) if isinstance(out, dict) else out[0])


@pytest.mark.parametrize("struct", ["Date", "NaiveDateTime", "Time"])
def test_a_date_or_time_in_another_calendar_is_refused_not_read_as_iso(struct):
    fields = {"Date": {"year": 2020, "month": 2, "day": 3}, "Time": {"hour": 1, "minute": 2, "second": 3},
              "NaiveDateTime": {"year": 2020, "month": 2, "day": 3, "hour": 1, "minute": 2, "second": 3}}[struct]
    term = {tether.Atom("__struct__"): tether.Atom(f"Elixir.{struct}"),
            tether.Atom("calendar"): tether.Atom("Elixir.Foo.Cal"), **{tether.Atom(k): v for k, v in fields.items()}}
    with pytest.raises(tether.DecodeError, match=rf"%{struct}{{}} in calendar Elixir.Foo.Cal.*Calendar.ISO"):
        tether.etf.decode(tether.etf.encode(term))


def test_a_frozenset_alone_goes_to_the_beam_as_a_mapset():
    frame = tether.dumps(frozenset({1, 2}), reader="beam")
    assert tether.inspect(frame).format == "etf" and tether.loads(frame) == {1, 2}


def test_an_improper_list_subclass_with_nan_goes_for_the_beam():
    class Improper(tether.ImproperList):
        pass

    back = tether.loads(tether.dumps([Improper([math.nan], 1)], reader="beam"))
    assert math.isnan(back[0].items[0]) and back[0].tail == 1


def test_a_forged_calendar_is_named_by_its_type_not_its_repr():
    deep: list = []
    for _ in range(20_000):
        deep = [deep]
    term = {tether.Atom("__struct__"): tether.Atom("Elixir.Date"), tether.Atom("calendar"): deep,
            tether.Atom("year"): 2020, tether.Atom("month"): 1, tether.Atom("day"): 1}
    with pytest.raises(tether.DecodeError, match=r"%Date\{\} in calendar \(a list\)"):
        tether.etf.decode(tether.etf.encode(term))


def test_a_datetime_in_another_calendar_is_named_a_datetime():
    fields = {"year": 2020, "month": 2, "day": 3, "hour": 1, "minute": 2, "second": 3, "time_zone": "Etc/UTC",
              "zone_abbr": "UTC", "utc_offset": 0, "std_offset": 0}
    term = {tether.Atom("__struct__"): tether.Atom("Elixir.DateTime"),
            tether.Atom("calendar"): tether.Atom("Elixir.Foo.Cal"), **{tether.Atom(k): v for k, v in fields.items()}}
    with pytest.raises(tether.DecodeError, match=r"%DateTime\{\} in calendar Elixir.Foo.Cal.*DateTime.convert!"):
        tether.etf.decode(tether.etf.encode(term))


def test_a_bitstrings_bit_count_given_as_a_numpy_int_is_an_int():
    a = tether.BitBinary(bytes([6]), np.int64(4))
    assert type(a.bits) is int and a == tether.BitBinary(bytes([0]), 4)
