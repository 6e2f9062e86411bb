"""The BEAM workers' private directories in ``/dev/shm``: listed and, once their node is dead, removed.

Each ``Tether.Worker`` makes one (``tether-<BEAM os pid>-<32 hex digits>``, mode 0700) for its arguments
file, its cancel file and its stats file (docs/format.md §8). The worker removes it when it stops, and
the next worker started on the same directory removes those of dead nodes. These functions let an
operator see what they hold, and ``tether shm gc`` remove the orphans, from Python.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import time
from typing import Any

_NAME = re.compile(r"tether-([0-9]+)-[0-9a-f]{32}")


def _owner(name: str) -> int | None:
    match = _NAME.fullmatch(name)
    return int(match.group(1)) if match else None


def _node_alive(pid: int) -> bool:
    # As the BEAM's own sweep decides (tether_private:sweep/1): a pid with a /proc entry is alive. A node in
    # another pid namespace that shares this /dev/shm (a container) looks dead from here, as it does to a
    # BEAM here: give such nodes their own shm_dir.
    return os.path.isdir(f"/proc/{pid}")


def _is_private(path: str) -> bool:
    """A 0700 directory, not a link, of this process's user: a user's gc never removes another's."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == os.geteuid()


def private_dirs(directory: str = "/dev/shm") -> list[dict[str, Any]]:
    """The BEAM workers' private directories in ``directory`` that belong to this user, sorted by name.

    Parameters
    ----------
    directory : str
        Where to look (``/dev/shm`` for workers started with the default ``shm_dir``).

    Returns
    -------
    list of dict
        ``path``, ``owner_pid`` (the BEAM node's OS pid, from the name), ``owner_alive``, ``files`` (name to
        size in bytes) and ``bytes`` (their total): a large ``tether-args-*`` is the arguments file, kept at its
        largest size until no call has used it for ``shm_keep`` ms.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     os.mkdir(os.path.join(d, "tether-1-" + "0" * 32), 0o700)
    ...     [(r["owner_pid"], r["bytes"]) for r in private_dirs(d)]
    [(1, 0)]
    """
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return []
    rows = []
    for name in names:
        pid, path = _owner(name), os.path.join(directory, name)
        if pid is None or not _is_private(path):
            continue
        files: dict[str, int] = {}
        try:
            for entry in os.scandir(path):
                if entry.is_file(follow_symlinks=False):
                    files[entry.name] = entry.stat(follow_symlinks=False).st_size
        except OSError:  # gone meanwhile: listed with what was seen
            pass
        rows.append({"path": path, "owner_pid": pid, "owner_alive": _node_alive(pid), "files": files,
                     "bytes": sum(files.values())})
    return rows


def gc_private(directory: str = "/dev/shm", min_age: float = 0.0, dry_run: bool = False) -> list[str]:
    """Remove this user's private directories in ``directory`` whose BEAM node is dead, and that have not
    changed for ``min_age`` seconds; return their paths (with ``dry_run``, those it would remove, left as they are).

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     os.mkdir(os.path.join(d, f"tether-{os.getpid()}-" + "0" * 32), 0o700)
    ...     gc_private(d)
    []
    """
    removed, now = [], time.time()
    for row in private_dirs(directory):
        if row["owner_alive"]:
            continue
        try:
            if now - os.lstat(row["path"]).st_mtime < min_age:
                continue
        except OSError:
            continue
        if dry_run:
            removed.append(row["path"])
            continue
        try:
            shutil.rmtree(row["path"])
        except FileNotFoundError:
            continue
        except OSError:
            continue  # a file in it that this user may not remove: left for whoever can
        removed.append(row["path"])
    return removed
