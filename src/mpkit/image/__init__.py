"""Image model, OCI layouts and archives: everything mpkit knows about local images.

Names are imported on first use, so importing one leaf module (``mpkit.image.mediatypes``,
say, as the built-in registry does) does not load archives, layouts and the layer cache.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mpkit.image.archive import read_docker_archive as read_docker_archive
    from mpkit.image.archive import read_oci_archive as read_oci_archive
    from mpkit.image.cache import LayerCache as LayerCache
    from mpkit.image.digest import HashingWriter as HashingWriter
    from mpkit.image.digest import digest_hex as digest_hex
    from mpkit.image.digest import sha256_digest as sha256_digest
    from mpkit.image.digest import validate_digest as validate_digest
    from mpkit.image.layout import OCILayoutReader as OCILayoutReader
    from mpkit.image.layout import OCILayoutWriter as OCILayoutWriter
    from mpkit.image.layout import open_oci_layout as open_oci_layout
    from mpkit.image.layout import read_oci_layout as read_oci_layout
    from mpkit.image.select import DEFAULT_PLATFORM as DEFAULT_PLATFORM
    from mpkit.image.select import select_platform as select_platform
    from mpkit.image.source import load_source as load_source
    from mpkit.image.source import parse_source as parse_source
    from mpkit.image.types import Blob as Blob
    from mpkit.image.types import Descriptor as Descriptor
    from mpkit.image.types import Image as Image
    from mpkit.image.types import ImageIndex as ImageIndex
    from mpkit.image.types import Layer as Layer
    from mpkit.image.types import Platform as Platform

_HOMES = {
    "read_docker_archive": "archive",
    "read_oci_archive": "archive",
    "LayerCache": "cache",
    "HashingWriter": "digest",
    "digest_hex": "digest",
    "sha256_digest": "digest",
    "validate_digest": "digest",
    "OCILayoutReader": "layout",
    "OCILayoutWriter": "layout",
    "open_oci_layout": "layout",
    "read_oci_layout": "layout",
    "DEFAULT_PLATFORM": "select",
    "select_platform": "select",
    "load_source": "source",
    "parse_source": "source",
    "Blob": "types",
    "Descriptor": "types",
    "Image": "types",
    "ImageIndex": "types",
    "Layer": "types",
    "Platform": "types",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"mpkit.image.{home}"), name)
