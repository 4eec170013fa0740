"""The adapter's ``<KIND>.conf`` and the pack manifest's ``container_image``.

The installer reads ``<KIND>.conf``; the manifest carries the same facts. Both are written
from one :class:`ImageLocation`, so they cannot disagree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from mpkit.errors import PackError

DIGEST_PATTERN = re.compile(r"^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$")
API_VERSION_PATTERN = re.compile(r"^\d+\.\d+\.\d+$")
_REGISTRY_PATTERN = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$")
# distribution-spec: path components [a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*, joined by "/"
_REPOSITORY_PATTERN = re.compile(r"^(/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)+$")
_TAG_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")

HTTPS = ("https", 443)
HTTP_INSECURE = ("http", 8080)  # -i / --insecure-collector-communication


@dataclass(frozen=True)
class ImageLocation:
    """Where the cloud proxy pulls the adapter image from."""

    registry: str | None  # "host[:port]"; None with use_default_registry
    repository: str  # "/path" (leading slash, as the SDK writes it)
    digest: str  # "sha256:..."
    tag: str

    def validated(self) -> ImageLocation:
        """This location, checked so that no value can break a ``KEY=value`` line."""
        problems = []
        if self.registry is not None and not _REGISTRY_PATTERN.match(self.registry):
            problems.append(f"registry {self.registry!r} is not host[:port]")
        if not _REPOSITORY_PATTERN.match(self.repository):
            problems.append(
                f"repository {self.repository!r} is not '/path' in lower case "
                "(letters, digits, '.', '_', '-', separated by '/')"
            )
        if not DIGEST_PATTERN.match(self.digest):
            problems.append(f"digest {self.digest!r} is not 'sha256:' and 64 hex digits")
        if not _TAG_PATTERN.match(self.tag):
            problems.append(f"tag {self.tag!r} is not a valid image tag")
        if problems:
            raise PackError(
                "cannot write the image location into the pack: " + "; ".join(problems),
                hint="pass the registry host, the repository path and the digest the registry "
                "confirmed after the push",
            )
        return self


def container_image(image: ImageLocation, *, use_default_registry: bool) -> dict[str, Any]:
    """The ``container_image`` object of the pack's manifest.txt."""
    out: dict[str, Any] = {}
    if image.registry is not None and not use_default_registry:
        out["registry"] = image.registry
    out["repository"] = image.repository
    out["digest"] = image.digest
    out["tag"] = image.tag
    return out


def render_kind_conf(
    kind: str,
    image: ImageLocation,
    *,
    api_version: str,
    insecure_collector: bool,
    use_default_registry: bool,
) -> bytes:
    """``<KIND>.conf`` with the SDK's line order (mp_build.build_pak_file)."""
    if not API_VERSION_PATTERN.match(api_version):
        raise PackError(
            f"the adapter API version {api_version!r} is not major.minor.maintenance",
            hint="the adapter's GET /apiVersion must answer major, minor and maintenance "
            "numbers; leave it out to use 1.0.0",
        )
    protocol, port = HTTP_INSECURE if insecure_collector else HTTPS
    lines = [f"KINDKEY={kind}", f"API_VERSION={api_version}"]
    lines += [f"API_PROTOCOL={protocol}", f"API_PORT={port}"]
    if image.registry is not None and not use_default_registry:
        lines.append(f"REGISTRY={image.registry}")
    lines += [f"REPOSITORY={image.repository}", f"DIGEST={image.digest}"]
    return ("\n".join(lines) + "\n").encode("utf-8")


def parse_kind_conf(data: bytes, *, name: str) -> dict[str, str]:
    """``KEY=value`` lines as a dict; blank lines and ``#`` comments are skipped."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise PackError(
            f"{name} in adapter.zip is not UTF-8 text", hint="rebuild the pack"
        ) from None
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise PackError(
                f"line {number} of {name} in adapter.zip is not KEY=value: {line[:80]!r}",
                hint="rebuild the pack; the installer cannot read this file",
            )
        values[key.strip()] = value.strip()
    return values


def render_version_txt(version: str) -> bytes:
    """``<KIND>/conf/version.txt`` from manifest ``version`` (first three parts)."""
    parts = version.strip().split(".")
    if len(parts) < 3:
        raise PackError(
            f"manifest.txt version {version!r} needs at least three parts, e.g. 1.0.0",
            hint='set "version" in manifest.txt to major.minor.patch',
        )
    return (
        f"Major-Version={parts[0]}\nMinor-Version={parts[1]}\nImplementation-Version={parts[2]}\n"
    ).encode()
