"""The ``tether`` command line: inspect, verify, shm, bench, and ``--version`` with the build information."""

from __future__ import annotations

import argparse
import mmap
import os
import sys
from typing import Sequence


def _open(path: str):  # noqa: ANN202
    f = open(path, "rb")
    try:
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except ValueError:  # empty file
        return f.read()
    finally:
        f.close()


class _VersionAction(argparse.Action):
    """``--version``: the version and what this installation runs on (C speedups, libraries), then exit 0."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)  # type: ignore[arg-type]

    def __call__(self, parser: argparse.ArgumentParser, namespace: object, values: object,
                 option_string: str | None = None) -> None:
        from ._buildinfo import build_info

        try:
            print(build_info(), flush=True)
        except BrokenPipeError:  # `tether --version | head -1`: the reader has what it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        parser.exit()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the tether command line; return the exit status."""
    parser = argparse.ArgumentParser(prog="tether", description="Inspect, verify and benchmark tether frames.")
    parser.add_argument("--version", action=_VersionAction,
                        help="print the version, whether the C speedups are active, and the libraries in use")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_inspect = sub.add_parser("inspect", help="print a frame's header and metadata without decoding the payload")
    p_inspect.add_argument("file")
    p_verify = sub.add_parser("verify", help="check a frame's checksums without decoding the payload")
    p_verify.add_argument("file")
    p_bench = sub.add_parser("bench", help="compare tether with its peers on this machine")
    p_bench.add_argument("--quick", action="store_true", help="smaller sizes and fewer repeats")
    p_bench.add_argument("--only", action="append", default=None, help="run only these groups (repeatable)")
    p_shm = sub.add_parser("shm", help="shared-memory regions")
    shm_sub = p_shm.add_subparsers(dest="shm_cmd", required=True)
    shm_sub.add_parser("gc", help="remove regions whose owner process is dead")
    shm_sub.add_parser("ls", help="list tether regions in /dev/shm")
    args = parser.parse_args(argv)

    from . import TetherError

    if args.cmd in ("inspect", "verify"):
        import tether

        try:
            data = _open(args.file)
            info = tether.inspect(data) if args.cmd == "inspect" else None
            if args.cmd == "verify":
                first = tether.inspect(data)
                if first.stream:  # a stream file: every chunk, in order, and the end frame
                    totals = tether.stream.verify_stream(data)
                    print(first)
                    print(f"verified  stream {totals['stream_id']}: {totals['chunks']} chunks, "
                          f"{totals['bytes']} bytes, complete; every frame's header, metadata and payload")
                    return 0
                info = tether.verify(data)
        except OSError as exc:
            print(f"tether: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
            return 2
        except TetherError as exc:
            print(f"tether: {args.file}: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
        print(info)
        if args.cmd == "verify":
            print(f"verified  {info.checksum_covers}")
        return 0
    if args.cmd == "shm":
        from . import shm

        if args.shm_cmd == "gc":
            removed = shm.gc()
            for path in removed:
                print(f"removed {path}")
            print(f"{len(removed)} orphaned region(s) removed")
            return 0
        for name in sorted(os.listdir("/dev/shm")):
            if name.startswith("tether-"):
                try:
                    r = shm.Region.attach(name)
                    print(f"{name}  {r.capacity:>12} B  owner {r.owner_pid}  frames {len(r.frames())}")
                    r.close()
                except TetherError as exc:
                    print(f"{name}  unreadable: {exc}")
        return 0
    if args.cmd == "bench":
        from .bench import run

        return run(quick=args.quick, only=args.only)
    return 2  # pragma: no cover
