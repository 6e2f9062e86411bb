"""Opening a file that must be a regular file: a region, a shared-memory argument, a worker's stats.

Each of these names comes from outside the process (a region name from the BEAM, an argument path in a
call, a stats directory on the command line), so whatever sits under the name must neither block the open
(a FIFO waits for a writer forever) nor be mapped or parsed unless it is a plain file.
"""

from __future__ import annotations

import errno
import os
import stat


class NotRegularFile(OSError):
    """Something other than a regular file (a FIFO, a device, a directory) is at the path."""


def open_regular(path: str, *, writable: bool = False) -> tuple[int, os.stat_result]:
    """Open ``path`` without blocking and check that it is a regular file.

    Parameters
    ----------
    path : str
        The file to open.
    writable : bool
        Open read-write instead of read-only.

    Returns
    -------
    tuple of (int, os.stat_result)
        The open descriptor (the caller closes it) and its ``fstat``.

    Raises
    ------
    FileNotFoundError
        Nothing is at ``path``.
    NotRegularFile
        Something other than a regular file is there; nothing is left open.
    OSError
        Any other reason the open failed (``strerror`` says which); a NUL byte in the path is ``EINVAL``.

    Examples
    --------
    >>> import os, tempfile
    >>> with tempfile.NamedTemporaryFile() as f:
    ...     fd, st = open_regular(f.name)
    ...     os.close(fd)
    ...     st.st_size
    0
    >>> open_regular("/dev/null")
    Traceback (most recent call last):
    ...
    tether._files.NotRegularFile: [Errno 22] not a regular file: '/dev/null'
    """
    if "\0" in path:
        raise OSError(errno.EINVAL, "a path cannot hold a NUL byte", path)
    # O_NONBLOCK: only the open of a FIFO would wait (for a writer); regular files ignore the flag.
    fd = os.open(path, (os.O_RDWR if writable else os.O_RDONLY) | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFile(errno.EINVAL, "not a regular file", path)
    except BaseException:
        os.close(fd)
        raise
    return fd, st
