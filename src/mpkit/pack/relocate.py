"""Write a copy of a pack whose image lives somewhere else (``mpkit promote``).

Only the image location changes: ``container_image`` in the pack's and adapter.zip's
manifest.txt, and the REGISTRY/REPOSITORY/DIGEST lines of ``<KIND>.conf``. Every other
entry is copied byte for byte with its zip header (name, order, time, mode), so the new
pack differs from the original in exactly those facts, and stays reproducible.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from pathlib import Path

from mpkit.atomicfile import AtomicFile
from mpkit.errors import PackError
from mpkit.pack.conf import ImageLocation, container_image
from mpkit.pack.reader import open_pack

Rewrite = Callable[[bytes], bytes]
_LOCATION_KEYS = ("REGISTRY", "REPOSITORY", "DIGEST")


def relocate_pack(source: Path, target: Path, image: ImageLocation) -> Path:
    """Write *target*: the pack *source* with its image at *image* (registry None: the
    installation's default registry). *source* is read safely first; *target* is written
    atomically and may not be *source*."""
    image = image.validated()
    check_target(source, target)
    contents = open_pack(source)  # the same checks an installer's view gets
    manifest = _manifest_rewrite(image)
    conf_name = f"{contents.kind}.conf"
    inner = {"manifest.txt": manifest, conf_name: lambda data: _conf_rewrite(data, image)}
    outer = {"manifest.txt": manifest, "adapter.zip": lambda data: _rezip(data, inner)}
    with open(source, "rb") as handle:
        data = _rezip(handle.read(), outer)
    try:
        output = AtomicFile(target)
    except OSError as exc:
        raise PackError(f"cannot write the pack {target}: {exc.strerror or exc}") from None
    with output:
        output.stream.write(data)
    return target


def check_target(source: Path, target: Path) -> None:
    """The new pack may not replace the one it is made from."""
    if target.resolve() == source.resolve():
        raise PackError(
            f"the new pack would replace {source}",
            hint="write it elsewhere (-o FILE); the original pack stays as it is",
        )


def _rezip(data: bytes, rewrites: dict[str, Rewrite]) -> bytes:
    """*data* (a zip) with the named entries rewritten, everything else as it was."""
    buffer = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(data)) as old,
        zipfile.ZipFile(buffer, "w") as new,
    ):
        for info in old.infolist():
            content = old.read(info)
            rewrite = rewrites.get(info.filename)
            copy = zipfile.ZipInfo(info.filename, date_time=info.date_time)
            copy.compress_type = info.compress_type
            copy.external_attr = info.external_attr
            copy.create_system = info.create_system
            new.writestr(copy, rewrite(content) if rewrite else content)
    return buffer.getvalue()


def _manifest_rewrite(image: ImageLocation) -> Rewrite:
    def rewrite(data: bytes) -> bytes:
        manifest = json.loads(data)
        manifest["container_image"] = container_image(
            image, use_default_registry=image.registry is None
        )
        return (json.dumps(manifest, indent=4, ensure_ascii=False) + "\n").encode("utf-8")

    return rewrite


def _conf_rewrite(data: bytes, image: ImageLocation) -> bytes:
    """The conf with the new location in place of the old (other lines and their order
    kept; REGISTRY is dropped or added as the location says, before REPOSITORY)."""
    values = {"REGISTRY": image.registry, "REPOSITORY": image.repository, "DIGEST": image.digest}
    lines = []
    for line in data.decode("utf-8").splitlines():
        key = line.partition("=")[0].strip()
        if key not in _LOCATION_KEYS:
            lines.append(line)
    for key in _LOCATION_KEYS:
        if values[key] is not None:
            lines.append(f"{key}={values[key]}")
    return ("\n".join(lines) + "\n").encode("utf-8")
