"""A running registry: bind, serve in a thread, expire uploads, record its state."""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import json
import os
import ssl
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

from mpkit import __version__
from mpkit.errors import ConfigError, MpkitError
from mpkit.server.api import RegistryApi
from mpkit.server.auth import Authorizer, Htpasswd, TokenSigner
from mpkit.server.config import STATE_FILE, ServerConfig
from mpkit.server.httpserver import RegistryHTTPServer, tls_context
from mpkit.server.rootlock import RootLock
from mpkit.server.storage import Storage
from mpkit.server.uploads import Uploads


@dataclass(frozen=True)
class ServerState:
    """What ``<root>/server.json`` records about the server using that root."""

    pid: int
    addr: str
    url: str
    root: str
    started: str
    tls: bool
    auth: bool
    version: str = __version__

    @classmethod
    def read(cls, path: Path) -> ServerState | None:
        try:
            data = json.loads(path.read_bytes())
            return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
        except (OSError, ValueError, TypeError):
            return None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Server:
    """The built-in registry serving ``config.root``.

    ``start()`` returns once the socket listens; requests are served on threads. With
    ``record_state`` the server writes ``server.json`` (pid, address) for ``status`` and
    ``stop``; leave it off for servers embedded in another program (a test, say), so
    ``mpkit registry stop`` can never signal that program.
    """

    def __init__(
        self,
        config: ServerConfig,
        *,
        record_state: bool = False,
        access_log: TextIO | None = None,
        janitor_interval: float | None = None,
    ) -> None:
        self.config = config
        self.record_state = record_state
        self.access_log = access_log
        self.janitor_interval = janitor_interval or min(max(config.upload_ttl / 4, 0.2), 600.0)
        self.httpd: RegistryHTTPServer | None = None
        self.uploads: Uploads | None = None
        self._lock = RootLock(config.root)
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self.state: ServerState | None = None

    # -- start and stop --------------------------------------------------------------
    def start(self) -> Server:
        config = self.config
        config.validate()
        config.root.mkdir(parents=True, exist_ok=True)
        if not self._lock.acquire():
            state = ServerState.read(config.root / STATE_FILE)
            where = f" at {state.addr} (pid {state.pid})" if state else ""
            raise MpkitError(
                f"another mpkit registry is already serving {config.root}{where}",
                hint="stop it with 'mpkit registry stop --root DIR', or pick another --root",
            )
        try:
            self._start_locked()
        except BaseException:
            self._lock.release()
            raise
        return self

    def _start_locked(self) -> None:
        config = self.config
        htpasswd = Htpasswd.load(config.htpasswd) if config.htpasswd else None
        context = _tls(config)
        storage = Storage(config.root)
        storage.clear_temp()  # we hold the root: anything in _tmp is from a dead server
        self.uploads = Uploads(
            storage,
            ttl=config.upload_ttl,
            max_sessions=config.max_uploads,
            max_blob_bytes=config.max_blob_bytes,
        )
        self.uploads.expire()
        # Tokens only matter with logins; then their key is kept so they outlive a restart.
        signer = TokenSigner.from_root(config.root) if htpasswd else TokenSigner.ephemeral()
        api = RegistryApi(config, storage, self.uploads, Authorizer(htpasswd, signer))
        try:
            self.httpd = RegistryHTTPServer(config, api, context)
        except OSError as exc:
            busy = exc.errno == errno.EADDRINUSE
            raise MpkitError(
                f"cannot listen on {config.addr}: "
                + ("the address is already in use" if busy else str(exc)),
                hint="pick another --addr, or stop what is listening there"
                if busy
                else "check the address belongs to this machine",
            ) from exc
        self.httpd.access_log = self.access_log
        self.state = ServerState(
            pid=os.getpid(),
            addr=self.address,
            url=self.url,
            root=str(config.root),
            started=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            tls=config.tls,
            auth=config.htpasswd is not None,
        )
        if self.record_state:  # before the first answer: whoever sees one finds the record
            storage.write_atomic(
                config.root / STATE_FILE, json.dumps(self.state.to_dict(), indent=2).encode()
            )
        serve = threading.Thread(
            target=self.httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"registry {self.address}",
            daemon=True,
        )
        janitor = threading.Thread(
            target=self._expire_uploads, name="registry janitor", daemon=True
        )
        self._threads = [serve, janitor]
        for thread in self._threads:
            thread.start()

    def shutdown(self) -> None:
        """Stop accepting, stop the janitor, remove our state file and free the root."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        if self.record_state and self.state is not None:
            path = self.config.root / STATE_FILE
            recorded = ServerState.read(path)
            if recorded is not None and recorded.pid == self.state.pid:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        self._lock.release()

    def wait(self, stop: threading.Event) -> None:
        """Serve until *stop* is set (signal handlers set it) or the server dies."""
        while not stop.wait(0.5):
            if not all(t.is_alive() for t in self._threads):
                break

    def _expire_uploads(self) -> None:
        while not self._stopping.wait(self.janitor_interval):
            if self.uploads is not None:
                with contextlib.suppress(OSError):
                    self.uploads.expire()

    # -- where -----------------------------------------------------------------------
    @property
    def address(self) -> str:
        if self.httpd is None:
            raise RuntimeError("the server is not started")
        return self.httpd.address

    @property
    def port(self) -> int:
        return int(self.address.rpartition(":")[2])

    @property
    def url(self) -> str:
        return f"{'https' if self.config.tls else 'http'}://{self.address}"

    def __enter__(self) -> Server:
        return self if self.httpd is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def _tls(config: ServerConfig) -> ssl.SSLContext | None:
    if config.tls_cert is None or config.tls_key is None:
        return None
    try:
        return tls_context(str(config.tls_cert), str(config.tls_key))
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(
            f"cannot load the TLS certificate {config.tls_cert} and key {config.tls_key}: {exc}",
            path=str(config.tls_cert),
            hint="give a PEM certificate (chain) and its unencrypted PEM private key",
        ) from exc


def wait_until(predicate: Any, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
