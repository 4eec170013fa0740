"""`mpkit image build --push REF`: build an image and push it, with the dependency layers
shared through the registry cache (looked up in, and recorded to, the team's registry)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from typing import Any

from mpkit.cache.root import sharing
from mpkit.credentials import Credential
from mpkit.imagebuild.builder import BuildRequest, BuildResult, build_image
from mpkit.imagebuild.registrycache import registry_cache_for
from mpkit.interaction import Reporter
from mpkit.reference import Reference, Repository
from mpkit.registry import PushResult, blob_locations, open_client, push_image


@dataclass(frozen=True)
class ImagePushOutcome:
    build: BuildResult
    pushed: PushResult
    registry_cache: dict[str, Any]  # {"hits": …, "recorded": …}


def build_and_push(
    request: BuildRequest,
    target: Reference,
    *,
    credential: Credential | None,
    cache_from: tuple[Repository, ...] = (),
    cache_to: Repository | None = None,
    registry_cache: bool = True,
    reporter: Reporter,
) -> ImagePushOutcome:
    """Build *request*'s image and push it to *target*; only missing blobs are uploaded."""
    options = request.client_options
    with open_client(target.registry, options=options, explicit=credential) as client:
        cache = registry_cache_for(
            client, target.repository, cache_from=cache_from, cache_to=cache_to,
            enabled=registry_cache, options=options, warn=reporter.warn,
        )  # fmt: skip
        with contextlib.closing(cache), sharing(cache):
            result = build_image(replace(request, registry_cache=cache), log=reporter.info)
            with reporter.progress("push") as progress:
                pushed = push_image(
                    client, result.image, target, locations=blob_locations(), progress=progress
                )
            used = {"hits": cache.hits, "recorded": cache.publish()}
    return ImagePushOutcome(build=result, pushed=pushed, registry_cache=used)
