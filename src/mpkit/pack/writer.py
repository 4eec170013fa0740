"""Write ``build/<name>_<version>.pak`` for a pushed adapter image.

The pack is byte-reproducible (see :mod:`mpkit.pack.zipfile_det`) and written through a
temp file and a rename, so a failed build leaves any earlier pack as it was.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mpkit.atomicfile import AtomicFile
from mpkit.errors import PackError
from mpkit.pack.conf import (
    ImageLocation,
    container_image,
    render_kind_conf,
    render_version_txt,
)
from mpkit.pack.layout import PackFiles, pack_files
from mpkit.pack.zipfile_det import DeterministicZip
from mpkit.project.model import Manifest, Project

__all__ = ["ImageLocation", "PreparedPack", "build_pack", "check_pack_inputs", "prepare_pack"]

_KIND_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
Entries = dict[str, bytes | Path]


def build_pack(project: Project, image: ImageLocation, **options: Any) -> Path:
    """Write the pack for *project* pointing at *image*; return its path. The *options*
    are :func:`prepare_pack`'s."""
    return prepare_pack(project, image, **options).write()


@dataclass(frozen=True)
class PreparedPack:
    """A pack checked and assembled (adapter.zip in memory), not yet written."""

    archive: DeterministicZip
    target: Path

    def write(self) -> Path:
        """Write the pack atomically (temp file and rename); return its path."""
        return _write_atomically(self.archive, self.target)


def check_pack_inputs(project: Project, *, allow_external_links: bool = False) -> PackFiles:
    """Check everything of the pack that needs neither the image nor the adapter: every
    file it will hold (readable, within the link policy, content rules), the adapter
    kind, the pack's file name and version.txt. Raises PackError (or ExternalLinkError)."""
    files = pack_files(project, allow_external_links=allow_external_links)
    _checked_kind(project.manifest)
    _pack_basename(project.manifest)
    render_version_txt(project.manifest.version)
    return files


def prepare_pack(
    project: Project,
    image: ImageLocation,
    *,
    insecure_collector: bool = False,
    api_version: str = "1.0.0",
    describe_xml: bytes | None = None,
    resources_properties: bytes | None = None,
    output_dir: Path | None = None,
    allow_external_links: bool = False,
) -> PreparedPack:
    """The pack for *project* pointing at *image*, checked and assembled, ready to write.

    *describe_xml* and *resources_properties* (e.g. generated from the adapter) replace
    the project's ``conf/describe.xml`` and ``conf/resources/resources.properties``. The
    registry is left out when *image.registry* is None or the project's config.json sets
    ``use_default_registry``. Symbolic links leading out of the project are refused
    unless *allow_external_links*. Every check that can fail is made here.
    """
    image = image.validated()
    files = check_pack_inputs(project, allow_external_links=allow_external_links)
    manifest = project.manifest
    kind = _checked_kind(manifest)
    use_default_registry = image.registry is None or project.config.use_default_registry
    manifest_bytes = _pack_manifest(manifest, image, use_default_registry=use_default_registry)
    kind_conf = render_kind_conf(
        kind,
        image,
        api_version=api_version,
        insecure_collector=insecure_collector,
        use_default_registry=use_default_registry,
    )
    conf, conf_directories = _conf_entries(project, files, kind, describe_xml, resources_properties)
    adapter_zip = _adapter_zip(files, kind, kind_conf, manifest_bytes, conf, conf_directories)
    pack = _pack_entries(files, manifest_bytes, adapter_zip)
    target_dir = output_dir if output_dir is not None else project.root / "build"
    return PreparedPack(pack, target_dir / f"{_pack_basename(manifest)}.pak")


def _pack_basename(manifest: Manifest) -> str:
    basename = manifest.pack_basename
    if "/" in basename or "\\" in basename or basename.startswith("."):
        raise PackError(
            f"manifest.txt name and version give the file name {basename!r}.pak, "
            "which is not a plain file name",
            hint='use letters, digits, "_" and "-" in "name" and digits and dots in "version"',
        )
    return basename


def _checked_kind(manifest: Manifest) -> str:
    kind = manifest.adapter_kind
    if not _KIND_PATTERN.match(kind):
        raise PackError(
            f"the adapter kind {kind!r} in manifest.txt cannot name <KIND>.conf and <KIND>/conf",
            hint="use letters, digits and '_' in the adapter kind key (adapter_kinds in "
            "manifest.txt and the AdapterKind key in describe.xml)",
        )
    return kind


def _pack_manifest(
    manifest: Manifest, image: ImageLocation, *, use_default_registry: bool
) -> bytes:
    data = dict(manifest.data)
    data["container_image"] = container_image(image, use_default_registry=use_default_registry)
    return (json.dumps(data, indent=4, ensure_ascii=False) + "\n").encode("utf-8")


def _conf_entries(
    project: Project,
    files: PackFiles,
    kind: str,
    describe_xml: bytes | None,
    resources_properties: bytes | None,
) -> tuple[Entries, list[str]]:
    """``<KIND>/conf/**``: the project's conf/ plus describe.xml, properties and version.txt,
    and the directory entries under ``<KIND>/``."""
    prefix = f"{kind}/conf"
    entries: Entries = {f"{kind}/{name}": path for name, path in files.conf.files}
    directories = [kind, prefix, *(f"{kind}/{name}" for name in files.conf.directories)]
    describe_name = f"{prefix}/describe.xml"
    if describe_xml is not None:
        entries[describe_name] = describe_xml
    elif describe_name not in entries:
        raise PackError(
            f"the project {project.root} has no conf/describe.xml, and generating describe.xml "
            "from the adapter is not available yet",
            hint="add conf/describe.xml to the project (e.g. from a pack built with the SDK's "
            "mp-build: adapter.zip holds it as <KIND>/conf/describe.xml), then build again",
        )
    if resources_properties is not None:
        entries[f"{prefix}/resources/resources.properties"] = resources_properties
        directories.append(f"{prefix}/resources")
    entries[f"{prefix}/version.txt"] = render_version_txt(project.manifest.version)
    return entries, directories


def _adapter_zip(
    files: PackFiles,
    kind: str,
    kind_conf: bytes,
    manifest_bytes: bytes,
    conf: Entries,
    conf_directories: list[str],
) -> bytes:
    archive = DeterministicZip()
    _add_all(
        archive,
        [(f"{kind}.conf", kind_conf), ("manifest.txt", manifest_bytes)],
        files.named,
        files.resources.files,
        conf.items(),
    )
    for directory in [*files.resources.directories, *conf_directories]:
        archive.add_directory(directory)
    buffer = io.BytesIO()
    archive.write_to(buffer)
    return buffer.getvalue()


def _pack_entries(files: PackFiles, manifest_bytes: bytes, adapter_zip: bytes) -> DeterministicZip:
    archive = DeterministicZip()
    _add_all(
        archive,
        [("manifest.txt", manifest_bytes), ("adapter.zip", adapter_zip)],
        files.named,
        files.scripts,
        files.resources.files,
        files.content.files,
    )
    for directory in [*files.resources.directories, *files.content.directories]:
        archive.add_directory(directory)
    return archive


def _add_all(archive: DeterministicZip, *groups: Iterable[tuple[str, bytes | Path]]) -> None:
    """Add every entry; a file reached twice by the same path (eula under resources/) once."""
    added: Entries = {}
    for group in groups:
        for name, source in group:
            previous = added.get(name)
            if isinstance(source, Path) and isinstance(previous, Path) and previous == source:
                continue
            added[name] = source
            if isinstance(source, bytes):
                archive.add_bytes(name, source)
            else:
                archive.add_file(name, source)


def _write_atomically(archive: DeterministicZip, target: Path) -> Path:
    try:
        output = AtomicFile(target)
    except OSError as exc:
        raise PackError(
            f"cannot write the pack into {target.parent}: {exc.strerror or exc}",
            hint="check that the directory is writable, or choose another output directory",
        ) from None
    with output:
        archive.write_to(output.stream)
    return target
