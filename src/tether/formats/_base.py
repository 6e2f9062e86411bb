"""The protocol every format implements, and the contexts handed to it."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, ClassVar, Mapping, NamedTuple

from .._buffers import Segment
from .._errors import DecodeError, TetherError, UnsupportedVersionError, ValidationError
from .._limits import Limits
from ..schemas import reader_reads
from ..frame import frame_name

__all__ = ["DecodeContext", "EncodeContext", "Format", "Migrated", "Migration", "Payload", "Segment"]

# Readers accept the current and at least this many previous major versions of a format.
KEEP_READABLE = 2
# The builtin types of plain Python data. No array, sparse or table format claims one, so their auto_pick
# declines these from the exact type alone, before any isinstance or module question: every dumps of a
# dict asks each format ahead of etf.
PLAIN_TYPES = frozenset({dict, list, tuple, str, bytes, bytearray, int, float, bool, type(None)})


@dataclass(slots=True)
class Payload:
    """What a format produces: type information for the metadata and the payload's parts.

    ``segments`` are buffers (kept by reference, never joined) or :class:`Segment`
    writers; they are laid out back to back. ``temporary`` counts the bytes of
    parts the format allocated to hold an encoding (not views of the value),
    which live until the frame is written out (``tether.memory.stats()``'s
    ``temporary``).
    """

    type_info: dict[str, Any]
    segments: list[Any] = field(default_factory=list)
    nbytes: int = 0
    temporary: int = 0

    def add(self, part: Any) -> None:
        """Append one part: a contiguous buffer (kept by reference, as bytes) or a :class:`Segment` writer.

        Examples
        --------
        >>> import numpy as np
        >>> p = Payload({"dtype": "<u2"})
        >>> p.add(b"head")
        >>> p.add(np.arange(3, dtype="<u2"))
        >>> p.nbytes, len(p.segments)
        (10, 2)
        """
        if type(part) is bytes:  # what most formats hand over: always a flat byte view, no checks needed
            part = memoryview(part)
            self.nbytes += len(part)
        elif isinstance(part, Segment):
            self.nbytes += part.nbytes
        else:
            part = memoryview(part)
            if not part.c_contiguous:
                raise ValueError("payload buffers must be C-contiguous (numpy.ascontiguousarray gives one)")
            part = part.cast("B") if part.ndim != 1 or part.format != "B" else part
            self.nbytes += part.nbytes
        self.segments.append(part)

    def add_temporary(self, part: Any, allocated: int | None = None) -> None:
        """:meth:`add` a buffer the format allocated for this payload (not a view of the value).

        It counts in ``temporary``: ``allocated`` bytes when the buffer is larger than the part (a
        buffer sized for the worst case), else the part's own.

        Examples
        --------
        >>> p = Payload({})
        >>> p.add_temporary(b"encoded", allocated=64)
        >>> p.nbytes, p.temporary
        (7, 64)
        """
        before = self.nbytes
        self.add(part)
        self.temporary += self.nbytes - before if allocated is None else allocated


@dataclass(frozen=True, slots=True)
class Migration:
    """One step of a format's schema: what changed from version ``v`` (its key in ``migrations``) to ``v + 1``.

    ``type_info(old_info) -> new_info`` rewrites the type information;
    ``payload(old_payload, old_info) -> buffer`` rewrites a payload laid out
    as version ``v`` into version ``v + 1``'s layout. Either may be None when
    that part did not change.

    Examples
    --------
    >>> step = Migration(type_info=lambda t: {**t, "unit": "ms"})
    >>> step.type_info({"n": 1})
    {'n': 1, 'unit': 'ms'}
    """

    type_info: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    payload: Callable[[Any, dict[str, Any]], Any] | None = None


class Migrated(dict):
    """Type information migrated on read: the map itself, plus the payload steps still due.

    ``written_under`` is the schema version the frame was written with.
    """

    __slots__ = ("pending", "written_under")

    def __init__(self, info: Mapping[str, Any], pending: list, written_under: int) -> None:
        super().__init__(info)
        self.pending = pending
        self.written_under = written_under


class DecodeContext(NamedTuple):
    """Options of one ``loads`` call, handed to the format.

    ``frame`` names the frame in error messages (see :attr:`frame_id`): a
    str, or a (format name, frame size) pair that becomes one only when a
    message needs it. A named tuple: one is built per decoded frame.
    """

    into: str | None = None
    copy: bool = False
    allow_pickle: bool = False
    options: Mapping[str, Any] = MappingProxyType({})
    limits: Limits = Limits()
    created_by: str = "python"
    frame: str | tuple[Any, int] = "frame"

    @property
    def frame_id(self) -> str:
        """The frame's name in messages, e.g. "frame (etf, 384 B)"."""
        return frame_name(self.frame)


@dataclass(frozen=True, slots=True)
class EncodeContext:
    """Options of one encode call, handed to the format.

    ``inner_compression`` is the codec a format applies inside its own payload
    (see :meth:`Format.inner_compression`), or None.
    """

    options: dict[str, Any] = field(default_factory=dict)
    auto: bool = False
    inner_compression: str | None = None


class Format:
    """Base class of formats: subclass, set ``id``/``name``, register with ``tether.formats.register``.

    A format owns every rule about its payload:

    * ``auto_pick`` claims values for ``format="auto"``; formats are asked in
      ascending ``auto_priority`` order and the first claim wins (None: never
      picked automatically). :mod:`tether.formats` lists tether's own
      priorities with a worked example of a format joining ``format="auto"``;
      plugins of the ``tether.formats`` entry-point group are registered
      before the first automatic choice;
    * ``fallback`` names the format that takes a value this one cannot encode
      under ``format="auto"``, with a :class:`tether.FallbackWarning` when
      ``fallback_warns``;
    * ``intos`` lists the Python forms ``loads(into=...)`` may ask for;
    * ``element_size`` tells compression the element width a byte-shuffle
      would use; ``inner_compression`` lets a format compress inside its own
      payload instead of the frame compressing it.

    ``schema_version`` is the major version of the format's payload and type
    information; ``oldest_readable`` the oldest a reader still reads, at most
    ``schema_version - 2`` (checked when the class is defined). When the
    schema changes, bump ``schema_version`` and add a :class:`Migration` to
    ``migrations`` under the version it upgrades from: :meth:`migrate` chains
    the type-information steps, :meth:`upgrade_payload` the payload steps
    (docs/format.md §4.1, docs/evolution.md).

    Examples
    --------
    >>> import tether
    >>> class Upper(tether.formats.Format):
    ...     id, name, auto_priority = 200, "upper-demo", None
    ...     def encode(self, obj, ctx):
    ...         p = tether.formats.Payload({})
    ...         p.add(obj.upper().encode())
    ...         return p
    ...     def decode(self, payload, type_info, ctx):
    ...         return bytes(payload).decode()
    >>> fmt = Upper()
    >>> payload = fmt.encode("abc", tether.formats.EncodeContext())
    >>> fmt.decode(memoryview(bytes(payload.segments[0])), payload.type_info, tether.formats.DecodeContext())
    'ABC'

    ``tether.formats.register(Upper)`` would make it available to ``dumps(format="upper-demo")``.
    """

    id: ClassVar[int]
    name: ClassVar[str]
    schema_version: ClassVar[int] = 1
    oldest_readable: ClassVar[int] = 1
    intos: ClassVar[tuple[str, ...]] = ()
    auto_priority: ClassVar[int | None] = None
    fallback: ClassVar[str | None] = None
    fallback_warns: ClassVar[bool] = False
    migrations: ClassVar[Mapping[int, Migration]] = MappingProxyType({})
    # The keys of options= this format's encode and decode read (besides formats.GENERAL_OPTIONS). None: not
    # declared (a plugin from before the check), so no key is refused while such a format is registered.
    option_keys: ClassVar[frozenset[str] | None] = None
    # Whether a one-step writer (dumps_plain) encodes the payload into a buffer of its own before copying it
    # into the frame: dumps then counts that buffer as a temporary (tether.memory.stats()).
    plain_temporary: ClassVar[bool] = False

    def warns_on_fallback(self, exc: Exception) -> bool:
        """Whether handing a value to ``fallback`` after ``exc`` warns (:class:`tether.FallbackWarning`).

        ``fallback_warns`` by default; a format overrides this to warn only for some errors.

        Examples
        --------
        >>> import tether
        >>> tether.formats.get("arrow").warns_on_fallback(ValueError("x"))
        True
        """
        return self.fallback_warns

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if type(cls.schema_version) is not int or type(cls.oldest_readable) is not int:
            return  # registration refuses them, by name
        floor = max(1, cls.schema_version - KEEP_READABLE)
        if cls.oldest_readable > floor:
            raise TypeError(
                f"{cls.__name__}: oldest_readable={cls.oldest_readable} drops a version readers must keep; "
                f"schema {cls.schema_version} readers read {floor} and newer. Add the migration steps instead."
            )

    def can_encode(self, obj: Any) -> bool:
        """Whether :meth:`encode` takes ``obj``, judged by its type alone.

        tether's own choice under ``format="auto"`` asks :meth:`auto_pick`; this is the cheap
        check for code that picks a format itself.
        """
        raise NotImplementedError

    def auto_pick(self, obj: Any, transport: str) -> tuple[str, int | None] | None:
        """Claim ``obj`` for ``format="auto"``: (reason, estimated payload size or None), or None.

        The reason goes into the decision record (:func:`tether.last_decision`); the size, when
        known without work, informs the compression choice. The base class claims nothing.

        Examples
        --------
        >>> import numpy as np, tether
        >>> tether.formats.get("ndarray").auto_pick(np.zeros(3), "pipe")
        ('numpy float64 array of shape (3,)', 24)
        >>> tether.formats.get("ndarray").auto_pick([0.0, 0.0, 0.0], "pipe") is None
        True
        """
        return None

    def auto_pick_for(self, obj: Any, transport: str, reader: str) -> tuple[str, int | None] | None:
        """:meth:`auto_pick` for a frame ``reader`` (``"python"`` or ``"beam"``) reads: by default the same.
        The first choice for a Python reader asks :meth:`auto_pick` directly (it runs on every ``dumps``), so
        an override here speaks for other readers.

        A format whose frame a reader can take only in a poorer form than another format gives it declines
        here (the Arrow format leaves Python rows and columns to etf for the BEAM).

        Examples
        --------
        >>> import numpy as np, tether
        >>> tether.formats.get("ndarray").auto_pick_for(np.zeros(3), "pipe", "beam")
        ('numpy float64 array of shape (3,)', 24)
        """
        return self.auto_pick(obj, transport)

    def encode(self, obj: Any, ctx: EncodeContext) -> Payload:
        """``obj`` as a :class:`Payload`: the type information for the metadata and the payload's parts.

        Raise :class:`tether.EncodeError` (or ``TypeError``, for a type this format never takes)
        when ``obj`` does not fit; under ``format="auto"`` the value then goes to ``fallback``.
        """
        raise NotImplementedError

    def decode(self, payload: memoryview, type_info: dict[str, Any], ctx: DecodeContext) -> Any:
        """The value of a payload this format wrote, in the form ``ctx.into`` asks for (None: the default).

        ``payload`` is already decompressed and its checksum checked; ``type_info`` is what
        :meth:`encode` put in the metadata. Anything inconsistent is a :class:`tether.DecodeError`
        naming ``ctx.frame_id``.
        """
        raise NotImplementedError

    def check_into(self, into: str | None) -> None:
        """Refuse an ``into=`` this format cannot give, listing the ones it can.

        Examples
        --------
        >>> import tether
        >>> tether.formats.get("raw").check_into("numpy")
        >>> tether.formats.get("raw").check_into("pandas")
        Traceback (most recent call last):
        ...
        tether._errors.ValidationError: Invalid into 'pandas' for a raw frame. Valid options are: bytes, memoryview, numpy.
        """
        if into is not None and into not in self.intos:
            article = "an" if self.name[:1] in "aeiou" else "a"
            valid = ", ".join(self.intos) if self.intos else f"none ({self.name} frames have one Python form)"
            raise ValidationError(
                f"Invalid into {into!r} for {article} {self.name} frame. Valid options are: {valid}."
            )

    def element_size(self, type_info: dict[str, Any]) -> int:
        """The element width a byte-shuffle would group by, or 0 when shuffling cannot help.

        Examples
        --------
        >>> import tether
        >>> tether.formats.get("ndarray").element_size({"dtype": "<f8", "shape": [1000]})
        8
        >>> tether.formats.get("etf").element_size({"binaries": "tagged"})
        0
        """
        return 0

    def inner_compression(self, compression: str, transport: str) -> tuple[str, str, str] | None:
        """The codec this format applies inside its payload for ``compression=``, or None to let the frame compress.

        Returns (codec, the name the decision record shows, the reason).

        Examples
        --------
        >>> import tether
        >>> tether.formats.get("arrow").inner_compression("zstd", "pipe")
        ('zstd', 'arrow-ipc/zstd', 'Arrow compresses per buffer inside the IPC stream')
        >>> tether.formats.get("etf").inner_compression("zstd", "pipe") is None
        True
        """
        return None

    def migrate(self, type_info: dict[str, Any], from_version: int) -> dict[str, Any]:
        """Bring ``type_info`` written under ``from_version`` to ``schema_version``, chaining ``migrations``.

        Returns a :class:`Migrated` map that remembers the payload steps still
        to run (:meth:`upgrade_payload` runs them once the payload is
        decompressed). A version newer than this reader's, older than
        ``oldest_readable`` or without a step is an
        :class:`~tether.UnsupportedVersionError` that says which side to upgrade.

        Examples
        --------
        >>> import tether
        >>> fmt = tether.formats.get("ndarray")
        >>> fmt.migrate({"shape": [2]}, fmt.schema_version) == {"shape": [2]}
        True
        """
        if from_version == self.schema_version:
            return type_info
        self.check_readable(from_version)
        migrated = Migrated(type_info, [], from_version)
        for version in range(from_version, self.schema_version):
            step = self.migrations.get(version)
            if step is None:
                raise UnsupportedVersionError(
                    f"The {self.name} format has no migration from schema {version} to {version + 1}; "
                    f"frames of schema {from_version} cannot be read here. Add a Migration to "
                    f"{type(self).__name__}.migrations[{version}]."
                )
            before = dict(migrated)
            after = self._step_type_info(step, before, version)
            if step.payload is not None:
                migrated.pending.append((step.payload, before, version))
            migrated = Migrated(after, migrated.pending, from_version)
        return migrated

    def _step_type_info(self, step: Any, before: dict[str, Any], version: int) -> dict[str, Any]:
        """One step's ``type_info`` on a frame's type information, its failure named by format, versions and step."""
        where = f"{type(self).__name__}.migrations[{version}].type_info (the {self.name} schema {version} to {version + 1})"
        if not isinstance(step, Migration):
            raise DecodeError(f"{where}: migrations[{version}] is a {type(step).__name__}, not a "
                              "tether.formats.Migration: fix the format's migrations.")
        if step.type_info is None:
            return before
        try:
            after = step.type_info(dict(before))
        except Exception as exc:  # a user's function: whatever it raises is named, with the frame's part
            raise DecodeError(f"{where} failed: {type(exc).__name__}: {exc}. Either the frame's metadata is not what "
                              "that schema wrote, or the step has a bug.") from exc
        if not isinstance(after, Mapping):
            raise DecodeError(f"{where} returned a {type(after).__name__}: it must return the new type "
                              "information, a dict. Fix the step.")
        return dict(after)

    def check_readable(self, version: int) -> None:
        """Raise :class:`~tether.UnsupportedVersionError` unless this reader reads ``version`` of this format.

        Examples
        --------
        >>> import tether
        >>> tether.formats.get("etf").check_readable(1)
        """
        if version > self.schema_version:
            raise UnsupportedVersionError(
                f"The {self.name} payload has schema version {version}; this tether reads {self.name} schemas "
                f"{self.oldest_readable} to {self.schema_version}. Upgrade tether on the reading side to read "
                f"{self.name} schema {version}."
            )
        if version < self.oldest_readable:
            raise UnsupportedVersionError(
                f"The {self.name} payload has schema version {version}, older than the oldest this tether "
                f"migrates ({self.oldest_readable}). Re-encode it with a tether release that reads {self.name} "
                f"schema {version}, then read it here."
            )

    def upgrade_payload(self, payload: Any, type_info: Mapping[str, Any]) -> Any:
        """``payload`` in the current layout: the payload steps :meth:`migrate` left in ``type_info``, run once.

        A format whose payload layout changed calls this first thing in
        ``decode``; for a frame of the current version it returns ``payload``
        untouched (and costs one type check).

        Examples
        --------
        >>> import tether
        >>> tether.formats.get("raw").upgrade_payload(b"abc", {})
        b'abc'
        """
        if type(type_info) is not Migrated or not type_info.pending:
            return payload
        steps, type_info.pending[:] = list(type_info.pending), []
        for step, info, version in steps:
            try:
                payload = memoryview(step(payload, info)).cast("B")
            except TetherError:
                raise
            except Exception as exc:  # a user's function, or what it returned: named, with the versions
                raise DecodeError(
                    f"{type(self).__name__}.migrations[{version}].payload (the {self.name} schema {version} to "
                    f"{version + 1}) failed: {type(exc).__name__}: {exc}. It must return the payload in the next "
                    "schema's layout, a bytes-like object: fix the step, or the frame is not what that schema wrote."
                ) from exc
        return payload

    def check_reader_versions(self, options: Mapping[str, Any] | None) -> None:
        """Refuse to write for a reader that, by ``options["versions"]``, cannot read this format's schema.

        ``options["versions"]`` is what the reader reads (docs/format.md §4.1):
        ``{"formats": {name: [oldest, newest]}, "schemas": {name: newest}}``
        (a format's entry may also be ``{"oldest_readable": a, "schema_version": b}``).
        A format the reader does not list is not checked.

        Examples
        --------
        >>> import tether
        >>> tether.formats.get("raw").check_reader_versions({"versions": {"formats": {"raw": [1, 1]}}})
        """
        versions = (options or {}).get("versions")
        if versions is None:
            return
        reads = reader_reads(versions, "formats").get(self.name)
        if reads is None:
            return
        if type(reads) is int:
            reads = [reads, reads]
        elif isinstance(reads, Mapping):  # the worker handshake's {"oldest_readable": a, "schema_version": b}
            reads = [reads.get("oldest_readable", 1), reads.get("schema_version")]
        if not isinstance(reads, (list, tuple)) or len(reads) != 2 or not all(type(v) is int for v in reads):
            raise ValidationError(
                f"options['versions']['formats'][{self.name!r}] must be [oldest, newest] schema versions, "
                f"got {reads!r}. Pass the reader's tether.schemas.capabilities() as it is."
            )
        oldest, newest = reads
        if self.schema_version > newest:
            raise ValidationError(
                f"The reader reads {self.name} schemas {oldest} to {newest}; this tether writes schema "
                f"{self.schema_version} only. Upgrade tether on the reading side."
            )
        if self.schema_version < oldest:
            raise ValidationError(
                f"The reader reads {self.name} schemas {oldest} to {newest}; this tether writes schema "
                f"{self.schema_version}. Upgrade tether on the writing side."
            )

    def describe(self, type_info: dict[str, Any]) -> dict[str, Any]:
        """Extra human-readable facts for ``inspect``; must not touch the payload.

        Examples
        --------
        >>> import numpy as np, tether
        >>> tether.inspect(tether.dumps(np.zeros((2, 3), dtype="f4"))).details
        {'dtype': '<f4', 'shape': (2, 3), 'nx type': '{:f, 32}', 'order': 'C'}
        """
        return {}

    def get_config(self) -> dict[str, Any]:
        """The format's configuration as plain data: ``{"id": name}`` (formats with settings add theirs).

        Examples
        --------
        >>> import tether
        >>> tether.formats.get("raw").get_config()
        {'id': 'raw'}
        """
        return {"id": self.name}

    def __repr__(self) -> str:
        return f"<format {self.name} id={self.id} schema={self.schema_version}>"
