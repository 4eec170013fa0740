"""Advisory file locks that vanish with their holder, even on SIGKILL.

``flock`` locks belong to an open file description: the kernel drops one when its last
descriptor closes, which includes the death of the process that held it. So "the lock
is free" reliably means "nobody is working on this any more". Windows has no flock; there
a one-byte ``msvcrt`` lock plays the same part for files (directories cannot be locked).

Standard library only: the built-in registry may import this module.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

POLL_SECONDS = 0.2  # Windows only: how often a blocking lock retries

if os.name == "nt":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def try_lock(fd: int) -> bool:
        """Take an exclusive lock on *fd* without waiting; False if another holds it."""
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
        except OSError:
            return False
        return True

    def lock(fd: int) -> None:
        """Take an exclusive lock on *fd*, waiting as long as it takes."""
        while not try_lock(fd):
            time.sleep(POLL_SECONDS)

    def unlock(fd: int) -> None:
        with contextlib.suppress(OSError):
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)  # type: ignore[attr-defined]

else:
    import fcntl

    def try_lock(fd: int) -> bool:
        """Take an exclusive lock on *fd* without waiting; False if another holds it."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def lock(fd: int) -> None:
        """Take an exclusive lock on *fd*, waiting as long as it takes (a signal such as
        Ctrl-C interrupts the wait)."""
        fcntl.flock(fd, fcntl.LOCK_EX)

    def unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


def held_by_another(path: str | os.PathLike[str]) -> bool | None:
    """Whether someone holds the lock on *path* (a file, or on POSIX a directory).

    None when it cannot be told: the path is gone or unreadable, or the file system
    refuses locks.
    """
    try:  # O_NONBLOCK: a FIFO in its place must not hang the caller
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    try:
        if try_lock(fd):
            unlock(fd)
            return False
        return True
    except OSError:
        return None
    finally:
        os.close(fd)


@contextlib.contextmanager
def held(
    path: str | os.PathLike[str], *, on_wait: Callable[[], None] | None = None
) -> Iterator[None]:
    """Hold the lock on *path* (a file, created if missing, or on POSIX a directory) for
    the ``with`` block, waiting while another process holds it; *on_wait* hears once that
    it waits. Where the lock cannot be taken (the file system refuses locks, a directory
    on Windows), the block runs unlocked."""
    flags = os.O_RDONLY if Path(path).is_dir() else os.O_RDWR | os.O_CREAT
    try:
        fd = os.open(path, flags, 0o644)
    except OSError:
        yield
        return
    locked = False
    try:
        try:
            if not try_lock(fd):
                if on_wait is not None:
                    on_wait()
                lock(fd)
            locked = True
        except OSError:
            pass
        yield
    finally:
        if locked:
            unlock(fd)
        os.close(fd)
