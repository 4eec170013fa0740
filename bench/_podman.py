"""Shared by the benchmarks that compare mpkit with ``podman build`` + ``podman push``.

``build.py`` and ``packbuild.py``: podman with its own storage and the SDK mirror, the
registry serving the SDK base stand-in, and the measured runs. Kept out of ``_common`` so
that the push and registry benchmarks do not import the podman fixture (and pytest).
"""

from __future__ import annotations

import contextlib
import shlex
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from _common import (
    BenchError,
    CommandRun,
    Summary,
    ToolHome,
    fresh_registry,
    run_timed,
    served_manifest,
)

# isort: split
from tests.fixtures.baseimage import SDK_REGISTRY, SDK_REPOSITORY, SDK_TAG, publish_sdk_base
from tests.fixtures.podman import Podman
from tests.fixtures.registry import RegistryServer


@dataclass(frozen=True)
class ToolRun:
    """One timed run: wall-clock seconds, its timed parts, mpkit's ``--json`` report."""

    seconds: float
    parts: Mapping[str, float] = field(default_factory=dict)
    report: Mapping[str, Any] | None = None


class Measured(Protocol):
    """What :class:`Results` needs of a measurement."""

    @property
    def tool(self) -> str: ...

    @property
    def scenario(self) -> str: ...

    @property
    def run(self) -> ToolRun: ...


M = TypeVar("M", bound=Measured)


@dataclass
class Results(Generic[M]):
    measurements: list[M] = field(default_factory=list)

    def of(self, scenario: str, tool: str) -> list[M]:
        return [m for m in self.measurements if (m.scenario, m.tool) == (scenario, tool)]

    def summary(self, scenario: str, tool: str, part: str | None = None) -> Summary:
        found = self.of(scenario, tool)
        return Summary.of([m.run.parts[part] if part else m.run.seconds for m in found])

    def speedup(self, scenario: str, tool: str = "mpkit") -> float:
        """podman's median over *tool*'s: above 1.0, *tool* is faster."""
        return self.summary(scenario, "podman").median / self.summary(scenario, tool).median


class BenchPodman:
    """``podman build -t REF PROJECT`` then ``podman push --tls-verify=false REF``.

    Storage, configuration (runc, cgroupfs, ulimits below the hard limit; overlay driver under
    *root*)
    and the registries.conf mirror of the SDK registry to *base_host* are its own
    (``tests/fixtures/podman.py``); so is root's blob-info cache, replaced by an empty
    directory in a private mount namespace through *home*.
    """

    name = "podman"

    def __init__(
        self, binary: str, root: Path, home: ToolHome, base_host: str, runroot_prefix: str
    ) -> None:
        self.binary = binary
        self.home = home
        # A short runroot (podman puts sockets there) named for the benchmark.
        runroot = Path(tempfile.mkdtemp(prefix=runroot_prefix, dir="/tmp"))
        self.podman = Podman(binary, root, runroot=runroot, driver="overlay")
        self.podman.add_mirrors({SDK_REGISTRY: base_host})
        own = ("CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF", "CONTAINERS_REGISTRIES_CONF")
        self.env = {**home.env, **{key: self.podman.env[key] for key in own}}
        self.podman.env = self.env

    def allow(self, registry_host: str) -> None:
        """Let podman push to *registry_host* over plain HTTP."""
        self.podman.add_registry(registry_host)

    def build_argv(self, project: Path, target: str) -> list[str]:
        return [self.binary, "build", "-t", target, str(project)]

    def push_argv(self, target: str) -> list[str]:
        return [self.binary, "push", "--tls-verify=false", target]

    def build_and_push(self, project: Path, target: str) -> ToolRun:
        """Both commands, timed separately; the run's seconds are their sum."""
        build = self.timed(self.build_argv(project, target))
        push = self.timed(self.push_argv(target))
        return ToolRun(build.seconds + push.seconds, {"build": build.seconds, "push": push.seconds})

    def timed(self, argv: Sequence[str]) -> CommandRun:
        return run_timed(argv, env=self.env, preexec=self.home.preexec)

    def close(self) -> None:
        """Remove this podman's containers, images, graphroot and runroot."""
        self.podman.cleanup()
        shutil.rmtree(self.podman.root, ignore_errors=True)


def podman_command_text(target: str) -> str:
    """The timed podman commands as the report shows them."""
    build = shlex.join(["podman", "build", "-t", target, "PROJECT"])
    push = shlex.join(["podman", "push", "--tls-verify=false", target])
    return f"{build} && {push}"


def mpkit_command_text(mpkit_text: str) -> str:
    """The timed mpkit command as the report shows it, with its mirror of the SDK base."""
    return f"MPKIT_MIRRORS={SDK_REGISTRY}=127.0.0.1:BASEPORT {mpkit_text}"


@contextlib.contextmanager
def base_registry(scratch: Path) -> Iterator[tuple[RegistryServer, str, int, int]]:
    """A fresh registry serving the SDK base stand-in: (registry, digest, layers, bytes)."""
    with fresh_registry(scratch / "registry-base") as registry:
        base = publish_sdk_base(registry)
        manifest = served_manifest(registry.host, SDK_REPOSITORY, SDK_TAG)
        if manifest.digest != base.digest:
            raise BenchError(f"the base registry serves {manifest.digest}, expected {base.digest}")
        yield registry, base.digest, len(manifest.layers), sum(manifest.layer_sizes)
