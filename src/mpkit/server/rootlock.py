"""One server per storage root: an exclusive lock on ``<root>/server.lock``.

``flock`` locks belong to an open file, not to a process, so the check also works
inside the process that holds the lock. The lock vanishes with its holder, even on
SIGKILL, which makes it the reliable answer to "is a server using this root?".
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

LOCK_FILE = "server.lock"

if os.name == "nt":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
        except OSError:
            return False
        return True

    def _unlock(fd: int) -> None:
        with contextlib.suppress(OSError):
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)  # type: ignore[attr-defined]

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


class RootLock:
    def __init__(self, root: Path) -> None:
        self.path = root / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock without waiting; False when another server holds it."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        if not _try_lock(fd):
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            _unlock(self._fd)
            os.close(self._fd)
            self._fd = None


def lock_held(root: Path) -> bool:
    """True while some server (in any process, this one included) holds *root*'s lock."""
    if not (root / LOCK_FILE).exists():
        return False
    probe = RootLock(root)
    if probe.acquire():
        probe.release()
        return False
    return True
