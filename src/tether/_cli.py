"""The ``tether`` command line: inspect, verify, bench."""

from __future__ import annotations

import argparse
import mmap
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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the tether command line; return the exit status."""
    parser = argparse.ArgumentParser(prog="tether", description="Inspect, verify and benchmark tether frames.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_inspect = sub.add_parser("inspect", help="print a frame's header and metadata without decoding the payload")
    p_inspect.add_argument("file")
    p_verify = sub.add_parser("verify", help="check a frame's checksums without decoding the payload")
    p_verify.add_argument("file")
    p_bench = sub.add_parser("bench", help="compare tether with its peers on this machine")
    p_bench.add_argument("--quick", action="store_true", help="smaller sizes and fewer repeats")
    p_bench.add_argument("--only", action="append", default=None, help="run only these groups (repeatable)")
    args = parser.parse_args(argv)

    from . import TetherError

    if args.cmd in ("inspect", "verify"):
        import tether

        try:
            data = _open(args.file)
            info = tether.inspect(data) if args.cmd == "inspect" else tether.verify(data)
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
    if args.cmd == "bench":
        from ._bench import run

        return run(quick=args.quick, only=args.only)
    return 2  # pragma: no cover
