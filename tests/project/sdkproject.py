"""Small SDK-style projects written into tmp_path for the loader's tests."""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.fixtures.files import write_files
from tests.fixtures.sdkmanifest import sdk_manifest

EULA = "There is no EULA associated with this Management Pack.\n"


def png_bytes(width: int = 256, height: int = 256) -> bytes:
    """A real (blank, greyscale) PNG image."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"".join(b"\x00" + b"\xff" * width for _ in range(height)))
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def write_project(
    root: Path,
    manifest: Mapping[str, Any] | str | None = None,
    *,
    config: Mapping[str, Any] | str | None = None,
    files: Mapping[str, str | bytes] | None = None,
) -> Path:
    """Write a project into *root*: manifest.txt (dict or raw text), eula.txt, icon.png,
    config.json (only when *config* is given) and *files*. Returns *root*."""
    root.mkdir(parents=True, exist_ok=True)
    data = sdk_manifest() if manifest is None else manifest
    text = data if isinstance(data, str) else json.dumps(data, indent=4)
    (root / "manifest.txt").write_text(text, encoding="utf-8")
    (root / "eula.txt").write_text(EULA, encoding="utf-8")
    (root / "icon.png").write_bytes(png_bytes())
    if config is not None:
        body = config if isinstance(config, str) else json.dumps(config, indent=4)
        (root / "config.json").write_text(body, encoding="utf-8")
    return write_files(root, files or {})
