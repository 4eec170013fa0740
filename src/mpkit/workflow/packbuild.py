"""`mpkit build` / `mp-build`: project → image → registry → pack.

Order matters for the user: everything that can fail fast (project files, pack inputs, a
project's own describe.xml, registry choice, credentials, push permission) is checked
before the long image build, and the outputs (the pack, config.json) are written only at
the very end, atomically, so a failed or cancelled build leaves the previous ones
untouched.

What needs the adapter's definition (its adapter kind against manifest.txt, the
generated describe.xml against the schema) is checked before the first upload whenever
the definition can be had without the registry: remembered for this image, or from the
host way. When the image way must pull the pushed image, the image is pushed by digest
alone, the definition asked and checked, and only then tagged, so a build that fails
there publishes no tag.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mpkit.cache.root import CacheRoot, sharing
from mpkit.credentials import Credential
from mpkit.credentials.ecr import check_ecr_repository
from mpkit.describe import (
    BuildDescribe,
    DescribeResults,
    describe_before_push,
    describe_for_build,
    own_describe,
)
from mpkit.engine import EngineChoice
from mpkit.errors import RegistryError
from mpkit.image.types import Image
from mpkit.imagebuild.builder import BuildRequest, BuildResult, build_image
from mpkit.imagebuild.registrycache import registry_cache_for
from mpkit.imagebuild.sdkbases import PublishedBase, SdkBaseRequest, publish_sdk_bases
from mpkit.interaction import Prompter, Reporter
from mpkit.pack.writer import ImageLocation, PreparedPack, check_pack_inputs, prepare_pack
from mpkit.project.displayname import display_name
from mpkit.project.globalconfig import remember_project
from mpkit.project.load import load_project, save_container_repository
from mpkit.project.model import GlobalConfig, Project
from mpkit.reference import Reference, Repository
from mpkit.registry import (
    PushResult,
    RegistryClient,
    blob_locations,
    open_client,
    push_image,
    tag_image,
)
from mpkit.registry.responses import rate_limit_note
from mpkit.registry.stats import TransferStats
from mpkit.registry.transport import ClientOptions
from mpkit.settings import Settings
from mpkit.verify import PushedImageCheck, VerifyReport
from mpkit.workflow.access import Targets, choose_targets, connect_for_push
from mpkit.workflow.buildlock import project_build_lock
from mpkit.workflow.buildlog import build_log
from mpkit.workflow.verifying import verify_and_report

log = logging.getLogger("mpkit.imagebuild")
TAG_DIGEST_CHARS = 12
# Stands in for the digest while the pack's image location is checked before the build.
_PLACEHOLDER_DIGEST = "sha256:" + "0" * 64


@dataclass(frozen=True)
class PackBuildOptions:
    project: Path
    global_config: GlobalConfig
    settings: Settings
    client_options: ClientOptions
    registry_tag: str | None = None
    ask_registry: bool = False  # `-r` given without a value: ask again
    push_registry: str | None = None
    use_default_registry: bool = False
    credential: Credential | None = None  # from flags / stdin / environment
    insecure_collector: bool = False
    verify: bool = True  # run the cloud proxy's checks on the finished pack
    engine: EngineChoice = EngineChoice.AUTO
    pull: bool = False  # re-check the base image's tag now (--pull)
    wheelhouse: Path | None = None
    allow_external_links: bool = False  # follow links that leave the project (pack and image)
    cache_from: tuple[Repository, ...] = ()  # more registry caches of dependency layers
    cache_to: Repository | None = None  # record dependency layers here, not in the push target
    registry_cache: bool = True  # --no-registry-cache: neither


@dataclass
class PackBuildOutcome:
    pack: Path
    image: Reference  # the pull reference recorded in the pack, with the digest
    pushed_to: Reference
    digest: str
    tag: str
    builder: str
    stats: TransferStats
    seconds: float
    build: BuildResult
    saved_repository: str | None = None
    warnings: list[str] = field(default_factory=list)
    verification: VerifyReport | None = None
    describe: dict[str, Any] = field(default_factory=dict)
    registry_cache: dict[str, int] = field(default_factory=dict)  # hits, recorded
    sdk_bases: list[PublishedBase] = field(default_factory=list)  # published by this build

    def to_dict(self) -> dict[str, Any]:
        return {
            "pack": str(self.pack),
            "image": str(self.image),
            "pushed_to": str(self.pushed_to),
            "digest": self.digest,
            "tag": self.tag,
            "builder": self.builder,
            "fallback_reason": self.build.fallback_reason,
            "layers": [
                {
                    "instruction": s.instruction,
                    "digest": s.layer,
                    "size": s.size,
                    "cached": s.cached,
                }
                for s in self.build.steps
                if s.layer
            ],
            "push": self.stats.to_dict(),
            "saved_container_repository": self.saved_repository,
            "warnings": self.warnings,
            "verify": self.verification.to_dict() if self.verification else None,
            "describe": self.describe,
            "registry_cache": self.registry_cache,
            "sdk_bases": [base.to_dict() for base in self.sdk_bases],
            "seconds": round(self.seconds, 3),
        }


def build_pack_flow(
    options: PackBuildOptions, *, prompter: Prompter, reporter: Reporter
) -> PackBuildOutcome:
    """Build the project into its pack, one build of a project at a time."""
    started = time.monotonic()
    project = load_project(options.project)
    # Fail fast, before anything is written: every file the pack will hold is readable,
    # within the link policy and where the content rules allow it.
    check_pack_inputs(project, allow_external_links=options.allow_external_links)
    with project_build_lock(options.project, waiting=reporter.warn):
        return _build_pack_flow(
            project, options, started=started, prompter=prompter, reporter=reporter
        )


def _build_pack_flow(
    project: Project,
    options: PackBuildOptions,
    *,
    started: float,
    prompter: Prompter,
    reporter: Reporter,
) -> PackBuildOutcome:
    ask = prompter if prompter.interactive else None
    own = own_describe(project, ask)  # fail fast: before the long build, not after the push
    if own is not None:
        project = own.project
    secrets = list(options.credential.secrets) if options.credential else []
    with build_log(project.root / "logs" / "build.log", secrets):
        log.info("building %s (%s %s)", project.root, display_name(project),
                 project.manifest.version)  # fmt: skip
        targets = choose_targets(
            project, options.global_config, registry_tag=options.registry_tag,
            push_registry=options.push_registry, ask_registry=options.ask_registry,
            prompter=prompter, reporter=reporter,
        )  # fmt: skip
        log.info("pull repository %s (%s), push repository %s", targets.pull,
                 targets.pull_source, targets.push)  # fmt: skip
        _location(targets.pull, _PLACEHOLDER_DIGEST, _tag(project, _PLACEHOLDER_DIGEST),
                  options, project).validated()  # fmt: skip
        check_ecr_repository(targets.push)
        access = connect_for_push(
            targets.push, options=options.client_options, explicit=options.credential,
            prompter=prompter, reporter=reporter,
        )  # fmt: skip
        client = access.client  # for reads now; proven before the first write
        layer_cache = registry_cache_for(
            client, targets.push, cache_from=options.cache_from, cache_to=options.cache_to,
            enabled=options.registry_cache, options=options.client_options, warn=reporter.warn,
        )  # fmt: skip
        with access, contextlib.closing(layer_cache), sharing(layer_cache):
            settings, sdk_bases = _sdk_bases(project, targets.push, client, options, reporter)
            result = build_image(
                BuildRequest(
                    project=project.root, cache_root=CacheRoot.default().path,
                    settings=settings, client_options=options.client_options,
                    engine=options.engine, wheelhouse=options.wheelhouse, pull=options.pull,
                    allow_external_links=options.allow_external_links,
                    registry_cache=layer_cache,
                ),
                log=_both(reporter),
            )  # fmt: skip
            digest = result.image.digest
            tag = _tag(project, digest)
            results = DescribeResults.under(CacheRoot.default().path, remote=layer_cache)
            described = own or describe_before_push(
                project, result.image, prompter=ask, engine=_describe_engine(options),
                cache_dir=CacheRoot.default().path,
                results=results, log=_both(reporter),
            )  # fmt: skip
            access.proven()  # checked before the build, or while it ran
            if described is not None:  # everything checked: push under the tag
                prepared = _prepare(described, targets, digest, tag, options)
                pushed = _push(client, result.image, Reference(targets.push, tag, None),
                               reporter)  # fmt: skip
            else:  # by digest alone until the definition has been asked and checked
                pushed = _push(client, result.image, Reference(targets.push, None, digest),
                               reporter)  # fmt: skip
                described = describe_for_build(
                    project, result.image,
                    prompter=ask,
                    engine=_describe_engine(options),
                    pushed_reference=str(pushed.reference),
                    insecure_registries=options.client_options.insecure_registries,
                    cache_dir=CacheRoot.default().path,
                    results=results,
                    log=_both(reporter),
                )  # fmt: skip
                prepared = _prepare(described, targets, digest, tag, options)
                tag_image(client, result.image, Reference(targets.push, tag, None))
                log.info("tagged %s:%s", targets.push, tag)
            # The cloud proxy's check of the image starts now, to overlap packing.
            pushed_check = (
                PushedImageCheck(Reference(targets.pull, tag, digest), result.image,
                                 options=options.client_options)
                if options.verify
                else None
            )  # fmt: skip
            cache_use = {"hits": layer_cache.hits, "recorded": layer_cache.publish()}
        # The digest recorded is the one computed from the exact manifest bytes and
        # confirmed by the registry (push_image raises if they differ).
        warnings = _docker_hub_allowance(targets.pull, digest, options.client_options)
        for warning in warnings:
            reporter.warn(warning)
        project = described.project  # manifest.txt may have been fixed on request
        pack = prepared.write()
        saved = _save_repository(project, targets)
        remember_project(options.global_config, project.root)  # as the SDK does
        log.info("pack %s, image %s@%s", pack, targets.pull, digest)
        verification = (
            verify_and_report(pack, options.client_options, reporter, pushed=pushed_check)
            if pushed_check
            else None
        )
    return PackBuildOutcome(
        pack=pack, image=Reference(targets.pull, tag, digest),
        pushed_to=Reference(targets.push, tag, digest),
        digest=digest, tag=tag, builder=result.builder, stats=pushed.stats,
        seconds=time.monotonic() - started, build=result, saved_repository=saved,
        warnings=warnings, verification=verification, sdk_bases=sdk_bases,
        registry_cache=cache_use,
        describe=(
            {"source": "generated from the adapter", **described.definition.to_dict()}
            if described.definition
            else {"source": "conf/describe.xml", "api_version": described.api_version}
        ),
    )  # fmt: skip


def _sdk_bases(
    project: Project,
    target: Repository,
    client: RegistryClient,
    options: PackBuildOptions,
    reporter: Reporter,
) -> tuple[Settings, list[PublishedBase]]:
    """Publish the SDK local bases the Dockerfile needs beside the push target, with the
    push's own client (see mpkit.imagebuild.sdkbases); the settings then alias them."""
    try:
        dockerfile = (project.root / "Dockerfile").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return options.settings, []  # the image build says what is wrong with it
    request = SdkBaseRequest(
        project=project.root, target=target, client=client, settings=options.settings,
        client_options=options.client_options, cache_root=CacheRoot.default().path,
        engine=options.engine, pull=options.pull,
    )  # fmt: skip
    return publish_sdk_bases(request, dockerfile, reporter=reporter, log=_both(reporter))


def _tag(project: Project, digest: str) -> str:
    return f"{project.manifest.version}_{digest.partition(':')[2][:TAG_DIGEST_CHARS]}"


def _describe_engine(options: PackBuildOptions) -> EngineChoice:
    # --engine none is about building; describing still runs the image when it can.
    return EngineChoice.AUTO if options.engine is EngineChoice.NONE else options.engine


def _push(
    client: RegistryClient, image: Image, target: Reference, reporter: Reporter
) -> PushResult:
    with reporter.progress("push") as progress:
        return push_image(client, image, target, locations=blob_locations(), progress=progress)


def _prepare(
    described: BuildDescribe, targets: Targets, digest: str, tag: str, options: PackBuildOptions
) -> PreparedPack:
    """The pack, assembled and checked (not written): what fails here fails before a tag."""
    project = described.project
    return prepare_pack(
        project,
        _location(targets.pull, digest, tag, options, project),
        insecure_collector=options.insecure_collector,
        api_version=described.api_version,
        describe_xml=described.describe_xml,
        resources_properties=described.resources_properties,
        allow_external_links=options.allow_external_links,
    )


def _both(reporter: Reporter) -> Any:
    def emit(message: str) -> None:
        log.info("%s", message)
        reporter.info(message)

    return emit


def _location(
    pull: Repository, digest: str, tag: str, options: PackBuildOptions, project: Project
) -> ImageLocation:
    default_registry = options.use_default_registry or project.config.use_default_registry
    return ImageLocation(
        registry=None if default_registry else pull.registry,
        repository=f"/{pull.path}",
        digest=digest,
        tag=tag,
    )


def _save_repository(project: Project, targets: Targets) -> str | None:
    """After a successful push, remember the pull repository (never the push one)."""
    text = str(targets.pull)
    if project.config.container_repository == text:
        return None
    save_container_repository(project.config, text)
    return text


def _docker_hub_allowance(pull: Repository, digest: str, options: ClientOptions) -> list[str]:
    """Aria pulls anonymously, and Docker Hub rate-limits anonymous pulls. A HEAD
    costs no pull, so ask Docker Hub how many are left."""
    if not pull.is_docker_hub:
        return []
    try:
        with open_client(pull.registry, options=options, anonymous=True) as client:
            found = client.head_manifest(pull.path, digest)
    except RegistryError as exc:
        return [f"Aria Operations pulls {pull} anonymously, and anonymous access failed: "
                f"{exc.message}"]  # fmt: skip
    note = rate_limit_note(found[1]) if found else ""
    return [
        f"Aria Operations pulls {pull} anonymously and Docker Hub limits anonymous pulls"
        + (f" ({note})" if note else "")
        + "; a private registry avoids the limit"
    ]
