"""The content-addressed layer store of the cache root: every layer mpkit builds or
compresses goes to ``<cache>/blobs/sha256``, beside the pulled base images (one CAS).

``diffids/sha256/<hex>`` maps an uncompressed layer's diff_id to its compressed digest,
so the same layer of an image archive is compressed once per machine, and
``layers/<key>.json`` records a built layer under a content key (e.g. a dependency
layer), so an unchanged build reuses it. Every write is atomic.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO

from mpkit.cache.root import CacheRoot
from mpkit.errors import ImageFormatError
from mpkit.image import mediatypes as mt
from mpkit.image.compress import gunzip_digests, gzip_layer
from mpkit.image.digest import digest_hex, hash_stream, validate_digest
from mpkit.image.layerwriter import LayerEntry, write_layer
from mpkit.image.types import Descriptor, Layer

GZIP_LAYER_TYPES = frozenset({mt.DOCKER_LAYER_GZIP, mt.OCI_LAYER_GZIP})


class LayerCache:
    """Layers in the cache root; ``hits``/``misses`` count diff_id look-ups in this process."""

    def __init__(self, root: CacheRoot) -> None:
        self.root = root
        self.hits = 0
        self.misses = 0

    @classmethod
    def default(cls) -> LayerCache:
        return cls(CacheRoot.default())

    def blob_path(self, digest: str) -> Path:
        return self.root.blobs / digest_hex(digest)

    def _layer(self, digest: str, size: int, diff_id: str, media_type: str) -> Layer:
        path = self.blob_path(digest)
        return Layer(Descriptor(media_type, digest, size), lambda: open(path, "rb"), path=path,
                     diff_id=diff_id)  # fmt: skip

    # -- layers by diff_id (compressed from image archives) ------------------------------------
    def lookup(self, diff_id: str) -> tuple[str, int] | None:
        """(compressed digest, size) cached for *diff_id*, if its blob is still there."""
        try:
            digest = (self.root.diffids / digest_hex(diff_id)).read_text().strip()
            validate_digest(digest)
            return digest, self.blob_path(digest).stat().st_size
        except (FileNotFoundError, ImageFormatError):
            return None

    def compressed_layer(
        self,
        diff_id: str,
        opener: Callable[[], BinaryIO],
        *,
        media_type: str = mt.DOCKER_LAYER_GZIP,
        verify: bool = True,
        where: str = "layer",
    ) -> Layer:
        """The gzip layer for the uncompressed tar *opener* yields, from cache or fresh.

        The tar must hash to *diff_id*. On a cache hit it is re-hashed (not
        recompressed) unless ``verify`` is false.
        """
        validate_digest(diff_id)
        cached = self.lookup(diff_id)
        if cached is not None:
            self.hits += 1
            if verify:
                with opener() as source:
                    actual, _ = hash_stream(source)
                _check_diff_id(actual, diff_id, where)
            digest, size = cached
        else:
            self.misses += 1
            digest, size = self._compress(diff_id, opener, where)
        return self._layer(digest, size, diff_id, media_type)

    def adopt(self, layers: Iterable[Layer]) -> int:
        """Record the gzip blobs of *layers* that the store holds (a pulled base's) as the
        compressed form of their diff_ids, so that an image archive with the same layers
        uncompressed gets these blobs back, with the digests registries already know,
        instead of new compressions. Returns how many layers were adopted."""
        adopted = 0
        for layer in layers:
            media_type = layer.descriptor.media_type
            if layer.diff_id is None or media_type not in GZIP_LAYER_TYPES:
                continue
            if not _has_size(self.blob_path(layer.digest), layer.size):
                continue
            try:
                record = self.root.diffids / digest_hex(validate_digest(layer.diff_id))
            except ImageFormatError:
                continue
            adopted += 1
            if self.lookup(layer.diff_id) != (layer.digest, layer.size):
                self.root.write_bytes(record, layer.digest.encode() + b"\n")
        return adopted

    def _compress(
        self, diff_id: str, opener: Callable[[], BinaryIO], where: str
    ) -> tuple[str, int]:
        with self.root.output(label="layer") as sink:
            with opener() as source:
                result = gzip_layer(source, sink.stream)
            _check_diff_id(result.diff_id, diff_id, where)
            sink.commit(self.blob_path(result.digest))
        record = result.digest.encode() + b"\n"
        self.root.write_bytes(self.root.diffids / digest_hex(diff_id), record)
        return result.digest, result.size

    def fetched_layer(self, descriptor: Descriptor, diff_id: str, chunks: Iterable[bytes]) -> Layer:
        """Store the gzip layer *chunks* (e.g. downloaded) as *descriptor*, after checking
        its digest, size and that it decompresses to *diff_id*; ImageFormatError if not."""
        validate_digest(diff_id)
        with self.root.output(label="layer") as sink:
            for chunk in chunks:
                sink.stream.write(chunk)
            sink.stream.flush()
            with open(sink.path, "rb") as written:
                found = gunzip_digests(written, name=f"layer {descriptor.digest}")
            if (found.digest, found.size) != (descriptor.digest, descriptor.size):
                raise ImageFormatError(
                    f"layer {descriptor.digest} arrived as {found.digest} ({found.size} bytes)"
                )
            _check_diff_id(found.diff_id, diff_id, f"layer {descriptor.digest}")
            sink.commit(self.blob_path(descriptor.digest))
        self.root.write_bytes(self.root.diffids / digest_hex(diff_id), descriptor.digest.encode())
        return self._layer(descriptor.digest, descriptor.size, diff_id, descriptor.media_type)

    # -- layers built from entries -------------------------------------------------------------
    def write_layer(self, entries: Iterable[LayerEntry], media_type: str, *, mtime: int) -> Layer:
        """Write a layer of *entries* into the store (kept as it is if built before)."""
        with self.root.output(label="layer") as sink:
            result = write_layer(entries, sink.stream, mtime=mtime)
            final = self.blob_path(result.digest)
            if _has_size(final, result.size):
                sink.discard()  # built before (an unchanged COPY): keep it, skip the fsync
            else:
                sink.commit(final)
        return self._layer(result.digest, result.size, result.diff_id, media_type)

    def cached(self, key: str, media_type: str) -> Layer | None:
        """The layer recorded under *key*, if its blob is still in the store."""
        record_path = self.root.layer_records / f"{key}.json"
        try:
            record = json.loads(record_path.read_text())
            layer = self._layer(record["digest"], record["size"], record["diff_id"], media_type)
        except (OSError, ValueError, KeyError, TypeError, ImageFormatError):
            return None
        if not _has_size(self.blob_path(layer.digest), layer.size):
            return None
        self.root.mark_used(record_path)
        return layer

    def remember(self, key: str, layer: Layer) -> None:
        record = {"digest": layer.digest, "size": layer.size, "diff_id": layer.diff_id}
        self.root.write_bytes(self.root.layer_records / f"{key}.json", json.dumps(record).encode())


def _has_size(path: Path, size: int) -> bool:
    try:
        return path.stat().st_size == size
    except OSError:
        return False


def _check_diff_id(actual: str, expected: str, where: str) -> None:
    if actual != expected:
        raise ImageFormatError(
            f"{where}: the uncompressed layer hashes to {actual}, but the image config's "
            f"rootfs.diff_ids says {expected}",
            hint="the archive is corrupt or was modified; save the image again",
        )
