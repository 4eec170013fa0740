"""Run one command in the resident build server (import-light: no mpkit.cli, no enum).

The public ``socket`` and ``signal`` modules import ``enum`` and cost ~13 ms; their C
halves have everything this needs, so the launcher stays at interpreter start-up time.
"""

from __future__ import annotations

import os
import sys

from mpkit.buildserver import paths, wire

try:
    import _signal as signals  # type: ignore[import-not-found, unused-ignore]
    import _socket as sockets
except ImportError:  # pragma: no cover - other Python implementations
    import signal as signals  # type: ignore[no-redef, unused-ignore]
    import socket as sockets  # type: ignore[no-redef, unused-ignore]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

FORWARDED_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT")


class NotServed(Exception):
    """No server took the command (none running, stale, or unreachable): run in-process."""


def supported() -> bool:
    return os.name == "posix" and hasattr(sockets, "AF_UNIX") and hasattr(os, "fork")


def connect(socket_path: str, timeout: float | None = None) -> Any:
    sock = sockets.socket(sockets.AF_UNIX, sockets.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(socket_path)
        sock.settimeout(None)
    except OSError:
        sock.close()
        raise
    return sock


def request(socket_path: str, message: object, timeout: float = 5.0) -> object | None:
    """One request, one reply (``status``, ``stop``); None if nothing listens."""
    try:
        sock = connect(socket_path, timeout)
    except OSError:
        return None
    try:
        sock.settimeout(timeout)
        wire.send(sock, message)
        return wire.recv_message(sock)
    except (OSError, wire.ProtocolError):
        return None
    finally:
        sock.close()


def run(prog: str, args: list[str], server: paths.ServerPaths, fingerprint: str) -> int:
    """Run ``prog args`` in the server with this process's terminal; its exit code."""
    try:
        sock = connect(server.socket)
    except OSError as exc:
        raise NotServed(f"no build server at {server.socket}: {exc.strerror}") from exc
    previous: dict[int, Any] = {}
    forwarder = _Forwarder(sock)
    try:
        # Handlers first: a Ctrl-C from now on is the command's, never a traceback here.
        for name in FORWARDED_SIGNALS:
            number = getattr(signals, name, None)
            if number is not None:
                previous[number] = signals.signal(number, forwarder)
        try:
            # The server reads only the first frame; the command (and its environment,
            # credentials included) is read by the child that runs it.
            wire.send_with_fds(sock, ("run", fingerprint), _stdio_fds(),
                               sockets.SOL_SOCKET, sockets.SCM_RIGHTS)  # fmt: skip
            wire.send(sock, _command(prog, args))
            return _wait(sock, forwarder)
        except (OSError, NotServed) as exc:
            if forwarder.pending:  # interrupted before anything ran: do not run it here
                return cancelled(forwarder.pending[0])
            if isinstance(exc, NotServed):
                raise
            raise NotServed(f"the build server did not take the command: {exc}") from exc
    finally:
        for number, handler in previous.items():
            signals.signal(number, handler)
        sock.close()


def _command(prog: str, args: list[str]) -> dict[str, object]:
    umask = os.umask(0o022)
    os.umask(umask)
    return {
        "prog": prog,
        "argv": list(args),
        "cwd": os.getcwd(),
        "env": dict(os.environ),
        "umask": umask,
    }


def _stdio_fds() -> list[int]:
    fds = []
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
            fds.append(fd)
        except OSError:  # closed: the child gets /dev/null, as a fresh process would not
            fds.append(os.open(os.devnull, os.O_RDWR))
    return fds


def cancelled(number: int) -> int:
    """Report a command stopped by a signal before it ran; its exit code (Ctrl-C: 1, as
    the CLI exits when interrupted)."""
    sys.stderr.write("error: cancelled by the user (Ctrl-C)\n")
    return 1 if number == getattr(signals, "SIGINT", 2) else 128 + number


class _Forwarder:
    """Signal handler: passes signals on to the command once it runs; until then, keeps
    them (the server reads nothing but the request before the command starts)."""

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.started = False
        self.pending: list[int] = []

    def __call__(self, number: int, frame: object) -> None:
        if self.started:
            self._send(number)
        else:
            self.pending.append(number)

    def start(self) -> None:
        self.started = True
        for number in self.pending:
            self._send(number)

    def _send(self, number: int) -> None:
        try:
            wire.send(self.sock, ("signal", number))
        except OSError:
            pass


def _wait(sock: Any, forwarder: _Forwarder) -> int:
    reader = wire.FrameReader()
    started = False
    while True:
        try:
            chunk = sock.recv(65536)
        except OSError:
            chunk = b""
        if not chunk:
            if not started:
                raise NotServed("the build server closed the connection")
            sys.stderr.write("mpkit: the build server stopped before the command finished\n")
            return 1
        for message in reader.feed(chunk):
            kind = message[0] if isinstance(message, tuple) and message else None
            if kind == "started":
                started = True
                forwarder.start()
            elif kind == "exit":
                return int(message[1])  # type: ignore[index]
            elif kind == "stale":
                raise NotServed("the build server runs other mpkit code")
            elif kind == "refused":
                raise NotServed(f"the build server refused the command: {message[1]}")  # type: ignore[index]
