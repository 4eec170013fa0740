"""A summary of a remote image: what `mpkit image inspect` shows."""

from __future__ import annotations

from typing import Any

from mpkit.errors import ImageFormatError
from mpkit.image.select import DEFAULT_PLATFORM
from mpkit.image.types import Platform
from mpkit.jsonfile import parse_json
from mpkit.reference import Reference
from mpkit.registry.client import RegistryClient
from mpkit.registry.pull import resolve_image


def inspect_image(
    client: RegistryClient, ref: Reference, platform: Platform = DEFAULT_PLATFORM
) -> dict[str, Any]:
    resolved = resolve_image(client, ref, platform)
    config_desc = resolved.config
    raw_config = client.read_blob(ref.path, config_desc)
    try:
        config = parse_json(raw_config)
    except ValueError as exc:
        raise ImageFormatError(f"the config blob {config_desc.digest} is not valid JSON") from exc
    runtime = config.get("config") or {}
    layers = resolved.layers
    top = resolved.index or resolved.manifest
    return {
        "reference": str(ref),
        "digest": top.digest,
        "media_type": top.media_type,
        "index": (
            {"digest": resolved.index.digest, "platforms": [str(p) for p in resolved.platforms]}
            if resolved.index
            else None
        ),
        "manifest": {
            "digest": resolved.manifest.digest,
            "media_type": resolved.manifest.media_type,
            "size": len(resolved.manifest.data),
        },
        "platform": str(
            Platform(
                os=str(config.get("os", "")),
                architecture=str(config.get("architecture", "")),
                variant=config.get("variant"),
            )
        ),
        "created": config.get("created"),
        "config": {
            "digest": config_desc.digest,
            "size": config_desc.size,
            "user": runtime.get("User") or "",
            "working_dir": runtime.get("WorkingDir") or "",
            "entrypoint": runtime.get("Entrypoint"),
            "cmd": runtime.get("Cmd"),
            "env": runtime.get("Env") or [],
            "exposed_ports": sorted((runtime.get("ExposedPorts") or {}).keys()),
            "labels": runtime.get("Labels") or {},
        },
        "layers": [
            {"digest": d.digest, "size": d.size, "media_type": d.media_type} for d in layers
        ],
        "size": len(resolved.manifest.data) + config_desc.size + sum(d.size for d in layers),
    }
