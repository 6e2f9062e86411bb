"""The bytes marker of docs/format.md §8: ``{'$tether_bytes', Bin}`` reaches a handler as bytes, never decoded.

A real ``python -m tether.worker`` driven by the BEAM's half of the protocol
(test_worker.Client); the tag's agreement with beam/include/tether.hrl is
checked against the compiled Erlang (tether_args:bytes/1) in a real erl.
"""

from __future__ import annotations

import binascii
import pathlib
import shutil
import subprocess

import pytest

import tether
from tether import Atom as A
from tether import worker as tw
from test_worker import Client, embedded

BEAM = pathlib.Path(__file__).resolve().parent.parent / "beam"
MARK = A(tw.BYTES_TAG)


def etf_frame(term) -> bytes:
    return tether.dumps(term, format="etf", reader="beam")


@pytest.fixture
def client():
    c = Client()
    yield c
    c.close()


def test_a_marked_frame_reaches_the_handler_as_its_bytes_and_an_unmarked_one_decoded(client):
    frame = etf_frame([1, 2, 3])
    assert client.ok("types_of", (MARK, frame)) == "bytes"
    assert client.ok("types_of", frame) == ["int", "int", "int"]
    # Back as it went: the handler's bytes are a binary on the BEAM, not a decoded value.
    assert client.ok("echo", {b"k": [(MARK, frame)]}) == {b"k": [frame]}


def test_a_large_marked_frame_comes_back_embedded_as_raw_bytes(client):
    frame = tether.dumps(b"\x07" * (100 << 10), format="raw", reader="beam")
    back = client.ok("echo", (MARK, frame))
    assert back[0] == "$tether" and tether.inspect(back[1]).format == "raw", back[:1]
    assert bytes(embedded(back)) == frame  # the raw frame around the bytes, not the frame itself decoded


def test_with_binaries_str_a_marked_binary_is_still_bytes():
    c = Client("--binaries", "str")
    try:
        # A str goes out as BINARY_EXT, as the BEAM writes every binary; the worker reads it as str.
        assert c.ok("types_of", "héllo") == "str"
        assert c.ok("types_of", (MARK, "héllo")) == "bytes"
        assert c.ok("echo", (MARK, "héllo")) == "héllo".encode()
    finally:
        c.close()


@pytest.mark.parametrize("bad, expected", [
    ((MARK, 5), "needs a binary"),
    ((MARK, b"x", b"y"), "got a tuple of 3 elements"),
    ((A("$tether_future"), b"x"), "$tether_future is not a marker this worker reads"),
])
def test_bad_or_unknown_markers_are_refused_by_path_and_the_worker_goes_on(client, bad, expected):
    result = client.call("echo", {b"rows": [1, bad]})
    assert result[0] == "error" and result[1][0] == "bad_request", result
    assert result[1][1].startswith("$[0][b'rows'][1]: "), result
    assert expected in result[1][1]
    assert client.ok("add", 1, 2) == 3


def test_an_unknown_marker_names_the_fix(client):
    result = client.call("echo", (A("$tether_future"), 1))
    assert "upgrade tether in the worker's Python environment" in result[1][1], result


def test_the_ready_lists_the_markers_under_a_binary_key(client):
    markers = client.ready[1]["markers"]
    assert tw.BYTES_TAG in markers and "$tether_shm" in markers
    # A binary key: a BEAM that does not know the atom `markers` still decodes the ready ([safe]).
    assert not any(type(k) is A and k == "markers" for k in client.ready[1])


def test_plain_arguments_are_left_as_sent(client):
    """``plain => true`` says there is nothing to decode: a marker then stays the tuple it is (the BEAM never
    says plain of arguments holding one: tether_args:plain/1)."""
    assert client.ok("types_of", (MARK, b"x"), opts={A("plain"): True}) == ("Atom", "bytes")


@pytest.mark.skipif(shutil.which("erlc") is None, reason="erlang is installed by make test")
def test_the_beam_writes_the_tag_the_worker_reads(tmp_path):
    subprocess.run(["erlc", "-o", str(tmp_path), str(BEAM / "src" / "tether_args.erl")], check=True)
    expr = 'io:format("~s~n", [binary:encode_hex(term_to_binary(tether_args:bytes(<<"x">>)))]), halt().'
    proc = subprocess.run(["erl", "-noshell", "-pa", str(tmp_path), "-eval", expr], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    tag, payload = tether.etf.decode(binascii.unhexlify(proc.stdout.strip()))
    assert type(tag) is A and tag == tw.BYTES_TAG and payload == b"x"


@pytest.mark.parametrize("shape", ["bytes", "dict of bytearray"])
def test_a_large_binary_result_is_not_encoded_whole_before_it_goes_to_shared_memory(shape):
    """The small-result encode copied a large binary whole, then found the reply too large: 3.3x the payload."""
    import tracemalloc
    import types

    from tether.worker import Worker, compact

    mod = types.ModuleType("bulk")
    mod.big = lambda n: b"x" * n if shape == "bytes" else {"a": bytearray(n)}
    w = Worker({"bulk": mod})
    try:
        w.handle(compact((tether.Atom("call"), 1, b"bulk", b"big", [1000], {})))
        n = 20_000_000
        tracemalloc.start()
        w.handle(compact((tether.Atom("call"), 2, b"bulk", b"big", [n], {})))
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    finally:
        w.close()
    assert peak < 1.5 * n, f"{peak / n:.2f}x the payload"


def test_a_reply_region_outgrown_is_removed_not_kept_warm():
    """Each larger reply took a larger region and kept the outgrown one warm, never used again: after replies
    of 17 to 135 MB a worker held 2.6x the largest in /dev/shm, for as long as calls came."""
    import os

    import numpy as np

    from tether.worker import Worker

    w = Worker({"numpy": np}, shm_threshold=0)
    try:
        paths = []
        for n in (1 << 20, 3 << 20, 9 << 20):
            w.handle(tether.dumps((A("call"), n, b"numpy", b"ones", [n], {}), format="etf"))
            paths.append(w.region.path)
        assert len(set(paths)) == 3 and w.pool.warm_bytes == 0
        assert [os.path.exists(p) for p in paths] == [False, False, True]
    finally:
        w.close()
