"""One version, said the same everywhere on the Python side; build information and the speedups notice.

The BEAM's copies (mix.exs, the handshake, the producer string in BEAM frames) are checked by
beam/test/tether_version_test.exs against src/tether/_version.py.
"""

from __future__ import annotations

import importlib.metadata
import logging
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import tether
from tether._cli import main

ROOT = Path(__file__).resolve().parent.parent
RELEASE = re.compile(r"^## \[(\d+\.\d+\.\d+[^\]]*)\] - (\d{4}-\d{2}-\d{2})$", re.M)


def test_version_is_the_installed_metadata():
    # An editable install writes its metadata at install time: a stale one
    # means _version.py changed since, and `pip install -e .` is due.
    assert tether.__version__ == importlib.metadata.version("tether")


def test_pyproject_takes_the_version_from_version_py():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "tether._version.__version__"}
    text = (ROOT / "src/tether/_version.py").read_text()
    assert re.findall(r'^__version__ = "([^"]+)"$', text, re.M) == [tether.__version__]


def test_frames_name_this_version_as_producer():
    assert tether.inspect(tether.dumps(1)).producer == f"tether-py/{tether.__version__}"


def test_changelog_top_release_is_this_version():
    text = (ROOT / "CHANGELOG.md").read_text()
    releases = RELEASE.findall(text)
    assert releases, "CHANGELOG.md has no '## [X.Y.Z] - YYYY-MM-DD' release heading"
    assert releases[0][0] == tether.__version__, (
        f"CHANGELOG.md's newest release is {releases[0][0]}, the package says {tether.__version__}: "
        "on a release, rename [Unreleased] to the new version and bump src/tether/_version.py together"
    )
    assert text.index("## [Unreleased]") < text.index(f"## [{tether.__version__}]")
    for version, _ in releases:  # keep-a-changelog: each heading links somewhere
        assert re.search(rf"^\[{re.escape(version)}\]: \S+$", text, re.M), f"no link line for [{version}]"
    dates = [date for _, date in releases]
    assert dates == sorted(dates, reverse=True)


def test_cli_version_prints_the_build_info(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    info = tether.build_info()
    assert lines[0] == f"tether {tether.__version__}"
    assert lines == str(info).splitlines()
    speedups = next(line for line in lines if line.startswith("C speedups: "))
    assert speedups.startswith("C speedups: active;") == info.speedups
    assert any(line.startswith("CRC-32: ") for line in lines)


def test_cli_version_from_the_console_entry_point():
    out = subprocess.run([sys.executable, "-m", "tether", "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == f"tether {tether.__version__}" and out.stderr == ""


def test_other_subcommands_still_need_a_command(capsys):
    with pytest.raises(SystemExit) as exit_:
        main([])
    assert exit_.value.code == 2 and "required" in capsys.readouterr().err


def test_build_info_in_this_checkout():
    info = tether.build_info()
    assert info.version == tether.__version__
    assert info.speedups, f"make test builds the C speedups; here they are off: {info.speedups_reason}"
    assert "_speedups" in info.speedups_reason
    assert set(info.libraries) == {"lz4", "zstd", "xxhash", "pyarrow", "numpy"}
    assert info.libraries["numpy"] == importlib.metadata.version("numpy")
    assert info.crc32.split()[0] in ("isal", "zlib") and info.python.startswith("CPython 3.")


# A child interpreter where tether._speedups cannot be imported, as after an
# install without a compiler.
_NO_SPEEDUPS = "import sys; sys.modules['tether._speedups'] = None\n"


def _child(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_import_without_speedups_logs_one_info_line_saying_how_to_get_them():
    fmt = "%(name)s|%(levelname)s|%(message)s"
    out = _child(_NO_SPEEDUPS
                 + f"import logging; logging.basicConfig(level=logging.INFO, format={fmt!r})\n"
                 + "import tether; info = tether.build_info(); print(info.speedups); print(str(info).splitlines()[1])")
    assert out.returncode == 0, out.stderr
    notices = [line for line in out.stderr.splitlines() if line.startswith("tether.build|")]
    assert len(notices) == 1, out.stderr
    assert notices[0].startswith("tether.build|INFO|tether runs without its C speedups")
    assert "C compiler" in notices[0] and "pip install" in notices[0]
    printed = out.stdout.splitlines()
    assert printed[0] == "False" and printed[1].startswith("C speedups: NOT active")


def test_import_with_speedups_logs_nothing():
    out = _child("import logging; logging.basicConfig(level=logging.DEBUG)\nimport tether")
    assert out.returncode == 0 and "tether.build" not in out.stderr, out.stderr


def test_tether_prints_nothing_unless_logging_is_configured():
    out = _child(_NO_SPEEDUPS + "import logging, tether; logging.getLogger('tether.x').warning('hello')")
    assert out.returncode == 0 and out.stderr == ""  # a NullHandler on "tether": no last-resort printing


def test_tether_logger_has_a_null_handler():
    assert any(isinstance(h, logging.NullHandler) for h in logging.getLogger("tether").handlers)
