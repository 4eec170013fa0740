"""Media types of manifests, indexes, configs and layers (OCI and Docker v2 schema 2)."""

from __future__ import annotations

# image-spec media-types.md
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYOUT_VERSION = "1.0.0"

# Docker image manifest v2 schema 2: layers are gzip only (plus "foreign" ones).
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_LAYER_GZIP = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

MANIFEST_MEDIA_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEX_MEDIA_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
CONFIG_MEDIA_TYPES = frozenset({OCI_CONFIG, DOCKER_CONFIG})
LAYER_MEDIA_TYPES = frozenset(
    {
        OCI_LAYER_TAR,
        OCI_LAYER_GZIP,
        OCI_LAYER_ZSTD,
        DOCKER_LAYER_GZIP,
        DOCKER_FOREIGN_LAYER_GZIP,
    }
)

# Value of the Accept header for GET/HEAD /v2/<name>/manifests/<ref>, preferred first.
ACCEPT_MANIFESTS = ", ".join((OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST))


def is_manifest(media_type: str | None) -> bool:
    return media_type in MANIFEST_MEDIA_TYPES


def is_index(media_type: str | None) -> bool:
    return media_type in INDEX_MEDIA_TYPES
