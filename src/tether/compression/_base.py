"""The compressor protocol (the bounded loop every decompressor runs is :mod:`tether._bounded`)."""

from __future__ import annotations

from typing import Any, ClassVar, Sequence

from .._errors import ValidationError
from .._limits import Limits


class Compressor:
    """Compress a payload's segments into one buffer, and decompress it within bounds.

    ``compress`` returns the compressed stream as a list of parts (never
    joined: the frame copies each once), or None when the output would not
    be smaller than the input, so the frame is stored uncompressed. ``decompress`` must never
    produce more than ``raw_length`` bytes, whatever the input claims, nor reserve memory for
    what it merely declares: the built-in codecs run :func:`tether._bounded.bounded`.

    A compressor may also define ``pieces(segments, raw_length, level, chunk)``,
    yielding the same compressed stream piece by piece, deterministically:
    under memory pressure large payloads are then compressed once to learn
    the size and again straight into the frame (see :mod:`tether.memory`).
    """

    id: ClassVar[int]
    name: ClassVar[str]
    default_level: ClassVar[int] = 0
    levels: ClassVar[range] = range(0, 1)

    def check_level(self, level: int | None) -> int:
        if level is None:
            return self.default_level
        if type(level) is not int or level not in self.levels:
            if len(self.levels) == 1:  # "none": a level means a compressor was meant
                raise ValidationError(
                    f"level={level!r} needs a compressor, and compression is {self.name!r}: pass "
                    "compression='lz4', 'zstd' or 'gzip' with it, or leave level unset."
                )
            raise ValidationError(
                f"Invalid level {level!r} for {self.name}. Valid levels are {self.levels.start}..{self.levels.stop - 1}."
            )
        return level

    def compress(self, segments: Sequence[Any], raw_length: int, level: int, **context: Any) -> list[bytes] | None:
        raise NotImplementedError

    def decompress(self, data: memoryview, raw_length: int, limits: Limits, **context: Any) -> Any:
        raise NotImplementedError

    def speedup(self, raw_length: int) -> float:
        """How much faster than on one thread this compressor compresses ``raw_length`` bytes now.

        The automatic choice times candidates on small samples, on one
        thread, and divides the predicted time of a whole payload by this.
        1.0 unless the compressor runs threads of its own (zstd does).

        Examples
        --------
        >>> from tether import compression
        >>> compression.get("lz4").speedup(64 << 20)
        1.0
        """
        return 1.0

    def __repr__(self) -> str:
        return f"<compressor {self.name} id={self.id}>"
