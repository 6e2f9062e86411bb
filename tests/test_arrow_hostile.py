"""Arrow frames from a hostile peer: one byte changed and every checksum recomputed (trial 18 C).

Each case here crashed the interpreter, raised something that is not a
``tether.TetherError``, or inflated past ``Limits`` before the fix. Cases that
could crash run in a child process, so that a crash is a failure with a name
instead of the end of the test run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow as pa
import pytest

import tether
from fuzz.mutate import fix

TESTS = os.path.dirname(os.path.abspath(__file__))


def _child(code: str, timeout: float = 300) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([TESTS, *sys.path]), "RUST_BACKTRACE": "0"}
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=TESTS)
    assert proc.returncode == 0, f"the child died (status {proc.returncode}):\n{proc.stderr[-3000:]}"
    return proc.stdout


def _resealed(frame: bytes, pos: int, mask: int = 0xFF) -> bytes:
    out = bytearray(frame)
    out[pos] ^= mask
    fix(out)
    return bytes(out)


def _payload_at(frame: bytes) -> int:
    return tether.inspect(frame).payload_offset


# ---------------------------------------------------------------- 1: full validation by default


def test_every_resealed_payload_flip_is_typed_and_safe_to_use():
    # Byte 1254 of this frame (offset 1254 - payload start into the IPC stream) made loads return a Table
    # that crashed on to_pylist(), and crashed inside loads with into="pylist", "pandas" or "polars".
    out = _child("""
        import importlib.util, warnings
        import pyarrow as pa, tether
        from fuzz.mutate import fix
        warnings.simplefilter("ignore")
        frame = tether.dumps(pa.table({"a": [1, 2, None], "s": ["x", None, "z"], "l": [[1], [], None]}))
        start = tether.inspect(frame).payload_offset
        intos = [None, "pylist"] + [lib for lib in ("pandas", "polars") if importlib.util.find_spec(lib)]
        typed = 0
        for pos in range(start, len(frame)):
            broken = bytearray(frame); broken[pos] ^= 0xFF; fix(broken)
            for into in intos:
                try:
                    value = tether.loads(bytes(broken), into=into)
                except tether.TetherError:
                    typed += 1
                    continue
                except BaseException as exc:
                    print("UNTYPED", pos, into, type(exc).__name__, str(exc)[:100])
                    continue
                if hasattr(value, "to_pylist"):
                    value.to_pylist()
        print("typed", typed)
    """)
    assert "UNTYPED" not in out, out
    assert int(out.split("typed ")[-1]) > 0


def _pandas_frame(checksum: str = "auto") -> bytes:
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"a": [1.0, 2.0], "c": pd.Categorical(["x", "y"]),
                       "t": pd.date_range("2020", periods=2, tz="UTC")})
    return tether.dumps(df, checksum=checksum)


def test_the_categorical_dictionary_offset_flip_is_a_decode_error_by_default():
    # Payload bytes 1232/1234 are the categorical dictionary's offsets: one crashed the process in
    # to_pandas, the other raised pyarrow.ArrowException quoting kilobytes of raw process memory.
    frame = _pandas_frame()
    if len(frame) != 2376:
        pytest.skip(f"the DataFrame frame is {len(frame)} B here, not the 2376 B the offsets were found in")
    for at in (1232, 1234):
        with pytest.raises(tether.DecodeError, match="Arrow IPC stream is malformed: ArrowInvalid: .*Dictionary"):
            tether.loads(_resealed(frame, _payload_at(frame) + at))


def test_a_pyarrow_error_message_is_bounded_and_printable():
    # validate="basic" skips the offsets check, so the conversion meets the bad offset: what pyarrow
    # says (raw memory past the buffer) is cut to a few hundred characters. In a child: basic may crash.
    _pandas_frame()
    out = _child("""
        import pandas as pd, tether
        from fuzz.mutate import fix
        df = pd.DataFrame({"a": [1.0, 2.0], "c": pd.Categorical(["x", "y"]),
                           "t": pd.date_range("2020", periods=2, tz="UTC")})
        frame = bytearray(tether.dumps(df, checksum="none"))
        if len(frame) == 2376:
            frame[tether.inspect(bytes(frame)).payload_offset + 1232] ^= 0xFF
            try:
                tether.loads(bytes(frame), options={"validate": "basic"})
                print("LOADED")
            except tether.TetherError as exc:
                print(type(exc).__name__, len(str(exc)), str(exc).isprintable())
            except BaseException as exc:
                print("UNTYPED", type(exc).__name__, len(str(exc)))
    """)
    if out:
        kind, length, printable = out.split()
        assert kind == "DecodeError", out
        assert int(length) < 600 and printable == "True", out


def test_validate_defaults_to_full_and_basic_is_an_opt_in():
    frame = tether.dumps(pa.table({"s": ["abc", "def"]}), checksum="none")
    start = _payload_at(frame)
    # The string offsets buffer [0, 3, 6]: the middle offset points past the 6 data bytes, which only
    # the full validation sees (the basic one checks the last offset against the data).
    ipc = bytes(frame[start:])
    at = start + ipc.index(np.array([0, 3, 6], "<i4").tobytes()) + 4
    broken = bytearray(frame)
    broken[at] = 200
    with pytest.raises(tether.DecodeError, match="Offset invariant failure|offset"):
        tether.loads(bytes(broken))
    assert isinstance(tether.loads(bytes(broken), options={"validate": "basic"}), pa.Table)  # not used: trusted only
    with pytest.raises(tether.ValidationError, match="Invalid validate 'fast'. Valid options are: basic, full"):
        tether.loads(frame, options={"validate": "fast"})
    assert tether.loads(frame, options={"validate": "basic"}).to_pylist() == [{"s": "abc"}, {"s": "def"}]


@pytest.mark.skipif(not hasattr(pa, "string_view"), reason="pyarrow without string views")
def test_a_null_slots_view_is_checked_too():
    # Arrow's full validation skips the views of null slots; cast(large_string), as to_pandas does,
    # read one claiming -2**31 bytes and crashed. Found by the corrupter's used pass.
    out = _child("""
        import pyarrow as pa, tether
        from fuzz.mutate import fix
        table = pa.table({"sv": pa.array(["abc", None, "a much longer string than twelve"], pa.string_view())})
        frame = tether.dumps(table)
        views = table.column("sv").chunk(0).buffers()[1].to_pybytes()
        at = bytes(frame).index(views) + 16 + 3  # the null slot's length, high byte
        broken = bytearray(frame); broken[at] ^= 0x80; fix(broken)
        for into in ("arrow", "pandas"):
            try:
                tether.loads(bytes(broken), into=into)
                print("LOADED", into)
            except tether.TetherError as exc:
                print(type(exc).__name__, "view" in str(exc))
    """)
    assert out.split() == ["DecodeError", "True", "DecodeError", "True"], out


# ---------------------------------------------------------------- 2: polars and pandas errors are typed


def _with_bad_struct_field_name() -> bytes:
    pl = pytest.importorskip("polars")
    frame = tether.dumps(pl.DataFrame({"a": [1, 2], "s": [{"x": 1}, None]}))
    at = bytes(frame).index(b"\x01\x00\x00\x00x\x00", _payload_at(frame)) + 4  # the flatbuffer string "x"
    return _resealed(frame, at, 0x80)


def test_a_field_name_that_is_not_utf8_is_a_decode_error_not_a_polars_panic():
    frame = _with_bad_struct_field_name()
    for kw in ({}, {"into": "polars"}, {"into": "arrow"}, {"options": {"validate": "basic"}}):
        with pytest.raises(tether.DecodeError, match="a field name in the Arrow schema is not UTF-8"):
            tether.loads(frame, **kw)


def test_schema_metadata_that_is_not_utf8_is_a_decode_error():
    frame = _pandas_frame()
    at = bytes(frame).index(b'{"index_columns"', _payload_at(frame)) + 5
    with pytest.raises(tether.DecodeError, match="the metadata in the Arrow schema is not UTF-8"):
        tether.loads(_resealed(frame, at, 0x80), into="polars")


def test_any_conversion_error_is_typed_panics_included(monkeypatch):
    pl = pytest.importorskip("polars")

    class PanicException(BaseException):  # what pyo3 raises: not an Exception
        pass

    def panics(*args, **kwargs):
        raise PanicException("called `Result::unwrap()` on an `Err` value: Utf8Error " + "\x00" * 2000)

    monkeypatch.setattr(pl, "from_arrow", panics)
    frame = tether.dumps(pa.table({"a": [1]}))
    with pytest.raises(tether.DecodeError, match="converting the Arrow table to polars: PanicException") as info:
        tether.loads(frame, into="polars")
    assert len(str(info.value)) < 600 and "\x00" not in str(info.value)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pl, "from_arrow", interrupted)
    with pytest.raises(KeyboardInterrupt):
        tether.loads(frame, into="polars")


# ---------------------------------------------------------------- 3: Arrow's own compression is bounded


@pytest.mark.parametrize("codec", ["lz4", "zstd"])
def test_ipc_compression_is_bounded_by_max_uncompressed_size(codec):
    frame = tether.dumps(pa.table({"z": np.zeros(1 << 20)}), compression=codec)  # 8 MiB of zeros
    assert tether.inspect(frame).compression == "none" and len(frame) < 1 << 20  # only Arrow knows
    previous = tether.get_limits()
    try:
        tether.set_limits(max_uncompressed_size=1 << 20)
        with pytest.raises(tether.LimitError, match=r"expand to at least 8388608 bytes, over the limit of "
                                                    r"1048576 \(Limits.max_uncompressed_size\); raise it with "
                                                    r"tether.set_limits"):
            tether.loads(frame)
        tether.set_limits(max_uncompressed_size=8 << 20)
        assert tether.loads(frame).num_rows == 1 << 20  # exactly at the limit: loads
    finally:
        tether.set_limits(previous)


def test_dictionary_batches_count_towards_the_bound():
    words = pa.array([f"word number {i:08d}" for i in range(50_000)])
    table = pa.table({"d": pa.DictionaryArray.from_arrays(pa.array(np.arange(50_000) % 50_000, pa.int32()), words)})
    frame = tether.dumps(table, compression="zstd")
    previous = tether.get_limits()
    try:
        tether.set_limits(max_uncompressed_size=table.nbytes - 200_000)  # the indices alone fit; not the dictionary
        with pytest.raises(tether.LimitError, match="compressed buffers expand"):
            tether.loads(frame)
    finally:
        tether.set_limits(previous)
    assert tether.loads(frame).equals(table)


def test_a_forged_uncompressed_length_is_refused_before_allocating():
    n = 1 << 16
    frame = tether.dumps(pa.table({"z": np.zeros(n)}), compression="zstd")
    prefix = np.int64(8 * n).tobytes()  # the values buffer's length prefix
    at = bytes(frame).index(prefix, _payload_at(frame))
    for forged, error, match in ((2**40, tether.LimitError, "over the limit"),
                                 (-5, tether.DecodeError, "declares -5 uncompressed bytes")):
        broken = bytearray(frame)
        broken[at : at + 8] = np.int64(forged).tobytes()
        fix(broken)
        with pytest.raises(error, match=match):
            tether.loads(bytes(broken))


def test_an_uncompressed_stream_is_not_walked_buffer_by_buffer():
    # The bound reads message metadata only: a table of many batches still loads, each a view of the frame.
    table = pa.Table.from_batches([pa.record_batch({"x": np.arange(10)})] * 1000)
    frame = tether.dumps(table)
    previous = tether.get_limits()
    try:
        tether.set_limits(max_uncompressed_size=0)  # nothing is decompressed, so nothing counts
        assert tether.loads(frame).num_rows == 10_000
    finally:
        tether.set_limits(previous)
