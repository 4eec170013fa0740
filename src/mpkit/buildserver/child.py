"""Turn a freshly forked server child into the command its client asked for.

The child reads the command from the client's connection itself (the server never sees
it), takes over what a new process would have inherited: the client's stdin, stdout and
stderr, working directory, umask, environment and locale, plus its own process group (so
the client's signals reach its subprocesses too), then runs the CLI and sends the client
its exit status.
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
from collections.abc import Callable
from typing import NoReturn

from mpkit.buildserver import wire
from mpkit.exiting import lingering_threads

REQUEST_TIMEOUT = 5.0
KILL_GRACE_SECONDS = 5.0
FORWARDABLE = frozenset(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT")
)
_exiting = threading.Event()  # set once the exit status is on its way to the client

# The server's own stdio objects: kept alive so that collecting them never closes a
# descriptor that now belongs to the client.
_SERVER_STDIO: list[object] = []


def serve_client(conn: socket.socket, fds: list[int]) -> NoReturn:
    """Run the command the client on *conn* sends, then exit with its status."""
    reader = wire.FrameReader()
    try:
        conn.settimeout(REQUEST_TIMEOUT)
        command = _read_command(conn, reader)
        conn.settimeout(None)
        wire.send(conn, ("started", os.getpid()))
    except (OSError, wire.ProtocolError, ValueError):
        os._exit(1)  # the client went away or is not ours; it runs the command itself
    watcher = threading.Thread(
        target=_watch_client, args=(conn, reader), name="mpkit-client", daemon=True
    )
    code = run_command(command, fds, before_run=watcher.start)
    exit_now(code, conn)


def _read_command(conn: socket.socket, reader: wire.FrameReader) -> dict[str, object]:
    while True:
        chunk = conn.recv(65536)
        if not chunk:
            raise ValueError("the client closed the connection")
        for message in reader.feed(chunk):
            if isinstance(message, dict):
                return message
            raise ValueError("expected the command")


def _watch_client(conn: socket.socket, reader: wire.FrameReader) -> None:
    """Pass the client's signals on to this command's process group; when the client
    dies without waiting, stop the command as a hang-up would (and kill what lingers)."""
    group = os.getpgrp()
    while True:
        try:
            chunk = conn.recv(4096)
        except OSError:
            chunk = b""
        if not chunk:
            break
        try:
            messages = reader.feed(chunk)
        except wire.ProtocolError:
            break
        for message in messages:
            number = message[1] if isinstance(message, tuple) and len(message) == 2 else None
            if message[:1] == ("signal",) and number in FORWARDABLE:  # type: ignore[index]
                _signal_group(group, int(number))  # type: ignore[arg-type]
    if _exiting.is_set():
        return  # the client read our exit status and hung up: nothing to stop
    _signal_group(group, signal.SIGTERM)
    time.sleep(KILL_GRACE_SECONDS)
    _signal_group(group, signal.SIGKILL)


def _signal_group(group: int, number: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, number)


def run_command(
    command: dict[str, object], fds: list[int], before_run: Callable[[], None] = lambda: None
) -> int:
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

    before_run()
    try:
        return run_in_process(prog, argv)
    except SystemExit as exc:
        return exit_code(exc.code)


def exit_now(code: int, client: socket.socket | None = None) -> NoReturn:
    """Exit as the interpreter would, minus tearing down every module (~30 ms here).

    Runs what a normal exit runs for the program: joins non-daemon threads (and lets
    thread pools finish) unless a cancelled transfer left one blocked (see
    mpkit.exiting), atexit handlers (logging, weakref finalizers such as temporary
    directories), and flushes the standard streams. Then tells the *client* the status,
    so that it is answered before this process is torn down.
    """
    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is not None and not lingering_threads():
        shutdown()
    atexit._run_exitfuncs()
    _flush_stdio()
    _exiting.set()
    if client is not None:
        with contextlib.suppress(OSError):
            client.sendall(wire.encode(("exit", code)))
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
