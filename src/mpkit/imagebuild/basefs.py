"""The merged filesystem of an image's layers, read straight from the compressed blobs.

Each layer is listed once (cached per layer digest under ``<cache>/fsindex``); the view
applies whiteouts (image-spec layer.md: ``.wh.NAME`` deletes NAME, ``.wh..wh..opq``
hides the directory's lower content) so the builder sees what a container would. This
is mpkit's one reader of whiteouts: whoever needs the files a container would see (the
builder, or describe copying them out) asks this view, and the view says which layer
holds each entry.

The merged result is cached too, per ordered list of layer digests, grouped by directory:
a build opens it in well under a millisecond and decodes only the directories it looks at.
"""

from __future__ import annotations

import hashlib
import json
import marshal
import posixpath
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from mpkit.cache.root import CacheRoot, shared_records
from mpkit.errors import ImageFormatError
from mpkit.image.digest import digest_hex
from mpkit.image.types import Blob
from mpkit.imagebuild import marshalfile
from mpkit.imagebuild.fsview import FileInfo, FileKind, normpath

INDEX_VERSION = 1
MERGED_VERSION = 1  # bump when the merged view's format or semantics change
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
# (kind, mode, uid, gid, size, linkname, number of the layer that holds the entry)
Attrs = tuple[str, int, int, int, int, str, int]
ROOT: Attrs = ("dir", 0o755, 0, 0, 0, "", -1)
_KIND = b"mpkit-fsview"


# Listing a layer means reading all of it; a big one (a base's) is worth fetching instead.
SHARED_INDEX_MIN_SIZE = 1 << 20


def index_layer(blob: Blob, cache: CacheRoot | None) -> dict[str, object]:
    """List one gzip/plain tar layer (cached by digest; a big one also in the records a
    build shares through the team's registry)."""
    cached = _index_path(cache, blob.descriptor.digest)
    if cached is not None and cached.exists():
        data = json.loads(cached.read_text())
        if data.get("version") == INDEX_VERSION:
            return dict(data)
    records = shared_records() if blob.descriptor.size >= SHARED_INDEX_MIN_SIZE else None
    record_name = f"layer-index {INDEX_VERSION} {blob.descriptor.digest}"
    shared = records.fetch_record(record_name) if records is not None else None
    if shared is not None and shared.get("version") == INDEX_VERSION:
        if cache is not None and cached is not None:
            cache.write_bytes(cached, json.dumps(shared).encode())
        return shared
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
    if cache is not None and cached is not None:
        cache.write_bytes(cached, json.dumps(result).encode())
    if records is not None:
        records.remember_record(record_name, result)
    return result


def _index_path(cache: CacheRoot | None, digest: str) -> Path | None:
    return None if cache is None else cache.fsindex / f"{digest_hex(digest)}.json"


class _Merge:
    """Apply layer listings bottom first, as overlay storage would."""

    def __init__(self) -> None:
        self.entries: dict[str, Attrs] = {"/": ROOT}
        self.children: dict[str, set[str]] = {"/": set()}

    def apply(self, index: dict[str, object], number: int) -> None:
        for directory in cast("list[str]", index["opaque"]):
            for path in self._below(str(directory)):
                self._remove(path)
        for path in cast("list[str]", index["whiteouts"]):
            self._remove(str(path))
        entries = cast("dict[str, list[object]]", index["entries"])
        for path, (kind, mode, uid, gid, size, link) in sorted(entries.items()):
            attrs = cast(Attrs, (kind, mode, uid, gid, size, link, number))
            if path in self.entries and kind != "dir":
                self._remove(path)
            self._add(path, attrs)

    def _add(self, path: str, attrs: Attrs) -> None:
        if path == "/":  # "./" in a tar: the root's own attributes, not a child of itself
            self.entries[path] = attrs
            return
        parent = posixpath.dirname(path)
        if parent not in self.entries:
            self._add(parent, ("dir", 0o755, 0, 0, 0, "", attrs[6]))
        self.entries[path] = attrs
        self.children.setdefault(parent, set()).add(posixpath.basename(path))
        if attrs[0] == "dir":
            self.children.setdefault(path, set())

    def _below(self, directory: str) -> list[str]:
        return [posixpath.join(directory, name) for name in self.children.get(directory, ())]

    def _remove(self, path: str) -> None:
        for child in self._below(path):
            self._remove(child)
        self.entries.pop(path, None)
        self.children.pop(path, None)
        self.children.get(posixpath.dirname(path), set()).discard(posixpath.basename(path))

    def by_directory(self) -> dict[str, dict[str, Attrs]]:
        """directory -> {name: attrs} for every entry but the root, names sorted."""
        out: dict[str, dict[str, Attrs]] = {}
        for path in sorted(self.entries):
            if path != "/":
                parent, name = posixpath.split(path)
                out.setdefault(parent, {})[name] = self.entries[path]
        return out


def merged_view_path(cache: CacheRoot, layers: Sequence[Blob]) -> Path:
    """Where the merged view of *layers* (in this order) is cached."""
    key = hashlib.sha256("\n".join(b.descriptor.digest for b in layers).encode()).hexdigest()
    return cache.fsindex / f"merged-{key}.view"


def _save_merged(
    cache: CacheRoot, path: Path, root: Attrs, directories: dict[str, dict[str, Attrs]]
) -> None:
    packed = {name: marshal.dumps(entries) for name, entries in directories.items()}
    marshalfile.write(path, _KIND, MERGED_VERSION, (root, packed), temp_dir=cache.tmp)


def _load_merged(path: Path) -> tuple[Attrs, dict[str, bytes]] | None:
    """The root's attributes and the packed directories, or None if missing or stale."""
    value = marshalfile.read(path, _KIND, MERGED_VERSION)
    if not isinstance(value, tuple) or len(value) != 2:
        return None
    root, packed = value
    if not isinstance(root, tuple) or len(root) != len(ROOT) or not isinstance(packed, dict):
        return None
    return root, packed


@dataclass(frozen=True)
class Placed:
    """An entry of the merged view, and the number of the layer (bottom = 0) holding it."""

    path: str
    info: FileInfo
    layer: int


class LayeredFilesystem:
    """FilesystemView over base layers, bottom first."""

    def __init__(self, layers: Sequence[Blob], *, cache: CacheRoot | None = None) -> None:
        self._layers = list(layers)
        self._cache = cache  # listings, merged views and file contents go to its fsindex
        self._packed: dict[str, bytes] = {}  # directory -> marshalled {name: attrs}
        self._directories: dict[str, dict[str, Attrs]] = {}  # the ones decoded so far
        self._infos: dict[str, FileInfo | None] = {}
        cached = merged_view_path(cache, self._layers) if cache is not None else None
        loaded = _load_merged(cached) if cached is not None else None
        if loaded is not None and cache is not None and cached is not None:
            self._root, self._packed = loaded
            cache.mark_used(cached)
            return
        merge = _Merge()
        for number, blob in enumerate(self._layers):
            merge.apply(index_layer(blob, cache), number)
        self._root = merge.entries["/"]
        self._directories = merge.by_directory()
        if cache is not None and cached is not None:
            _save_merged(cache, cached, self._root, self._directories)

    def walk(self, top: str) -> Iterator[Placed]:
        """*top* and everything below it, parents before their children, names sorted.

        Entries a layer put below a symbolic link are listed too (a tar extraction writes
        them through the link)."""
        path = normpath(top)
        attrs = self._attrs(path)
        if attrs is None:
            return
        yield Placed(path, _info(attrs), attrs[6])
        for name in self.listdir(path):
            yield from self.walk(posixpath.join(path, name))

    def _directory(self, path: str) -> dict[str, Attrs] | None:
        found = self._directories.get(path)
        if found is None:
            packed = self._packed.get(path)
            if packed is None:
                return None
            # checksummed with the rest of the file (marshalfile)
            found = self._directories[path] = marshal.loads(packed)  # noqa: S302
        return found

    def _attrs(self, path: str) -> Attrs | None:
        if path == "/":
            return self._root
        parent, name = posixpath.split(path)
        directory = self._directory(parent)
        return None if directory is None else directory.get(name)

    # -- FilesystemView ----------------------------------------------------
    def info(self, path: str) -> FileInfo | None:
        path = normpath(path)
        try:
            return self._infos[path]
        except KeyError:
            pass
        attrs = self._attrs(path)
        info = None if attrs is None else _info(attrs)
        self._infos[path] = info
        return info

    def listdir(self, path: str) -> list[str]:
        return sorted(self._directory(normpath(path)) or ())

    def read_file(self, path: str, limit: int = 1 << 20) -> bytes | None:
        path = normpath(path)
        attrs = self._attrs(path)
        if attrs is None:
            return None
        kind, size, linkname, number = attrs[0], attrs[4], attrs[5], attrs[6]
        if kind == "hardlink":
            return self.read_file(linkname, limit)
        if kind != "file":
            return None
        # Reading a file means inflating its layer up to it; small files (libc, passwd,
        # os-release …) are kept per layer so the next build does not inflate 50 MB again.
        cached = self._content_path(number, path) if size <= MAX_CACHED_FILE else None
        if cached is not None and cached.is_file():
            return cached.read_bytes()[:limit]
        data = self._extract(number, path)
        if data is not None and cached is not None and self._cache is not None:
            self._cache.write_bytes(cached, data)
        return None if data is None else data[:limit]

    def _content_path(self, number: int, path: str) -> Path | None:
        if self._cache is None:
            return None
        layer = digest_hex(self._layers[number].descriptor.digest)
        name = hashlib.sha256(path.encode()).hexdigest()
        return self._cache.fsindex / f"{layer}.files" / name

    def _extract(self, number: int, path: str) -> bytes | None:
        with self._layers[number].open() as raw, tarfile.open(fileobj=raw, mode="r|*") as tar:
            for member in tar:
                if normpath(member.name) == path:
                    handle = tar.extractfile(member)
                    return b"" if handle is None else handle.read()
        return None


def _info(attrs: Attrs) -> FileInfo:
    return FileInfo(cast(FileKind, attrs[0]), *attrs[1:6])
