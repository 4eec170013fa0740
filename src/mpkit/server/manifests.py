"""Manifest validation for PUT: media type, structure, and what a manifest references."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from mpkit.image.mediatypes import (
    INDEX_MEDIA_TYPES,
    MANIFEST_MEDIA_TYPES,
    OCI_INDEX,
    OCI_MANIFEST,
)
from mpkit.server.apierrors import MANIFEST_INVALID, ApiError
from mpkit.server.names import valid_digest

MANIFEST_TYPES = MANIFEST_MEDIA_TYPES | INDEX_MEDIA_TYPES  # what a manifest PUT may store
SCHEMA1_TYPES = frozenset(
    {
        "application/vnd.docker.distribution.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
    }
)
# Layers that registries need not hold (they carry "urls"): Docker foreign layers and
# OCI non-distributable layers.
_FOREIGN_LAYER = re.compile(
    r"application/vnd\.docker\.image\.rootfs\.foreign\.diff\.tar(\.gzip)?"
    r"|application/vnd\.oci\.image\.layer\.nondistributable\.v1\.tar(\+gzip|\+zstd)?"
)
_MEDIA_TYPE = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
)


@dataclass(frozen=True)
class Reference:
    """A descriptor the manifest points at."""

    digest: str
    size: int
    media_type: str
    optional: bool = False  # foreign/non-distributable layer with URLs


@dataclass
class ParsedManifest:
    media_type: str
    blobs: list[Reference] = field(default_factory=list)  # config and layers
    children: list[Reference] = field(default_factory=list)  # index entries
    subject: Reference | None = None
    artifact_type: str | None = None
    annotations: dict[str, str] | None = None
    config_media_type: str | None = None

    def referrer_descriptor(self, digest: str, size: int) -> dict[str, Any]:
        """The entry this manifest gets in its subject's referrers list."""
        # distribution-spec "Listing Referrers": artifactType falls back to the config
        # media type for image manifests, and is omitted for an index without one.
        artifact_type = self.artifact_type
        if not artifact_type and self.media_type in MANIFEST_MEDIA_TYPES:
            artifact_type = self.config_media_type
        descriptor: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": digest,
            "size": size,
        }
        if artifact_type:
            descriptor["artifactType"] = artifact_type
        if self.annotations:
            descriptor["annotations"] = self.annotations
        return descriptor


def invalid(message: str) -> ApiError:
    return ApiError(400, MANIFEST_INVALID, message)


def base_media_type(content_type: str | None) -> str:
    # distribution-spec: registries SHOULD ignore parameters on Content-Type.
    return (content_type or "").split(";", 1)[0].strip().lower()


def parse_manifest(data: bytes, content_type: str | None) -> ParsedManifest:
    """Validate *data* as an image manifest or index; ApiError 400 MANIFEST_INVALID if not."""
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise invalid(f"the manifest is not valid JSON: {exc}") from exc
    except RecursionError:  # a hostile client's deeply nested document
        raise invalid("the manifest nests too deeply") from None
    if not isinstance(document, dict):
        raise invalid("the manifest is not a JSON object")
    header_type = base_media_type(content_type)
    field_type = document.get("mediaType")
    if field_type is not None and not isinstance(field_type, str):
        raise invalid("mediaType must be a string")
    if document.get("schemaVersion") == 1 or header_type in SCHEMA1_TYPES:
        raise invalid("Docker schema 1 manifests are not supported; push schema 2 or OCI")
    if document.get("schemaVersion") != 2:
        raise invalid("schemaVersion must be 2")
    media_type = field_type or (header_type if header_type in MANIFEST_TYPES else None)
    if media_type is None:
        media_type = OCI_INDEX if "manifests" in document else OCI_MANIFEST
    if media_type not in MANIFEST_TYPES:
        raise invalid(f"media type {media_type!r} is not a manifest type this registry stores")
    if field_type and header_type in MANIFEST_TYPES and header_type != field_type:
        # distribution-spec: Content-Type MUST equal the manifest's mediaType field.
        raise invalid(f"Content-Type {header_type!r} does not match mediaType {field_type!r}")
    parsed = ParsedManifest(media_type=media_type)
    if media_type in MANIFEST_MEDIA_TYPES:
        config = _descriptor(document.get("config"), "config")
        parsed.config_media_type = config.media_type
        parsed.blobs.append(config)
        layers = document.get("layers", [])
        if not isinstance(layers, list):
            raise invalid("layers must be a list")
        parsed.blobs += [_descriptor(layer, f"layers[{i}]") for i, layer in enumerate(layers)]
    else:
        children = document.get("manifests")
        if not isinstance(children, list):
            raise invalid("an index needs a 'manifests' list")
        parsed.children = [_descriptor(c, f"manifests[{i}]") for i, c in enumerate(children)]
    if document.get("subject") is not None:
        parsed.subject = _descriptor(document["subject"], "subject")
    artifact_type = document.get("artifactType")
    if artifact_type is not None:
        if not isinstance(artifact_type, str) or not _MEDIA_TYPE.fullmatch(artifact_type):
            raise invalid("artifactType must be a media type")
        parsed.artifact_type = artifact_type
    annotations = document.get("annotations")
    if annotations is not None:
        if not isinstance(annotations, dict) or not all(
            isinstance(v, str) for v in annotations.values()
        ):
            raise invalid("annotations must map strings to strings")
        parsed.annotations = annotations
    return parsed


def _descriptor(value: Any, where: str) -> Reference:
    if not isinstance(value, dict):
        raise invalid(f"{where} must be a descriptor object")
    digest = value.get("digest")
    size = value.get("size")
    media_type = value.get("mediaType")
    if not isinstance(digest, str) or not valid_digest(digest):
        raise invalid(f"{where}.digest {str(digest)[:80]!r} is not a sha256 or sha512 digest")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise invalid(f"{where}.size must be a non-negative integer")
    if not isinstance(media_type, str) or not _MEDIA_TYPE.fullmatch(media_type):
        raise invalid(f"{where}.mediaType must be a media type")
    optional = bool(_FOREIGN_LAYER.fullmatch(media_type) and value.get("urls"))
    return Reference(digest, size, media_type, optional)
