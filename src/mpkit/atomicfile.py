"""Atomic file writes, and the temp files they leave when a process is killed.

A file is written to a temp file, synced, and renamed over its target only when it is
complete: readers see the old file or the new one, never a part of one. A temp is named
``.<label>.<pid>.<token>.mpkit-tmp`` and locked (:mod:`mpkit.filelock`) while its writer
works on it, so a later run can tell the leftover of a killed process (lock free, owner
gone) from a file still being written, and remove only the former (:func:`remove_stale`).
Temp directories (:class:`TempDir`) follow the same rules.

Standard library only: the built-in registry may import this module.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, TypeVar

from mpkit.filelock import held_by_another, try_lock, unlock

TEMP_SUFFIX = ".mpkit-tmp"
# A temp whose lock is free but whose owner's pid is in use (by the owner just before it
# locked the file, or by another process that got the pid later) is stale after this long.
STALE_AFTER = 24 * 3600.0
_TEMP_NAME = re.compile(
    r"^\.(?P<label>.*)\.(?P<pid>\d+)\.[0-9a-f]{8}" + re.escape(TEMP_SUFFIX) + "$"
)
_LABEL_LIMIT = 100  # keeps the temp name within file-name limits


def temp_name(label: str) -> str:
    """A fresh temp name for a file or directory that will become *label*."""
    return f".{label[:_LABEL_LIMIT]}.{os.getpid()}.{secrets.token_hex(4)}{TEMP_SUFFIX}"


def is_temp_name(name: str) -> bool:
    return _TEMP_NAME.match(name) is not None


class _Scoped:
    """A context manager that ends its work when the ``with`` block does (``ok`` is False
    when the block raised)."""

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._end(ok=exc_type is None)

    def _end(self, *, ok: bool) -> None:
        raise NotImplementedError


_S = TypeVar("_S", bound=_Scoped)


class AtomicFile(_Scoped):
    """A temp file in *temp_dir* (default: the target's directory), renamed over the
    target by :meth:`commit`, or removed by :meth:`discard`.

    As a context manager it commits when the block ends normally and discards when it
    raises. *target* may be given only at commit time (e.g. a blob named by its digest).
    A temp beside its target first removes the temps that killed writers of the same
    file left there.
    *mode* is set exactly (not filtered by the umask) before the file gets its name;
    *durable* syncs the data to disk first, and *sync_directory* the rename too.
    """

    def __init__(
        self,
        target: Path | None = None,
        *,
        temp_dir: Path | None = None,
        label: str | None = None,
        mode: int = 0o644,
        durable: bool = True,
        sync_directory: bool = False,
        dir_mode: int = 0o777,
    ) -> None:
        directory = temp_dir if temp_dir is not None else target.parent if target else None
        if directory is None:
            raise ValueError("AtomicFile needs a target or a temp_dir")
        self.target = target
        self.mode = mode
        self.durable = durable
        self.sync_directory = sync_directory
        self.dir_mode = dir_mode
        directory.mkdir(mode=dir_mode, parents=True, exist_ok=True)
        name = label or (target.name if target else "blob")
        if temp_dir is None:
            remove_stale(directory, prefix=f".{name[:_LABEL_LIMIT]}.")
        self.path, fd = _create(lambda: directory / temp_name(name))
        _hold(fd)
        self.stream: BinaryIO = os.fdopen(fd, "w+b")
        self._done = False

    def commit(self, target: Path | None = None) -> Path:
        """Give the temp file its name: *target*, else the one given at creation."""
        final = target or self.target
        if final is None:
            raise ValueError("AtomicFile.commit needs a target")
        try:
            self.stream.flush()
            if hasattr(os, "fchmod"):
                os.fchmod(self.stream.fileno(), self.mode)
            if self.durable:
                os.fsync(self.stream.fileno())
            self.stream.close()  # Windows renames only closed files
            if not hasattr(os, "fchmod"):  # pragma: no cover - Windows
                self.path.chmod(self.mode)
            final.parent.mkdir(mode=self.dir_mode, parents=True, exist_ok=True)
            self.path.replace(final)
        except BaseException:
            self.discard()
            raise
        self._done = True
        if self.sync_directory:
            fsync_directory(final.parent)
        return final

    def discard(self) -> None:
        """Remove the temp file (nothing is renamed)."""
        self._done = True
        with contextlib.suppress(OSError):
            self.stream.close()
        with contextlib.suppress(OSError):
            self.path.unlink()

    def _end(self, *, ok: bool) -> None:
        if self._done:
            return
        if ok:
            self.commit()
        else:
            self.discard()


@contextlib.contextmanager
def atomic_output(path: Path, *, temp_dir: Path | None = None) -> Iterator[BinaryIO]:
    """A stream that becomes *path* (mode 0644) if the block succeeds (see AtomicFile)."""
    with AtomicFile(path, temp_dir=temp_dir) as file:
        yield file.stream


def write_bytes(
    path: Path,
    data: bytes,
    *,
    temp_dir: Path | None = None,
    mode: int = 0o644,
    durable: bool = True,
    sync_directory: bool = False,
    dir_mode: int = 0o777,
) -> None:
    """Replace *path* with *data* atomically (see :class:`AtomicFile`)."""
    with AtomicFile(
        path, temp_dir=temp_dir, mode=mode, durable=durable, sync_directory=sync_directory,
        dir_mode=dir_mode,
    ) as file:  # fmt: skip
        file.stream.write(data)


class TempDir(_Scoped):
    """A directory being filled under *parent*, named and locked like a temp file, then
    moved into place by :meth:`publish` or removed (also when the ``with`` block raises)."""

    def __init__(self, parent: Path, label: str) -> None:
        parent.mkdir(parents=True, exist_ok=True)
        self.path = _create_dir(lambda: parent / temp_name(label))
        self._fd: int | None = None
        if os.name == "posix":
            self._fd = os.open(self.path, os.O_RDONLY)
            _hold(self._fd)

    def publish(self, final: Path) -> None:
        """Rename the directory to *final* (raises OSError if *final* exists, non-empty)."""
        final.parent.mkdir(parents=True, exist_ok=True)
        self.path.rename(final)
        self._release()

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        self._release()

    def _release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                unlock(self._fd)
            os.close(self._fd)
            self._fd = None

    def _end(self, *, ok: bool) -> None:
        if self._fd is not None or self.path.exists():
            self.remove()  # never published


def fsync_directory(directory: Path) -> None:
    """Make a rename in *directory* durable (POSIX; directories cannot be opened on Windows)."""
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# -- leftovers of killed processes -------------------------------------------------------------


def is_stale(path: Path, *, now: float | None = None) -> bool:
    """True for a temp (by its name) that nobody is writing any more."""
    match = _TEMP_NAME.match(path.name)
    if match is None or held_by_another(path):
        return False
    if _pid_alive(int(match["pid"])) is False:
        return True
    try:
        age = (time.time() if now is None else now) - path.lstat().st_mtime
    except OSError:
        return False
    return age > STALE_AFTER


def remove_stale(
    directory: Path,
    *,
    also: Callable[[str], bool] | None = None,
    age: float = 3600.0,
    prefix: str = "",
) -> int:
    """Remove the stale temps directly in *directory* (only names starting with *prefix*);
    the bytes freed.

    Entries whose names *also* accepts go too once they are *age* seconds old (by their
    modification time): e.g. the temps of older mpkit versions, which name no owner.
    """
    freed = 0
    now = time.time()
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return 0
    for entry in entries:
        if not entry.name.startswith(prefix):
            continue
        path = Path(entry.path)
        if is_temp_name(entry.name):
            stale = is_stale(path, now=now)
        elif also is not None and also(entry.name):
            stale = _older_than(path, now - age)
        else:
            continue
        if stale:
            freed += remove_tree(path)
    return freed


def remove_tree(path: Path) -> int:
    """Remove a file, a link or a whole directory (links are never followed); its bytes."""
    size = tree_size(path)
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    except OSError:
        return 0
    return size


def tree_size(path: Path) -> int:
    """The bytes of the files under *path* (links are not followed)."""
    try:
        info = path.lstat()
    except OSError:
        return 0
    if not stat.S_ISDIR(info.st_mode):
        return info.st_size if stat.S_ISREG(info.st_mode) else 0
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += (Path(root) / name).lstat().st_size
    return total


def _older_than(path: Path, cutoff: float) -> bool:
    try:
        return path.lstat().st_mtime < cutoff
    except OSError:
        return False


def _pid_alive(pid: int) -> bool | None:
    """Whether a process *pid* exists on this machine; None when it cannot be told."""
    if os.name != "posix":
        return None  # os.kill would terminate the process on Windows
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    except OSError:
        return None
    return True


def _hold(fd: int) -> None:
    """Lock a temp just made (nobody else can hold it yet); where the file system has no
    locks, the owner's pid in the name still tells a later run it is in use."""
    with contextlib.suppress(OSError):
        try_lock(fd)


def _create(name: Callable[[], Path]) -> tuple[Path, int]:
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        path = name()
        try:
            return path, os.open(path, flags, 0o600)
        except FileExistsError:
            continue


def _create_dir(name: Callable[[], Path]) -> Path:
    while True:
        path = name()
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            continue
        return path
