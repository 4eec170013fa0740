"""Content-addressed cache of gzip-compressed layers, keyed by diff_id.

``ROOT/blobs/sha256/<hex>`` holds compressed layers and
``ROOT/diffids/sha256/<hex>`` maps a diff_id to the compressed digest, so the
same uncompressed layer is compressed once per machine. Writes are atomic.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import platformdirs

from mpkit.errors import ImageFormatError
from mpkit.image import mediatypes as mt
from mpkit.image._fs import atomic_write_bytes
from mpkit.image.compress import gzip_layer
from mpkit.image.digest import digest_hex, hash_stream, validate_digest
from mpkit.image.types import Descriptor, Layer


def default_cache_dir() -> Path:
    """``$MPKIT_CACHE_DIR``, else the per-user cache directory for mpkit."""
    override = os.environ.get("MPKIT_CACHE_DIR")
    return Path(override) if override else Path(platformdirs.user_cache_dir("mpkit"))


class LayerCache:
    """Compressed layers by diff_id; ``hits``/``misses`` count look-ups in this process."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.hits = 0
        self.misses = 0

    @classmethod
    def default(cls) -> LayerCache:
        return cls(default_cache_dir())

    def blob_path(self, digest: str) -> Path:
        return self.root / "blobs" / "sha256" / digest_hex(digest)

    def _diff_id_path(self, diff_id: str) -> Path:
        return self.root / "diffids" / "sha256" / digest_hex(diff_id)

    def lookup(self, diff_id: str) -> tuple[str, int] | None:
        """(compressed digest, size) cached for *diff_id*, if its blob is still there."""
        try:
            digest = self._diff_id_path(diff_id).read_text().strip()
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
        path = self.blob_path(digest)
        descriptor = Descriptor(media_type, digest, size)
        return Layer(descriptor, lambda: open(path, "rb"), path=path, diff_id=diff_id)

    def _compress(
        self, diff_id: str, opener: Callable[[], BinaryIO], where: str
    ) -> tuple[str, int]:
        blobs = self.root / "blobs" / "sha256"
        blobs.mkdir(parents=True, exist_ok=True)
        handle, temp = tempfile.mkstemp(prefix=".tmp-", dir=blobs)
        try:
            with os.fdopen(handle, "wb") as sink, opener() as source:
                result = gzip_layer(source, sink)
                sink.flush()
                os.fsync(sink.fileno())
            _check_diff_id(result.diff_id, diff_id, where)
            Path(temp).chmod(0o644)
            Path(temp).replace(self.blob_path(result.digest))
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        atomic_write_bytes(self._diff_id_path(diff_id), result.digest.encode() + b"\n")
        return result.digest, result.size


def _check_diff_id(actual: str, expected: str, where: str) -> None:
    if actual != expected:
        raise ImageFormatError(
            f"{where}: the uncompressed layer hashes to {actual}, but the image config's "
            f"rootfs.diff_ids says {expected}",
            hint="the archive is corrupt or was modified; save the image again",
        )
