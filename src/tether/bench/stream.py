"""Streams: a byte stream through a file, written and read back chunk by chunk, per compression choice."""

from __future__ import annotations

import os
import tempfile

import tether

from . import data as bench_data
from .harness import Report, median


def run(rep: Report, quick: bool) -> None:
    """Write text-like bytes as a stream to a file and read it back checking every chunk.

    Parameters
    ----------
    rep : Report
        Where the figures go.
    quick : bool
        32 MiB instead of 256 MiB.

    Examples
    --------
    Run this group alone, at the quick sizes: ``tether bench --only stream --quick``.
    """
    mib = 32 if quick else 256
    rep.section(f"stream: {mib} MiB of text-like bytes through a file, 8 MiB chunks")
    text = bench_data.compression_data(16)["text-like bytes"]
    data = (text * (mib // 16 + 1))[: mib << 20]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "s.tthr")
        for compression in ("none", "auto", "zstd"):
            def write() -> None:
                with open(path, "wb") as f, tether.stream.StreamWriter(f, compression=compression) as w:
                    w.write_buffer(data)

            def read() -> None:
                with open(path, "rb") as f:
                    for _ in tether.stream.StreamReader(f, max_frame=16 << 20):
                        pass

            t_w = median(write, 3)
            t_r = median(read, 3)
            with open(path, "rb") as f:
                chosen = tether.inspect(f.read(1 << 20)).compression  # the first chunk's header and metadata
            rep.row(f"compression={compression!r} -> {chosen}: write", t_w,
                    f"{len(data) / t_w / 1e9:.2f} GB/s, file {os.path.getsize(path) / len(data):.3f} of the data")
            rep.row(f"compression={compression!r}: read, checking every chunk", t_r,
                    f"{len(data) / t_r / 1e9:.2f} GB/s")
