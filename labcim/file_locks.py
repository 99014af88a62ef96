"""Advisory locks (``flock``) that keep labcim processes out of each other's way.

Two writers numbering runs in one location, two invocations of one campaign: each holds
a lock on a file or directory for as long as it must be alone.  The kernel releases a
lock when its descriptor is closed or its process dies, so a killed process never
leaves one behind.  On a file system without locks (some network or FUSE mounts) the
lock is taken as held: one process at a time stays safe, as before; so it is on
Windows, which has no ``flock``.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

#: errno values of a file system that has no locks.
NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP)


def lock(fd: int, *, wait: bool) -> bool:
    """Take the exclusive lock of the open file or directory ``fd``.

    Returns True once held (or on a file system without locks), False if another
    process holds it and ``wait`` is false.
    """
    if fcntl is None:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as exc:
        if exc.errno not in NO_LOCKS:
            raise
    return True


@contextlib.contextmanager
def locked_directory(path: Path) -> Iterator[None]:
    """Hold the lock of directory ``path`` for the ``with`` block, waiting for it."""
    if fcntl is None:  # a directory cannot be opened there either
        yield
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        lock(fd, wait=True)
        yield
    finally:
        os.close(fd)  # releases the lock
