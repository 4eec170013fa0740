"""A realistic SDK-style project tree, and hand-made zips for the reader's tests."""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path
from typing import Any

from mpkit.pack.conf import ImageLocation
from mpkit.project.model import Manifest, Project, ProjectConfig
from tests.fixtures.sdkmanifest import sdk_manifest as base_manifest

KIND = "MyAdapter"
DIGEST = "sha256:" + "ab" * 32
IMAGE = ImageLocation(
    registry="registry.example.com:5000", repository="/mp/myadapter", digest=DIGEST, tag="1.2.3_abc"
)
DESCRIBE = b'<?xml version="1.0"?>\n<AdapterKind key="MyAdapter" nameKey="1" version="1"/>\n'
ICON = b"\x89PNG\r\n\x1a\n" + bytes(range(64))


def sdk_manifest(**overrides: Any) -> dict[str, Any]:
    """manifest.txt as the SDK's mp-init template writes it, naming this project's files."""
    return base_manifest(
        **{
            "version": "1.2.3",
            "pak_validation_script": {"script": "validate.py"},
            "adapter_post_script": {"script": "scripts/post_install.sh"},
            "adapter_kinds": [KIND],
            **overrides,
        }
    )


PROJECT_FILES: dict[str, bytes] = {
    "eula.txt": b"Use at your own risk.\n",
    "icon.png": ICON,
    "validate.py": b"print('ok')\n",
    "scripts/post_install.sh": b"#!/bin/sh\nexit 0\n",
    "config.json": b'{"container_repository": "registry.example.com:5000/mp/myadapter"}\n',
    "Dockerfile": b"FROM base-adapter:python-1.2.0\nCOPY app app\n",
    "commands.cfg": b"[Commands]\ntest=python3 app/adapter.py test\n",
    "app/adapter.py": b"print('adapter')\n",
    "conf/describe.xml": DESCRIBE,
    "conf/describeSchema.xsd": b"<xs:schema/>\n",
    "conf/images/AdapterKind/adapter.png": ICON,
    "conf/images/AdapterKind/.gitkeep": b"",
    "conf/images/ResourceKind/.gitkeep": b"",
    "conf/resources/resources.properties": b"DISPLAY_NAME=My Adapter\n",
    "resources/resources.properties": b"DISPLAY_NAME=My Adapter\nDESCRIPTION=Monitors\n",
    "content/dashboards/.gitkeep": b"",
    "content/dashboards/Foo.json": b'{"dashboards": []}\n',
    "content/dashboards/Existing/Existing.json": b'{"dashboards": [1]}\n',
    "content/dashboards/Existing/resources/Existing.properties": b"a=b\n",
    "content/reports/.gitkeep": b"",
    "content/reports/Bar.xml": b"<Report/>\n",
    "content/alertdefs/.gitkeep": b"",
    "content/alertdefs/alerts.xml": b"<AlertDefinitions/>\n",
    "content/supermetrics/.gitkeep": b"",
    "content/files/txtwidget/.gitkeep": b"",
    "build/old.pak": b"not part of the pack",
    "logs/build.log": b"old log\n",
}
EMPTY_DIRS = ("content/policies", "content/files/topowidget", "resources/empty")


def write_project(
    root: Path,
    *,
    manifest: dict[str, Any] | None = None,
    use_default_registry: bool = False,
    skip: tuple[str, ...] = (),
) -> Project:
    """Write the project tree under *root* and return its model (a tiny local loader)."""
    for name, data in PROJECT_FILES.items():
        if name in skip:
            continue
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    for name in EMPTY_DIRS:
        (root / name).mkdir(parents=True, exist_ok=True)
    (root / "manifest.txt").write_text(json.dumps(manifest or sdk_manifest(), indent=4) + "\n")
    return load_project(root, use_default_registry=use_default_registry)


def load_project(root: Path, *, use_default_registry: bool = False) -> Project:
    data = json.loads((root / "manifest.txt").read_text())
    manifest = Manifest(
        path=root / "manifest.txt",
        data=data,
        name=data["name"],
        display_name=data["display_name"],
        version=data["version"],
        adapter_kind=data["adapter_kinds"][0],
        eula_file=data.get("eula_file") or None,
        icon_file=data.get("pak_icon") or None,
        validation_script=data["pak_validation_script"]["script"] or None,
        pre_script=data["adapter_pre_script"]["script"] or None,
        post_script=data["adapter_post_script"]["script"] or None,
    )
    config = ProjectConfig(path=root / "config.json", use_default_registry=use_default_registry)
    return Project(root=root, manifest=manifest, config=config)


def write_zip(path: Path, entries: dict[str, bytes], *, symlinks: tuple[str, ...] = ()) -> Path:
    """A plain zip of *entries*; names in *symlinks* are stored as symbolic links."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3
            info.external_attr = (0o120777 if name in symlinks else 0o100644) << 16
            archive.writestr(info, data)
    return path


def zip_bytes(entries: dict[str, bytes], tmp: Path) -> bytes:
    return write_zip(tmp / "inner.zip", entries).read_bytes()


def declare_size(data: bytes, name: str, size: int) -> bytes:
    """*data* (a zip) with the uncompressed size of *name* rewritten in both headers."""
    out = bytearray(data)
    encoded = name.encode()
    for signature, size_at, name_at in ((b"PK\x03\x04", 22, 30), (b"PK\x01\x02", 24, 46)):
        start = 0
        while (start := out.find(signature, start)) >= 0:
            if out[start + name_at : start + name_at + len(encoded)] == encoded:
                struct.pack_into("<I", out, start + size_at, size)
            start += 4
    return bytes(out)


def kind_conf(**values: str | None) -> bytes:
    lines: dict[str, str | None] = {
        "KINDKEY": KIND,
        "API_VERSION": "1.0.0",
        "API_PROTOCOL": "https",
        "API_PORT": "443",
        "REGISTRY": "registry.example.com:5000",
        "REPOSITORY": "/mp/myadapter",
        "DIGEST": DIGEST,
    }
    lines.update(values)
    return "".join(f"{k}={v}\n" for k, v in lines.items() if v is not None).encode()


def pack_manifest(**image: str | None) -> bytes:
    container_image: dict[str, str | None] = {
        "registry": "registry.example.com:5000",
        "repository": "/mp/myadapter",
        "digest": DIGEST,
        "tag": "1.2.3_abc",
    }
    container_image.update(image)
    cleaned = {k: v for k, v in container_image.items() if v is not None}
    return json.dumps(sdk_manifest(container_image=cleaned)).encode()


def write_pack(
    path: Path,
    tmp: Path,
    *,
    manifest: bytes | None = None,
    conf: bytes | None = None,
    adapter_extra: dict[str, bytes] | None = None,
    extra: dict[str, bytes] | None = None,
) -> Path:
    """A hand-made pack (independent of the writer) for the reader's tests."""
    adapter = {
        f"{KIND}.conf": conf if conf is not None else kind_conf(),
        "manifest.txt": manifest or pack_manifest(),
        f"{KIND}/conf/describe.xml": DESCRIBE,
        **(adapter_extra or {}),
    }
    entries = {
        "manifest.txt": manifest or pack_manifest(),
        "adapter.zip": zip_bytes(adapter, tmp),
        **(extra or {}),
    }
    return write_zip(path, entries)
