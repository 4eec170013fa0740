"""Install a Dockerfile's ``pip install`` for the image's Python, from any host.

uv resolves and installs wheels for the *target* (``--python-platform`` and
``--python-version`` make it evaluate environment markers and wheel tags for the image,
not the host) into a staging directory; the staging tree is then mapped to the paths,
owners, modes and shebangs that pip running inside the image would have produced. A
requirement published only as source is built here when the result is pure Python
(``sourcebuild``); requirement lines are read as the image's pip reads them (``pipcompat``).

How pip's default ``--upgrade-strategy only-if-needed`` is emulated: every distribution
the base image already has is planted in the staging directory as a stub ``.dist-info``
(name and version only). uv, like pip, keeps installed distributions that satisfy the
requirements, so without ``--upgrade`` nothing the base satisfies is installed; with
``--upgrade`` the top-level names are passed as ``--upgrade-package`` (newest allowed
version) while dependencies the base satisfies keep the base's version; ``eager`` passes
``--upgrade``. Stubs that uv replaced are base distributions pip would uninstall: when
they live in the directory pip installs into, the layer gets whiteouts for their files
(pip leaves copies in other directories alone, e.g. Debian's /usr/lib/python3). A stub
has no Requires-Dist, so the base's own dependencies are taken as satisfied.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mpkit.cache.root import CacheRoot
from mpkit.errors import DependencyError
from mpkit.image.layerwriter import LayerEntry
from mpkit.imagebuild.fsview import FilesystemView
from mpkit.imagebuild.piprun import PipInstall
from mpkit.imagebuild.pydeps.mapcache import load_mapping, mapping_path, save_mapping
from mpkit.imagebuild.pydeps.pipcompat import PipRules, Warn
from mpkit.imagebuild.pydeps.requirements import (
    IndexOptions,
    Inputs,
    collect_inputs,
    index_options,
    truthy,
)
from mpkit.imagebuild.pydeps.staging import map_staging
from mpkit.imagebuild.pydeps.uvrun import cache_key, run_uv, staged, uv_binary, uv_python_platform
from mpkit.imagebuild.target import PythonTarget

__all__ = [
    "DependencyLayer",
    "RequirementsPlan",
    "install_planned",
    "install_requirements",
    "plan_requirements",
    "uv_binary",  # the benchmarks time uv itself
]


@dataclass(frozen=True)
class DependencyLayer:
    """The layer a ``pip install`` RUN step produces, and what it installed."""

    entries: list[LayerEntry]
    cache_key: str
    installed: dict[str, str]  # canonical name -> version
    uninstalled: dict[str, str] = field(default_factory=dict)  # base dists pip replaced
    staging: Path | None = None  # host files the entries read from


@dataclass(frozen=True)
class RequirementsPlan:
    """A ``pip install`` read and checked, and the key of what it installs: known before
    anything is resolved, so a layer recorded under the key can be reused instead."""

    install: PipInstall
    target: PythonTarget
    inputs: Inputs
    index: IndexOptions
    platform: str
    wheelhouse: Path | None
    key: str


def plan_requirements(
    install: PipInstall,
    *,
    context_root: Path,
    target: PythonTarget,
    workdir: str,
    cache: CacheRoot,
    base: FilesystemView,
    requirement_files: Mapping[str, Path] | None = None,
    wheelhouse: Path | None = None,
    warn: Warn = lambda _message: None,
    line_origin: str = "the pip install line",
) -> RequirementsPlan:
    """Read *install*'s requirements and compute their key (see install_requirements)."""
    _check_installable(install, target)
    inputs = collect_inputs(
        install, workdir=workdir, base=base, context_root=context_root,
        mapping=requirement_files or {}, rules=PipRules(target.pip_version), warn=warn,
        line_origin=line_origin,
    )  # fmt: skip
    index = index_options(install, target, workdir, context_root, requirement_files or {})
    platform = uv_python_platform(target)
    key = cache_key(install, inputs, index, target, platform, wheelhouse, cache=cache)
    return RequirementsPlan(install, target, inputs, index, platform, wheelhouse, key)


def install_planned(
    plan: RequirementsPlan,
    *,
    cache: CacheRoot,
    base: FilesystemView,
    base_id: str | None = None,
    warn: Warn = lambda _message: None,
) -> DependencyLayer:
    """Install what *plan* says, from the staging tree of an earlier install when kept."""
    staging = staged(cache, plan.key)
    if staging is None:
        staging = run_uv(plan.install, plan.inputs, plan.index, plan.target, plan.platform,
                         plan.key, cache, plan.wheelhouse, warn)  # fmt: skip
    tree = staging / "target"
    kept = mapping_path(staging, plan.target, base_id) if base_id is not None else None
    mapped = load_mapping(kept, tree) if kept is not None else None
    if mapped is None:
        mapped = map_staging(tree, target=plan.target, base=base, requested=plan.inputs.requested)
        if kept is not None:
            save_mapping(kept, tree, mapped, temp_dir=cache.tmp)
    entries, installed, uninstalled = mapped
    return DependencyLayer(entries, plan.key, installed, uninstalled, staging)


def install_requirements(
    install: PipInstall,
    *,
    context_root: Path,
    target: PythonTarget,
    workdir: str,
    cache: CacheRoot,
    base: FilesystemView,
    requirement_files: Mapping[str, Path] | None = None,
    wheelhouse: Path | None = None,
    base_id: str | None = None,
    warn: Warn = lambda _message: None,
    line_origin: str = "the pip install line",
) -> DependencyLayer:
    """Build the layer for *install* as pip inside the image would.

    ``-r``/``-c`` files are found, in order: in *requirement_files* (keyed by the argument
    as written, or by its absolute image path: the caller maps the files its COPY steps
    put there), in the base image, then at *context_root*/argument. Nested ``-r``/``-c``
    lines resolve relative to the file that contains them. uv's cache and the staging
    trees live in *cache*; the result's entries read files from ``staging``.
    *base_id* identifies *base*'s content exactly (e.g. the digests of its layers): with
    it, the entries are kept beside the staging tree and reused for the same base.

    Requirement lines are read as the image's pip reads them (see pipcompat): *warn* gets
    a message, naming the project's file and line (or *line_origin* for the line's own
    arguments), for each line that only that pip accepts. A requirement that only a
    source distribution provides is built here when it is pure Python; otherwise
    SourceBuildError (only the image can build it).
    """
    plan = plan_requirements(
        install, context_root=context_root, target=target, workdir=workdir, cache=cache,
        base=base, requirement_files=requirement_files, wheelhouse=wheelhouse, warn=warn,
        line_origin=line_origin,
    )  # fmt: skip
    return install_planned(plan, cache=cache, base=base, base_id=base_id, warn=warn)


def _check_installable(install: PipInstall, target: PythonTarget) -> None:
    if not target.has_pip:
        raise DependencyError(
            f"the base image's python ({target.interpreter}) has no pip module: "
            f"'{' '.join(install.launcher)} install' would fail inside the image",
            hint="use a base image with pip installed, or build with --engine podman",
        )
    allowed = install.break_system_packages or truthy(target.env.get("PIP_BREAK_SYSTEM_PACKAGES"))
    if target.externally_managed and not allowed:
        raise DependencyError(
            f"the base image's python ({target.interpreter}) is marked EXTERNALLY-MANAGED "
            "(PEP 668): pip inside the image would refuse to install into it",
            hint="remove EXTERNALLY-MANAGED from the base image, use a venv, or add "
            "--break-system-packages to the pip install line",
        )
