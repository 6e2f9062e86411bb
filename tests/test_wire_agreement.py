"""Python and the BEAM agree on the wire format: every id, every layout, real header bytes.

The BEAM's side is ``tether_wire:tables/0``, built from beam/include/tether.hrl
(the definitions its codec packs and matches with); Python's is
``tether._wire.tables()``, gathered from the registries and layout tables.
Both run for real: the Erlang sources are compiled with erlc and run in erl.
"""

from __future__ import annotations

import binascii
import pathlib
import shutil
import struct
import subprocess
import zlib
from typing import Any

import pytest

import tether
from tether import _wire

BEAM = pathlib.Path(__file__).resolve().parent.parent / "beam"

pytestmark = pytest.mark.skipif(shutil.which("erlc") is None, reason="erlang is installed by make test")


@pytest.fixture(scope="module")
def ebin(tmp_path_factory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("wire_ebin")
    subprocess.run(["erlc", "-o", str(out), *map(str, sorted((BEAM / "src").glob("*.erl")))], check=True)
    return out


def erl_terms(ebin: pathlib.Path, exprs: list[str]) -> list[Any]:
    """Evaluate Erlang expressions in one erl and return their values, decoded from ETF."""
    body = ", ".join(f'io:format("~s~n", [binary:encode_hex(term_to_binary({e}))])' for e in exprs)
    proc = subprocess.run(["erl", "-noshell", "-pa", str(ebin), "-eval", body + ", halt()."],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    lines = proc.stdout.split()
    assert len(lines) == len(exprs), proc.stdout
    return [tether.etf.decode(binascii.unhexlify(line)) for line in lines]


def as_python(value: Any) -> Any:
    """The BEAM's tables in Python's shape: str keys and field names, magic stays bytes."""
    if isinstance(value, dict):
        return {k.decode(): as_python(v) for k, v in value.items()}
    if isinstance(value, list):
        return [(name.decode(), offset, size) for name, offset, size in value]
    return value


@pytest.fixture(scope="module")
def tables(ebin) -> tuple[dict[str, Any], dict[str, Any]]:
    (beam,) = erl_terms(ebin, ["tether_wire:tables()"])
    return as_python(beam), _wire.tables()


def test_both_sides_report_the_same_keys(tables):
    beam, py = tables
    assert set(beam) == set(py)
    assert set(beam["region"]) == set(py["region"])


@pytest.mark.parametrize("key", sorted(_wire.tables()))
def test_every_table_agrees(tables, key):
    beam, py = tables
    assert beam[key] == py[key]


def test_layouts_are_contiguous_and_fill_their_size(tables):
    beam, _ = tables
    for layout, size in [(beam["header"], beam["header_size"]), (beam["region"]["slot"], beam["region"]["slot_size"])]:
        ends = [0] + [offset + width for _, offset, width in layout]
        assert [offset for _, offset, _ in layout] == ends[:-1] and ends[-1] == size
    head = beam["region"]["header"]
    region_head = head[-1][1] + head[-1][2]
    assert beam["region"]["slots"] == (beam["region"]["header_size"] - region_head) // beam["region"]["slot_size"]


# What the BEAM builds, and the header it reports for it.
FRAMES = {
    "etf": "tether:encode(#{<<\"id\">> => 1, tags => [a, b]})",
    "etf_z": "tether:encode(lists:seq(1, 500), #{compressed => true, metadata => #{<<\"run\">> => 7}})",
    "etf_none": "tether:encode({x, 1.5}, #{checksum => none})",
    "raw": "tether:encode(<<0, 1, 2, 255>>, #{format => raw})",
    "f32": "tether:tensor(<< <<X:32/float-native>> || X <- lists:seq(1, 6) >>, {f, 32}, {2, 3}, "
           "#{metadata => #{<<\"unit\">> => <<\"m\">>}})",
}


@pytest.fixture(scope="module")
def beam_frames(ebin) -> dict[str, tuple[bytes, dict[str, Any]]]:
    exprs = []
    for expr in FRAMES.values():
        exprs.append(f"(fun() -> F = iolist_to_binary({expr}), {{ok, I}} = tether:inspect(F), {{F, I}} end)()")
    out = erl_terms(ebin, exprs)
    return {name: (frame, {str(k): v for k, v in info.items()}) for name, (frame, info) in zip(FRAMES, out)}


def fields(frame: bytes) -> dict[str, Any]:
    """The header fields of ``frame``, read at the offsets Python's table gives."""
    codes = {1: "B", 2: "H", 4: "I", 8: "Q"}
    out = {}
    for name, offset, size in _wire.tables()["header"]:
        raw = frame[offset : offset + size]
        if name in ("magic", "reserved"):
            out[name] = raw
        else:
            code = codes[size].lower() if name == "compression_level" else codes[size]  # the one signed field
            out[name] = struct.unpack("<" + code, raw)[0]
    return out


@pytest.mark.parametrize("name", sorted(FRAMES))
def test_python_reads_the_header_the_beam_reports(beam_frames, name):
    frame, beam = beam_frames[name]
    py = _wire.tables()
    raw = fields(frame)
    info = tether.verify(frame)
    names = {section: {v: k for k, v in py[section].items()} for section in ("formats", "compressions", "checksums")}

    assert raw["magic"] == py["magic"] and raw["version"] == py["frame_version"] == info.frame_version
    assert raw["header_size"] == py["header_size"] and raw["reserved"] == bytes(7)
    assert raw["header_crc32"] == zlib.crc32(frame[: py["header_size"] - 4])
    assert beam["format_id"] == raw["format_id"] == info.format_id
    assert str(beam["format"]) == names["formats"][raw["format_id"]] == info.format
    assert str(beam["compression"]) == names["compressions"][raw["compression_id"]] == info.compression
    assert str(beam["checksum"]) == names["checksums"][raw["checksum_kind"]] == info.checksum
    assert beam["checksum_value"] == raw["payload_checksum"] == info.payload_checksum
    assert beam["meta_len"] == raw["metadata_length"] == info.metadata_size
    assert beam["payload_size"] == raw["payload_length"] == info.payload_size
    assert beam["raw_size"] == raw["raw_length"] == info.raw_size
    assert beam["schema"] == raw["schema_version"] == info.schema_version
    assert beam["level"] == raw["compression_level"] == info.compression_level
    assert beam["filter"] == (raw["filter_id"], raw["filter_size"]) == (py["filters"]["none"], 0)
    assert beam["payload_offset"] == info.payload_offset and beam["payload_offset"] % py["align"] == 0
    assert beam["frame_size"] == info.frame_size == len(frame)
    assert raw["flags"] == info.flags == 0

    # Metadata: binaries on the BEAM, str in Python's FrameInfo.
    beam_meta = text(beam["metadata"])
    assert (beam_meta["format"], beam_meta["producer"]) == (info.format, info.producer)
    assert beam_meta["schema"] == info.schema_version and beam_meta["type"] == info.type
    assert beam_meta.get("user", {}) == info.user


def text(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, dict):
        return {text(k): text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [text(v) for v in value]
    return value
