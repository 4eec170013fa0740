"""The resident build server: imports mpkit once, then forks one child per command.

Started by :mod:`mpkit.daemon.control` as ``python -m mpkit.daemon.server``. It detaches
at once (double fork), takes ``<stem>.lock`` (one server per installation), imports the
CLI, and listens on ``<stem>.sock`` (mode 0600, in a 0700 directory, peers checked with
SO_PEERCRED where the OS has it). Each ``run`` request forks a child that adopts the
client's descriptors, directory, umask and environment (mpkit.daemon.child); the server
forwards the client's signals to the child's process group and returns its exit status.
It stops after ``--idle`` seconds without commands, on ``stop``, on SIGTERM, or when a
client runs other mpkit code (``stale``); commands already running finish first.
"""

from __future__ import annotations

import argparse
import array
import contextlib
import fcntl
import gc
import importlib
import os
import selectors
import signal
import socket
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from mpkit.daemon import paths, spare, wire

WARM_MODULES = ("mpkit.cli", "mpkit.cli.packbuild", "mpkit.daemon.child", "mpkit.daemon.spare")
# Imported lazily by their users: describe validation, httpx's first client (its
# transport stack, ~30 ms), IDNA host names, and the uv wheel's binary lookup.
OPTIONAL_WARM_MODULES = (
    *("xmlschema", "httpcore", "h11", "anyio", "certifi", "encodings.idna", "stringprep"),
    *("uv", "sysconfig"),
)
REQUEST_TIMEOUT = 5.0
KILL_GRACE_SECONDS = 5.0
MAX_SPARE_FAILURES = 3  # spares that died unused before the server stops making them
FORWARDABLE = frozenset(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT")
)


class Job:
    """A command running in a child process, the client waiting for it, and the line on
    which the child reports its exit status before its (slow) teardown."""

    __slots__ = ("conn", "kill_at", "pid", "report")

    def __init__(self, pid: int, conn: socket.socket | None, report: socket.socket) -> None:
        self.pid = pid
        self.conn = conn
        self.report: socket.socket | None = report
        self.kill_at: float | None = None


class Spare:
    """A child forked ahead of the next command (mpkit.daemon.spare), and its line to us."""

    __slots__ = ("control", "pid")

    def __init__(self, pid: int, control: socket.socket) -> None:
        self.pid = pid
        self.control = control


class ChildTask:
    """What a freshly forked child must become (returned up out of the server loop), and
    where it reports its exit status."""

    __slots__ = ("command", "fds", "report")

    def __init__(self, command: dict[str, object], fds: list[int], report: socket.socket) -> None:
        self.command = command
        self.fds = fds
        self.report = report


class Server:
    def __init__(self, where: paths.ServerPaths, fingerprint: str, idle: float) -> None:
        self.where = where
        self.fingerprint = fingerprint
        self.idle = idle
        self.jobs: dict[int, Job] = {}
        self.spare: Spare | None = None
        self.spare_failures = 0 if paths.spares_wanted() else MAX_SPARE_FAILURES
        self.selector = selectors.DefaultSelector()
        self.listener: socket.socket | None = None
        self.socket_inode: int | None = None
        self.lock_fd: int | None = None
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.retiring = False
        self.signalled = False
        self.started = time.time()
        self.last_activity = time.monotonic()
        self.served = 0

    # -- setting up ------------------------------------------------------------------------
    def acquire(self) -> bool:
        """Take the installation's lock; False if another server holds it."""
        fd = os.open(self.where.lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self.lock_fd = fd
        return True

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

    # -- the loop --------------------------------------------------------------------------
    def serve(self) -> ChildTask | None:
        """Serve until told to stop (None); in a forked child, return its task instead."""
        while True:
            if self.signalled:
                self.retire("stop signal")
            task = self._ensure_spare()
            if task is not None:
                return task
            if self.retiring and not self.jobs:
                return None
            idle_for = time.monotonic() - self.last_activity
            if not self.jobs and not self.retiring and idle_for >= self.idle:
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
                elif isinstance(key.data, Job):
                    self._from_client(key.data)
                elif isinstance(key.data, tuple):
                    self._from_child(key.data[1])
            self._enforce_kills()

    def _timeout(self) -> float | None:
        now = time.monotonic()
        deadlines = [job.kill_at for job in self.jobs.values() if job.kill_at is not None]
        if not self.jobs and not self.retiring:
            deadlines.append(self.last_activity + self.idle)
        return max(0.0, min(deadlines) - now) if deadlines else None

    def retire(self, reason: str) -> None:
        """Stop listening now (a new server may start), exit once the jobs are done."""
        if self.retiring:
            return
        self.retiring = True
        _log(f"stopping ({reason}); {len(self.jobs)} command(s) still running")
        if self.listener is not None:
            self.selector.unregister(self.listener)
            self.listener.close()
            self.listener = None
        with contextlib.suppress(OSError):
            socket_file = Path(self.where.socket)
            if socket_file.stat().st_ino == self.socket_inode:
                socket_file.unlink()
        if self.lock_fd is not None:
            os.close(self.lock_fd)
            self.lock_fd = None
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
            message, fds = _read_request(conn)
            return self._dispatch(conn, message, fds)
        except (OSError, wire.ProtocolError) as exc:
            _log(f"dropped a request: {exc}")
            _close_all(fds)
            conn.close()
            return None

    def _dispatch(self, conn: socket.socket, message: object, fds: list[int]) -> ChildTask | None:
        parts = message if isinstance(message, tuple) else ()
        kind = parts[0] if parts else None
        command = parts[1] if kind == "run" and len(parts) > 1 else None
        if kind == "run" and isinstance(command, dict):
            refusal = self._refusal(command, fds)
            if refusal is None:
                return self._start(conn, command, fds)
            wire.send(conn, refusal)
        elif kind == "status":
            wire.send(conn, self.status())
        elif kind == "stop":
            wire.send(conn, {**self.status(), "stopping": True})
            self.retire("asked to stop")
        _close_all(fds)
        conn.close()
        return None

    def _refusal(self, command: dict[str, object], fds: list[int]) -> tuple[str, ...] | None:
        if command.get("fingerprint") != self.fingerprint:
            self.retire("a client runs other mpkit code")
            return ("stale",)
        if self.retiring:
            return ("refused", "the build server is stopping")
        if len(fds) != 3:
            return ("refused", "expected stdin, stdout and stderr")
        return None

    def status(self) -> dict[str, object]:
        return {
            "pid": os.getpid(),
            "fingerprint": self.fingerprint,
            "started": self.started,
            "idle_seconds": self.idle,
            "commands_running": len(self.jobs),
            "spare_pid": self.spare.pid if self.spare is not None else None,
            "served": self.served,
            "socket": self.where.socket,
            "python": sys.executable,
        }

    def _start(
        self, conn: socket.socket, command: dict[str, object], fds: list[int]
    ) -> ChildTask | None:
        """Hand the command to the spare child, else to a child forked now."""
        spare, self.spare = self.spare, None
        if spare is not None:
            try:
                wire.send_with_fds(
                    spare.control, ("run", command), fds, socket.SOL_SOCKET, socket.SCM_RIGHTS
                )
            except OSError:
                spare = None  # it died; reaped with the other children
        if spare is not None:
            _close_all(fds)
            self._track(spare.pid, conn, spare.control)
            return None
        return self._fork(conn, command, fds)

    def _fork(
        self, conn: socket.socket, command: dict[str, object], fds: list[int]
    ) -> ChildTask | None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        pid = os.fork()
        if pid == 0:
            ours.close()
            self._close_in_child(conn)
            return ChildTask(command, fds, theirs)
        theirs.close()
        _close_all(fds)
        with contextlib.suppress(OSError):
            os.setpgid(pid, pid)  # the child does the same; whichever runs first wins
        self._track(pid, conn, ours)
        return None

    def _ensure_spare(self) -> ChildTask | None:
        """Fork a spare while idle; in the spare, return its command once handed one."""
        if (
            self.spare is not None
            or self.jobs
            or self.retiring
            or self.spare_failures >= MAX_SPARE_FAILURES
        ):
            return None
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        pid = os.fork()
        if pid == 0:
            ours.close()
            self._close_in_child(None)
            got = spare.become_spare(theirs, _read_task)
            if got is None:
                os._exit(0)  # the server stopped; nothing of ours to clean up
            command, fds = got
            return ChildTask(command, fds, theirs)
        theirs.close()
        with contextlib.suppress(OSError):
            os.setpgid(pid, pid)
        self.spare = Spare(pid, ours)
        return None

    def _track(self, pid: int, conn: socket.socket, report: socket.socket) -> None:
        """Follow the command running in *pid* for the client on *conn*."""
        self.served += 1
        job = Job(pid, conn, report)
        report.setblocking(False)
        self.selector.register(report, selectors.EVENT_READ, ("report", job))
        self.jobs[pid] = job
        try:
            wire.send(conn, ("started", pid))
            conn.setblocking(False)
            self.selector.register(conn, selectors.EVENT_READ, job)
        except OSError:
            self._client_gone(job)

    def _close_in_child(self, conn: socket.socket | None) -> None:
        signal.set_wakeup_fd(-1)
        self.selector.close()
        if self.listener is not None:
            self.listener.close()
        for job in self.jobs.values():
            if job.conn is not None:
                job.conn.close()
            if job.report is not None:
                job.report.close()
        if self.spare is not None:
            self.spare.control.close()
        if conn is not None:
            conn.close()
        os.close(self.wake_r)
        os.close(self.wake_w)
        if self.lock_fd is not None:
            os.close(self.lock_fd)  # else a long command would keep a new server out

    # -- running jobs ----------------------------------------------------------------------
    def _from_client(self, job: Job) -> None:
        assert job.conn is not None
        data = _receive(job.conn)
        if data is None:
            return
        if not data:
            self._client_gone(job)
            return
        for message in wire.FrameReader().feed(data):
            if isinstance(message, tuple) and message[:1] == ("signal",):
                number = message[1] if len(message) > 1 else None
                if number in FORWARDABLE:
                    _signal_group(job.pid, int(number))  # type: ignore[arg-type]

    def _from_child(self, job: Job) -> None:
        """The child's exit status, sent just before it exits: the client need not wait
        for the process teardown (tens of MB of private pages) and the reaping."""
        assert job.report is not None
        data = _receive(job.report)
        if data is None:
            return
        messages = wire.FrameReader().feed(data) if data else []
        self._drop(job.report)
        job.report = None
        for message in messages:
            if isinstance(message, tuple) and message[:1] == ("done",) and len(message) == 2:
                self._finish(job, int(message[1]))

    def _finish(self, job: Job, code: int) -> None:
        """Tell the client its command's exit status, and let it go."""
        if job.conn is not None:
            with contextlib.suppress(OSError):
                job.conn.setblocking(True)
                job.conn.settimeout(REQUEST_TIMEOUT)
                wire.send(job.conn, ("exit", code))
        self._detach(job)

    def _client_gone(self, job: Job) -> None:
        """The client died without waiting: stop its command as a hang-up would."""
        self._detach(job)
        _signal_group(job.pid, signal.SIGTERM)
        job.kill_at = time.monotonic() + KILL_GRACE_SECONDS

    def _detach(self, job: Job) -> None:
        if job.conn is not None:
            self._drop(job.conn)
            job.conn = None

    def _drop(self, sock: socket.socket) -> None:
        """Stop watching *sock* (if it was watched) and close it."""
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(sock)
        sock.close()

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
                continue
            job = self.jobs.pop(pid, None)
            if job is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            if code < 0:
                code = 128 - code  # killed by a signal, as a shell reports it
            self._finish(job, code)  # unless the child reported already
            if job.report is not None:
                self._drop(job.report)
                job.report = None
            self.last_activity = time.monotonic()

    def _spare_died(self, status: int) -> None:
        assert self.spare is not None
        self.spare.control.close()
        self.spare = None
        self.spare_failures += 1
        _log(f"a spare child died unused (status {status}); forking commands directly")

    def _enforce_kills(self) -> None:
        now = time.monotonic()
        for job in self.jobs.values():
            if job.kill_at is not None and now >= job.kill_at:
                _signal_group(job.pid, signal.SIGKILL)
                job.kill_at = None

    def _drain_wakeups(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self.wake_r, 4096):
                pass

    def _on_stop_signal(self, number: int, frame: object) -> None:
        self.signalled = True


def _read_request(conn: socket.socket) -> tuple[object, list[int]]:
    """The first frame and the descriptors that came with it (unix(7) SCM_RIGHTS)."""
    data, ancdata, flags, _ = conn.recvmsg(65536, socket.CMSG_SPACE(3 * wire.FD_SIZE))
    fds: list[int] = []
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            received = array.array("i")
            received.frombytes(payload[: len(payload) - len(payload) % received.itemsize])
            fds.extend(received)
    if flags & socket.MSG_CTRUNC:
        _close_all(fds)
        raise wire.ProtocolError("too many descriptors in the request")
    reader = wire.FrameReader()
    messages = reader.feed(data)
    while not messages:
        chunk = conn.recv(65536)
        if not chunk:
            _close_all(fds)
            raise wire.ProtocolError("the request ended early")
        messages = reader.feed(chunk)
    return messages[0], fds


def _receive(sock: socket.socket) -> bytes | None:
    """What a non-blocking socket has: None if nothing yet, b"" at its end (or an error)."""
    try:
        return sock.recv(4096)
    except (BlockingIOError, InterruptedError):
        return None
    except OSError:
        return b""


def _read_task(control: socket.socket) -> tuple[dict[str, object], list[int]]:
    """What the server hands a spare child: a run request and the client's stdio."""
    message, fds = _read_request(control)
    if isinstance(message, tuple) and len(message) == 2 and isinstance(message[1], dict):
        return message[1], fds
    _close_all(fds)
    raise ValueError("not a run request")


def _same_user(conn: socket.socket) -> bool:
    peercred = getattr(socket, "SO_PEERCRED", None)
    if peercred is None:  # no SO_PEERCRED (macOS): the 0700 directory guards the socket
        return True
    creds = conn.getsockopt(socket.SOL_SOCKET, peercred, array.array("i").itemsize * 3)
    _, uid, _ = array.array("i", creds).tolist()
    return bool(uid == os.getuid())


def _signal_group(pid: int, number: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, number)


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
    default_context()
    _warm_http()


def _warm_http() -> None:
    """One loopback exchange through the registry transport, so that every child starts
    with httpx's and our code paths warm (a fresh child's first request costs ~8 ms)."""
    from mpkit.registry.transport import ClientOptions, Transport

    reply = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
        b"Docker-Distribution-Api-Version: registry/2.0\r\n\r\n{}"
    )
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(REQUEST_TIMEOUT)
        host = f"127.0.0.1:{listener.getsockname()[1]}"

        def answer() -> None:
            with contextlib.suppress(OSError):
                conn, _ = listener.accept()
                with conn:
                    conn.recv(65536)
                    conn.sendall(reply)

        responder = threading.Thread(target=answer, name="mpkit-warm-up")
        responder.start()
        try:
            with Transport(host, options=ClientOptions(), credentials=None) as transport:
                transport.ping()
        except Exception as exc:  # only a warm-up: the children work regardless
            _log(f"warm-up request failed: {exc}")
        finally:
            responder.join()  # no thread may be left when the server forks


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m mpkit.daemon.server")
    parser.add_argument("--fingerprint", required=True)
    parser.add_argument("--package", required=True, help="the mpkit package directory to serve")
    parser.add_argument("--idle", type=float, default=paths.DEFAULT_IDLE_SECONDS)
    parser.add_argument("--foreground", action="store_true", help="do not detach")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.foreground and os.fork() > 0:
        os._exit(0)  # the starter waits only for this; the server lives on, detached
    os.chdir("/")
    where = paths.server_paths()
    server = Server(where, args.fingerprint, args.idle)
    if not server.acquire():
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
    from mpkit.daemon.child import exit_now, run_command

    return exit_now(run_command(task.command, task.fds), task.report)


if __name__ == "__main__":
    sys.exit(main())
