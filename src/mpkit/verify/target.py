"""Where a pack says its image is: adapter.zip's ``<KIND>.conf``, read as the installer
reads it (REGISTRY, REPOSITORY, DIGEST), checked against the pack's manifest.txt."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mpkit.errors import InvalidReferenceError, PackError
from mpkit.pack import PackContents, check_consistency, open_pack
from mpkit.reference import Reference, Repository, normalize_registry, validate_tag

DEFAULT_REGISTRY_HINT = (
    "the pack records no REGISTRY (use_default_registry): the cloud proxy pulls from the "
    "installation's default registry; pass --default-registry HOST[:PORT] to name it"
)


@dataclass(frozen=True)
class PackImage:
    """The image a cloud proxy would pull for this pack."""

    kind: str
    registry: str | None  # REGISTRY=, normalised; None when the pack records none
    repository: str  # REPOSITORY= without its leading "/"
    digest: str  # DIGEST=
    tag: str | None  # manifest.txt container_image.tag, when valid
    api_version: str | None

    def reference(self, default_registry: str | None = None) -> Reference:
        """``REGISTRY/REPOSITORY@DIGEST``; *default_registry* stands in for a missing one."""
        registry = self.registry or default_registry
        if registry is None:
            raise PackError(
                "the pack records no registry, so mpkit cannot tell where a cloud proxy "
                "would pull the image from",
                hint=DEFAULT_REGISTRY_HINT,
            )
        try:
            repository = Repository(normalize_registry(registry), self.repository)
        except InvalidReferenceError as exc:
            raise PackError(
                f"the pack's image location {registry}/{self.repository} is invalid: {exc.message}",
                hint="rebuild the pack with mpkit build",
            ) from None
        return Reference(repository, tag=self.tag, digest=self.digest)


def read_pack(path: Path) -> tuple[PackContents, list[str]]:
    """Open *path* safely (PackError if unsafe) and list its consistency problems."""
    contents = open_pack(path)
    return contents, check_consistency(contents)


def pack_image(contents: PackContents) -> PackImage:
    """The conf's REGISTRY/REPOSITORY/DIGEST, validated; PackError if unusable."""
    conf = contents.kind_conf
    name = f"{contents.kind}.conf"
    repository = conf.get("REPOSITORY", "")
    digest = conf.get("DIGEST", "")
    if not repository.startswith("/") or len(repository) < 2:
        raise PackError(
            f"{name} in the pack has no usable REPOSITORY= line ({repository!r})",
            hint="rebuild the pack with mpkit build; the installer cannot find the image",
        )
    try:
        Reference(Repository("localhost", repository[1:]), digest=digest)
    except InvalidReferenceError as exc:
        raise PackError(
            f"{name} in the pack names an invalid image: {exc.message}",
            hint="rebuild the pack with mpkit build; the installer cannot pull this",
        ) from None
    registry = conf.get("REGISTRY") or None
    if registry is not None:
        try:
            registry = normalize_registry(registry)
        except InvalidReferenceError as exc:
            raise PackError(
                f"{name} in the pack has REGISTRY={registry[:100]!r}, which is not a "
                f"registry host: {exc.message}",
                hint="rebuild the pack with mpkit build",
            ) from None
    return PackImage(
        kind=contents.kind,
        registry=registry,
        repository=repository[1:],
        digest=digest,
        tag=_tag(contents),
        api_version=conf.get("API_VERSION"),
    )


def _tag(contents: PackContents) -> str | None:
    image = contents.container_image or {}
    tag = image.get("tag")
    if not isinstance(tag, str):
        return None
    try:
        return validate_tag(tag)
    except InvalidReferenceError:
        return None
