"""Content digests (image-spec descriptor.md#digests) and chunked hashing."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from mpkit.errors import ImageFormatError

if TYPE_CHECKING:
    from hashlib import _Hash

CHUNK_SIZE = 1 << 20  # 1 MiB: every streaming read in mpkit.image uses this size

# descriptor.md: registered algorithms and the length of their lower-case hex encoding.
_HEX_LENGTH = {"sha256": 64, "sha512": 128}
_DIGEST_RE = re.compile(r"^([a-z0-9]+(?:[+._-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$")


def validate_digest(value: str) -> str:
    """Return *value* if it is a ``sha256:``/``sha512:`` digest with the right hex length."""
    if not isinstance(value, str):
        raise ImageFormatError(f"expected a digest string, got {type(value).__name__}")
    match = _DIGEST_RE.match(value)
    if match is None:
        raise ImageFormatError(
            f"{value!r} is not a digest",
            hint="a digest looks like sha256:<64 lower-case hex characters>",
        )
    algorithm, encoded = match.groups()
    length = _HEX_LENGTH.get(algorithm)
    if length is None:
        raise ImageFormatError(
            f"digest {value!r} uses the unsupported algorithm {algorithm!r}",
            hint="only sha256 and sha512 digests are supported",
        )
    if len(encoded) != length or not re.fullmatch(r"[0-9a-f]+", encoded):
        raise ImageFormatError(
            f"digest {value!r} does not have {length} lower-case hex characters after {algorithm}:",
            hint="copy the digest again; it may have been truncated",
        )
    return value


def digest_algorithm(digest: str) -> str:
    return validate_digest(digest).split(":", 1)[0]


def digest_hex(digest: str) -> str:
    """The encoded part of a digest (``sha256:abc…`` -> ``abc…``)."""
    return validate_digest(digest).split(":", 1)[1]


def new_hasher(algorithm: str = "sha256") -> _Hash:
    if algorithm not in _HEX_LENGTH:
        raise ImageFormatError(f"unsupported digest algorithm {algorithm!r}")
    return hashlib.new(algorithm)


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def compute_digest(data: bytes, algorithm: str = "sha256") -> str:
    hasher = new_hasher(algorithm)
    hasher.update(data)
    return f"{algorithm}:{hasher.hexdigest()}"


def iter_chunks(stream: BinaryIO, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
    while chunk := stream.read(chunk_size):
        yield chunk


def hash_stream(stream: BinaryIO, algorithm: str = "sha256") -> tuple[str, int]:
    """Digest and byte count of everything left in *stream*, read in chunks."""
    hasher = new_hasher(algorithm)
    size = 0
    for chunk in iter_chunks(stream):
        hasher.update(chunk)
        size += len(chunk)
    return f"{algorithm}:{hasher.hexdigest()}", size


def hash_file(path: Path, algorithm: str = "sha256") -> tuple[str, int]:
    with open(path, "rb") as stream:
        return hash_stream(stream, algorithm)


class HashingWriter:
    """A write-only sink that hashes and counts bytes, optionally passing them on."""

    def __init__(self, sink: BinaryIO | None = None, algorithm: str = "sha256") -> None:
        self._sink = sink
        self._hasher = new_hasher(algorithm)
        self.algorithm = algorithm
        self.size = 0

    def write(self, data: bytes) -> int:
        self._hasher.update(data)
        self.size += len(data)
        if self._sink is not None:
            self._sink.write(data)
        return len(data)

    @property
    def digest(self) -> str:
        return f"{self.algorithm}:{self._hasher.hexdigest()}"


class HashingReader:
    """Wraps a readable stream; hashes and counts every byte read through it."""

    def __init__(self, source: BinaryIO, algorithm: str = "sha256") -> None:
        self._source = source
        self._hasher = new_hasher(algorithm)
        self.algorithm = algorithm
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        data = self._source.read(size)
        self._hasher.update(data)
        self.size += len(data)
        return data

    @property
    def digest(self) -> str:
        return f"{self.algorithm}:{self._hasher.hexdigest()}"
