"""Core image model: Platform, Descriptor, Blob, Layer, Image and ImageIndex.

An ``Image`` is exact manifest bytes plus openable blobs; its digest is always
computed from those bytes, never from a re-serialised dict.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from mpkit.errors import ImageFormatError, UsageError
from mpkit.image import mediatypes as mt
from mpkit.image.digest import compute_digest, digest_algorithm, validate_digest
from mpkit.jsonfile import parse_json

MAX_MANIFEST_SIZE = 4 << 20  # distribution registries refuse manifests above 4 MiB
MAX_CONFIG_SIZE = 64 << 20

_ARCH_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "armhf": "arm"}

BlobT = TypeVar("BlobT", bound="Blob")


def normalize_architecture(arch: str) -> str:
    """``x86_64`` -> ``amd64``, ``aarch64`` -> ``arm64`` (the Go/OCI names)."""
    arch = arch.lower()
    return _ARCH_ALIASES.get(arch, arch)


@dataclass(frozen=True)
class Platform:
    """os/architecture[/variant] as in image-index.md ``platform``."""

    os: str
    architecture: str
    variant: str | None = None
    os_version: str | None = None

    @classmethod
    def parse(cls, text: str) -> Platform:
        """Parse ``os/arch`` or ``os/arch/variant`` (e.g. ``linux/arm64/v8``)."""
        parts = text.strip().split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise UsageError(
                f"{text!r} is not a platform",
                hint="write a platform as os/architecture[/variant], e.g. linux/amd64",
            )
        os_name = parts[0].lower()
        arch = normalize_architecture(parts[1])
        variant = parts[2].lower() if len(parts) == 3 else None
        return cls(os=os_name, architecture=arch, variant=variant)

    def __str__(self) -> str:
        text = f"{self.os}/{self.architecture}"
        return f"{text}/{self.variant}" if self.variant else text

    def to_dict(self) -> dict[str, str]:
        out = {"architecture": self.architecture, "os": self.os}
        if self.os_version:
            out["os.version"] = self.os_version
        if self.variant:
            out["variant"] = self.variant
        return out

    @classmethod
    def from_dict(cls, data: object) -> Platform:
        if not isinstance(data, Mapping):
            raise ImageFormatError(f"a platform must be a JSON object, got {data!r}")
        os_name = data.get("os")
        arch = data.get("architecture")
        if not isinstance(os_name, str) or not isinstance(arch, str) or not os_name or not arch:
            raise ImageFormatError(
                f"platform {dict(data)!r} lacks the string fields 'os' and 'architecture'"
            )
        variant = data.get("variant")
        os_version = data.get("os.version")
        return cls(
            os=os_name,
            architecture=arch,
            variant=variant if isinstance(variant, str) and variant else None,
            os_version=os_version if isinstance(os_version, str) and os_version else None,
        )


@dataclass(frozen=True)
class Descriptor:
    """A content descriptor (descriptor.md); ``to_dict`` uses the OCI JSON field names."""

    media_type: str
    digest: str
    size: int
    platform: Platform | None = None
    annotations: Mapping[str, str] | None = field(default=None, hash=False)
    urls: tuple[str, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.urls:
            out["urls"] = list(self.urls)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform is not None:
            out["platform"] = self.platform.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: object, *, where: str = "descriptor") -> Descriptor:
        """Build and validate a descriptor; *where* names it in error messages."""
        if not isinstance(data, Mapping):
            raise ImageFormatError(f"{where} must be a JSON object, got {type(data).__name__}")
        media_type = data.get("mediaType")
        if not isinstance(media_type, str) or not media_type:
            raise ImageFormatError(f"{where} has no string 'mediaType'")
        digest = data.get("digest")
        if not isinstance(digest, str):
            raise ImageFormatError(f"{where} has no string 'digest'")
        try:
            validate_digest(digest)
        except ImageFormatError as exc:
            raise ImageFormatError(f"{where}: {exc.message}", hint=exc.hint) from None
        size = data.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ImageFormatError(f"{where} has no non-negative integer 'size'")
        platform = data.get("platform")
        annotations = data.get("annotations")
        if annotations is not None and not (
            isinstance(annotations, Mapping)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in annotations.items())
        ):
            raise ImageFormatError(f"{where} has 'annotations' that are not a string map")
        urls = data.get("urls")
        if urls is not None and not (
            isinstance(urls, list) and all(isinstance(u, str) for u in urls)
        ):
            raise ImageFormatError(f"{where} has 'urls' that are not a list of strings")
        return cls(
            media_type=media_type,
            digest=digest,
            size=size,
            platform=Platform.from_dict(platform) if platform is not None else None,
            annotations=dict(annotations) if annotations else None,
            urls=tuple(urls) if urls else None,
        )

    def annotation(self, key: str) -> str | None:
        return self.annotations.get(key) if self.annotations else None


class Blob:
    """Content known by its descriptor that can be opened any number of times.

    ``path`` is set when the bytes are exactly one whole local file, so callers
    may stat or sendfile it.
    """

    def __init__(
        self,
        descriptor: Descriptor,
        opener: Callable[[], BinaryIO],
        *,
        path: Path | None = None,
    ) -> None:
        self.descriptor = descriptor
        self.path = path
        self._opener = opener

    def open(self) -> BinaryIO:
        """A new stream over the blob's bytes; the caller closes it."""
        return self._opener()

    @property
    def digest(self) -> str:
        return self.descriptor.digest

    @property
    def size(self) -> int:
        return self.descriptor.size

    @property
    def media_type(self) -> str:
        return self.descriptor.media_type

    def read_bytes(self, limit: int = MAX_CONFIG_SIZE) -> bytes:
        """Read the whole blob (small blobs only), checking its size and digest."""
        if self.size > limit:
            raise ImageFormatError(
                f"blob {self.digest} is {self.size} bytes, more than the {limit} allowed here"
            )
        with self.open() as stream:
            data = stream.read(self.size + 1)
        if len(data) != self.size or compute_digest(data, digest_algorithm(self.digest)) != (
            self.digest
        ):
            raise ImageFormatError(
                f"blob {self.digest} does not match its descriptor "
                f"(read {len(data)} bytes, expected {self.size})",
                hint="the image source is corrupt; recreate it",
            )
        return data

    @classmethod
    def from_bytes(
        cls: type[BlobT],
        data: bytes,
        media_type: str,
        *,
        annotations: Mapping[str, str] | None = None,
    ) -> BlobT:
        descriptor = Descriptor(
            media_type, compute_digest(data), len(data), annotations=annotations
        )
        return cls.in_memory(descriptor, data)

    @classmethod
    def in_memory(cls: type[BlobT], descriptor: Descriptor, data: bytes) -> BlobT:
        """In-memory blob under an existing descriptor (not re-verified)."""
        return cls(descriptor, lambda: io.BytesIO(data))

    @classmethod
    def from_file(cls: type[BlobT], path: Path, descriptor: Descriptor) -> BlobT:
        return cls(descriptor, lambda: open(path, "rb"), path=path)

    def __repr__(self) -> str:
        where = f", path={str(self.path)!r}" if self.path else ""
        return f"{type(self).__name__}({self.media_type!r}, {self.digest!r}, {self.size}{where})"


class Layer(Blob):
    """A layer blob; ``diff_id`` is the sha256 of its uncompressed tar, when known."""

    def __init__(
        self,
        descriptor: Descriptor,
        opener: Callable[[], BinaryIO],
        *,
        path: Path | None = None,
        diff_id: str | None = None,
    ) -> None:
        super().__init__(descriptor, opener, path=path)
        self.diff_id = diff_id

    @classmethod
    def from_blob(cls, blob: Blob, diff_id: str | None = None) -> Layer:
        return cls(blob.descriptor, blob.open, path=blob.path, diff_id=diff_id)


def parse_json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        parsed = parse_json(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ImageFormatError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise ImageFormatError(f"{what} must be a JSON object")
    return parsed


def _schema2_object(data: bytes, what: str) -> dict[str, Any]:
    """A manifest or index document: a JSON object with schemaVersion 2."""
    document = parse_json_object(data, what)
    if document.get("schemaVersion") != 2:
        raise ImageFormatError(f"{what} does not have schemaVersion 2")
    return document


@dataclass
class Image:
    """A single-platform image: exact manifest bytes, a config blob and layers."""

    manifest_bytes: bytes
    config: Blob
    layers: list[Layer]
    _config_bytes: bytes | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        manifest = self.manifest
        config = Descriptor.from_dict(manifest.get("config"), where="manifest config")
        if config.digest != self.config.digest or config.size != self.config.size:
            raise ImageFormatError(
                f"the manifest names config {config.digest} but the image carries "
                f"{self.config.digest}"
            )
        raw_layers = manifest.get("layers")
        if not isinstance(raw_layers, list) or len(raw_layers) != len(self.layers):
            raise ImageFormatError("the manifest's 'layers' do not match the image's layers")
        for i, (raw, layer) in enumerate(zip(raw_layers, self.layers, strict=True)):
            desc = Descriptor.from_dict(raw, where=f"manifest layer {i}")
            if desc.digest != layer.digest or desc.size != layer.size:
                raise ImageFormatError(
                    f"manifest layer {i} is {desc.digest} but the image carries {layer.digest}"
                )

    @property
    def manifest(self) -> dict[str, Any]:
        return _schema2_object(self.manifest_bytes, "the image manifest")

    @property
    def media_type(self) -> str:
        declared = self.manifest.get("mediaType")
        if isinstance(declared, str) and declared:
            return declared
        # image-spec manifest.md: mediaType is optional; infer from the config type.
        return mt.DOCKER_MANIFEST if self.config.media_type == mt.DOCKER_CONFIG else mt.OCI_MANIFEST

    @property
    def digest(self) -> str:
        return compute_digest(self.manifest_bytes)

    @property
    def descriptor(self) -> Descriptor:
        return Descriptor(self.media_type, self.digest, len(self.manifest_bytes))

    @property
    def config_bytes(self) -> bytes:
        if self._config_bytes is None:
            self._config_bytes = self.config.read_bytes()
        return self._config_bytes

    @property
    def config_json(self) -> dict[str, Any]:
        return parse_json_object(self.config_bytes, "the image config")

    @property
    def platform(self) -> Platform | None:
        """os/architecture/variant from the config; None when it has none (artifacts)."""
        config = self.config_json
        if not isinstance(config.get("os"), str) or not isinstance(config.get("architecture"), str):
            return None
        return Platform.from_dict(config)

    @property
    def diff_ids(self) -> list[str]:
        rootfs = self.config_json.get("rootfs")
        ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise ImageFormatError("the image config has no rootfs.diff_ids list")
        return list(ids)

    def blobs(self) -> list[Blob]:
        """Config then layers, each digest once, in layer order."""
        seen: set[str] = set()
        out: list[Blob] = []
        for blob in [self.config, *self.layers]:
            if blob.digest not in seen:
                seen.add(blob.digest)
                out.append(blob)
        return out

    @property
    def size(self) -> int:
        """Bytes of manifest plus every distinct blob."""
        return len(self.manifest_bytes) + sum(blob.size for blob in self.blobs())


@dataclass
class ImageIndex:
    """An image index / manifest list; ``loader`` fetches a child image."""

    index_bytes: bytes
    loader: Callable[[Descriptor], Image] | None = field(default=None, repr=False, compare=False)
    manifests: list[Descriptor] = field(init=False)

    def __post_init__(self) -> None:
        index = self.index
        raw = index.get("manifests")
        if not isinstance(raw, list):
            raise ImageFormatError("the image index has no 'manifests' list")
        self.manifests = [
            Descriptor.from_dict(item, where=f"image index entry {i}") for i, item in enumerate(raw)
        ]

    @property
    def index(self) -> dict[str, Any]:
        return _schema2_object(self.index_bytes, "the image index")

    @property
    def media_type(self) -> str:
        declared = self.index.get("mediaType")
        return declared if isinstance(declared, str) and declared else mt.OCI_INDEX

    @property
    def digest(self) -> str:
        return compute_digest(self.index_bytes)

    @property
    def descriptor(self) -> Descriptor:
        return Descriptor(self.media_type, self.digest, len(self.index_bytes))

    def image(self, descriptor: Descriptor) -> Image:
        if self.loader is None:
            raise ImageFormatError("this image index cannot load its child manifests")
        return self.loader(descriptor)
