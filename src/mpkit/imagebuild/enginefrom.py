"""The FROM lines of an engine build, through mpkit's settings.

Every stage's image is named as mpkit's own builder names it (image aliases, Docker Hub's
rules). The base the final image starts from is pulled and pinned by digest by mpkit, so
the engine builds on exactly the base whose compressed layers mpkit holds and the result
can keep their digests. Mirrors, API endpoints and insecure registries become the
engine's registry configuration (podman, buildah) or, for docker, FROM lines that name
the mirror. A pull that fails is blamed on its FROM line, with the setting that fixes it.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from mpkit.engine import EngineKind
from mpkit.engine.registriesconf import Mirror, RegistryRule
from mpkit.errors import BaseImageError, ContainerEngineError, InvalidReferenceError, MpkitError
from mpkit.image.types import Platform
from mpkit.imagebuild.base import BaseImage, base_reference, mirror_candidates
from mpkit.imagebuild.dockerfile import Dockerfile, Stage
from mpkit.imagebuild.stage import StageEvaluator
from mpkit.reference import DOCKER_HUB, Reference, is_loopback_host, normalize_registry
from mpkit.settings import ALIASES_ENV, MIRRORS_ENV, Settings, settings_path

# (image name, platform) → the base, pulled into mpkit's cache and pinned by digest
Resolve = Callable[[str, Platform], BaseImage]
_FROM = re.compile(r"^(\s*FROM\s+(?:--\S+\s+)*)(\S+)(.*)$", re.IGNORECASE)
_STAGE_NAME = re.compile(r"^\s+AS\s+(\S+)", re.IGNORECASE)
# Words of an engine's message about a base it could not pull (podman, buildah, docker).
_PULL_FAILURE = re.compile(
    r"pull|pinging|manifest|initializing source|resolve|/v2/|docker login|unauthorized"
    r"|access denied|access to the resource is denied",
    re.IGNORECASE,
)
BLAMED_LINES = 3  # the end of a failed build's output that names the image it could not pull
DAEMON_JSON = "/etc/docker/daemon.json"


@dataclass(frozen=True)
class StageBase:
    """The image one FROM line names (not scratch, not an earlier stage)."""

    line: int
    written: str  # after FROM, as written
    name: str  # with the ARGs expanded: what aliases are looked up by
    upstream: Reference | None  # what mpkit's builder would pull; None if mpkit cannot say
    problem: MpkitError | None = None  # why mpkit could not name or pull it
    digest: str | None = None  # pinned by mpkit: the final image's base

    def engine_reference(self, kind: EngineKind, settings: Settings) -> Reference | None:
        """What the engine's FROM says: the image itself (podman and buildah find the
        mirrors in their registry configuration) or its first mirror (docker), by digest
        when mpkit pinned it."""
        if self.upstream is None:
            return None
        reference = self.upstream
        if not kind.reads_registries_conf:
            # A broken mirror setting: the engine pulls the image itself.
            with contextlib.suppress(InvalidReferenceError):
                reference = mirror_candidates(reference, settings)[0]
        if self.digest is not None:
            reference = Reference(reference.repository, digest=self.digest)
        return reference

    def names(self, kind: EngineKind, settings: Settings) -> set[str]:
        """How an engine's error message may name this image."""
        found = {self.written, self.name}
        for reference in (self.upstream, self.engine_reference(kind, settings)):
            if reference is not None:
                found |= {str(reference.repository), str(reference)}
                if reference.registry == DOCKER_HUB:  # docker and podman say "gradle:8"
                    found.add(
                        str(reference).removeprefix(f"{DOCKER_HUB}/").removeprefix("library/")
                    )
        return {name for name in found if name}

    def hosts(self, kind: EngineKind, settings: Settings) -> set[str]:
        """The registries the engine may have asked for this image."""
        if self.upstream is None:
            return set()
        registry = self.upstream.registry
        mirrors = (m.split("/", 1)[0] for m in settings.mirrors.get(registry, ()))
        return {registry, settings.endpoints.get(registry, registry), *mirrors}


@dataclass(frozen=True)
class EngineBases:
    """The images every FROM of a Dockerfile names, for one engine build."""

    path: str  # the Dockerfile, for messages
    stages: list[StageBase] = field(default_factory=list)
    final_base: BaseImage | None = None  # pulled by mpkit: its layers keep their digests

    def from_rewrites(self, kind: EngineKind, settings: Settings) -> dict[int, tuple[str, str]]:
        """FROM line number → (image as written, what the engine should pull instead)."""
        rewrites = {}
        for stage in self.stages:
            reference = stage.engine_reference(kind, settings)
            if reference is not None and str(reference) != stage.written:
                rewrites[stage.line] = (stage.written, str(reference))
        return rewrites

    def registry_rules(self, settings: Settings, insecure: frozenset[str]) -> list[RegistryRule]:
        """mpkit's mirrors, endpoints and insecure registries as registry rules, plus the
        loopback registries the FROM lines name (reached over plain HTTP, as by mpkit):
        exactly those registries are marked insecure."""
        named = {s.upstream.registry for s in self.stages if s.upstream is not None}
        registries = set(settings.mirrors) | set(settings.endpoints) | insecure | named
        rules = []
        for registry in sorted(registries):
            location = settings.endpoints.get(registry, registry)
            mirrors = tuple(
                Mirror(m.rstrip("/"), _insecure(m, insecure))
                for m in settings.mirrors.get(registry, ())
            )
            unsafe = registry in insecure or _insecure(location, insecure)
            rule = RegistryRule(registry, location, unsafe, mirrors)
            if rule.location != registry or rule.insecure or rule.mirrors:
                rules.append(rule)
        return rules

    def pull_failure(
        self,
        failure: ContainerEngineError,
        kind: EngineKind,
        settings: Settings,
        insecure: frozenset[str],
    ) -> BaseImageError | None:
        """The FROM line whose image the engine could not pull, when the end of its output
        says so: which line, which registry, and the setting that fixes it."""
        lines = [line for line in failure.output.splitlines() if line.strip()]
        text = "\n".join(lines[-BLAMED_LINES:])
        if not _PULL_FAILURE.search(text):
            return None
        # The image's own name first; else its registry (the engine pulls the stages in
        # order and stops at the first failure, so the first stage that matches).
        for clues in (StageBase.names, StageBase.hosts):
            for stage in self.stages:
                if any(clue in text for clue in clues(stage, kind, settings)):
                    return _pull_error(self.path, stage, kind, settings, insecure, lines[-1])
        return None


def plan_bases(
    dockerfile: Dockerfile,
    *,
    build_args: Mapping[str, str],
    platform: Platform,
    settings: Settings,
    resolve: Resolve,
    log: Callable[[str], None],
) -> EngineBases:
    """Name every stage's image; pull and pin the one the final image starts from."""
    final = _final_image_stage(dockerfile)
    stages = []
    final_base = None
    names: set[str] = set()
    for stage in dockerfile.stages:
        evaluator = StageEvaluator(dockerfile, stage, build_args=build_args,
                                   platform=str(platform))  # fmt: skip
        try:
            name = evaluator.base_image
            stage_platform = Platform.parse(evaluator.platform) if evaluator.platform else platform
        except MpkitError:
            name, stage_platform = "", platform  # ARGs the engine may still expand
        earlier_stage = name.lower() in names
        if stage.name:
            names.add(stage.name)
        if name == "scratch" or earlier_stage:
            continue
        upstream, problem, digest = None, None, None
        try:
            upstream = base_reference(name, settings)
            if stage is final:
                final_base = resolve(name, stage_platform)
                digest = final_base.digest
        except MpkitError as exc:
            problem = exc
            log(f"line {stage.line}: mpkit cannot pull {name or stage.base} itself "
                f"({exc.message}); leaving it to the engine")  # fmt: skip
        stages.append(StageBase(stage.line, stage.base, name, upstream, problem, digest))
    return EngineBases(dockerfile.path, stages, final_base)


def scan_bases(dockerfile: str, *, path: str, settings: Settings) -> EngineBases:
    """The FROM lines of a Dockerfile only the engine can parse (heredocs), found by their
    shape: named through mpkit's settings, but not pulled (ARGs are left to the engine)."""
    stages, names = [], set()
    for number, line in enumerate(dockerfile.splitlines(), start=1):
        match = _FROM.match(line)
        if match is None:
            continue
        image = match.group(2)
        if image != "scratch" and "$" not in image and image.lower() not in names:
            try:
                stages.append(StageBase(number, image, image, base_reference(image, settings)))
            except MpkitError as exc:
                stages.append(StageBase(number, image, image, None, exc))
        stage_name = _STAGE_NAME.match(match.group(3))
        if stage_name:
            names.add(stage_name.group(1).lower())
    return EngineBases(path, stages)


def rewrite_from_lines(dockerfile: str, rewrites: Mapping[int, tuple[str, str]]) -> str:
    """Point the FROM lines (by line number) at the images the engine should pull; a line
    that does not say what was expected (a FROM continued on the next line) stays."""
    out = []
    for number, line in enumerate(dockerfile.splitlines(), start=1):
        match = _FROM.match(line)
        if match and number in rewrites and match.group(2) == rewrites[number][0]:
            line = f"{match.group(1)}{rewrites[number][1]}{match.group(3)}"
        out.append(line)
    return "\n".join(out) + "\n"


def _final_image_stage(dockerfile: Dockerfile) -> Stage | None:
    """The stage whose FROM names the image the final image starts from (following FROM
    lines that name earlier stages), or None when that cannot be told without the ARGs."""
    by_name = {stage.name: stage for stage in dockerfile.stages if stage.name}
    stage = dockerfile.final_stage
    for _ in dockerfile.stages:
        earlier = by_name.get(stage.base.lower())
        if earlier is None or earlier.line >= stage.line:
            return stage
        stage = earlier
    return None


def _insecure(location: str, insecure: frozenset[str]) -> bool:
    """Whether mpkit reaches the registry of *location* (``host[:port][/path]``) without
    TLS verification: a loopback registry, or one the user marked insecure."""
    host = location.split("/", 1)[0]
    with contextlib.suppress(InvalidReferenceError):
        host = normalize_registry(host)
    return host in insecure or is_loopback_host(host)


def _pull_error(
    path: str,
    stage: StageBase,
    kind: EngineKind,
    settings: Settings,
    insecure: frozenset[str],
    engine_said: str,
) -> BaseImageError:
    where = f"{path} line {stage.line}: FROM {stage.written}"
    if stage.upstream is None:
        problem = stage.problem
        return BaseImageError(
            f"{where}: {kind} could not pull it ({engine_said.strip()})"
            + (f", and mpkit cannot name it: {problem.message}" if problem else ""),
            hint=problem.hint if problem else None,
        )
    registry = stage.upstream.registry
    message = (
        f"{where}: {kind} could not pull {stage.upstream} from {registry} ({engine_said.strip()})"
    )
    if stage.problem is not None:
        message += f"; mpkit could not pull it either: {stage.problem.message}"
    settings_file = settings.path or settings_path()
    mirrors = settings.mirrors.get(registry, ())
    hints = []
    if mirrors:
        hints.append(f"the mirrors set for {registry} ({', '.join(mirrors)}) did not serve it "
                     f"either: check that they hold {stage.upstream.path}")  # fmt: skip
    hints.append(
        f"to pull {registry} images through a mirror you can reach, set "
        f'"mirrors": {{"{registry}": ["MIRROR-HOST/PATH"]}} in {settings_file} '
        f"(or {MIRRORS_ENV}={registry}=MIRROR-HOST/PATH)"
    )
    copy = f"HOST/PATH/{stage.upstream.path.rsplit('/', 1)[-1]}"
    copy += f":{stage.upstream.tag}" if stage.upstream.tag else ""
    hints.append(
        f'or point an image alias at a copy you can pull: "aliases": {{"{stage.name}": '
        f'"{copy}"}} (or {ALIASES_ENV}={stage.name}={copy})'
    )
    if kind is EngineKind.DOCKER:
        plain = [h for h in (registry, *mirrors) if _insecure(h, insecure)
                 and not is_loopback_host(h.split("/", 1)[0])]  # fmt: skip
        if plain:
            hints.append(
                f"docker reaches {', '.join(plain)} without TLS verification only when its "
                f'daemon lists it under "insecure-registries" in {DAEMON_JSON} (then restart '
                "dockerd); mpkit cannot tell docker's daemon that for one build"
            )
    return BaseImageError(message, hint="; ".join(hints))
