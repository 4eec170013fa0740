"""The SDK project as mpkit sees it: manifest.txt, config.json, the SDK's global config.

These value types are shared by the loader (project/load.py), the pack writer and the
build flow. Loaders validate; everything here is already valid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Manifest:
    """manifest.txt, validated. ``data`` keeps every key in file order."""

    path: Path
    data: dict[str, Any]
    name: str  # e.g. "iSDK_MyAdapter"
    display_name: str
    version: str  # at least three numeric parts, e.g. "1.0.0"
    adapter_kind: str  # the single key of adapter_kinds
    eula_file: str | None = None  # relative to the project root, as written
    icon_file: str | None = None  # pak_icon
    validation_script: str | None = None  # pak_validation_script.script
    pre_script: str | None = None  # adapter_pre_script.script
    post_script: str | None = None  # adapter_post_script.script

    @property
    def pack_basename(self) -> str:
        """The pack's file name: build/<name without iSDK_ prefix>_<version>.pak."""
        return f"{self.name.removeprefix('iSDK_')}_{self.version}"


@dataclass(frozen=True)
class ProjectConfig:
    """config.json, validated; ``data`` keeps unknown keys for writing back."""

    path: Path
    data: dict[str, Any] = field(default_factory=dict)
    container_repository: str | None = None
    container_push_repository: str | None = None
    use_default_registry: bool = False
    default_memory_limit: int = 1024  # MB


@dataclass(frozen=True)
class GlobalConfig:
    """$HOME/.vmware-aria-operations-integration-sdk/config.json (or its Windows path)."""

    path: Path
    data: dict[str, Any] = field(default_factory=dict)
    default_container_registry_path: str | None = None
    container_port: int = 8080
    projects: tuple[Path, ...] = ()


@dataclass(frozen=True)
class Project:
    root: Path
    manifest: Manifest
    config: ProjectConfig
