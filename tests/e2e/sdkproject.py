"""A complete SDK project for ``mpkit build`` / ``mp-build``, and readers for what it makes.

The project joins the pack tree of :mod:`tests.pack.projects` (manifest.txt as mp-init
writes it, eula, icon, scripts, conf/, resources/, content/) with the SDK Dockerfile,
``commands.cfg``, requirements and adapter code of :mod:`tests.imagebuild.projects`, so it
builds, pushes and packs for real. :func:`expected_pack_entries` says, independently of
the pack writer, which entries the SDK puts into the pack and its adapter.zip;
:func:`read_pack` unzips a pack for the comparison. The environment helpers give every
mpkit subprocess an isolated home (``tests.e2e.conftest.isolated_env``), the SDK base
mirror and the SDK global config, so tests and ``bench/packbuild.py`` run it alike.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mpkit.describe.schema import BUNDLED_SCHEMA
from tests.e2e.conftest import isolated_env
from tests.fixtures.baseimage import SDK_REGISTRY
from tests.imagebuild.projects import PURE_REQUIREMENT, make_sdk_project
from tests.pack.projects import EMPTY_DIRS, KIND, PROJECT_FILES, sdk_manifest

PACK_NAME = "MyAdapter_1.2.3.pak"
VERSION = "1.2.3"
REQUIREMENTS = (PURE_REQUIREMENT,)  # one pure wheel: fast, and still a real pip layer
# A describe.xml that satisfies the SDK's describeSchema.xsd (tests.pack.projects has a
# stub, enough for the pack writer but not for mpkit build, which validates it).
DESCRIBE_XML = b"""<?xml version="1.0" encoding="UTF-8"?>
<AdapterKind xmlns="http://schemas.vmware.com/vcops/schema" key="MyAdapter" nameKey="1" \
version="1">
  <ResourceKinds>
    <ResourceKind key="MyAdapter_adapter_instance" nameKey="2" type="7">
      <ResourceIdentifier key="host" nameKey="3" required="true" dispOrder="0" type="string" \
enum="false" identType="1" length="512"/>
    </ResourceKind>
  </ResourceKinds>
</AdapterKind>
"""
# Files of PROJECT_FILES the build side provides (or that are outputs, not sources).
_REPLACED = (
    "config.json",
    "Dockerfile",
    "commands.cfg",
    "app/adapter.py",
    "conf/describe.xml",
    "conf/describeSchema.xsd",
)
_OUTPUTS = ("build/old.pak", "logs/build.log")


def write_sdk_project(
    root: Path,
    *,
    config: Mapping[str, Any] | None = None,
    manifest: Mapping[str, Any] | None = None,
    requirements: Iterable[str] = REQUIREMENTS,
) -> Path:
    """Write a buildable SDK project into *root*; *config* None leaves config.json out."""
    for name, data in PROJECT_FILES.items():
        if name in _REPLACED or name in _OUTPUTS:
            continue
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    for name in EMPTY_DIRS:
        (root / name).mkdir(parents=True, exist_ok=True)
    manifest_text = json.dumps(dict(manifest or sdk_manifest()), indent=4) + "\n"
    make_sdk_project(
        root,
        requirements=tuple(requirements),
        extra_files={
            "manifest.txt": manifest_text,
            "conf/describe.xml": DESCRIBE_XML,
            # mp-init copies the SDK's schema into every project; mpkit ships the same.
            "conf/describeSchema.xsd": BUNDLED_SCHEMA.read_bytes(),
        },
    )
    if config is not None:
        write_config(root, config)
    return root


def write_config(root: Path, config: Mapping[str, Any]) -> None:
    (root / "config.json").write_text(json.dumps(dict(config), indent=4) + "\n")


def read_config(root: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((root / "config.json").read_text())
    return data


def change_app(root: Path, greeting: str) -> None:
    """An app-only change: one line of app/adapter.py."""
    adapter = root / "app" / "adapter.py"
    text = adapter.read_text()
    current = next(line for line in text.splitlines() if line.startswith("GREETING = "))
    adapter.write_text(text.replace(current, f"GREETING = {json.dumps(greeting)}"))


def pack_path(root: Path) -> Path:
    return root / "build" / PACK_NAME


# -- the environment of an mpkit subprocess ----------------------------------------------------


def sdk_mirror(base_registry_host: str) -> str:
    """MPKIT_MIRRORS sending the SDK's registry to the stand-in's registry."""
    return f"{SDK_REGISTRY}={base_registry_host}"


def flow_env(
    root: Path,
    *,
    base_registry_host: str,
    cache: Path | None = None,
    sdk_config: Mapping[str, Any] | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """An isolated environment for ``mpkit build`` under *root*.

    The SDK global config is written to ``root/sdk-config.json`` (when *sdk_config* is
    given) and named by MPKIT_SDK_CONFIG either way; *cache* replaces the per-root
    MPKIT_CACHE_DIR (share one where caching is not under test).
    """
    settings: dict[str, str] = {
        "MPKIT_MIRRORS": sdk_mirror(base_registry_host),
        "MPKIT_SDK_CONFIG": str(root / "sdk-config.json"),
        "NO_COLOR": "1",
    }
    if cache is not None:
        settings["MPKIT_CACHE_DIR"] = str(cache)
    env = isolated_env(root, {**settings, **(extra or {})})
    if sdk_config is not None:
        (root / "sdk-config.json").write_text(json.dumps(dict(sdk_config), indent=4) + "\n")
    return env


# -- reading a pack -------------------------------------------------------------------------


@dataclass(frozen=True)
class PackContents:
    """A pack's entries and those of the adapter.zip inside it (name → bytes)."""

    entries: dict[str, bytes]
    adapter: dict[str, bytes]
    modes: dict[str, int]  # unix permission bits of each pack entry

    @property
    def manifest(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.entries["manifest.txt"])
        return data

    def kind_conf(self, kind: str = KIND) -> dict[str, str]:
        """``<KIND>.conf`` as KEY → value, in file order."""
        lines = self.adapter[f"{kind}.conf"].decode().splitlines()
        return dict(line.split("=", 1) for line in lines if line)


def _unzip(data: bytes) -> tuple[dict[str, bytes], dict[str, int]]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        bad = archive.testzip()
        assert bad is None, f"corrupt entry {bad}"
        infos = archive.infolist()
        assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in infos if i.file_size)
        entries = {i.filename: archive.read(i) for i in infos if not i.is_dir()}
        modes = {i.filename: (i.external_attr >> 16) & 0o7777 for i in infos}
    return entries, modes


def read_pack(path: Path) -> PackContents:
    entries, modes = _unzip(path.read_bytes())
    adapter, _ = _unzip(entries["adapter.zip"])
    return PackContents(entries=entries, adapter=adapter, modes=modes)


def expected_pack_entries(root: Path) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """From the project's files alone, as the SDK packs them: the pack's and adapter.zip's
    entries with their bytes, except the generated ones (manifest.txt, adapter.zip,
    <KIND>.conf, version.txt), which the caller checks by content."""
    manifest = json.loads((root / "manifest.txt").read_text())
    named = [manifest.get("eula_file"), manifest.get("pak_icon")]
    scripts = [
        manifest[key]["script"]
        for key in ("pak_validation_script", "adapter_pre_script", "adapter_post_script")
    ]

    def files_under(directory: str) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        for path in sorted((root / directory).rglob("*")):
            if path.is_file() and path.name != ".gitkeep":
                found[path.relative_to(root).as_posix()] = path.read_bytes()
        return found

    def named_files(names: Iterable[str | None]) -> dict[str, bytes]:
        return {n: (root / n).read_bytes() for n in names if n}

    content: dict[str, bytes] = {}
    for name, data in files_under("content").items():
        parts = name.split("/")
        # A top-level file of dashboards/ or reports/ gets a directory of its own
        if len(parts) == 3 and parts[1] in ("dashboards", "reports"):
            stem = parts[2].rsplit(".", 1)[0].lower()
            name = f"content/{parts[1]}/{stem}/{parts[2]}"
        content[name] = data
    pack = {
        **named_files(named),
        **named_files(scripts),
        **files_under("resources"),
        **content,
    }
    conf = {
        f"{KIND}/conf/{name.removeprefix('conf/')}": data
        for name, data in files_under("conf").items()
    }
    adapter = {**named_files(named), **files_under("resources"), **conf}
    return pack, adapter


# -- files that must not change ---------------------------------------------------------------


@dataclass(frozen=True)
class FileState:
    data: bytes
    mtime_ns: int

    @classmethod
    def of(cls, path: Path) -> FileState:
        return cls(path.read_bytes(), path.stat().st_mtime_ns)


def snapshot(*paths: Path) -> dict[Path, FileState]:
    return {path: FileState.of(path) for path in paths}


def assert_unchanged(before: Mapping[Path, FileState]) -> None:
    for path, state in before.items():
        now = FileState.of(path)
        assert now.data == state.data, f"{path} was rewritten with other bytes"
        assert now.mtime_ns == state.mtime_ns, f"{path} was touched (mtime changed)"


__all__ = [
    "DESCRIBE_XML",
    "KIND",
    "PACK_NAME",
    "VERSION",
    "FileState",
    "PackContents",
    "assert_unchanged",
    "change_app",
    "expected_pack_entries",
    "flow_env",
    "pack_path",
    "read_config",
    "read_pack",
    "sdk_mirror",
    "snapshot",
    "write_config",
    "write_sdk_project",
]
