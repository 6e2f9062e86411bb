"""dumps / loads / encode / inspect: the small surface users touch.

This module only orchestrates. Writing a value is: choose a format
(:mod:`tether._select`), encode the payload with fallback (the format), compress
(:mod:`tether.compression`), build the frame (:mod:`tether.frame`). Reading is
the same steps backwards.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Mapping, Sequence

from . import _transport, compression, formats, frame, memory
from ._buffers import as_view, read_view
from ._errors import DecodeError, TetherError, UnsupportedFormatError, ValidationError
from ._limits import Limits, get_limits
from ._request import READERS, Request, check_format, check_options
from ._select import Decision, choice, record, record_lazy
from .compression import plain_reason
from .formats import DecodeContext
from .frame import Encoded, FrameInfo, Header, frame_name
from .metrics import core as _metrics

# The metrics accumulator's calls, bound once: start() is a start mark or None while metrics are off;
# add(..., t0, decision), add_plain(..., plain, t0, decision) and add_frame(..., buffer, header, t0) count the
# operation and return None, or flags: _DUE (fold now), _LARGE_OP (the large-value notes apply)
# (tether/metrics/_core.py). They take the writer's result and the frame's buffer whole: unpacking or measuring
# them here would cost bytecodes on every operation, which a small round trip's 3 % budget (#13) cannot spare.
_start, _add, _add_plain, _add_frame = _metrics.start, _metrics.add, _metrics.add_plain, _metrics.add_frame
_LARGE, _DUE, _LARGE_OP = _metrics.LARGE, _metrics.DUE, _metrics.LARGE_OP

_checksum = frame.checksum
_new_context = tuple.__new__  # a DecodeContext from all its fields, without keyword handling
_NO_OPTIONS = DecodeContext().options
_DECODE_FAILURES = (ValueError, TypeError, IndexError, KeyError, OverflowError, RecursionError, UnicodeError)


def encode(
    obj: Any,
    *,
    format: str = "auto",
    compression: str = "none",
    level: int | None = None,
    metadata: Mapping[str, Any] | None = None,
    checksum: bool | str = "auto",
    transport: str = "memory",
    bandwidth: float | None = None,
    lineage: Sequence[Mapping[str, Any]] | None = None,
    options: Mapping[str, Any] | None = None,
    reader: str = "python",
    parent: FrameInfo | None = None,
    step: str | None = None,
) -> Encoded:
    """Prepare ``obj`` as a frame without writing it: see :class:`Encoded`.

    Options as :func:`dumps`. The frame's exact size is known at once
    (``nbytes``); :meth:`Encoded.write_into` writes it wherever it goes.

    Examples
    --------
    >>> import tether
    >>> enc = tether.encode([1, 2, 3])
    >>> enc.decision.format, enc.nbytes == len(bytes(enc))
    ('etf', True)
    """
    req = Request.of(format=format, compression=compression, level=level, metadata=metadata, checksum=checksum,
                     transport=transport, bandwidth=bandwidth, lineage=lineage, options=options, reader=reader,
                     parent=parent, step=step)
    t0 = _start()
    enc = prepare(obj, req)
    if t0 is not None:  # counted once written: the encoding and the write, not the time between them
        enc.when_written(functools.partial(_count_written, req.transport, _metrics.clock() - t0))
    return enc


def _count_written(transport: str, encode_ns: int, enc: Encoded, write_ns: int, copied: bool) -> None:
    """Count a frame from :func:`encode` as it is written: a ``dumps`` when ``bytes()`` copied it out, a
    ``dump_into`` when ``write_into`` put it in the caller's buffer (no copy for the large-copy rule to see)."""
    _observe_encoded("dumps" if copied else "dump_into", enc, transport, enc.nbytes,
                     _metrics.clock() - encode_ns - write_ns)


def prepare(
    obj: Any, req: Request, *, stream: Mapping[str, Any] | None = None, decision: Decision | None = None,
    op: str = "encode",
) -> Encoded:
    """Encode ``obj`` for ``req``: choose → encode the payload (with fallback) → compress → build the frame.

    ``stream`` makes the frame a chunk of a :mod:`tether.stream` (its metadata map); ``decision``
    is a format choice already made for this value and request; ``op`` names the operation that
    ``tether.memory.stats()`` files the encoding's temporary buffers under.
    """
    # The request's fields as locals, read once: each read of a named tuple's field is a lookup.
    requested, codec, level, metadata, checksum, transport, bandwidth, lineage, options, reader, step = req
    decision = decision or Decision(*choice(obj, requested, transport, reader), requested=requested)
    inner = codec
    if options:
        formats.check_option_keys(options)
    if reader != "python":
        check_format(decision.format, reader, decision.reason)
        # Formats see who reads the frame (ndarray then writes row-major); a codec inside a
        # format's payload (Arrow IPC's lz4) is not one such a reader undoes.
        options, inner = {**(options or {}), "reader": reader}, "none"
    fmt, payload, ctx = formats.encode(obj, decision, options, auto=requested == "auto", compression=inner,
                                       transport=transport)
    if payload.temporary:  # the format's own buffers, held until the frame is written out
        memory.note_temporary(op, payload.temporary)
    if options and options.get("schema") is not None and fmt.name != "arrow":
        raise ValidationError(f"options['schema'] validates tables, and this value was written as {fmt.name} "
                              f"({decision.reason}): pass format='arrow' (or a pyarrow Table) to validate it.")
    if reader != "python":
        check_format(fmt.name, reader, decision.reason)  # a fallback may land where this reader cannot follow
    if fmt.name == "pickle" and _metrics.on:
        _metrics.note("pickle", payload.type_info["python_type"], payload.nbytes)  # the format names the type
    if ctx.inner_compression is None:
        t0 = _metrics.clock() if _metrics.on and codec != "none" else None
        stored = compression.pack(payload, fmt, codec, level, transport, bandwidth, decision, reader,
                                  own_checksum=checksum == _checksum.NONE)
        if t0 is not None and (stored.compression_id or codec != "auto"):
            # A codec asked for by name that did not shrink the payload counts too: time spent, nothing saved.
            name = decision.compression if stored.compression_id else codec
            _note_compression(name, req, stored, _metrics.clock() - t0)
    else:  # the format compressed inside its payload; the decision already says how
        stored = frame.Stored(payload.segments, payload.nbytes, payload.nbytes)
    # Compressed inside the format's own payload (Arrow IPC buffers) counts as compressed: Arrow's LZ4 and Zstd
    # buffers carry no checksum of their own, and a flipped bit decoded to other rows without an error.
    compressed = stored.compression_id != 0 or ctx.inner_compression is not None
    kind = _checksum.kind_for(checksum, stored.stored_length, transport, compressed,
                              unchecked_inside=ctx.inner_compression is not None)
    if kind and stored.stored_length >= _metrics.LARGE and transport == "memory" and _metrics.on:
        _metrics.note("checksum", (fmt.name, transport), stored.stored_length)
    record(decision)
    return frame.build(fmt, payload.type_info, stored, kind, user=metadata, lineage=lineage, stream=stream,
                       decision=decision, step=step)


def _note_compression(codec: str, req: Request, stored: frame.Stored, ns: int) -> None:
    # The bandwidth the caller passed (None: the recommendation uses observed transfers, else the assumed one).
    _metrics.note("compress", (codec, req.transport, req.bandwidth), stored.raw_length, stored.stored_length, ns)


def dumps(
    obj: Any,
    *,
    format: str = "auto",
    compression: str = "none",
    level: int | None = None,
    metadata: Mapping[str, Any] | None = None,
    checksum: bool | str = "auto",
    transport: str = "memory",
    bandwidth: float | None = None,
    lineage: Sequence[Mapping[str, Any]] | None = None,
    options: Mapping[str, Any] | None = None,
    reader: str = "python",
    parent: FrameInfo | None = None,
    step: str | None = None,
) -> bytes:
    """Encode ``obj`` as one complete frame.

    Parameters
    ----------
    obj : Any
        The value.
    format : str
        ``"auto"`` or a registered format name (``raw``, ``scalar``, ``ndarray``,
        ``etf``, ``arrow``, ``pickle``, ...).
    compression : str
        ``"none"``, ``"auto"`` or a registered compressor name.
    level : int, optional
        Compression level; the compressor's default when None.
    metadata : mapping, optional
        User fields stored in the frame metadata (str keys; str, bytes, numbers,
        bools, None, lists and dicts of those).
    checksum : {"auto", True, False, "xxh3-64", "crc32", "none"}
        The payload checksum, CRC-32 by default (what ``erlang:crc32/1``
        computes, so the BEAM verifies it natively). ``"auto"`` covers payloads
        up to 1 MiB always and larger payloads when ``transport`` leaves memory
        or the payload is compressed; large in-memory frames rely on their
        region's commit protocol so ``loads`` stays O(1). True forces CRC-32;
        ``"xxh3-64"`` is faster on large payloads, for Python readers.
        Header and metadata are always covered by CRC-32.
    transport : {"memory", "shm", "network", "disk", "stream"}
        Where the frame goes; steers ``checksum="auto"`` and ``compression="auto"``.
    bandwidth : float, optional
        Bytes per second of the link, overriding the transport's assumed
        bandwidth in ``compression="auto"``.
    lineage : sequence of mappings, optional
        Where the value came from; stored as a list after tether's own entry.
    options : mapping, optional
        Format options, e.g. ``{"none_atom": "undefined"}`` for etf.
    reader : {"python", "beam"}
        Who reads the frame. ``"python"`` (default) reads everything.
        ``"beam"`` (``tether:decode/1``) makes ``compression="auto"`` choose
        between gzip and none only (still by the cost model: gzip where it
        pays), writes arrays row-major (C order) whatever their layout, and
        refuses what the BEAM cannot read: ``compression="lz4"``/``"zstd"``
        and ``format="pickle"`` are a ValidationError, a value only pickle
        could hold an EncodeError.
    parent : FrameInfo, optional
        The info of the frame ``obj`` was read from (``loads(..., with_info=True)``):
        its lineage is carried forward, after this frame's own entry.
    step : str, optional
        What this write is (``"normalize"``, ``"module.function"``): this frame's
        own lineage entry records it with the time (``at``, microseconds since 1970).

    Examples
    --------
    >>> import tether
    >>> frame = tether.dumps({"id": 1, "tags": ("a", b"b")})
    >>> tether.loads(frame)
    {'id': 1, 'tags': ('a', b'b')}
    """
    return _dumps(obj, format, compression, level, metadata, checksum, transport, bandwidth, lineage, options, reader,
                  parent, step)


def _dumps(
    obj: Any, format: str, compression: str, level: int | None, metadata: Mapping[str, Any] | None,
    checksum: bool | str, transport: str, bandwidth: float | None, lineage: Sequence[Mapping[str, Any]] | None,
    options: Mapping[str, Any] | None, reader: str, parent: FrameInfo | None, step: str | None,
) -> bytes:
    """:func:`dumps` itself, timed for :mod:`tether.metrics` (arguments as dumps)."""
    t0 = _start()
    try:
        decision = None
        if ((compression == "none" or compression == "auto") and level is None and metadata is None
                and lineage is None and not options and bandwidth is None and reader in READERS and parent is None
                and step is None):
            # Plain frames: a format with a one-step writer (etf) skips the general machinery; so does "auto"
            # where it would not compress: on this host, or a payload its format says is too small to pay (not
            # found out by encoding it: a large one would be encoded twice).
            name, reason, estimate = choice(obj, format, _transport.check(transport), reader)
            writer = getattr(formats.get(name), "dumps_plain", None)
            if compression == "auto" and plain_reason(None, transport, estimate) is None:
                writer = None
            plain = writer(obj, _checksum.requested(checksum), transport) if writer is not None else None
            why = "not requested" if compression == "none" or plain is None else \
                plain_reason(None, transport, plain[1])
            if why is not None and plain is not None:
                item = record_lazy(name, reason, format, plain[1], estimate, why)
                if t0 is not None:
                    flags = _add_plain("dumps", name, "none", transport, plain, t0, item)
                    if flags:
                        _after_plain(flags, name, checksum, transport, plain[1])
                return plain[0]
            decision = Decision(name, reason, estimate, requested=format)
        req = Request.of(format=format, compression=compression, level=level, metadata=metadata, checksum=checksum,
                         transport=transport, bandwidth=bandwidth, lineage=lineage, options=options, reader=reader,
                         parent=parent, step=step)
        if decision is None and compression == "none" and level is None and not options and bandwidth is None:
            # A plain frame but for metadata, lineage or a step: the one-step writer writes them too.
            stamped, decision = _dumps_stamped(obj, req, checksum, t0)
            if stamped is not None:
                return stamped
        enc = prepare(obj, req, decision=decision, op="dumps")
        out = bytes(enc)
    except TetherError as exc:
        if t0 is not None:
            _metrics.count_other("dumps", str(format), str(compression), str(transport), 0, _metrics.ERRORS,
                                 type(exc).__name__)
        raise
    if t0 is not None:
        _observe_encoded("dumps", enc, req.transport, len(out), t0)
    return out


def _dumps_stamped(obj: Any, req: Request, checksum: Any, t0: int | None) -> tuple[bytes | None, Decision | None]:
    """A frame of a small value with metadata, lineage or a step, by its format's one-step writer.

    (frame, None), counted for :mod:`tether.metrics` as a plain frame; or (None, the format decision) when the
    general path must take the value: no one-step writer, or it declined, or the payload may be large (the
    general path writes those in place). The bytes are those the general path writes. ``checksum`` is dumps'
    own argument.
    """
    requested, transport, reader = req.format, req.transport, req.reader
    name, reason, estimate = choice(obj, requested, transport, reader)
    plain = None
    if estimate is None or estimate < frame.JOIN_BELOW:
        if reader != "python":
            check_format(name, reader, reason)  # what prepare checks first
        writer = getattr(formats.get(name), "dumps_plain", None)
        if writer is not None:
            try:
                plain = writer(obj, req.checksum, transport, {"user": req.metadata, "lineage": req.lineage,
                                                              "step": req.step})
            except TetherError:  # metadata it refused: the value's decision stands, as prepare records it
                record(Decision(name, reason, estimate, requested=requested))
                raise
    if plain is None:
        return None, Decision(name, reason, estimate, requested=requested)
    item = record_lazy(name, reason, requested, plain[1], estimate)
    if t0 is not None:
        flags = _add_plain("dumps", name, "none", transport, plain, t0, item)
        if flags:
            _after_plain(flags, name, checksum, transport, plain[1])
    return plain[0], None


def _after_plain(flags: int, fmt: str, checksum: Any, transport: str, size: int) -> None:
    """Fold the counts when due; the large-value notes of a plain frame (the general path's are in prepare).

    The one-step writer's temporary is counted from :data:`_LARGE` bytes, where the flag says so for free
    (and while metrics are on): counting it for every small dumps would cost more than the metrics do.
    """
    if flags & _DUE:
        _metrics.drain(False)
    if flags & _LARGE_OP and size >= _LARGE and formats.get(fmt).plain_temporary:
        memory.note_temporary("dumps", size)
    if flags & _LARGE_OP and size >= _LARGE and transport == "memory" and _checksum.kind_for(
            _checksum.requested(checksum), size, transport, False):
        _metrics.note("checksum", (fmt, transport), size)


def _observe_encoded(op: str, enc: Encoded, transport: str, nbytes: int, t0: float) -> None:
    """Count one written frame that started at ``t0`` (its decision joins the history with the time it took)."""
    d = enc.decision
    # raw_length, not header.raw_length: after a write, header rebuilds the namedtuple (~2 us on the path).
    flags = _add(op, d.format, d.compression, transport, enc.raw_length, nbytes, t0, d)
    if d.fallback_from:
        _metrics.count_other(op, d.format, d.compression, transport, nbytes, _metrics.FALLBACKS,
                             f"{d.fallback_from}->{d.format}")
    if flags and flags & _DUE:
        _metrics.drain(False)


def dump_into(obj: Any, region: Any, **options: Any) -> Any:
    """Write ``obj`` as a frame straight into a shared-memory region, with no intermediate buffer.

    Options are those of :func:`dumps`; ``transport`` defaults to ``"shm"``.
    The frame is visible to readers once this returns.

    Returns
    -------
    tether.shm.FrameRef
        Where the frame lives; ``region.view(ref)`` or ``tether.loads(region)`` reads it.

    Examples
    --------
    >>> import tether
    >>> from tether.shm import Region
    >>> with Region.create(1 << 16) as region:
    ...     ref = tether.dump_into({"k": [1, 2]}, region)
    ...     tether.loads(region)
    {'k': [1, 2]}
    """
    if not callable(getattr(region, "reserve", None)):
        raise ValidationError(f"dump_into writes into a tether.shm.Region (Region.create, or a RegionPool's "
                              f"acquire), got {type(region).__name__}.")
    options.setdefault("transport", "shm")
    t0 = _start()
    enc = encode(obj, **options)
    enc.when_written(None)  # counted below, as a dump_into with its region
    slot, _offset, view = region.reserve(enc.nbytes)
    try:
        enc.write_into(view)
    except BaseException:
        view.release()
        region.release(slot)
        raise
    view.release()
    ref = region.commit(slot)
    if t0 is not None:
        _observe_encoded("dump_into", enc, options["transport"], enc.nbytes, t0)
        _note_region(region, enc.nbytes)
    return ref


_seen_regions: dict[Any, None] = {}  # names of regions dump_into wrote to lately (insertion-ordered, bounded)


def _note_region(region: Any, nbytes: int) -> None:
    """Note whether ``region`` is new to dump_into (fresh pages) or one it wrote to before (a pool's, warm)."""
    name = getattr(region, "name", None) or id(region)
    if name in _seen_regions:
        _metrics.note("region", "reused", nbytes)
        return
    _seen_regions[name] = None
    if len(_seen_regions) > 1024:
        del _seen_regions[next(iter(_seen_regions))]
    _metrics.note("region", "fresh", nbytes)


def inspect(buf: Any) -> FrameInfo:
    """Read a frame's header and metadata, never its payload.

    Accepts the same inputs as :func:`loads`. The metadata checksum is verified.

    Examples
    --------
    >>> import tether
    >>> print(tether.inspect(tether.dumps("hi")).format)
    scalar
    """
    header, meta, _ = frame.read(as_view(buf), get_limits(), whole=False)
    return _info(header, meta)


def verify(buf: Any) -> FrameInfo:
    """Check a frame's header, metadata and payload checksums without decoding the payload.

    Raises :class:`tether.ChecksumError` on a mismatch, and
    :class:`tether.UnsupportedFormatError` for a format or compression this
    tether cannot read (an intact frame that ``loads`` would refuse); returns
    the frame's info.

    Examples
    --------
    >>> import tether
    >>> tether.verify(tether.dumps(b"abc")).checksum
    'crc32'
    """
    mv = as_view(buf)
    header, meta, stored = frame.read(mv, get_limits())
    frame.verify_payload(stored, header, "frame")
    if header.format_id not in formats.registry.by_id:
        _unknown_format(header, meta)  # a plugin's, found by its entry point, or the error loads would raise
    compression.get(header.compression_id)  # the error loads would raise for a codec it does not know
    return _info(header, meta)


def _info(header: Header, meta: dict[str, Any]) -> FrameInfo:
    fmt = formats.registry.by_id.get(header.format_id)
    comp = compression.registry.by_id.get(header.compression_id)
    return frame.info(header, meta, fmt, comp)


def loads(
    buf: Any,
    *,
    into: str | None = None,
    copy: bool = False,
    allow_pickle: bool = False,
    verify: bool = True,
    options: Mapping[str, Any] | None = None,
    with_info: bool = False,
) -> Any:
    """Decode one frame.

    Parameters
    ----------
    buf : bytes-like
        bytes, bytearray, memoryview, mmap, a shared-memory region, or anything
        with the buffer protocol, holding exactly one frame.
    into : str, optional
        Another representation where one fits: ``"numpy"``, ``"bytes"``,
        ``"memoryview"`` (and the Arrow formats' ``"arrow"``, ``"pandas"``...).
    copy : bool
        False (default) returns read-only views into ``buf`` for arrays and
        large binaries. A view keeps ``buf`` alive (it holds a reference to
        it), so the memory stays valid for as long as any view exists.
        True returns independent, writable copies.
    allow_pickle : bool
        Allow pickle frames. Unpickling runs arbitrary code: only for trusted frames.
    verify : bool
        Verify the payload checksum when the frame has one. The header and
        metadata checksums are always verified.
    options : mapping, optional
        Format options, e.g. ``{"binaries": "str"}`` for etf frames from BEAM.
    with_info : bool
        Return ``(value, FrameInfo)``: the frame's info, lineage and user
        metadata (decoded only when read), e.g. to pass as ``dumps(parent=...)``.

    Examples
    --------
    >>> import numpy as np, tether
    >>> a = tether.loads(tether.dumps(np.arange(4.0)))
    >>> a, a.flags.writeable
    (array([0., 1., 2., 3.]), False)
    >>> value, info = tether.loads(tether.dumps([1], step="load"), with_info=True)
    >>> value, info.lineage[0]["step"]
    ([1], 'load')
    """
    t0 = _start()
    mv, recheck = read_view(buf)
    if recheck is not None:
        return _loads_region(mv, recheck, into, copy, allow_pickle, verify, options, with_info)
    if t0 is None:
        value, header, meta = decode_frame(mv, into, copy, allow_pickle, verify, options)
    else:
        try:
            value, header, meta = decode_frame(mv, into, copy, allow_pickle, verify, options)
        except TetherError as exc:
            _metrics.count_other("loads", "?", "?", "memory", len(mv), _metrics.ERRORS, type(exc).__name__)
            raise
        # The label is the registered format of the header's id (metadata's name is the peer's to choose):
        # the header's ids are counted, and named only when the counts are folded.
        flags = _add_frame("loads", "memory", mv, header, t0)
        if flags or into is not None or copy:
            _after_read(flags, formats.registry.by_id[header.format_id].name, into, copy, header.raw_length, t0)
    return (value, _info(header, meta)) if with_info else value


def _loads_region(mv: memoryview, recheck: Callable[[], None], into: str | None, copy: bool, allow_pickle: bool,
                  verify: bool, options: Mapping[str, Any] | None, with_info: bool) -> Any:
    """:func:`loads` of a shared-memory region's frame, which a writer reusing the region may rewrite meanwhile.

    With ``copy=True`` the frame is copied out first and everything is read from the copy: a parser (pyarrow's)
    never meets bytes that change under it, which crashed the process, and a rewrite shows as the copy failing
    its checks, or as the slot's seqlock moving. Either way nothing torn is returned: a ``RegionError``.
    Counted by the metrics as a ``loads`` of bytes is.
    """
    source = memoryview(bytes(mv)) if copy else mv
    try:
        value = loads(source, into=into, copy=copy, allow_pickle=allow_pickle, verify=verify, options=options,
                      with_info=with_info)
    except TetherError:
        recheck()  # a rewrite explains the error better than the checksum it broke
        raise
    recheck()  # a frame rewritten while it was read is not returned
    return value


def _after_read(flags: int | None, fmt: str, into: str | None, copy: bool, nbytes: int, t0: float) -> None:
    """Fold the counts when ``flags`` say so; note reads the recommendations look at (timed from ``t0``)."""
    if flags and flags & _DUE:
        _metrics.drain(False)
    ns = int(_metrics.clock() - t0)
    if into is not None:
        _metrics.note("into", (fmt, into), nbytes, 0, ns)
    if copy and nbytes >= _LARGE:
        _metrics.note("copy", fmt, nbytes, 0, ns)


def decode_frame(
    mv: memoryview, into: str | None, copy: bool, allow_pickle: bool, verify: bool, options: Mapping[str, Any] | None
) -> tuple[Any, Header, dict[str, Any]]:
    """Decode the one whole frame held in ``mv``: (value, header, metadata). Arguments as :func:`loads`."""
    limits = get_limits()
    return decode_read(frame.read(mv, limits), len(mv), limits, into, copy, allow_pickle, verify, options)


def decode_read(
    read: tuple[Header, dict[str, Any], memoryview], size: int, limits: Limits, into: str | None, copy: bool,
    allow_pickle: bool, verify: bool, options: Mapping[str, Any] | None
) -> tuple[Any, Header, dict[str, Any]]:
    """:func:`decode_frame` of a frame of ``size`` bytes whose header, metadata and stored payload
    :func:`tether.frame.read` gave (``read``): a stream reader has read them already to place the chunk."""
    header, meta, payload = read
    fmt = formats.registry.by_id.get(header.format_id) or _unknown_format(header, meta)
    frame_id = (meta.get("format"), size)  # named only if a message needs it
    if verify is True:
        frame.verify_payload(payload, header, frame_id)
    elif verify is not False:
        raise ValidationError(f"verify must be True or False, got {verify!r}.")
    if copy is not False and copy is not True:
        raise ValidationError(f"copy must be True or False, got {copy!r}.")
    type_info = meta.get("type")
    if type(type_info) is not dict:
        raise DecodeError(f"{frame_name(frame_id)} metadata has no 'type' map.")
    if header.schema_version != fmt.schema_version:
        type_info = fmt.migrate(type_info, header.schema_version)
    if header.compression_id:
        payload = compression.unpack(payload, header, fmt, type_info, limits, frame_name(frame_id))
    if into is not None:
        fmt.check_into(into)
    if options:
        check_options(options)
        formats.check_option_keys(options)
    ctx = _new_context(DecodeContext, (into, copy, allow_pickle, dict(options) if options else _NO_OPTIONS, limits,
                                       "python", frame_id))
    try:
        return fmt.decode(payload, type_info, ctx), header, meta
    except TetherError:
        raise
    except _DECODE_FAILURES as exc:
        raise DecodeError(
            f"{frame_name(frame_id)}: payload does not match its metadata: {type(exc).__name__}: {exc}"
        ) from exc


def _unknown_format(header: Header, meta: dict[str, Any]) -> Any:
    """The format of an id this reader has not registered: a plugin's, or an error that says so."""
    try:
        return formats.get(header.format_id)  # entry points are tried on a miss
    except UnsupportedFormatError as exc:
        raise UnsupportedFormatError(
            f"frame ({meta.get('format')}, {header.frame_size} B) uses format id {header.format_id} "
            f"({meta.get('format')!r}), which is not registered here. {exc}"
        ) from None
