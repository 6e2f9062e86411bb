"""Frame metadata: an ETF map with binary keys, readable by ``binary_to_term(M, [safe])``."""

from __future__ import annotations

import os
import sys
import time
import zlib
from typing import Any, Mapping, NoReturn, Sequence

from .. import _etf
from .._etf import tags
from .._version import __version__
from .._errors import DecodeError, EncodeError, LimitError, MappingError, ValidationError, foreign
from .._limits import Limits, get_limits

# Keys written by tether itself; user fields live under "user".
KEYS = ("format", "schema", "created_at", "type", "lineage", "user", "producer", "user_packed")
PRODUCER = f"tether-py/{__version__}"
# User metadata whose encoding is larger than this is stored packed under "user_packed" (see
# docs/format.md, "Large user metadata"): compressed when that pays, decoded only when read.
USER_PACK_THRESHOLD = 16 << 10
PACKED_KEY = "user_packed"


# This process's pid, for the lineage entry: os.getpid() is a system call (~0.2 us, most of a
# small frame's metadata when cached), so it is read once and again in each forked child.
_pid = os.getpid()


def _forked() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_forked)

# plain: metadata holds no atoms but true/false/nil (docs/format.md §2), so that a BEAM reads it with [safe].
_OPTIONS = _etf.Options(structs=False, plain=True)
_PAIRS: dict[tuple, bytes] = {}
# Type information pairs apart: arrays of many shapes fill this one, not the fixed pairs' cache above.
_TYPED: dict[tuple, bytes] = {}
# A plain frame's metadata up to created_at's value, by (format, schema, pid).
_HEADS: dict[tuple, bytes] = {}
_MAP_HEAD = _etf.encode({}, _OPTIONS)[:2]  # version byte and map tag, as the encoder writes them


def pairs(mapping: dict[str, Any]) -> bytes:
    """The encoded key-value pairs of a metadata map, without its header: pieces :func:`splice` joins."""
    return _etf.encode(mapping, _OPTIONS, bytes_tag=_etf.BIT_BINARY)[6:]  # without 131 + MAP header


def _cache(key: Any, mapping: dict[str, Any], cache: dict[tuple, bytes] = _PAIRS) -> bytes:
    """Encode the pairs of ``mapping`` and keep them under ``key`` (values that repeat from frame to frame)."""
    encoded = _pairs(mapping)
    if len(cache) > 256:
        cache.clear()
    cache[key] = encoded
    return encoded


def splice(count: int, *parts: bytes) -> bytes:
    """A metadata map of ``count`` pairs from encoded pieces; an ETF map may list its pairs in any order."""
    return _MAP_HEAD + count.to_bytes(4, "big") + b"".join(parts)


def build(
    fmt: str,
    schema: int,
    type_info: dict[str, Any],
    *,
    type_key: Any = None,
    user: Mapping[str, Any] | None = None,
    lineage: Sequence[Mapping[str, Any]] | None = None,
    stream: Mapping[str, Any] | None = None,
    step: str | None = None,
) -> bytes:
    """The metadata block of a new frame: the one place tether writes it.

    Format, schema, producer and the default lineage repeat from frame to
    frame, so their encoding is cached (keyed by pid too, for forked
    children); so is the type information when the format names it with a
    hashable ``type_key``. ``step`` names this write in the frame's own
    lineage entry, with its time (``at``). User metadata over
    :data:`USER_PACK_THRESHOLD` bytes is packed. See docs/format.md,
    "Metadata", for the keys.

    Examples
    --------
    >>> meta = decode(build("raw", 1, {"kind": "bytes"}), __import__("tether").get_limits())
    >>> meta["format"], meta["type"], meta["producer"].startswith("tether-py/")
    ('raw', {'kind': 'bytes'}, True)
    """
    pid = _pid
    micros = time.time_ns() // 1000
    if type_key is not None and step is None and not lineage and not user and stream is None:
        # The common frame: everything but created_at's value repeats. Its head (map header, fixed pairs and
        # created_at's key) and its type pair are cached apart, so that many types never evict the head.
        head = _HEADS.get((fmt, schema, pid)) or _plain_head(fmt, schema, pid)
        tkey = ("type", fmt, schema, type_key)
        return head + _created_value(micros) + (_TYPED.get(tkey) or _cache(tkey, {"type": type_info}, _TYPED))
    fixed = _fixed_pairs(fmt, schema, pid, lineage, step, micros)
    tkey = ("type", fmt, schema, type_key) if type_key is not None else _type_key(fmt, schema, type_info)
    if tkey is None:
        typed = _pairs({"type": type_info})
    else:
        typed = _TYPED.get(tkey) or _cache(tkey, {"type": type_info}, _TYPED)
    return _assemble(fixed, _CREATED_KEY + _created_value(micros), typed, user, stream)


def _fixed_pairs(
    fmt: str, schema: int, pid: int, lineage: Sequence[Mapping[str, Any]] | None, step: str | None, micros: int
) -> bytes:
    """The four fixed pairs (format, schema, producer, lineage with this write's own entry first), encoded."""
    if step is not None:  # a step is timed: never the same twice
        return _pairs(_fixed(fmt, schema, pid, lineage, {"step": step, "at": micros}))
    # The pid is in the key, for forked children; a caller's lineage by its repr, only when that repr names its
    # encoding (built-in values): a memoryview's repr is its address, a subclass may repr as anything, and
    # repr itself fails on ints past Python's digit limit and on deep nesting.
    text = _lineage_key(lineage) if lineage else None
    if lineage and text is None:
        return _pairs(_fixed(fmt, schema, pid, lineage))
    key = (fmt, schema, pid, text)
    return _PAIRS.get(key) or _cache(key, _fixed(fmt, schema, pid, lineage))


# Values whose repr is their whole content; containers are walked.
_REPR_EXACT = frozenset({str, bytes, int, float, bool, type(None)})
_KEYED_MAX = 64  # values in a lineage worth a cache key; longer ones are encoded each time


def _lineage_key(lineage: Sequence[Mapping[str, Any]]) -> str | None:
    """``repr(lineage)`` when it pins the encoding (a short list of dicts of built-in values), else None."""
    if type(lineage) is not list:
        return None
    stack: list[Any] = list(lineage)
    seen = 0
    while stack:
        value = stack.pop()
        t = type(value)
        seen += 1
        if seen > _KEYED_MAX:
            return None
        if t is dict:
            stack.extend(value.keys())
            stack.extend(value.values())
        elif t is list or t is tuple:
            stack.extend(value)
        elif t not in _REPR_EXACT or (t is int and value.bit_length() > 64):
            return None
    return repr(lineage)


def _assemble(
    fixed: bytes, created: bytes, typed: bytes, user: Mapping[str, Any] | None, stream: Mapping[str, Any] | None
) -> bytes:
    """The metadata map from its encoded pairs, user metadata (checked: str keys) and a stream's map added."""
    parts = [fixed, created, typed]
    if user:
        user = user if type(user) is dict else dict(user)  # checked and written from one pass over a Mapping
        for name in user:
            if type(name) is not str and not isinstance(name, str):
                shown = repr(name) if type(name) is not int or name.bit_length() <= 64 else "an int"
                raise ValidationError(f"metadata keys must be str, got {shown[:80]}.")
        parts.append(_user_pair(user))
    if stream is not None:  # a chunk of a tether.stream: see docs/format.md, "Streams"
        parts.append(_pairs({"stream": dict(stream)}))
    block = splice(len(parts) + 3, *parts)  # the fixed part holds four pairs
    if len(block) > get_limits().max_metadata_size:  # what the header declares: readers bound it
        _refuse("Frame metadata is", len(block))
    return block


# Type information values whose type and value pin their encoding (1 and True are equal, and -0.0 == 0.0).
_PINNED = frozenset({str, int, bool, type(None)})
_STR = frozenset({str})
_BY_ITEMS = object()  # marks _type_key's keys apart from those of a format's own type_key


def _type_key(fmt: str, schema: int, type_info: dict[str, Any]) -> tuple | None:
    """A cache key for type information a format gave without naming it: its items and their values' types.

    None (encode it each time) when a value is not a str, int, bool or None, or a key not a str.
    """
    kinds = tuple(map(type, type_info.values()))
    if not _PINNED.issuperset(kinds) or not _STR.issuperset(map(type, type_info)):
        return None
    return ("type", fmt, schema, _BY_ITEMS, tuple(type_info.items()), kinds)


def _plain_head(fmt: str, schema: int, pid: int) -> bytes:
    """What :func:`build` writes before created_at's value in a frame with only the fixed pairs and ``type``.

    The same pairs in the same order as the general assembly (fixed, created_at, type), cut at the value.
    """
    key = (fmt, schema, pid, None)
    fixed = _PAIRS.get(key) or _cache(key, _fixed(fmt, schema, pid, None))
    if len(_HEADS) > 256:
        _HEADS.clear()
    head = _HEADS[fmt, schema, pid] = splice(4 + 2, fixed, _CREATED_KEY)  # four fixed pairs, created_at, type
    return head


def _fixed(
    fmt: str, schema: int, pid: int, lineage: Sequence[Mapping[str, Any]] | None, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    trail = [{"producer": PRODUCER, "pid": pid, "format": fmt, **(extra or {})}, *(dict(x) for x in lineage or ())]
    return {"format": fmt, "schema": schema, "producer": PRODUCER, "lineage": trail}


_CREATED_KEY = pairs({"created_at": 0})[:-2]  # the key as the map writes it, without the value 0
_USER_KEY = pairs({"user": 0})[:-2]
# SMALL_BIG_EXT's tag, byte count and sign (positive) by byte count: created_at's value starts so.
_SMALL_BIG = tuple(bytes((tags.SMALL_BIG_EXT, n, 0)) for n in range(256))


def _user_pair(user: dict[str, Any]) -> bytes:
    """The ``user`` pair, or above the threshold the ``user_packed`` pair holding it as an ETF binary."""
    try:
        term = _etf.encode(user, _OPTIONS, bytes_tag=_etf.BIT_BINARY)
    except (MappingError, EncodeError):
        return _pairs({"user": user})  # raises with the metadata message
    if len(term) <= USER_PACK_THRESHOLD:
        return _USER_KEY + term[1:]  # the value without its version byte, as a map holds it
    if len(term) > get_limits().max_metadata_size:  # readers bound the term, which deflating hides in the block
        _refuse("User metadata encodes to", len(term))
    # A 64 KiB sample says whether deflating the whole term can pay (random bytes would cost it for nothing).
    sample = term[: 64 << 10]
    packed = zlib.compress(term, 1) if len(zlib.compress(sample, 1)) < len(sample) * 0.9 else term
    compressed = len(packed) < len(term) * 0.9
    return _pairs({PACKED_KEY: {"encoding": "etf", "compression": "zlib" if compressed else "none",
                                "size": len(term), "data": packed if compressed else term}})


def _refuse(what: str, size: int) -> NoReturn:
    """Refuse metadata of ``size`` bytes, over what readers under this process's limits accept."""
    raise EncodeError(
        f"{what} {size} bytes, over Limits.max_metadata_size ({get_limits().max_metadata_size}): readers under "
        "these limits, this process included, would refuse the frame. Store less metadata (a path or key to the "
        "data rather than the data), or raise the limit with tether.set_limits(max_metadata_size=...) here and "
        "in every reader."
    )


def unpack_user(packed: Any, limits: Limits) -> dict[str, Any]:
    """The user metadata a ``user_packed`` map holds, within ``limits.max_metadata_size``.

    Examples
    --------
    >>> import tether
    >>> meta = decode(build("raw", 1, {}, user={"k": "v" * 20000}), tether.get_limits())
    >>> unpack_user(meta["user_packed"], tether.get_limits())["k"][:3]
    'vvv'
    """
    if not isinstance(packed, dict) or packed.get("encoding") != "etf" or not isinstance(packed.get("data"), bytes):
        raise DecodeError("Frame metadata 'user_packed' is not a map of encoding 'etf' with binary data.")
    size, data, comp = packed.get("size"), packed["data"], packed.get("compression")
    if type(size) is not int or not 0 <= size <= limits.max_metadata_size:
        raise LimitError(f"Packed user metadata declares {size!r} bytes, over the limit of "
                         f"{limits.max_metadata_size} (Limits.max_metadata_size).")
    if comp == "zlib":
        inflater = zlib.decompressobj()
        try:
            data = inflater.decompress(data, size + 1)
        except zlib.error as exc:
            raise DecodeError(f"Packed user metadata does not inflate: {exc}.") from None
        if len(data) <= size and (not inflater.eof or inflater.unused_data):  # the BEAM refuses both too
            raise DecodeError("Packed user metadata's zlib stream is cut short, or bytes follow its end.")
    elif comp != "none":
        raise DecodeError(f"Packed user metadata uses compression {comp!r}; this tether reads zlib and none.")
    if len(data) != size:
        raise DecodeError(f"Packed user metadata holds {len(data)} bytes, it declares {size}.")
    user = decode_term(data, limits)
    if not isinstance(user, dict):
        raise DecodeError(f"Packed user metadata must hold a map, got {type(user).__name__}.")
    return user


def _created_value(micros: int) -> bytes:
    # Microseconds since 1970 need 7 bytes until the year 4254: SMALL_BIG_EXT,
    # as the ETF encoder writes every integer beyond 32 bits.
    n = (micros.bit_length() + 7) // 8
    return _SMALL_BIG[n] + micros.to_bytes(n, "little")


def _pairs(mapping: dict[str, Any]) -> bytes:
    try:
        return pairs(mapping)
    except MappingError as exc:
        raise MappingError(
            f"Metadata cannot be stored: {exc} Metadata values must be str, bytes, int, float, bool, "
            "None, lists, tuples or dicts of those."
        ) from exc
    except EncodeError as exc:
        found = _non_finite(mapping, "$")
        if found is None:
            raise EncodeError(f"Metadata cannot be stored: {exc}") from exc
        # The encoder's advice (options={'nan': 'atom'}) is for values: metadata takes no options.
        raise EncodeError(
            f"Metadata cannot be stored: {found[0]} is {found[1]!r}, and metadata is plain data without "
            "options: ETF has no float for NaN or infinity. Store None, or a string such as 'nan'."
        ) from exc


def _non_finite(value: Any, path: str) -> tuple[str, Any] | None:
    """The path and value of the first NaN or infinity in metadata (a float, a NumPy float, or a dict key), else
    None. Each container is looked into once, so a shared or cyclic one (the encoder's own error) costs little."""
    seen: set[int] = set()
    stack = [(value, path)]
    while stack:
        item, where = stack.pop()
        if _is_non_finite(item):
            return where, item
        if isinstance(item, (dict, list, tuple)) and id(item) not in seen:
            seen.add(id(item))
            pairs = item.items() if isinstance(item, dict) else enumerate(item)
            for key, inner in reversed(list(pairs)):
                at = f"{where}.{key}" if isinstance(key, str) else f"{where}[{key!r}]"
                stack.append((inner, at))
                if isinstance(item, dict) and _is_non_finite(key):
                    stack.append((key, f"{where} (a key)"))
    return None


def _is_non_finite(x: Any) -> bool:
    """A float that is not finite: a Python float or a NumPy one (what the encoder writes as a float)."""
    if isinstance(x, float):
        return x - x != 0.0
    np = sys.modules.get("numpy")  # a NumPy float means NumPy is imported: no import here
    return np is not None and isinstance(x, np.floating) and not np.isfinite(x)


_decode_options: list[Any] = [None, None]  # limits, options


def options(limits: Limits) -> _etf.Options:
    """The decoder options for metadata under ``limits`` (kept while the limits object stays the same)."""
    # By identity: hashing a Limits value costs more than decoding small metadata.
    if _decode_options[0] is not limits:
        # Metadata is tether's own map: a shape such as [50, 40] is a list of ints, never text.
        _decode_options[:] = [limits, _etf.Options(binaries="tagged", limits=limits, structs=False,
                                                   warn_charlists=False)]
    return _decode_options[1]


def decode_term(data: Any, limits: Limits) -> Any:
    """Decode an ETF term of frame metadata (bytes or a flat view); binaries become ``str`` when valid UTF-8."""
    try:
        return _etf.decode(data, options(limits))
    except Exception as exc:  # typed or not, the message says it is the metadata; a LimitError stays one
        raise _not_metadata(exc) from exc


def _not_metadata(exc: Exception) -> DecodeError:
    """The error for metadata the ETF decoder refused: a LimitError stays one, anything else a DecodeError."""
    typed = foreign(exc, "ETF")
    cls = type(typed) if isinstance(typed, DecodeError) else DecodeError
    return cls(f"Frame metadata is not a valid ETF map: {typed}")


def decode(data: Any, limits: Limits) -> dict[str, Any]:
    """Decode a metadata block (bytes or a flat view of them); binaries become ``str`` when valid UTF-8."""
    try:  # decode_term's work without its call: every loads reads one metadata block
        meta = _etf.decode(data, options(limits))
    except Exception as exc:
        raise _not_metadata(exc) from exc
    if not isinstance(meta, dict):
        raise DecodeError(f"Frame metadata must be an ETF map, got {type(meta).__name__}.")
    fmt = meta.get("format")
    if not isinstance(fmt, str):
        raise DecodeError("Frame metadata has no 'format' binary.")
    return meta
