"""The resident build server: imports mpkit once, then forks one child per command.

Started by :mod:`mpkit.buildserver.control` as ``python -m mpkit.buildserver.server``
in a session of its own. It takes ``<stem>.lock`` (one server per installation), imports
the CLI, and listens on ``<stem>.sock`` (mode 0600, in a 0700 directory, peers checked
with SO_PEERCRED where the OS has it).

The server reads only the first frame of a request: ``("run", fingerprint)`` with the
client's stdin, stdout and stderr attached. It hands the connection itself to a child
(:mod:`mpkit.buildserver.child`), which reads the command (argv, directory, umask and
environment, credentials included) and from then on talks to the client alone: it
reports that it started, takes the client's signals and sends the exit status. So no
secret of a command ever passes through the server's memory, and a child that was forked
later inherits none.

It stops after ``--idle`` seconds without commands, on ``stop``, on SIGTERM, or when a
client runs other mpkit code (``stale``); commands already running go on to the end.
"""

from __future__ import annotations

import argparse
import array
import contextlib
import gc
import importlib
import os
import selectors
import signal
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from mpkit.background import ServerLock
from mpkit.buildserver import paths, spare, wire

WARM_MODULES = (
    "mpkit.cli",
    "mpkit.cli.build",
    "mpkit.buildserver.child",
    "mpkit.buildserver.spare",
)
# Imported lazily by their users: describe validation, httpx's first client (its
# transport stack, ~30 ms), IDNA host names, and the uv wheel's binary lookup.
OPTIONAL_WARM_MODULES = (
    *("xmlschema", "httpcore", "h11", "anyio", "certifi", "encodings.idna", "stringprep"),
    *("uv", "sysconfig"),
)
REQUEST_TIMEOUT = 5.0
MAX_SPARE_FAILURES = 3  # spares that died unused before the server stops making them
STDIO_FDS = 3


class ChildTask:
    """What a freshly forked child must become (returned up out of the server loop): the
    client's connection and its stdin, stdout and stderr."""

    __slots__ = ("conn", "fds")

    def __init__(self, conn: socket.socket, fds: list[int]) -> None:
        self.conn = conn
        self.fds = fds


class Spare:
    """A child forked ahead of the next command (mpkit.buildserver.spare), and its line."""

    __slots__ = ("control", "pid")

    def __init__(self, pid: int, control: socket.socket) -> None:
        self.pid = pid
        self.control = control


class Server:
    def __init__(self, where: paths.ServerPaths, fingerprint: str, idle: float) -> None:
        self.where = where
        self.fingerprint = fingerprint
        self.idle = idle
        self.children: set[int] = set()
        self.spare: Spare | None = None
        self.spare_failures = 0 if paths.spares_wanted() else MAX_SPARE_FAILURES
        self.selector = selectors.DefaultSelector()
        self.listener: socket.socket | None = None
        self.socket_inode: int | None = None
        self.lock = ServerLock(where.lock)
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.retiring = False
        self.signalled = False
        self.started = time.time()
        self.last_activity = time.monotonic()
        self.served = 0

    # -- setting up ------------------------------------------------------------------------
    def listen(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            Path(self.where.socket).unlink()  # a crashed server's; we hold the lock
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)
        try:
            listener.bind(self.where.socket)
        finally:
            os.umask(old_umask)
        listener.listen(64)
        listener.setblocking(False)
        self.socket_inode = Path(self.where.socket).stat().st_ino
        self.listener = listener
        self.selector.register(listener, selectors.EVENT_READ, "accept")
        self.selector.register(self.wake_r, selectors.EVENT_READ, "wake")
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, _ignore)
        for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(number, self._on_stop_signal)
        # The idle clock starts when clients can first reach us, not when the process
        # started: importing may take seconds (a cold bytecode cache).
        self.last_activity = time.monotonic()

    # -- the loop --------------------------------------------------------------------------
    def serve(self) -> ChildTask | None:
        """Serve until told to stop (None); in a forked child, return its task instead."""
        while True:
            if self.signalled:
                self.retire("stop signal")
            if self.retiring:
                return None
            task = self._ensure_spare()
            if task is not None:
                return task
            if not self.children and time.monotonic() - self.last_activity >= self.idle:
                self.retire(f"idle for {self.idle:g} s")
                continue
            for key, _ in self.selector.select(self._timeout()):
                if key.data == "accept":
                    task = self._accept()
                    if task is not None:
                        return task
                elif key.data == "wake":
                    self._drain_wakeups()
                    self._reap()

    def _timeout(self) -> float | None:
        if self.children:
            return None  # SIGCHLD wakes us
        return max(0.0, self.last_activity + self.idle - time.monotonic())

    def retire(self, reason: str) -> None:
        """Stop listening (a new server may start at once) and leave."""
        if self.retiring:
            return
        self.retiring = True
        _log(f"stopping ({reason}); {len(self.children)} command(s) still running")
        if self.listener is not None:
            self.selector.unregister(self.listener)
            self.listener.close()
            self.listener = None
        with contextlib.suppress(OSError):
            socket_file = Path(self.where.socket)
            if socket_file.stat().st_ino == self.socket_inode:
                socket_file.unlink()
        self.lock.release()
        if self.spare is not None:
            self.spare.control.close()  # the spare sees end of stream and exits
            self.spare = None

    def close(self) -> None:
        self.retire("shutting down")
        signal.set_wakeup_fd(-1)
        self.selector.close()
        os.close(self.wake_r)
        os.close(self.wake_w)

    # -- requests --------------------------------------------------------------------------
    def _accept(self) -> ChildTask | None:
        assert self.listener is not None
        try:
            conn, _ = self.listener.accept()
        except (BlockingIOError, InterruptedError):
            return None
        self.last_activity = time.monotonic()
        fds: list[int] = []
        try:
            conn.settimeout(REQUEST_TIMEOUT)
            if not _same_user(conn):
                conn.close()
                return None
            message, fds = read_first_frame(conn)
            return self._dispatch(conn, message, fds)
        except (OSError, wire.ProtocolError) as exc:
            _log(f"dropped a request: {exc}")
            _close_all(fds)
            conn.close()
            return None

    def _dispatch(self, conn: socket.socket, message: object, fds: list[int]) -> ChildTask | None:
        kind = message[0] if isinstance(message, tuple) and message else None
        if kind == "run":
            refusal = self._refusal(message, fds)  # type: ignore[arg-type]
            if refusal is None:
                return self._start(conn, fds)
            wire.send(conn, refusal)
        elif kind == "status":
            wire.send(conn, self.status())
        elif kind == "stop":
            wire.send(conn, {**self.status(), "stopping": True})
            self.retire("asked to stop")
        _close_all(fds)
        conn.close()
        return None

    def _refusal(self, message: tuple[object, ...], fds: list[int]) -> tuple[str, ...] | None:
        if message[1:] != (self.fingerprint,):
            self.retire("a client runs other mpkit code")
            return ("stale",)
        if len(fds) != STDIO_FDS:
            return ("refused", "expected stdin, stdout and stderr")
        return None

    def status(self) -> dict[str, object]:
        return {
            "pid": os.getpid(),
            "fingerprint": self.fingerprint,
            "started": self.started,
            "idle_seconds": self.idle,
            "commands_running": len(self.children),
            "spare_pid": self.spare.pid if self.spare is not None else None,
            "served": self.served,
            "socket": self.where.socket,
            "python": sys.executable,
        }

    def _start(self, conn: socket.socket, fds: list[int]) -> ChildTask | None:
        """Hand the client to the spare child, else to a child forked now."""
        self.served += 1
        if not self._hand_to_spare(conn, fds):
            pid = os.fork()
            if pid == 0:
                self._close_in_child()
                return ChildTask(conn, fds)
            self.children.add(pid)
        _close_all(fds)
        conn.close()
        return None

    def _hand_to_spare(self, conn: socket.socket, fds: list[int]) -> bool:
        spare, self.spare = self.spare, None
        if spare is None:
            return False
        try:
            wire.send_with_fds(spare.control, ("run",), [conn.fileno(), *fds],
                               socket.SOL_SOCKET, socket.SCM_RIGHTS)  # fmt: skip
        except OSError:
            return False  # it died; reaped with the other children
        finally:
            spare.control.close()
        self.children.add(spare.pid)
        return True

    def _ensure_spare(self) -> ChildTask | None:
        """Fork a spare while idle; in the spare, return its task once handed one."""
        if self.spare is not None or self.children or self.spare_failures >= MAX_SPARE_FAILURES:
            return None
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        pid = os.fork()
        if pid == 0:
            ours.close()
            self._close_in_child()
            got = spare.become_spare(theirs, read_handover)
            theirs.close()
            if got is None:
                os._exit(0)  # the server stopped; nothing of ours to clean up
            return got
        theirs.close()
        self.spare = Spare(pid, ours)
        return None

    def _close_in_child(self) -> None:
        signal.set_wakeup_fd(-1)
        self.selector.close()
        if self.listener is not None:
            self.listener.close()
        if self.spare is not None:
            self.spare.control.close()
        os.close(self.wake_r)
        os.close(self.wake_w)
        self.lock.forget()  # else a long command would keep a new server out

    # -- children --------------------------------------------------------------------------
    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if self.spare is not None and pid == self.spare.pid:
                self._spare_died(status)
            elif pid in self.children:
                self.children.discard(pid)
                self.last_activity = time.monotonic()

    def _spare_died(self, status: int) -> None:
        assert self.spare is not None
        self.spare.control.close()
        self.spare = None
        self.spare_failures += 1
        _log(f"a spare child died unused (status {status}); forking commands directly")

    def _drain_wakeups(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self.wake_r, 4096):
                pass

    def _on_stop_signal(self, number: int, frame: object) -> None:
        self.signalled = True


def read_first_frame(conn: socket.socket) -> tuple[object, list[int]]:
    """Exactly the first frame and the descriptors that came with it (unix(7)
    SCM_RIGHTS); what follows it stays unread in the socket for the child."""
    header, ancdata, flags, _ = conn.recvmsg(wire.HEADER, socket.CMSG_SPACE(4 * wire.FD_SIZE))
    fds: list[int] = []
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            received = array.array("i")
            received.frombytes(payload[: len(payload) - len(payload) % received.itemsize])
            fds.extend(received)
    try:
        if flags & socket.MSG_CTRUNC:
            raise wire.ProtocolError("too many descriptors in the request")
        header += _recv_exactly(conn, wire.HEADER - len(header))
        size = int.from_bytes(header, "big")
        if size > wire.MAX_FRAME:
            raise wire.ProtocolError(f"frame of {size} bytes is larger than {wire.MAX_FRAME}")
        messages = wire.FrameReader().feed(header + _recv_exactly(conn, size))
    except BaseException:
        _close_all(fds)
        raise
    return messages[0], fds


def _recv_exactly(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise wire.ProtocolError("the request ended early")
        data += chunk
    return data


def read_handover(control: socket.socket) -> ChildTask:
    """What the server hands a spare child: the client's connection and stdio."""
    message, fds = read_first_frame(control)
    if message != ("run",) or len(fds) != 1 + STDIO_FDS:
        _close_all(fds)
        raise ValueError("not a hand-over of a command")
    return ChildTask(socket.socket(fileno=fds[0]), fds[1:])


def _same_user(conn: socket.socket) -> bool:
    peercred = getattr(socket, "SO_PEERCRED", None)
    if peercred is None:  # no SO_PEERCRED (macOS): the 0700 directory guards the socket
        return True
    creds = conn.getsockopt(socket.SOL_SOCKET, peercred, array.array("i").itemsize * 3)
    _, uid, _ = array.array("i", creds).tolist()
    return bool(uid == os.getuid())


def _close_all(fds: Sequence[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def _ignore(number: int, frame: object) -> None:
    """SIGCHLD only needs to wake the loop (through the wakeup fd)."""


def _log(text: str) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    sys.stderr.write(f"{stamp} build server {os.getpid()}: {text}\n")
    sys.stderr.flush()


def _warm_up() -> None:
    """Import what commands use and build the CLI's parsers, once for every child."""
    for name in WARM_MODULES:
        importlib.import_module(name)
    for name in OPTIONAL_WARM_MODULES:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    from mpkit.cli import prebuild_parsers
    from mpkit.registry.tls import default_context

    prebuild_parsers()
    default_context().load_trust()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m mpkit.buildserver.server")
    parser.add_argument("--fingerprint", required=True)
    parser.add_argument("--package", required=True, help="the mpkit package directory to serve")
    parser.add_argument("--idle", type=float, default=paths.DEFAULT_IDLE_SECONDS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    os.chdir("/")
    where = paths.server_paths()
    server = Server(where, args.fingerprint, args.idle)
    if not server.lock.acquire():
        _log("another build server already serves this installation")
        return 0
    if paths.package_directory() != args.package:
        _log(f"imported mpkit from {paths.package_directory()}, not {args.package}")
        return 1
    _warm_up()
    gc.freeze()  # keep the imported objects' pages shared with every child
    server.listen()
    _log(f"listening on {where.socket} (idle timeout {args.idle:g} s)")
    task = server.serve()
    if task is None:
        server.close()
        _log("stopped")
        return 0
    from mpkit.buildserver.child import serve_client

    return serve_client(task.conn, task.fds)


if __name__ == "__main__":
    sys.exit(main())
