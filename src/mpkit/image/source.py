"""Local image sources named the way skopeo names them.

``oci:DIR[:TAG]``, ``oci-archive:FILE[:TAG]`` and ``docker-archive:FILE[:REF]``.
Like skopeo, the path ends at the first ``:`` after the transport (a Windows
drive prefix such as ``C:\\`` excepted), so a path cannot contain ``:``; all the
rest is the tag or reference, which may itself contain ``:`` (``host:5000/x:1``).
"""

from __future__ import annotations

import re
from pathlib import Path

from mpkit.errors import UsageError
from mpkit.image.archive import read_docker_archive, read_oci_archive
from mpkit.image.archive_writer import write_docker_archive
from mpkit.image.cache import LayerCache
from mpkit.image.layout import OCILayoutWriter, read_oci_layout
from mpkit.image.select import DEFAULT_PLATFORM
from mpkit.image.types import Image, Platform

KINDS = ("oci", "oci-archive", "docker-archive")
_FORMS = "oci:DIR[:TAG], oci-archive:FILE[:TAG] or docker-archive:FILE[:NAME:TAG|:@N]"
_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")


def parse_source(text: str) -> tuple[str, Path, str | None]:
    """Split a source into (kind, path, tag or reference or None)."""
    kind, colon, rest = text.partition(":")
    if not colon or kind not in KINDS:
        raise UsageError(
            f"{text!r} is not an image source mpkit can read",
            hint=f"write {_FORMS}",
        )
    drive = _DRIVE.match(rest)
    prefix, rest = (rest[:2], rest[2:]) if drive else ("", rest)
    path, _, suffix = rest.partition(":")
    if not prefix + path:
        raise UsageError(f"{text!r} names no path after '{kind}:'", hint=f"write {_FORMS}")
    return kind, Path(prefix + path), suffix or None


def load_source(
    text: str,
    *,
    platform: Platform | None = DEFAULT_PLATFORM,
    cache: LayerCache | None = None,
    verify: bool = False,
) -> Image:
    """Load the image a source string names (see ``parse_source``).

    Missing paths raise ImageFormatError naming them. ``verify`` hashes every blob
    of an OCI layout/archive; docker-archive layers are always checked against
    their diff_ids.
    """
    kind, path, suffix = parse_source(text)
    if kind == "oci":
        return read_oci_layout(path, suffix, platform, verify=verify)
    if kind == "oci-archive":
        return read_oci_archive(path, suffix, platform, verify=verify)
    return read_docker_archive(path, suffix, platform, cache)


def save_image(image: Image, text: str) -> None:
    """Write *image* to the destination *text* names: ``oci:DIR[:TAG]`` or
    ``docker-archive:FILE[:NAME:TAG]``."""
    kind, path, suffix = parse_source(text)
    if kind == "oci":
        OCILayoutWriter(path).write_image(image, suffix)
    elif kind == "docker-archive":
        write_docker_archive(image, path, [suffix] if suffix else [])
    else:
        raise UsageError(
            f"{text!r} is not a destination mpkit can write",
            hint="write oci:DIR[:TAG] or docker-archive:FILE[:NAME:TAG]",
        )
