"""Publish the SDK's local base images once, next to the adapter, and remember where.

A project from SDK 1.3.x builds ``FROM base-adapter:python-1.2.0``, a name only the SDK's
own ``mp-build`` can make (:mod:`mpkit.imagebuild.sdkrecipes`). When no image alias says
where that base is, ``mpkit build`` provides it before building the adapter:

1. a base already pushed beside the adapter (by a teammate, an earlier CI run, or by hand)
   is used as it is;
2. otherwise the SDK's recipe is built once, natively when it allows, else with podman,
   docker or buildah, and pushed beside the adapter with the build's own client, hence its
   credentials (:func:`~mpkit.imagebuild.sdkrecipes.publish_reference` says why there);
3. the alias is recorded in the settings file, pinned by digest, and one line says what
   was done.

The alias names the pushed image by tag *and* digest: the tag shows what it is, the digest
makes every later build use exactly that image (a re-pushed tag cannot change the adapter
behind the user's back) and lets a build that has it cached skip the registry entirely.
When any step is impossible, the error carries the commands that do it by hand
(:mod:`mpkit.imagebuild.sdkmanual`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mpkit.cache.root import CacheRoot
from mpkit.engine import EngineChoice, find_engines
from mpkit.errors import ConfigError, MpkitError, RegistryError, SdkBaseError
from mpkit.filelock import held
from mpkit.image.select import DEFAULT_PLATFORM
from mpkit.image.types import Image
from mpkit.imagebuild.base import remember_base
from mpkit.imagebuild.builder import BuildRequest, BuildResult, build_image
from mpkit.imagebuild.sdkmanual import ManualContext, describe_base, publish_by_hand
from mpkit.imagebuild.sdkrecipes import (
    RecipeSearch,
    find_recipe,
    local_bases_in,
    publish_reference,
)
from mpkit.interaction import Reporter
from mpkit.jsonfile import parse_json
from mpkit.reference import Reference, Repository
from mpkit.registry import RegistryClient, blob_locations, push_image, resolve_image
from mpkit.registry.transport import ClientOptions
from mpkit.settings import ALIASES_ENV, Settings, record_alias
from mpkit.statedir import state_dir

logger = logging.getLogger(__name__)  # logs/build.log and --debug, not the user's screen
FOUND = "found"  # PublishedBase.how: it was in the registry already


@dataclass(frozen=True)
class PublishedBase:
    """A local base that this build provided."""

    name: str  # e.g. base-adapter:python-1.2.0
    reference: Reference  # where it is, pinned by digest
    how: str  # the builder ("native", "podman", …), or FOUND
    recipe: Path | None  # the SDK recipe it was built from (None when found)
    alias_file: Path | None  # where the alias was recorded (None: it could not be)

    def summary(self) -> str:
        if self.how == FOUND:
            done = f"found {self.name} at {self.reference}"
        else:
            builder = "mpkit's builder" if self.how == "native" else self.how
            done = (
                f"built {self.name} from {self.recipe} with {builder}, pushed it to "
                f"{self.reference}"
            )
        if self.alias_file is None:
            return f"{done}; the alias could not be recorded (see the warning)"
        return f"{done} and recorded the alias in {self.alias_file}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "reference": str(self.reference),
            "how": self.how,
            "recipe": str(self.recipe) if self.recipe else None,
            "alias_file": str(self.alias_file) if self.alias_file else None,
        }


@dataclass(frozen=True)
class SdkBaseRequest:
    project: Path
    target: Repository  # the adapter's push repository
    client: RegistryClient  # proven able to push there
    settings: Settings
    client_options: ClientOptions
    cache_root: Path
    engine: EngineChoice = EngineChoice.AUTO
    pull: bool = False  # --pull: re-check the recipe's own base


def publish_sdk_bases(
    request: SdkBaseRequest, dockerfile: str, *, reporter: Reporter, log: Callable[[str], None]
) -> tuple[Settings, list[PublishedBase]]:
    """Provide every SDK local base *dockerfile* names without an alias; returns the
    settings with their aliases, and what was done (nothing when every alias is set)."""
    publisher = _Publisher(request, reporter, log)
    for name in local_bases_in(dockerfile):
        publisher.provide(name, needed_by=())
    return publisher.settings, publisher.published


@dataclass
class _Publisher:
    request: SdkBaseRequest
    reporter: Reporter
    log: Callable[[str], None]
    settings: Settings = field(init=False)
    published: list[PublishedBase] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.settings = self.request.settings

    def provide(self, name: str, *, needed_by: tuple[str, ...]) -> None:
        if name in self.settings.aliases:
            return
        if name in needed_by:
            chain = " → ".join((*needed_by, name))
            raise SdkBaseError(f"the SDK recipes need one another in a circle: {chain}")
        reference = publish_reference(self.request.target, name)
        waiting = f"another mpkit is publishing {reference}; waiting for it"
        with held(self._lock_path(reference), on_wait=lambda: self.reporter.warn(waiting)):
            found = self._already_published(reference)
            if found is not None:
                self._adopt(PublishedBase(name, found, FOUND, None, None))
                return
            search = find_recipe(name, self.request.project)
            if search.recipe is None:
                raise self._impossible(name, search.why_not(), search, needed_by)
            for needed in search.recipe.local_bases():
                self.provide(needed, needed_by=(*needed_by, name))
            result = self._build(name, search, needed_by)
            pinned = self._push(name, result.image, reference, search, needed_by)
            remember_base(CacheRoot(self.request.cache_root).open(), pinned, result.image)
            self._adopt(PublishedBase(name, pinned, result.builder, search.recipe.path, None))

    def _already_published(self, reference: Reference) -> Reference | None:
        """*reference* pinned to what the registry holds, or None if it holds nothing."""
        client = self.request.client
        try:
            resolved = resolve_image(client, reference, DEFAULT_PLATFORM)
            config = parse_json(client.read_blob(reference.path, resolved.config))
        except (MpkitError, ValueError) as exc:  # absent (the usual case), or unusable
            logger.info("%s is not in the registry yet (%s)", reference, exc)
            return None
        config = config if isinstance(config, dict) else {}
        found = f"{config.get('os')}/{config.get('architecture')}"
        if found != f"{DEFAULT_PLATFORM.os}/{DEFAULT_PLATFORM.architecture}":
            raise SdkBaseError(
                f"{reference} is a {found} image, and Aria Operations cloud proxies run "
                f"{DEFAULT_PLATFORM}",
                hint=f"replace it with a {DEFAULT_PLATFORM} build (e.g. 'podman build "
                f"--platform {DEFAULT_PLATFORM} …'), or remove that tag so that mpkit builds it",
            )
        return reference.with_digest(resolved.manifest.digest)

    def _build(self, name: str, search: RecipeSearch, needed_by: tuple[str, ...]) -> BuildResult:
        assert search.recipe is not None
        recipe = search.recipe.path
        self.log(f"building {name} from the VMware SDK's recipe {recipe}")
        request = BuildRequest(
            project=recipe, cache_root=self.request.cache_root, settings=self.settings,
            client_options=self.request.client_options, engine=self.request.engine,
            pull=self.request.pull,
        )  # fmt: skip
        try:
            return build_image(request, log=self.log)
        except MpkitError as exc:
            named = str(recipe) in exc.message  # e.g. "<recipe>/Dockerfile line 5: …"
            reason = exc.message if named else f"building it from {recipe} failed: {exc.message}"
            raise self._impossible(name, reason, search, needed_by) from exc

    def _push(
        self,
        name: str,
        image: Image,
        reference: Reference,
        search: RecipeSearch,
        needed_by: tuple[str, ...],
    ) -> Reference:
        try:
            with self.reporter.progress("push") as progress:
                pushed = push_image(self.request.client, image, reference,
                                    locations=blob_locations(), progress=progress)  # fmt: skip
        except RegistryError as exc:
            reason = f"it was built, but pushing it to {reference} failed: {exc.message}"
            error = self._impossible(name, reason, search, needed_by)
            first = exc.hint
            if reference.repository.is_ecr:  # ECR repositories must exist before a push
                first = (
                    f"create the repository first: 'aws ecr create-repository --repository-name "
                    f"{reference.path} --region {reference.repository.ecr_region}'"
                )
            if first:
                error.hint = f"{first}; or {error.hint}"
            raise error from exc
        return pushed.reference

    def _adopt(self, base: PublishedBase) -> None:
        """Record the alias (a failure to is a warning: this build goes on with it)."""
        text = str(base.reference)
        try:
            alias_file: Path | None = record_alias(base.name, text, self.settings.path)
        except ConfigError as exc:
            alias_file = None
            self.reporter.warn(
                f"{exc.message}; the image alias {base.name} → {text} was not recorded, so the "
                f"next build will look for it again (set {ALIASES_ENV}={base.name}={text} to "
                "skip that)"
            )
        aliases = {**self.settings.aliases, base.name: text}
        self.settings = dataclasses.replace(self.settings, aliases=aliases)
        done = dataclasses.replace(base, alias_file=alias_file)
        self.published.append(done)
        self.log(done.summary())

    def _impossible(
        self, name: str, reason: str, search: RecipeSearch, needed_by: tuple[str, ...]
    ) -> SdkBaseError:
        target = self.request.target
        engines = find_engines(EngineChoice.AUTO)  # the commands are for the user to run
        context = ManualContext(
            project=self.request.project, target=target,
            engine=engines[0].name if engines else None, settings=self.settings,
            plain_http=target.is_loopback
            or target.registry in self.request.client_options.insecure_registries,
        )  # fmt: skip
        needed = f" (the recipe of {needed_by[-1]} starts FROM it)" if needed_by else ""
        return SdkBaseError(
            f"{describe_base(name)}{needed}, and mpkit could not publish it: {reason}",
            hint=publish_by_hand(name, context, search),
        )

    @staticmethod
    def _lock_path(reference: Reference) -> Path:
        """One lock per published name: two builds that would publish the same base wait
        for each other, and the second finds the first one's push."""
        directory = state_dir() / "sdk-bases"
        directory.mkdir(parents=True, exist_ok=True)
        key = hashlib.sha256(str(reference).encode()).hexdigest()[:32]
        return directory / f"{key}.lock"
