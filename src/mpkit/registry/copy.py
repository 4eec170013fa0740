"""Copy an image from one repository to another, registry to registry, by its digest.

The image is read from the source as it is (exact manifest bytes, so the digest cannot
change) and pushed with :func:`mpkit.registry.push.push_image`: blobs the destination
has are skipped, blobs of a sibling repository on the same registry are mounted
(distribution-spec: ``POST /v2/<name>/blobs/uploads/?mount=<digest>&from=<repository>``),
and only the rest is streamed from the source, never stored on this machine.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import BinaryIO, cast

from mpkit.errors import ImageFormatError
from mpkit.image.types import Blob, Descriptor, Image, Layer
from mpkit.reference import Reference
from mpkit.registry.client import RegistryClient
from mpkit.registry.locations import BlobLocations
from mpkit.registry.progress import Progress
from mpkit.registry.pull import resolve_image
from mpkit.registry.push import PushResult, push_image


class _StreamedBlob(io.RawIOBase):
    """The bytes of a blob download, read as a file (verified as they arrive)."""

    def __init__(self, download: AbstractContextManager[Iterator[bytes]]) -> None:
        super().__init__()
        self._download = download
        self._chunks = download.__enter__()
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = chunk
        count = min(len(buffer), len(self._pending))
        buffer[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        return count

    def close(self) -> None:
        if not self.closed:
            self._download.__exit__(None, None, None)
        super().close()


def remote_image(client: RegistryClient, ref: Reference) -> Image:
    """The image at *ref*, its blobs read from the registry when opened.

    A multi-platform index is refused: copying one platform's image would change the
    digest that names it.
    """
    resolved = resolve_image(client, ref)
    if resolved.index is not None:
        raise ImageFormatError(
            f"{ref} is a multi-platform index ({len(resolved.platforms)} platforms); mpkit "
            "copies single-platform images, as it builds them",
            hint="copy the whole index with 'skopeo copy --all', or point the pack at the "
            "linux/amd64 image's own digest",
        )

    def blob(desc: Descriptor) -> Blob:
        def opener() -> BinaryIO:
            stream = _StreamedBlob(client.open_blob(ref.path, desc))
            return cast(BinaryIO, io.BufferedReader(stream))

        return Blob(desc, opener)

    layers = [Layer.from_blob(blob(desc)) for desc in resolved.layers]
    return Image(resolved.manifest.data, blob(resolved.config), layers)


def copy_image(
    source: RegistryClient,
    source_ref: Reference,
    destination: RegistryClient,
    target: Reference,
    *,
    locations: BlobLocations | None = None,
    progress: Progress | None = None,
) -> PushResult:
    """Copy *source_ref* to *target* (a tag or digest reference); the confirmed digest is the
    source's, or DigestMismatchError."""
    image = remote_image(source, source_ref)
    same_registry = source.registry == destination.registry
    mount_from = (source_ref.path,) if same_registry and source_ref.path != target.path else ()
    return push_image(
        destination, image, target, locations=locations, mount_from=mount_from, progress=progress
    )
