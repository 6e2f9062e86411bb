"""Large string columns are validated by their offsets and one UTF-8 pass, with pyarrow's verdict unchanged.

``loads`` checks a string column of FAST_TEXT_MIN values or more in two
passes (docs/performance.md, "Reading string columns") instead of pyarrow's
value-by-value full validation. These tests build columns from raw buffers,
which pyarrow does not check, and hold the result to pyarrow's own verdict:
a frame it refuses is a DecodeError, one it accepts loads as it is.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tether
from tether.formats.arrow import FAST_TEXT_MIN

ROWS = FAST_TEXT_MIN + 5
TEXT_TYPES = {"string": (pa.string(), np.int32), "large_string": (pa.large_string(), np.int64)}


def _column(values: list[bytes], kind: str, offsets: np.ndarray | None = None, nulls: bytes | None = None):
    """A string array built from buffers as given: nothing checked, as a hostile frame's would be."""
    typ, dtype = TEXT_TYPES[kind]
    if offsets is None:
        offsets = np.concatenate([[0], np.cumsum([len(v) for v in values])]).astype(dtype)
    validity = None if nulls is None else pa.py_buffer(nulls)
    return pa.Array.from_buffers(typ, len(offsets) - 1, [validity, pa.py_buffer(offsets.astype(dtype)),
                                                       pa.py_buffer(b"".join(values))])


def _frame(array: pa.Array) -> bytes:
    return tether.dumps(pa.table({"s": array}), checksum="none")


def _pyarrow_accepts(array: pa.Array) -> bool:
    try:
        array.validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


def _words(n: int = ROWS) -> list[bytes]:
    return [("é" if i % 3 == 0 else f"w{i % 17}").encode() for i in range(n)]


@pytest.mark.parametrize("kind", TEXT_TYPES)
def test_a_sound_large_column_loads_as_written(kind):
    array = _column(_words(), kind)
    back = tether.loads(_frame(array))
    assert back.column("s").to_pylist() == array.to_pylist()


@pytest.mark.parametrize("kind", TEXT_TYPES)
def test_invalid_utf8_in_a_large_column_is_a_decode_error(kind):
    words = _words()
    words[ROWS - 2] = b"\xff\xfe"
    with pytest.raises(tether.DecodeError, match="UTF8|UTF-8|utf8"):
        tether.loads(_frame(_column(words, kind)))


@pytest.mark.parametrize("kind", TEXT_TYPES)
def test_offsets_that_split_a_character_are_refused_though_the_whole_data_is_utf8(kind):
    # "é" is C3 A9: cut between its bytes, the data is valid UTF-8 as a whole and no value is.
    words = _words()
    words[100], words[101] = "é".encode()[:1], "é".encode()[1:]
    array = _column(words, kind)
    assert not _pyarrow_accepts(array)
    with pytest.raises(tether.DecodeError):
        tether.loads(_frame(array))


@pytest.mark.parametrize("kind", TEXT_TYPES)
def test_falling_offsets_are_refused(kind):
    words = _words()
    _, dtype = TEXT_TYPES[kind]
    offsets = np.concatenate([[0], np.cumsum([len(v) for v in words])]).astype(dtype)
    falling = offsets.copy()
    falling[200] = falling[198]
    with pytest.raises(tether.DecodeError):
        tether.loads(_frame(_column(words, kind, falling)))


def test_bytes_under_null_slots_are_pyarrows_to_judge():
    # The fast check reads the bytes under a null slot too; pyarrow does not, and its verdict stands.
    words = _words()
    words[7] = b"\xff"
    nulls = np.packbits(np.array([i != 7 for i in range(ROWS)]), bitorder="little").tobytes()
    array = _column(words, "string", nulls=nulls)
    assert _pyarrow_accepts(array)
    back = tether.loads(_frame(array))
    assert back.column("s").to_pylist() == array.to_pylist() and back.column("s")[7].as_py() is None


def test_a_column_in_several_chunks_is_checked_chunk_by_chunk():
    good = _column(_words(), "large_string")
    bad_words = _words()
    bad_words[-1] = b"\xc3"
    table = pa.Table.from_batches([pa.record_batch({"s": good}),
                                   pa.record_batch({"s": _column(bad_words, "large_string")})])
    with pytest.raises(tether.DecodeError):
        tether.loads(tether.dumps(table, checksum="none"))
    sound = pa.Table.from_batches([pa.record_batch({"s": good})] * 2)
    assert tether.loads(tether.dumps(sound)).equals(sound)


@settings(max_examples=60, deadline=None)
@given(kind=st.sampled_from(sorted(TEXT_TYPES)), at=st.integers(0, ROWS), delta=st.integers(-3, 3),
       byte_at=st.integers(0, 5 * ROWS), byte=st.integers(0, 255), which=st.sampled_from(["offset", "byte"]))
def test_the_verdict_is_pyarrows_for_any_one_change(kind, at, delta, byte_at, byte, which):
    words = _words()
    _, dtype = TEXT_TYPES[kind]
    offsets = np.concatenate([[0], np.cumsum([len(v) for v in words])]).astype(dtype)
    data = bytearray(b"".join(words))
    if which == "offset":
        offsets[at] += delta
    else:
        data[byte_at % len(data)] = byte
    try:  # from_buffers checks the structure: a frame that fails it is refused on its way in, not here
        array = _column([bytes(data)], kind, offsets)
    except pa.ArrowInvalid:
        return
    if _pyarrow_accepts(array):
        assert tether.loads(_frame(array)).column("s").to_pylist() == array.to_pylist()
    else:
        with pytest.raises(tether.DecodeError):
            tether.loads(_frame(array))


def test_into_pandas_reads_a_large_checked_column():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"s": [w.decode() for w in _words()]})
    back = tether.loads(tether.dumps(df))
    pd.testing.assert_frame_equal(back, df)


class _UnhashableExtension(pa.ExtensionType):
    """As pyarrow's documentation writes one: no __hash__, so a dict lookup of the type raises."""

    def __init__(self):
        super().__init__(pa.string(), "tether.test.unhashable")

    def __arrow_ext_serialize__(self):
        return b""

    @classmethod
    def __arrow_ext_deserialize__(cls, storage_type, serialized):
        return cls()


def test_a_large_table_with_an_extension_type_that_does_not_hash_loads():
    typ = _UnhashableExtension()
    pa.register_extension_type(typ)
    try:
        with pytest.raises(TypeError):
            hash(typ)
        column = pa.ExtensionArray.from_storage(typ, pa.array([w.decode() for w in _words()]))
        table = pa.table({"e": column, "s": _column(_words(), "string")})
        assert tether.loads(tether.dumps(table)).equals(table)
    finally:
        pa.unregister_extension_type("tether.test.unhashable")
