"""Turn a freshly forked server child into the command its client asked for.

The child takes over what a new process would have inherited: the client's stdin,
stdout and stderr, working directory, umask, environment and locale, plus its own
process group (so forwarded signals reach its subprocesses too), then runs the CLI.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import locale
import os
import signal
import socket
import sys
import threading
import time
from typing import NoReturn

from mpkit.daemon import wire

# The server's own stdio objects: kept alive so that collecting them never closes a
# descriptor that now belongs to the client.
_SERVER_STDIO: list[object] = []


def run_command(command: dict[str, object], fds: list[int]) -> int:
    """Adopt the client's process state and run its command; the exit code."""
    _default_signals()
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)
    _adopt_descriptors(fds)
    cwd = str(command["cwd"])
    try:
        os.chdir(cwd)
    except OSError as exc:
        os.write(2, f"mpkit: cannot enter the working directory {cwd}: {exc.strerror}\n".encode())
        return 1
    os.umask(int(command["umask"]))  # type: ignore[call-overload]
    environment = command["env"]
    assert isinstance(environment, dict)
    os.environ.clear()
    os.environ.update({str(k): str(v) for k, v in environment.items()})
    _reset_locale()
    time.tzset()  # local times follow the command's TZ, not the server's
    _reopen_stdio()
    prog = str(command["prog"])
    argv = [str(arg) for arg in command["argv"]]  # type: ignore[attr-defined]
    sys.argv = [prog, *argv]
    from mpkit.launcher import run_in_process

    try:
        return run_in_process(prog, argv)
    except SystemExit as exc:
        return exit_code(exc.code)


def exit_now(code: int, report: socket.socket | None = None) -> NoReturn:
    """Exit as the interpreter would, minus tearing down every module (~30 ms here).

    Runs what a normal exit runs for the program: joins non-daemon threads (and lets
    thread pools finish), atexit handlers (logging, weakref finalizers such as temporary
    directories), and flushes the standard streams. Then tells the server the status on
    *report*, so that the client is answered before this process is torn down.
    """
    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is not None:
        shutdown()
    atexit._run_exitfuncs()
    _flush_stdio()
    if report is not None:
        with contextlib.suppress(OSError):
            report.sendall(wire.encode(("done", code)))
    os._exit(code)


def exit_code(code: object) -> int:
    """What the interpreter would exit with for ``SystemExit(code)``."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    sys.stderr.write(f"{code}\n")
    return 1


def _default_signals() -> None:
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for number in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(number, signal.SIG_DFL)


def _flush_stdio() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()


def _adopt_descriptors(fds: list[int]) -> None:
    _flush_stdio()
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    for fd in fds:
        if fd > 2:
            os.close(fd)


def _reset_locale() -> None:
    with contextlib.suppress(locale.Error):
        locale.setlocale(locale.LC_CTYPE, "")


def _reopen_stdio() -> None:
    """New sys.std* streams configured as CPython configures them at start-up."""
    encoding, _, errors = os.environ.get("PYTHONIOENCODING", "").partition(":")
    if not encoding:
        encoding = "utf-8" if sys.flags.utf8_mode else locale.getpreferredencoding(False)
    unbuffered = bool(os.environ.get("PYTHONUNBUFFERED"))
    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        _SERVER_STDIO.append(getattr(sys, name))
        stream_errors = errors or ("backslashreplace" if name == "stderr" else "strict")
        raw = open(  # noqa: SIM115  (lives as long as the process)
            fd, "rb" if fd == 0 else "wb", buffering=0 if unbuffered else -1, closefd=False
        )
        stream = io.TextIOWrapper(
            raw,
            encoding=encoding,
            errors=stream_errors,
            line_buffering=fd != 0 and (name == "stderr" or os.isatty(fd)),
            write_through=unbuffered,
        )
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)
