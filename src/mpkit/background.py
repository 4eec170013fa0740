"""Background servers mpkit starts for later commands (the built-in registry's ``--detach``,
the resident build server): one lock per server, start and wait until ready, stop.

Standard library only: both servers import it before anything else of mpkit.

A server holds an exclusive ``flock`` on its lock file for as long as it serves. Such a
lock belongs to an open file, not to a process, so the check also works inside the
holder, and it vanishes with its holder even on SIGKILL: it is the reliable answer to
"is a server running?", where a pid file could name a recycled pid.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from mpkit.errors import MpkitError, StartError
from mpkit.filelock import try_lock, unlock

T = TypeVar("T")
POLL_SECONDS = 0.02
LOG_TAIL_CHARS = 600


class ServerLock:
    """The lock a server holds while it serves."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock without waiting; False when another holder has it."""
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

    def forget(self) -> None:
        """Close our descriptor without unlocking: for a forked child, whose copy of the
        descriptor would otherwise keep the server's lock alive after the server exits."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def lock_held(path: Path | str) -> bool:
    """True while some process (this one included) holds the lock at *path*."""
    if not Path(path).exists():
        return False
    probe = ServerLock(path)
    if probe.acquire():
        probe.release()
        return False
    return True


def start_background(
    argv: Sequence[str],
    *,
    what: str,
    log: Path,
    ready: Callable[[], T | None],
    timeout: float,
    lock: Path | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
) -> T:
    """Start *argv* in a session of its own (output appended to *log*) and wait until
    *ready* returns something, which is returned.

    A server that exits while starting fails at once, with its log's last lines, unless
    another one holds *lock* (it lost a start race: the winner's readiness is awaited).
    """
    options: dict[str, object] = {}
    if os.name == "nt":  # pragma: no cover
        flags = subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.DETACHED_PROCESS  # type: ignore[attr-defined]
        options["creationflags"] = flags
    else:
        options["start_new_session"] = True
    log.parent.mkdir(parents=True, exist_ok=True)
    start = log.stat().st_size if log.exists() else 0
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        child = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=fd,
            stderr=subprocess.STDOUT,
            close_fds=True,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            **options,  # type: ignore[call-overload]
        )
    except OSError as exc:
        raise StartError(f"cannot start {what}: {exc}") from exc
    finally:
        os.close(fd)
    deadline = time.monotonic() + timeout
    while True:
        found = ready()
        if found is not None:
            return found
        code = child.poll()
        if code is not None and not (lock is not None and lock_held(lock)):
            raise StartError(
                f"{what} exited with status {code} while starting",
                hint=f"its log {log} says: {log_tail(log, since=start)}",
            )
        if time.monotonic() >= deadline:
            if code is None:
                signal_process(child.pid, signal.SIGTERM)
            raise StartError(
                f"{what} did not become ready within {timeout:.0f} s",
                hint=f"its log {log} says: {log_tail(log, since=start)}",
            )
        time.sleep(POLL_SECONDS)


def stop_process(pid: int, *, stopped: Callable[[], bool], timeout: float, what: str) -> None:
    """SIGTERM *pid*, wait for *stopped*; SIGKILL it if it has not stopped by *timeout*."""
    signal_process(pid, signal.SIGTERM)
    if wait_until(stopped, timeout):
        return
    signal_process(pid, getattr(signal, "SIGKILL", signal.SIGTERM))
    if not wait_until(stopped, 5.0):
        raise MpkitError(f"{what} (pid {pid}) did not stop", hint="check the process")


def wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_SECONDS)


def signal_process(pid: int, number: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, number)


def log_tail(path: Path, *, since: int = 0, limit: int = LOG_TAIL_CHARS) -> str:
    """The end of a log (from byte *since*), on one line: what a failed start printed."""
    try:
        with open(path, "rb") as stream:
            stream.seek(since)
            text = stream.read().decode("utf-8", "replace")
    except OSError:
        return "(no log)"
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    joined = " / ".join(lines)
    return (joined[-limit:] if len(joined) > limit else joined) or "(nothing)"
