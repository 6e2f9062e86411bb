"""``Limits.max_terms``: both decoders count the terms of a value the same way and refuse one over the limit.

What counts (the ``Limits`` docstring says it for users): the value itself; every element of a list or
tuple; every key and every value of a map; the tail of an improper list. A charlist (STRING_EXT) is a list
of integers, one term per character. Anything else (an integer, float, atom, binary, pid...) is one term.
"""

from __future__ import annotations

import zlib

import pytest
from hypothesis import given, strategies as st

import tether
from tether import Atom, ImproperList, Limits, LimitError, _etf, etf
from tether._etf import columns, decoder, native

c = native.c
needs_c = pytest.mark.skipif(c is None, reason="C fast path not built")


def count(value) -> int:
    """The terms of ``value`` as tether counts them, from the Python value (independent of the decoders)."""
    if isinstance(value, (list, tuple)):
        return 1 + sum(count(v) for v in value)
    if isinstance(value, dict):
        return 1 + sum(count(k) + count(v) for k, v in value.items())
    if isinstance(value, ImproperList):
        return 1 + sum(count(v) for v in value.items) + count(value.tail)
    return 1


def opts(max_terms: int, **kw) -> _etf.Options:
    return _etf.Options(limits=Limits(max_terms=max_terms), **kw)


@pytest.fixture(autouse=True)
def restore_limits():
    before = tether.get_limits()
    yield
    tether.set_limits(before)


@pytest.fixture(params=["c", "python"])
def decoders(request, monkeypatch):
    """Run the test through the C fast path (when built), then with the pure-Python decoder alone."""
    if request.param == "c":
        if c is None:
            pytest.skip("C fast path not built")
    else:
        monkeypatch.setattr(_etf, "_c", None)
        monkeypatch.setattr(columns, "c", None)
    return request.param


def python_decode(data: bytes, o: _etf.Options):
    return decoder.decode_term(data, 1, o)[0]


def c_decode(data: bytes, o: _etf.Options):
    """The C decoder alone: its value, or c.Fallback (with "terms" as its message at the limit)."""
    return c.decode(data, 1, native.options(o))[0]


# ------------------------------------------------------------------ the user trial's reproduction


def test_set_limits_max_terms_refuses_a_larger_value_in_loads_and_etf_decode(decoders):
    value = list(range(100_000))  # 100,001 terms
    frame, data = tether.dumps(value), etf.encode(value)
    tether.set_limits(max_terms=10)
    with pytest.raises(LimitError, match=r"Limits\.max_terms"):
        tether.loads(frame)
    with pytest.raises(LimitError) as info:
        etf.decode(data)
    message = str(info.value)
    for needle in ("More than 10 ETF terms", "Limits.max_terms", "at least 100001", "list of 100000 elements",
                   "at $ (offset 1)", "tether.set_limits(max_terms=...)"):
        assert needle in message


def test_loads_refuses_a_payload_over_the_limit_and_takes_one_at_it(decoders):
    value = [{"id": i, "tags": ["a", "b"]} for i in range(50)]
    frame = tether.dumps(value)
    terms = count(value)  # 401: above any frame's metadata
    tether.set_limits(max_terms=terms)
    assert tether.loads(frame) == value
    tether.set_limits(max_terms=terms - 1)
    with pytest.raises(LimitError, match=rf"More than {terms - 1} ETF terms .* at \$\[49\]"):
        tether.loads(frame)


def test_frame_metadata_counts_too(decoders):
    """Metadata is an ETF value decoded under the same limits (as max_depth and max_atoms apply to it)."""
    tether.set_limits(max_terms=5)
    with pytest.raises(LimitError, match=r"Frame metadata .*Limits\.max_terms"):
        tether.loads(tether.dumps(1))


# ------------------------------------------------------------------ what counts

EXAMPLES = {
    "an integer": (etf.encode(7), 1),
    "an empty list (NIL_EXT)": (etf.encode([]), 1),
    "an empty tuple": (etf.encode(()), 1),
    "an empty map": (etf.encode({}), 1),
    "a binary": (etf.encode(b"x" * 1000), 1),
    "a list of 2": (etf.encode([1000, 2000]), 3),
    "a charlist (STRING_EXT) of 3": (etf.encode([1, 2, 3]), 4),
    "a tuple of 2": (etf.encode((1, 2.5)), 3),
    "a map of 1 pair": (etf.encode({"a": 1}), 3),
    "an improper list [1, 2 | 3]": (etf.encode(ImproperList([1, 2], 3)), 4),
    "nested lists [[[]]]": (etf.encode([[[]]]), 3),
    "a map of rows": (etf.encode([{"a": 1, "b": (Atom("x"), None)}, {"a": 2}]), 11),
    # LIST_EXT of no elements, then a NIL tail: Erlang never writes it; its tail is its one term.
    "LIST_EXT 0 then NIL": (bytes([131, 108, 0, 0, 0, 0, 106]), 2),
    "a pid (its node name is no term of its own)": (etf.encode(tether.Pid(Atom("n@h"), 1, 2, 3)), 1),
}


@pytest.mark.parametrize("data, terms", EXAMPLES.values(), ids=EXAMPLES.keys())
def test_each_decoder_accepts_the_count_and_refuses_one_less(data, terms, decoders):
    assert etf.decode(data, limits=Limits(max_terms=terms)) is not None
    if terms > 1:
        with pytest.raises(LimitError, match=rf"More than {terms - 1} ETF terms .*at least {terms}\b"):
            etf.decode(data, limits=Limits(max_terms=terms - 1))


@pytest.mark.parametrize("charlists", ["list", "str"])
def test_a_charlist_counts_its_characters_whatever_it_decodes_to(charlists, decoders):
    data = etf.encode([104, 105, 33])  # STRING_EXT "hi!"
    kw = dict(charlists=charlists, warn_charlists=False)
    assert _etf.decode(data, opts(4, **kw)) in ([104, 105, 33], "hi!")
    with pytest.raises(LimitError, match=r"charlist of 3 characters"):
        _etf.decode(data, opts(3, **kw))


def test_a_compressed_value_counts_the_terms_it_expands_to(decoders):
    data = etf.encode(list(range(300, 400)))
    compressed = b"\x83P" + (len(data) - 1).to_bytes(4, "big") + zlib.compress(data[1:])
    assert etf.decode(compressed, limits=Limits(max_terms=101)) == list(range(300, 400))
    with pytest.raises(LimitError, match="at least 101"):
        etf.decode(compressed, limits=Limits(max_terms=100))


def test_the_error_names_the_path_of_the_container_that_passes_the_limit(decoders):
    data = etf.encode({"rows": [[1000], [2000, 3000, 4000]]})
    with pytest.raises(LimitError, match=r"list of 3 elements at \$\.rows\[1\] \(offset \d+\) it has at least 9"):
        etf.decode(data, binaries="str", limits=Limits(max_terms=8))


def test_an_improper_tail_is_a_term(decoders):
    data = etf.encode(ImproperList([1000, 2000], 3000))
    with pytest.raises(LimitError, match=r"improper tail at \$\.<tail>"):
        etf.decode(data, limits=Limits(max_terms=3))


def test_the_default_refuses_no_practical_value():
    """2**31 terms: a list of 100M ints (100,000,001 terms) is far inside; its Python list alone would be 800 MB."""
    assert Limits().max_terms == 1 << 31
    assert count(list(range(10))) * 10_000_000 < Limits().max_terms
    big = list(range(1_000_000))
    assert etf.decode(etf.encode(big)) == big  # under the default limits, through C when built


# ------------------------------------------------------------------ the two decoders agree, on random values

leaf = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-(2**600), max_value=2**600),
    st.floats(allow_nan=False, allow_infinity=False), st.binary(max_size=30), st.text(max_size=10),
    st.builds(Atom, st.text(min_size=1, max_size=10)),
    st.lists(st.integers(0, 255), max_size=5),  # written as STRING_EXT
)
values = st.recursive(
    leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.lists(inner, max_size=5).map(tuple),
        st.dictionaries(st.one_of(st.integers(), st.binary(max_size=5), st.tuples(st.integers())), inner,
                        max_size=5),
        st.builds(ImproperList, st.lists(inner, min_size=1, max_size=3),
                  leaf.filter(lambda x: not isinstance(x, list))),
    ),
    max_leaves=40,
)


@given(values, st.sampled_from(["list", "str"]))
def test_python_decoder_succeeds_iff_the_count_is_within_the_limit(value, charlists):
    data, terms = etf.encode(value), count(value)
    kw = dict(charlists=charlists, warn_charlists=False)
    python_decode(data, opts(terms, **kw))
    if terms > 1:
        with pytest.raises(LimitError, match=rf"at least {terms}\b"):
            python_decode(data, opts(terms - 1, **kw))


@needs_c
@given(values, st.sampled_from(["list", "str"]))
def test_c_decoder_agrees_with_python_on_the_boundary(value, charlists):
    data, terms = etf.encode(value), count(value)
    kw = dict(charlists=charlists, warn_charlists=False)
    assert repr(c_decode(data, opts(terms, **kw))) == repr(python_decode(data, opts(terms, **kw)))
    if terms > 1:
        with pytest.raises(c.Fallback, match="^terms$"):
            c_decode(data, opts(terms - 1, **kw))
        with pytest.raises(LimitError, match=rf"at least {terms}\b"):  # the public call: C, then Python's error
            _etf.decode(data, opts(terms - 1, **kw))


# ------------------------------------------------------------------ the C column decoders (tether.arrow.from_etf)

rows = st.lists(
    st.dictionaries(
        st.sampled_from(["a", "b", "c"]),
        st.one_of(st.integers(-(2**40), 2**40), st.floats(allow_nan=False, allow_infinity=False),
                  st.binary(max_size=5), st.none(), st.lists(st.integers(1000, 2000), max_size=3),
                  st.tuples(st.integers(), st.booleans())),
        max_size=3,
    ),
    max_size=6,
)


@needs_c
@given(rows)
def test_column_decoders_count_as_the_term_decoder(value):
    data, terms = etf.encode(value), count(value)
    for decode in (columns.decode_columns, columns.decode_typed_columns):
        at = decode(data, opts(terms))
        if at is None:
            continue  # not a shape this column decoder takes: the general path decodes it
        assert at.rows == len(value)
        if terms > 1:
            assert decode(data, opts(terms - 1)) is None  # Fallback: the general path raises the LimitError


@needs_c
def test_column_decoders_count_a_row_list_of_no_elements_with_a_nil_tail():
    data = bytes([131, 108, 0, 0, 0, 1, 116, 0, 0, 0, 1, 109, 0, 0, 0, 1, 97, 108, 0, 0, 0, 0, 106, 106])
    assert python_decode(data, opts(5)) == [{b"a": []}]
    for decode in (columns.decode_columns, columns.decode_typed_columns):
        assert decode(data, opts(5)) is not None
        assert decode(data, opts(4)) is None


def test_arrow_from_etf_refuses_rows_over_the_limit(decoders):
    from tether import arrow

    data = etf.encode([{"a": i, "b": float(i)} for i in range(100)])  # 501 terms
    assert arrow.from_etf(data, limits=Limits(max_terms=501)).num_rows == 100
    with pytest.raises(LimitError, match=r"map of 2 pairs at \$\[99\]"):
        arrow.from_etf(data, limits=Limits(max_terms=500))


@needs_c
def test_the_c_options_require_max_terms():
    """A glue that forgot to pass it must fail loudly, not decode without a limit."""
    with pytest.raises(ValueError, match="max_terms"):
        c.CodecOptions(max_depth=10, max_atoms=10)
