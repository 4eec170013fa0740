"""Request bodies: fixed ``Content-Length`` or ``Transfer-Encoding: chunked``, bounded.

http.server leaves bodies to the handler; these readers make both framings look the
same (``readinto``) and enforce a size limit while reading, so no request can make
the registry store more than it allows.
"""

from __future__ import annotations

import io
import re
from typing import Protocol

from mpkit.server.apierrors import SIZE_INVALID, ApiError

_CHUNK_SIZE_LINE = re.compile(rb"([0-9a-fA-F]{1,16})(?:;[^\r\n]*)?\r?\n")
_MAX_LINE = 4096


class IncompleteBody(Exception):
    """The client sent less than it announced (or broke the chunked framing)."""


class Headers(Protocol):
    """Request headers (http.server's ``email.message.Message``): case-insensitive get."""

    def get(self, name: str, default: None = None) -> str | None: ...


class Body(Protocol):
    declared_length: int | None  # Content-Length, None for chunked

    def readinto(self, buffer: memoryview) -> int:
        """Fill *buffer* as far as possible; 0 only at the end of the body."""
        ...

    @property
    def finished(self) -> bool: ...


def too_large(limit: int, what: str) -> ApiError:
    # distribution-spec: "413 Payload Too Large" for bodies over the registry's limit.
    return ApiError(
        413, SIZE_INVALID, f"{what} is larger than this registry accepts ({limit} bytes)"
    )


class FixedBody:
    def __init__(self, stream: io.BufferedIOBase, length: int) -> None:
        self.stream = stream
        self.declared_length: int | None = length
        self.remaining = length

    @property
    def finished(self) -> bool:
        return self.remaining == 0

    def readinto(self, buffer: memoryview) -> int:
        if self.remaining == 0:
            return 0
        view = buffer[: min(len(buffer), self.remaining)]
        n = self.stream.readinto(view)
        if not n:
            raise IncompleteBody(f"the body ended {self.remaining} bytes early")
        self.remaining -= n
        return n


class ChunkedBody:
    """RFC 9112 section 7.1 chunked coding; trailers are read and ignored."""

    def __init__(self, stream: io.BufferedIOBase, limit: int, what: str) -> None:
        self.stream = stream
        self.declared_length: int | None = None
        self.limit = limit
        self.what = what
        self.total = 0
        self.left_in_chunk = 0
        self.done = False

    @property
    def finished(self) -> bool:
        return self.done

    def _line(self) -> bytes:
        line = self.stream.readline(_MAX_LINE)
        if not line.endswith(b"\n"):
            raise IncompleteBody("a chunk header was cut off or too long")
        return line

    def _next_chunk(self) -> None:
        match = _CHUNK_SIZE_LINE.fullmatch(self._line())
        if match is None:
            raise IncompleteBody("a chunk size line is malformed")
        size = int(match.group(1), 16)
        if size == 0:
            while self._line() not in (b"\r\n", b"\n"):
                pass  # trailer fields
            self.done = True
            return
        if self.total + size > self.limit:
            raise too_large(self.limit, self.what)
        self.total += size
        self.left_in_chunk = size

    def readinto(self, buffer: memoryview) -> int:
        filled = 0
        while filled < len(buffer) and not self.done:
            if self.left_in_chunk == 0:
                self._next_chunk()
                continue
            view = buffer[filled : filled + min(len(buffer) - filled, self.left_in_chunk)]
            n = self.stream.readinto(view)
            if not n:
                raise IncompleteBody("the chunked body ended early")
            filled += n
            self.left_in_chunk -= n
            if self.left_in_chunk == 0 and self._line() not in (b"\r\n", b"\n"):
                raise IncompleteBody("a chunk is longer than its size line says")
        return filled


class EmptyBody:
    declared_length: int | None = 0
    finished = True

    def readinto(self, buffer: memoryview) -> int:
        return 0


def open_body(stream: io.BufferedIOBase, headers: Headers, limit: int, what: str) -> Body:
    """The body of a request with *headers*; ApiError 400/413 before reading if invalid."""
    encoding = (headers.get("Transfer-Encoding") or "").strip().lower()
    length_text = headers.get("Content-Length")
    if encoding:
        if encoding != "chunked":
            raise ApiError(400, SIZE_INVALID, f"Transfer-Encoding {encoding!r} is not supported")
        return ChunkedBody(stream, limit, what)
    if length_text is None:
        return EmptyBody()
    length_text = length_text.strip()
    if not length_text.isdigit() or len(length_text) > 18:
        raise ApiError(400, SIZE_INVALID, f"Content-Length {length_text[:30]!r} is not a number")
    length = int(length_text)
    if length > limit:
        raise too_large(limit, what)
    return FixedBody(stream, length) if length else EmptyBody()


def read_all(body: Body, limit: int, what: str) -> bytes:
    """The whole body as bytes (for manifests and other small documents)."""
    out = bytearray()
    buffer = bytearray(64 * 1024)
    view = memoryview(buffer)
    while True:
        n = body.readinto(view)
        if not n:
            return bytes(out)
        if len(out) + n > limit:
            raise too_large(limit, what)
        out += view[:n]


def drain(body: Body, limit: int) -> bool:
    """Read and drop up to *limit* bytes; True when the body was consumed completely."""
    buffer = memoryview(bytearray(64 * 1024))
    seen = 0
    try:
        while seen <= limit:
            n = body.readinto(buffer)
            if not n:
                return True
            seen += n
    except (IncompleteBody, ApiError, OSError):
        return False
    return False
