"""Find, pull and cache the base image of a build: aliases, mirrors, digest pinning.

The cache is an OCI layout at the mpkit cache root, so its blobs are shared with the
layer store (mpkit.image.cache); index.json remembers which reference resolved to which
digest, which lets an offline build reuse the last pull (with a warning). A tag resolved less than
``base_recheck_seconds`` ago is not asked again (``<cache>/base-checks/``), as
``podman build`` and docker's classic builder reuse a local base; a digest-pinned base
whose blobs are cached needs no registry at all.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mpkit.cache.root import CacheRoot
from mpkit.engine import EngineChoice, find_engines
from mpkit.errors import BaseImageError, ImageFormatError, InvalidReferenceError, RegistryError
from mpkit.image import mediatypes
from mpkit.image.layout import OCILayoutWriter
from mpkit.image.select import DEFAULT_PLATFORM
from mpkit.image.types import Blob, Descriptor, Image, Layer, Platform
from mpkit.imagebuild.sdkmanual import ManualContext, describe_base, publish_by_hand
from mpkit.imagebuild.sdkrecipes import LOCAL_BASE
from mpkit.reference import Reference, parse_reference
from mpkit.registry import blob_locations, open_client, resolve_image
from mpkit.registry.transport import ClientOptions
from mpkit.settings import ALIASES_ENV, Settings

REF_NAME = "org.opencontainers.image.ref.name"


@dataclass(frozen=True)
class BaseImage:
    """A pulled, digest-pinned base (or ``scratch``: no layers, empty config)."""

    name: str  # as written after FROM
    canonical: Reference | None  # upstream reference pinned by digest (None for scratch)
    source: str  # where it came from: the reference used, or "cache (offline)"
    manifest_media_type: str
    config: dict[str, Any] = field(default_factory=dict)
    layers: list[Layer] = field(default_factory=list)

    @property
    def digest(self) -> str | None:
        return self.canonical.digest if self.canonical else None

    @property
    def oci(self) -> bool:
        return self.manifest_media_type == mediatypes.OCI_MANIFEST


def scratch() -> BaseImage:
    return BaseImage("scratch", None, "scratch", mediatypes.OCI_MANIFEST, {}, [])


def base_reference(name: str, settings: Settings) -> Reference:
    """The registry reference FROM *name* means, after image aliases."""
    alias = settings.aliases.get(name)
    if alias is not None:
        try:
            return parse_reference(alias)
        except InvalidReferenceError as exc:
            raise BaseImageError(
                f"the image alias for {name!r} is not a valid reference: {exc.message}",
                hint=f"fix 'aliases' in {settings.path} or {ALIASES_ENV}",
            ) from exc
    if LOCAL_BASE.match(name):
        engines = find_engines(EngineChoice.AUTO)
        manual = ManualContext(project=None, target=None,
                               engine=engines[0].name if engines else None,
                               settings=settings)  # fmt: skip
        raise BaseImageError(
            f"{describe_base(name)}; no registry serves it and no image alias points at it",
            hint="'mpkit build' publishes it by itself, next to the adapter; by hand, "
            + publish_by_hand(name, manual),
        )
    try:
        return parse_reference(name)
    except InvalidReferenceError as exc:
        raise BaseImageError(f"FROM {name!r}: {exc.message}", hint=exc.hint) from exc


def mirror_candidates(ref: Reference, settings: Settings) -> list[Reference]:
    """Mirrors first (in the configured order), then the upstream reference."""
    out = []
    for mirror in settings.mirrors.get(ref.registry, ()):
        text = f"{mirror.rstrip('/')}/{ref.path}"
        if ref.tag:
            text += f":{ref.tag}"
        if ref.digest:
            text += f"@{ref.digest}"
        out.append(parse_reference(text))
    return [*out, ref]


class BaseResolver:
    """Pulls bases into the cache layout; one instance per build."""

    def __init__(
        self,
        cache: CacheRoot,
        *,
        settings: Settings,
        options: ClientOptions,
        platform: Platform = DEFAULT_PLATFORM,
        warn: Callable[[str], None] = lambda _message: None,
        recheck: bool = False,
    ) -> None:
        """*recheck*: ask the registry even if the tag was resolved recently (--pull)."""
        self.recheck = recheck
        self.store = OCILayoutWriter(cache.path, temp_dir=cache.tmp)
        self.cache = cache
        self.settings = settings
        self.options = options
        self.platform = platform
        self.warn = warn

    def resolve(self, name: str) -> BaseImage:
        if name == "scratch":
            return scratch()
        upstream = base_reference(name, self.settings)
        recent = None if self.recheck else self._recently_resolved(name, upstream)
        if recent is not None:
            return recent
        errors: list[tuple[Reference, RegistryError]] = []
        for candidate in mirror_candidates(upstream, self.settings):
            try:
                return self._pull(name, upstream, candidate)
            except RegistryError as exc:
                errors.append((candidate, exc))
        offline = self._cached(name, upstream)
        if offline is not None:
            self.warn(
                f"could not reach a registry for {upstream} ({errors[-1][1].message}); "
                f"using the copy pulled earlier ({offline.digest})"
            )
            return offline
        candidate, last = errors[-1]
        if len(errors) > 1:
            tried = ", ".join(str(c) for c, _ in errors)
            last.message = f"{last.message} (tried {tried})"
        raise last

    def _pull(self, name: str, upstream: Reference, candidate: Reference) -> BaseImage:
        with open_client(candidate.registry, options=self.options) as client:
            resolved = resolve_image(client, candidate, self.platform)
            blobs = [resolved.config, *resolved.layers]
            for desc in blobs:
                if not self.store.has_blob(desc.digest, desc.size):
                    with client.open_blob(candidate.path, desc) as chunks:
                        self.store.write_blob(desc.digest, desc.size, chunks)
        _remember_location(candidate, [d.digest for d in blobs])
        manifest = self.store.write_bytes_blob(resolved.manifest.data, resolved.manifest.media_type)
        self.store.add_manifest(manifest, _ref_name(upstream))
        pinned = upstream.with_digest(resolved.manifest.digest)
        self._note_check(upstream, candidate, manifest)
        return self._load(name, pinned, str(candidate), manifest)

    def _recently_resolved(self, name: str, upstream: Reference) -> BaseImage | None:
        """The cached base if a registry confirmed this tag within the re-check window,
        or if the reference is pinned by digest (immutable) and fully cached."""
        if upstream.digest:
            base = self._cached(name, upstream, source="cache (pinned by digest)")
            return base if base is not None and self._complete(base) else None
        window = self.settings.base_recheck_seconds
        if window <= 0:
            return None
        try:
            record = json.loads(self._check_path(upstream).read_bytes())
            age = time.time() - float(record["checked_at"])
            manifest = Descriptor.from_dict(record["manifest"])
            source = str(record["source"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not 0 <= age < window or not self.store.has_blob(manifest.digest, manifest.size):
            return None
        pinned = upstream.with_digest(manifest.digest)
        try:
            base = self._load(name, pinned, f"{source}, checked {age:.0f} s ago", manifest)
            origin = parse_reference(source)
        except (ImageFormatError, InvalidReferenceError, OSError, ValueError, KeyError):
            return None
        if not self._complete(base):
            return None
        # Where the blobs live matters to the push (a mount instead of an upload), and the
        # record of it may be newer than this cache (another user, a wiped state dir).
        _remember_location(origin, [layer.descriptor.digest for layer in base.layers])
        return base

    def _complete(self, base: BaseImage) -> bool:
        return all(
            self.store.has_blob(layer.descriptor.digest, layer.descriptor.size)
            for layer in base.layers
        )

    def _note_check(self, upstream: Reference, candidate: Reference, manifest: Descriptor) -> None:
        record = {
            "reference": _ref_name(upstream),
            "source": str(candidate),
            "checked_at": time.time(),
            "manifest": manifest.to_dict(),
        }
        self.cache.write_bytes(self._check_path(upstream), json.dumps(record).encode())

    def _check_path(self, upstream: Reference) -> Path:
        name = hashlib.sha256(_ref_name(upstream).encode()).hexdigest()[:32]
        return self.cache.base_checks / f"{name}.json"

    def _cached(
        self, name: str, upstream: Reference, source: str = "cache (offline)"
    ) -> BaseImage | None:
        try:
            index = json.loads(self.cache.index_file.read_bytes())
        except (OSError, ValueError):
            return None
        for entry in index.get("manifests", []):
            if (entry.get("annotations") or {}).get(REF_NAME) == _ref_name(upstream):
                desc = Descriptor.from_dict(entry)
                pinned = upstream.with_digest(desc.digest)
                try:
                    return self._load(name, pinned, source, desc)
                except (ImageFormatError, OSError):
                    return None
        return None

    def _load(self, name: str, pinned: Reference, source: str, manifest: Descriptor) -> BaseImage:
        parsed = json.loads(self.store.blob_path(manifest.digest).read_bytes())
        config_desc = Descriptor.from_dict(parsed["config"])
        config = json.loads(self.store.blob_path(config_desc.digest).read_bytes())
        diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
        layers = []
        for number, item in enumerate(parsed.get("layers", [])):
            desc = Descriptor.from_dict(item)
            path = self.store.blob_path(desc.digest)
            blob = Blob.from_file(path, desc)
            diff_id = diff_ids[number] if number < len(diff_ids) else None
            layers.append(Layer.from_blob(blob, diff_id))
        media_type = parsed.get("mediaType") or manifest.media_type
        return BaseImage(name, pinned, source, str(media_type), config, layers)


def remember_base(cache: CacheRoot, reference: Reference, image: Image) -> None:
    """Keep *image*, just published as *reference* (pinned by digest), as a pulled base:
    a build FROM it then reads it from the cache instead of pulling it back."""
    if reference.digest != image.digest:
        raise ValueError(f"{reference} does not name image {image.digest}")
    store = OCILayoutWriter(cache.path, temp_dir=cache.tmp)
    store.write_image(image, _ref_name(reference))


def _remember_location(source: Reference, digests: list[str]) -> None:
    """Record where the base's blobs are, so that a push to the same registry can mount
    them instead of uploading them (unless recorded already: a write costs an fsync)."""
    locations = blob_locations()
    # exclude="": no repository has an empty name, so every recorded one is listed.
    known = locations.candidates_of(source.registry, digests, exclude="")
    if any(source.path not in repositories for repositories in known.values()):
        locations.record(source.registry, source.path, digests)


def _ref_name(ref: Reference) -> str:
    return f"{ref.registry}/{ref.path}:{ref.tag or 'latest'}" if not ref.digest else str(ref)
