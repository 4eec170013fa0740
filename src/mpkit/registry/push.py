"""Push an image: only the blobs the registry lacks, then the manifest by exact bytes."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from mpkit.image.types import Blob, Image
from mpkit.reference import Reference
from mpkit.registry.client import RegistryClient
from mpkit.registry.locations import BlobLocations
from mpkit.registry.progress import SKIPPED, NoProgress, Progress
from mpkit.registry.stats import TransferStats


@dataclass(frozen=True)
class PushResult:
    reference: Reference  # with the confirmed digest set
    digest: str
    stats: TransferStats


def push_image(
    client: RegistryClient,
    image: Image,
    target: Reference,
    *,
    locations: BlobLocations | None = None,
    mount_from: tuple[str, ...] = (),
    progress: Progress | None = None,
) -> PushResult:
    """Upload what *target*'s repository lacks (mounting where possible), then the manifest.

    The manifest goes up last so that the registry never holds a manifest whose blobs
    are missing (distribution-spec: a manifest PUT may be refused with BLOB_UNKNOWN).
    """
    progress = progress or NoProgress()
    repository = target.path
    blobs = _unique(image.blobs())
    workers = max(1, min(client.transport.options.concurrency, len(blobs)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mpkit-push") as pool:
        futures = [
            pool.submit(_push_blob, client, repository, blob, locations, mount_from, progress)
            for blob in blobs
        ]
        for future in futures:
            future.result()
    reference = target.tag or target.digest or "latest"
    digest = client.put_manifest(repository, reference, image.manifest_bytes, image.media_type)
    if locations is not None:
        locations.record(client.registry, repository, [b.descriptor.digest for b in blobs])
    return PushResult(reference=target.with_digest(digest), digest=digest, stats=client.stats)


def _push_blob(
    client: RegistryClient,
    repository: str,
    blob: Blob,
    locations: BlobLocations | None,
    mount_from: tuple[str, ...],
    progress: Progress,
) -> None:
    desc = blob.descriptor
    progress.start(desc, "push")
    # distribution-spec: HEAD /v2/<name>/blobs/<digest> → 200 means nothing to upload.
    if client.blob_size(repository, desc.digest, push=True) is not None:
        client.stats.add(blobs_skipped=1, bytes_skipped=desc.size)
        progress.finish(desc, SKIPPED)
        return
    sources = list(mount_from)
    if locations is not None:
        sources += [
            r
            for r in locations.candidates(client.registry, desc.digest, exclude=repository)
            if r not in sources
        ]
    client.upload_blob(repository, blob, mount_from=tuple(sources), progress=progress)


def _unique(blobs: list[Blob]) -> list[Blob]:
    seen: set[str] = set()
    out = []
    for blob in blobs:
        if blob.descriptor.digest not in seen:
            seen.add(blob.descriptor.digest)
            out.append(blob)
    return out
