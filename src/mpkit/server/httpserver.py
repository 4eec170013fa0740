"""The listening socket: a thread per connection (bounded, see connections.py), TLS, IPv4/6."""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
from http.server import HTTPServer
from typing import Any, TextIO

from mpkit.server.api import RegistryApi
from mpkit.server.config import ServerConfig, format_addr
from mpkit.server.connections import Connection, ConnectionTable
from mpkit.server.handler import RegistryHandler

log = logging.getLogger("mpkit.server")
_BUSY_BODY = b'{"errors":[{"code":"TOOMANYREQUESTS","message":"too many connections; retry"}]}'
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Retry-After: 1\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
    % (len(_BUSY_BODY), _BUSY_BODY)
)


class RegistryHTTPServer(HTTPServer):
    request_queue_size = 128

    def __init__(
        self, config: ServerConfig, api: RegistryApi, ssl_context: ssl.SSLContext | None
    ) -> None:
        self.config = config
        self.api = api
        self.ssl_context = ssl_context
        self.connections = ConnectionTable(config)
        self.access_log: TextIO | None = None  # one line per request when set
        self.log_lock = threading.Lock()
        self.address_family = _family(config.host)
        # RegistryHandler also takes its tracked connection: _serve_connection makes every
        # handler, never socketserver's finish_request.
        super().__init__((config.host, config.port), RegistryHandler)  # type: ignore[arg-type]

    def server_bind(self) -> None:
        if self.address_family == socket.AF_INET6:
            # "[::]" serves IPv6 only; bind 0.0.0.0 as well for IPv4 clients if wanted.
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        super().server_bind()

    @property
    def tls(self) -> bool:
        return self.ssl_context is not None

    @property
    def address(self) -> str:
        host, port = self.server_address[:2]
        return format_addr(str(host), int(port))

    def get_request(self) -> tuple[Any, Any]:
        sock, addr = super().get_request()
        if self.ssl_context is not None:
            # The handshake happens in the worker thread (RegistryHandler.setup).
            sock = self.ssl_context.wrap_socket(
                sock, server_side=True, do_handshake_on_connect=False
            )
        return sock, addr

    def process_request(self, request: Any, client_address: Any) -> None:
        connection = self.connections.admit(request)
        if connection is None:  # every connection is serving a request
            with contextlib.suppress(OSError):
                request.sendall(_BUSY)
            self.shutdown_request(request)
            return
        # Daemon threads: a connection still open never blocks shutdown.
        threading.Thread(
            target=self._serve_connection,
            args=(request, client_address, connection),
            name=f"registry connection {client_address[0]}",
            daemon=True,
        ).start()

    def _serve_connection(self, request: Any, client_address: Any, connection: Connection) -> None:
        try:
            RegistryHandler(request, client_address, self, connection)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.connections.release(connection)  # before the socket closes
            self.shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Handshake failures, resets and timeouts are the client's business: one line.
        log.debug("connection from %s failed", client_address, exc_info=True)


def _family(host: str) -> socket.AddressFamily:
    if ":" in host:
        return socket.AF_INET6
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return socket.AF_INET
    families = [info[0] for info in infos]
    return socket.AF_INET if socket.AF_INET in families or not families else families[0]


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context
