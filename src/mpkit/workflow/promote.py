"""`mpkit promote PACK REPOSITORY`: ship a pack built in one registry from another.

Build once in a development registry, then promote: the pack's image is copied by
digest to REPOSITORY (only the blobs it lacks; mounts within one registry), a new pack
that records the new registry, repository and the digest the registry confirmed is
written next to the original (which is left as it is), and the new pack is checked as a
cloud proxy would pull it. The digest cannot change: the same manifest bytes are pushed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mpkit.credentials import Credential
from mpkit.errors import DigestMismatchError, UsageError
from mpkit.interaction import Reporter
from mpkit.pack.conf import ImageLocation
from mpkit.pack.relocate import check_target, relocate_pack
from mpkit.reference import Reference, Repository, parse_repository
from mpkit.registry import blob_locations, open_client
from mpkit.registry.copy import copy_image
from mpkit.registry.stats import TransferStats
from mpkit.registry.transport import ClientOptions
from mpkit.verify import VerifyReport, pack_image, read_pack
from mpkit.verify.target import PackImage
from mpkit.workflow.verifying import verify_and_report


@dataclass(frozen=True)
class PromoteOptions:
    pack: Path
    repository: str  # host[:port]/path, no tag: where the image goes
    client_options: ClientOptions
    output: Path | None = None  # default: <pack dir>/<registry>/<pack name>
    source_registry: str | None = None  # for a pack that records none
    use_default_registry: bool = False  # the new pack records no registry either
    credential: Credential | None = None  # for the destination registry
    verify: bool = True


@dataclass
class PromoteOutcome:
    pack: Path
    source: Reference
    image: Reference  # the new pull reference, with the digest
    digest: str
    stats: TransferStats
    seconds: float
    verification: VerifyReport | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "pack": str(self.pack),
            "source": str(self.source),
            "image": str(self.image),
            "digest": self.digest,
            "copy": self.stats.to_dict(),
            "verify": self.verification.to_dict() if self.verification else None,
            "seconds": round(self.seconds, 3),
        }


def promote_pack(options: PromoteOptions, *, reporter: Reporter) -> PromoteOutcome:
    started = time.monotonic()
    destination = parse_repository(options.repository)
    contents, problems = read_pack(options.pack)
    if problems:
        raise UsageError(
            f"{options.pack} is inconsistent: {'; '.join(problems)}",
            hint="rebuild the pack with mpkit build, then promote it",
        )
    image = pack_image(contents)
    source = image.reference(options.source_registry)
    target = Reference(destination, image.tag, None if image.tag else image.digest)
    output = options.output or _default_output(options.pack, destination)
    check_target(options.pack, output)  # before anything is copied
    with (
        open_client(source.registry, options=options.client_options) as source_client,
        open_client(
            destination.registry, options=options.client_options, explicit=options.credential
        ) as destination_client,
        reporter.progress("copy") as progress,
    ):
        copied = copy_image(source_client, source, destination_client, target,
                            locations=blob_locations(), progress=progress)  # fmt: skip
    if copied.digest != image.digest:
        raise DigestMismatchError(
            f"{destination.registry} confirmed {copied.digest} for the copy of {source}",
            hint="the destination registry rewrote the manifest; promote to a registry that "
            "stores manifests as pushed (the pack must name the digest a proxy pulls)",
            registry=destination.registry,
        )
    reporter.info(f"copied {source} to {target.with_digest(copied.digest)}")
    pack = relocate_pack(options.pack, output, _location(destination, image, options))
    verification = None
    if options.verify:
        verification = verify_and_report(
            pack, options.client_options, reporter, default_registry=destination.registry
        )
    return PromoteOutcome(
        pack=pack, source=source, image=target.with_digest(copied.digest), digest=copied.digest,
        stats=copied.stats, seconds=time.monotonic() - started, verification=verification,
    )  # fmt: skip


def _default_output(pack: Path, destination: Repository) -> Path:
    """<pack dir>/<registry host>/<pack file name>: the same name, which installers show."""
    return pack.parent / destination.registry.replace(":", "_") / pack.name


def _location(destination: Repository, image: PackImage, options: PromoteOptions) -> ImageLocation:
    return ImageLocation(
        registry=None if options.use_default_registry else destination.registry,
        repository=f"/{destination.path}",
        digest=image.digest,
        tag=image.tag or f"sha256-{image.digest.partition(':')[2][:12]}",
    )
