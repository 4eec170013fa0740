"""Resolve and pull images: platform selection from an index, verified blob downloads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mpkit.errors import ImageFormatError, RegistryUnreachableError
from mpkit.image import mediatypes
from mpkit.image.layout import OCILayoutWriter
from mpkit.image.select import DEFAULT_PLATFORM, select_platform
from mpkit.image.types import Descriptor, Platform
from mpkit.jsonfile import parse_json
from mpkit.reference import Reference
from mpkit.registry.client import Manifest, RegistryClient
from mpkit.registry.locations import BlobLocations
from mpkit.registry.parallel import run_all
from mpkit.registry.progress import CACHED, DOWNLOADED, NoProgress, Progress
from mpkit.registry.stats import TransferStats


@dataclass(frozen=True)
class ResolvedImage:
    """An image manifest found for a reference, and the index it was picked from."""

    manifest: Manifest
    parsed: dict[str, Any]
    index: Manifest | None
    platforms: tuple[Platform, ...]  # every platform the index offers (empty without index)

    @property
    def config(self) -> Descriptor:
        return Descriptor.from_dict(self.parsed["config"])

    @property
    def layers(self) -> list[Descriptor]:
        return [Descriptor.from_dict(d) for d in self.parsed.get("layers", [])]


def resolve_image(
    client: RegistryClient, ref: Reference, platform: Platform = DEFAULT_PLATFORM
) -> ResolvedImage:
    """GET the manifest for *ref*; descend from an index to the *platform* image."""
    repository = ref.path
    top = client.get_manifest(repository, ref.identifier)
    parsed = _parse(top, client.registry, repository)
    if top.media_type not in mediatypes.INDEX_MEDIA_TYPES and "manifests" not in parsed:
        _require_image_manifest(top, parsed, client.registry, repository)
        return ResolvedImage(manifest=top, parsed=parsed, index=None, platforms=())
    children = [Descriptor.from_dict(d) for d in parsed.get("manifests", [])]
    chosen = select_platform(children, platform)
    child = client.get_manifest(repository, chosen.digest)
    child_parsed = _parse(child, client.registry, repository)
    _require_image_manifest(child, child_parsed, client.registry, repository)
    platforms = tuple(d.platform for d in children if d.platform is not None)
    return ResolvedImage(manifest=child, parsed=child_parsed, index=top, platforms=platforms)


@dataclass(frozen=True)
class PullResult:
    digest: str  # digest of the image manifest written
    index_digest: str | None
    stats: TransferStats


def pull_image(
    client: RegistryClient,
    ref: Reference,
    writer: OCILayoutWriter,
    *,
    tag: str | None,
    platform: Platform = DEFAULT_PLATFORM,
    locations: BlobLocations | None = None,
    progress: Progress | None = None,
) -> PullResult:
    """Download the image for *ref* into an OCI layout, verifying every digest."""
    progress = progress or NoProgress()
    resolved = resolve_image(client, ref, platform)
    repository = ref.path
    blobs = [resolved.config, *resolved.layers]
    policy = client.transport.options.retry

    def fetch(desc: Descriptor) -> None:
        progress.start(desc, "pull")
        if writer.has_blob(desc.digest, desc.size):
            progress.finish(desc, CACHED)
            return
        for attempt in range(1, policy.attempts + 1):
            try:
                with client.open_blob(repository, desc) as chunks:
                    writer.write_blob(desc.digest, desc.size, _advancing(chunks, desc, progress))
                break
            except RegistryUnreachableError:
                # A dropped download restarts (the writer keeps no partial file).
                if attempt == policy.attempts:
                    raise
                progress.reset(desc)
                client.stats.add(retries=1)
                client.transport.retrying.pause(attempt)
        progress.finish(desc, DOWNLOADED)

    run_all(client.transport, fetch, _unique(blobs), name="pull")
    manifest_desc = writer.write_bytes_blob(resolved.manifest.data, resolved.manifest.media_type)
    writer.add_manifest(manifest_desc, tag)
    if locations is not None:
        locations.record(client.registry, repository, [d.digest for d in blobs])
    return PullResult(
        digest=resolved.manifest.digest,
        index_digest=resolved.index.digest if resolved.index else None,
        stats=client.stats,
    )


def _advancing(chunks: Any, desc: Descriptor, progress: Progress) -> Any:
    for data in chunks:
        progress.advance(desc, len(data))
        yield data


def _unique(descs: list[Descriptor]) -> list[Descriptor]:
    seen: dict[str, Descriptor] = {}
    for desc in descs:
        seen.setdefault(desc.digest, desc)
    return list(seen.values())


def _parse(manifest: Manifest, registry: str, repository: str) -> dict[str, Any]:
    try:
        parsed = parse_json(manifest.data)
    except ValueError as exc:
        raise ImageFormatError(
            f"manifest {manifest.digest} in {registry}/{repository} is not valid JSON: {exc}"
        ) from exc
    if not isinstance(parsed, dict):
        raise ImageFormatError(
            f"manifest {manifest.digest} in {registry}/{repository} is not an object"
        )
    return parsed


def _require_image_manifest(
    manifest: Manifest, parsed: dict[str, Any], registry: str, repository: str
) -> None:
    if manifest.media_type not in mediatypes.MANIFEST_MEDIA_TYPES or "config" not in parsed:
        raise ImageFormatError(
            f"{registry}/{repository}@{manifest.digest} is a {manifest.media_type or 'unknown'} "
            "document, not a container image manifest",
            hint="mpkit handles OCI and Docker v2 schema 2 images and indexes",
        )
