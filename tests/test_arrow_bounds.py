"""Arrow frames that ask for far more memory than they hold (review 2 of trial 18).

Each case allocated past ``Limits`` before the fix: pre-V5 compression that the
inflation bound did not see, recorded NumPy dtypes bounded per column (or not
at all, at 0 bytes an item), and conversions to Python forms that multiply a
few bytes of frame into gigabytes. Cases that could balloon run in a child
process under a memory ulimit, so that a regression fails with a name
instead of taking the machine's memory.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pyarrow as pa
import pytest

import tether
TESTS = os.path.dirname(os.path.abspath(__file__))

# Builds arrow frames with any IPC payload and type info, checksums included, as a hostile peer can.
HOSTILE = """
import struct, pyarrow as pa, tether
from tether.formats import arrow as af

def frame(table_or_stream, type_info):
    orig = af.ArrowFormat.encode
    def enc(self, obj, ctx):
        p = orig(self, obj, ctx)
        p.type_info.update(type_info)
        if isinstance(table_or_stream, bytes):
            p.segments, p.nbytes = [memoryview(table_or_stream)], len(table_or_stream)
        return p
    af.ArrowFormat.encode = enc
    try:
        src = table_or_stream if isinstance(table_or_stream, pa.Table) else pa.table({"x": [1]})
        return tether.dumps(src, format="arrow")
    finally:
        af.ArrowFormat.encode = orig

def _field(buf, table, index):
    vt = table - struct.unpack_from("<i", buf, table)[0]
    if 4 + 2 * index + 2 > struct.unpack_from("<H", buf, vt)[0]:
        return None
    off = struct.unpack_from("<H", buf, vt + 4 + 2 * index)[0]
    return table + off if off else None

def v4_compressed(nbytes, codec="zstd"):
    '''A stream whose batch is compressed the pre-1.0 way: version V4, no BodyCompression, custom metadata.'''
    table = pa.table({"c": pa.array([b"\\0" * nbytes], pa.large_binary())})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema, options=pa.ipc.IpcWriteOptions(compression=codec)) as w:
        w.write_batch(table.to_batches()[0], custom_metadata={"ARROW:experimental_compression": codec.upper()})
    buf, pos = bytearray(sink.getvalue().to_pybytes()), 0
    while True:
        mlen = struct.unpack_from("<i", buf, pos + 4)[0]
        if mlen == 0:
            return bytes(buf)
        meta = pos + 8
        root = meta + struct.unpack_from("<I", buf, meta)[0]
        struct.pack_into("<h", buf, _field(buf, root, 0), 3)  # Message.version = V4
        if buf[_field(buf, root, 1)] == 3:  # a RecordBatch: drop its BodyCompression field
            header = _field(buf, root, 2)
            batch = header + struct.unpack_from("<I", buf, header)[0]
            vt = batch - struct.unpack_from("<i", buf, batch)[0]
            struct.pack_into("<H", buf, vt + 4 + 2 * 3, 0)
        body = _field(buf, root, 3)
        pos = meta + mlen + (struct.unpack_from("<q", buf, body)[0] if body else 0)
"""


def _child(code: str, timeout: float = 300) -> str:
    """Run ``code`` after HOSTILE in a child; ``cap(n)`` there lets its address space grow by ``n`` bytes at most."""
    prologue = textwrap.dedent("""
        import resource
        def cap(memory):
            with open("/proc/self/status") as status:
                vm = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:"))
            resource.setrlimit(resource.RLIMIT_AS, (vm + memory, resource.RLIM_INFINITY))
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([TESTS, *sys.path]), "RUST_BACKTRACE": "0"}
    script = prologue + textwrap.dedent(HOSTILE) + textwrap.dedent(code)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=TESTS)
    assert proc.returncode == 0, f"the child died (status {proc.returncode}):\n{proc.stderr[-3000:]}"
    return proc.stdout


_ns: dict = {}
exec(textwrap.dedent(HOSTILE), _ns)
frame = _ns["frame"]


def _versions(data: bytes) -> set:
    payload = memoryview(data)[tether.inspect(data).payload_offset :]
    return {m.metadata_version for m in pa.ipc.MessageReader.open_stream(pa.py_buffer(payload))}


# ---------------------------------------------------------------- 1: pre-V5 compression


def test_pre_v5_compression_is_refused_before_decompressing():
    # 64 MiB of zeros in a few KB of frame, declared the pre-1.0 way: the old bound saw no compression.
    out = _child("""
        tether.set_limits(max_uncompressed_size=1 << 20)
        bomb = frame(v4_compressed(64 << 20), {"source": "table", "rows": 1})
        cap(32 << 20)
        try:
            tether.loads(bomb)
            print("LOADED")
        except tether.DecodeError as exc:
            print("REFUSED", exc)
    """)
    assert "REFUSED" in out and "metadata version V4" in out and "V5" in out, out


def test_what_tether_writes_and_the_goldens_are_v5():
    table = pa.table({"a": np.arange(1000), "d": pa.array(["x", "y"] * 500).dictionary_encode()})
    for compression in ("none", "lz4", "zstd"):
        assert _versions(tether.dumps(table, format="arrow", compression=compression)) == {pa.ipc.MetadataVersion.V5}
    golden = os.path.join(TESTS, "golden")
    for name in ("arrow_table.tthr", "arrow_lz4.tthr"):
        with open(os.path.join(golden, name), "rb") as f:
            assert _versions(f.read()) == {pa.ipc.MetadataVersion.V5}


# ---------------------------------------------------------------- 2: recorded NumPy dtypes


def test_recorded_dtypes_are_bounded_across_columns(limit):
    bound = limit(1 << 20)
    t = pa.table({f"c{i}": ["a"] for i in range(20)})
    dtype = f"<U{bound // 4}"  # each column alone exactly at the limit: 20 times it in all
    f = frame(t, {"source": "columns", "numpy_columns": t.column_names, "numpy_dtypes": dict.fromkeys(t.column_names, dtype)})
    with pytest.raises(tether.LimitError, match=r"2097152 bytes by column 'c1'.*limit of 1048576 "
                                                r"\(Limits.max_uncompressed_size\).*tether.set_limits"):
        tether.loads(f)
    one = frame(pa.table({"c0": ["a"]}), {"source": "columns", "numpy_columns": ["c0"], "numpy_dtypes": {"c0": dtype}})
    assert tether.loads(one)["c0"].dtype == np.dtype(dtype)  # exactly at the limit: loads


@pytest.mark.parametrize("dtype", ["<U0", "U", "S", "|S0"])
def test_a_recorded_dtype_of_zero_bytes_an_item_is_refused(dtype, limit):
    limit(4 << 20)  # the 20,000 strings themselves take about 1.2 MB as Python objects
    t = pa.table({"c": ["x" * 5000] + ["y"] * 19_999})  # astype would size 20,000 items to the longest: 400 MB
    with pytest.raises(tether.DecodeError, match="0 bytes an item"):
        tether.loads(frame(t, {"source": "columns", "numpy_columns": ["c"], "numpy_dtypes": {"c": dtype}}))
    # Writers never record one: NumPy gives a column of empty strings, or no strings, 1 byte an item at least.
    assert np.array(["", ""]).dtype.itemsize and np.zeros(2, "U0").dtype.itemsize and np.array([], str).dtype.itemsize
    empty = frame(pa.table({"c": pa.array([], pa.string())}),
                  {"source": "columns", "numpy_columns": ["c"], "numpy_dtypes": {"c": dtype}})
    assert len(tether.loads(empty)["c"]) == 0


def test_a_value_the_recorded_dtype_cannot_hold_is_a_decode_error_not_a_warning():
    f = frame(pa.table({"c": pa.array([1.5, None, 1e300])}),
              {"source": "columns", "numpy_columns": ["c"], "numpy_dtypes": {"c": ">i8"}})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(tether.DecodeError, match="cannot hold"):
            tether.loads(f)


# ---------------------------------------------------------------- 3: conversions to Python forms

INTOS = ["pandas", "numpy", "pylist", "polars"]


def _ree(n: int, value: object = "x") -> pa.Array:
    return pa.RunEndEncodedArray.from_arrays(pa.array([n], pa.int64()), pa.array([value]))


def _shared_views(n: int, region: int) -> pa.Array:
    """``n`` string views, every one the whole of one ``region``-byte data buffer."""
    views = np.zeros((n, 4), "<i4")
    views[:, 0], views[:, 1] = region, int.from_bytes(b"xxxx", "little")
    arr = pa.Array.from_buffers(pa.string_view(), n, [None, pa.py_buffer(views.tobytes()), pa.py_buffer(b"x" * region)])
    arr.validate(full=True)
    return arr


@pytest.mark.parametrize("into", INTOS)
@pytest.mark.parametrize("column", ["nulls", "ree", "views"])
def test_a_conversion_is_bounded_by_max_uncompressed_size(column, into, limit):
    if into in ("pandas", "polars"):
        pytest.importorskip(into)
    arr = {"nulls": lambda: pa.nulls(4 << 20), "ree": lambda: _ree(4 << 20),
           "views": lambda: _shared_views(64, 1 << 20)}[column]()
    f = frame(pa.table({"c": arr}), {})
    assert len(f) < 2 << 20  # 64 MiB at least once converted
    limit(16 << 20)
    with pytest.raises(tether.LimitError, match=rf"to {into} would take at least \d+ bytes \(column 'c': \d+ B "
                                                r"for \d+ rows\), over the limit of 16777216 "
                                                r"\(Limits.max_uncompressed_size\).*into='arrow'.*tether.set_limits"):
        tether.loads(f, into=into)
    assert tether.loads(f).num_rows == len(arr)  # the default, a zero-copy table: no bound needed


def test_a_dictionary_counts_per_value_where_it_is_decoded(limit):
    pd = pytest.importorskip("pandas")
    big = pa.DictionaryArray.from_arrays(pa.array(np.zeros(64, np.int8)), pa.array(["x" * (1 << 20), "y"]))
    f = frame(pa.table({"d": big}), {})
    limit(16 << 20)
    with pytest.raises(tether.LimitError, match="column 'd'"):
        tether.loads(f, into="pylist")  # 64 strings of 1 MiB each
    assert isinstance(tether.loads(f, into="pandas")["d"].dtype, pd.CategoricalDtype)  # shared: fits


def test_a_null_column_is_refused_before_to_pylist_runs_out_of_memory():
    # A 672-byte frame of 50M nulls took 10 GB as a list of dicts, and 400 MB as a DataFrame.
    out = _child("""
        f = frame(pa.table({"c": pa.nulls(50_000_000)}), {})
        cap(1 << 30)
        for into, bound in (("pylist", 4 << 30), ("pandas", 256 << 20), ("pandas", 1 << 30)):
            tether.set_limits(max_uncompressed_size=bound)
            try:
                tether.loads(f, into=into)
                print("LOADED", into, bound)
            except tether.LimitError as exc:
                print("REFUSED", into, bound, exc)
    """)
    assert "REFUSED pylist 4294967296" in out and "REFUSED pandas 268435456" in out, out
    assert "LOADED pandas 1073741824" in out, out  # within the limit: converts


def test_ordinary_tables_convert_at_the_default_limits():
    table = pa.table({"i": np.arange(1000), "s": [f"s{i}" for i in range(1000)], "n": pa.nulls(1000),
                      "l": [[i] for i in range(1000)], "st": [{"a": i} for i in range(1000)],
                      "d": pa.array(["a", "b"] * 500).dictionary_encode(), "r": _ree(1000, 2.5)})
    f = tether.dumps(table, format="arrow")
    assert tether.loads(f, into="pylist") == table.to_pylist()
    assert len(tether.loads(f, into="numpy")["r"]) == 1000


# ---------------------------------------------------------------- review 3: dictionaries decoded where they are

# Each case: 2000 indices of one 1 MiB dictionary entry (a 1 MiB frame) that the target decodes value by value.
BALLOONS = """
import numpy as np
N, BIG = 2000, "x" * (1 << 20)
def dictionary(values=None):
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(N, np.int32)), values if values is not None else pa.array([BIG]))
CASES = {
    "numpy: dictionary<utf8>": (lambda: dictionary(), "numpy"),
    "numpy: dictionary<fixed_size_binary>": (lambda: dictionary(pa.array([BIG.encode()], pa.binary(1 << 20))), "numpy"),
    "numpy: list<dictionary>": (lambda: pa.ListArray.from_arrays(pa.array([0, N], pa.int32()), dictionary()), "numpy"),
    "pandas: list<dictionary>": (lambda: pa.ListArray.from_arrays(pa.array([0, N], pa.int32()), dictionary()), "pandas"),
    "pandas: struct<dictionary>": (lambda: pa.StructArray.from_arrays([dictionary()], names=["x"]), "pandas"),
    "pandas: map<int32, dictionary>": (lambda: pa.MapArray.from_arrays(
        pa.array([0, N], pa.int32()), pa.array(np.arange(N, dtype=np.int32)), dictionary()), "pandas"),
    "polars: dictionary<list<int64>>": (lambda: dictionary(pa.array([list(range(1 << 17))])), "polars"),
}
"""


def test_dictionaries_are_counted_value_by_value_where_the_target_decodes_them():
    pytest.importorskip("pandas")
    pytest.importorskip("polars")
    out = _child(BALLOONS + """
frames = {name: (frame(pa.table({"c": build()}), {}), into) for name, (build, into) in CASES.items()}
tether.set_limits(max_uncompressed_size=256 << 20)
cap(1 << 30)  # each case took 2 to 4 GB before
for name, (f, into) in frames.items():
    try:
        tether.loads(f, into=into)
        print("LOADED", name)
    except tether.LimitError as exc:
        print("REFUSED", name, exc)
""")
    for name in ("numpy: dictionary<utf8>", "numpy: dictionary<fixed_size_binary>", "numpy: list<dictionary>",
                 "pandas: list<dictionary>", "pandas: struct<dictionary>", "pandas: map<int32, dictionary>",
                 "polars: dictionary<list<int64>>"):
        assert f"REFUSED {name} " in out, out
    assert "LOADED" not in out and "column 'c'" in out and "limit of 268435456" in out, out


def test_string_dictionaries_stay_shared_where_the_target_keeps_categories(limit):
    pd, pl = pytest.importorskip("pandas"), pytest.importorskip("polars")
    d = pa.DictionaryArray.from_arrays(pa.array(np.zeros(2000, np.int32)), pa.array(["x" * (1 << 20)]))
    f = frame(pa.table({"c": d}), {})
    limit(16 << 20)  # 2000 MiB decoded, 1 MiB shared
    assert isinstance(tether.loads(f, into="pandas")["c"].dtype, pd.CategoricalDtype)
    assert tether.loads(f, into="polars")["c"].dtype == pl.Categorical


# ---------------------------------------------------------------- review 3: no false positives from one wide value

N_SKEWED, WIDE = 20_000, "E" * 5000  # rows times the widest value: 100 MB; each value its own: about 5 MB


@pytest.mark.parametrize("column", ["dictionary", "run-end", "list_view"])
def test_one_wide_value_is_counted_once_not_for_every_row(column, limit):
    n = N_SKEWED
    if column == "dictionary":  # a category column; one label is a 5 KB text, used by one row
        idx = np.zeros(n, np.int32)
        idx[0] = 1
        arr = pa.DictionaryArray.from_arrays(pa.array(idx), pa.array(["ok", WIDE]))
    elif column == "run-end":
        arr = pa.RunEndEncodedArray.from_arrays(pa.array([1, n], pa.int32()), pa.array([WIDE, "ok"]))
    else:  # one element each, no two views sharing one
        inner = pa.array([WIDE] + ["ok"] * (n - 1))
        arr = pa.ListViewArray.from_arrays(pa.array(np.arange(n, dtype=np.int32)), pa.array(np.ones(n, np.int32)), inner)
    f = frame(pa.table({"c": arr}), {})
    limit(32 << 20)
    assert tether.loads(f, into="pylist") == pa.table({"c": arr}).to_pylist()


def test_non_overlapping_list_views_of_lists_cost_their_values_once(limit):
    n = 100_000  # each view one list of two: rows times all the values was 24 TB at 1M rows
    inner = pa.array([[i, i] for i in range(n)])
    arr = pa.ListViewArray.from_arrays(pa.array(np.arange(n, dtype=np.int32)), pa.array(np.ones(n, np.int32)), inner)
    limit(128 << 20)
    assert len(tether.loads(frame(pa.table({"c": arr}), {}), into="pylist")) == n


def test_the_wide_value_is_still_counted_for_every_row_that_uses_it():
    # The same shapes, every row on the 5 MB value: one small frame, 5 GB as Python strings.
    out = _child("""
import numpy as np
n, wide = 1000, "E" * (5 << 20)
views = pa.ListViewArray.from_arrays(pa.array(np.zeros(n, np.int32)), pa.array(np.ones(n, np.int32)),
                                     pa.array([wide] + ["ok"] * (n - 1)))  # as many elements as views, all one
cases = {"dictionary": pa.DictionaryArray.from_arrays(pa.array(np.ones(n, np.int32)), pa.array(["ok", wide])),
         "run-end": pa.RunEndEncodedArray.from_arrays(pa.array([n - 1, n], pa.int32()), pa.array([wide, "ok"])),
         "list_view": views}
frames = {name: frame(pa.table({"c": arr}), {}) for name, arr in cases.items()}
tether.set_limits(max_uncompressed_size=256 << 20)
cap(1 << 30)
for name, f in frames.items():
    try:
        tether.loads(f, into="pylist")
        print("LOADED", name)
    except tether.LimitError as exc:
        print("REFUSED", name, exc)
""")
    for name in ("dictionary", "run-end", "list_view"):
        assert f"REFUSED {name} " in out, out
    assert "LOADED" not in out, out


@pytest.mark.parametrize("into", ["pandas", "numpy", "pylist", "polars"])
def test_an_empty_list_view_column_converts_without_aborting_the_process(into):
    # pyarrow aborts (a failed check in ChunkedArray) converting one to pandas or NumPy: run it apart.
    code = textwrap.dedent(f"""
        import pyarrow as pa, tether
        table = pa.table({{"a": pa.array([], pa.list_view(pa.int64())),
                          "b": pa.array([], pa.struct([("x", pa.large_list_view(pa.string()))]))}})
        out = tether.loads(tether.dumps(table), into={into!r})
        print(len(out))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] in ("0", "2")  # no rows (a dict of columns has its two names)
