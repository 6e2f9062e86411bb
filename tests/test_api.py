"""Round trips through dumps/loads for every format, the decision record, and the public surface."""

from __future__ import annotations

import logging
import math
import re

import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

import tether
from tether import Atom, ImproperList


def roundtrip(value, **kw):
    frame = tether.dumps(value, **kw)
    return tether.loads(frame, allow_pickle=True)


def test_all_is_sorted_and_exported():
    assert tether.__all__ == sorted(tether.__all__)
    for name in tether.__all__:
        assert hasattr(tether, name), name


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-(2**300), max_value=2**300),
    st.floats(allow_nan=False), st.text(),
)


@given(scalars)
def test_scalar_roundtrip(value):
    out = roundtrip(value)
    assert type(out) is type(value) and out == value
    assert tether.last_decision().format == "scalar"


def test_scalar_nan_keeps_nan():
    assert math.isnan(roundtrip(float("nan")))


@given(st.binary(max_size=200_000))
def test_raw_roundtrip(value):
    out = roundtrip(value)
    assert out == value
    assert tether.last_decision().format == "raw"


def test_raw_large_is_readonly_view_into_frame():
    data = bytes(range(256)) * 4096
    frame = tether.dumps(data)
    out = tether.loads(frame)
    assert isinstance(out, memoryview) and out.readonly and out == data
    assert isinstance(tether.loads(frame, copy=True), bytes)
    assert isinstance(roundtrip(bytearray(b"ab")), bytearray)


keys = st.one_of(st.text(max_size=8), st.integers(), st.builds(Atom, st.text(min_size=1, max_size=8).filter(lambda s: s not in ("true", "false", "nil"))))
terms = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=20), st.binary(max_size=20), keys,
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=6),
        st.lists(children, max_size=6).map(tuple),
        st.dictionaries(keys, children, max_size=6),
        st.builds(ImproperList, st.lists(children, min_size=1, max_size=3), st.integers()),
    ),
    max_leaves=40,
)


@given(st.one_of(st.lists(terms, max_size=5), st.dictionaries(keys, terms, max_size=5), st.tuples(terms, terms)))
def test_etf_frame_roundtrip_keeps_types(value):
    out = roundtrip(value)
    assert out == value
    assert repr(out) == repr(value)  # str stays str, bytes stay bytes, tuples stay tuples


@given(hnp.arrays(
    dtype=st.one_of(hnp.scalar_dtypes(), hnp.byte_string_dtypes(), hnp.unicode_string_dtypes(),
                    hnp.array_dtypes(max_size=3), hnp.nested_dtypes(max_leaves=3)),
    shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5),
))
def test_ndarray_roundtrip(arr):
    out = roundtrip(arr)
    assert out.dtype == arr.dtype and out.shape == arr.shape
    assert out.tobytes() == arr.tobytes()
    assert tether.last_decision().format == "ndarray"


@pytest.mark.parametrize("order", ["C", "F"])
def test_ndarray_order_and_zero_copy(order):
    arr = np.asarray(np.arange(24, dtype=">i4").reshape(2, 3, 4), order=order)
    frame = tether.dumps(arr)
    out = tether.loads(frame)
    assert out.flags.f_contiguous == (order == "F") and out.flags.c_contiguous == (order == "C")
    assert not out.flags.writeable and not out.flags.owndata
    assert np.shares_memory(out, np.frombuffer(frame, np.uint8))
    np.testing.assert_array_equal(out, arr)
    assert tether.loads(frame, copy=True).flags.writeable


def test_ndarray_non_contiguous_written_once():
    base = np.arange(100, dtype="f8").reshape(10, 10)
    view = base[::2, 1::3]
    np.testing.assert_array_equal(roundtrip(view), view)
    np.testing.assert_array_equal(roundtrip(base.T[::3]), base.T[::3])


def test_ndarray_nx_type_and_scalars():
    info = tether.inspect(tether.dumps(np.zeros(3, "f4")))
    assert info.type["nx"] == ["f", 32]
    assert tether.inspect(tether.dumps(np.zeros(3, "c8"))).type["nx"] == ["c", 64]
    assert "nx" not in tether.inspect(tether.dumps(np.zeros(3, ">f4"))).type
    out = roundtrip(np.float32(2.5))
    assert type(out) is np.float32 and out == 2.5


def test_object_arrays_go_to_pickle():
    arr = np.array([{"a": 1}, None], dtype=object)
    out = roundtrip(arr)
    assert tether.last_decision().format == "pickle"
    assert list(out) == list(arr)


class Custom:
    def __init__(self, x):
        self.x = x

    def __eq__(self, other):
        return isinstance(other, Custom) and self.x == other.x


def test_pickle_refused_unless_allowed():
    frame = tether.dumps(Custom(1))
    with pytest.raises(tether.UntrustedPickleError, match="allow_pickle=True"):
        tether.loads(frame)
    assert tether.loads(frame, allow_pickle=True) == Custom(1)


def test_pickle_out_of_band_buffers_are_views():
    arr = np.arange(10_000, dtype="f8")
    frame = tether.dumps({"arr": arr, "obj": Custom(2)})
    assert tether.last_decision().format == "pickle"
    assert tether.last_decision().fallback_from == "etf"
    out = tether.loads(frame, allow_pickle=True)
    assert np.shares_memory(out["arr"], np.frombuffer(frame, np.uint8))
    assert out["obj"] == Custom(2)


def test_decision_is_logged(caplog):
    with caplog.at_level(logging.DEBUG, logger="tether.select"):
        tether.dumps([1, 2])
    assert any("format=etf" in r.getMessage() for r in caplog.records)
    d = tether.last_decision()
    assert d.format == "etf" and d.payload_size > 0 and "BEAM" in d.reason


def test_explicit_format_and_errors():
    assert roundtrip([1, 2], format="pickle") == [1, 2]
    with pytest.raises(tether.UnsupportedFormatError, match="Valid options are: arrow, etf, ndarray, pickle, raw, scalar"):
        tether.dumps(1, format="nope")
    with pytest.raises(tether.ValidationError, match="transport"):
        tether.dumps(1, transport="carrier-pigeon")
    with pytest.raises(tether.MappingError, match=r"\$\.a\[1\]"):
        tether.dumps({"a": [1, object()]}, format="etf")


def test_encode_write_into_offsets():
    enc = tether.encode(np.arange(1000, dtype="i2"))
    buf = bytearray(enc.nbytes + 128)
    assert enc.write_into(buf, 128) == enc.nbytes
    np.testing.assert_array_equal(tether.loads(memoryview(buf)[128:]), np.arange(1000, dtype="i2"))
    with pytest.raises(tether.ValidationError, match="does not fit"):
        enc.write_into(bytearray(10))
    with pytest.raises(tether.ValidationError, match="read-only"):
        enc.write_into(b"x" * enc.nbytes)


def test_inspect_reads_no_payload():
    frame = tether.dumps(np.ones((4, 5)), metadata={"run": "r1", "blob": b"\x00"}, lineage=[{"step": "prep"}])
    # Corrupt the payload: inspect must not notice, loads must.
    broken = bytearray(frame)
    broken[-1] ^= 0xFF
    info = tether.inspect(bytes(broken))
    assert info.format == "ndarray" and info.type["shape"] == [4, 5]
    assert info.user == {"run": "r1", "blob": b"\x00"}
    assert info.lineage[-1] == {"step": "prep"}
    assert info.created_at is not None and info.checksum == "crc32"
    with pytest.raises(tether.ChecksumError):
        tether.loads(bytes(broken))
    assert "ndarray" in str(info)


def test_checksum_auto_policy():
    big = np.zeros(1 << 18)  # 2 MiB
    assert tether.inspect(tether.dumps(big)).checksum == "none"
    assert tether.inspect(tether.dumps(big, transport="network")).checksum == "crc32"
    assert tether.inspect(tether.dumps(big, checksum=True)).checksum == "crc32"
    assert tether.inspect(tether.dumps(big, checksum="xxh3-64")).checksum == "xxh3-64"
    assert tether.inspect(tether.dumps(b"x", checksum=False)).checksum == "none"
    assert tether.inspect(tether.dumps(b"x", checksum="crc32")).checksum == "crc32"
    assert "commit protocol" in tether.inspect(tether.dumps(big)).checksum_covers


def test_loads_rejects_trailing_and_accepts_buffers():
    frame = tether.dumps("x")
    with pytest.raises(tether.DecodeError, match="after the end"):
        tether.loads(frame + b"\0")
    assert tether.loads(bytearray(frame)) == "x"
    assert tether.loads(memoryview(frame)) == "x"
    with pytest.raises(tether.ValidationError):
        tether.loads(12)


def test_etf_options_for_beam_frames():
    assert roundtrip({"k": None}, options={"none_atom": "undefined"}) == {"k": None}


def test_user_formats_plug_in():
    class Upper(tether.formats.Format):
        id = 200
        name = "upper"

        def can_encode(self, obj):
            return isinstance(obj, str)

        def encode(self, obj, ctx):
            p = tether.formats.Payload({})
            p.add(obj.upper().encode())
            return p

        def decode(self, payload, type_info, ctx):
            return bytes(payload).decode()

    tether.formats.register(Upper)
    assert tether.loads(tether.dumps("abc", format="upper")) == "ABC"
    assert tether.inspect(tether.dumps("a", format="upper")).format_id == 200


def test_array_shapes_in_metadata_never_warn_as_charlists():
    # [50, 40] is "2(" as a charlist: metadata is tether's own map and must not warn (or fail under -W error).
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert tether.loads(tether.dumps(np.zeros((50, 40)))).shape == (50, 40)
        assert tether.inspect(tether.dumps(np.zeros((72, 105)))).type["shape"] == [72, 105]


@pytest.mark.parametrize("kwargs, words", [
    ({"lineage": "load"}, "lineage must be a list of maps"),
    ({"lineage": {"step": "load"}}, "lineage must be a list of maps"),
    ({"lineage": [{"step": "load"}, 3]}, "lineage[1] must be a map"),
    ({"options": ["binaries"]}, "options must be a mapping"),
    ({"options": "binaries=str"}, "options must be a mapping"),
])
def test_encode_arguments_of_the_wrong_shape_are_validation_errors(kwargs, words):
    for value in ({"a": 1}, b"abc", np.arange(3.0)):
        with pytest.raises(tether.ValidationError) as info:
            tether.dumps(value, **kwargs)
        assert words in str(info.value)


def test_decode_options_that_are_not_a_mapping_are_validation_errors():
    frame = tether.dumps({"a": 1})
    for options in (["binaries"], "binaries=str"):
        with pytest.raises(tether.ValidationError, match="options must be a mapping"):
            tether.loads(frame, options=options)


def test_nan_and_infinity_in_plain_data_stay_etf_and_come_back_as_floats():
    import math
    import warnings

    value = {"loss": float("nan"), "hist": [1.0, float("inf"), (float("-inf"), 2)], "tag": tether.Atom("x")}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no pickle fallback, no lossy warning: Python reads floats back
        frame = tether.dumps(value)
        out = tether.loads(frame)
    assert tether.inspect(frame).format == "etf" and tether.inspect(frame).type["nan"] == "atoms"
    assert math.isnan(out["loss"]) and out["hist"][:2] == [1.0, math.inf] and out["hist"][2] == (-math.inf, 2)
    assert type(out["hist"][2]) is tuple and out["tag"] == tether.Atom("x")
    assert math.isnan(tether.loads(tether.dumps([float("nan")]), into="pylist")[0])
    # An atom that would read back as a float cannot share the frame: that value is not etf's.
    with pytest.warns(tether.FallbackWarning, match="instead of etf"):
        ambiguous = tether.dumps({"a": float("nan"), "b": tether.Atom("nan")})
    assert tether.inspect(ambiguous).format != "etf"
    with pytest.raises(tether.EncodeError, match="finite"):
        tether.dumps({"a": float("nan")}, format="etf", options={"nan": "error"})


@pytest.mark.parametrize("metadata, where", [({"score": math.nan}, "$.user.score"),
                                             ({"a": [1, {"b": -math.inf}]}, "$.user.a[1].b"),
                                             ({"a": np.float32("nan")}, "$.user.a"),
                                             ({"a": {math.nan: 1}}, "$.user.a (a key)")])
def test_nan_in_metadata_names_its_path_and_a_fix_that_works(metadata, where):
    # The value's advice, options={'nan': 'atom'}, was given for metadata too, where it changes nothing.
    for options in (None, {"nan": "atom"}):
        with pytest.raises(tether.EncodeError, match=rf"^Metadata cannot be stored: {re.escape(where)} is") as info:
            tether.dumps(1, metadata=metadata, options=options)
        assert "Store None, or a string" in str(info.value) and "options=" not in str(info.value)


def test_metadata_that_holds_itself_fails_at_once_with_the_encoders_error():
    # Looking for a NaN to name walked a shared list once per path to it: a cycle never ended.
    loop: list = []
    loop.append(loop)
    loop.append(loop)
    with pytest.raises(tether.EncodeError, match="contains itself"):
        tether.dumps(1, metadata={"a": loop})
