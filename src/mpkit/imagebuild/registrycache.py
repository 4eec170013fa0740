"""The team's registry as the shared cache of dependency layers and build records.

Resolving and downloading an adapter's Python requirements is the slow part of a first
build, and every fresh CI machine pays it again. The registry the team pushes to already
holds the dependency layer; this records, next to the image, which content key it was
built for, so another machine finds it there instead of asking the package index.

Each entry is a small OCI 1.1 artifact (image-spec manifest.md, "Guidelines for Artifact
Usage"): ``artifactType`` names it, the config is the empty descriptor ``{}``, and its one
layer *is* the dependency layer, by digest (in the image's own repository it takes no
upload). Its key and the layer's diff_id are annotations. It lives under a tag derived
from the key, ``mpkit-cache-<sha256 of the key>``: a lookup is one manifest GET. The
referrers API is not used because a lookup cannot name a subject: the image that would
be the subject depends on the very layer being looked for.

An entry is used only when its key annotation is exactly the key asked for and its layer
decompresses to the recorded diff_id (it is downloaded and checked before use); any
other entry is ignored with a warning, never used.

Build records (the adapter's definition by image digest, its API version by base digest)
travel the same way, as an artifact whose one layer is the record's JSON: a machine that
never ran the image need not run it to learn what another machine learnt.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mpkit.errors import ImageFormatError, MpkitError, NotFoundError
from mpkit.image import mediatypes as mt
from mpkit.image.cache import LayerCache
from mpkit.image.types import Blob, Descriptor, Image, Layer
from mpkit.jsonfile import parse_json
from mpkit.reference import Reference, Repository
from mpkit.registry.client import RegistryClient
from mpkit.registry.push import push_image
from mpkit.registry.session import open_client
from mpkit.registry.transport import ClientOptions
from mpkit.statedir import state_dir

ARTIFACT_TYPE = "application/vnd.mpkit.dependency-layer.v1"
EMPTY_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_DATA = b"{}"
KEY_ANNOTATION = "io.mpkit.cache.key"
DIFF_ID_ANNOTATION = "io.mpkit.cache.diff-id"
TAG_PREFIX = "mpkit-cache-"
RECORD_ARTIFACT_TYPE = "application/vnd.mpkit.build-record.v1"
RECORD_MEDIA_TYPE = "application/vnd.mpkit.build-record.v1+json"
MAX_RECORD_BYTES = 4 * 1024 * 1024
KEY_FORMAT = 1  # bump when what a key covers changes

Opener = Callable[[str], RegistryClient]  # a client for a registry host


def registry_key(base_digest: str, layer_key: str) -> str:
    """The key of a dependency layer in a registry: the base image (by digest) and the
    local key, which covers the requirement files, the target Python, the resolver and its
    version, and the index settings."""
    text = f"mpkit-registry-cache {KEY_FORMAT}\n{base_digest}\n{layer_key}"
    return hashlib.sha256(text.encode()).hexdigest()


def cache_tag(key: str) -> str:
    return TAG_PREFIX + key


def artifact(key: str, layer: Layer) -> Image:
    """The cache entry recording *layer* under *key*."""
    assert layer.diff_id is not None
    annotations = {KEY_ANNOTATION: key, DIFF_ID_ANNOTATION: layer.diff_id}
    return _artifact(ARTIFACT_TYPE, layer, annotations)


def record_key(name: str) -> str:
    return hashlib.sha256(f"mpkit-build-record {KEY_FORMAT}\n{name}".encode()).hexdigest()


def record_artifact(name: str, record: dict[str, Any]) -> Image:
    """The cache entry holding *record* under the name *name*."""
    data = json.dumps(record, sort_keys=True, separators=(",", ":")).encode()
    layer = Layer.from_blob(Blob.from_bytes(data, RECORD_MEDIA_TYPE))
    return _artifact(RECORD_ARTIFACT_TYPE, layer, {KEY_ANNOTATION: record_key(name)})


def _artifact(artifact_type: str, layer: Layer, annotations: dict[str, str]) -> Image:
    config = Blob.from_bytes(EMPTY_DATA, EMPTY_MEDIA_TYPE)
    manifest = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": config.descriptor.to_dict(),
        "layers": [layer.descriptor.to_dict()],
        "annotations": annotations,
    }
    data = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    return Image(data, config, [layer])


@dataclass
class RegistryLayerCache:
    """Where a build looks for dependency layers (*sources*, in order) and records the ones
    it made (*destination*), through clients from *open_client*."""

    sources: Sequence[Repository]
    destination: Repository | None
    open_client: Opener
    warn: Callable[[str], None] = lambda _message: None
    made: list[tuple[str, Layer]] = field(default_factory=list)
    records: dict[str, dict[str, Any]] = field(default_factory=dict)  # to publish, by name
    hits: int = 0
    opened: list[RegistryClient] = field(default_factory=list)  # closed by close()

    def close(self) -> None:
        for client in self.opened:
            client.close()
        self.opened.clear()

    def fetch(self, key: str, store: LayerCache) -> Layer | None:
        """The layer recorded under *key* in the first source that has a good entry, put
        into *store*; None when none has (a failing registry is a miss, with a warning)."""
        for repository in self.sources:
            try:
                layer = self._fetch_from(repository, key, store)
            except MpkitError as exc:
                self.warn(f"the registry cache in {repository} was not read: {exc.message}")
                continue
            if layer is not None:
                self.hits += 1
                return layer
        return None

    def _fetch_from(self, repository: Repository, key: str, store: LayerCache) -> Layer | None:
        client = self.open_client(repository.registry)
        try:
            manifest = client.get_manifest(repository.path, cache_tag(key))
        except NotFoundError:
            return None
        where = f"{repository}:{cache_tag(key)}"
        entry = _entry(manifest.data, key, where)
        if entry is None:
            self.warn(f"ignoring the registry cache entry {where}: it is not mpkit's entry "
                      "for this key (a poisoned or foreign tag)")  # fmt: skip
            return None
        descriptor, diff_id = entry
        try:
            with client.open_blob(repository.path, descriptor) as chunks:
                return store.fetched_layer(descriptor, diff_id, chunks)
        except ImageFormatError as exc:
            self.warn(f"ignoring the registry cache entry {where}: {exc.message}")
            return None

    def fetch_record(self, name: str) -> dict[str, Any] | None:
        """The build record published under *name*, from the first source that has a good
        one; None otherwise (a bad entry is ignored with a warning)."""
        key = record_key(name)
        for repository in self.sources:
            try:
                client = self.open_client(repository.registry)
                try:
                    manifest = client.get_manifest(repository.path, cache_tag(key))
                except NotFoundError:
                    continue
                where = f"{repository}:{cache_tag(key)}"
                descriptor = _record_entry(manifest.data, key, where)
                if descriptor is None:
                    self.warn(f"ignoring the registry cache entry {where}: it is not mpkit's "
                              "record for this key")  # fmt: skip
                    continue
                data = client.read_blob(repository.path, descriptor, limit=MAX_RECORD_BYTES)
                record = parse_json(data)
            except (MpkitError, ValueError) as exc:
                self.warn(f"the registry cache in {repository} was not read: {exc}")
                continue
            if isinstance(record, dict):
                self.hits += 1
                return record
        return None

    def remember_record(self, name: str, record: dict[str, Any]) -> None:
        """Publish *record* under *name* with the layers (see publish)."""
        if self.destination is not None:
            self.records[name] = record

    def remember(self, key: str, layer: Layer) -> None:
        """Record *layer* under *key* once the image is pushed (see publish)."""
        if self.destination is not None and layer.diff_id is not None:
            self.made.append((key, layer))

    def publish(self) -> int:
        """Push an entry for every layer this build made; how many. A failure is a
        warning: the build itself succeeded, only the next machine misses the cache."""
        if self.destination is None:
            return 0
        entries = [(key, artifact(key, layer), layer.digest) for key, layer in self.made]
        for name, record in self.records.items():
            entry = record_artifact(name, record)
            entries.append((record_key(name), entry, entry.digest))
        published = 0
        for key, entry, identity in entries:
            marker = _published_record(self.destination, key, identity)
            if marker.exists():
                continue  # this machine recorded it there before: no request needed
            target = Reference(self.destination, cache_tag(key), None)
            try:
                push_image(self.open_client(self.destination.registry), entry, target)
            except MpkitError as exc:
                self.warn(f"the build cache entry was not recorded in {self.destination}: "
                          f"{exc.message}")  # fmt: skip
                continue
            with contextlib.suppress(OSError):
                marker.parent.mkdir(parents=True, exist_ok=True)
                marker.touch()
            published += 1
        return published


def registry_cache_for(
    push: RegistryClient | None,
    push_repository: Repository | None,
    *,
    cache_from: Sequence[Repository] = (),
    cache_to: Repository | None = None,
    enabled: bool = True,
    options: ClientOptions | None = None,
    warn: Callable[[str], None] = lambda _message: None,
) -> RegistryLayerCache:
    """The registry cache of a build: read from *cache_from* and the push target, write to
    *cache_to* (default: the push target); when not *enabled*, one that does nothing. The
    push's own client (and its credentials) serves its registry; other registries get one
    with the stored logins."""
    sources = [*cache_from, *([push_repository] if push_repository else [])] if enabled else []
    destination = (cache_to or push_repository) if enabled else None
    clients: dict[str, RegistryClient] = {}
    if push is not None:
        clients[push.registry] = push

    def client_for(registry: str) -> RegistryClient:
        if registry not in clients:
            clients[registry] = open_client(registry, options=options)
            cache.opened.append(clients[registry])
        return clients[registry]

    cache = RegistryLayerCache(list(dict.fromkeys(sources)), destination, client_for, warn)
    return cache


def _published_record(destination: Repository, key: str, identity: str) -> Path:
    """The state file saying this machine recorded *identity* (the entry's digest) under
    *key* in *destination*."""
    name = hashlib.sha256(f"{destination}\n{key}\n{identity}".encode()).hexdigest()
    return state_dir() / "registry-cache" / name


def _entry(data: bytes, key: str, where: str) -> tuple[Descriptor, str] | None:
    """(layer descriptor, diff_id) of a well-formed entry for exactly *key*, else None."""
    try:
        manifest = parse_json(data)
        annotations = manifest.get("annotations") or {}
        layers = manifest.get("layers") or []
        if (
            manifest.get("artifactType") != ARTIFACT_TYPE
            or annotations.get(KEY_ANNOTATION) != key
            or len(layers) != 1
        ):
            return None
        descriptor = Descriptor.from_dict(layers[0], where=where)
        diff_id = str(annotations[DIFF_ID_ANNOTATION])
    except (ValueError, AttributeError, KeyError, TypeError, ImageFormatError):
        return None
    if descriptor.media_type not in (mt.OCI_LAYER_GZIP, mt.DOCKER_LAYER_GZIP):
        return None
    return descriptor, diff_id


def _record_entry(data: bytes, key: str, where: str) -> Descriptor | None:
    """The record blob's descriptor of a well-formed record entry for *key*, else None."""
    try:
        manifest = parse_json(data)
        layers = manifest.get("layers") or []
        if (
            manifest.get("artifactType") != RECORD_ARTIFACT_TYPE
            or (manifest.get("annotations") or {}).get(KEY_ANNOTATION) != key
            or len(layers) != 1
        ):
            return None
        descriptor = Descriptor.from_dict(layers[0], where=where)
    except (ValueError, AttributeError, TypeError, ImageFormatError):
        return None
    if descriptor.media_type != RECORD_MEDIA_TYPE or descriptor.size > MAX_RECORD_BYTES:
        return None
    return descriptor
