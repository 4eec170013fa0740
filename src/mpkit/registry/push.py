"""Push an image: only the blobs the registry lacks, then the manifest by exact bytes."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

from mpkit.errors import RegistryError
from mpkit.image.types import Blob, Image
from mpkit.reference import Reference
from mpkit.registry.client import RegistryClient
from mpkit.registry.locations import BlobLocations
from mpkit.registry.parallel import run_all
from mpkit.registry.progress import SKIPPED, NoProgress, Progress
from mpkit.registry.stats import TransferStats

# When the records know the target repository (an earlier push went there), a blob they
# place nowhere on the registry is new content, like the config and app layer of a
# rebuild: one this small is uploaded without asking first.
OPTIMISTIC_UPLOAD = 256 * 1024


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
    Blobs that *locations* says an earlier push put in this very repository are not
    checked one by one (an app-only rebuild would HEAD every base layer): the manifest PUT
    checks them. If it is refused, the records may be stale (the registry collected the
    blobs): those blobs are checked, uploaded if missing, and the manifest is sent again.
    """
    pusher = _Pusher(client, target.path, locations, mount_from, progress or NoProgress())
    blobs = image.blobs()
    pinger = threading.Thread(target=_ping, args=(client,), name="mpkit-ping", daemon=True)
    pinger.start()  # the registry answers while the records are read
    pusher.look_up(blobs)
    pinger.join()
    trusted = [b for b in blobs if pusher.recorded_here(b)]
    checked = [b for b in blobs if not pusher.recorded_here(b)]
    pusher.skip(trusted)
    pusher.send(checked)
    client.release_uploads()  # sessions opened ahead that no blob needed, during the PUT
    reference = target.tag or target.digest or "latest"
    recorder = pusher.record_in_background(checked)  # they are in the repository now
    try:
        digest = pusher.put_manifest(image, reference)
    except RegistryError as exc:
        if not trusted or not _maybe_missing_blobs(exc):
            raise
        pusher.distrust(trusted)
        pusher.send(trusted)
        digest = pusher.put_manifest(image, reference)
        pusher.record(trusted)
    finally:
        if recorder is not None:
            recorder.join()
    return PushResult(reference=target.with_digest(digest), digest=digest, stats=client.stats)


def tag_image(client: RegistryClient, image: Image, target: Reference) -> Reference:
    """Give *image*, pushed by digest alone, the tag of *target*: the same manifest bytes
    PUT again under the tag (distribution-spec: PUT /v2/<name>/manifests/<tag>); no blob
    moves. Returns *target* pinned to the digest the registry confirmed."""
    if target.tag is None:
        raise ValueError(f"{target} has no tag to put")
    digest = client.put_manifest(target.path, target.tag, image.manifest_bytes, image.media_type)
    return target.with_digest(digest)


def _maybe_missing_blobs(error: RegistryError) -> bool:
    """Whether a refused manifest PUT may mean that a blob it references is missing
    (MANIFEST_BLOB_UNKNOWN or BLOB_UNKNOWN with 400/404, ECR's LayersNotFound with 400)."""
    status = error.status
    return status is not None and 400 <= status < 500 and status not in (401, 403, 429)


def _ping(client: RegistryClient) -> None:
    try:
        client.transport.ping()
    except Exception:  # remembered by the transport: the next request raises it
        return


class _Pusher:
    def __init__(
        self,
        client: RegistryClient,
        repository: str,
        locations: BlobLocations | None,
        mount_from: tuple[str, ...],
        progress: Progress,
    ) -> None:
        self.client = client
        self.repository = repository
        self.locations = locations
        self.mount_from = mount_from
        self.progress = progress
        self.seen: dict[str, tuple[str, ...]] = {}  # digest -> repositories, most recent first

    def look_up(self, blobs: Sequence[Blob]) -> None:
        """Where the records say each blob is on this registry."""
        if self.locations is None:
            return
        # exclude="": no repository has an empty name, so every recorded one is listed.
        digests = [blob.descriptor.digest for blob in blobs]
        self.seen = self.locations.candidates_of(self.client.registry, digests, exclude="")

    def recorded_here(self, blob: Blob) -> bool:
        return self.repository in self.seen.get(blob.descriptor.digest, ())

    def skip(self, blobs: Sequence[Blob]) -> None:
        for blob in blobs:
            self.progress.start(blob.descriptor, "push")
            self.client.stats.add(blobs_skipped=1, bytes_skipped=blob.descriptor.size)
            self.progress.finish(blob.descriptor, SKIPPED)

    def distrust(self, blobs: Sequence[Blob]) -> None:
        """Undo skip() for blobs whose records turned out doubtful."""
        for blob in blobs:
            digest = blob.descriptor.digest
            self.client.stats.add(blobs_skipped=-1, bytes_skipped=-blob.descriptor.size)
            self.seen[digest] = tuple(r for r in self.seen[digest] if r != self.repository)
            if self.locations is not None:
                self.locations.forget(self.client.registry, self.repository, digest)

    def send(self, blobs: Sequence[Blob]) -> None:
        run_all(self.client.transport, self._send_one, blobs, name="push")

    def _send_one(self, blob: Blob) -> None:
        client, repository, desc = self.client, self.repository, blob.descriptor
        self.progress.start(desc, "push")
        # distribution-spec: HEAD /v2/<name>/blobs/<digest> → 200 means nothing to upload.
        if not self._optimistic(blob) and (
            client.blob_size(repository, desc.digest, push=True, expected=desc.size) is not None
        ):
            client.stats.add(blobs_skipped=1, bytes_skipped=desc.size)
            self.progress.finish(desc, SKIPPED)
            return
        sources = list(self.mount_from)
        sources += [r for r in self.seen.get(desc.digest, ()) if r not in sources]
        stale: list[str] = []
        client.upload_blob(
            repository, blob, mount_from=tuple(sources), progress=self.progress,
            stale_sources=stale,
        )  # fmt: skip
        if self.locations is not None:
            for source in stale:  # the record was wrong: never try that source again
                self.locations.forget(client.registry, source, desc.digest)

    def _optimistic(self, blob: Blob) -> bool:
        """Whether to upload *blob* without a HEAD: small, in a repository the records
        know, and unknown to them."""
        return (
            not self.mount_from
            and blob.descriptor.size <= OPTIMISTIC_UPLOAD
            and not self.seen.get(blob.descriptor.digest)
            and any(self.repository in repositories for repositories in self.seen.values())
        )

    def put_manifest(self, image: Image, reference: str) -> str:
        return self.client.put_manifest(
            self.repository, reference, image.manifest_bytes, image.media_type
        )

    def record(self, blobs: Sequence[Blob]) -> None:
        if self.locations is not None and blobs:
            digests = [b.descriptor.digest for b in blobs]
            self.locations.record(self.client.registry, self.repository, digests)

    def record_in_background(self, blobs: Sequence[Blob]) -> threading.Thread | None:
        """record() in a thread, to overlap its database commit with the manifest PUT."""
        if self.locations is None or not blobs:
            return None
        thread = threading.Thread(target=self.record, args=(blobs,), name="mpkit-record")
        thread.start()
        return thread
