"""The Python worker that BEAM drives: ``python -m tether.worker --module my_handlers``.

The BEAM starts it as a port with ``{packet, 4}``; every message is a tether
frame. The protocol is ``docs/format.md`` §8; in short:

1. Handshake. The BEAM sends ``{hello, Info}``; the worker checks the versions
   (equal majors, and equal minors for 0.x), imports every ``--module``, and
   answers ``{ready, Info}``, or ``{refused, Reason}`` and exits with status 2.
2. Calls. ``{call, Id, Module, Function, Args, Opts}`` runs
   ``Module.Function(*Args)`` (public callables of the started modules only,
   not names a module merely imported from another unless its ``__all__``
   lists them;
   ``async def`` ones are awaited on one event loop the worker keeps) and is
   answered ``{reply, Id, {ok, Value}}`` or ``{reply, Id, {error, Reason}}``.
3. Values. Arrays, tables, DataFrames and binaries of 64 KiB or more travel
   as embedded frames, ``{'$tether', Frame}`` or, above ``--shm-threshold``,
   ``{'$tether_shm', Path, Offset, Len}`` in the worker's region (valid until
   the next call), anywhere inside maps, lists and tuples, both ways. NaN and
   the infinities travel as the atoms ``nan``, ``infinity``, ``neg_infinity``.
   Every frame is written for ``reader="beam"`` (arrays row-major, gzip or no
   compression); frames through the pipe carry CRC-32 checksums.
4. Cancelling. ``SIGUSR1`` raises :class:`Cancelled` in the running handler
   (answered ``{error, cancelled}``); between calls it is ignored.
5. Logging. From ``ready`` on, records of the root logger arrive as
   ``{log, Level, Logger, Message, Meta}`` messages, and so does every line
   written to stdout or stderr (fd 1 and 2, C code included), as ``warning``
   from logger ``<<"stderr">>``. Before ``ready``, stderr is left as the BEAM
   gave it, so an interpreter that dies while importing is seen there.

Malformed input never kills or hangs the worker: a bad message is answered
``{reply, -1, {error, {bad_request, Message}}}`` (the request's Id when it
has one); a length prefix over ``--max-message`` (256 MiB: larger data goes
through shared memory) or one that disagrees with the frame it announces
puts the stream out of step, so the worker answers, then exits with status 1.
Messages are read in bounded steps: memory follows the bytes that arrive,
never the length a prefix declares.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import collections
import contextlib
import ctypes
import gc
import importlib
import inspect
import json
import logging
import mmap
import os
import platform
import re
import select
import signal
import stat
import struct
import sys
import threading
import time
import traceback
import warnings
import weakref
from functools import partial
from types import ModuleType
from typing import Any, Callable, Mapping, NoReturn

import tether
from tether import (Atom, ChecksumError, DecodeError, EncodeError, TetherError, ValidationError, _api, _buffers,
                    compression, formats, frame)
from tether import _etf, _structs
from tether._files import NotRegularFile, open_regular
from tether._sched import BatchPolicy
from tether._types import FLOAT_ATOMS, ImproperList
from tether import arrow as arrow_api
from tether._etf import tags as etf_tags
from tether.shm import RegionError, RegionPool

try:  # tether.metrics may be missing from an older tether in the worker's environment
    from tether import metrics as _metrics
except ImportError:  # pragma: no cover - present in this tree
    _metrics = None  # type: ignore[assignment]

__all__ = [
    "BYTES_TAG", "COMPACT_MAGIC", "MARKERS", "WALK", "Cancelled", "Channel", "LogForwarder", "MessageError",
    "Spin", "StatsError", "Worker", "compact", "compatible", "decode", "handshake", "main", "read_compact",
    "read_stats", "ready_info", "run", "serve", "transform", "workers",
]

# Embedded frames larger than this travel through shared memory.
SHM_THRESHOLD = 1 << 20
# Binaries at least this large travel as embedded frames (checked, and through shared memory when large).
EMBED_MIN = 64 << 10
# The largest message read from the pipe; larger data belongs in shared memory.
MAX_MESSAGE = 256 << 20
# A message is read in steps of at most max(READ_STEP, bytes already read).
READ_STEP = 1 << 20
# PING echoes (the benchmark's baseline) are small; a larger "PING" is garbage.
PING_MAX = 1 << 20
# How long `python -m tether.worker` polls for the next message before sleeping in read() (--spin-us).
SPIN_US = 200
# The longest spin accepted (10 ms): past that, the wake-up it saves is a small part of the wait it fills.
SPIN_US_MAX = 10_000
# Waits that skip spinning after spins that found nothing: 1, 2, 4, ... up to this many.
SPIN_BACKOFF_MAX = 64
# Inline frames are checked with CRC-32, which the BEAM computes natively. Frames in
# shared memory follow the "auto" rule (CRC-32 up to 1 MiB, none above): the
# region's commit protocol guards them, and a 256 MiB tensor then costs no pass
# over its bytes on either side.
INLINE_CHECKSUM = "crc32"
SHM_CHECKSUM = "auto"
EXIT_OK, EXIT_PROTOCOL, EXIT_REFUSED = 0, 1, 2
# Once the BEAM has closed the port, how long threads a handler left running have to finish before the worker
# exits without them.
EXIT_GRACE = 0.5
# How many (function, argument position) pairs a worker remembers warning of charlists for.
CHARLIST_WARNINGS = 4096
# A stderr line longer than this is cut: its first LINE_MAX bytes are sent, with a note, and the rest dropped
# (a 5 MB line printed by a library would otherwise reach Logger as 80 warnings).
LINE_MAX = 64 << 10
# A log message longer than this is cut (the BEAM's Logger is not a bulk channel).
LOG_MESSAGE_MAX = 256 << 10
# Before ready: the log records and alerts kept (the newest, within a budget of characters for their messages),
# and the stderr bytes read back (the newest), for the BEAM.
EARLY_RECORDS = 1000
EARLY_CHARS = 4 << 20
EARLY_STDERR = 1 << 20

(_HELLO, _READY, _REFUSED, _CALL, _REPLY, _OK, _ERROR, _LOG, _SHM, _TABLES, _CANCELLED) = map(
    Atom, ("hello", "ready", "refused", "call", "reply", "ok", "error", "log", "shm", "tables", "cancelled"))
# The argument marker {'$tether_bytes', Bin} (docs/format.md §8): Bin reaches the handler as bytes,
# never decoded, even when it is a whole frame. The BEAM's side is ?TAG_BYTES in tether.hrl.
BYTES_TAG = "$tether_bytes"
# The argument markers this worker reads, listed in its ready under the binary key "markers" (a BEAM
# that does not know that atom still decodes the ready). Every tuple whose first element is an atom
# starting "$tether" is tether's: one this worker does not know is refused, never handed on as a tuple.
MARKERS = ["$tether", "$tether_shm", "$tether_table", BYTES_TAG]
_MARKER_PREFIX = "$tether"
_EMBED, _EMBED_SHM, _EMBED_TABLE, _EMBED_BYTES = map(Atom, MARKERS)
_STATS, _PLAIN, _ECHO, _ALERT = Atom("stats"), Atom("plain"), Atom("echo"), Atom("alert")
# The one-way notices this worker reads (never answered), listed in its ready under the binary key "notices".
NOTICES = ["release_shm"]
_RELEASE_SHM = Atom("release_shm")
_ALERT_STATES = {"firing": Atom("firing"), "cleared": Atom("cleared")}
# The file a worker writes its metrics snapshot to, in its --stats-dir, on SIGUSR2.
STATS_FILE = "stats.json"
# Beside it, the id of the call the BEAM cancels, written (then renamed into place) before each SIGUSR1.
CANCEL_FILE = "cancel"

_TABLE_FORMS = {"arrow": "arrow", "rows": "rows", "columns": "columns"}
_NAN, _INF, _NEG_INF = map(Atom, ("nan", "infinity", "neg_infinity"))
_ATOM_FLOATS = FLOAT_ATOMS  # one table of which atoms stand for which floats (tether._types)
_LEVELS = ((logging.CRITICAL, Atom("critical")), (logging.ERROR, Atom("error")),
           (logging.WARNING, Atom("warning")), (logging.INFO, Atom("info")))
_DEBUG, _WARNING, _STDERR = Atom("debug"), Atom("warning"), "stderr"
WALK = object()  # what a transform's visit returns for a container to descend into
_PREFIX = struct.Struct(">I")
# A compact message (docs/format.md §8, "Compact messages"): magic, CRC-32 of the ETF term, the term.
# Inline calls and their replies use it once the ready said the worker reads it: a small call
# then skips the frame's 64-byte header and metadata map, and both sides a pass over each.
COMPACT_MAGIC = b"TTMC"
COMPACT_FIELDS = (("magic", "4s"), ("crc32", "I"))  # then the term, to the message's end
_COMPACT = struct.Struct("<" + "".join(code for _, code in COMPACT_FIELDS))
COMPACT_HEADER = _COMPACT.size
# What the ready's ``messages`` says this worker reads.
MESSAGE_FORMS = ["frame", "compact"]
# Room a region needs beyond its frames (header, slots, alignment).
_REGION_SLACK = 1 << 16


def _field(name: str) -> tuple[struct.Struct, int]:
    """The struct and offset of one header field, from the frame layer's table of them."""
    names = [n for n, _ in frame.FIELDS]
    prefix = "".join(code for _, code in frame.FIELDS[: names.index(name)])
    return struct.Struct("<" + dict(frame.FIELDS)[name]), struct.calcsize("<" + prefix)


# The fields a frame's size follows from, read without verifying the header: only
# a disagreement with the length prefix is worth the full check (loads makes it).
(_MLEN, _MLEN_AT), (_PLEN, _PLEN_AT) = _field("metadata_length"), _field("payload_length")
_LEAVES = frozenset((int, str, bool, type(None), Atom))


class Cancelled(BaseException):
    """Raised in a running handler when the BEAM cancels its call (``SIGUSR1``).

    A ``BaseException``, like ``KeyboardInterrupt``, so ``except Exception``
    in a handler does not swallow it; clean up with ``finally``.

    Examples
    --------
    >>> issubclass(Cancelled, Exception)
    False
    """


class StatsError(TetherError):
    """A worker's metrics cannot be had: no ``tether.metrics``, or no running worker at the target.

    Examples
    --------
    >>> issubclass(StatsError, tether.TetherError)
    True
    """


class MessageError(DecodeError):
    """A message that is not one: garbage, or a length prefix the stream cannot follow.

    ``fatal`` means the stream is out of step (the worker answers, then exits);
    otherwise ``remaining`` bytes of the message are still to be skipped.

    Examples
    --------
    >>> MessageError("bad", fatal=True).fatal
    True
    """

    def __init__(self, message: str, *, fatal: bool = False, remaining: int = 0):
        super().__init__(message)
        self.fatal = fatal
        self.remaining = remaining


_ETF = formats.get("etf")
_CRC32 = frame.checksum.requested(INLINE_CHECKSUM)
# Where the decoders put text-like charlists while the worker reads a request (its arguments), and the list
# they go to: one per process, as a worker reads its requests on its main thread.
_CHARLISTS = _etf.CHARLIST_SINK
_FOUND: list[str] = []


_PROTOCOL_ETF = {"nan": "error"}


def _frame(term: Any) -> bytes:
    """One message: an etf frame the BEAM reads (no compression, CRC-32).

    The etf format's one-step writer makes the same bytes as ``tether.dumps``
    without its option handling, which a small call would notice; a term it
    cannot write goes to ``dumps`` for the typed error.
    """
    plain = _ETF.dumps_plain(term, _CRC32, "memory") if not _PEER_TYPES else None
    if plain is not None:
        return plain[0]
    # nan="error": a non-finite float is the reply walk's to write as the BEAM's atom (_visit_out), unmarked.
    options = {**_PROTOCOL_ETF, "versions": {"types": dict(_PEER_TYPES)}} if _PEER_TYPES else _PROTOCOL_ETF
    return tether.dumps(term, format="etf", checksum=INLINE_CHECKSUM, reader="beam", options=options)


def compact(term: Any) -> bytes:
    """``term`` as a compact message; a term the one-step ETF writer cannot take goes out as a frame.

    Examples
    --------
    >>> m = compact((tether.Atom("echo"), 1))
    >>> m[:4], read_compact(m)
    (b'TTMC', (Atom('echo'), 1))
    """
    try:
        body = _etf.encode(term, _ETF.encode_options(), bytes_tag=_etf.BIT_BINARY, convert=_peer_convert())
    except Exception:  # noqa: BLE001 - the general path writes it, or raises its typed error
        return _frame(term)
    return _COMPACT.pack(COMPACT_MAGIC, frame.checksum.crc32(body)) + body


def read_compact(message: Any, options: Any = None) -> Any:
    """The term of a compact message, its CRC-32 checked; ``options`` as the worker decodes requests.

    Raises :class:`tether.ChecksumError` when the term's bytes do not match the
    CRC, and :class:`tether.DecodeError` for anything that is not one message.

    Examples
    --------
    >>> m = bytearray(compact((tether.Atom("echo"), 1)))
    >>> read_compact(m)
    (Atom('echo'), 1)
    >>> m[-1] ^= 1
    >>> read_compact(m)
    Traceback (most recent call last):
    ...
    tether._errors.ChecksumError: a compact message's CRC-32 is 0x..., its header says 0x...: the bytes changed ...
    """
    mv = _buffers.as_view(message)
    magic, crc = _COMPACT.unpack_from(mv) if len(mv) > COMPACT_HEADER else (None, 0)
    if magic != COMPACT_MAGIC:
        raise DecodeError(f"a {len(mv)}-byte message that is not a compact message (magic, CRC-32, ETF term).")
    body = mv[COMPACT_HEADER:]
    found = frame.checksum.crc32(body)
    if found != crc:
        raise ChecksumError(f"a compact message's CRC-32 is {found:#010x}, its header says {crc:#010x}: "
                            "the bytes changed on the way; send it again.")
    return _etf.decode(body, _decode_options(options))


def decode(message: Any, options: Any = None) -> Any:
    """Any message of the worker protocol as Python reads it: a compact message or an etf frame.

    A compact message has no type information: its binaries arrive as the
    BEAM's do (``bytes``). ``options={"binaries": "tagged"}`` reads one that
    Python wrote as ``tether.loads`` reads the same term in a frame (``str`` stays ``str``).

    Examples
    --------
    >>> term = (tether.Atom("echo"), "text", b"bytes")
    >>> decode(compact(term), {"binaries": "tagged"}) == decode(tether.dumps(term, format="etf")) == term
    True
    """
    if bytes(_buffers.as_view(message)[:4]) == COMPACT_MAGIC:
        return read_compact(message, options)
    return tether.loads(message)


# Limits, worker options and their ETF decode options for compact messages, replaced whole so that a
# thread never sees half an update (the etf format's own cache needs a DecodeContext built per call).
_compact_decoding: tuple = (None, None, None)


def _decode_options(options: Any) -> Any:
    """The ETF options a compact message is read with: as the etf format reads a BEAM-written frame.

    ``options`` are the worker's (its ``binaries``); cached by the limits' and the options' identity.
    """
    global _compact_decoding
    limits = tether.get_limits()
    cached = _compact_decoding
    if cached[0] is not limits or cached[1] is not options:
        if options is not None and not isinstance(options, Mapping):  # checked on a miss: hits were checked before
            raise ValidationError(
                f"options must be a dict of ETF decode options (such as {{'binaries': 'tagged'}}) or None, "
                f"got {type(options).__name__}."
            )
        ctx = formats.DecodeContext(options=options or {}, limits=limits, frame="compact message")
        cached = _compact_decoding = (limits, options, _ETF.decode_options({"binaries": "beam"}, ctx))
    return cached[2]


def _text(value: Any) -> str:
    """A name from the BEAM (binary, atom or str) as text; a DecodeError when it is not UTF-8."""
    if type(value) is bytes and value.isascii():
        return value.decode("ascii")
    if isinstance(value, str):
        return str(value)
    if isinstance(value, (bytes, memoryview)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise DecodeError(f"{bytes(value[:60])!r} is not UTF-8; module and function names are UTF-8 text.") \
                from None
    raise DecodeError(f"expected a name (a binary or an atom), got {_kind(value)}.")


# What the request tuple's elements are called in messages: {call, Id, Module, Function, Args, Opts}.
_CALL_PARTS = {"1": "Id", "2": "Module", "3": "Function", "4": "$", "5": "Opts"}
_CALL_PATH = re.compile(r"(?:^|(?<=at ))\$\[([1-5])\]")
_ARGUMENT = re.compile(r"\$\[(\d+)\]")


def _call_path(text: str) -> str:
    """``text`` (a decoder's message, or a path) with its first path made the arguments': ``$[4][0][1]``, the
    request's Args, is ``$[0][1]``, as the README and every other argument error say; ``$[5].tables`` is
    ``Opts.tables``.

    Examples
    --------
    >>> _call_path("keys collide at $[4][0][1] (offset 61)."), _call_path("$[5].tables ('rows')")
    ('keys collide at $[0][1] (offset 61).', "Opts.tables ('rows')")
    """
    return _CALL_PATH.sub(lambda m: _CALL_PARTS[m.group(1)], text, count=1)


def _kind(value: Any) -> str:
    """What a value is, for messages, without ``repr`` (values may be huge or nested 5,000 deep)."""
    n = f" of {len(value)} elements" if isinstance(value, (tuple, list, dict)) else ""
    return f"a {type(value).__name__}{n}"


# ---------------------------------------------------------------- walking values


def _items(container: Any) -> Any:
    if isinstance(container, dict):
        return iter(container.items())
    if isinstance(container, ImproperList):  # its items, then its tail, as one more index
        return enumerate([*container.items, container.tail])
    return enumerate(container)


def _rebuild(container: Any, changes: dict) -> Any:
    """A copy of ``container`` with ``changes`` (key or index → value); dict/list/tuple subclasses become plain."""
    if isinstance(container, dict):
        out = dict(container)
        out.update(changes)
        return out
    improper = isinstance(container, ImproperList)
    items = [*container.items, container.tail] if improper else list(container)
    for index, value in changes.items():
        items[index] = value
    if improper:
        return ImproperList(items[:-1], items[-1])
    return items if isinstance(container, list) else tuple(items)


def _path(stack: list, key: Any) -> str:
    """``$.rows[3].price`` for the value at ``key`` under the containers on ``stack`` (the last 20 steps)."""
    keys = [entry[3] for entry in stack[1:]] + [key]
    return "$" + ("..." if len(keys) > 20 else "") + "".join(_step(k) for k in keys[-20:])


def _step(key: Any) -> str:
    if isinstance(key, str) and key.isidentifier():
        return f".{key}"
    if isinstance(key, (int, str, bytes)):  # only a short prefix is shown: keys may be huge
        return f"[{key if isinstance(key, int) else key[:40]!r}]"
    return f"[<{type(key).__name__}>]"


def transform(root: Any, visit: Callable[[Any], Any], error: type[TetherError] = EncodeError) -> Any:
    """``root`` with each value replaced by ``visit(value)``; containers are copied only where something changed.

    ``visit`` returns the value to use, or the sentinel ``WALK`` to descend
    into a dict (its values), list or tuple. The walk is iterative (any depth)
    and refuses a container that contains itself. A TetherError from ``visit``
    is raised again as ``error``, with the value's path.

    Examples
    --------
    >>> transform({"a": [1, 2.5]}, lambda v: WALK if isinstance(v, (dict, list)) else v * 2)
    {'a': [2, 5.0]}
    """
    if not callable(visit):
        raise ValidationError(f"visit must be a function of one value, got {type(visit).__name__}.")
    if not (isinstance(error, type) and issubclass(error, TetherError)):
        raise ValidationError(f"error must be a subclass of tether.TetherError, got {error!r}.")
    first = visit(root)
    if first is not WALK:
        return first
    stack: list[list] = [[root, _items(root), None, None]]  # container, items, changes, key in parent
    on_path = {id(root)}
    while True:
        top = stack[-1]
        for key, child in top[1]:
            try:
                new = visit(child)
            except TetherError as exc:
                raise error(f"{_path(stack, key)}: {exc}") from exc
            if new is WALK:
                if id(child) in on_path:
                    raise error(f"{_path(stack, key)} contains itself; a reply must be a finite term.")
                on_path.add(id(child))
                stack.append([child, _items(child), None, key])
                break
            if new is not child:
                top[2] = top[2] or {}
                top[2][key] = new
        else:
            container, _, changes, key = stack.pop()
            on_path.discard(id(container))
            built = _rebuild(container, changes) if changes else container
            if not stack:
                return built
            if built is not container:
                parent = stack[-1]
                parent[2] = parent[2] or {}
                parent[2][key] = built


# ---------------------------------------------------------------- the pipe


def pinned_cpus(role: str, offset: int, index: int, spinners: int, allowed: frozenset[int]) -> frozenset[int] | None:
    """The CPUs a pool member keeps to (``--pin``), or None to leave it where the kernel puts it.

    A pool's ``spinners`` polling members each take one CPU, in turn from ``offset`` among the
    ``allowed`` ones (the BEAM's pools take turns, so that two pools start on different CPUs), and
    its sleeping members take the rest. Otherwise the kernel may wake a sleeping member on a
    polling one's CPU, where the two share it: on 2 cores that made a pool of 2 serve 8 callers
    at 15-20 µs a call instead of 13-14. With no sleeping CPU left (as many polling members as
    CPUs) or none polling, nothing is pinned.

    Parameters
    ----------
    role : {"spinner", "sleeper"}
        Whether this member polls for its next call.
    offset, index : int
        The pool's first CPU slot, and this polling member's slot after it (sleepers: unused).
    spinners : int
        How many of the pool's members poll.
    allowed : frozenset of int
        The CPUs this process may run on (``os.sched_getaffinity(0)``).

    Examples
    --------
    >>> pinned_cpus("spinner", 0, 0, 1, frozenset({0, 1})), pinned_cpus("sleeper", 0, 0, 1, frozenset({0, 1}))
    (frozenset({0}), frozenset({1}))
    >>> pinned_cpus("spinner", 3, 1, 2, frozenset({2, 5, 7, 9}))  # slots 3 and 4 of 4: CPUs 9 and 2
    frozenset({2})
    >>> pinned_cpus("sleeper", 0, 0, 2, frozenset({0, 1})) is None  # every CPU polls
    True
    """
    cpus = sorted(allowed)
    if not 0 < spinners < len(cpus) or role not in ("spinner", "sleeper"):
        return None
    if role == "spinner":
        return frozenset({cpus[(offset + index) % len(cpus)]})
    return frozenset(cpus) - {cpus[(offset + k) % len(cpus)] for k in range(spinners)}


def _pin(spec: str) -> bool:
    """Apply ``--pin ROLE:OFFSET:INDEX:SPINNERS``; a host that refuses leaves the worker where it is.

    Returns whether this is a sleeping member pinned beside the BEAM's schedulers, which serves its
    calls under a :class:`BatchPolicy` (``tether._sched``).
    """
    role, *numbers = spec.split(":")
    try:
        offset, index, spinners = (int(n) for n in numbers)
        cpus = pinned_cpus(role, offset, index, spinners, frozenset(os.sched_getaffinity(0)))
        if cpus is not None:
            os.sched_setaffinity(0, cpus)
    except (ValueError, OSError, AttributeError) as exc:  # AttributeError: no sched_*affinity on this OS
        logging.getLogger("tether.worker").warning(
            "tether worker: --pin %s not applied (%s); the worker runs wherever the kernel puts it", spec, exc)
        return False
    return cpus is not None and role == "sleeper"


class Spin:
    """Polls the input for up to ``us`` microseconds before the worker sleeps in ``read()``.

    Why: a process asleep in ``read()`` can take 50-150 µs to be woken on a
    virtual machine, whose idle CPU must be scheduled again, and that is
    several times the work of a small call. The BEAM's schedulers busy-wait
    for the same reason. Each poll yields the CPU (``sched_yield``) to
    whatever else is ready to run on it, such as a BEAM scheduler producing
    the next request. A spin that finds nothing makes the next 1, 2, 4, ... 64
    waits skip spinning, and a spin that finds a message ends the back-off:
    a worker whose calls come further apart than ``us`` spins for one wait
    in 65 (and the first calls of a burst after that may find it asleep).
    The end of input counts as found. ``us=0`` never spins.

    Parameters
    ----------
    fd : int
        The descriptor the next message arrives on (the worker's fd 0).
    us : int
        How long to poll, 0 to :data:`SPIN_US_MAX` microseconds; ``python -m
        tether.worker`` takes it from ``--spin-us`` (default :data:`SPIN_US`).

    Examples
    --------
    >>> import os
    >>> r, w = os.pipe()
    >>> spin = Spin(r, 100)
    >>> spin.wait()  # nothing arrives: 100 µs of polling, then back off
    >>> _ = os.write(w, b"x")
    >>> spin.wait()  # skipped: the back-off after a miss
    >>> spin.wait()  # the byte is there: found at once
    >>> {k: spin.stats()[k] for k in ("us", "hits", "misses", "skipped")}
    {'us': 100, 'hits': 1, 'misses': 1, 'skipped': 1}
    >>> os.close(r); os.close(w)
    """

    def __init__(self, fd: int, us: int):
        if type(us) is not int or not 0 <= us <= SPIN_US_MAX:
            raise ValidationError(f"spin_us must be an int from 0 to {SPIN_US_MAX} (microseconds), got {us!r:.60}.")
        self.us = us
        self.hits = self.misses = self.skipped = 0
        self.spent = 0.0  # seconds spent polling, found or not
        self._skip = self._backoff = 0
        self._poll = None
        if us:
            self._poll = select.poll()
            try:
                self._poll.register(fd, select.POLLIN)
            except (OverflowError, ValueError, TypeError):
                raise ValidationError(f"Spin needs an open file descriptor (an int from 0 to 2**31 - 1), "
                                      f"got {fd!r:.60}.") from None

    def wait(self) -> None:
        """Return once input is ready, or at once when spinning does not pay now (the caller then reads, blocking)."""
        if self._poll is None:
            return
        if self._skip:
            self._skip -= 1
            self.skipped += 1
            return
        poll, clock, pause = self._poll.poll, time.perf_counter, os.sched_yield
        start = now = clock()
        deadline = start + self.us / 1e6
        while not poll(0):
            now = clock()
            if now >= deadline:
                self.spent += now - start
                self.misses += 1
                self._backoff = min(2 * self._backoff or 1, SPIN_BACKOFF_MAX)
                self._skip = self._backoff
                return
            pause()
        self.spent += clock() - start
        self.hits += 1
        self._backoff = 0

    def stats(self) -> dict[str, Any]:
        """The spin's setting and what it did: ``us``, ``hits``, ``misses``, ``skipped`` waits, ``seconds`` polling."""
        return {"us": self.us, "hits": self.hits, "misses": self.misses, "skipped": self.skipped,
                "seconds": self.spent}


class Channel:
    """The port's pipes: {packet, 4} messages read in bounded steps, written whole under one lock.

    Examples
    --------
    >>> import os
    >>> r, w = os.pipe()
    >>> Channel(r, w).write_message(b"PING")
    >>> Channel(r, w).read_message()
    b'PING'
    >>> os.close(r); os.close(w)
    """

    def __init__(self, fd_in: int, fd_out: int, max_message: int = MAX_MESSAGE, spin_us: int = 0):
        for what, fd in (("fd_in", fd_in), ("fd_out", fd_out)):
            if type(fd) is not int or fd < 0:
                raise ValidationError(f"Channel {what} must be an open file descriptor (an int >= 0), got {fd!r:.60}.")
        if type(max_message) is not int or max_message < frame.HEADER_SIZE:
            raise ValidationError(f"Channel max_message must be an int of at least {frame.HEADER_SIZE} (bytes), "
                                  f"got {max_message!r:.60}.")
        self.fd_in = fd_in
        self.fd_out = fd_out
        self.max_message = max_message
        self.buf = bytearray()
        self.pos = 0
        self.lock = threading.Lock()
        self.writer = 0  # the thread writing now (0: none), for the cancel signal
        self.closed = False
        # A cancel that arrived mid-message: raised by ``on_pending`` once the message is whole.
        self.cancel_pending = False
        self.on_pending: Callable[[], None] | None = None
        self.spin = Spin(fd_in, spin_us)  # before each message: see Spin (python -m tether.worker: --spin-us)

    def _fill(self) -> bool:
        chunk = os.read(self.fd_in, 1 << 16)
        if not chunk:
            return False
        if self.pos:
            del self.buf[: self.pos]
            self.pos = 0
        self.buf += chunk
        return True

    def _ensure(self, n: int) -> bool:
        while len(self.buf) - self.pos < n:
            if not self._fill():
                return False
        return True

    def read_message(self) -> bytes | bytearray | memoryview | None:
        """The next message, or None when the BEAM closed the port.

        Raises :class:`MessageError` for a message that cannot be one, as soon
        as its first 64 bytes show it, without waiting for the rest.

        Examples
        --------
        >>> import os
        >>> r, w = os.pipe()
        >>> channel = Channel(r, w)
        >>> channel.write_message(b"PING")
        >>> channel.read_message()
        b'PING'
        >>> os.close(w)
        >>> channel.read_message() is None
        True
        >>> os.close(r)
        """
        if self.pos == len(self.buf):
            whole = self._whole_compact()
            if whole is not None:
                return whole
        if len(self.buf) - self.pos < 4 and not self._ensure(4):
            return None
        pos = self.pos + 4
        (n,) = _PREFIX.unpack_from(self.buf, self.pos)
        self.pos = pos
        if n > self.max_message:
            raise MessageError(
                f"a {n}-byte message is over the worker's --max-message ({self.max_message} B): send large "
                "arguments through shared memory ({shm, Path, Len}).", fatal=True)
        whole = len(self.buf) - pos >= n
        if not whole:
            if not self._ensure(min(n, frame.HEADER_SIZE)):
                return None
            pos = self.pos  # reading more may have moved the buffer's start
        head = self.buf[pos : pos + 4]
        if head != COMPACT_MAGIC and (n < frame.HEADER_SIZE or head != frame.MAGIC or
                                      frame.align(frame.HEADER_SIZE + _MLEN.unpack_from(self.buf, pos + _MLEN_AT)[0])
                                      + _PLEN.unpack_from(self.buf, pos + _PLEN_AT)[0] != n):
            self._refuse(n)  # not a message, or a frame of another size: PING, or garbage
        if whole or n <= 1 << 16:
            if not whole:
                if not self._ensure(n):
                    return None
                pos = self.pos
            self.pos = pos + n
            return bytes(self.buf[pos : pos + n])
        return self._read_large(n)

    def _whole_compact(self) -> bytes | None:
        """With nothing buffered: one read, returned as it is when it holds exactly one compact message.

        The common small call arrives so, and skips the buffer's copies; any
        other read is buffered for :meth:`read_message` to take apart (None).
        """
        self.spin.wait()
        chunk = os.read(self.fd_in, 1 << 16)
        self.buf.clear()
        self.pos = 0
        if len(chunk) > 8 and chunk[4:8] == COMPACT_MAGIC and _PREFIX.unpack_from(chunk)[0] == len(chunk) - 4 \
                and len(chunk) - 4 <= self.max_message:
            return chunk[4:]
        self.buf += chunk
        return None

    def _refuse(self, n: int) -> None:
        """Pass a PING; refuse a message whose first bytes are not a frame, or a frame of another size than ``n``."""
        start = bytes(self.buf[self.pos : self.pos + min(n, frame.HEADER_SIZE)])
        if start[:4] == b"PING" and n <= PING_MAX:
            return
        if n < frame.HEADER_SIZE or start[:4] != frame.MAGIC:
            self.pos += len(start)
            raise MessageError(f"a {n}-byte message that is not a tether frame.", remaining=n - len(start))
        try:
            size = frame.unpack(memoryview(start), tether.get_limits()).frame_size
        except TetherError as exc:
            self.pos += len(start)
            raise MessageError(f"a message whose frame header is bad: {exc}", remaining=n - len(start)) from None
        raise MessageError(
            f"the length prefix says {n} bytes, the frame it announces {size}: the stream is out of step.",
            fatal=True)

    def _read_large(self, n: int) -> memoryview | None:
        """The rest of an ``n``-byte message, grown as bytes arrive (never reserved up front)."""
        out = bytearray(self.buf[self.pos :])
        self.buf.clear()
        self.pos = 0
        while len(out) < n:
            chunk = os.read(self.fd_in, min(n - len(out), max(READ_STEP, len(out))))
            if not chunk:
                return None
            out += chunk
        return memoryview(out).toreadonly()

    def discard(self, n: int) -> bool:
        """Skip ``n`` bytes of a refused message, in bounded steps; False when the input ended first.

        Examples
        --------
        >>> import os
        >>> r, w = os.pipe()
        >>> channel = Channel(r, w)
        >>> _ = os.write(w, b"xyz")
        >>> channel.write_message(b"PING")
        >>> channel.discard(3), channel.read_message()
        (True, b'PING')
        >>> os.close(w)
        >>> channel.discard(1)
        False
        >>> os.close(r)
        """
        have = min(n, len(self.buf) - self.pos)
        self.pos += have
        n -= have
        while n:
            chunk = os.read(self.fd_in, min(n, READ_STEP))
            if not chunk:
                return False
            n -= len(chunk)
        return True

    def write_message(self, payload: bytes) -> None:
        """Send one message whole: one lock around every write, from any thread.

        Once the BEAM is gone (a write fails) the channel is closed and later writes do nothing.

        Examples
        --------
        The ``{packet, 4}`` length prefix, then the message:

        >>> import os
        >>> r, w = os.pipe()
        >>> Channel(r, w).write_message(b"PING")
        >>> os.read(r, 16)
        b'\\x00\\x00\\x00\\x04PING'
        >>> os.close(r); os.close(w)
        """
        head = len(payload).to_bytes(4, "big")
        with self.lock:
            if self.closed:
                return
            self.writer = threading.get_ident()
            try:
                sent = os.writev(self.fd_out, (head, payload))
                if sent < len(payload) + 4:  # a large message: finish the rest
                    rest = memoryview(head + bytes(payload))[sent:] if sent < 4 else memoryview(payload)[sent - 4 :]
                    while rest:
                        rest = rest[os.write(self.fd_out, rest) :]
            except OSError:  # the BEAM is gone: nothing more can be said
                self.closed = True
            finally:
                self.writer = 0
        if self.cancel_pending and self.on_pending is not None:
            self.on_pending()


def _exported(module: ModuleType, name: str, target: Any) -> bool:
    """Whether ``module.name`` is the module's own: not another module's name it imported, or listed in ``__all__``.

    A name a handler module merely imported (``from os import system``) is
    not part of what the module offers the BEAM, so it is not callable, while
    a package that re-exports its submodules' functions keeps them. Values
    the module built from other modules' code (``functools.partial``, a fitted
    model's bound method, a factory's closure) are its own: their home module
    does not hold them under their name.

    Examples
    --------
    >>> import os, posixpath
    >>> _exported(posixpath, "join", posixpath.join), _exported(os, "getcwd", os.getcwd)
    (True, True)
    >>> import tether.demo as demo
    >>> _exported(demo, "Any", demo.Any)  # typing's, imported by tether.demo
    False
    """
    home, own = getattr(target, "__module__", None), module.__name__
    if type(home) is str and (home == own or home.startswith(own + ".")):
        return True
    listed = getattr(module, "__all__", None)
    if type(listed) in (list, tuple) and name in listed:
        return True
    home_module = sys.modules.get(home) if type(home) is str else None
    return home_module is None or getattr(home_module, getattr(target, "__name__", name), None) is not target


# ---------------------------------------------------------------- the worker


class Worker:
    """Answers calls for an allow-list of modules: decodes arguments, runs handlers, encodes results.

    Parameters
    ----------
    modules : dict of str to module
        The modules the BEAM may call, by name; only their public functions.
    shm_threshold : int
        Embedded frames larger than this go through the worker's shared-memory region.
    binaries : {"bytes", "str"}
        How BEAM binaries arrive in handler arguments ("str": valid UTF-8 ones as ``str``).
    region_dir : str
        Where the reply regions go: the worker's private directory when the BEAM names one
        (``--stats-dir``), so that they live under the worker's ``shm_dir`` and go with it.

    Examples
    --------
    >>> import math, tether
    >>> w = Worker({"math": math})
    >>> call = tether.dumps((tether.Atom("call"), 1, b"math", b"sqrt", [16.0], {}), format="etf")
    >>> tether.loads(w.handle(call))
    (Atom('reply'), 1, (Atom('ok'), 4.0))
    >>> w.close()
    """

    def __init__(self, modules: dict[str, ModuleType], *, shm_threshold: int = SHM_THRESHOLD, binaries: str = "bytes",
                 region_dir: str = "/dev/shm"):
        self.modules = modules
        self.shm_threshold = shm_threshold
        self.binaries = binaries
        self._decode_options = {"binaries": "tagged" if binaries == "str" else "bytes"}
        self.pool = RegionPool(max_regions=2, prefault=False, sweep=True, directory=region_dir)
        self.region: Any = None
        self._region_fresh = False  # whether this reply already reset the region
        self._running = False
        self._task: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._main = threading.get_ident()
        self.channel: Channel | None = None  # set by serve(): writes and the cancel signal coordinate through it
        self.policy: BatchPolicy | None = None  # a pinned sleeping member's (main() sets it); serve ticks it
        self.calls = 0
        self._last: tuple = ()  # the last call counted, made into ``last_call`` only when asked for
        self._step = ""  # "module.function" of the running call: the lineage step of its result frames
        self._in_call: tuple[str, float] | None = None  # the running call's step and start, while it runs
        self._outcome: str | None = None
        self._handled = 0.0
        self._shm_in = self._shm_out = 0  # bytes of this call's arguments file and region frames
        self._verify = True  # whether embedded frames in the arguments have their payload checksums checked
        self._pending: tuple | None = None  # the last call's figures, until account() counts them
        self.defer_accounting = False
        self._mapped: tuple[tuple, mmap.mmap] | None = None  # the arguments file's mapping, kept between calls
        self._compact = False  # whether the request being answered is a compact message
        self._names: dict[tuple[bytes, bytes], tuple[Any, str, str]] = {}  # (module, function) -> names
        # Where the BEAM names the call each SIGUSR1 cancels (None: a signal cancels whatever runs).
        self.cancel_file: str | None = None
        self._ident: Any = None  # the id of the call being answered
        self._cancel_id: Any = None  # the id the last SIGUSR1 named, until its call has started

    # ------------------------------------------------------------ one call

    def handle(self, message: Any) -> bytes | None:
        """The reply to one request message (never raises: a bad request gets a bad_request reply); None for a
        notice (``{release_shm}``), which has none."""
        started = time.perf_counter()
        ident: Any = -1
        self._shm_in = self._shm_out = 0
        # A reply goes out in its request's form: compact for compact, a frame for a frame.
        self._compact = message[:4] == COMPACT_MAGIC
        try:
            request, start, packed = self._request(message)
            if not (type(request) is tuple and len(request) == 6 and request[0] == _CALL):
                return self._other(request)
            _, ident, mod, fun, args, opts = request
            self._ident = ident
            target, step = self._lookup(mod, fun)
            if target is None:
                return self.message((_REPLY, ident, (_ERROR, (Atom("undefined_function"), _text(mod), _text(fun)))))
            tables = self._tables(opts)
            if type(args) is list and not _may_embed(message, start, packed):
                pass  # the common small call: nothing inside to decode
            else:
                args = self._arguments(args, opts.get(_PLAIN) is True)
            if _FOUND:
                _warn_charlists(_FOUND, self, target, step)
        except Exception as exc:  # noqa: BLE001 - any failure on a request is the request's: answer it
            return self.bad_request(ident, exc)
        self._step = step
        read = time.perf_counter()
        self._in_call = (step, read)  # for stats taken meanwhile (an operator asking what runs, for how long)
        try:
            reply = self._call(ident, target, args, tables)
        finally:
            self._in_call = None
        self._pending = (len(message) + self._shm_in, len(reply) + self._shm_out, self._shm_in or self._shm_out,
                         (started, read, self._handled, time.perf_counter()), self._step, self._outcome)
        if not self.defer_accounting:
            self.account()
        return reply

    def account(self) -> None:
        """Count the last call: the worker's own figures (``stats``) and ``tether.metrics``' ``worker_call``.

        ``serve`` runs it once the reply is written (``defer_accounting``), so the
        caller does not wait for the bookkeeping; otherwise ``handle`` runs it.
        """
        if self._pending is None:
            return
        nbytes_in, nbytes_out, shm, (started, read, handled, done), step, outcome = last = self._pending
        self._pending = None
        route = "shm" if shm else "pipe"
        self.calls += 1
        self._last = last
        if _metrics is not None:
            # The worker's own work, reading the call and writing the reply: the handler's time is the
            # application's, and a slow handler must not read as tether's throughput falling (its alerts).
            _metrics.record("worker_call", "etf", "none", route, nbytes_in, nbytes_out,
                            (read - started) + (done - handled), error=outcome)

    @property
    def last_call(self) -> dict[str, Any]:
        """The last call counted: its function, route, bytes, stages in seconds and error (empty before any)."""
        if not self._last:
            return {}
        nbytes_in, nbytes_out, shm, (started, read, handled, done), step, outcome = self._last
        return {"function": step, "route": "shm" if shm else "pipe", "bytes_in": nbytes_in, "bytes_out": nbytes_out,
                "read_s": read - started, "handler_s": handled - read, "write_s": done - handled, "error": outcome}

    def stats(self, strict: bool = True) -> dict[str, Any]:
        """``tether.metrics.snapshot(strict=strict)`` with a ``worker`` entry: calls answered, the last call's
        stages, the call running now (``running``: its function and seconds so far, or None), and
        ``args_mapped_bytes``, how much of the BEAM's arguments file this worker maps, ``spin`` and ``sched``
        (a pool's sleeping member's scheduling class, ``tether._sched.BatchPolicy.stats``; else None). ``strict`` (for JSON,
        ``stats.json``) writes non-finite floats as strings; the BEAM's reply keeps them floats, which reach it
        as the atoms ``nan``, ``infinity`` and ``neg_infinity``.

        Raises :class:`StatsError` when this tether has no ``tether.metrics``.

        Examples
        --------
        >>> w = Worker({})
        >>> w.stats()["worker"]["calls"]
        0
        >>> w.close()
        """
        if _metrics is None:
            raise StatsError("this tether has no tether.metrics module: upgrade tether in the worker's environment.")
        if threading.get_ident() == self._main:  # the stats thread leaves the main thread's bookkeeping alone
            self.account()
        else:
            self._await_accounting()
        out = _metrics.snapshot(strict=strict)
        running, mapped = self._in_call, self._mapped
        out["worker"] = {"pid": os.getpid(), "calls": self.calls, "last_call": self.last_call,
                         "running": None if running is None else
                         {"function": running[0], "seconds": time.perf_counter() - running[1]},
                         "modules": sorted(self.modules),
                         "args_mapped_bytes": len(mapped[1]) if mapped is not None else 0,
                         "spin": self.channel.spin.stats() if self.channel is not None else None,
                         "sched": self.policy.stats() if self.policy is not None else None}
        return out

    def _await_accounting(self, limit: float = 0.2) -> None:
        # The reply is written before its call is counted (account()), so `tether stats` right after a call
        # returned could read one call short; the main thread counts it within microseconds of the write.
        deadline = time.monotonic() + limit
        while self._pending is not None and time.monotonic() < deadline:
            time.sleep(0.0005)

    def stats_reply(self, ident: Any) -> bytes:
        """``{reply, Id, {ok, Snapshot}}`` for a ``{stats, Id}`` request, or the error when there is none.

        Examples
        --------
        >>> w = Worker({})
        >>> reply, ident, (ok, snapshot) = tether.loads(w.stats_reply(4))
        >>> ident, ok, snapshot["worker"]["calls"]
        (4, Atom('ok'), 0)
        >>> w.close()
        """
        try:
            snapshot = self.stats(strict=False)
        except StatsError as exc:
            return self.message((_REPLY, ident, (_ERROR, (Atom("python"), "MetricsUnavailable", str(exc), ""))))
        try:
            return self.message((_REPLY, ident, (_OK, _plain(snapshot))))
        except Exception as exc:  # noqa: BLE001 - a snapshot the BEAM cannot take is the reply
            return self._python_error(ident, exc, "EncodeError")

    def bad_request(self, ident: Any, exc: BaseException | str) -> bytes:
        """``{reply, Id, {error, {bad_request, Message}}}``; Id -1 when the request has none.

        Examples
        --------
        >>> w = Worker({})
        >>> tether.loads(w.bad_request(3, ValueError("Args must be a list")))
        (Atom('reply'), 3, (Atom('error'), (Atom('bad_request'), 'ValueError: Args must be a list')))
        >>> w.close()
        """
        text = exc if isinstance(exc, str) else str(exc) if isinstance(exc, TetherError) else \
            f"{type(exc).__name__}: {exc}"
        try:
            return self.message((_REPLY, ident, (_ERROR, (Atom("bad_request"), text[:4096]))))
        except Exception:  # noqa: BLE001 - an Id that cannot be sent back: answer without it
            return self.message((_REPLY, -1, (_ERROR, (Atom("bad_request"), text[:4096]))))

    def _lookup(self, mod: Any, fun: Any) -> tuple[Any, str]:
        """The handler ``mod.fun`` names (None when there is none) and its ``"module.function"`` step.

        The names' text is kept per (module, function) as they arrived; the
        function itself is looked up every call, so a module that rebinds it is followed.
        """
        key = (mod, fun) if type(mod) is bytes and type(fun) is bytes else None
        names = self._names.get(key) if key is not None else None
        if names is None:
            mod, fun = _text(mod), _text(fun)
            names = (self.modules.get(mod), fun, f"{mod}.{fun}")
            if key is not None and names[0] is not None and len(self._names) < 4096:
                self._names[key] = names
        module, fun, step = names
        if module is None or fun.startswith("_"):
            return None, step
        target = getattr(module, fun, None)
        return (target if callable(target) and _exported(module, fun, target) else None), step

    def _request(self, message: Any) -> tuple[Any, int, bool]:
        """A request's term, where its ETF starts in ``message`` and whether that ETF is compressed.

        Paths in its errors and in its text-like charlists (kept for :func:`_warn_charlists`) are
        the arguments' (``$[0]`` is the first), not the request tuple's (``$[4][0]``).
        """
        if _FOUND:
            _FOUND.clear()
        sink = _CHARLISTS
        sink.paths, sink.thread = _FOUND, self._main
        try:
            if self._compact:
                request = read_compact(message, self._decode_options)  # raises first on a message too short
                return request, COMPACT_HEADER, message[COMPACT_HEADER + 1] == etf_tags.COMPRESSED
            request, header, _ = _api.decode_frame(_buffers.as_view(message), None, False, False, True,
                                                   self._decode_options)
            start = header.payload_offset
            return request, start, header.compression_id != 0 or message[start + 1] == etf_tags.COMPRESSED
        except TetherError as exc:
            exc.args = (_call_path(str(exc)), *exc.args[1:])
            raise
        finally:
            sink.paths = None
            if _FOUND:
                _FOUND[:] = map(_call_path, _FOUND)

    def _other(self, request: Any) -> bytes | None:
        """The answer to a request that is not a call: stats, the benchmark's echo, or a bad_request; None for a
        notice, which is not answered."""
        if type(request) is tuple and len(request) == 1 and request[0] == _RELEASE_SHM:
            self.release_shm()
            return None
        if type(request) is tuple and len(request) == 2 and request[0] == _STATS:
            return self.stats_reply(request[1])
        if type(request) is tuple and len(request) == 2 and request[0] == _ECHO:
            return self.message(request)  # the benchmark's echo: decoded, encoded, no handler
        ident = request[1] if type(request) is tuple and len(request) > 1 and request[0] == _CALL else -1
        return self.bad_request(ident, f"expected {{call, Id, Module, Function, Args, Opts}}, got {_kind(request)}.")

    def reset_form(self) -> None:
        """Answer as a frame until the next request says otherwise (for messages that are none).

        Examples
        --------
        >>> w = Worker({})
        >>> _ = w.handle(compact((Atom("stats"), 1)))
        >>> w.message(1)[:4]
        b'TTMC'
        >>> w.reset_form()
        >>> w.message(1)[:4]
        b'TTHR'
        >>> w.close()
        """
        self._compact = False

    def message(self, term: Any) -> bytes:
        """``term`` as a message in the form of the request being answered (compact or frame).

        Examples
        --------
        >>> w = Worker({})
        >>> tether.loads(w.message((Atom("reply"), 1, (Atom("ok"), 2))))
        (Atom('reply'), 1, (Atom('ok'), 2))
        >>> w.close()
        """
        return compact(term) if self._compact else _frame(term)

    @staticmethod
    def _tables(opts: Any) -> str:
        if type(opts) is dict and not opts:
            return "arrow"
        if type(opts) is not dict:
            raise DecodeError(f"Opts must be a map, got {_kind(opts)}.")
        form = opts.get(_TABLES, "arrow")
        name = bytes(form).decode("utf-8", "replace") if isinstance(form, (bytes, memoryview)) else form
        if not isinstance(name, str) or name not in _TABLE_FORMS:
            shown = repr(name[:40]) if isinstance(name, str) else _kind(form)
            raise DecodeError(f"Opts tables must be arrow, rows or columns, got {shown}.")
        return _TABLE_FORMS[name]

    def _call(self, ident: Any, target: Callable, args: list, tables: str) -> bytes:
        """Run the handler (awaiting a coroutine), then encode its result; cancellation and errors become replies."""
        self._outcome = None
        try:
            try:
                self._running = True
                if self._cancel_id == ident:  # the signal came before the handler could start
                    raise Cancelled("the BEAM cancelled this call before it started")
                result = target(*args)
                # Awaitables only: asyncio.iscoroutine also takes a plain generator (3.11), which ran as a task.
                if type(result) not in _FAST_RESULTS and inspect.isawaitable(result):
                    result = self._await(result)
            finally:
                self._running = False
                self._handled = time.perf_counter()
        except (Cancelled, asyncio.CancelledError):
            self._outcome = "Cancelled"
            return self.message((_REPLY, ident, (_ERROR, _CANCELLED)))
        except Exception as exc:  # noqa: BLE001 - the handler's exception is the reply
            self._outcome = type(exc).__name__
            return self._python_error(ident, exc)
        try:
            return self._reply_ok(ident, result, tables)
        except Exception as exc:  # noqa: BLE001 - a result the BEAM cannot take is the reply
            self._outcome = "EncodeError"
            return self._python_error(ident, exc, "EncodeError", _FOR_BEAM)

    def _await(self, awaitable: Any) -> Any:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        coro = awaitable if inspect.iscoroutine(awaitable) else _awaited(awaitable)
        self._task = self._loop.create_task(coro)
        try:
            return self._loop.run_until_complete(self._task)
        finally:
            self._task = None

    def _python_error(self, ident: Any, exc: BaseException, kind: str | None = None,
                      advice: tuple[tuple[str, str], ...] = ()) -> bytes:
        try:
            message = str(exc)
        except Exception:  # noqa: BLE001 - a __str__ that fails still leaves the type and traceback
            message = f"<{type(exc).__name__} whose message cannot be shown>"
        for said, instead in advice:
            message = message.replace(said, instead)
        if kind is not None:
            message = f"{type(exc).__name__}: {message}"
        tb = "".join(traceback.format_exception(exc))
        return self.message((_REPLY, ident, (_ERROR, (Atom("python"), kind or type(exc).__name__, message, tb))))

    # ------------------------------------------------------------ cancelling

    def on_cancel(self, signum: int, _frame_: Any) -> None:
        """The ``SIGUSR1`` handler: cancel the call the BEAM names, or the running one.

        With a :attr:`cancel_file` the signal is for the call whose id the file
        holds: that call stops if it runs, and does not start if it has not yet
        (a signal that overtook its message); a late signal, for a call already
        answered, touches no other. Without one, it cancels whatever runs.
        """
        named = self._named_call()
        if named is not None:
            self._cancel_id = named
            if self._ident != named:
                return
        if not self._running:
            return
        if self._task is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._task.cancel)  # wakes the loop out of its select
            return
        channel = self.channel
        if channel is not None and channel.writer == self._main:
            channel.cancel_pending = True  # mid-message: raised once the message is whole
            return
        raise Cancelled("the BEAM cancelled this call")

    def _named_call(self) -> Any:
        """The id in the cancel file, or None without one (or when it cannot be read: then any call)."""
        if self.cancel_file is None:
            return None
        try:
            with open(self.cancel_file, "rb") as f:
                return int(f.read(32))
        except (OSError, ValueError):
            return None

    def after_write(self) -> None:
        """Raise a cancellation that arrived while the main thread was writing a message."""
        if threading.get_ident() != self._main or self.channel is None:
            return
        self.channel.cancel_pending = False
        if self._running:
            raise Cancelled("the BEAM cancelled this call")

    # ------------------------------------------------------------ arguments

    def _arguments(self, args: Any, plain: bool = False) -> list:
        """The handler's arguments, with embedded frames, tables and NaN atoms decoded in place.

        ``plain``: the BEAM found nothing of the kind in them (``Opts`` ``plain => true``), so the
        walk over every value (0.3 s for 100,000 rows) is skipped.
        """
        self._verify = True
        if type(args) is tuple and len(args) == 3 and args[0] == _SHM:
            view = self._map_file(args[1], 0, args[2])
            self._shm_in = len(view)
            _CHARLISTS.paths, _CHARLISTS.thread = _FOUND, self._main  # paths here are the arguments' already
            try:
                args = tether.loads(view, options=self._decode_options)
            finally:
                _CHARLISTS.paths = None
            # Frames inside a private file the BEAM wrote for this call: a CRC-32 pass over a
            # 256 MiB tensor (0.1 s) guards against nothing the file's 0600 mode does not.
            self._verify = False
        if type(args) is list and plain:
            return args
        if type(args) is not list:
            raise DecodeError(f"Args must be a list or {{shm, Path, Len}}, got {_kind(args)}.")
        return transform(args, self._visit_in, DecodeError)

    def _visit_in(self, value: Any) -> Any:
        t = type(value)
        if t is tuple:
            if value and type(value[0]) is Atom and value[0].startswith(_MARKER_PREFIX):
                return self._embedded(value)
            return WALK
        if t is list or t is dict or t is ImproperList:
            return WALK
        if t is Atom:
            return _ATOM_FLOATS.get(value, value)
        if (t is bytes or t is memoryview) and len(value) >= frame.HEADER_SIZE and value[:4] == frame.MAGIC:
            return self._whole_frame(value)
        return value

    def _embedded(self, value: tuple) -> Any:
        tag = value[0]
        if tag == _EMBED and len(value) == 2 and isinstance(value[1], (bytes, memoryview)):
            return tether.loads(value[1], options=self._decode_options, verify=self._verify)
        if tag == _EMBED_TABLE and len(value) == 2 and isinstance(value[1], (bytes, memoryview)):
            return arrow_api.from_etf(value[1], float_atoms=True)  # Tether.table/1: :nan is NaN, as everywhere
        if tag == _EMBED_SHM and len(value) == 4:
            return tether.loads(self._map_file(value[1], value[2], value[3]), options=self._decode_options)
        if tag == _EMBED_BYTES and len(value) == 2:
            return _marked_bytes(value[1])
        if tag not in MARKERS:
            raise DecodeError(
                f"{tag} is not a marker this worker reads ({', '.join(MARKERS)}; tuples that start with an atom "
                f"beginning {_MARKER_PREFIX} are tether's): upgrade tether in the worker's Python environment "
                "to the BEAM's version.")
        raise DecodeError(
            f"{tag} must be {{'$tether', Frame}}, {{'$tether_table', Etf}}, {{'$tether_shm', Path, Offset, Len}} "
            f"or {{'{BYTES_TAG}', Binary}}, got a tuple of {len(value)} elements.")

    def _whole_frame(self, value: Any) -> Any:
        """A binary that is exactly one frame (its header's CRC checks) decoded; any other binary as it is."""
        try:
            size = frame.unpack(memoryview(value)[: frame.HEADER_SIZE], tether.get_limits()).frame_size
        except TetherError:
            return value
        return tether.loads(value, options=self._decode_options, verify=self._verify) if size == len(value) else value

    def _map_file(self, path: Any, offset: Any, length: Any) -> memoryview:
        """``length`` bytes at ``offset`` of a BEAM-written ``tether-`` file, mapped read-only.

        The BEAM rewrites the same arguments file for every large call: its
        mapping is kept, so the next call reads pages already mapped (a fresh
        mapping of 256 MiB costs tens of ms of page faults).
        """
        path = _text(path)
        if not os.path.basename(path).startswith("tether-"):
            raise DecodeError(f"Refusing to read {path!r}: shared-memory arguments must be tether- files.")
        if not all(type(v) is int and v >= 0 for v in (offset, length)):
            raise DecodeError("Offset and Len of a shared-memory argument must be non-negative integers.")
        try:
            fd, st = open_regular(path)
        except NotRegularFile:
            raise DecodeError(f"{path!r} is not a regular file: shared-memory arguments are files the BEAM "
                              "wrote (its arguments file) or the worker's regions.") from None
        except OSError as exc:
            raise DecodeError(f"Cannot open shared-memory argument {path!r}: {exc.strerror}.") from None
        try:
            if st.st_size < offset + length:
                raise DecodeError(f"{path} holds fewer than the {offset + length} bytes announced.")
            if not length:
                return memoryview(b"")
            key = (path, st.st_dev, st.st_ino)
            mm = self._mapped[1] if self._mapped is not None and self._mapped[0] == key else None
            # A file that shrank (the BEAM removes its file rather than shrinking it, and a new one is a new
            # inode, but any writer may) is mapped again: a mapping past the file's end faults when read.
            if mm is None or len(mm) < offset + length or len(mm) > st.st_size:
                try:
                    mm = mmap.mmap(fd, st.st_size, access=mmap.ACCESS_READ)
                except (OSError, ValueError) as exc:  # a file system that cannot map (sysfs, some FUSE)
                    raise DecodeError(f"Cannot map shared-memory argument {path!r}: {exc}; the BEAM writes "
                                      "them in a private directory on a local or tmpfs file system.") from None
                self._mapped = (key, mm)
        finally:
            os.close(fd)
        return memoryview(mm)[offset : offset + length]

    # ------------------------------------------------------------ results

    def _reply_ok(self, ident: Any, result: Any, tables: str) -> bytes:
        """``{reply, Id, {ok, Value}}`` with embedded frames; the whole value goes through shared memory when large."""
        if type(result) in _FAST_RESULTS and not _holds_bulk(result):
            # Most results are small plain terms: one encode, and too small to hold an embedded value.
            try:
                reply = self.message((_REPLY, ident, (_OK, result)))
            except TetherError:
                pass
            else:
                if len(reply) < EMBED_MIN and len(reply) <= self.shm_threshold:
                    return reply
        self._region_fresh = False
        value = transform(result, lambda v: self._visit_out(v, tables))
        body = _etf.encode(value, _etf.Options(), convert=_peer_convert())  # tether.etf.encode's defaults
        if len(body) <= self.shm_threshold:
            return self.message((_REPLY, ident, (_OK, tether.etf.OpaqueTerm(body[1], body[1:]))))
        term = tether.etf.OpaqueTerm(body[1], body[1:])
        placed = self._place(tether.encode(term, format="etf", reader="beam", checksum=SHM_CHECKSUM, transport="shm",
                                           step=self._step or None))
        return self.message((_REPLY, ident, (_OK, term if placed is None else placed)))

    def _visit_out(self, value: Any, tables: str) -> Any:
        t = type(value)
        if t in _LEAVES:
            return value
        if t is float:
            return value if value - value == 0.0 else _float_atom(value)  # inf - inf and nan are nan
        if t is dict or t is list or t is tuple or t is ImproperList:
            return WALK
        if t is bytes or t is bytearray or t is memoryview:
            return self._embed(value, "raw") if memoryview(value).nbytes >= EMBED_MIN else value
        return self._visit_other(value, tables)

    def _visit_other(self, value: Any, tables: str) -> Any:
        np = sys.modules.get("numpy")
        if np is not None:
            if type(value) is np.ndarray and not value.dtype.hasobject:
                return self._embed(value, "ndarray")
            if isinstance(value, np.floating):
                return _visit_float(float(value))
        if arrow_api.is_dataframe(value) is not None or arrow_api.is_series(value) is not None \
                or _is_arrow_table(value):
            if tables == "arrow":
                return self._embed(value, "arrow")
            _, table = arrow_api.to_table(value)
            plain = table.to_pylist() if tables == "rows" else table.to_pydict()
            return transform(plain, lambda v: self._visit_out(v, tables))
        if isinstance(value, float):
            return _visit_float(float(value))
        if isinstance(value, (dict, list, tuple, ImproperList)) and not isinstance(value, _BEAM_CONTAINERS):
            return WALK
        return value

    def _embed(self, value: Any, fmt: str) -> tuple:
        """``{'$tether', Frame}``, or ``{'$tether_shm', Path, Offset, Len}`` above the threshold."""
        step = self._step or None
        enc = tether.encode(value, format=fmt, reader="beam", checksum=SHM_CHECKSUM, transport="shm", step=step,
                            options=_PEER_FORMATS[0])
        if enc.nbytes > self.shm_threshold:
            placed = self._place(enc)
            if placed is not None:
                return placed
        if enc.header.checksum_kind == frame.checksum.NONE:  # through the pipe, a frame always carries its CRC
            enc = tether.encode(value, format=fmt, reader="beam", checksum=INLINE_CHECKSUM, step=step,
                                options=_PEER_FORMATS[0])
        return (_EMBED, bytes(enc))

    def _place(self, enc: Any) -> tuple | None:
        """Write a frame into the worker's region, or None when it cannot go there (the caller sends it inline).

        The region is reset once per reply: the BEAM read the previous reply's frames before this call.
        Its slots all taken, or no memory left in the directory (a full /dev/shm: logged), the frame
        goes through the pipe.
        """
        try:
            if self.region is None:
                self.region = self.pool.acquire(max(enc.nbytes, self.shm_threshold))
            if not self._region_fresh:
                self.region.reset()
                self._region_fresh = True
                if self.region.capacity < enc.nbytes + _REGION_SLACK:  # the first frame of this reply: a larger one
                    region, self.region = self.region, None
                    # Removed, not kept warm: this worker only ever asks for larger regions from here, and a
                    # pool of outgrown ones held 2.6x the largest reply in /dev/shm for as long as calls came.
                    region.close()
                    region.unlink()
                    self.region = self.pool.acquire(enc.nbytes + _REGION_SLACK)
            slot, offset, view = self.region.reserve(enc.nbytes)
        except RegionError as exc:
            if isinstance(exc.__cause__, OSError):
                logging.getLogger("tether.worker").warning("A %d-byte frame of this reply went through the pipe: %s",
                                                           enc.nbytes, exc)
            return None
        try:
            enc.write_into(view)
        finally:
            view.release()
        self.region.commit(slot)
        self._shm_out += enc.nbytes
        return (_EMBED_SHM, self.region.path, offset, enc.nbytes)

    def release_shm(self) -> None:
        """Let go of the shared memory kept between calls: the arguments file's mapping and the reply regions.

        The BEAM's ``{release_shm}`` notice asks for it once no call has used shared memory for its
        ``shm_keep`` ms (it has removed its arguments file by then): the memory goes once nothing maps it.
        The next large call or reply maps or makes what it needs again.

        Examples
        --------
        >>> import numpy as np
        >>> w = Worker({"numpy": np}, shm_threshold=0)
        >>> _ = w.handle(tether.dumps((Atom("call"), 1, b"numpy", b"ones", [1024], {}), format="etf"))
        >>> path = w.region.path
        >>> w.release_shm(); w.region is None, os.path.exists(path)
        (True, False)
        >>> w.close()
        """
        self._mapped = None
        if self.region is not None:
            region, self.region = self.region, None
            self.pool.release(region)
        self.pool.trim()

    def close(self) -> None:
        """Remove the worker's region, drop the arguments mapping and close the event loop.

        Closing again does nothing.

        Examples
        --------
        An array result placed in the worker's shared-memory region, then the region gone:

        >>> import os, numpy as np
        >>> w = Worker({"numpy": np}, shm_threshold=0)
        >>> _ = w.handle(tether.dumps((Atom("call"), 1, b"numpy", b"ones", [1024], {}), format="etf"))
        >>> path = w.region.path
        >>> w.close()
        >>> w.close()
        >>> os.path.exists(path)
        False
        """
        self._mapped = None
        if self.region is not None:
            self.region.close()
            self.region.unlink()
            self.region = None
        self.pool.close()
        if self._loop is not None:
            self._loop.close()
            self._loop = None


# The (function, argument position) pairs each worker has warned of charlists for. Not an attribute: a
# 30th on Worker's instances takes them past CPython's shared-key dicts, and costs ~40 ns a reply.
_charlists_warned: weakref.WeakKeyDictionary[Any, set[tuple[str, int]]] = weakref.WeakKeyDictionary()


def _warn_charlists(found: list[str], worker: Any, target: Callable, step: str) -> None:
    """Warn of the text-like charlists ``found`` in the arguments of a call to ``target`` (``step``), then
    forget them: once per worker for each function and argument position.

    Erlang cannot tell ``'abc'`` from ``[97, 98, 99]``, so a handler gets a list of ints, and is
    warned (a ``LossyConversionWarning``, which reaches the BEAM as a log record). The first
    warning for an argument names the charlist's path, its text and the fix; later ones for the
    same function and position are not given (a service sending a name as a charlist logged one
    line per call, and each new text was a new entry in a warnings registry, for the worker's
    life). At most :data:`CHARLIST_WARNINGS` pairs are remembered per worker; past that, none are
    given. The warning points at the handler's ``def`` line, and goes through no registry.

    Examples
    --------
    >>> import warnings
    >>> w = Worker({})
    >>> def greet(name): ...
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     for text in ("ann", "bob"):
    ...         _warn_charlists([f"$[0] ({text!r})"], w, greet, "app.greet")
    >>> [str(m.message).split(" looks")[0] for m in caught]  # bob's is not warned: same function, same argument
    ["Charlist at $[0] ('ann') in a call to app.greet"]
    >>> w.close()
    """
    by_argument: dict[int, list[str]] = {}
    for path in found:
        at = _ARGUMENT.match(path)
        if at is not None:  # not a charlist in Opts or the Id
            by_argument.setdefault(int(at.group(1)), []).append(path)
    found.clear()
    warned = _charlists_warned.setdefault(worker, set())
    code = getattr(getattr(target, "__func__", target), "__code__", None)
    where = (code.co_filename, code.co_firstlineno) if code is not None else ("<tether.worker>", 0)
    for argument, paths in by_argument.items():
        if (step, argument) in warned or len(warned) >= CHARLIST_WARNINGS:
            continue
        warned.add((step, argument))
        more = f" (and {len(paths) - 1} more in this argument)" if len(paths) > 1 else ""
        warnings.warn_explicit(
            f"Charlist at {paths[0]}{more} in a call to {step} looks like text but arrives as a list of ints: "
            "Erlang cannot tell 'abc' from [97, 98, 99]. Send text as an Elixir string (a binary, \"abc\"). "
            "Warned once per worker for each function and argument.",
            tether.LossyConversionWarning, *where, module=getattr(target, "__module__", None))


_FAST_RESULTS = frozenset((dict, list, tuple, str, int, float, bool, type(None), Atom, bytes))
# What _holds_bulk looks at: binaries (NumPy arrays never go the small way: etf cannot encode them), in
# containers of at most this many values.
_BULK_TYPES = frozenset((bytes, bytearray, memoryview))
_BULK_SCAN = 64
_BEAM_CONTAINERS = (tether.FrozenList, tether.FrozenMap)


async def _awaited(awaitable: Any) -> Any:
    """A coroutine of any awaitable (a Future, an object with ``__await__``), which a task needs."""
    return await awaitable


def _marked_bytes(value: Any) -> bytes | memoryview:
    """The binary of a ``{'$tether_bytes', Bin}`` argument as bytes: as decoded, or, where ``--binaries str``
    made a UTF-8 binary a ``str``, its bytes again (the marker says bytes whatever the worker's mode)."""
    if type(value) is bytes or type(value) is memoryview:
        return value
    if type(value) is str:
        return value.encode()
    raise DecodeError(f"{{'{BYTES_TAG}', Bin}} needs a binary (whole bytes), got {_kind(value)}.")


# The encoder's advice is for tether.dumps; a handler's result goes to the BEAM, which reads no pickle and has
# no option to pass: the reply says what a handler can do instead.
_FOR_BEAM = (
    ("or use format='pickle' for Python-only data", "or return something that maps (docs/types.md): the BEAM "
     "reads no pickle"),
    ("Pass nan='atom' (tether.dumps: options={'nan': 'atom'}) to write nan/infinity/neg_infinity atoms, which "
     "decode as atoms, not floats; or replace the value (e.g. with None)",
     "A NaN or infinite map key has no BEAM form: key the map otherwise (e.g. by a string)"),
)


def _holds_bulk(result: Any) -> bool:
    """Whether a result is, or holds at its top level, a binary large enough to be embedded: the small-result
    encode would copy it whole only to find the reply too large (a 200 MB bytes result took 572 MB, not 381).
    Long containers are not looked through: their encode is the cheaper check.

    Examples
    --------
    >>> _holds_bulk(b"x" * EMBED_MIN), _holds_bulk({"a": bytearray(EMBED_MIN)}), _holds_bulk([1, b"x"])
    (True, True, False)
    """
    t = type(result)
    if t is bytes:
        return len(result) >= EMBED_MIN
    values = result.values() if t is dict else result if t is list or t is tuple else ()
    if len(values) > _BULK_SCAN:
        return False
    for v in values:  # a loop, not any(): a generator cost 0.7 us on every small result
        if type(v) in _BULK_TYPES and memoryview(v).nbytes >= EMBED_MIN:
            return True
    return False


def _float_atom(value: float) -> Atom:
    return _NAN if value != value else _INF if value > 0 else _NEG_INF


def _visit_float(value: float) -> Any:
    return value if value - value == 0.0 else _float_atom(value)


def _is_arrow_table(value: Any) -> bool:
    pa = sys.modules.get("pyarrow")
    return pa is not None and isinstance(value, (pa.Table, pa.RecordBatch))


def _may_embed(message: Any, start: int, packed: bool) -> bool:
    """Whether a request can hold an embedded frame, a nested frame or a NaN atom (else it needs no walk).

    A scan of the bytes from ``start`` (where the ETF term begins) answers for a
    small plain message; ``packed`` (compressed) terms hide their bytes, and
    large messages are not scanned.
    """
    if type(message) is not bytes or packed:
        return True
    find = message.find
    return (find(b"$tether", start) >= 0 or find(frame.MAGIC, start) >= 0 or find(b"nan", start) >= 0
            or find(b"infinity", start) >= 0)


def _plain(value: Any) -> Any:
    """A JSON-like snapshot as the BEAM takes it: NaN and the infinities as their atoms."""
    return transform(value, lambda v: WALK if type(v) in (dict, list, tuple) else
                     _visit_float(v) if type(v) is float else v)


# ---------------------------------------------------------------- handshake


def _version(text: Any) -> tuple[int, int] | None:
    """(major, minor) of a version such as ``"0.1.0"`` or ``"1.2.3-rc1"``, or None."""
    try:
        parts = _text(text).split(".")
        return int(parts[0]), int("".join(c for c in parts[1] if c.isdigit()) or "x") if len(parts) > 1 else 0
    except (DecodeError, ValueError, IndexError):
        return None


def compatible(python: str, beam: Any) -> bool:
    """Whether two tether versions talk: equal majors, and for 0.x equal minors too.

    Examples
    --------
    >>> compatible("0.1.0", b"0.1.7"), compatible("0.1.0", b"0.2.0"), compatible("1.2.0", "1.5.1")
    (True, False, True)
    """
    mine, theirs = _version(python), _version(beam)
    if mine is None or theirs is None or mine[0] != theirs[0]:
        return False
    return mine[0] != 0 or mine[1] == theirs[1]


# User types the BEAM reads at an older version than this process writes, by name
# (from its hello); results are downgraded to them. Empty: nothing to rewrite.
_PEER_TYPES: dict[str, int] = {}
# The hello's format schemas, as options for every embedded frame, when the BEAM reads
# an older schema of a format than this process writes (None: it reads them all).
_PEER_FORMATS: list[Any] = [None]


def _hello_map(hello_info: Any, key: str) -> dict[str, Any]:
    """The hello's map under ``key`` with its binary keys as text ({} when absent or not a map)."""
    theirs = hello_info.get(Atom(key)) if type(hello_info) is dict else None
    if type(theirs) is not dict:
        return {}
    return {(k.decode("utf-8", "replace") if isinstance(k, bytes) else str(k)): v for k, v in theirs.items()}


def peer_format_options(hello_info: Any) -> dict | None:
    """``options`` that make writers refuse a format schema the BEAM cannot read, or None when it reads every one.

    Examples
    --------
    >>> peer_format_options({tether.Atom("format_schemas"): {b"ndarray": [1, 1]}}) is None
    True
    """
    reads = _hello_map(hello_info, "format_schemas")
    behind = {name: v for name, v in reads.items() if name in formats.names() and isinstance(v, list)
              and len(v) == 2 and type(v[1]) is int and formats.get(name).schema_version > v[1]}
    return {"versions": {"formats": behind}} if behind else None


def peer_types(hello_info: Any) -> dict[str, int]:
    """The user types a hello's ``types`` names at a version older than this process's, by name.

    Examples
    --------
    >>> peer_types({tether.Atom("types"): {"no.such.Type": 1}})
    {}
    """
    mine = tether.types.versions()
    return {name: v for name, v in _hello_map(hello_info, "types").items()
            if name in mine and type(v) is int and v < mine[name]}


def _peer_convert() -> Any:
    """The encoder hook that writes each user type at the version the BEAM's hello names, wherever it sits
    (map keys and set members too), or None (each type at its own version) when the BEAM reads them all."""
    return partial(_structs.convert, versions=dict(_PEER_TYPES)) if _PEER_TYPES else None


def _refusal(hello: Any) -> Any:
    """The ``{incompatible, ...}`` reason when the BEAM's hello does not match this worker, else None."""
    info = hello[1] if type(hello) is tuple and len(hello) == 2 and type(hello[1]) is dict else {}
    beam = info.get(Atom("tether"))
    versions = info.get(Atom("frame_versions"), [frame.FRAME_VERSION])
    if compatible(tether.__version__, beam) and isinstance(versions, list) and frame.FRAME_VERSION in versions:
        return None
    # Shown, not read: a version that is not UTF-8 (or is huge) is refused like any other.
    shown = bytes(beam[:64]).decode("utf-8", "replace") if isinstance(beam, bytes) else \
        beam[:64] if isinstance(beam, str) else "unknown"
    return (Atom("incompatible"), {Atom("python"): tether.__version__, Atom("beam"): shown})


def _import_modules(names: list[str]) -> tuple[dict[str, ModuleType], Any]:
    """The modules by name, or the ``{import_error, Module, Type, Message, Traceback}`` reason of the first that fails."""
    modules = {}
    for name in names:
        try:
            modules[name] = importlib.import_module(name)
        except BaseException as exc:  # noqa: BLE001 - whatever an import raises, the BEAM hears of it
            if isinstance(exc, KeyboardInterrupt):
                raise
            tb = "".join(traceback.format_exception(exc))
            return modules, (Atom("import_error"), name, type(exc).__name__, _import_advice(name, exc), tb)
    return modules, None


def _import_advice(name: str, exc: BaseException) -> str:
    """The import error's message, with where Python looked when the module asked for is not found at all.

    Examples
    --------
    >>> "PYTHONPATH" in _import_advice("handlers", ModuleNotFoundError("No module named 'handlers'", name="handlers"))
    True
    >>> _import_advice("handlers", ModuleNotFoundError("No module named 'numpyx'", name="numpyx"))  # its own import
    "No module named 'numpyx'"
    """
    text = str(exc)
    missing = getattr(exc, "name", None) if isinstance(exc, ModuleNotFoundError) else None
    if missing is not None and (name == missing or name.startswith(missing + ".")):
        shown = ", ".join(p or "." for p in sys.path[:6]) + (", ..." if len(sys.path) > 6 else "")
        text += (f": Python looked in its sys.path ({shown}). Put the module's directory on PYTHONPATH "
                 "(env: [{\"PYTHONPATH\", dir}]), start the worker in it (cd: dir), or install it into this Python.")
    return text


def ready_info(modules: dict[str, ModuleType]) -> dict[Atom | str, Any]:
    """The ``Info`` map of ``{ready, Info}``: versions, OS pid, modules and what this tether reads and writes.

    Examples
    --------
    >>> ready_info({})[tether.Atom("frame_versions")]
    [1]
    >>> ready_info({})[tether.Atom("format_schemas")]["etf"]
    {'schema_version': 1, 'oldest_readable': 1}
    """
    from tether._etf import native

    if not isinstance(modules, Mapping):
        raise ValidationError(f"modules must be a dict of module name to module, got {type(modules).__name__}.")
    return {
        Atom("tether"): tether.__version__,
        Atom("python"): platform.python_version(),
        Atom("pid"): os.getpid(),
        Atom("modules"): list(modules),
        Atom("frame_versions"): [frame.FRAME_VERSION],
        Atom("messages"): MESSAGE_FORMS,
        "markers": MARKERS,  # a str key: a BEAM from before decodes the ready without knowing a new atom
        "notices": NOTICES,
        "early_output": True,  # what it logs and writes to stderr before ready follows ready
        Atom("formats"): sorted(formats.names()),
        Atom("compressions"): sorted(compression.names()),
        Atom("checksums"): sorted(frame.checksum.NAMES.values()),
        Atom("speedups"): native.c is not None,
        Atom("format_schemas"): {name: {"schema_version": fmt.schema_version, "oldest_readable": fmt.oldest_readable}
                                 for name in sorted(formats.names()) for fmt in (formats.get(name),)},
        Atom("schemas"): _schema_versions(),
        Atom("types"): tether.types.versions(),
    }


def _schema_versions() -> dict[str, int]:
    """``tether.schemas.versions()``: the newest table schema versions this worker reads ({} without the module)."""
    try:
        from tether import schemas
    except ImportError:  # pragma: no cover - present in this tree
        return {}
    return dict(schemas.versions())


def handshake(channel: Channel, module_names: list[str]) -> tuple[dict[str, ModuleType] | None, int]:
    """Read ``{hello, Info}``, import the modules, answer ``ready`` (modules, 0) or ``refused`` (None, 2).

    (None, 0) when the BEAM closed the port first; (None, 1) when its first
    message is not a hello (said on stderr, which the BEAM still holds).

    Examples
    --------
    Both ends of the port over two pipes, the BEAM's end played by a second channel:

    >>> import os
    >>> beam_r, py_w = os.pipe()
    >>> py_r, beam_w = os.pipe()
    >>> beam, py = Channel(beam_r, beam_w), Channel(py_r, py_w)
    >>> hello = (tether.Atom("hello"), {tether.Atom("tether"): tether.__version__.encode()})
    >>> beam.write_message(tether.dumps(hello, format="etf"))
    >>> modules, status = handshake(py, ["math"])
    >>> sorted(modules), status, tether.loads(beam.read_message())[0]
    (['math'], 0, Atom('ready'))

    A BEAM of another major version is refused, and told why:

    >>> hello = (tether.Atom("hello"), {tether.Atom("tether"): b"9.0.0"})
    >>> beam.write_message(tether.dumps(hello, format="etf"))
    >>> handshake(py, ["math"])
    (None, 2)
    >>> tether.loads(beam.read_message())[1][0]
    Atom('incompatible')
    >>> for fd in (beam_r, py_w, py_r, beam_w):
    ...     os.close(fd)
    """
    if not isinstance(channel, Channel):
        raise ValidationError(f"channel must be a tether.worker.Channel, got {type(channel).__name__}.")
    if not isinstance(module_names, (list, tuple)) or not all(isinstance(n, str) for n in module_names):
        raise ValidationError(f"module_names must be a list of module names (str), got {module_names!r:.80}.")
    while True:
        try:
            message = channel.read_message()
        except MessageError as exc:
            print(f"tether.worker: the first message must be {{hello, Info}}: {exc}", file=sys.stderr)
            return None, EXIT_PROTOCOL
        if message is None:
            return None, EXIT_OK
        if message[:4] != b"PING":
            break
        channel.write_message(message)  # the echo baseline works at any time
    try:
        hello = tether.loads(message)
    except TetherError as exc:
        hello = exc
    if not (type(hello) is tuple and hello and hello[0] == _HELLO):
        print(f"tether.worker: the first message must be {{hello, Info}}, got {_kind(hello)}.", file=sys.stderr)
        return None, EXIT_PROTOCOL
    reason = _refusal(hello)
    modules: dict[str, ModuleType] | None = None
    if reason is None:
        modules, reason = _import_modules(module_names)
    if reason is not None:
        channel.write_message(_frame((_REFUSED, reason)))
        return None, EXIT_REFUSED
    _PEER_TYPES.clear()
    _PEER_TYPES.update(peer_types(hello[1] if len(hello) == 2 else None))
    _PEER_FORMATS[0] = peer_format_options(hello[1] if len(hello) == 2 else None)
    channel.write_message(_frame((_READY, ready_info(modules))))
    return modules, EXIT_OK


# ---------------------------------------------------------------- logging


def _level(levelno: int) -> Atom:
    for threshold, name in _LEVELS:
        if levelno >= threshold:
            return name
    return _DEBUG


def _cut(message: str) -> str:
    """``message`` as a ``log`` message carries it: at most :data:`LOG_MESSAGE_MAX` characters, then a count."""
    if len(message) > LOG_MESSAGE_MAX:
        return message[:LOG_MESSAGE_MAX] + f"... ({len(message) - LOG_MESSAGE_MAX} more characters)"
    return message


def _log_frame(level: Atom, logger: str, message: str, meta: dict) -> bytes:
    message = _cut(message)
    try:
        return _frame((_LOG, level, logger, message, meta))
    except TetherError:  # lone surrogates and the like: the text as far as UTF-8 can carry it
        safe = {k: v.encode("utf-8", "replace").decode() if isinstance(v, str) else v for k, v in meta.items()}
        return _frame((_LOG, level, logger.encode("utf-8", "replace").decode(),
                       message.encode("utf-8", "replace").decode(), safe))


class LogForwarder(logging.Handler):
    """A root-logger handler that sends each record to the BEAM as ``{log, Level, Logger, Message, Meta}``.

    Examples
    --------
    >>> LogForwarder(None).level == logging.NOTSET
    True
    """

    def __init__(self, channel: Any):
        super().__init__()
        self.channel = channel
        self._local = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        """Send ``record`` as one ``{log, ...}`` message; a record logged while one is being sent is dropped.

        Examples
        --------
        >>> import os
        >>> r, w = os.pipe()
        >>> channel = Channel(r, w)
        >>> log = logging.getLogger("tether.doc.emit")
        >>> log.addHandler(LogForwarder(channel))
        >>> log.warning("disk %d%% full", 91)
        >>> tether.loads(channel.read_message())[:4]
        (Atom('log'), Atom('warning'), 'tether.doc.emit', 'disk 91% full')
        >>> log.handlers.clear()
        >>> os.close(r); os.close(w)
        """
        if getattr(self._local, "busy", False):  # a record logged while one is sent (tether's own): dropped
            return
        self._local.busy = True
        try:
            message, meta = _record_parts(record)
            self.send(record.levelno, record.name, message, meta)
        except Exception:  # noqa: BLE001 - logging must never break the handler that logs
            self.handleError(record)  # Python's report, on stderr: forwarded as lines
        finally:
            self._local.busy = False

    def send(self, levelno: int, name: str, message: str, meta: dict[Any, Any]) -> None:
        """One ``{log, ...}`` message: a record's parts (:meth:`emit`, or kept from before ready)."""
        self.channel.write_message(_log_frame(_level(levelno), name, message, meta))


def _pump(fd: int, channel: Channel) -> None:
    """Forward each line read from ``fd`` (the process's stdout and stderr) as a warning from ``<<"stderr">>``."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})  # cancelling is the main thread's
    lines = StderrLines()
    while True:
        try:
            chunk = os.read(fd, 1 << 16)
        except OSError:
            chunk = b""
        for text in lines.feed(chunk) if chunk else lines.end():
            channel.write_message(_log_frame(_WARNING, _STDERR, text, {}))
        if not chunk:
            return


class StderrLines:
    """Bytes read from a pipe, as the lines to forward: a line over :data:`LINE_MAX` bytes is sent as its first
    :data:`LINE_MAX` bytes and a note as soon as it is that long, and the rest of it is dropped as it arrives.

    Examples
    --------
    >>> lines = StderrLines()
    >>> lines.feed(b"one\\ntw"), lines.feed(b"o\\r\\n"), lines.end()
    (['one'], ['two'], [])
    >>> long = lines.feed(b"x" * (LINE_MAX + 10))
    >>> long[0].endswith("[line cut at 65536 bytes: the rest is not forwarded]"), lines.feed(b"yyy\\nz"), lines.end()
    (True, [], ['z'])
    """

    def __init__(self) -> None:
        self.pending = b""
        self.cutting = False  # the current line's head has been sent: drop until its end

    def feed(self, chunk: bytes) -> list[str]:
        """The lines ``chunk`` completes, and the head of a line that has grown past :data:`LINE_MAX`."""
        *done, rest = chunk.split(b"\n")
        out = []
        for part in done:
            if not self.cutting:  # a line that ends in this chunk may have grown past LINE_MAX in it
                out.append(_cut_line(self.pending + part))
            self.pending, self.cutting = b"", False
        if not self.cutting:
            self.pending += rest
            if len(self.pending) > LINE_MAX:
                out.append(_cut_line(self.pending))
                self.pending, self.cutting = b"", True
        return out

    def end(self) -> list[str]:
        """The last line, when the pipe closed without a newline after it."""
        last = [] if self.cutting or not self.pending else [_line_text(self.pending)]
        self.pending, self.cutting = b"", False
        return last


def _line_text(line: bytes) -> str:
    return line.rstrip(b"\r").decode("utf-8", "replace")


class _AlertForwarder:
    """A ``tether.metrics.on_alert`` callback: each alert fired or cleared goes to the BEAM as
    ``{alert, Name, State, Message, Figures, Suggestion}`` (the BEAM emits ``[tether, alert]``)."""

    def __init__(self, channel: Channel):
        self.channel = channel
        # The last alerts sent: one that reaches this callback twice (at ready, through the early capture's
        # callback as well as its own) goes once.
        self.recent: collections.deque[Any] = collections.deque(maxlen=64)

    def __call__(self, alert: Any) -> None:
        if any(sent is alert for sent in tuple(self.recent)):
            return
        self.recent.append(alert)
        state = _ALERT_STATES.get(alert.state, alert.state)
        figures = _plain({str(k): v for k, v in dict(alert.figures).items()})
        try:
            message = _frame((_ALERT, alert.name, state, alert.message, figures, alert.suggestion))
        except TetherError:  # figures the BEAM cannot take: the alert without them
            message = _frame((_ALERT, alert.name, state, alert.message, {}, alert.suggestion))
        self.channel.write_message(message)


class _EarlyOutput(logging.Handler):
    """What the worker says before ``ready``, kept for the BEAM: it reads nothing but the handshake until then.

    A handler on the root logger while the modules import, so that it gets what a handler there gets after
    ready (loggers' filters and ``propagate`` apply; a library's ``NullHandler`` hides nothing). Each record's
    level, logger, message and source are kept (the newest :data:`EARLY_RECORDS`, within
    :data:`EARLY_CHARS` of messages) and its text written to stderr in ``logging.BASIC_FORMAT`` as it comes,
    where the BEAM quotes it if the start fails, even by a crash. ``logging.basicConfig`` is wrapped
    meanwhile so that a module's own call configures the root logger as if this handler were not there.
    Warnings are captured as records, as after ready. Alerts fired meanwhile are kept too. After ``ready``,
    :meth:`forward` sends the records, then the alerts,
    then what else was written to the stderr file (``print``, C libraries): the bytes outside those the
    records' text took (:attr:`spans`).
    """

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter(logging.BASIC_FORMAT))
        self.records: collections.deque[tuple[int, str, str, dict[Any, Any]]] = collections.deque()
        self.kept_chars = self.dropped = 0
        self.alerts: collections.deque[Any] = collections.deque(maxlen=EARLY_RECORDS)
        self.alerts_dropped = 0
        self.spans: list[list[int]] = []  # [start, end) of the stderr file's bytes that are records' text
        self.stopped = False
        # After hand_over: where a record or alert that was on its way here goes instead.
        self.successor: logging.Handler | None = None
        self.alert_successor: Callable[[Any], Any] | None = None
        self.basic_config = logging.basicConfig
        logging.basicConfig = self._basic_config  # type: ignore[assignment]
        logging.getLogger().addHandler(self)
        logging.captureWarnings(True)  # a warnings.warn as one record, as after ready
        self.on_alert = _metrics.on_alert(self._alert) if _metrics is not None else None

    def _alert(self, alert: Any) -> None:
        with self.lock:
            if not self.stopped:
                self.alerts_dropped += len(self.alerts) == self.alerts.maxlen
                self.alerts.append(alert)
                return
            successor = self.alert_successor
        if successor is not None:
            successor(alert)

    def _basic_config(self, **kwargs: Any) -> None:
        """``logging.basicConfig`` while the modules import: as if this handler were not on the root logger."""
        root = logging.getLogger()
        if self.stopped or self not in root.handlers:
            return self.basic_config(**kwargs)
        root.removeHandler(self)
        try:
            return self.basic_config(**kwargs)
        finally:
            root.addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        if self.stopped:  # a thread that found this handler in the root's list before hand_over
            if self.successor is not None:
                self.successor.handle(record)
            return
        try:
            message, meta = _record_parts(record)
            text = self.format(record)
        except Exception:  # noqa: BLE001 - reported as logging reports a bad record, never raised
            self.handleError(record)
            return
        message = _cut(message)
        self.records.append((record.levelno, record.name, message, meta))
        self.kept_chars += len(message)
        while len(self.records) > EARLY_RECORDS or (self.kept_chars > EARLY_CHARS and len(self.records) > 1):
            self.kept_chars -= len(self.records.popleft()[2])
            self.dropped += 1
        self._write((text + "\n").encode("utf-8", "replace"))

    def _write(self, data: bytes) -> None:
        """Write to fd 2 unbuffered, noting where the bytes went when it is a file (not for a pipe), and only
        when nothing else wrote meanwhile: a record's text then comes back as stderr lines too, none is lost."""
        try:
            sys.stderr.flush()  # what print() buffered goes first
            start = os.lseek(2, 0, os.SEEK_CUR)
        except OSError:  # a pipe or a tty: nothing is read back
            start = -1
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(2, view):]
            end = os.lseek(2, 0, os.SEEK_CUR) if start >= 0 else -1
        except OSError:
            return
        if start < 0 or end - start != len(data):
            return
        if self.spans and self.spans[-1][1] == start:
            self.spans[-1][1] = end
        else:
            self.spans.append([start, end])

    def hand_over(self, handler: logging.Handler | None, alerts: Callable[[Any], Any] | None = None) -> None:
        """Put ``handler`` in this one's place on the root logger and ``alerts`` after its alert callback, each
        record and alert going to one of the two, never both or neither (None: a start that failed; its
        records are on stderr already, and logging goes back to what it was).

        The root's handler list is replaced, not changed in place: a thread going through the old list
        comes here, and is passed on; one that starts now sees the new list only."""
        root = logging.getLogger()
        with _logging_lock():
            root.handlers = [h for h in root.handlers if h is not self] + ([handler] if handler is not None else [])
        with self.lock:  # emit and _alert run under it
            self.successor, self.alert_successor, self.stopped = handler, alerts, True
        if handler is None:
            logging.captureWarnings(False)
        if logging.basicConfig is self._basic_config:  # a module that kept the name keeps it: it passes through
            logging.basicConfig = self.basic_config
        if self.on_alert is not None:
            _metrics.on_alert(self.on_alert, remove=True)

    def forward(self, channel: Channel, logs: "LogForwarder", alerts: "_AlertForwarder", lines: list[str]) -> None:
        """Send what was kept and the stderr ``lines``, then forget them (after :meth:`hand_over`)."""
        for count, what in ((self.dropped, "log records"), (self.alerts_dropped, "alerts")):
            if count:
                channel.write_message(_log_frame(_WARNING, "tether.worker", f"{count} earlier {what} from before "
                                                 "ready are not sent (kept: the newest)", {}))
        for levelno, name, message, meta in self.records:
            logs.send(levelno, name, message, meta)
        for alert in list(self.alerts):
            alerts(alert)
        for text in lines:
            channel.write_message(_log_frame(_WARNING, _STDERR, text, {}))
        self.records.clear()
        self.alerts.clear()
        self.spans = []


def _logging_lock() -> Any:
    """The logging module's own lock, which ``addHandler`` takes (a no-op where a Python has none by that name)."""
    lock = getattr(logging, "_lock", None)
    return lock if lock is not None else contextlib.nullcontext()


def _record_parts(record: logging.LogRecord) -> tuple[str, dict[Any, Any]]:
    """A record's message (its traceback appended) and the metadata a ``log`` message carries: its source,
    and under ``"extra"`` (a string key: the BEAM makes no atom of it) what ``extra=`` added to the record.

    Examples
    --------
    >>> r = logging.makeLogRecord({"msg": "saved", "request_id": "r-7", "rows": 3})
    >>> _record_parts(r)[1]["extra"]
    {'request_id': 'r-7', 'rows': 3}
    """
    message = record.getMessage()
    if record.exc_info:
        message += "\n" + logging.Formatter().formatException(record.exc_info)
    meta = {Atom("module"): record.module, Atom("function"): record.funcName or "",
            Atom("file"): record.pathname, Atom("line"): record.lineno, Atom("thread"): record.threadName or ""}
    extra = _record_extra(record)
    if extra:
        meta["extra"] = extra
    return message, meta


# What every LogRecord has: the rest of its attributes came from extra= (or a filter that added them).
_RECORD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
# The most extra fields a record forwards, and the longest text of one (a field's value as it prints).
EXTRA_FIELDS = 32
EXTRA_TEXT = 1024


def _record_extra(record: logging.LogRecord) -> dict[str, Any]:
    """The fields ``extra=`` added to ``record``: numbers, booleans and None as they are, anything else as
    text (cut at :data:`EXTRA_TEXT` characters), at most :data:`EXTRA_FIELDS` of them."""
    out: dict[str, Any] = {}
    for key, value in vars(record).items():
        # logging takes any key in extra=, and a record it cannot send would be lost whole.
        if type(key) is not str or key in _RECORD_ATTRS or key.startswith("_") or len(out) >= EXTRA_FIELDS:
            continue
        key = key[:EXTRA_TEXT].encode("utf-8", "replace").decode()
        if value is None or type(value) in (bool, int) or (type(value) is float and value - value == 0.0):
            out[key] = value
            continue
        try:
            text = value if type(value) is str else repr(value)
        except Exception:  # noqa: BLE001 - a repr that raises still leaves the record to send
            text = f"<{type(value).__name__}: repr failed>"
        out[key] = text[:EXTRA_TEXT].encode("utf-8", "replace").decode()
    return out


def _early_stderr(spans: list[list[int]], stderr: int = 2) -> list[str]:
    """The lines written to ``stderr`` (fd 2 before ready, the BEAM's stderr file), outside ``spans``: the
    last :data:`EARLY_STDERR` bytes of them; none when it is a pipe or a tty."""
    try:
        size = os.fstat(stderr).st_size if stat.S_ISREG(os.fstat(stderr).st_mode) else 0
        fd = os.open(f"/proc/self/fd/{stderr}", os.O_RDONLY) if size else -1  # the descriptor is write-only
    except OSError:
        return []
    if fd < 0:
        return []
    try:
        data, cut = _read_outside(fd, spans, size, EARLY_STDERR)
    except OSError:
        return []
    finally:
        os.close(fd)
    lines = data.split(b"\n")
    if cut:  # it starts mid-line: that line goes too, and a line says what is missing
        cut += len(lines[0])
        lines[0] = f"[the first {cut} bytes written before ready are not sent]".encode()
    if lines and not lines[-1]:
        lines.pop()
    # A line rewritten with \r (a progress bar) as a terminal shows it: its last state.
    return [_cut_line(line.rstrip(b"\r").rsplit(b"\r", 1)[-1]) for line in lines]


def _cut_line(line: bytes) -> str:
    """A whole stderr line as :class:`StderrLines` forwards it: cut after :data:`LINE_MAX` bytes, with a note."""
    if len(line) <= LINE_MAX:
        return _line_text(line)
    return _line_text(line[:LINE_MAX]) + f" ... [line cut at {LINE_MAX} bytes: the rest is not forwarded]"


def _read_outside(fd: int, spans: list[list[int]], size: int, limit: int) -> tuple[bytes, int]:
    """The bytes of ``fd`` in [0, size) outside ``spans``, the last ``limit`` of them; and how many are left out."""
    gaps, at = [], 0
    for start, end in spans:
        if start > at:
            gaps.append((at, min(start, size)))
        at = max(at, end)
    if at < size:
        gaps.append((at, size))
    total = sum(end - start for start, end in gaps)
    skip = cut = max(0, total - limit)
    parts = []
    for start, end in gaps:
        if skip >= end - start:
            skip -= end - start
            continue
        parts.append(os.pread(fd, end - start - skip, start + skip))
        skip = 0
    return b"".join(parts), cut


class _Forwarding:
    """fd 1 and 2 redirected into a pipe a daemon thread forwards, and the root logger's handler."""

    def __init__(self, channel: Channel, early: _EarlyOutput | None = None):
        # The forwarders take over from the early capture with nothing falling between the two.
        alert_forwarder = _AlertForwarder(channel)
        self.alerts = _metrics.on_alert(alert_forwarder) if _metrics is not None else None
        self.handler = LogForwarder(channel)
        if early is not None:
            early.hand_over(self.handler, alert_forwarder)
        else:
            logging.getLogger().addHandler(self.handler)
        # A warning as one record (logger py.warnings), not two stderr lines: its text and its source line.
        logging.captureWarnings(True)
        self.saved = os.dup(2)
        read, write = os.pipe()
        sys.stderr.flush()
        os.dup2(write, 2)
        os.dup2(write, 1)
        os.close(write)
        # Read back through the saved descriptor once fd 2 is the pipe: a print from now on is sent live.
        lines = _early_stderr(early.spans, self.saved) if early is not None else []
        self.read = read
        self.thread = threading.Thread(target=_pump, args=(read, channel), name="tether-stderr", daemon=True)
        self.thread.start()
        if early is not None:
            early.forward(channel, self.handler, alert_forwarder, lines)

    def stop(self) -> None:
        """Forward what is left, then give fd 1 and 2 back."""
        logging.getLogger().removeHandler(self.handler)
        logging.captureWarnings(False)
        if self.alerts is not None:
            _metrics.on_alert(self.alerts, remove=True)
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(self.saved, 2)
        os.dup2(self.saved, 1)
        os.close(self.saved)
        self.thread.join(1.0)  # ends at EOF, unless a child process still holds the pipe


# ---------------------------------------------------------------- stats for `tether stats`


class _StatsWriter:
    """Writes the worker's :meth:`Worker.stats` to ``<dir>/stats.json`` at start and on each ``SIGUSR2``.

    Atomic: a temporary file in the same directory, then ``os.replace``. The
    signal handler only writes a byte to a pipe; a daemon thread reads it and
    does the writing, so a signal that lands inside a handler, or inside
    metrics' own bookkeeping, never runs the snapshot there. The handler takes
    no lock: Python runs a handler again inside itself when signals come fast,
    and a second ``Event.set`` waited for the lock the first one held, forever
    (one worker in ~120 hung after five quick SIGUSR2s).
    """

    def __init__(self, worker: "Worker", directory: str):
        self.worker = worker
        self.path = os.path.join(directory, STATS_FILE)
        self._wake, self._poke = os.pipe()
        os.set_blocking(self._poke, False)
        # The handler goes in before the first stats.json exists: read_stats signals as soon as
        # it sees the file, and SIGUSR2's default action would end the process.
        signal.signal(signal.SIGUSR2, self._wanted)
        self.write()
        self.thread = threading.Thread(target=self._run, name="tether-stats", daemon=True)
        self.thread.start()

    def _wanted(self, _signum: int, _frame_: Any) -> None:
        try:
            os.write(self._poke, b"w")
        except OSError:  # the pipe is full (a write is already wanted), or the worker is closing
            pass

    def _run(self) -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1, signal.SIGUSR2})
        while os.read(self._wake, 4096):  # every request pending now: one write answers them all
            self.write()

    def write(self) -> None:
        try:
            data = self.worker.stats()
        except StatsError as exc:
            data = {"error": str(exc), "worker": {"pid": os.getpid(), "calls": self.worker.calls}}
        data["written_at"] = time.time()
        tmp = f"{self.path}.{threading.get_ident()}.tmp"
        try:
            # 0600 like every file in the worker's private directory (README, "Python from your Elixir app").
            with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600), "w",
                      encoding="utf-8") as out:
                json.dump(data, out, default=str)
            os.replace(tmp, self.path)
        except OSError as exc:  # the BEAM removed the directory: the worker is shutting down
            logging.getLogger("tether.worker").debug("stats not written: %s", exc)


def _worker_stats_dir(pid: int) -> str | None:
    """The ``--stats-dir`` of the tether worker with OS pid ``pid``, or None when it is not one."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return None
    if b"tether.worker" not in argv or b"--stats-dir" not in argv:
        return None
    at = argv.index(b"--stats-dir") + 1
    return os.fsdecode(argv[at]) if at < len(argv) and argv[at] else None


def workers() -> list[int]:
    """The OS pids of this machine's running tether workers that write stats (what ``read_stats`` reaches).

    Examples
    --------
    >>> isinstance(workers(), list)
    True
    """
    pids = [int(name) for name in os.listdir("/proc") if name.isdigit()] if os.path.isdir("/proc") else []
    return sorted(pid for pid in pids if pid != os.getpid() and _worker_stats_dir(pid) is not None)


def read_stats(target: int | str | os.PathLike, timeout: float = 2.0) -> dict[str, Any]:
    """A running worker's metrics snapshot, fresh: ``tether.metrics.snapshot()`` plus a ``worker`` entry.

    ``target`` is the worker's OS pid (``Tether.Worker.info(w).os_pid``, or one
    of :func:`workers`), or its stats directory or ``stats.json``. The worker
    is sent ``SIGUSR2`` and writes the file anew; this waits for that (up to
    ``timeout`` seconds). Raises :class:`StatsError` when there is no worker
    there or it does not answer in time.

    Examples
    --------
    >>> read_stats(999999999)  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    tether.worker.StatsError: no tether worker with OS pid 999999999 ...
    """
    if isinstance(target, bool) or not isinstance(target, (int, str, os.PathLike)):
        raise StatsError(f"target must be a worker's OS pid (int) or its stats directory (str or path), "
                         f"got {target!r:.80}.")
    if type(timeout) not in (int, float) or not timeout >= 0:
        raise StatsError(f"timeout must be a non-negative number of seconds, got {timeout!r}.")
    if isinstance(target, int):
        pid, directory = target, _worker_stats_dir(target)
        if directory is None:
            raise StatsError(f"no tether worker with OS pid {target} (or it was started without --stats-dir); "
                             "running workers: " + (", ".join(map(str, workers())) or "none") + ".")
        path = os.path.join(directory, STATS_FILE)
    else:
        path = os.fsdecode(target)
        path = os.path.join(path, STATS_FILE) if os.path.isdir(path) else path
        worker = _load_stats(path).get("worker")
        pid = worker.get("pid") if isinstance(worker, dict) else None
    before = _load_stats(path).get("written_at")
    if not isinstance(pid, int) or _worker_stats_dir(pid) is None:
        raise StatsError(f"the worker that wrote {path} is not running (pid {pid}).")
    os.kill(pid, signal.SIGUSR2)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data = _load_stats(path)
        if data.get("written_at") != before:
            return data
        time.sleep(0.005)
    raise StatsError(f"worker {pid} did not write {path} within {timeout} s of SIGUSR2 (busy in C code?).")


def _load_stats(path: str) -> dict[str, Any]:
    try:
        fd, _ = open_regular(path)
        with open(fd, encoding="utf-8") as f:
            data = json.load(f)
    except NotRegularFile:
        raise StatsError(f"{path} is not a regular file, so not a worker's {STATS_FILE}; name its stats "
                         "directory or its OS pid.") from None
    except FileNotFoundError:
        raise StatsError(f"no worker stats at {path}: not a running tether worker's stats directory.") from None
    except (UnicodeDecodeError, json.JSONDecodeError):  # a frame file, say: not what a worker writes
        raise StatsError(f"{path} is not a worker's {STATS_FILE} (not JSON text); name a worker's stats "
                         "directory or its OS pid.") from None
    except (OSError, ValueError, RecursionError) as exc:  # RecursionError: JSON nested deeper than Python parses
        raise StatsError(f"cannot read worker stats at {path}: {type(exc).__name__}: {exc}.") from None
    if not isinstance(data, dict):
        raise StatsError(f"{path} holds a JSON {type(data).__name__}, not a worker's stats (a JSON object); "
                         "name a worker's stats directory or its OS pid.")
    return data


# ---------------------------------------------------------------- the loop


def serve(worker: Worker, channel: Channel) -> int:
    """Answer calls until the input closes (0) or falls out of step (1); returns the exit status.

    Examples
    --------
    One call, then the BEAM closes the port:

    >>> import math, os
    >>> beam_r, py_w = os.pipe()
    >>> py_r, beam_w = os.pipe()
    >>> beam = Channel(beam_r, beam_w)
    >>> beam.write_message(compact((tether.Atom("call"), 7, b"math", b"sqrt", [16.0], {})))
    >>> os.close(beam_w)
    >>> w = Worker({"math": math})
    >>> serve(w, Channel(py_r, py_w))
    0
    >>> read_compact(beam.read_message())
    (Atom('reply'), 7, (Atom('ok'), 4.0))
    >>> w.close()
    >>> for fd in (beam_r, py_w, py_r):
    ...     os.close(fd)
    """
    if not isinstance(worker, Worker) or not isinstance(channel, Channel):
        raise ValidationError(f"serve takes a tether.worker.Worker and a Channel, got {type(worker).__name__} and "
                              f"{type(channel).__name__}.")
    worker.channel = channel
    channel.on_pending = worker.after_write
    worker.defer_accounting = True
    while True:
        try:
            message = channel.read_message()
        except MessageError as exc:
            worker.reset_form()  # a message it could not read: answered as a frame, whatever came before
            channel.write_message(worker.bad_request(-1, exc))
            if exc.fatal:
                logging.getLogger("tether.worker").error("tether.worker exits: %s", exc)
                return EXIT_PROTOCOL
            if not channel.discard(exc.remaining):
                return EXIT_OK
            continue
        if message is None:
            return EXIT_OK
        if message[:4] == b"PING":  # the benchmark's minimal {packet, 4} echo baseline
            channel.write_message(message)
            continue
        reply = worker.handle(message)
        if reply is not None:
            channel.write_message(reply)
        worker.account()  # after the reply is on its way
        if worker.policy is not None:
            worker.policy.tick()


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tether.worker", description=__doc__.split("\n\n")[0])
    parser.add_argument("--module", action="append", required=True, help="module whose public functions BEAM may call")
    parser.add_argument("--shm-threshold", type=int, default=SHM_THRESHOLD,
                        help="embedded frames larger than this go through shared memory (bytes)")
    parser.add_argument("--max-message", type=int, default=MAX_MESSAGE,
                        help="largest message accepted from the pipe (bytes); larger data goes through shared memory")
    parser.add_argument("--binaries", choices=("bytes", "str"), default="bytes",
                        help="how Elixir binaries arrive in handler arguments")
    parser.add_argument("--log-level", choices=tuple(_LOG_LEVELS), default=None,
                        help="the root logger's level, set before the modules are imported (default: Python's, "
                             "WARNING); tether's own loggers stay at WARNING")
    parser.add_argument("--spin-us", type=int, default=SPIN_US,
                        help="microseconds to poll for the next message before sleeping in read(), 0 to 10000 "
                             "(0: never; see tether.worker.Spin)")
    parser.add_argument("--pin", default=None, metavar="ROLE:OFFSET:INDEX:SPINNERS",
                        help="a pool member's CPUs (set by Tether.Pool's pin: option): see "
                             "tether.worker.pinned_cpus")
    parser.add_argument("--no-sched-batch", dest="sched_batch", action="store_false",
                        help="a pinned sleeping member serves at the normal policy, never SCHED_BATCH (set by "
                             "Tether.Pool's sched_batch: false): see tether._sched")
    parser.add_argument("--stats-dir", default=None,
                        help="directory private to the worker: SIGUSR2 writes stats.json there for `tether stats`, "
                             "and the BEAM names there the call each SIGUSR1 cancels")
    args = parser.parse_args(argv)
    if args.max_message < frame.HEADER_SIZE or args.shm_threshold < 0:
        parser.error("--max-message must be at least 64 and --shm-threshold at least 0")
    if not 0 <= args.spin_us <= SPIN_US_MAX:
        parser.error(f"--spin-us must be from 0 to {SPIN_US_MAX} (microseconds)")
    return args


_LOG_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR,
               "critical": logging.CRITICAL}


def _set_log_level(name: str) -> None:
    """The root logger at ``name``'s level: the records the BEAM is sent (``log_level:`` on the BEAM side)."""
    level = _LOG_LEVELS[name]
    logging.getLogger().setLevel(level)
    tether_logger = logging.getLogger("tether")
    if level < logging.WARNING and tether_logger.level == logging.NOTSET:
        # tether's own INFO/DEBUG records (a decision per dumps) would cross the pipe on every call.
        tether_logger.setLevel(logging.WARNING)


def _die_with_the_node() -> None:
    """SIGKILL when the BEAM's port program (``erl_child_setup``, this process's parent) goes.

    A node killed outright closes the port, but a handler that never returns never reads it: the
    worker would run on, an orphan holding its memory. Only under a BEAM: Python that started the
    worker itself keeps the usual lifetime (the signal follows the thread that forked, not the process).
    """
    parent = os.getppid()
    try:
        with open(f"/proc/{parent}/comm", "rb") as f:
            if f.read().strip() != b"erl_child_setup":
                return
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(1, signal.SIGKILL, 0, 0, 0) != 0:  # PR_SET_PDEATHSIG
            return  # refused (a seccomp profile, say): the orphan case stays, the node's keeper still reaps
    except (OSError, AttributeError):  # no /proc, no prctl (not Linux): the orphan case stays
        return
    if os.getppid() != parent:  # the node died before the call above: nothing would send the signal
        os._exit(1)


def main(argv: list[str] | None = None) -> int:
    """Run the worker on fd 0 and 1 until the BEAM closes the port; returns the exit status.

    Examples
    --------
    ``python -m tether.worker --module my_handlers --shm-threshold 1048576``
    """
    args = _arguments(argv)
    _die_with_the_node()
    if args.log_level is not None:
        _set_log_level(args.log_level)
    beside_beam = args.pin is not None and _pin(args.pin)
    # stdout carries the protocol: keep a private descriptor for it, and send
    # whatever else writes to fd 1 to stderr (until ready: the BEAM's; then the log pipe).
    out = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    channel = Channel(0, out, args.max_message, args.spin_us)
    worker = Worker({}, shm_threshold=args.shm_threshold, binaries=args.binaries,
                    region_dir=args.stats_dir or "/dev/shm")
    signal.signal(signal.SIGUSR1, worker.on_cancel)  # from now on: a late cancel must not kill the worker
    if args.stats_dir is not None:  # before ready: `tether stats` may signal as soon as the file exists
        _StatsWriter(worker, args.stats_dir)
        worker.cancel_file = os.path.join(args.stats_dir, CANCEL_FILE)
    early = _EarlyOutput()  # what the imports log: sent once the BEAM reads more than the handshake
    try:
        modules, status = handshake(channel, args.module)
    except BaseException:
        early.hand_over(None)  # logging as it was, for whatever runs on the way out
        raise
    if modules is None:
        early.hand_over(None)
        worker.close()
        return status
    worker.modules = modules
    # The imports' objects (numpy, pyarrow, the handlers) never die: out of the
    # collector's way, so its full passes stay short on a worker's hot path.
    gc.freeze()
    forwarding = _Forwarding(channel, early)
    if beside_beam and args.sched_batch:
        # From the first call on: the imports and tether's own threads (the stderr pump shares the reply
        # lock) keep the normal policy; threads and processes a handler starts inherit the serving thread's.
        worker.policy = BatchPolicy()
    del early  # sent: nothing of the imports' output stays for the worker's life
    try:
        return serve(worker, channel)
    finally:
        worker.close()
        forwarding.stop()


def _exit(status: int) -> None:
    """End ``python -m tether.worker`` with ``status``, even when a handler left a thread running.

    Python's own exit waits for every non-daemon thread before it runs the ``atexit`` functions,
    so a handler's thread that never ends kept the worker alive after the BEAM closed the port,
    forever. Such threads get :data:`EXIT_GRACE` seconds to finish; without any left, this is
    Python's normal exit. Otherwise the worker does what that exit does but the waiting (the
    ``atexit`` functions, logging's flush, stdout and stderr flushed) and ends with ``os._exit``.
    """
    # What Python's exit runs before it joins the threads (concurrent.futures ends its idle pool
    # threads there): without it, a handler's idle ThreadPoolExecutor would look like a stuck thread.
    for hook in reversed(getattr(threading, "_threading_atexits", [])):
        try:
            hook()
        except Exception:  # a failing hook must not keep the worker alive; Python's exit ignores it too
            pass
    lingering = [t for t in threading.enumerate() if t is not threading.current_thread() and not t.daemon]
    deadline = time.monotonic() + EXIT_GRACE
    for thread in lingering:
        thread.join(max(0.0, deadline - time.monotonic()))
    running = [t.name for t in lingering if t.is_alive()]
    if not running:
        raise SystemExit(status)
    print(f"tether.worker: exiting without waiting for {len(running)} thread(s) a handler left running: "
          f"{', '.join(running[:10])}; make such threads daemon=True, or end them", file=sys.stderr)
    # The interpreter's own runner of the atexit functions: there is no public one, and what they
    # write (a handler's last records, coverage data) is what a normal exit would keep.
    run_exit_functions = getattr(atexit, "_run_exitfuncs", None)
    if run_exit_functions is not None:
        run_exit_functions()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):  # closed, or its descriptor is gone
            pass
    os._exit(status)


def _run() -> int:
    """``main()``'s status; an exception out of it printed as Python would, with status 1."""
    try:
        return main()
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)  # as Python prints a SystemExit's message
        return 1
    except KeyboardInterrupt:
        traceback.print_exc()
        return 128 + signal.SIGINT  # what an interrupted Python's exit status says
    except BaseException:
        traceback.print_exc()
        return 1


def run() -> NoReturn:
    """Run the worker as ``python -m tether.worker`` does: :func:`main`, then exit with its status.

    Examples
    --------
    ``python -c "import tether.worker; tether.worker.run()" --module my_handlers``
    """
    _exit(_run())


if __name__ == "__main__":
    # `python -m` runs this file as __main__, a second copy of the module: its Cancelled was not the one a
    # handler imports, so `except tether.worker.Cancelled` never matched. The canonical module runs instead.
    import tether.worker

    tether.worker.run()
