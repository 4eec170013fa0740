"""The VMware SDK's local base images: which recipe builds them, where it is installed.

SDK 1.3.x projects say ``FROM base-adapter:python-1.2.0`` (Java: ``java-1.2.0``,
PowerShell: ``powershell-1.1.0``). No registry serves that name: the SDK's ``mp-build``
builds it on first use from a recipe installed with the SDK, ``images/<recipe>`` next to
the ``vmware_aria_operations_integration_sdk`` package in site-packages. The package's
``container_versions.json`` says which version each recipe is and where it lives
(``base-python-adapter`` for Python; ``java-adapter`` and ``powershell-adapter`` start
``FROM base-adapter:python-…`` themselves).

An SDK is looked for where its users have one: the project's own virtual environments
(``mp-init`` makes ``venv-<display name>`` in the project), the environment mpkit runs in,
and the environment of every ``mp-build`` on ``PATH``. This module only finds and
describes; :mod:`mpkit.imagebuild.sdkbases` builds and publishes, and
:mod:`mpkit.imagebuild.sdkmanual` writes the commands for doing it by hand.
"""

from __future__ import annotations

import importlib.util
import os
import re
import site
import sys
import sysconfig
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mpkit.errors import DockerfileError
from mpkit.imagebuild.dockerfile import NeedsEngineError, parse_dockerfile
from mpkit.jsonfile import parse_json
from mpkit.reference import Reference, Repository

# Any "base-adapter:<tag>" without a registry is the SDK's local name.
LOCAL_BASE = re.compile(r"^base-adapter:[A-Za-z0-9_.-]+$")
_LANGUAGE_VERSION = re.compile(
    r"^base-adapter:(?P<language>[a-z]+)-(?P<version>[0-9][A-Za-z0-9.]*)$"
)
SDK_PACKAGE = "vmware_aria_operations_integration_sdk"
SDK_DISTRIBUTION = "vmware-aria-operations-integration-sdk"
VERSIONS_FILE = "container_versions.json"
# The SDK's docker_wrapper.ensure_base_image_exists maps languages to recipes this way.
RECIPE_DIRECTORIES = {
    "python": "base-python-adapter",
    "java": "java-adapter",
    "powershell": "powershell-adapter",
}
LANGUAGE_NAMES = {"python": "Python", "java": "Java", "powershell": "PowerShell"}
# Verified: SDK 1.3.1's container_versions.json names these bases.
KNOWN_SDK_RELEASES = {
    "python-1.2.0": "1.3.1",
    "java-1.2.0": "1.3.1",
    "powershell-1.1.0": "1.3.1",
}
MP_BUILD = "mp-build"


@dataclass(frozen=True)
class LocalBase:
    """``base-adapter:<language>-<version>``."""

    name: str
    language: str
    version: str

    @property
    def tag(self) -> str:
        return self.name.partition(":")[2]

    @property
    def language_name(self) -> str:
        return LANGUAGE_NAMES.get(self.language, self.language)

    @classmethod
    def parse(cls, name: str) -> LocalBase | None:
        match = _LANGUAGE_VERSION.match(name)
        if match is None:
            return None
        return cls(name, match["language"], match["version"])


@dataclass(frozen=True)
class Recipe:
    """An SDK's recipe directory (its Dockerfile and build context) for one base."""

    name: str  # the local base it builds
    path: Path
    site_packages: Path  # of the SDK it came with
    version_known: bool  # the SDK's container_versions.json confirmed the version

    @property
    def dockerfile(self) -> Path:
        return self.path / "Dockerfile"

    def local_bases(self) -> list[str]:
        """The SDK local names this recipe's own FROM lines need (Java: the Python base)."""
        try:
            return local_bases_in(self.dockerfile.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
            return []


@dataclass(frozen=True)
class RecipeSearch:
    """What :func:`find_recipe` found, and where it looked."""

    name: str
    base: LocalBase | None  # None: the name is not <language>-<version>
    recipe: Recipe | None
    looked_in: tuple[Path, ...]  # the site-packages directories searched
    other_versions: tuple[tuple[Path, str], ...] = ()  # (recipe, the version it builds)

    def why_not(self) -> str:
        """Why no recipe was found, as a clause."""
        if self.base is None:
            return (
                f"{self.name!r} is not a name the SDK builds (it builds "
                "base-adapter:<language>-<version>)"
            )
        if self.other_versions:
            found = "; ".join(f"{path} builds {version}" for path, version in self.other_versions)
            return f"no installed SDK has the recipe for {self.base.tag} ({found})"
        where = ", ".join(str(p) for p in self.looked_in) or "nowhere: no SDK is installed"
        return f"no installed SDK has the recipe for {self.base.tag} (looked in {where})"


def local_bases_in(dockerfile: str) -> list[str]:
    """The SDK local names that FROM lines of *dockerfile* name, in order, once each.

    Stage names, ``scratch`` and names built from ARGs are left to the builder."""
    try:
        stages = parse_dockerfile(dockerfile).stages
    except (DockerfileError, NeedsEngineError):
        return []
    names = {stage.name for stage in stages if stage.name}
    found: list[str] = []
    for stage in stages:
        if stage.base not in names and LOCAL_BASE.match(stage.base) and stage.base not in found:
            found.append(stage.base)
    return found


def publish_reference(target: Repository, name: str) -> Reference:
    """Where a local base goes for an adapter pushed to *target*: beside it, in the same
    registry and namespace (``harbor.example.com/team/my-adapter`` →
    ``harbor.example.com/team/base-adapter:python-1.2.0``).

    The adapter's push then mounts the base's layers from there instead of uploading them
    (distribution-spec: cross-repository blob mount), and the same credentials reach both.
    A cloud proxy never pulls the base by itself: the adapter image it pulls holds the
    base's layers."""
    repository, _, tag = name.partition(":")
    namespace = target.path.rpartition("/")[0]
    path = f"{namespace}/{repository}" if namespace else repository
    return Reference(Repository(target.registry, path), tag)


def find_recipe(
    name: str, project: Path | None, *, environ: Mapping[str, str] | None = None
) -> RecipeSearch:
    """The SDK recipe that builds *name*, searching :func:`sdk_site_packages`.

    A recipe whose SDK states another version for it is not used (it would build something
    else under this name); one whose SDK states no version is used when nothing better is
    found."""
    base = LocalBase.parse(name)
    searched = sdk_site_packages(project, environ=environ)
    if base is None:
        return RecipeSearch(name, None, None, tuple(searched))
    unconfirmed: Recipe | None = None
    others: list[tuple[Path, str]] = []
    for packages in searched:
        found = _recipe_in(packages, base)
        if found is None:
            continue
        recipe, stated = found
        if stated == base.version:
            return RecipeSearch(name, base, recipe, tuple(searched))
        if stated is None:
            unconfirmed = unconfirmed or recipe
        else:
            others.append((recipe.path, f"{base.language}-{stated}"))
    return RecipeSearch(name, base, unconfirmed, tuple(searched), tuple(others))


def _recipe_in(packages: Path, base: LocalBase) -> tuple[Recipe, str | None] | None:
    """The recipe for *base*'s language in the SDK at *packages*, and the version its
    container_versions.json states (None: not stated)."""
    versions = _versions(packages / SDK_PACKAGE / VERSIONS_FILE)
    entry = versions.get(base.language, {})
    directory = entry.get("path") or RECIPE_DIRECTORIES.get(base.language)
    if not directory or "/" in directory or "\\" in directory or directory.startswith("."):
        return None
    # The SDK looks in <package>/../images, then <package>/../../images.
    for images in (packages / "images", packages.parent / "images"):
        path = images / directory
        if (path / "Dockerfile").is_file():
            version = entry.get("version")
            return Recipe(base.name, path, packages, version is not None), version
    return None


def _versions(path: Path) -> dict[str, dict[str, str]]:
    """container_versions.json as language → {"path", "version"} (empty if unreadable)."""
    try:
        data = parse_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    if not isinstance(data, dict):
        return {}
    secondary = data.get("secondary_images")
    entries: list[Any] = [
        data.get("base_image"),
        *(secondary if isinstance(secondary, list) else []),
    ]
    out: dict[str, dict[str, str]] = {}
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("language"), str):
            continue
        out[entry["language"].lower()] = {
            key: str(entry[key]) for key in ("path", "version") if isinstance(entry.get(key), str)
        }
    return out


def sdk_site_packages(
    project: Path | None, *, environ: Mapping[str, str] | None = None
) -> list[Path]:
    """Where an SDK may be installed, most specific first: the project's virtual
    environments (mp-init's ``venv-<name>`` first), this environment, then the environment
    of every ``mp-build`` on PATH. Only existing directories, each once."""
    env = os.environ if environ is None else environ
    candidates: list[Path] = []
    if project is not None:
        for prefix in _project_environments(project):
            candidates += _site_packages_of(prefix)
    candidates += _this_environment()
    for script in _on_path(MP_BUILD, env.get("PATH", "")):
        for prefix in _script_prefixes(script):
            candidates += _site_packages_of(prefix)
    return _unique_directories(candidates)


def _project_environments(project: Path) -> list[Path]:
    try:
        children = sorted(p for p in project.iterdir() if p.is_dir())
    except OSError:
        return []
    venvs = [p for p in children if _is_environment(p)]
    return sorted(venvs, key=lambda p: not p.name.startswith("venv-"))


def _is_environment(path: Path) -> bool:
    return (path / "pyvenv.cfg").is_file() or (
        (path / "bin" / "activate").is_file() or (path / "Scripts" / "activate.bat").is_file()
    )


def _site_packages_of(prefix: Path) -> list[Path]:
    """``lib/pythonX.Y/site-packages`` (POSIX) and ``Lib/site-packages`` (Windows)."""
    found = sorted((prefix / "lib").glob("python3*/site-packages"), reverse=True)
    return [*found, prefix / "Lib" / "site-packages"]


def _this_environment() -> list[Path]:
    out = []
    spec = importlib.util.find_spec(SDK_PACKAGE)
    if spec is not None and spec.origin:
        out.append(Path(spec.origin).parent.parent)
    out += [Path(p) for p in site.getsitepackages()]
    if site.ENABLE_USER_SITE:
        out.append(Path(site.getusersitepackages()))
    out.append(Path(sysconfig.get_paths()["purelib"]))
    return out


def _on_path(program: str, path: str) -> Iterator[Path]:
    names = [program, f"{program}.exe"] if sys.platform == "win32" else [program]
    for directory in filter(None, path.split(os.pathsep)):
        for name in names:
            candidate = Path(directory) / name
            if candidate.is_file():
                yield candidate


def _script_prefixes(script: Path) -> list[Path]:
    """The environments a console script may belong to: the one around it (also behind a
    symbolic link, as pipx makes) and the one of the interpreter its first line names."""
    prefixes = [script.parent.parent]
    try:
        prefixes.append(script.resolve().parent.parent)
        with script.open("rb") as stream:
            head = stream.read(1024).decode("utf-8", "replace")
    except OSError:
        return prefixes
    interpreter = _interpreter(head)
    if interpreter is not None:
        prefixes.append(Path(interpreter).parent.parent)
    return prefixes


def _interpreter(head: str) -> str | None:
    """The interpreter a console script runs: ``#!/path/python`` or, for paths with
    spaces, pip's ``#!/bin/sh`` + ``'''exec' "/path/python" "$0" "$@"``."""
    lines = head.splitlines()
    if not lines or not lines[0].startswith("#!"):
        return None
    first = lines[0][2:].strip()
    if not first.startswith("/bin/sh"):
        return first.split()[0] if first else None
    for line in lines[1:3]:
        match = re.match(r"""^'''exec' "([^"]+)" """, line)
        if match:
            return match.group(1)
    return None


def _unique_directories(paths: Iterable[Path]) -> list[Path]:
    seen: set[Path] = set()
    out = []
    for path in paths:
        try:
            key = path.resolve()
        except OSError:
            continue
        if key in seen or not path.is_dir():
            continue
        seen.add(key)
        out.append(path)
    return out
