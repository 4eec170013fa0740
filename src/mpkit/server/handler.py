"""HTTP plumbing: one request in, one response out, one access-log line.

Responses are written in a single send where possible (headers and small bodies
together) and blobs go out with ``sendfile``. A request body that was not read to the
end (an early 401, a 413, a broken upload) closes the connection, so the next request
on it can never be parsed out of a half-read body.
"""

from __future__ import annotations

import errno
import io
import ipaddress
import logging
import os
import re
import socket
import ssl
import struct
import time
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, BinaryIO
from urllib.parse import parse_qs

from mpkit import __version__
from mpkit.server import apierrors as codes
from mpkit.server.api import Request, Response
from mpkit.server.apierrors import ApiError
from mpkit.server.auth import ANONYMOUS, Identity
from mpkit.server.bodies import Body, IncompleteBody, open_body
from mpkit.server.connections import BodyTimeout, Connection, DeadlineReader, Phase
from mpkit.server.names import match_route

if TYPE_CHECKING:
    from mpkit.server.httpserver import RegistryHTTPServer

log = logging.getLogger("mpkit.server")

SEND_CHUNK = 1024 * 1024
LINGER_SECONDS = 2.0
_HOST_HEADER = re.compile(
    r"[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]{2,45}\](:[0-9]{1,5})?"
)
_DISCONNECTS = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError)


class RegistryHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = f"mpkit-registry/{__version__}"
    sys_version = ""
    disable_nagle_algorithm = True  # small responses must not wait for delayed ACKs
    server: RegistryHTTPServer

    def __init__(
        self,
        request: socket.socket,
        client_address: tuple[str, int],
        server: RegistryHTTPServer,
        connection: Connection,
    ) -> None:
        self.tracked = connection
        self._requests = 0
        super().__init__(request, client_address, server)

    # -- connection ------------------------------------------------------------------
    def setup(self) -> None:
        self.timeout = self.server.config.send_timeout  # type: ignore[misc]
        super().setup()
        self.rfile.close()  # the plain socket reader: reads go through the deadlines instead
        self.reader = DeadlineReader(self.tracked, self.server.config.send_timeout)
        self.rfile = io.BufferedReader(self.reader)
        if isinstance(self.request, ssl.SSLSocket):
            with self.reader.deadline():  # the handshake is part of the request head's time
                self.request.do_handshake()  # in this worker thread, never in the accept loop

    def handle(self) -> None:
        if not self.server.tls and self._tls_hello():
            # A client probing https on this plain-HTTP port (docker, mpkit and others try
            # https first): end it now instead of waiting for a request line that never
            # comes, so the client falls back to http at once.
            self._status, self._sent = 400, 0
            self._write_access(ANONYMOUS, time.monotonic(), "(TLS handshake on a plain-HTTP port)")
            self.close_connection = True
            return
        super().handle()

    def _tls_hello(self) -> bool:
        try:
            with self.reader.deadline():
                first: bytes = self.connection.recv(1, socket.MSG_PEEK)
        except OSError:
            return False
        return first == b"\x16"  # TLS record type "handshake"

    def handle_one_request(self) -> None:
        if self._requests and not self.tracked.enter(Phase.IDLE):
            self.close_connection = True  # evicted to make room for a new connection
            return
        self._requests += 1
        super().handle_one_request()

    def do_GET(self) -> None:
        self._handle()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def do_OPTIONS(self) -> None:
        self._handle(unsupported=True)

    do_TRACE = do_CONNECT = do_OPTIONS

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            if self.close_connection and self._unread_body():
                self._linger()

    def _unread_body(self) -> bool:
        body = getattr(self, "_body", None)
        if body is not None:
            return not body.finished
        return hasattr(self, "headers") and self.headers is not None and self._has_body()

    def _linger(self) -> None:
        """Close gracefully while the client is still sending a body we did not want.

        Closing with unread data makes the kernel send a reset, which can destroy the
        response (say, a 401) before the client reads it; so stop writing, then read
        and drop what arrives for a short while.
        """
        try:
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(LINGER_SECONDS)
            deadline = time.monotonic() + LINGER_SECONDS
            while time.monotonic() < deadline and self.connection.recv(SEND_CHUNK):
                pass
        except (OSError, ValueError):
            pass

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s %s", self.client_address[0], format % args)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # Only http.server's own answers (malformed requests) come through here; ours are
        # logged by _handle. Either way: one access line per request.
        self._status = int(code) if str(code).isdigit() else 0
        self._sent = 0
        self._write_access(ANONYMOUS, time.monotonic(), f"{self.requestline[:300]}")

    # -- one request -----------------------------------------------------------------
    def _handle(self, unsupported: bool = False) -> None:
        if not self.tracked.enter(Phase.BUSY):
            self.close_connection = True  # evicted while its head was read: serve nothing
            return
        started = time.monotonic()
        self._status = 0
        self._sent = 0
        self._body: Body | None = None
        identity: Identity = ANONYMOUS
        path, _, query = self.path.partition("?")
        try:
            if unsupported:
                raise ApiError(405, codes.UNSUPPORTED, f"{self.command} is not supported")
            route = match_route(path)
            if route is None:
                raise ApiError(404, codes.UNSUPPORTED, "no such endpoint in the registry API")
            realm = self._realm()
            api = self.server.api
            identity = api.authorizer.identify(self.headers.get("Authorization"), realm)
            request = Request(
                method=self.command,
                route=route,
                query=parse_qs(query, keep_blank_values=True),
                headers=self.headers,
                identity=identity,
                peer_loopback=self._peer_loopback(),
                realm=realm,
                open_body=self._open_body,
            )
            self._send(api.handle(request))
        except ApiError as error:
            self._send_error(error)
        except BodyTimeout as error:
            log.info("%s %s %s: %s", self.client_address[0], self.command, path, error)
            self.close_connection = True
            self._send_error(ApiError(408, codes.BLOB_UPLOAD_INVALID, str(error)))
        except IncompleteBody as error:
            log.info("%s %s %s: %s", self.client_address[0], self.command, path, error)
            self.close_connection = True
            self._send_error(ApiError(400, codes.BLOB_UPLOAD_INVALID, str(error)))
        except _DISCONNECTS:
            self.close_connection = True
            self._status = self._status or 499  # the client went away
        except OSError as error:
            log.error("%s %s: %s", self.command, path, error)
            status = 507 if error.errno == errno.ENOSPC else 500
            self._send_error(
                ApiError(
                    status, codes.UNKNOWN, "the registry could not store or read data; see its log"
                )
            )
        except Exception:
            log.exception("%s %s failed", self.command, path)
            self._send_error(ApiError(500, codes.UNKNOWN, "internal error; see the registry log"))
        finally:
            if self._unread_body():
                self.close_connection = True
            self._access(identity, started)

    def _open_body(self, limit: int, what: str) -> Body:
        if self._body is not None:
            return self._body
        self._body = open_body(self.rfile, self.headers, limit, what)
        return self._body

    def _has_body(self) -> bool:
        length = (self.headers.get("Content-Length") or "0").strip()
        return bool(self.headers.get("Transfer-Encoding")) or length not in ("", "0")

    def _realm(self) -> str:
        host = (self.headers.get("Host") or "").strip()
        if not _HOST_HEADER.fullmatch(host):
            host = self.server.address
        scheme = "https" if self.server.tls else "http"
        return f"{scheme}://{host}/token"

    def _peer_loopback(self) -> bool:
        try:
            address = ipaddress.ip_address(str(self.client_address[0]).split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            return address.ipv4_mapped.is_loopback
        return address.is_loopback

    # -- responses -------------------------------------------------------------------
    def _send_error(self, error: ApiError) -> None:
        """Answer with *error* unless an answer already started; a vanished client is fine."""
        try:
            self._send_error_now(error)
        except OSError:
            self.close_connection = True

    def _send_error_now(self, error: ApiError) -> None:
        if self._status:
            self.close_connection = True  # headers already went out: nothing to add
            return
        if self._body is None and self._has_body():
            self.close_connection = True  # the body was never read
        headers = {"Content-Type": "application/json", **error.headers}
        self._send(Response(error.status, headers, error.body()))

    def _send(self, response: Response) -> None:
        if self._body is not None and not self._body.finished:
            self.close_connection = True
        length = response.length if response.file is not None else len(response.body)
        head = self._head(response.status, response.headers, length)
        if self.command == "HEAD" or response.file is None:
            self._status = response.status
        if self.command == "HEAD":
            self.wfile.write(head)
            return
        if response.file is None:
            self.wfile.write(head + response.body)
            self._sent = len(response.body)
            return
        with open(response.file, "rb") as blob:  # opened before any byte of the answer goes out
            self._status = response.status
            self.wfile.write(head)
            self._send_file(blob, response.offset, response.length)

    def _head(self, status: int, headers: dict[str, str], length: int) -> bytes:
        reason = self.responses.get(status, ("",))[0]
        lines = [
            f"HTTP/1.1 {status} {reason}",
            f"Server: {self.server_version}",
            f"Date: {self.date_time_string()}",
            "Docker-Distribution-API-Version: registry/2.0",
            f"Content-Length: {length}",
        ]
        lines += [f"{key}: {value}" for key, value in headers.items()]
        if self.close_connection:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _send_file(self, blob: BinaryIO, offset: int, length: int) -> None:
        if isinstance(self.connection, ssl.SSLSocket):
            blob.seek(offset)
            left = length
            while left > 0:
                data = blob.read(min(SEND_CHUNK, left))
                if not data:
                    raise OSError(errno.EIO, "a blob file is shorter than its size")
                self.connection.sendall(data)
                left -= len(data)
                self._sent += len(data)
            return
        sock: socket.socket = self.connection
        if not hasattr(os, "sendfile") or not hasattr(socket, "SO_SNDTIMEO"):
            self._sent += sock.sendfile(blob, offset, length)
        else:
            self._sendfile_blocking(sock, blob, offset, length)
        if self._sent < length:
            raise OSError(errno.EIO, "a blob file is shorter than its size")

    def _sendfile_blocking(self, sock: socket.socket, blob: BinaryIO, offset: int, n: int) -> None:
        """``sendfile`` on a blocking socket: the kernel waits for the client, not Python.

        (socket.sendfile on a socket with a timeout wakes this thread for every piece the
        client drains.) SO_SNDTIMEO still frees the thread from a client that stalls.
        """
        timeout = sock.gettimeout()
        limit = self.server.config.send_timeout
        stall = struct.pack("ll", int(limit), int(limit % 1 * 1_000_000))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, stall)
        sock.settimeout(None)
        try:
            while n > 0:
                try:
                    sent = os.sendfile(sock.fileno(), blob.fileno(), offset, n)
                except BlockingIOError:
                    raise TimeoutError("the client stopped reading") from None
                if sent == 0:
                    return  # end of file: the caller reports the short blob
                offset += sent
                n -= sent
                self._sent += sent
        finally:
            sock.settimeout(timeout)

    def _access(self, identity: Identity, started: float) -> None:
        target = self.path if len(self.path) <= 300 else self.path[:300] + "..."
        self._write_access(identity, started, f"{self.command} {target} {self.request_version}")

    def _write_access(self, identity: Identity, started: float, request: str) -> None:
        stream = self.server.access_log
        if stream is None:
            return
        elapsed = (time.monotonic() - started) * 1000
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        # Control characters, non-ASCII and quotes are escaped: one line per request, always.
        request = request.encode("unicode_escape").decode("ascii").replace('"', '\\"')
        line = (
            f'{stamp} {self.client_address[0]} {identity.user or "-"} "{request}" '
            f"{self._status} {self._sent} {elapsed:.1f}ms\n"
        )
        with self.server.log_lock:
            try:
                stream.write(line)
                stream.flush()
            except (OSError, ValueError):
                pass
