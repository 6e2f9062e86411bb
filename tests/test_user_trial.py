"""What a new Python user's trial of the README found (2026-11-26), each pinned where it was fixed.

Writable copies, schemas that pandas' text columns meet, a schema version that cannot be silently
replaced, and a region pool that cannot hand one region to two writers.
"""

from __future__ import annotations

import fractions

import numpy as np
import pyarrow as pa

import pytest

import tether
from tether import schemas
from tether.shm import RegionError, RegionPool


def test_copy_true_gives_writable_dataframes_and_columns():
    pd = pytest.importorskip("pandas")
    frame = tether.dumps(pd.DataFrame({"x": np.arange(100.0)}))
    view = tether.loads(frame)
    with pytest.raises(ValueError, match="read-only"):  # the zero-copy default, as documented
        view.loc[0, "x"] = 1.0
    copied = tether.loads(frame, copy=True)
    copied.loc[0, "x"] = 99.0  # before: ValueError, assignment destination is read-only
    assert copied.loc[0, "x"] == 99.0 and tether.loads(frame).loc[0, "x"] == 0.0
    cols = tether.loads(tether.dumps(pa.table({"x": np.arange(10.0)})), into="numpy", copy=True)
    assert cols["x"].flags.writeable
    rows = tether.dumps([{"x": float(i)} for i in range(300)], format="etf")
    df = tether.loads(rows, into="pandas", copy=True)
    df.loc[0, "x"] = 5.0
    assert df.loc[0, "x"] == 5.0


def test_a_pandas_text_column_meets_a_string_schema():
    pd = pytest.importorskip("pandas")
    reg = schemas.Registry()
    reg.register("trial_pd", version=1, schema=pa.schema([("id", pa.int64()), ("name", pa.string())]))
    frame = tether.dumps(pd.DataFrame({"id": [1, 2], "name": ["a", "b"]}),
                         options={"schema": "trial_pd", "registry": reg})  # pandas may write large_string
    assert tether.inspect(frame).type["table_schema"]["version"] == 1
    assert tether.loads(frame, into="arrow").schema.field("name").type == pa.string()


def test_a_registered_schema_version_is_never_silently_replaced():
    reg = schemas.Registry()
    reg.register("trial_rereg", version=1, schema=pa.schema([("a", pa.int64())]))
    reg.register("trial_rereg", version=1, schema=pa.schema([("a", pa.int64())]))  # the same again: fine
    with pytest.raises(tether.ValidationError, match="Register the change as version 2"):
        reg.register("trial_rereg", version=1, schema=pa.schema([("b", pa.string())]))


def test_a_region_released_twice_is_refused_not_handed_to_two_writers():
    with RegionPool(prefault=False, sweep=False) as pool:
        with pytest.raises(tether.ValidationError):
            pool.acquire(-1)
        region = pool.acquire(np.int64(1 << 20).item())
        pool.release(region)
        with pytest.raises(RegionError, match="already released"):
            pool.release(region)
        a, b = pool.acquire(1 << 20), pool.acquire(1 << 20)
        assert a is not b
        for r in (a, b):
            pool.release(r)


def test_etf_refusing_a_value_it_maps_warns_when_it_falls_back_but_an_unmapped_type_does_not():
    import datetime
    import warnings

    with pytest.warns(tether.FallbackWarning, match="instead of etf"):  # NaN beside an Atom('nan'): ambiguous
        tether.dumps({"a": float("nan"), "b": tether.Atom("nan")})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        frame = tether.dumps({"d": datetime.timedelta(1)})  # no ETF mapping: pickle, as documented
    assert tether.inspect(frame).format == "pickle"


def test_scipy_layouts_frames_do_not_carry_are_sent_as_csr_with_a_warning():
    sp = pytest.importorskip("scipy.sparse")
    m = sp.random(5, 5, density=0.3, format="dok", random_state=0)  # a dict subclass: came back a dict
    with pytest.warns(tether.LossyConversionWarning, match="sent as csr"):
        frame = tether.dumps(m)
    out = tether.loads(frame)
    assert sp.issparse(out) and out.format == "csr" and (out.toarray() == m.toarray()).all()


def test_messages_that_named_the_wrong_fix():
    with pytest.raises(tether.ValidationError, match="needs a compressor"):
        tether.dumps(b"x", level=3)  # said "Valid levels are 0..0"
    bad = bytearray(tether.dumps([1, 2, 3]))
    bad[4] ^= 0x80  # one flipped bit in the version: damage, not a newer tether
    with pytest.raises(tether.ChecksumError, match="corrupted header"):
        tether.loads(bytes(bad))
    with pytest.raises(tether.ValidationError, match="decisions"):
        tether.metrics.decisions("a")  # a bare TypeError before


def test_stream_errors_point_at_the_stream_reader_and_the_chunk():
    import io
    import os

    from tether.stream import StreamReader, StreamWriter

    sink = io.BytesIO()
    with StreamWriter(sink) as w:
        w.write(1)
        w.write(2)
    with pytest.raises(tether.DecodeError, match="StreamReader"):
        tether.loads(sink.getvalue())
    sink = io.BytesIO()
    with StreamWriter(sink, chunk_size=1024) as w:
        w.write_buffer(io.BytesIO(os.urandom(5000)))
    data = bytearray(sink.getvalue())
    data[3000] ^= 0xFF
    with pytest.raises(tether.TetherError, match="chunk"):
        list(StreamReader(io.BytesIO(bytes(data))))


def test_misspelt_options_and_non_bool_flags_are_refused(monkeypatch):
    from tether import formats

    for fmt in formats.registry:  # a plugin format registered by another test may not declare its keys
        if fmt.option_keys is None:
            monkeypatch.setattr(type(fmt), "option_keys", frozenset())
    frame = tether.dumps([1])
    with pytest.raises(tether.ValidationError, match="Unknown option 'nan_mode'.*binaries"):
        tether.dumps({"a": 1}, options={"nan_mode": "atom"})
    with pytest.raises(tether.ValidationError, match="Unknown option 'bogus'"):
        tether.loads(frame, options={"bogus": 1})
    assert tether.loads(frame, options={"binaries": "str"}) == [1]
    for flag in ("verify", "copy"):
        with pytest.raises(tether.ValidationError, match=f"{flag} must be True or False"):
            tether.loads(frame, **{flag: "no"})
    pickled = tether.dumps(fractions.Fraction(1, 3))
    with pytest.raises(tether.ValidationError, match="allow_pickle must be True or False"):
        tether.loads(pickled, allow_pickle="no")  # a truthy string read as consent before
    with pytest.raises(tether.ValidationError, match="options\\['schema'\\] validates tables"):
        tether.dumps([{"a": i} for i in range(3)], options={"schema": "events"})  # was ignored: no validation
