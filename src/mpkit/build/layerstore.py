"""Built layers in the content-addressed cache, and the dependency-layer cache by key."""

from __future__ import annotations

import json
import os
import posixpath
import tempfile
from collections.abc import Iterable
from pathlib import Path

from mpkit.build.fsview import FileInfo, FilesystemView, normpath
from mpkit.image._fs import atomic_write_bytes
from mpkit.image.digest import digest_hex
from mpkit.image.layerwriter import LayerEntry, write_layer
from mpkit.image.types import Descriptor, Layer


class LayerStore:
    """Layers live in ``<cache>/blobs/sha256`` beside pulled bases (one CAS)."""

    def __init__(self, cache_root: Path) -> None:
        self.root = cache_root
        self.blobs = cache_root / "blobs" / "sha256"

    def _layer(self, digest: str, size: int, diff_id: str, media_type: str) -> Layer:
        path = self.blobs / digest_hex(digest)
        return Layer(Descriptor(media_type, digest, size), lambda: open(path, "rb"), path=path,
                     diff_id=diff_id)  # fmt: skip

    def write(self, entries: Iterable[LayerEntry], media_type: str, *, mtime: int) -> Layer:
        self.blobs.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=".tmp-layer-", dir=self.blobs)
        try:
            with os.fdopen(fd, "wb") as sink:
                result = write_layer(entries, sink, mtime=mtime)
                sink.flush()
                os.fsync(sink.fileno())
            Path(temp).chmod(0o644)
            Path(temp).replace(self.blobs / digest_hex(result.digest))
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        return self._layer(result.digest, result.size, result.diff_id, media_type)

    def cached(self, key: str, media_type: str) -> Layer | None:
        """The layer built earlier under *key*, if its blob is still in the cache."""
        try:
            record = json.loads((self.root / "layers" / f"{key}.json").read_text())
            layer = self._layer(record["digest"], record["size"], record["diff_id"], media_type)
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if layer.path is None or not layer.path.exists() or layer.path.stat().st_size != layer.size:
            return None
        return layer

    def remember(self, key: str, layer: Layer) -> None:
        record = {"digest": layer.digest, "size": layer.size, "diff_id": layer.diff_id}
        atomic_write_bytes(self.root / "layers" / f"{key}.json", json.dumps(record).encode())


class OverlayView:
    """The base filesystem with the entries of this build's layers on top."""

    def __init__(self, lower: FilesystemView) -> None:
        self.lower = lower
        self.upper: dict[str, LayerEntry] = {}

    def add(self, entries: Iterable[LayerEntry]) -> None:
        for entry in entries:
            self.upper[normpath(entry.path)] = entry

    def info(self, path: str) -> FileInfo | None:
        entry = self.upper.get(normpath(path))
        if entry is None:
            return self.lower.info(path)
        if entry.kind == "whiteout":
            return None
        size = len(entry.data) if entry.data is not None else 0
        if entry.source is not None:
            size = entry.source.stat().st_size
        kind = "file" if entry.kind == "file" else entry.kind
        return FileInfo(kind, entry.mode, entry.uid, entry.gid, size, entry.linkname or "")

    def listdir(self, path: str) -> list[str]:
        path = normpath(path)
        names = set(self.lower.listdir(path))
        for upper_path, entry in self.upper.items():
            if posixpath.dirname(upper_path) == path and upper_path != path:
                name = posixpath.basename(upper_path)
                if entry.kind == "whiteout":
                    names.discard(name)
                else:
                    names.add(name)
        return sorted(names)

    def read_file(self, path: str, limit: int = 1 << 20) -> bytes | None:
        entry = self.upper.get(normpath(path))
        if entry is None:
            return self.lower.read_file(path, limit)
        if entry.data is not None:
            return entry.data[:limit]
        if entry.source is not None:
            with open(entry.source, "rb") as handle:
                return handle.read(limit)
        return None

    def host_path(self, path: str) -> Path | None:
        """Where a file copied by this build came from on the host."""
        entry = self.upper.get(normpath(path))
        return entry.source if entry is not None else None
