"""Image model, OCI layouts and archives: everything mpkit knows about local images."""

from __future__ import annotations

from mpkit.image.archive import read_docker_archive, read_oci_archive
from mpkit.image.cache import LayerCache
from mpkit.image.digest import HashingWriter, digest_hex, sha256_digest, validate_digest
from mpkit.image.layout import OCILayoutReader, OCILayoutWriter, open_oci_layout, read_oci_layout
from mpkit.image.select import DEFAULT_PLATFORM, select_platform
from mpkit.image.source import load_source, parse_source
from mpkit.image.types import Blob, Descriptor, Image, ImageIndex, Layer, Platform

__all__ = [
    "DEFAULT_PLATFORM",
    "Blob",
    "Descriptor",
    "HashingWriter",
    "Image",
    "ImageIndex",
    "Layer",
    "LayerCache",
    "OCILayoutReader",
    "OCILayoutWriter",
    "Platform",
    "digest_hex",
    "load_source",
    "open_oci_layout",
    "parse_source",
    "read_docker_archive",
    "read_oci_archive",
    "read_oci_layout",
    "select_platform",
    "sha256_digest",
    "validate_digest",
]
