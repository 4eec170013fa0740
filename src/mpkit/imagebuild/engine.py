"""Engine fallback: let podman, docker or buildah build what the native builder cannot.

mpkit still owns the rest: the engine's result is saved as a docker archive, its layers
are gzipped deterministically (cached by diff_id) and mpkit's own client pushes it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from mpkit.childenv import child_environment
from mpkit.errors import MpkitError
from mpkit.image.archive import read_docker_archive
from mpkit.image.cache import LayerCache
from mpkit.image.types import Blob, Image, Platform

ENGINES = ("podman", "docker", "buildah")
_FROM = re.compile(r"^(\s*FROM\s+(?:--platform=\S+\s+)?)(\S+)(.*)$", re.IGNORECASE)


class EngineError(MpkitError):
    code = "engine"


def installed_engines(choice: str | None, among: Sequence[str] = ENGINES) -> list[tuple[str, str]]:
    """(name, program path) of the installed engines *choice* allows, in preference order.

    "auto" (or None) means every engine of *among*, podman first; "none" or a name not in
    *among* means none. One lookup for building, running and describing.
    """
    names = tuple(among) if choice in (None, "auto") else (choice,) if choice in among else ()
    return [(name, path) for name in names if (path := shutil.which(name))]


def find_engine(choice: str) -> str | None:
    """The engine to build with for *choice* ("auto" tries podman, docker, buildah)."""
    found = installed_engines(choice)
    return found[0][0] if found else None


def engine_environment() -> dict[str, str]:
    """The environment for engine commands.

    podman 4 fails every command when $DOCKER_CONFIG names a directory without a
    config.json ("stat …/config.json: no such file or directory"); such a directory holds
    no credentials anyway, so leave the variable out.
    """
    env = child_environment()
    docker_config = env.get("DOCKER_CONFIG")
    if docker_config and not (Path(docker_config) / "config.json").exists():
        del env["DOCKER_CONFIG"]
    return env


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
    engine: str,
    context: Path,
    dockerfile: str,
    *,
    platform: Platform,
    ignore_patterns: Sequence[str],
    from_rewrites: Mapping[str, str],
    plain_http_base: bool,
    cache: LayerCache,
    log: Callable[[str], None],
) -> Image:
    """Build with *engine*, then load its result as an Image."""
    program = shutil.which(engine)
    if program is None:
        raise EngineError(f"the container engine {engine!r} is not installed",
                          hint="install podman (recommended), or use --engine auto")  # fmt: skip
    tag = f"localhost/mpkit-build-{uuid.uuid4().hex[:12]}:latest"
    with tempfile.TemporaryDirectory(prefix="mpkit-engine-") as scratch:
        work = Path(scratch)
        recipe = work / "Dockerfile"
        recipe.write_text(rewrite_from_lines(dockerfile, from_rewrites))
        ignore = work / "ignore"
        ignore.write_text("\n".join(ignore_patterns) + "\n")
        archive = work / "image.tar"
        build = _build_argv(
            program, engine, recipe, ignore, context, tag, platform, plain_http_base
        )
        _run(build, log, what=f"{engine} build")
        try:
            _run(_save_argv(program, engine, tag, archive), log, what=f"{engine} save")
            # The archive outlives the temp dir only as long as reading needs: layers are
            # gzipped into the cache right away.
            return _load(archive, tag, platform, cache)
        finally:
            subprocess.run(
                [program, "rmi", "-f", tag],
                capture_output=True,
                check=False,
                env=engine_environment(),
            )


def _build_argv(program: str, engine: str, recipe: Path, ignore: Path, context: Path, tag: str,
                platform: Platform, plain_http_base: bool) -> list[str]:  # fmt: skip
    verb = ["bud"] if engine == "buildah" else ["build"]
    argv = [program, *verb, "--platform", str(platform), "-f", str(recipe), "-t", tag]
    if engine in ("podman", "buildah"):
        argv += ["--ignorefile", str(ignore)]
        if plain_http_base:
            argv.append("--tls-verify=false")
    return [*argv, str(context)]


def _save_argv(program: str, engine: str, tag: str, archive: Path) -> list[str]:
    if engine == "buildah":
        return [program, "push", tag, f"docker-archive:{archive}:{tag}"]
    if engine == "podman":
        return [program, "save", "--format", "docker-archive", "-o", str(archive), tag]
    return [program, "save", "-o", str(archive), tag]


def _load(archive: Path, tag: str, platform: Platform, cache: LayerCache) -> Image:
    image = read_docker_archive(archive, None, platform, cache)
    # Layers now live in the cache; only the config (small) was read from the archive.
    config = image.config.read_bytes()

    return Image(
        image.manifest_bytes, Blob.in_memory(image.config.descriptor, config), image.layers
    )


def _run(argv: list[str], log: Callable[[str], None], *, what: str) -> None:
    log(f"$ {' '.join(argv)}")
    process = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=engine_environment(),
    )
    assert process.stdout is not None
    tail: list[str] = []
    for line in process.stdout:
        line = line.rstrip("\n")
        log(line)
        tail = [*tail[-19:], line]
    if process.wait() != 0:
        raise EngineError(
            f"{what} failed (exit {process.returncode}):\n" + "\n".join(tail),
            hint="the lines above are the engine's own output",
        )
