"""One server per storage root: an exclusive lock on ``<root>/server.lock``.

``flock`` locks belong to an open file, not to a process, so the check also works
inside the process that holds the lock. The lock vanishes with its holder, even on
SIGKILL, which makes it the reliable answer to "is a server using this root?".
"""

from __future__ import annotations

import os
from pathlib import Path

from mpkit.filelock import try_lock, unlock

LOCK_FILE = "server.lock"


class RootLock:
    def __init__(self, root: Path) -> None:
        self.path = root / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock without waiting; False when another server holds it."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        if not try_lock(fd):
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            unlock(self._fd)
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
