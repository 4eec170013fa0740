"""A read-only view of an image's merged filesystem, as the build steps see it."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Literal, Protocol

FileKind = Literal["file", "dir", "symlink", "hardlink", "other"]
MAX_SYMLINK_HOPS = 40


@dataclass(frozen=True)
class FileInfo:
    kind: FileKind
    mode: int = 0o644  # permission bits
    uid: int = 0
    gid: int = 0
    size: int = 0
    linkname: str = ""  # symlink target, or hardlink source path (absolute)


class FilesystemView(Protocol):
    """Paths are absolute POSIX paths ("/etc/passwd"); nothing follows symlinks unless
    it says so."""

    def info(self, path: str) -> FileInfo | None: ...

    def listdir(self, path: str) -> list[str]: ...

    def read_file(self, path: str, limit: int = 1 << 20) -> bytes | None: ...


def normpath(path: str) -> str:
    """Absolute, normalised, never above '/'."""
    out = posixpath.normpath("/" + path.lstrip("/"))
    return "/" if out in ("//", "/.") else out


def resolve(view: FilesystemView, path: str, *, follow_last: bool = True) -> str:
    """Resolve symlinks inside the image (never escaping '/'), like chroot path lookup."""
    parts = [p for p in normpath(path).split("/") if p]
    resolved = "/"
    hops = 0
    while parts:
        name = parts.pop(0)
        candidate = normpath(posixpath.join(resolved, name))
        info = view.info(candidate)
        if info is not None and info.kind == "symlink" and (parts or follow_last):
            hops += 1
            if hops > MAX_SYMLINK_HOPS:
                return candidate
            target = info.linkname
            base = "/" if target.startswith("/") else resolved
            parts = [p for p in normpath(posixpath.join(base, target)).split("/") if p] + parts
            resolved = "/"
            continue
        resolved = candidate
    return resolved


def stat(view: FilesystemView, path: str) -> FileInfo | None:
    """info() after following symlinks."""
    return view.info(resolve(view, path))


class MemoryFilesystem:
    """A FilesystemView over a dict; handy in tests and for small synthetic bases."""

    def __init__(
        self, entries: dict[str, FileInfo] | None = None, contents: dict[str, bytes] | None = None
    ) -> None:
        self.entries: dict[str, FileInfo] = {"/": FileInfo("dir", 0o755)}
        self.contents: dict[str, bytes] = {}
        for path, info in (entries or {}).items():
            self.add(path, info)
        for path, data in (contents or {}).items():
            self.add_file(path, data)

    def add(self, path: str, info: FileInfo) -> None:
        path = normpath(path)
        parent = posixpath.dirname(path)
        if parent != path and parent not in self.entries:
            self.add(parent, FileInfo("dir", 0o755))
        self.entries[path] = info

    def add_file(
        self, path: str, data: bytes, mode: int = 0o644, uid: int = 0, gid: int = 0
    ) -> None:
        self.add(path, FileInfo("file", mode, uid, gid, len(data)))
        self.contents[normpath(path)] = data

    def info(self, path: str) -> FileInfo | None:
        return self.entries.get(normpath(path))

    def listdir(self, path: str) -> list[str]:
        path = normpath(path)
        prefix = path.rstrip("/") + "/"
        return sorted(
            p[len(prefix) :]
            for p in self.entries
            if p.startswith(prefix) and "/" not in p[len(prefix) :] and p != path
        )

    def read_file(self, path: str, limit: int = 1 << 20) -> bytes | None:
        data = self.contents.get(normpath(path))
        return None if data is None else data[:limit]
