"""Build an adapter image from a project: natively when possible, else with an engine."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mpkit.cache.root import CacheRoot
from mpkit.engine import EngineChoice, find_engines
from mpkit.errors import ConfigError, ContainerEngineError, DockerfileError
from mpkit.image.cache import LayerCache
from mpkit.image.layerwriter import source_date_epoch
from mpkit.image.select import DEFAULT_PLATFORM
from mpkit.image.types import Image, Platform
from mpkit.imagebuild.base import BaseImage, BaseResolver
from mpkit.imagebuild.context import BuildContext
from mpkit.imagebuild.dockerfile import Dockerfile, NeedsEngineError, parse_dockerfile
from mpkit.imagebuild.enginefrom import EngineBases, plan_bases, scan_bases
from mpkit.imagebuild.fallback import engine_build
from mpkit.imagebuild.native import SOURCE_BUILD_FEATURE, NativeBuild, StepReport, check_native
from mpkit.imagebuild.registrycache import RegistryLayerCache
from mpkit.imagebuild.stage import StageEvaluator
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
    registry_cache: RegistryLayerCache | None = None  # dependency layers shared by a team


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
    requested = _engine_requested(parsed, request.engine)
    if requested is not None:
        return _engine(request, cache, context, text, requested, log)
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
        registry_cache=request.registry_cache,
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
    line, why = reason.line or 1, reason.reason
    dockerfile_path = str(request.dockerfile or request.project / "Dockerfile")
    where = f"{dockerfile_path} line {line}"
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
    bases = _engine_bases(request, cache, text, dockerfile_path, log)
    image = engine_build(
        engine, context, text, platform=request.platform, bases=bases, settings=request.settings,
        insecure_registries=request.client_options.insecure_registries,
        build_args=request.build_args, cache=LayerCache(cache), log=log,
    )  # fmt: skip
    return BuildResult(image, engine.name, context.digest(), bases.final_base,
                       fallback_reason=f"line {line}: {why}")  # fmt: skip


def _engine_bases(
    request: BuildRequest, cache: CacheRoot, text: str, path: str, log: Callable[[str], None]
) -> EngineBases:
    """Every FROM of the Dockerfile through mpkit's settings."""
    try:
        parsed = parse_dockerfile(text, path=path)
    except (DockerfileError, NeedsEngineError):  # only the engine can parse it (heredocs)
        return scan_bases(text, path=path, settings=request.settings)

    def resolve(name: str, platform: Platform) -> BaseImage:
        resolver = BaseResolver(cache, settings=request.settings, options=request.client_options,
                                platform=platform, warn=log, recheck=request.pull)  # fmt: skip
        base = resolver.resolve(name)
        log(f"base {name} → {base.source} ({base.digest or 'scratch'})")
        return base

    return plan_bases(parsed, build_args=request.build_args, platform=request.platform,
                      settings=request.settings, resolve=resolve, log=log)  # fmt: skip


def _engine_requested(dockerfile: Dockerfile, choice: EngineChoice) -> NeedsEngineError | None:
    """With an engine chosen by name, every RUN line runs in it (a Dockerfile without
    RUN needs no engine and is built natively: the same files, reproducibly)."""
    if choice.kind is None:
        return None
    for stage in dockerfile.stages:
        for instr in stage.instructions:
            if instr.keyword == "RUN":
                return NeedsEngineError(
                    f"RUN goes to {choice.kind} (--engine {choice.kind})",
                    feature="run", path=dockerfile.path, line=instr.line,
                )  # fmt: skip
    return None
