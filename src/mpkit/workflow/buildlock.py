"""One ``mpkit build`` of a project at a time, and nothing left of killed ones.

A second build of the same project waits, saying so once, until the first one ends: two
builds writing one pack and one config.json cannot both be right. The lock is an flock on
``build/.mpkit-build.lock``, which the kernel releases when its holder ends, even by
SIGKILL; the holder removes the file before it lets go, so a finished build leaves no
trace. Holding the lock, a build removes the temp files that killed builds left in
``build/`` and beside config.json: only mpkit's temp names, only those no process holds.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

from mpkit.atomicfile import remove_stale
from mpkit.errors import BuildLockError
from mpkit.filelock import lock, try_lock, unlock

LOCK_NAME = ".mpkit-build.lock"
# Temps of mpkit versions that did not name their owner: ".<file>.<8 random chars>.tmp".
_LEGACY_TEMP = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")


@contextlib.contextmanager
def project_build_lock(root: Path, *, waiting: Callable[[str], None]) -> Iterator[None]:
    """Hold the build lock of the project in *root*; *waiting* hears once if it is busy."""
    path = root / "build" / LOCK_NAME
    fd = _acquire(path, waiting)
    try:
        for directory in (root / "build", root):
            remove_stale(directory, also=lambda name: _LEGACY_TEMP.match(name) is not None)
        yield
    finally:
        if fd is not None:
            with contextlib.suppress(OSError):
                path.unlink()  # before the unlock: a waiter then sees a new file, and retries
            unlock(fd)
            os.close(fd)


def _acquire(path: Path, waiting: Callable[[str], None]) -> int | None:
    """The locked descriptor of *path*; None where the file system has no locks."""
    told = False
    while True:
        fd = _open(path)
        try:
            if not try_lock(fd):
                if not told:
                    waiting(_busy_message(path, fd))
                    told = True
                lock(fd)
            if _same_file(fd, path):
                os.ftruncate(fd, 0)
                os.lseek(fd, 0, os.SEEK_SET)  # reading the holder's pid moved it
                os.write(fd, f"{os.getpid()}\n".encode())
                return fd
        except OSError:
            os.close(fd)
            return None  # no locking here (e.g. some network file systems): build anyway
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # the holder removed the file as it finished: lock the new one


def _open(path: Path) -> int:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise BuildLockError(
            f"cannot create {path} to build the project: {exc.strerror or exc}",
            hint=f"make {path.parent} writable: the pack is written there",
        ) from None


def _same_file(fd: int, path: Path) -> bool:
    try:
        current = path.stat()
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (opened.st_dev, opened.st_ino) == (current.st_dev, current.st_ino)


def _busy_message(path: Path, fd: int) -> str:
    with contextlib.suppress(OSError, ValueError):
        os.lseek(fd, 0, os.SEEK_SET)
        owner = int(os.read(fd, 32).decode().strip())
        return (
            f"another mpkit build of this project is running (process {owner}); "
            "waiting for it to finish (Ctrl-C to cancel)"
        )
    return "another mpkit build of this project is running; waiting for it to finish"
