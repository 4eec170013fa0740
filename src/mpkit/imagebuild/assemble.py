"""Image config and manifest for a native build: exact, deterministic bytes."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from mpkit.image import mediatypes
from mpkit.image.types import Blob, Image, Layer, Platform
from mpkit.imagebuild.base import BaseImage

BASE_NAME = "org.opencontainers.image.base.name"
BASE_DIGEST = "org.opencontainers.image.base.digest"


@dataclass(frozen=True)
class HistoryStep:
    created_by: str
    empty_layer: bool


def canonical_json(value: Any) -> bytes:
    """Sorted keys, compact: the same bytes for the same content, every time."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def rfc3339(epoch: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def assemble_image(
    base: BaseImage,
    runtime: dict[str, Any],
    new_layers: list[Layer],
    history: list[HistoryStep],
    *,
    platform: Platform,
    created: int,
) -> Image:
    """Config inherits from *base*; layers are the base's plus *new_layers*."""
    config: dict[str, Any] = {
        "architecture": platform.architecture,
        "os": platform.os,
        "created": rfc3339(created),
        "config": runtime,
        "rootfs": {
            "type": "layers",
            "diff_ids": [
                *[layer.diff_id for layer in base.layers],
                *[layer.diff_id for layer in new_layers],
            ],
        },
        "history": [
            *base.config.get("history", []),
            *[_history(step, created) for step in history],
        ],
    }
    if platform.variant:
        config["variant"] = platform.variant
    if any(d is None for d in config["rootfs"]["diff_ids"]):
        raise ValueError("every layer needs a diff_id")
    oci = base.oci
    config_blob = Blob.from_bytes(
        canonical_json(config), mediatypes.OCI_CONFIG if oci else mediatypes.DOCKER_CONFIG
    )
    layers = [*base.layers, *new_layers]
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_MANIFEST if oci else mediatypes.DOCKER_MANIFEST,
        "config": config_blob.descriptor.to_dict(),
        "layers": [layer.descriptor.to_dict() for layer in layers],
    }
    if oci and base.canonical is not None:
        # image-spec annotations.md: the base image, pinned.
        manifest["annotations"] = {BASE_NAME: _base_name(base), BASE_DIGEST: base.digest or ""}
    return Image(manifest_bytes=canonical_json(manifest), config=config_blob, layers=layers)


def base_labels(base: BaseImage) -> dict[str, str]:
    """The same facts as labels, which Docker-format manifests cannot carry as annotations."""
    if base.canonical is None:
        return {}
    return {BASE_NAME: _base_name(base), BASE_DIGEST: base.digest or ""}


def _base_name(base: BaseImage) -> str:
    assert base.canonical is not None
    ref = base.canonical
    return f"{ref.registry}/{ref.path}:{ref.tag}" if ref.tag else f"{ref.registry}/{ref.path}"


def _history(step: HistoryStep, created: int) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "created": rfc3339(created),
        "created_by": step.created_by,
        "comment": "mpkit",
    }
    if step.empty_layer:
        entry["empty_layer"] = True
    return entry
