"""Engine fallback: let podman, docker or buildah build what the native builder cannot.

mpkit still owns the rest: the engine's result is saved as a docker archive, its layers
are gzipped deterministically (cached by diff_id) and mpkit's own client pushes it.
"""

from __future__ import annotations

import re
import tempfile
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

from mpkit.engine import Engine
from mpkit.image.archive import read_docker_archive
from mpkit.image.cache import LayerCache
from mpkit.image.types import Blob, Image, Platform
from mpkit.imagebuild.context import BuildContext

_FROM = re.compile(r"^(\s*FROM\s+(?:--platform=\S+\s+)?)(\S+)(.*)$", re.IGNORECASE)


def rewrite_from_lines(dockerfile: str, rewrites: Mapping[str, str]) -> str:
    """Point FROM lines at the references mpkit resolved (aliases, mirrors)."""
    out = []
    for line in dockerfile.splitlines():
        match = _FROM.match(line)
        if match and match.group(2) in rewrites:
            line = f"{match.group(1)}{rewrites[match.group(2)]}{match.group(3)}"
        out.append(line)
    return "\n".join(out) + "\n"


def engine_build(
    engine: Engine,
    context: BuildContext,
    dockerfile: str,
    *,
    platform: Platform,
    from_rewrites: Mapping[str, str],
    plain_http_base: bool,
    cache: LayerCache,
    log: Callable[[str], None],
) -> Image:
    """Build with *engine*, then load its result as an Image (the engine keeps nothing).

    The engine sees exactly *context*: its exclusions go in an ignore file, or, for an
    engine that reads only the context's own .dockerignore (docker), the build runs on a
    copy of the context."""
    tag = f"localhost/mpkit-build-{uuid.uuid4().hex[:12]}:latest"
    with tempfile.TemporaryDirectory(prefix="mpkit-engine-") as scratch:
        work = Path(scratch)
        recipe = work / "Dockerfile"
        recipe.write_text(rewrite_from_lines(dockerfile, from_rewrites))
        ignore: Path | None = None
        if engine.kind.takes_ignore_file:
            root, ignore = context.root, work / "ignore"
            ignore.write_text("\n".join(context.ignore_patterns()) + "\n")
        else:
            root = context.copy_to(work / "context")
        archive = work / "image.tar"
        engine.build(root, dockerfile=recipe, tag=tag, platform=str(platform),
                     ignore_file=ignore, tls_verify=not plain_http_base, log=log)  # fmt: skip
        try:
            engine.save(tag, archive, log=log)
            # The archive outlives the temp dir only as long as reading needs: layers are
            # gzipped into the cache right away.
            return _load(archive, platform, cache)
        finally:
            engine.remove_image(tag)


def _load(archive: Path, platform: Platform, cache: LayerCache) -> Image:
    image = read_docker_archive(archive, None, platform, cache)
    # Layers now live in the cache; only the config (small) was read from the archive.
    config = image.config.read_bytes()
    return Image(
        image.manifest_bytes, Blob.in_memory(image.config.descriptor, config), image.layers
    )
