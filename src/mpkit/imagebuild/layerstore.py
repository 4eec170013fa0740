"""Built layers in the content-addressed cache, and the dependency-layer cache by key."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

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
                final = self.blobs / digest_hex(result.digest)
                if _has_size(final, result.size):
                    # Built before (an unchanged COPY): keep that copy, skip the fsync.
                    Path(temp).unlink()
                    return self._layer(result.digest, result.size, result.diff_id, media_type)
                sink.flush()
                os.fsync(sink.fileno())
            Path(temp).chmod(0o644)
            Path(temp).replace(final)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        return self._layer(result.digest, result.size, result.diff_id, media_type)

    def cached(self, key: str, media_type: str) -> Layer | None:
        """The layer built earlier under *key*, if its blob is still in the cache."""
        record_path = self.root / "layers" / f"{key}.json"
        try:
            record = json.loads(record_path.read_text())
            layer = self._layer(record["digest"], record["size"], record["diff_id"], media_type)
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if layer.path is None or not layer.path.exists() or layer.path.stat().st_size != layer.size:
            return None
        os.utime(record_path)  # last use, for 'mpkit cache prune --older-than'
        return layer

    def remember(self, key: str, layer: Layer) -> None:
        record = {"digest": layer.digest, "size": layer.size, "diff_id": layer.diff_id}
        atomic_write_bytes(self.root / "layers" / f"{key}.json", json.dumps(record).encode())


def _has_size(path: Path, size: int) -> bool:
    try:
        return path.stat().st_size == size
    except OSError:
        return False
