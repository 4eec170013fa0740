"""The merged filesystem of an image's layers, read straight from the compressed blobs.

Each layer is listed once (cached per layer digest under ``<cache>/fsindex``); the view
applies whiteouts (image-spec layer.md: ``.wh.NAME`` deletes NAME, ``.wh..wh..opq``
hides the directory's lower content) so the builder sees what a container would.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import tarfile
from collections.abc import Sequence
from pathlib import Path

from mpkit.build.fsview import FileInfo, FileKind, normpath
from mpkit.errors import ImageFormatError
from mpkit.image._fs import atomic_write_bytes
from mpkit.image.digest import digest_hex
from mpkit.image.types import Blob

INDEX_VERSION = 1
MAX_CACHED_FILE = 8 * 1024 * 1024
WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"

_KINDS: dict[bytes, FileKind] = {
    tarfile.REGTYPE: "file",
    tarfile.AREGTYPE: "file",
    tarfile.DIRTYPE: "dir",
    tarfile.SYMTYPE: "symlink",
    tarfile.LNKTYPE: "hardlink",
}

# path -> [kind, mode, uid, gid, size, linkname]; plus whiteout and opaque lists.
LayerIndex = dict[str, list[object]]


def index_layer(blob: Blob, cache_dir: Path | None) -> dict[str, object]:
    """List one gzip/plain tar layer (cached by digest)."""
    cached = _index_path(cache_dir, blob.descriptor.digest)
    if cached is not None and cached.exists():
        data = json.loads(cached.read_text())
        if data.get("version") == INDEX_VERSION:
            return dict(data)
    entries: LayerIndex = {}
    whiteouts: list[str] = []
    opaque: list[str] = []
    try:
        with blob.open() as raw, tarfile.open(fileobj=raw, mode="r|*") as tar:
            for member in tar:
                path = normpath(member.name)
                directory, name = posixpath.split(path)
                if name == OPAQUE:
                    opaque.append(directory)
                    continue
                if name.startswith(WHITEOUT):
                    whiteouts.append(posixpath.join(directory, name[len(WHITEOUT) :]))
                    continue
                kind = _KINDS.get(member.type, "other")
                link = member.linkname
                if kind == "hardlink":
                    link = normpath(link)
                entries[path] = [
                    kind,
                    member.mode & 0o7777,
                    member.uid,
                    member.gid,
                    member.size,
                    link,
                ]
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ImageFormatError(
            f"layer {blob.descriptor.digest} is not a readable tar archive: {exc}",
            hint="the cached base image may be damaged: run 'mpkit cache prune --all' and "
            "build again",
        ) from exc
    result: dict[str, object] = {
        "version": INDEX_VERSION, "entries": entries, "whiteouts": whiteouts, "opaque": opaque,
    }  # fmt: skip
    if cached is not None:
        atomic_write_bytes(cached, json.dumps(result).encode())
    return result


def _index_path(cache_dir: Path | None, digest: str) -> Path | None:
    return None if cache_dir is None else cache_dir / f"{digest_hex(digest)}.json"


class LayeredFilesystem:
    """FilesystemView over base layers, bottom first."""

    def __init__(self, layers: Sequence[Blob], *, cache_dir: Path | None = None) -> None:
        self._layers = list(layers)
        self._cache_dir = cache_dir  # the listings' directory (<cache>/fsindex)
        self._entries: dict[str, tuple[FileInfo, int]] = {"/": (FileInfo("dir", 0o755), -1)}
        self._children: dict[str, set[str]] = {"/": set()}
        for number, blob in enumerate(self._layers):
            self._apply(index_layer(blob, cache_dir), number)

    def _apply(self, index: dict[str, object], number: int) -> None:
        for directory in index["opaque"]:  # type: ignore[attr-defined]
            for path in self._below(str(directory)):
                self._remove(path)
        for path in index["whiteouts"]:  # type: ignore[attr-defined]
            self._remove(str(path))
        entries = index["entries"]
        assert isinstance(entries, dict)
        for path, (kind, mode, uid, gid, size, link) in sorted(entries.items()):
            info = FileInfo(kind, mode, uid, gid, size, link)
            if path in self._entries and info.kind != "dir":
                self._remove(path)
            self._add(path, info, number)

    def _add(self, path: str, info: FileInfo, number: int) -> None:
        parent = posixpath.dirname(path)
        if parent not in self._entries:
            self._add(parent, FileInfo("dir", 0o755), number)
        self._entries[path] = (info, number)
        self._children.setdefault(parent, set()).add(posixpath.basename(path))
        if info.kind == "dir":
            self._children.setdefault(path, set())

    def _below(self, directory: str) -> list[str]:
        return [posixpath.join(directory, name) for name in self._children.get(directory, ())]

    def _remove(self, path: str) -> None:
        for child in self._below(path):
            self._remove(child)
        self._entries.pop(path, None)
        self._children.pop(path, None)
        self._children.get(posixpath.dirname(path), set()).discard(posixpath.basename(path))

    # -- FilesystemView ----------------------------------------------------
    def info(self, path: str) -> FileInfo | None:
        found = self._entries.get(normpath(path))
        return None if found is None else found[0]

    def listdir(self, path: str) -> list[str]:
        return sorted(self._children.get(normpath(path), ()))

    def read_file(self, path: str, limit: int = 1 << 20) -> bytes | None:
        path = normpath(path)
        found = self._entries.get(path)
        if found is None:
            return None
        info, number = found
        if info.kind == "hardlink":
            return self.read_file(info.linkname, limit)
        if info.kind != "file":
            return None
        # Reading a file means inflating its layer up to it; small files (libc, passwd,
        # os-release …) are kept per layer so the next build does not inflate 50 MB again.
        cached = self._content_path(number, path) if info.size <= MAX_CACHED_FILE else None
        if cached is not None and cached.is_file():
            return cached.read_bytes()[:limit]
        data = self._extract(number, path)
        if data is not None and cached is not None:
            atomic_write_bytes(cached, data)
        return None if data is None else data[:limit]

    def _content_path(self, number: int, path: str) -> Path | None:
        if self._cache_dir is None:
            return None
        layer = digest_hex(self._layers[number].descriptor.digest)
        name = hashlib.sha256(path.encode()).hexdigest()
        return self._cache_dir / f"{layer}.files" / name

    def _extract(self, number: int, path: str) -> bytes | None:
        with self._layers[number].open() as raw, tarfile.open(fileobj=raw, mode="r|*") as tar:
            for member in tar:
                if normpath(member.name) == path:
                    handle = tar.extractfile(member)
                    return b"" if handle is None else handle.read()
        return None
