"""Open connections: what each one is doing, how long the client may take, who makes room.

A connection is always in one phase:

- ``HEAD``: TLS handshake, request line and header fields. One deadline covers all of it,
  counted from the moment the phase starts (as Go's ``http.Server.ReadHeaderTimeout``),
  so a client that trickles a header line now and then cannot keep the connection.
- ``IDLE``: a keep-alive connection between requests, closed after the idle timeout. The
  first byte of the next request starts its ``HEAD``.
- ``BUSY``: a request is being served. Its body must arrive at ``min_body_rate`` on
  balance: every byte earns ``1 / min_body_rate`` seconds of waiting, at most
  ``body_timeout`` are ever in hand, and only time spent waiting for the client is spent.
  A slow upload that keeps moving therefore goes on for as long as it takes; one that
  stalls ends ``body_timeout`` seconds later, and one that trickles ends soon after.

At the connection limit a new connection takes the place of the connection that has been
idle or reading its head the longest (under a slowloris attack: the attacker's oldest);
only when every connection is serving a request is the new one turned away.
"""

from __future__ import annotations

import contextlib
import enum
import io
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from mpkit.server.config import ServerConfig

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

Clock = Callable[[], float]


class Phase(enum.Enum):
    HEAD = "head"
    IDLE = "idle"
    BUSY = "busy"


class BodyTimeout(TimeoutError):
    """A request body stalled, or arrived slower than the minimum rate for too long."""


class Connection:
    """One client connection: its phase and the time its client has left to send."""

    def __init__(
        self,
        sock: socket.socket,
        config: ServerConfig,
        lock: threading.Lock,
        clock: Clock = time.monotonic,
    ) -> None:
        self.sock = sock
        self.config = config
        self.clock = clock
        self._lock = lock  # the table's: phase changes and evictions never interleave
        self.phase = Phase.HEAD
        self.since = clock()  # when the phase began
        self.evicted = False
        self._head_bytes = 0
        self._body_budget = config.body_timeout

    def enter(self, phase: Phase) -> bool:
        """Start *phase* now; False if the connection was evicted (then serve nothing)."""
        with self._lock:
            if self.evicted:
                return False
            self.phase = phase
            self.since = self.clock()
        self._head_bytes = 0
        self._body_budget = self.config.body_timeout
        return True

    def time_left(self) -> float:
        """How long the next read may wait for the client, in seconds."""
        if self.phase is Phase.BUSY:
            return self._body_budget
        limit = self.config.header_timeout if self.phase is Phase.HEAD else self.config.idle_timeout
        return self.since + limit - self.clock()

    def received(self, count: int, waited: float) -> None:
        """Account for a read that brought *count* bytes after *waited* seconds."""
        if self.phase is Phase.BUSY:
            rate = self.config.min_body_rate
            earned = (count / rate if rate > 0 else float("inf")) if count else 0.0
            self._body_budget = min(self._body_budget - waited + earned, self.config.body_timeout)
            return
        if count and self.phase is Phase.IDLE:
            self.enter(Phase.HEAD)
        self._head_bytes += count

    @property
    def inside_head(self) -> bool:
        """Bytes of a request head have arrived, and the request has not been served yet."""
        return self.phase is Phase.HEAD and self._head_bytes > 0

    def timeout(self) -> TimeoutError:
        """The error for a client that ran out of time in the current phase."""
        config = self.config
        if self.phase is Phase.BUSY:
            return BodyTimeout(
                f"the request body stalled or arrived slower than {config.min_body_rate:g} "
                f"bytes/s for {config.body_timeout:g} s"
            )
        if self.phase is Phase.HEAD:
            return TimeoutError(f"no complete request head within {config.header_timeout:g} s")
        return TimeoutError(f"no new request within {config.idle_timeout:g} s")


class DeadlineReader(io.RawIOBase):
    """Reads from a connection's socket within the time its phase leaves the client.

    Between reads the socket keeps *send_timeout*, which bounds each write of a response.
    """

    def __init__(self, connection: Connection, send_timeout: float) -> None:
        super().__init__()
        self.connection = connection
        self.sock = connection.sock
        self.send_timeout = send_timeout

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        connection = self.connection
        started = connection.clock()
        try:
            with self.deadline():
                count = self.sock.recv_into(buffer)
        except TimeoutError:
            connection.received(0, connection.clock() - started)
            raise connection.timeout() from None
        if not count and connection.inside_head:
            # RFC 9112: a message whose header section is cut off is incomplete; never
            # act on part of a request (an evicted connection ends here, too).
            raise ConnectionAbortedError("the connection closed inside a request head")
        connection.received(count, connection.clock() - started)
        return count

    @contextlib.contextmanager
    def deadline(self) -> Iterator[None]:
        """Socket operations inside wait at most until the phase's time is up."""
        left = self.connection.time_left()
        if left <= 0:
            raise self.connection.timeout()
        self.sock.settimeout(left)
        try:
            yield
        finally:
            self.sock.settimeout(self.send_timeout)


class ConnectionTable:
    """The open connections, at most ``config.max_connections`` of them."""

    def __init__(self, config: ServerConfig, clock: Clock = time.monotonic) -> None:
        self.config = config
        self.clock = clock
        self._lock = threading.Lock()
        self._open: dict[socket.socket, Connection] = {}

    def __len__(self) -> int:
        with self._lock:
            return len(self._open)

    def admit(self, sock: socket.socket) -> Connection | None:
        """Track *sock*, evicting a waiting connection at the limit; None if all are busy."""
        with self._lock:
            if len(self._open) >= self.config.max_connections:
                waiting = [c for c in self._open.values() if c.phase is not Phase.BUSY]
                if not waiting:
                    return None
                self._evict(min(waiting, key=lambda c: c.since))
            connection = Connection(sock, self.config, self._lock, self.clock)
            self._open[sock] = connection
            return connection

    def release(self, connection: Connection) -> None:
        """Forget *connection*; call before closing its socket."""
        with self._lock:
            if self._open.get(connection.sock) is connection:
                del self._open[connection.sock]

    def _evict(self, connection: Connection) -> None:
        # Runs under the lock, and its owner releases (under the lock) before closing the
        # socket: the descriptor shut down here is still this connection's.
        del self._open[connection.sock]
        connection.evicted = True
        with contextlib.suppress(OSError):
            # The plain socket call, also for TLS sockets: it wakes the owner's blocked
            # read (which sees end of file) without touching the TLS state it is using.
            socket.socket.shutdown(connection.sock, socket.SHUT_RDWR)
