"""The small protocol every format implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

from .._errors import UnsupportedVersionError
from .._limits import Limits


@dataclass(slots=True)
class Segment:
    """Part of a payload written by a function, for data that is not one contiguous buffer.

    ``write(dest)`` must fill exactly ``nbytes`` bytes of the writable memoryview ``dest``.
    """

    nbytes: int
    write: Callable[[memoryview], None]


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


@dataclass(frozen=True, slots=True)
class DecodeContext:
    """Options of one ``loads`` call, handed to the format."""

    into: str | None = None
    copy: bool = False
    allow_pickle: bool = False
    options: dict[str, Any] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)
    created_by: str = "python"
    frame_id: str = "frame"


@dataclass(frozen=True, slots=True)
class EncodeContext:
    """Options of one encode call, handed to the format."""

    options: dict[str, Any] = field(default_factory=dict)


class Format:
    """Base class of formats: subclass, set ``id``/``name``, register with ``tether.formats.register``.

    ``schema_version`` is the major version of the format's payload and type
    information. Readers accept ``schema_version - 2`` and newer by calling
    :meth:`migrate`; override it when the schema changes.
    """

    id: ClassVar[int]
    name: ClassVar[str]
    schema_version: ClassVar[int] = 1
    oldest_readable: ClassVar[int] = 1
    intos: ClassVar[tuple[str, ...]] = ()

    def can_encode(self, obj: Any) -> bool:
        raise NotImplementedError

    def encode(self, obj: Any, ctx: EncodeContext) -> Payload:
        raise NotImplementedError

    def decode(self, payload: memoryview, type_info: dict[str, Any], ctx: DecodeContext) -> Any:
        raise NotImplementedError

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
