"""The commands that publish an SDK local base by hand, for one project, paths filled in.

Used when mpkit cannot do it itself (no container engine, no recipe installed, the build
or the push failed) and by builds that know no push target. Every command writes what the
next one reads: the build tags the image with the name the push (or ``save``) uses, and a
recipe that starts ``FROM base-adapter:…`` itself (Java, PowerShell) finds that name in
the engine's storage, as the SDK's ``mp-build`` arranges it.
"""

from __future__ import annotations

import json
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from mpkit.imagebuild.sdkrecipes import (
    KNOWN_SDK_RELEASES,
    SDK_DISTRIBUTION,
    LocalBase,
    RecipeSearch,
    find_recipe,
    publish_reference,
)
from mpkit.reference import Repository
from mpkit.settings import ALIASES_ENV, Settings

PLATFORM = "linux/amd64"  # what a cloud proxy runs
_PROMPT = "\n    $ "
_PLACEHOLDER_NAMESPACE = "REGISTRY/NAMESPACE"


@dataclass(frozen=True)
class ManualContext:
    """What the commands depend on."""

    project: Path | None  # where the project's SDK environments are
    target: Repository | None  # the adapter's push repository; None: not known
    engine: str | None  # the container engine here (podman, docker, buildah); None: none
    settings: Settings
    plain_http: bool = False  # the target registry speaks plain HTTP (loopback, insecure)

    @property
    def program(self) -> str:
        return self.engine or "podman"

    def reference(self, name: str) -> str:
        if self.target is None:
            return f"{_PLACEHOLDER_NAMESPACE}/{name}"
        return str(publish_reference(self.target, name))

    def settings_file(self) -> str:
        return str(self.settings.path) if self.settings.path else "the mpkit settings file"


def publish_by_hand(name: str, context: ManualContext, search: RecipeSearch | None = None) -> str:
    """A hint: how to publish *name* once and point the image alias at it."""
    found = search or find_recipe(name, context.project)
    commands = _commands(name, context, found, seen=())
    if commands is None:
        return _install_sdk(name, context, found)
    reference = context.reference(name)
    program = context.program
    intro = (
        f"publish it once with {program}"
        if context.engine
        else f"install {program} (or docker), then publish it once"
    )
    text = intro + ":" + "".join(_PROMPT + command for command in commands)
    if context.engine is None:
        archive = f"{name.replace(':', '-')}.tar"
        text += (
            f"\n  or, on a machine that has {program}: run the build commands above there (with "
            f"the recipe directories copied), then 'podman save --format docker-archive -o "
            f"{archive} {reference}' there, and here 'mpkit image push docker-archive:{archive} "
            f"{reference}'"
        )
    return text + "\n  " + _alias_line(name, reference, context)


def _commands(
    name: str, context: ManualContext, search: RecipeSearch, *, seen: tuple[str, ...]
) -> list[str] | None:
    """Build and push *name* (after the local bases its recipe needs); None without a
    recipe for one of them."""
    recipe = search.recipe
    if recipe is None or name in seen:
        return None
    program, tls = context.program, _tls_option(context)
    commands: list[str] = []
    for needed in recipe.local_bases():
        alias = context.settings.aliases.get(needed)
        if alias is not None:  # the engine needs it under the local name the recipe uses
            commands += [f"{program} pull{tls} {alias}", f"{program} tag {alias} {needed}"]
            continue
        before = _commands(needed, context, find_recipe(needed, context.project),
                           seen=(*seen, name))  # fmt: skip
        if before is None:
            return None
        commands += before
    build = "bud" if program == "buildah" else "build"
    reference = context.reference(name)
    commands += [
        f"{program} {build} --platform {PLATFORM} -t {name} -t {reference} "
        f"{shlex.quote(str(recipe.path))}",
        f"{program} push{tls} {reference}",
    ]
    return commands


def _tls_option(context: ManualContext) -> str:
    """podman and buildah need to be told about a plain-HTTP registry; docker's daemon
    decides that itself (loopback is allowed, others need its insecure-registries)."""
    return " --tls-verify=false" if context.plain_http and context.program != "docker" else ""


def _install_sdk(name: str, context: ManualContext, search: RecipeSearch) -> str:
    """No recipe: install the SDK into an environment in the project, where mpkit looks."""
    base = search.base
    if base is None:
        return "point the alias at an image you have: " + _alias_value(
            name, context.reference(name), context
        )
    root = context.project or Path.cwd()
    venv = root / "venv-sdk"
    pip = venv / ("Scripts" if sys.platform == "win32" else "bin") / "pip"
    release = KNOWN_SDK_RELEASES.get(base.tag)
    requirement = f"{SDK_DISTRIBUTION}=={release}" if release else SDK_DISTRIBUTION
    return (
        "install the SDK that made the project into an environment in the project (mpkit "
        "looks there, as in mp-init's venv-<name>), then build again:"
        f"{_PROMPT}python3 -m venv {shlex.quote(str(venv))}"
        f"{_PROMPT}{shlex.quote(str(pip))} install {shlex.quote(requirement)}"
        "\n  or point the alias at a copy you already have: "
        + _alias_value(name, context.reference(name), context)
    )


def _alias_line(name: str, reference: str, context: ManualContext) -> str:
    again = (
        f"then build again: mpkit finds {reference} and records the alias in "
        f"{context.settings_file()}; or record it yourself: "
        if context.target is not None
        else "then point the alias at it: "
    )
    return again + _alias_value(name, reference, context)


def _alias_value(name: str, reference: str, context: ManualContext) -> str:
    entry = json.dumps({"aliases": {name: reference}})
    return f"{entry} in {context.settings_file()} (or {ALIASES_ENV}={name}={reference})"


def describe_base(name: str) -> str:
    """What *name* is, for the first words of a message."""
    base = LocalBase.parse(name)
    what = f"the SDK's {base.language_name} base" if base else "a local image"
    return f"FROM {name} names {what}, which the VMware SDK builds from a recipe it installs"
