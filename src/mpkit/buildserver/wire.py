"""Messages between the launcher and the server: length-prefixed ``marshal`` frames.

Both ends are the same Python executable (the server's identity includes it), so
``marshal`` is safe to use and costs no import. The first frame of a run request
carries the client's stdin/stdout/stderr as SCM_RIGHTS ancillary data (unix(7)).
Import-light on purpose: the launcher loads this before deciding whether to import mpkit.
"""

from __future__ import annotations

import marshal
import sys

TYPE_CHECKING = False  # typing costs an import; mypy still reads the block below
if TYPE_CHECKING:
    from typing import Any, Protocol

    class StreamSocket(Protocol):
        def sendall(self, data: bytes, /) -> Any: ...
        def sendmsg(self, buffers: Any, ancdata: Any = ..., /) -> int: ...
        def recv(self, size: int, /) -> bytes: ...


HEADER = 4  # big-endian frame length
MAX_FRAME = 16 * 1024 * 1024
FD_SIZE = 4  # sizeof(int) in SCM_RIGHTS data


class ProtocolError(Exception):
    """The peer sent something that is not a frame of this protocol."""


def encode(message: Any) -> bytes:
    payload = marshal.dumps(message)
    return len(payload).to_bytes(HEADER, "big") + payload


def send(sock: StreamSocket, message: Any) -> None:
    sock.sendall(encode(message))


def send_with_fds(
    sock: StreamSocket, message: Any, fds: list[int], sol_socket: int, scm_rights: int
) -> None:
    """Send *message* with *fds* attached to its first byte."""
    data = encode(message)
    rights = b"".join(fd.to_bytes(FD_SIZE, sys.byteorder, signed=True) for fd in fds)
    sent = sock.sendmsg([data], [(sol_socket, scm_rights, rights)])
    if sent < len(data):
        sock.sendall(data[sent:])


class FrameReader:
    """Splits a byte stream into messages."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[object]:
        self._buffer += data
        messages: list[object] = []
        while len(self._buffer) >= HEADER:
            size = int.from_bytes(self._buffer[:HEADER], "big")
            if size > MAX_FRAME:
                raise ProtocolError(f"frame of {size} bytes is larger than {MAX_FRAME}")
            if len(self._buffer) < HEADER + size:
                break
            payload = self._buffer[HEADER : HEADER + size]
            self._buffer = self._buffer[HEADER + size :]
            try:
                # Only this user's processes reach the socket (0700 dir, SO_PEERCRED).
                messages.append(marshal.loads(payload))  # noqa: S302
            except (ValueError, EOFError, TypeError) as exc:
                raise ProtocolError(f"undecodable frame: {exc}") from exc
        return messages


def recv_message(sock: StreamSocket, reader: FrameReader | None = None) -> object | None:
    """The next message, or None at end of stream."""
    reader = reader or FrameReader()
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        messages = reader.feed(chunk)
        if messages:
            if len(messages) > 1:
                raise ProtocolError("expected one reply, got several")
            return messages[0]
