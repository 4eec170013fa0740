"""Random access to members of an uncompressed tar file, without extracting it.

A member is served by a bounded reader over the archive file starting at the
member's data offset. A compressed archive (gzip, bzip2, xz) is first
decompressed once into a temporary file that lives as long as the index.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import posixpath
import shutil
import tarfile
import tempfile
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

from mpkit.errors import ImageFormatError
from mpkit.image.digest import CHUNK_SIZE

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_BZIP2_MAGIC = b"BZh"
_XZ_MAGIC = b"\xfd7zXZ\x00"
_MAX_LINK_HOPS = 16


class BoundedReader(io.RawIOBase):
    """Reads ``size`` bytes of *path* starting at ``offset``; seekable within them."""

    def __init__(self, path: Path, offset: int, size: int) -> None:
        super().__init__()
        self._file = open(path, "rb")  # noqa: SIM115 - closed in close()
        self._offset = offset
        self._size = size
        self._pos = 0
        self._file.seek(offset)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        want = min(len(view), self._size - self._pos)
        if want <= 0:
            return 0
        got = self._file.readinto(view[:want])
        if not got:
            raise ImageFormatError(
                f"{self._file.name} ends inside a member; the archive is truncated"
            )
        self._pos += got
        return got

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._size}[whence]
        self._pos = max(0, min(self._size, base + offset))
        self._file.seek(self._offset + self._pos)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def close(self) -> None:
        if not self.closed:
            self._file.close()
        super().close()


def open_range(path: Path, offset: int, size: int) -> BinaryIO:
    """A buffered, seekable stream over ``size`` bytes of *path* at ``offset``."""
    return cast(BinaryIO, io.BufferedReader(BoundedReader(path, offset, size), CHUNK_SIZE))


@dataclass(frozen=True)
class TarMember:
    name: str
    offset: int
    size: int


def normalize_member_name(name: str) -> str:
    name = posixpath.normpath(name.replace("\\", "/")).lstrip("/")
    return "" if name == "." else name


def sniff(path: Path, count: int = 6) -> bytes:
    with open(path, "rb") as stream:
        return stream.read(count)


_DECOMPRESSORS: dict[bytes, Callable[[Path], BinaryIO]] = {
    GZIP_MAGIC: lambda path: cast(BinaryIO, gzip.GzipFile(path, "rb")),
    _BZIP2_MAGIC: lambda path: cast(BinaryIO, bz2.BZ2File(path, "rb")),
    _XZ_MAGIC: lambda path: cast(BinaryIO, lzma.LZMAFile(path, "rb")),  # noqa: SIM115
}


def _decompress_to_temp(path: Path, magic: bytes) -> Path:
    handle, name = tempfile.mkstemp(prefix="mpkit-archive-", suffix=".tar")
    try:
        with _DECOMPRESSORS[magic](path) as source, os.fdopen(handle, "wb") as sink:
            shutil.copyfileobj(source, sink, CHUNK_SIZE)
    except (OSError, EOFError, lzma.LZMAError) as exc:
        Path(name).unlink(missing_ok=True)
        raise ImageFormatError(
            f"{path} looks compressed but does not decompress: {exc}",
            hint="check that the archive was copied completely",
        ) from None
    return Path(name)


class TarIndex:
    """Index of the regular files (and links to them) in a tar archive."""

    def __init__(self, archive: Path) -> None:
        self.archive = archive
        self.path = archive  # the uncompressed tar actually read
        head = sniff(archive)
        if head.startswith(ZSTD_MAGIC):
            raise ImageFormatError(
                f"{archive} is zstd-compressed, which mpkit cannot read",
                hint=f"decompress it first: zstd -d {archive}",
            )
        for magic in (GZIP_MAGIC, _BZIP2_MAGIC, _XZ_MAGIC):
            if head.startswith(magic):
                self.path = _decompress_to_temp(archive, magic)
                weakref.finalize(self, self.path.unlink, missing_ok=True)
                break
        self._members: dict[str, TarMember] = {}
        self._unsupported: dict[str, str] = {}
        self._read_headers()

    def _read_headers(self) -> None:
        links: dict[str, str] = {}
        try:
            with tarfile.open(self.path, "r:") as tar:
                for info in tar:
                    name = normalize_member_name(info.name)
                    if info.issym():
                        links[name] = posixpath.join(posixpath.dirname(name), info.linkname)
                    elif info.islnk():
                        links[name] = info.linkname
                    elif info.isreg() and info.issparse():
                        self._unsupported[name] = "a sparse file"
                    elif info.isreg():
                        self._members[name] = TarMember(name, info.offset_data, info.size)
                        links.pop(name, None)
        except (tarfile.TarError, EOFError) as exc:
            raise ImageFormatError(
                f"{self.archive} is not a readable tar archive: {exc}",
                hint="check the path and that the file was copied completely",
            ) from None
        resolved = {name: self._follow(target, links) for name, target in links.items()}
        self._members.update({name: m for name, m in resolved.items() if m is not None})

    def _follow(self, target: str, links: dict[str, str]) -> TarMember | None:
        """The regular file a (chain of) link(s) ends at, if any."""
        for _ in range(_MAX_LINK_HOPS):
            target = normalize_member_name(target)
            if target in self._members:
                return self._members[target]
            if target not in links:
                return None
            target = links[target]
        return None

    def names(self) -> list[str]:
        return sorted(self._members)

    def get(self, name: str) -> TarMember | None:
        name = normalize_member_name(name)
        if name in self._unsupported:
            raise ImageFormatError(
                f"{name} in {self.archive} is {self._unsupported[name]}, which mpkit cannot read"
            )
        return self._members.get(name)

    def require(self, name: str) -> TarMember:
        member = self.get(name)
        if member is None:
            raise ImageFormatError(
                f"{self.archive} has no file {name!r}",
                hint="the archive is incomplete or not in the expected format",
            )
        return member

    def open(self, member: TarMember) -> BinaryIO:
        return open_range(self.path, member.offset, member.size)

    def read(self, name: str, limit: int) -> bytes:
        member = self.require(name)
        if member.size > limit:
            raise ImageFormatError(f"{name} in {self.archive} is larger than {limit} bytes")
        with self.open(member) as stream:
            return stream.read()
