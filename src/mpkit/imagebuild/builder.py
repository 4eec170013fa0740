"""Build an adapter image from a project: natively when possible, else with an engine."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mpkit.cache.root import CacheRoot
from mpkit.engine import EngineChoice, find_engines
from mpkit.errors import ConfigError, ContainerEngineError
from mpkit.image.cache import LayerCache
from mpkit.image.layerwriter import source_date_epoch
from mpkit.image.select import DEFAULT_PLATFORM
from mpkit.image.types import Image, Platform
from mpkit.imagebuild.base import BaseImage, BaseResolver, base_reference, mirror_candidates
from mpkit.imagebuild.context import BuildContext
from mpkit.imagebuild.dockerfile import DockerfileError, NeedsEngineError, parse_dockerfile
from mpkit.imagebuild.fallback import engine_build
from mpkit.imagebuild.native import SOURCE_BUILD_FEATURE, NativeBuild, StepReport, check_native
from mpkit.imagebuild.stage import StageEvaluator
from mpkit.reference import is_loopback_host
from mpkit.registry.transport import ClientOptions
from mpkit.settings import Settings


@dataclass(frozen=True)
class BuildRequest:
    project: Path
    cache_root: Path  # see mpkit.cache.CacheRoot
    settings: Settings
    client_options: ClientOptions
    dockerfile: Path | None = None  # default: <project>/Dockerfile
    platform: Platform = DEFAULT_PLATFORM
    build_args: dict[str, str] = field(default_factory=dict)
    engine: EngineChoice = EngineChoice.AUTO
    wheelhouse: Path | None = None
    pull: bool = False  # ask the base's registry even if its tag was resolved recently
    allow_external_links: bool = False  # follow links that leave the project


@dataclass(frozen=True)
class BuildResult:
    image: Image
    builder: str  # "native" or the engine's name
    context_digest: str
    base: BaseImage | None = None
    steps: list[StepReport] = field(default_factory=list)
    fallback_reason: str | None = None


def build_image(
    request: BuildRequest, *, log: Callable[[str], None] = lambda _m: None
) -> BuildResult:
    dockerfile_path = request.dockerfile or request.project / "Dockerfile"
    try:
        text = dockerfile_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"no Dockerfile at {dockerfile_path}",
            path=str(dockerfile_path),
            hint="an SDK project has a Dockerfile at its root; pass the project path",
        ) from None
    context = BuildContext(request.project, allow_external_links=request.allow_external_links)
    cache = CacheRoot(request.cache_root).open()
    try:
        parsed = parse_dockerfile(text, path=str(dockerfile_path))
        check_native(parsed)
    except NeedsEngineError as exc:
        return _engine(request, cache, context, text, exc, log)
    evaluator = StageEvaluator(
        parsed, build_args=request.build_args, platform=str(request.platform)
    )
    platform = Platform.parse(evaluator.platform) if evaluator.platform else request.platform
    resolver = BaseResolver(
        cache,
        settings=request.settings,
        options=request.client_options,
        platform=platform,
        warn=log,
        recheck=request.pull,
    )
    base = resolver.resolve(evaluator.base_image)
    log(f"base {evaluator.base_image} → {base.source} ({base.digest or 'scratch'})")
    native = NativeBuild(
        parsed,
        base,
        context=context,
        cache=cache,
        platform=platform,
        build_args=request.build_args,
        created=source_date_epoch(),
        wheelhouse=request.wheelhouse,
        log=log,
    )
    try:
        result = native.run()
    except NeedsEngineError as exc:  # found only while running, e.g. ADD of a tar archive
        return _engine(request, cache, context, text, exc, log)
    return BuildResult(result.image, "native", context.digest(), base, result.steps)


def _engine(
    request: BuildRequest,
    cache: CacheRoot,
    context: BuildContext,
    text: str,
    reason: NeedsEngineError,
    log: Callable[[str], None],
) -> BuildResult:
    line, why = reason.line or 1, reason.message
    where = f"{request.dockerfile or request.project / 'Dockerfile'} line {line}"
    options_hint = (
        "use --engine auto (or podman, docker, buildah) with an engine installed, or change the "
        "Dockerfile to what the native builder supports: FROM, COPY/ADD of local files, ENV, ARG, "
        "WORKDIR, USER, LABEL, EXPOSE, CMD, ENTRYPOINT, STOPSIGNAL, HEALTHCHECK and "
        "'RUN pip install …'"
    )
    engines = find_engines(request.engine)
    if not engines:
        hint = reason.hint if reason.feature == SOURCE_BUILD_FEATURE else options_hint
        raise ContainerEngineError(f"{where}: {why}, and {request.engine.unavailable()}", hint=hint)
    engine = engines[0]
    log(f"{where}: {why}; building with {engine.name}")
    rewrites, plain_http = _from_rewrites(text, request)
    image = engine_build(
        engine, context, text, platform=request.platform, from_rewrites=rewrites,
        plain_http_base=plain_http, cache=LayerCache(cache), log=log,
    )  # fmt: skip
    return BuildResult(image, engine.name, context.digest(), fallback_reason=f"line {line}: {why}")


def _from_rewrites(text: str, request: BuildRequest) -> tuple[dict[str, str], bool]:
    """FROM names → the reference an engine should pull (alias, then first mirror)."""
    rewrites: dict[str, str] = {}
    plain_http = False
    try:
        stages = parse_dockerfile(text).stages
    except DockerfileError:
        return rewrites, plain_http
    names = {s.name for s in stages if s.name}
    for stage in stages:
        if stage.base in names or stage.base == "scratch" or "$" in stage.base:
            continue
        reference = mirror_candidates(base_reference(stage.base, request.settings),
                                      request.settings)[0]  # fmt: skip
        rewrites[stage.base] = str(reference)
        if is_loopback_host(reference.registry) or (
            reference.registry in request.client_options.insecure_registries
        ):
            plain_http = True
    return rewrites, plain_http
