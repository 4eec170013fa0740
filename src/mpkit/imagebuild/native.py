"""Run a single-stage Dockerfile without an engine: metadata, COPY/ADD, WORKDIR and
pip RUNs.

Each layer-producing instruction gives one reproducible layer, as an engine would, so
an app-only change rebuilds (and pushes) only the app layer. What the native builder
cannot do raises NeedsEngineError so the caller can hand it to an engine.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mpkit.cache.root import CacheRoot
from mpkit.errors import SourceBuildError
from mpkit.image import mediatypes
from mpkit.image.cache import LayerCache
from mpkit.image.layerwriter import LayerEntry
from mpkit.image.types import Image, Layer, Platform
from mpkit.imagebuild.assemble import HistoryStep, assemble_image, base_labels
from mpkit.imagebuild.base import BaseImage
from mpkit.imagebuild.basefs import LayeredFilesystem, index_layer
from mpkit.imagebuild.context import BuildContext
from mpkit.imagebuild.copy import OverlayView, plan_copy, plan_workdir
from mpkit.imagebuild.dockerfile import Dockerfile, Instruction, NeedsEngineError
from mpkit.imagebuild.fsview import FilesystemView, normpath
from mpkit.imagebuild.piprun import parse_pip_run
from mpkit.imagebuild.pydeps import install_planned, plan_requirements
from mpkit.imagebuild.registrycache import RegistryLayerCache, registry_key
from mpkit.imagebuild.stage import ImageConfig, StageEvaluator
from mpkit.imagebuild.targetcache import detect_target_cached

LAYER_FORMAT = 2  # bump when the layers built from the same inputs change (cache keys)
# A pip install that needs a source distribution built by the image's own compiler.
SOURCE_BUILD_FEATURE = "pip-source-build"
# Config keys the Dockerfile instructions own; every other key of the base's config
# (Hostname, ArgsEscaped, …) is inherited untouched.
MODELED_KEYS = {
    "User",
    "ExposedPorts",
    "Env",
    "Entrypoint",
    "Cmd",
    "Volumes",
    "WorkingDir",
    "Labels",
    "StopSignal",
    "Healthcheck",
    "Shell",
    "OnBuild",
    "ArgsEscaped",
}


@dataclass(frozen=True)
class StepReport:
    line: int
    instruction: str
    layer: str | None  # digest of the layer it made, if any
    size: int = 0
    cached: bool = False


@dataclass
class NativeResult:
    image: Image
    steps: list[StepReport] = field(default_factory=list)


def check_native(dockerfile: Dockerfile) -> None:
    """Raise NeedsEngineError for the first instruction only an engine can run."""
    if dockerfile.is_multi_stage:
        raise NeedsEngineError(
            "multi-stage builds need a container engine",
            feature="multi-stage",
            path=dockerfile.path,
            line=dockerfile.stages[1].line,
        )
    for instr in dockerfile.stages[0].instructions:
        if instr.keyword != "RUN":
            continue
        parsed = parse_pip_run(instr.args if instr.json_form else " ".join(instr.args))
        if not parsed.ok:
            raise NeedsEngineError(
                f"RUN is not a plain pip install ({parsed.reason})",
                feature="run",
                path=dockerfile.path,
                line=instr.line,
            )
        if instr.flags:
            raise NeedsEngineError(
                "RUN options (--mount, --network, --security) need a container engine",
                feature="run-options",
                path=dockerfile.path,
                line=instr.line,
            )


class NativeBuild:
    """The state of one stage while its instructions run."""

    def __init__(
        self,
        dockerfile: Dockerfile,
        base: BaseImage,
        *,
        context: BuildContext,
        cache: CacheRoot,
        platform: Platform,
        build_args: dict[str, str],
        created: int,
        wheelhouse: Path | None,
        log: Callable[[str], None],
        registry_cache: RegistryLayerCache | None = None,
    ) -> None:
        self.dockerfile = dockerfile
        self.registry_cache = registry_cache
        self.base = base
        self.base_runtime: dict[str, Any] = dict(base.config.get("config") or {})
        self.evaluator = StageEvaluator(
            dockerfile,
            base_config=ImageConfig.from_oci(self.base_runtime),
            build_args=build_args,
            platform=str(platform),
        )
        self.context = context
        self.cache = cache
        self.store = LayerCache(cache)
        self.platform = platform
        self.created = created
        self.wheelhouse = wheelhouse
        self.log = log
        self.fs = OverlayView(LayeredFilesystem(base.layers, cache=cache))
        self.layers: list[Layer] = []
        self.history: list[HistoryStep] = []
        self.steps: list[StepReport] = []
        self.layer_media = mediatypes.OCI_LAYER_GZIP if base.oci else mediatypes.DOCKER_LAYER_GZIP

    def run(self) -> NativeResult:
        for instr in self.dockerfile.stages[0].instructions:
            action = self.evaluator.apply(instr)
            if action is None:
                self._record(instr, None)
            elif action.keyword == "WORKDIR":
                entries = plan_workdir(
                    action,
                    base=self.fs,
                    user=self.evaluator.config.user,
                    dockerfile_path=self.dockerfile.path,
                )
                if entries:
                    self._layer(instr, entries)
                else:
                    self._record(instr, None)
            elif action.keyword in ("COPY", "ADD"):
                entries = plan_copy(
                    action,
                    context=self.context,
                    base=self.fs,
                    workdir=self.evaluator.workdir,
                    env=self.evaluator.env,
                    dockerfile_path=self.dockerfile.path,
                    escape=self.dockerfile.escape,
                )
                self._layer(instr, entries)
            else:
                self._pip(instr)
        return NativeResult(self._image(), self.steps)

    def _runtime(self) -> dict[str, Any]:
        runtime = {k: v for k, v in self.base_runtime.items() if k not in MODELED_KEYS}
        runtime.update(self.evaluator.config.to_oci())
        labels = {**runtime.get("Labels", {}), **base_labels(self.base)}
        if labels:
            runtime["Labels"] = dict(sorted(labels.items()))
        return runtime

    def _image(self) -> Image:
        return assemble_image(
            self.base,
            self._runtime(),
            self.layers,
            self.history,
            platform=self.platform,
            created=self.created,
        )

    def _record(self, instr: Instruction, layer: Layer | None, cached: bool = False) -> None:
        text = instr.original.strip()
        self.history.append(HistoryStep(f"{text} # mpkit", empty_layer=layer is None))
        self.steps.append(
            StepReport(
                instr.line,
                text,
                layer.digest if layer else None,
                layer.size if layer else 0,
                cached,
            )
        )

    def _layer(self, instr: Instruction, entries: list[LayerEntry], key: str | None = None) -> None:
        layer = self.store.cached(key, self.layer_media) if key else None
        cached = layer is not None
        if layer is None:
            entries = with_parent_dirs(entries, self.fs)
            layer = self.store.write_layer(entries, self.layer_media, mtime=self.created)
            if key:
                self.store.remember(key, layer)
        self.fs.extend(entries)
        self.layers.append(layer)
        self._record(instr, layer, cached)

    def _pip(self, instr: Instruction) -> None:
        parsed = parse_pip_run(instr.args if instr.json_form else " ".join(instr.args))
        assert parsed.install is not None  # check_native ran first
        install = parsed.install
        # The view is the base plus the layers so far: their digests identify it.
        fs_id = "\n".join(layer.digest for layer in [*self.base.layers, *self.layers])
        target = detect_target_cached(
            self.fs,
            self._runtime(),
            fs_id=fs_id,
            cache=self.cache,
            os=self.platform.os,
            arch=self.platform.architecture,
            launcher=install.launcher,
            user_flag=install.user,
        )
        self.log(
            f"line {instr.line}: installing requirements for python {target.version} "
            f"({target.libc} {target.arch}) as {target.user.name}"
        )

        def warn(message: str) -> None:
            self.log(f"warning: {message}")

        try:
            plan = plan_requirements(
                install,
                context_root=self.context.root,
                target=target,
                workdir=self.evaluator.workdir,
                cache=self.cache,
                base=self.fs,
                requirement_files=self._copied_files(),
                wheelhouse=self.wheelhouse,
                warn=warn,
                line_origin=f"{self._dockerfile_name()}:{instr.line}",
            )
            key = f"pip-{LAYER_FORMAT}-{plan.key}"
            if self._from_registry_cache(instr, key):
                return
            deps = install_planned(plan, cache=self.cache, base=self.fs, base_id=fs_id, warn=warn)
        except SourceBuildError as exc:  # the engine runs the line with the image's compiler
            raise NeedsEngineError(
                exc.message, feature=SOURCE_BUILD_FEATURE, path=self.dockerfile.path,
                line=instr.line, hint=exc.hint,
            ) from exc  # fmt: skip
        self._layer(instr, deps.entries, key=key)
        if self.registry_cache is not None and self.base.digest is not None:
            made = self.layers[-1]
            self.registry_cache.remember(registry_key(self.base.digest, key), made)
            index_layer(made, self.cache)  # shared: the next machine reads the listing

    def _from_registry_cache(self, instr: Instruction, key: str) -> bool:
        """On a machine that never built this layer, take it from the registry cache
        (no package index, no resolver): True when it did."""
        if (
            self.registry_cache is None
            or self.base.digest is None
            or self.store.cached(key, self.layer_media) is not None
        ):
            return False
        layer = self.registry_cache.fetch(registry_key(self.base.digest, key), self.store)
        if layer is None:
            return False
        self.log(f"line {instr.line}: the dependency layer {layer.digest} came from the "
                 "registry cache")  # fmt: skip
        self.store.remember(key, layer)
        self.layers.append(layer)
        # Later steps see the files the layer holds, read from the layer itself.
        self.fs = OverlayView(
            LayeredFilesystem([*self.base.layers, *self.layers], cache=self.cache)
        )
        self._record(instr, layer, cached=True)
        return True

    def _dockerfile_name(self) -> str:
        """The Dockerfile as the user knows it: relative to the build context if inside."""
        path = Path(self.dockerfile.path)
        return (
            path.relative_to(self.context.root).as_posix()
            if path.is_relative_to(self.context.root)
            else str(path)
        )

    def _copied_files(self) -> dict[str, Path]:
        """Image path → host file, for everything this build copied so far."""
        return {
            normpath(path): entry.source
            for path, entry in self.fs.entries.items()
            if entry.kind == "file" and entry.source is not None
        }


def with_parent_dirs(entries: list[LayerEntry], view: FilesystemView) -> list[LayerEntry]:
    """Add an entry for every parent directory, with the attributes it already has.

    Overlay storage takes a directory's owner and mode from the topmost layer that holds
    it, and creates a missing parent as root 0755 when it unpacks a layer: without these
    entries the adapter user would lose its own home directory. (BuildKit and buildah
    write parents the same way.)
    """
    present = {normpath(entry.path) for entry in entries}
    parents: dict[str, LayerEntry] = {}
    for entry in entries:
        parent = posixpath.dirname(normpath(entry.path))
        while parent != "/" and parent not in present and parent not in parents:
            info = view.info(parent)
            if info is None or info.kind != "dir":
                break  # created by the entries themselves, or reached through a symlink
            parents[parent] = LayerEntry(parent, "dir", info.mode, info.uid, info.gid)
            parent = posixpath.dirname(parent)
    return [*parents.values(), *entries]
