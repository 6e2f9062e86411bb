"""compression="auto" weighs the byte-shuffle when it decides: before giving up, and when it compares codecs.

Arrays whose plain bytes barely compress but whose shuffled bytes do (a float ramp, linspace) went
uncompressed: auto judged them on their unshuffled samples and considered shuffling only after
choosing a codec. The choices here do not depend on how fast this host compresses: the codecs are
timed at fixed speeds (:func:`steady`), and giving up reads ratios alone.
"""

from __future__ import annotations

import logging
import re

import numpy as np
import pytest

import tether
import tether.metrics
from tether.compression import _policy

N = 1 << 18
REGULAR = {
    "linspace f64": lambda: np.linspace(0, 1, N),  # lz4 sample ratio 0.89 plain, 0.11 shuffled
    "float32 ramp": lambda: np.arange(N, dtype=np.float32),  # 1.00 plain, 0.11 shuffled
}
RANDOM = {
    "uniform f64": lambda: np.random.default_rng(1).random(N // 2),  # shuffled piece ~0.89: exponent bytes repeat
    "normal f64": lambda: np.random.default_rng(2).standard_normal(N // 2),
    "uniform f32": lambda: np.random.default_rng(3).random(N, dtype=np.float32),
}
# "0.89, 0.11 byte-shuffled (8-byte elements)": the shuffled ratio, said next to the plain one.
SHUFFLED_RATIO = re.compile(r"lz4 sample ratio \d\.\d\d, \d\.\d\d byte-shuffled \((4|8)-byte elements\)")
# Half what an idle core of this host measured on the shuffled samples of these arrays (lz4 ~4 GB/s, zstd 2-3.7).
STEADY_SPEEDS = {"lz4": 2e9, "zstd": 1e9, "gzip": 50e6}


@pytest.fixture(autouse=True)
def steady(monkeypatch):
    """The candidates' real ratios, timed at :data:`STEADY_SPEEDS` whatever the host's load."""
    real = _policy._measure

    def measure(codec, samples, level):
        ratio, _host_seconds, other = real(codec, samples, level)
        return ratio, sum(map(len, samples)) / STEADY_SPEEDS[codec.name], other

    monkeypatch.setattr(_policy, "_measure", measure)


def shuffled_by(frame: bytes) -> int:
    """The frame's byte-shuffle element size, 0 without one (header bytes 51-52, docs/format.md §1)."""
    return frame[52] if frame[51] == 1 else 0


@pytest.mark.parametrize("transport", ["network", "stream"])
@pytest.mark.parametrize("kind", REGULAR)
def test_regular_arrays_get_a_codec_with_their_shuffle(kind, transport):
    value = REGULAR[kind]()
    frame = tether.dumps(value, compression="auto", transport=transport)
    decision = tether.last_decision()
    assert decision.compression in ("lz4", "zstd"), decision.compression_reason
    assert shuffled_by(frame) == value.itemsize
    assert "on byte-shuffled samples" in decision.compression_reason
    assert SHUFFLED_RATIO.search(decision.compression_reason), decision.compression_reason
    assert len(frame) < value.nbytes / 10
    np.testing.assert_array_equal(tether.loads(frame), value)


def test_on_disk_the_shuffle_pays_for_linspace():
    # 500 MB/s: 4.2 ms raw against ~3.4 ms to shuffle, compress, write, decompress and unshuffle.
    value = REGULAR["linspace f64"]()
    frame = tether.dumps(value, compression="auto", transport="disk")
    assert tether.last_decision().compression in ("lz4", "zstd") and shuffled_by(frame) == 8
    np.testing.assert_array_equal(tether.loads(frame), value)


def test_a_like_payload_reuses_the_codec_and_its_shuffle():
    tether.dumps(np.arange(N, dtype=np.float32), compression="auto", transport="network")
    frame = tether.dumps(np.arange(N, dtype=np.float32) + 7, compression="auto", transport="network")
    reason = tether.last_decision().compression_reason
    assert "reused for a like payload" in reason and re.search(r"byte-shuffled 0\.\d\d, 0\.\d\d when measured", reason)
    assert shuffled_by(frame) == 4
    np.testing.assert_array_equal(tether.loads(frame), np.arange(N, dtype=np.float32) + 7)


@pytest.mark.parametrize("kind", RANDOM)
def test_random_floats_stay_raw_with_the_shuffled_piece_measured(kind):
    value = RANDOM[kind]()
    frame = tether.dumps(value, compression="auto", transport="network")
    reason = tether.last_decision().compression_reason
    assert tether.inspect(frame).compression == "none" and shuffled_by(frame) == 0
    size = value.itemsize
    assert re.fullmatch(rf"incompressible: lz4 sample ratio 1\.00 > 0\.9, 0\.\d\d byte-shuffled \({size}-byte "
                        rf"elements\) > 0\.81", reason), reason


@pytest.mark.parametrize("value", [np.random.default_rng(4).bytes(N),
                                   np.random.default_rng(5).integers(0, 256, N, "u1")], ids=["bytes", "uint8"])
def test_a_payload_that_cannot_be_shuffled_is_judged_on_its_plain_samples_alone(value, monkeypatch):
    monkeypatch.setattr(_policy, "shuffle", None)  # calling it would fail: bytes and 1-byte elements never shuffle
    tether.dumps(value, compression="auto", transport="network")
    assert tether.last_decision().compression_reason == "incompressible: lz4 sample ratio 1.00 > 0.9"


@pytest.mark.parametrize("kind", REGULAR)
def test_the_beam_reader_never_gets_or_measures_a_shuffle(kind, monkeypatch):
    monkeypatch.setattr(_policy, "shuffle", None)  # the BEAM refuses filtered frames: nothing shuffled to look at
    value = REGULAR[kind]()
    frame = tether.dumps(value, compression="auto", transport="network", reader="beam")
    decision = tether.last_decision()
    assert decision.compression in ("gzip", "none") and shuffled_by(frame) == 0
    assert "shuffl" not in decision.compression_reason
    np.testing.assert_array_equal(tether.loads(frame), value)


def test_what_never_compresses_still_does_not(monkeypatch):
    monkeypatch.setattr(_policy, "shuffle", None)
    ramp = REGULAR["float32 ramp"]()
    for transport in ("memory", "shm"):
        tether.dumps(ramp, compression="auto", transport=transport)
        assert "stays on this host" in tether.last_decision().compression_reason
    tether.dumps(ramp[: 8 << 10], compression="auto", transport="network")  # 32 KiB
    assert "too small" in tether.last_decision().compression_reason


def test_the_reason_reaches_the_decision_history_and_the_log(caplog):
    assert tether.metrics.enabled()  # on by default: the history keeps every decision
    with caplog.at_level(logging.DEBUG, logger="tether.select"):
        tether.dumps(REGULAR["float32 ramp"](), compression="auto", transport="network")
    reason = tether.last_decision().compression_reason
    assert SHUFFLED_RATIO.search(reason) and reason.endswith("; byte-shuffled (4-byte elements)")
    assert tether.metrics.decisions(1)[0].compression_reason == reason
    assert any(reason in record.getMessage() for record in caplog.records)


def test_a_plugin_whose_element_size_does_not_divide_the_probe_is_measured_not_crashed():
    # A 10-byte element: the shuffled probe joined pieces of 1024 bytes and raised ValueError in reshape.
    class Records(tether.formats.Format):
        id, name, auto_priority = 201, "test-records10", None

        def element_size(self, type_info):
            return 10

        def encode(self, obj, ctx):
            p = tether.formats.Payload({})
            p.add(obj.tobytes())
            return p

        def decode(self, payload, type_info, ctx):
            return np.frombuffer(bytes(payload), dtype="<f2").reshape(-1, 5)

    tether.formats.register(Records)
    try:
        points = np.random.default_rng(0).random((120_000, 5)).astype(np.float16)
        frame = tether.dumps(points, format="test-records10", compression="auto", transport="network")
        assert np.array_equal(tether.loads(frame), points)
    finally:
        tether.formats.unregister("test-records10")
