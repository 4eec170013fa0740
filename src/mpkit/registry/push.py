"""Push an image: only the blobs the registry lacks, then the manifest by exact bytes."""

from __future__ import annotations

from dataclasses import dataclass

from mpkit.image.types import Blob, Image
from mpkit.reference import Reference
from mpkit.registry.client import RegistryClient
from mpkit.registry.locations import BlobLocations
from mpkit.registry.parallel import run_all
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
    blobs = image.blobs()
    run_all(
        client.transport,
        lambda blob: _push_blob(client, repository, blob, locations, mount_from, progress),
        blobs,
        name="push",
    )
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
    if client.blob_size(repository, desc.digest, push=True, expected=desc.size) is not None:
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
    stale: list[str] = []
    client.upload_blob(
        repository, blob, mount_from=tuple(sources), progress=progress, stale_sources=stale
    )
    if locations is not None:
        for source in stale:  # the record was wrong: never try that source again
            locations.forget(client.registry, source, desc.digest)
