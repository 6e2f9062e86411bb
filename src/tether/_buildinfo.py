"""What this installation of tether runs on: the C speedups, the libraries behind checksums and codecs.

The C speedups are an optional build (setup.py marks the extension optional so
that tether installs without a compiler). Without them the ETF codec runs
10-20x slower, and nothing else would say so: :func:`build_info` does, the CLI's
``tether --version`` prints it, and importing tether logs one INFO line.
"""

from __future__ import annotations

import importlib
import logging
import platform
import sys
from typing import NamedTuple

from ._etf import native
from ._version import __version__
from .frame import checksum

log = logging.getLogger("tether.build")

HOW_TO_GET_SPEEDUPS = (
    "reinstall tether where a C compiler and the Python headers are present "
    "(Debian: apt-get install gcc python3-dev), e.g. "
    "`pip install --force-reinstall --no-deps --no-binary tether tether`, or `pip install -e .` in a checkout"
)


class BuildInfo(NamedTuple):
    """The answer of :func:`build_info`; ``str()`` gives the lines ``tether --version`` prints, ``_asdict()`` a dict.

    A named tuple rather than a dataclass: defining one costs about a seventh
    as much, and this module loads with every ``import tether``.
    """

    version: str
    speedups: bool
    speedups_reason: str
    crc32: str
    libraries: dict[str, str]
    python: str
    platform: str

    def __str__(self) -> str:
        state = "active" if self.speedups else "NOT active, so the ETF codec runs in pure Python (10-20x slower)"
        lines = [
            f"tether {self.version}",
            f"C speedups: {state}; {self.speedups_reason}",
            f"CRC-32: {self.crc32}",
            *(f"{name}: {vsn}" for name, vsn in self.libraries.items()),
            f"python: {self.python}",
            f"platform: {self.platform}",
        ]
        return "\n".join(lines)


def speedups_status() -> tuple[bool, str]:
    """Whether the ETF codec runs the C extension, and why (or why not), as one sentence.

    Examples
    --------
    >>> active, reason = speedups_status()
    >>> isinstance(active, bool) and isinstance(reason, str)
    True
    """
    if native.c is not None:
        return True, f"tether._speedups from {getattr(native.c, '__file__', '?')}"
    if sys.implementation.name != "cpython":
        return False, f"the C extension is built for CPython only, this is {platform.python_implementation()}"
    try:
        importlib.import_module("tether._speedups")
    except ImportError as exc:
        # setup.py builds the extension as optional: no compiler at install time
        # leaves it out without failing the install.
        return False, f"tether._speedups was not built at install time ({exc}); to get it, {HOW_TO_GET_SPEEDUPS}"
    return False, f"tether._speedups is out of date with tether {__version__}; to rebuild it, {HOW_TO_GET_SPEEDUPS}"


def _crc32_library() -> str:
    name = checksum.CRC32_LIBRARY  # the frame layer owns the choice; this only names its version
    if name == "zlib":
        import zlib

        return f"zlib {zlib.ZLIB_RUNTIME_VERSION} (stdlib)"
    return f"{name} {_dist_version(name)}"


def _dist_version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _libraries() -> dict[str, str]:
    import lz4
    import zstandard

    zstd_c = ".".join(map(str, zstandard.ZSTD_VERSION))
    return {
        "lz4": f"{_dist_version('lz4')} (liblz4 {lz4.library_version_string()})",
        "zstd": f"zstandard {_dist_version('zstandard')} (libzstd {zstd_c})",
        "xxhash": _dist_version("xxhash"),
        "pyarrow": _dist_version("pyarrow"),
        "numpy": _dist_version("numpy"),
    }


def build_info() -> BuildInfo:
    """Say what this tether runs on: C speedups or not (and why), the CRC-32, lz4 and zstd libraries, the platform.

    Examples
    --------
    >>> import tether
    >>> info = tether.build_info()
    >>> info.version == tether.__version__, isinstance(info.speedups, bool)
    (True, True)
    >>> sorted(info.libraries)
    ['lz4', 'numpy', 'pyarrow', 'xxhash', 'zstd']
    >>> str(info).splitlines()[0] == f"tether {tether.__version__}"
    True
    """
    active, reason = speedups_status()
    return BuildInfo(
        version=__version__,
        speedups=active,
        speedups_reason=reason,
        crc32=_crc32_library(),
        libraries=_libraries(),
        python=f"{platform.python_implementation()} {platform.python_version()}",
        platform=f"{platform.system()} {platform.release()} {platform.machine()}",
    )


def announce() -> None:
    """Log one INFO line on ``tether.build`` when CPython runs without the speedups (called once, on import).

    Examples
    --------
    >>> announce()  # silent here: the speedups are built
    """
    if sys.implementation.name != "cpython":
        return  # other interpreters never get the C extension: nothing to act on
    active, reason = speedups_status()
    if not active:
        log.info("tether runs without its C speedups, so ETF is 10-20x slower: %s", reason)
