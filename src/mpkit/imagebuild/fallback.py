"""Engine fallback: let podman, docker or buildah build what the native builder cannot.

mpkit still owns the rest: the FROM lines follow mpkit's settings (see
:mod:`mpkit.imagebuild.enginefrom`), the engine's result is saved as a docker archive, its
layers are gzipped deterministically (cached by diff_id) except those mpkit already holds
compressed, such as the base's, which keep their original blobs and digests, and mpkit's
own client pushes it.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

from mpkit.engine import Engine
from mpkit.engine.registriesconf import (
    engine_registries_conf,
    read_registries_conf,
    registries_conf_text,
)
from mpkit.errors import ContainerEngineError
from mpkit.image.archive import read_docker_archive
from mpkit.image.cache import LayerCache
from mpkit.image.types import Blob, Image, Platform
from mpkit.imagebuild.context import BuildContext
from mpkit.imagebuild.enginefrom import EngineBases, rewrite_from_lines
from mpkit.settings import Settings


def engine_build(
    engine: Engine,
    context: BuildContext,
    dockerfile: str,
    *,
    platform: Platform,
    bases: EngineBases,
    settings: Settings,
    insecure_registries: frozenset[str],
    build_args: Mapping[str, str],
    cache: LayerCache,
    log: Callable[[str], None],
) -> Image:
    """Build with *engine*, then load its result as an Image (the engine keeps nothing).

    The engine sees exactly *context*: its exclusions go in an ignore file, or, for an
    engine that reads only the context's own .dockerignore (docker), the build runs on a
    copy of the context. A registry is reached without TLS verification only when it is a
    loopback one or the user marked it insecure (never a whole build's pulls)."""
    tag = f"localhost/mpkit-build-{uuid.uuid4().hex[:12]}:latest"
    with tempfile.TemporaryDirectory(prefix="mpkit-engine-") as scratch:
        work = Path(scratch)
        recipe = work / "Dockerfile"
        recipe.write_text(
            rewrite_from_lines(dockerfile, bases.from_rewrites(engine.kind, settings))
        )
        ignore: Path | None = None
        if engine.kind.takes_ignore_file:
            root, ignore = context.root, work / "ignore"
            ignore.write_text("\n".join(context.ignore_patterns()) + "\n")
        else:
            root = context.copy_to(work / "context")
        registries = _registries_conf(engine, bases, settings, insecure_registries, work)
        try:
            engine.build(root, dockerfile=recipe, tag=tag, platform=str(platform),
                         ignore_file=ignore, build_args=build_args, registries_conf=registries,
                         log=log)  # fmt: skip
        except ContainerEngineError as exc:
            blamed = bases.pull_failure(exc, engine.kind, settings, insecure_registries)
            if blamed is None:
                raise
            raise blamed from exc
        archive = work / "image.tar"
        try:
            engine.save(tag, archive, log=log)
            if bases.final_base is not None:
                cache.adopt(bases.final_base.layers)
            # The archive outlives the temp dir only as long as reading needs: layers are
            # gzipped into the cache right away.
            return _load(archive, platform, cache)
        finally:
            engine.remove_image(tag)


def _registries_conf(
    engine: Engine,
    bases: EngineBases,
    settings: Settings,
    insecure: frozenset[str],
    work: Path,
) -> Path | None:
    """The registry configuration for podman and buildah when mpkit has something to say
    (mirrors, endpoints, insecure or loopback registries); otherwise theirs stays."""
    rules = bases.registry_rules(settings, insecure)
    if not rules or not engine.kind.reads_registries_conf:
        return None
    carried = read_registries_conf(engine_registries_conf(os.environ))
    path = work / "registries.conf"
    path.write_text(registries_conf_text(rules, carried))
    return path


def _load(archive: Path, platform: Platform, cache: LayerCache) -> Image:
    image = read_docker_archive(archive, None, platform, cache)
    # Layers now live in the cache; only the config (small) was read from the archive.
    config = image.config.read_bytes()
    return Image(
        image.manifest_bytes, Blob.in_memory(image.config.descriptor, config), image.layers
    )
