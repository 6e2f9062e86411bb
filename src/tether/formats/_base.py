"""The protocol every format implements, and the contexts handed to it."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, Mapping, NamedTuple

from .._buffers import Segment
from .._errors import UnsupportedVersionError, ValidationError
from .._limits import Limits
from ..frame import frame_name

__all__ = ["DecodeContext", "EncodeContext", "Format", "Payload", "Segment"]


@dataclass(slots=True)
class Payload:
    """What a format produces: type information for the metadata and the payload's parts.

    ``segments`` are buffers (kept by reference, never joined) or :class:`Segment`
    writers; they are laid out back to back.
    """

    type_info: dict[str, Any]
    segments: list[Any] = field(default_factory=list)
    nbytes: int = 0

    def add(self, part: Any) -> None:
        if isinstance(part, Segment):
            self.nbytes += part.nbytes
        else:
            part = memoryview(part)
            if not part.contiguous:
                raise ValueError("payload buffers must be contiguous")
            part = part.cast("B") if part.ndim != 1 or part.format != "B" else part
            self.nbytes += part.nbytes
        self.segments.append(part)


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
      picked automatically);
    * ``fallback`` names the format that takes a value this one cannot encode
      under ``format="auto"``, with a :class:`tether.FallbackWarning` when
      ``fallback_warns``;
    * ``intos`` lists the Python forms ``loads(into=...)`` may ask for;
    * ``element_size`` tells compression the element width a byte-shuffle
      would use; ``inner_compression`` lets a format compress inside its own
      payload instead of the frame compressing it.

    ``schema_version`` is the major version of the format's payload and type
    information. Readers accept ``schema_version - 2`` and newer by calling
    :meth:`migrate`; override it when the schema changes.

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

    def can_encode(self, obj: Any) -> bool:
        raise NotImplementedError

    def auto_pick(self, obj: Any, transport: str) -> tuple[str, int | None] | None:
        """Claim ``obj`` for ``format="auto"``: (reason, estimated payload size or None), or None."""
        return None

    def encode(self, obj: Any, ctx: EncodeContext) -> Payload:
        raise NotImplementedError

    def decode(self, payload: memoryview, type_info: dict[str, Any], ctx: DecodeContext) -> Any:
        raise NotImplementedError

    def check_into(self, into: str | None) -> None:
        """Refuse an ``into=`` this format cannot give, listing the ones it can."""
        if into is not None and into not in self.intos:
            article = "an" if self.name[:1] in "aeiou" else "a"
            valid = ", ".join(self.intos) if self.intos else f"none ({self.name} frames have one Python form)"
            raise ValidationError(
                f"Invalid into {into!r} for {article} {self.name} frame. Valid options are: {valid}."
            )

    def element_size(self, type_info: dict[str, Any]) -> int:
        """The element width a byte-shuffle would group by, or 0 when shuffling cannot help."""
        return 0

    def inner_compression(self, compression: str, transport: str) -> tuple[str, str, str] | None:
        """The codec this format applies inside its payload for ``compression=``, or None to let the frame compress.

        Returns (codec, the name the decision record shows, the reason).
        """
        return None

    def migrate(self, type_info: dict[str, Any], from_version: int) -> dict[str, Any]:
        """Bring ``type_info`` written under ``from_version`` to ``schema_version``."""
        if from_version == self.schema_version:
            return type_info
        if from_version > self.schema_version:
            raise UnsupportedVersionError(
                f"The {self.name} payload has schema version {from_version}; this tether reads up to "
                f"{self.schema_version}. Upgrade tether to read {self.name} schema {from_version}."
            )
        raise UnsupportedVersionError(
            f"The {self.name} payload has schema version {from_version}, older than the oldest this "
            f"tether migrates ({self.oldest_readable}). Migrate it with a tether release that reads "
            f"{self.name} schema {from_version} (re-encode it), then read it here."
        )

    def describe(self, type_info: dict[str, Any]) -> dict[str, Any]:
        """Extra human-readable facts for ``inspect``; must not touch the payload."""
        return {}

    def get_config(self) -> dict[str, Any]:
        return {"id": self.name}

    def __repr__(self) -> str:
        return f"<format {self.name} id={self.id} schema={self.schema_version}>"
