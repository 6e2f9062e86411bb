"""The ``tether`` command line: inspect, verify, shm, bench, stats, and ``--version`` with the build information.

``--json`` on inspect, verify, shm ls and stats prints the same facts as JSON.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import io
import json
import mmap
import os
import stat
import sys
from typing import Any, Sequence


class _NotAFile(Exception):
    """The path names something that holds no frame of its own (a device); the message says what."""


# A pipe is read in steps of _STEP, so memory follows the bytes that arrive, never what a header declares
# (a forged one may declare up to Limits.max_frame_size). What follows a frame or a stream is counted up to
# _TAIL_COUNTED only: the input may never end (`(cat f.tthr; cat /dev/zero) | tether verify -`).
_STEP = 1 << 20
_TAIL_COUNTED = 16 << 20


class _PipedStream(io.RawIOBase):
    """A stream arriving down a pipe, checked or summarised frame by frame as it passes, never held whole.

    ``prefix`` is its first frame's header and metadata, already read (and handed out again first);
    ``first`` is that frame's :class:`tether.FrameInfo`.
    """

    def __init__(self, prefix: bytes, src: Any, first: Any):
        super().__init__()
        self.prefix, self.first, self.owns = prefix, first, False  # owns: close() closes src too
        self._head, self._src = memoryview(prefix), src

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        if self._head:
            n = min(len(b), len(self._head))
            b[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        return self._src.readinto(b) or 0

    def close(self) -> None:
        if self.owns and not self.closed:
            self._src.close()
        super().close()


def _read_pipe(src: Any) -> Any:
    """What a pipe holds, if it starts as a frame: its bytes, or a :class:`_PipedStream` if it starts a stream.

    Bytes that start no frame (`head -c 1G /dev/zero |`) are not read on: the bytes read so far are
    returned, for tether.inspect to name what is wrong with them.
    """
    import tether
    from . import TetherError, frame, get_limits

    head = src.read(frame.HEADER_SIZE)
    if len(head) < frame.HEADER_SIZE or head[: len(frame.MAGIC)] != frame.MAGIC:
        return head
    data = bytearray(head)
    try:
        header = frame.unpack(memoryview(head), get_limits())
        prefix = bytes(_read_on(src, data, header.payload_offset))  # within Limits.max_metadata_size
        first = tether.inspect(prefix)
    except TetherError:
        return data  # a header or metadata that cannot stand (over the limits, say): tether.inspect names it
    if first.stream:  # decided by the metadata, as for a file
        return _PipedStream(prefix, src, first)
    _read_on(src, data, header.frame_size)
    extra = _drain(src)
    if extra:
        raise _trailing(extra, header)
    return data


def _read_on(src: Any, data: bytearray, size: int) -> bytearray:
    """``data`` extended from ``src`` to ``size`` bytes, or fewer if ``src`` ends first."""
    while len(data) < size and (chunk := src.read(min(size - len(data), _STEP))):
        data += chunk
    return data


def _drain(src: Any) -> int:
    """How many bytes are left in ``src``, read and dropped; past ``_TAIL_COUNTED`` no more are read."""
    count = 0
    while count <= _TAIL_COUNTED and (chunk := src.read(_STEP)):
        count += len(chunk)
    return count


def _counted(extra: int) -> str:
    return str(extra) if extra <= _TAIL_COUNTED else f"more than {_TAIL_COUNTED}"


def _trailing(extra: int, header: Any) -> Exception:
    """The error for ``extra`` bytes (as :func:`_drain` counts them) after a piped frame."""
    from . import DecodeError, frame

    if extra <= _TAIL_COUNTED:
        return frame.trailing(extra, header)
    return DecodeError(
        f"{_counted(extra)} bytes after the end of the frame ({header.frame_size} bytes), and counting stopped "
        "there: the input may never end. Pipe in one frame or one stream, and nothing after it."
    )


def _stream_tail(piped: _PipedStream, where: str) -> str | None:
    """Why a piped stream fails for the bytes after its end frame (as a file's does), or None if none follow."""
    extra = _drain(piped)
    if not extra:
        return None
    return (f"{where}: {_counted(extra)} bytes follow the end frame, which ends the stream. The input holds "
            "something else after the stream (two streams joined, or junk): pass only the stream's bytes.")


def _open(path: str):  # noqa: ANN202
    if path == "-":  # the frame comes down a pipe: `cat f.tthr | tether inspect -`
        if sys.stdin is None:  # started with standard input closed (cron, systemd, `<&-`)
            raise _NotAFile("standard input is closed: pipe a frame in (`cat f.tthr | tether inspect -`), or name "
                            "a frame file")
        return _read_pipe(sys.stdin.buffer)
    f = open(path, "rb")
    owned = False  # whether what is returned closes f: a piped stream is read after _open returns
    try:
        mode = os.fstat(f.fileno()).st_mode
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            # /dev/zero never ends and a terminal waits for typing: neither is a frame file.
            raise _NotAFile(f"{path} is a device, not a file; name a frame file, or pipe one in with '-'")
        if not stat.S_ISREG(mode):  # a pipe (`<(...)`, /dev/stdin of `a | tether`) cannot be mapped
            data = _read_pipe(f)
            if isinstance(data, _PipedStream):
                data.owns = owned = True
            return data
        try:
            return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:  # empty file
            return f.read()
    finally:
        if not owned:
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


def _json_default(value: Any) -> Any:
    """What ``json`` cannot write itself: datetimes, atoms, tuples inside metadata, bytes."""
    if isinstance(value, _dt.datetime):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    return str(value)


# Metadata may nest as deep as Limits.max_depth, keys may be tuples: json.dumps recurses and takes str keys
# only, so what it cannot show is shown to the frame layer's SHOWN_DEPTH (as str(FrameInfo)), keys as text.


def _bounded(value: Any, depth: int = 0) -> Any:
    """``value`` with containers below ``SHOWN_DEPTH`` replaced by a note, and keys as text, for JSON."""
    from .frame import SHOWN_DEPTH, shown

    if type(value) is int and value.bit_length() > 64:  # json writes ints with str(), which refuses huge ones
        return shown(value)
    if not isinstance(value, (dict, list, tuple)):
        return value
    if depth >= SHOWN_DEPTH:
        return f"... (nested deeper than {SHOWN_DEPTH} levels; read it with tether.inspect)"
    if isinstance(value, dict):
        return {_json_key(k): _bounded(v, depth + 1) for k, v in value.items()}
    return [_bounded(v, depth + 1) for v in value]


def _json_key(key: Any) -> Any:
    return key if isinstance(key, (str, int, float, bool)) or key is None else str(_json_default(key))


def _print_json(data: Any) -> None:
    try:
        text = json.dumps(data, indent=1, default=_json_default)
    except (RecursionError, TypeError, ValueError):  # see _bounded
        text = json.dumps(_bounded(data), indent=1, default=_json_default)
    print(text)


def _info_dict(info: Any, verified: str | None = None) -> dict[str, Any]:
    out = info.as_dict()  # not dataclasses.asdict: it copies metadata recursively, at any depth
    if verified is not None:
        out["verified"] = verified
    return out


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tether", description="Inspect, verify and benchmark tether frames.")
    parser.add_argument("--version", action=_VersionAction,
                        help="print the version, whether the C speedups are active, and the libraries in use")
    sub = parser.add_subparsers(dest="cmd", required=True)
    as_json = {"action": "store_true", "help": "print JSON instead of text"}
    p_inspect = sub.add_parser("inspect", help="print a frame's header and metadata without decoding the payload; "
                                               "of a stream, a summary of every chunk (exit 1 if one is damaged)")
    p_inspect.add_argument("file", help="the frame or stream file; - reads it from standard input")
    p_inspect.add_argument("--json", **as_json)
    p_verify = sub.add_parser("verify", help="check a frame's checksums without decoding the payload")
    p_verify.add_argument("file", help="the frame or stream file; - reads it from standard input")
    p_verify.add_argument("--json", **as_json)
    for p in (p_inspect, p_verify):
        p.add_argument("--resume", metavar="CHECKPOINT",
                       help="a stream continuation's starting checkpoint, as JSON (Checkpoint.as_dict()) or @FILE "
                            "holding it: its chunks and end frame are checked against the whole stream")
    p_bench = sub.add_parser("bench", help="compare tether with its peers on this machine")
    p_bench.add_argument("--quick", action="store_true", help="smaller sizes and fewer repeats")
    p_bench.add_argument("--only", action="append", default=None, metavar="GROUP",
                         help="run only this group (repeatable); an unknown name lists the groups")
    p_bench.add_argument("--json", metavar="FILE", dest="json_path",
                         help="write every figure, target and the run's context to FILE")
    p_bench.add_argument("--compare", metavar="OLD.json",
                         help="print each figure's change against an earlier --json run, flagging moves beyond noise")
    p_bench.add_argument("--plot", metavar="DIR", dest="plot_dir", help="draw the plots into DIR (needs matplotlib)")
    p_bench.add_argument("--no-fail", action="store_true", help="exit 0 even when a target is MISSED")
    p_bench.set_defaults(usage_error=p_bench.error)
    p_stats = sub.add_parser("stats", help="print a running worker's metrics snapshot")
    p_stats.add_argument("target", nargs="?", default=None,
                         help="the worker: its OS pid, or its --stats-dir (or the stats.json in it); "
                              "optional when exactly one worker runs")
    p_stats.add_argument("--json", **as_json)
    p_shm = sub.add_parser("shm", help="shared-memory regions")
    shm_sub = p_shm.add_subparsers(dest="shm_cmd", required=True)
    shm_dir = {"default": "/dev/shm", "metavar": "DIR",
               "help": "where to look for regions and BEAM workers' private directories: the workers' shm_dir "
                       "option (default /dev/shm)"}
    p_gc = shm_sub.add_parser("gc", help="remove regions whose owner process is dead, and BEAM workers' private "
                                         "directories whose node is dead")
    p_gc.add_argument("--shm-dir", **shm_dir)
    p_gc.add_argument("--dry-run", action="store_true", help="list what gc would remove now, and remove nothing")
    p_ls = shm_sub.add_parser("ls", help="list tether regions (in /dev/shm) and BEAM workers' private directories")
    p_ls.add_argument("--json", **as_json)
    p_ls.add_argument("--shm-dir", **shm_dir)
    return parser


def _frame_cmd(args: argparse.Namespace) -> int:
    import tether
    from . import DecodeError, TetherError, TruncatedError

    data: Any = b""  # what the error's hint looks at when the input could not be read
    try:  # a --resume that is no checkpoint is the command line's error, found before the file is read
        args.resume = _resume_arg(args)
    except _NotAFile as exc:
        print(f"tether: {args.cmd}: {exc}", file=sys.stderr)
        return 2
    try:
        data = _open(args.file)
        if isinstance(data, _PipedStream):  # read once, as it passes
            with data:  # closes the pipe if _open opened it
                return _stream_summary(args, data) if args.cmd == "inspect" else _verify_piped(args, data)
        try:
            first = tether.inspect(data)
        except TruncatedError:
            if not _starts_a_stream(data):
                raise
            # A stream cut inside chunk 0's metadata is still a stream cut short: summarised (incomplete,
            # status 0) or verified (where it still checks out), not a truncated single frame.
            if args.cmd == "inspect":
                return _stream_summary(args, data)
            tether.stream.verify_stream(data, resume=args.resume)
            raise
        if args.cmd == "inspect" and first.stream:  # a stream file (mapped: its payloads are never touched)
            return _stream_summary(args, data)
        if args.cmd == "verify" and first.stream:  # a stream file: every chunk, in order, and the end frame
            return _verified_stream(args, first, tether.stream.verify_stream(data, resume=_resume_arg(args)))
        if args.resume is not None:
            raise _NotAFile(f"--resume checks a stream's continuation, and {args.file} holds a single frame: "
                            "leave --resume out")
        info = tether.verify(data) if args.cmd == "verify" else first
        if args.cmd == "inspect" and hasattr(data, "__len__") and len(data) != first.frame_size:
            # inspect reads the header and metadata only, and would otherwise pass a cut or padded file.
            short = len(data) < first.frame_size
            what = "cut short" if short else f"followed by {len(data) - first.frame_size} bytes that are not part of it"
            raise (TruncatedError if short else DecodeError)(
                f"the file holds {len(data)} bytes and its frame {first.frame_size}: the frame is {what}. Write the "
                "frame again.")
    except OSError as exc:
        return _frame_error(args, "OSError", f"cannot read {args.file}: {exc.strerror or exc}", 2)
    except _NotAFile as exc:
        return _frame_error(args, "NotAFile", str(exc), 2)
    except TetherError as exc:
        region = "" if isinstance(data, _PipedStream) else _region_hint(data)  # a stream is no region
        if region:  # the header error ("a newer tether") would send the reader the wrong way: this comes first
            return _frame_error(args, "NotAFrame", region, 1, named=True)
        size = None if isinstance(data, _PipedStream) or not hasattr(data, "__len__") else len(data)
        return _frame_error(args, type(exc).__name__, str(exc), 1,
                            hint=_resume_hint(exc, args.resume is not None, size), named=True,
                            resume=_resume_point(exc))
    verified = info.checksum_covers if args.cmd == "verify" else None
    if args.json:
        _print_json(_info_dict(info, verified))
        return 0
    print(info)
    if verified is not None:
        print(f"verified  {verified}")
    return 0


def _verify_piped(args: argparse.Namespace, piped: _PipedStream) -> int:
    """``verify`` of a stream down a pipe: frame by frame, as of a file, and nothing after its end frame."""
    import tether
    from . import StreamError

    totals = tether.stream.verify_stream(piped, resume=_resume_arg(args))  # a pipe's end is not read past: the tail is checked here
    tail = _stream_tail(piped, f"stream {totals['stream_id']} chunk {totals['chunks']}")
    if tail is not None:
        raise StreamError(tail)
    return _verified_stream(args, piped.first, totals)


def _verified_stream(args: argparse.Namespace, first: Any, totals: dict[str, Any]) -> int:
    """Print what ``verify`` found in a whole stream: chunk 0's frame info and the stream's totals."""
    if args.json:
        _print_json({**_info_dict(first), "verified_stream": totals})
        return 0
    print(first)
    print(f"verified  stream {totals['stream_id']}: {totals['chunks']} chunks, "
          f"{totals['bytes']} bytes, complete; every frame's header, metadata and payload")
    return 0


def _starts_a_stream(data: Any) -> bool:
    """Whether ``data`` starts with a whole frame header that marks a stream chunk (flag bit 0)."""
    from . import TetherError, frame, get_limits

    try:
        return bool(frame.unpack(memoryview(data), get_limits()).flags & frame.FLAG_STREAM_CHUNK)
    except (TetherError, TypeError, ValueError):
        return False


def _resume_arg(args: argparse.Namespace) -> dict[str, Any] | None:
    """``--resume``: a checkpoint as JSON, or ``@FILE`` holding it (its fields checked by the stream reader).

    Raises ``_NotAFile`` (a usage error) when it is not JSON, not a file that can be read, or not an object;
    `tether verify --json`'s ``resume`` object is taken for the checkpoint it holds.
    """
    text = getattr(args, "resume", None)
    if text is None or isinstance(text, dict):  # absent, or parsed already
        return text
    try:
        if text.startswith("@"):
            with open(text[1:], encoding="utf-8") as f:
                text = f.read(1 << 20)
        value = json.loads(text)
    except (OSError, ValueError) as exc:
        raise _NotAFile(f"--resume takes a checkpoint as JSON or @FILE holding it ({exc}): pass the "
                        "\"checkpoint\" that `tether verify --json` printed under \"resume\", or a checkpoint "
                        "file a writer or reader saved.") from None
    if isinstance(value, dict) and isinstance(value.get("checkpoint"), dict):  # verify --json's resume, whole
        value = value["checkpoint"]
    if not isinstance(value, dict):
        raise _NotAFile(f"--resume takes a checkpoint, a JSON object; got {text.strip()[:60]!r}")
    return value


def _resume_point(exc: BaseException) -> dict[str, Any] | None:
    """Where a stream that ``verify`` refused still checks out (verify_stream's ``checkpoint`` and ``good_bytes``)."""
    cp = getattr(exc, "checkpoint", None)
    if cp is None:
        return None
    return {"checkpoint": cp.as_dict(), "good_bytes": exc.good_bytes, "first_chunk": exc.first_chunk}


def _resume_hint(exc: BaseException, resumed: bool = False, size: int | None = None) -> str:
    """How to recover the part of a stream that checks out; with ``--resume`` given, that the checkpoint may be
    what is wrong (one from another stream or point fails the same checks, and truncating a good file loses it).
    ``size``: the file's, when it is one (a pipe's bytes are kept, not truncated)."""
    point = _resume_point(exc)
    if point is None:
        return ""
    cp, good = point["checkpoint"], point["good_bytes"]
    if size is None:
        keep = f"keep those {good} bytes (`head -c {good}`)"
    elif good >= size:  # nothing after the good part: the stream just stops there
        keep = "the file ends there: keep it as it is"
    else:
        keep = f"truncate the file to {good} bytes"
    hint = (f"the first {good} bytes hold chunks {point['first_chunk']}-{cp['seq'] - 1}, which check out: {keep} "
            "and continue it with StreamWriter(open(path, 'ab'), resume=...) "
            f"from checkpoint seq {cp['seq']}, offset {cp['offset']}, digest {cp['digest']} (--json gives it whole)")
    if resumed:
        hint = ("first check the --resume checkpoint: one taken from another stream, or at another point of this "
                "one, fails these checks with the file intact (use the checkpoint saved where this file was "
                "started). If the checkpoint is right: " + hint)
    return hint


def _frame_error(args: argparse.Namespace, kind: str, message: str, status: int, *, hint: str = "",
                 named: bool = False, resume: dict[str, Any] | None = None) -> int:
    """Say why ``inspect``/``verify`` failed on stderr and, with ``--json``, as JSON on stdout; return ``status``.

    ``named``: the message is a TetherError's, printed after the file and the error's type; ``hint`` says
    what to do instead (the JSON gives it apart).
    """
    print(f"tether: {args.file}: {kind}: {message}" if named else f"tether: {message}",
          (f"\ntether: {hint}" if hint else ""), sep="", file=sys.stderr)
    if args.json:  # a script reading stdout gets an object either way
        error = {"type": kind, "message": message, **({"hint": hint} if hint else {})}
        _print_json({"file": args.file, "error": error, **({"resume": resume} if resume else {})})
    return status


def _stream_summary(args: argparse.Namespace, data: Any) -> int:
    """``inspect`` of a stream: chunk 0's frame info, then the whole stream from headers and metadata."""
    import tether

    summary = tether.stream.summarize_stream(data, resume=_resume_arg(args))
    if isinstance(data, _PipedStream) and summary["state"] == "complete":
        _check_piped_tail(summary, data)
    first = summary.pop("first_chunk")
    if args.json:
        _print_json({**(_info_dict(first) if first is not None else {}), "stream_summary": summary})
    else:
        if first is not None:
            print(first)
        print("\n".join(_summary_lines(summary)))
    problem = summary["problem"]
    if summary["state"] != "damaged":
        return 0
    print(f"tether: {args.file}: {problem['error']}: {problem['message']}", file=sys.stderr)
    return 1


def _check_piped_tail(summary: dict[str, Any], piped: _PipedStream) -> None:
    """Mark a complete piped stream damaged if bytes follow its end frame, as summarize_stream marks a file's.

    The reader stops at a pipe's end frame (a socket may carry more after it); the command's input is the
    stream alone.
    """
    seq = summary["declared"]["count"]  # the end frame's chunk number: complete, so it checked out
    tail = _stream_tail(piped, f"stream {summary['stream_id']} chunk {seq}")
    if tail is not None:
        summary["state"] = "damaged"
        summary["problem"] = {"error": "StreamError", "message": tail, "chunk": seq}
        if summary["checkpoint"] is not None:  # None for a stream of no chunks
            summary["checkpoint"]["ended"] = False  # as for a file: the end frame did not check out


_STATES = {
    "complete": "complete: the end frame is there; its count, bytes and digest match the chunks",
    "incomplete": "INCOMPLETE: no end frame; the writer stopped early, was cut off or is still writing",
    "damaged": "DAMAGED: reading stopped at a frame that fails its checks",
}


def _summary_lines(s: dict[str, Any]) -> list[str]:
    """The text of a stream summary (tether.stream.summarize_stream), one fact a line."""
    def counts(by_name: dict[str, int]) -> str:
        return ", ".join(f"{name} {n}" for name, n in sorted(by_name.items())) or "-"

    state = _STATES.get(s["state"], s["state"])
    if s["state"] == "complete" and s.get("continues_from") is not None:
        state = ("complete as a continuation: it starts at chunk {seq}, so it reads only after the earlier "
                 "part (with resume= that part's checkpoint); its end frame's count and bytes match, and the "
                 "digest chain needs the earlier part").format(**s["continues_from"])
    rows = [
        ("state", state),
        ("stream id", s["stream_id"] or "unknown"),
        ("chunks", s["chunks"]),
        ("payload", f"{s['payload_bytes']} B stored, {s['raw_bytes']} B uncompressed ({s['frame_bytes']} B "
                    f"in frames{', the end frame included' if s['declared'] is not None else ''})"),
        ("formats", counts(s["formats"])),
        ("compressions", counts(s["compressions"])),
        ("checksums", counts(s["checksums"]) + " (payloads not read: `tether verify` checks them)"),
    ]
    end = s["declared"]
    if end is not None:
        rows.append(("end frame", f"count {end['count']}, bytes {end['bytes']}, digest {end['digest']}"))
    cp = s["checkpoint"]
    start = s.get("continues_from")
    if start is not None:
        rows.append(("continues", f"from chunk {start['seq']}, offset {start['offset']} (an earlier part's "
                                  "checkpoint: the digest chain is not checked)"))
    if cp is not None:
        use = ("the stream is complete: nothing resumes from it" if cp["ended"] else
               "its payloads unchecked: `tether verify` gives the checkpoint of the last chunk that checks out")
        rows.append(("checkpoint", f"seq {cp['seq']}, offset {cp['offset']}, digest {cp['digest']} ({use})"))
    if s["problem"] is not None:
        p = s["problem"]
        rows.append(("problem", f"at chunk {p['chunk']}: {p['error']}: {p['message']}"))
    width = max(len(k) for k, _ in rows)
    return ["stream summary (headers and metadata only)"] + [f"  {k:<{width}}  {v}" for k, v in rows]


def _region_hint(data: Any) -> str:
    """What to do instead when the bytes that are not a frame are a shared-memory region's."""
    from .shm import MAGIC

    if bytes(data[: len(MAGIC)]) != MAGIC:
        return ""
    return ("this is a tether shared-memory region, not a frame: `tether shm ls` lists the regions "
            "in /dev/shm, and tether.shm.Region.attach(name) reads their frames")


def _shm_ls(as_json: bool, shm_dir: str) -> int:
    from . import TetherError, shm

    rows = []
    orphans = set(shm.gc(directory=shm_dir, private_dirs=False, dry_run=True))  # what `shm gc` would take
    # Directories under the same prefix are BEAM workers' private directories, not regions.
    entries = sorted((e for e in os.scandir(shm_dir) if not e.is_dir(follow_symlinks=False)), key=lambda e: e.name)
    for entry in entries:
        name = entry.name
        if name.startswith("tether-"):
            if not entry.is_file(follow_symlinks=False):
                # Regions are plain files: opening a FIFO would wait for a writer, a link points elsewhere.
                rows.append({"name": name, "capacity": None, "owner_pid": None, "frames": None, "orphan": False,
                             "error": "not a regular file, so not a tether region; remove it if nothing uses it"})
                continue
            try:
                r = shm.Region.attach(entry.path)
                rows.append({"name": name, "capacity": r.capacity, "owner_pid": r.owner_pid,
                             "frames": len(r.frames()), "orphan": entry.path in orphans, "error": None})
                r.close()
            except TetherError as exc:
                rows.append({"name": name, "capacity": None, "owner_pid": None, "frames": None,
                             "orphan": entry.path in orphans, "error": _not_region(entry.path, exc)})
    # The regions' keys too (None where they mean nothing), so that a reader of the region rows reads these.
    dirs = [{"kind": "private_dir", "name": os.path.basename(d["path"]), "capacity": None, "frames": None,
             "orphan": not d["owner_alive"], "error": None, **d} for d in shm.private_dirs(shm_dir)]
    if as_json:
        _print_json([{"kind": "region", **row} for row in rows] + dirs)
        return 0
    gone = "  (owner gone: `tether shm gc` removes it)"
    for row in rows:
        state = gone if row["orphan"] else ""
        if row["error"] is None:
            print(f"{row['name']}  {row['capacity']:>12} B  owner {row['owner_pid']}  frames {row['frames']}{state}")
        else:
            print(f"{row['name']}  unreadable: {row['error']}{state}")
    for d in dirs:
        state = "" if d["owner_alive"] else "  (node gone: `tether shm gc` removes it)"
        print(f"{d['name']}/  {d['bytes']:>12} B  BEAM worker, node {d['owner_pid']}  files {len(d['files'])}{state}")
    if not rows and not dirs:
        print(f"no tether regions or BEAM workers' private directories in {shm_dir}")
    return 0


def _not_region(path: str, exc: BaseException) -> str:
    """Why a ``tether-`` file could not be attached: not a region at all (no region magic), or a damaged one."""
    from .shm import MAGIC

    try:
        with open(path, "rb") as f:
            head = f.read(len(MAGIC))
    except OSError:
        return str(exc)
    if head != MAGIC:
        return "not a tether region (no region header): a file named like one; remove it if nothing uses it"
    return str(exc)


def _shm(args: argparse.Namespace) -> int:
    from . import shm

    if not os.path.isdir(args.shm_dir):
        print(f"tether: shm {args.shm_cmd}: --shm-dir {args.shm_dir}: not a directory", file=sys.stderr)
        return 2
    try:  # gc would find nothing in a directory it cannot list, and say all is clean
        with os.scandir(args.shm_dir):
            pass
    except OSError as exc:
        print(f"tether: shm {args.shm_cmd}: --shm-dir {args.shm_dir}: cannot list it ({exc.strerror}); run as "
              "the user whose regions it holds", file=sys.stderr)
        return 2
    args.shm_dir = os.path.abspath(args.shm_dir)  # a bare name means a region in /dev/shm to Region.attach
    if args.shm_cmd == "gc":
        # That directory only: gc takes this user's dead regions (name, magic and owner checked) and dead nodes' dirs.
        removed = shm.gc(directory=args.shm_dir, dry_run=args.dry_run)
        done = "would be removed" if args.dry_run else "removed"
        for path in removed:
            print(f"{'would remove' if args.dry_run else 'removed'} {path}")
        print(f"{len(removed)} orphan(s) {done} (regions and BEAM workers' private directories)")
        return 0
    return _shm_ls(args.json, args.shm_dir)


def _seconds(value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "-"
    return f"{value * 1e6:.1f} µs" if value < 1e-3 else f"{value * 1e3:.2f} ms" if value < 1 else f"{value:.3f} s"


def _print_operations(rows: list[dict[str, Any]], prefix: str) -> None:
    """The metrics' operation rows as a table: one line per (op, format, compression, transport, size)."""
    head = ("op", "format", "compression", "transport", "size", "count", "p50", "p95", "p99", "MB/s", "errors")
    table = [head] + [
        (r.get("op"), r.get("format"), r.get("compression"), r.get("transport"), r.get("size_class"), r.get("count"),
         _seconds(r.get("p50")), _seconds(r.get("p95")), _seconds(r.get("p99")),
         f"{r['throughput'] / 1e6:.1f}" if r.get("throughput") else "-", sum((r.get("errors") or {}).values()))
        for r in rows
    ]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(head))]
    for row in table:
        print(prefix + "  ".join(str(cell).ljust(w) if i < 5 else str(cell).rjust(w)
                                 for i, (cell, w) in enumerate(zip(row, widths))).rstrip())


def _print_snapshot(snapshot: dict[str, Any], prefix: str = "") -> None:
    """A snapshot as indented text: maps nested, the operations as a table, other lists one item a line."""
    for key, value in snapshot.items():
        if key == "operations" and isinstance(value, list) and value:
            print(f"{prefix}{key}:")
            _print_operations(value, prefix + "  ")
        elif isinstance(value, dict) and value:
            print(f"{prefix}{key}:")
            _print_snapshot(value, prefix + "  ")
        elif isinstance(value, list) and value:
            print(f"{prefix}{key}:")
            for item in value:
                print(f"{prefix}  - {json.dumps(item, default=_json_default)}")
        else:
            print(f"{prefix}{key}: {json.dumps(value, default=_json_default)}")


def _stats(args: argparse.Namespace) -> int:
    from . import TetherError

    try:
        from .worker import read_stats, workers
    except ImportError:
        print("tether: stats: tether.worker in this installation has no read_stats(), so a running "
              "worker's snapshot cannot be reached; install a tether whose worker provides it", file=sys.stderr)
        return 2
    target: int | str | None = args.target
    if target is None:
        running = workers()
        if not running:
            return _stats_error(args, "NoWorker", "no tether worker is running (a worker started by the BEAM, "
                                "which gives it --stats-dir, is listed here)", 1)
        if len(running) != 1:
            return _stats_error(args, "SeveralWorkers", "name the worker (its pid or stats directory); running "
                                f"workers: {', '.join(map(str, running))}", 2)
        target = running[0]
    elif target.isascii() and target.isdigit():  # a pid, as Tether.Worker.info/1 reports it
        target = int(target)
    try:
        snapshot = read_stats(target)
    except TetherError as exc:
        return _stats_error(args, type(exc).__name__, str(exc), 1)
    except OSError as exc:
        return _stats_error(args, "OSError", f"cannot read the worker's snapshot: {exc.strerror or exc}", 1)
    if args.json:
        _print_json(snapshot)
    else:
        _print_snapshot(snapshot)
    return 0


def _stats_error(args: argparse.Namespace, kind: str, message: str, status: int) -> int:
    """Say why ``stats`` failed on stderr and, with ``--json``, as ``{"target", "error"}`` on stdout (as the
    frame commands do); return ``status``."""
    where = f" {args.target}" if args.target is not None else ""
    print(f"tether: stats{where}: {kind}: {message}" if kind not in ("NoWorker", "SeveralWorkers")
          else f"tether: stats: {message}", file=sys.stderr)
    if args.json:
        _print_json({"target": args.target, "error": {"type": kind, "message": message}})
    return status


def _bench(args: argparse.Namespace) -> int:
    from . import TetherError
    from .bench import check_groups, run

    try:
        check_groups(args.only)
    except TetherError as exc:
        args.usage_error(str(exc))  # a usage error: exit status 2, with bench's usage line
    try:
        return run(quick=args.quick, only=args.only, json_path=args.json_path, compare=args.compare,
                   plot_dir=args.plot_dir, fail=not args.no_fail)
    except TetherError as exc:
        print(f"tether: bench: {exc}", file=sys.stderr)
        return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run the tether command line; return the exit status.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments after ``tether``; ``sys.argv[1:]`` when omitted.

    Returns
    -------
    int
        0 on success; 1 for a bad frame, a missed benchmark target or a worker
        that cannot be read; 2 for a usage error or an unreadable file.

    Examples
    --------
    >>> main(["shm", "ls", "--json"])  # doctest: +ELLIPSIS
    [...]
    0
    """
    args = _parser().parse_args(argv)
    try:
        status = _run(args)
        sys.stdout.flush()  # inside the try: a closed pipe shows here at the latest
    except BrokenPipeError:
        # The reader went away (`tether inspect --json F | head -1`): stop quietly, as cat does, with
        # stdout pointed at /dev/null so that the interpreter's own flush at exit cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return status


def _run(args: argparse.Namespace) -> int:
    if args.cmd in ("inspect", "verify"):
        return _frame_cmd(args)
    if args.cmd == "shm":
        return _shm(args)
    if args.cmd == "stats":
        return _stats(args)
    if args.cmd == "bench":
        return _bench(args)
    return 2  # pragma: no cover
