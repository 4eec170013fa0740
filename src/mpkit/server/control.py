"""Running the registry: in the foreground until a signal, or detached in the background;
finding a running one, and stopping it.

A detached server is ``python -m mpkit registry serve …`` in its own session, logging
to ``<root>/registry.log`` and recording itself in ``<root>/server.json``. ``stop``
signals only the pid recorded there, and only while that root's lock is held (a dead
server's stale record is removed instead), so a recycled pid is never killed.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import ssl
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from mpkit.background import start_background, stop_process
from mpkit.errors import MpkitError
from mpkit.server.config import (
    LOG_FILE,
    STATE_FILE,
    ServerConfig,
    format_addr,
    is_loopback,
    parse_addr,
)
from mpkit.server.rootlock import lock_held
from mpkit.server.server import Server, ServerState

START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0


@dataclass(frozen=True)
class ServerHandle:
    """A registry that answers at ``addr``; ``pid``/``root`` are known when mpkit runs it."""

    addr: str
    url: str
    pid: int | None = None
    root: Path | None = None
    started: str | None = None
    tls: bool = False
    auth: bool = False
    log: Path | None = None
    started_now: bool = False  # True when this call started it

    @classmethod
    def from_state(cls, state: ServerState, *, started_now: bool = False) -> ServerHandle:
        root = Path(state.root)
        return cls(
            addr=state.addr,
            url=state.url,
            pid=state.pid,
            root=root,
            started=state.started,
            tls=state.tls,
            auth=state.auth,
            log=root / LOG_FILE,
            started_now=started_now,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "addr": self.addr,
            "url": self.url,
            "pid": self.pid,
            "root": str(self.root) if self.root else None,
            "started": self.started,
            "tls": self.tls,
            "auth": self.auth,
            "log": str(self.log) if self.log else None,
            "started_now": self.started_now,
        }


def serve_in_foreground(
    config: ServerConfig, *, access_log: TextIO, started: Callable[[Server], None]
) -> bool:
    """Serve *config* in this process, recorded for ``status`` and ``stop``, until SIGINT or
    SIGTERM (then True) or until the server dies (False). *started* hears the server once
    it listens."""
    stopping = threading.Event()
    # Handlers first: the state file that start() writes tells 'mpkit registry stop' it may
    # signal us, and a SIGTERM must then mean a clean stop, never the default death.
    previous = {
        sig: signal.signal(sig, lambda *_: stopping.set())
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    server = Server(config, record_state=True, access_log=access_log)
    try:
        server.start()
        started(server)
        server.wait(stopping)
    finally:
        server.shutdown()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return stopping.is_set()


def status(root: Path) -> ServerHandle | None:
    """The server using *root*, or None (a stale ``server.json`` is removed)."""
    state_path = root / STATE_FILE
    state = ServerState.read(state_path)
    if not lock_held(root):
        if state is not None:
            with contextlib.suppress(FileNotFoundError):
                state_path.unlink()
        return None
    return ServerHandle.from_state(state) if state is not None else None


def stop(root_or_state_file: Path, *, timeout: float = STOP_TIMEOUT) -> ServerHandle | None:
    """Stop the server recorded for a root (or in a ``server.json``); what was stopped.

    SIGTERM first; SIGKILL if it has not let go of the root after *timeout* seconds.
    Returns None when nothing was running.
    """
    path = Path(root_or_state_file)
    root = path.parent if path.name == STATE_FILE else path
    handle = status(root)
    if handle is None or handle.pid is None:
        return None
    if handle.pid == os.getpid():
        raise MpkitError(
            f"the registry for {root} runs inside this process; stop it from there",
            hint="call Server.shutdown() on the embedded server",
        )
    stop_process(
        handle.pid, stopped=lambda: not lock_held(root), timeout=timeout, what="the registry"
    )
    with contextlib.suppress(FileNotFoundError):
        recorded = ServerState.read(root / STATE_FILE)
        if recorded is not None and recorded.pid == handle.pid:
            (root / STATE_FILE).unlink()
    return handle


def serve_argv(config: ServerConfig) -> list[str]:
    """The command line of a foreground server for *config* (files by path, no secrets)."""
    argv = [
        sys.executable,
        "-m",
        "mpkit",
        "registry",
        "serve",
        "--addr",
        config.addr,
        "--root",
        str(config.root),
        "--upload-ttl",
        repr(config.upload_ttl),
        *("--max-connections", str(config.max_connections)),
        *("--header-timeout", repr(config.header_timeout)),
        *("--idle-timeout", repr(config.idle_timeout)),
        *("--body-timeout", repr(config.body_timeout)),
        *("--min-body-rate", repr(config.min_body_rate)),
    ]
    if config.htpasswd is not None:
        argv += ["--htpasswd", str(config.htpasswd)]
    if config.tls_cert is not None and config.tls_key is not None:
        argv += ["--tls-cert", str(config.tls_cert), "--tls-key", str(config.tls_key)]
    if config.insecure_open:
        argv.append("--insecure-open")
    return argv


def start_detached(config: ServerConfig, *, timeout: float = START_TIMEOUT) -> ServerHandle:
    """Start a background server for *config* and wait until it answers."""
    config.validate()
    config.root.mkdir(parents=True, exist_ok=True)
    running = status(config.root)
    if running is not None:
        raise MpkitError(
            f"a registry already serves {config.root} at {running.addr} (pid {running.pid})",
            hint="use it, or stop it first with 'mpkit registry stop'",
        )
    log_path = config.root / LOG_FILE

    def ready() -> ServerHandle | None:
        state = ServerState.read(config.root / STATE_FILE)
        if state is not None and lock_held(config.root) and answers(state.addr, tls=state.tls):
            return ServerHandle.from_state(state, started_now=True)
        return None

    return start_background(
        serve_argv(config), what="the registry", log=log_path, ready=ready, timeout=timeout
    )


def ensure_running(addr: str, root: Path, **options: Any) -> ServerHandle:
    """A registry answering at *addr*: the one already there, else a new detached server.

    *options* are further :class:`ServerConfig` fields (``htpasswd``, ``tls_cert``, …)
    used only when a server has to be started.
    """
    host, port = parse_addr(addr)
    wanted = format_addr(host, port)
    running = status(root)
    if running is not None and (port == 0 or _same_addr(running.addr, host, port)):
        return running
    tls = bool(options.get("tls_cert"))
    if port != 0 and answers(wanted, tls=tls):
        return ServerHandle(addr=wanted, url=f"{'https' if tls else 'http'}://{wanted}")
    if running is not None:
        raise MpkitError(
            f"the registry for {root} already runs at {running.addr}, not {wanted}",
            hint=f"push to {running.addr}, or stop it with 'mpkit registry stop --root {root}'",
        )
    return start_detached(ServerConfig(root=root, host=host, port=port, **options))


def _same_addr(addr: str, host: str, port: int) -> bool:
    """*addr* is host:port, allowing ``localhost`` for the loopback address it bound."""
    bound_host, bound_port = parse_addr(addr)
    if bound_port != port:
        return False
    return bound_host == host or (is_loopback(bound_host) and is_loopback(host))


def answers(addr: str, *, tls: bool = False, timeout: float = 1.0) -> bool:
    """True when something at *addr* answers ``GET /v2/`` over HTTP(S) (any status)."""
    host, port = parse_addr(addr)
    conn: http.client.HTTPConnection
    if tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # a liveness probe of our own server only
        conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", "/v2/")
        conn.getresponse().read()
        return True
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()
