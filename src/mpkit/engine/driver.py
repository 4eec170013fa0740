"""A container engine driven through its command line: images (has, inspect, pull, load,
save, build, tag, remove) and containers (run, start, inspect, logs, remove).

The differences between podman, docker and buildah live here, not in callers: how a
local image is looked for, how an anonymous pull avoids the user's credentials, plain
HTTP to a registry, the archive format of ``save``, and how quickly ``rm`` stops.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mpkit.engine.kinds import EngineChoice, EngineKind
from mpkit.engine.process import (
    engine_environment,
    output_tail,
    run_captured,
    run_streamed,
)
from mpkit.engine.registriesconf import REGISTRIES_CONF_ENV
from mpkit.errors import ContainerEngineError
from mpkit.jsonfile import parse_json

COMMAND_TIMEOUT = 120.0  # look-ups, container start and removal
TRANSFER_TIMEOUT = 1800.0  # pull, load, save: whole images
STREAM_TAIL_LINES = 20  # a failed build quotes this much of its output
STREAM_TAIL_CHARS = 4000
Log = Callable[[str], None]
_Invocation = tuple[list[str], list[str], dict[str, str]]
_AS_IS: _Invocation = ([], [], {})
NO_DOCKER_LOGINS = '{"auths": {"mpkit.invalid": {}}}\n'  # a reserved name (RFC 2606)


@dataclass(frozen=True)
class ContainerSpec:
    """What to run: the image (never pulled by the run itself) and how."""

    image: str
    name: str
    command: Sequence[str] = ()
    entrypoint: str | None = None
    network: str | None = None  # e.g. "none"
    mounts: Sequence[tuple[Path, str]] = ()  # (host directory, path in the container)
    publish: Sequence[str] = ()  # e.g. "127.0.0.1:8081:8080"
    memory_mb: int | None = None
    memory_swap_mb: int | None = None
    labels: Mapping[str, str] = field(default_factory=dict)

    def options(self) -> list[str]:
        args = ["--name", self.name, "--pull=never"]
        if self.network is not None:
            args += ["--network", self.network]
        if self.entrypoint is not None:
            args += ["--entrypoint", self.entrypoint]
        for host, inside in self.mounts:
            # ":Z" relabels the directory on SELinux hosts; engines ignore it elsewhere.
            args += ["--volume", f"{host}:{inside}:Z"]
        if self.memory_mb is not None:
            args += ["--memory", f"{self.memory_mb}m"]
        if self.memory_swap_mb is not None:
            args += ["--memory-swap", f"{self.memory_swap_mb}m"]
        for value in self.publish:
            args += ["--publish", value]
        for key, value in sorted(self.labels.items()):
            args += ["--label", f"{key}={value}"]
        return args


@dataclass(frozen=True)
class LocalImage:
    """An image in an engine's storage: its ID (the config digest's hex) and names."""

    id: str
    names: tuple[str, ...]  # tags and digest references


@dataclass(frozen=True)
class Engine:
    """One installed engine: its kind and the program's path."""

    kind: EngineKind
    program: str

    @property
    def name(self) -> str:
        return self.kind.value

    # -- images ------------------------------------------------------------------------
    def has_image(self, reference: str) -> bool:
        """Whether local storage holds *reference* (e.g. ``REPO@DIGEST``)."""
        if self.kind is EngineKind.PODMAN:
            args = ["image", "exists", reference]
        elif self.kind is EngineKind.BUILDAH:
            args = ["inspect", "--type", "image", reference]
        else:
            args = ["image", "inspect", "--format", "{{.Id}}", reference]
        return self._execute(args, what="image lookup", check=False).returncode == 0

    def pull(self, reference: str, *, anonymous: bool = False, tls_verify: bool = True) -> None:
        """Pull *reference*; *anonymous* with an empty credential store, as a cloud proxy
        pulls. *tls_verify* False allows plain HTTP (podman, buildah; docker's daemon
        decides that itself)."""
        credentials = self._no_credentials() if anonymous else contextlib.nullcontext(_AS_IS)
        with credentials as (before, after, env):
            argv = [*before, "pull", "--quiet", *self._tls(tls_verify), *after, reference]
            result = self._execute(argv, what="pull", timeout=TRANSFER_TIMEOUT, env=env,
                                   check=False)  # fmt: skip
        if result.returncode != 0:
            tail = output_tail(result.stderr or result.stdout)
            raise ContainerEngineError(
                f"{self.name} could not pull {reference}: {tail}",
                hint=f"check that {self.name} can reach the registry: "
                f"'{self.name} pull {reference}'",
                engine=self.name, exit_status=result.returncode, output=tail,
            )  # fmt: skip

    def load(self, archive: Path) -> None:
        """Load a docker-archive into local storage."""
        if self.kind is EngineKind.BUILDAH:
            args = ["pull", "--quiet", f"docker-archive:{archive}"]
        else:
            args = ["load", "--input", str(archive)]
        self._execute(args, what="load", timeout=TRANSFER_TIMEOUT)

    def save(self, reference: str, archive: Path, *, log: Log | None = None) -> None:
        """Write *reference* as a docker-archive (what ``docker save`` writes)."""
        if self.kind is EngineKind.BUILDAH:
            args = ["push", reference, f"docker-archive:{archive}:{reference}"]
        elif self.kind is EngineKind.PODMAN:
            args = ["save", "--format", "docker-archive", "--output", str(archive), reference]
        else:
            args = ["save", "--output", str(archive), reference]
        self._execute(args, what="save", timeout=TRANSFER_TIMEOUT, log=log, stream=True)

    def build(
        self,
        context: Path,
        *,
        dockerfile: Path,
        tag: str,
        platform: str,
        ignore_file: Path | None = None,
        build_args: Mapping[str, str] | None = None,
        registries_conf: Path | None = None,
        log: Log,
    ) -> None:
        """Build *dockerfile* with *context* as *tag*; the engine's output goes to *log*.

        *ignore_file* holds .dockerignore patterns, for the kinds that take one (see
        :attr:`EngineKind.takes_ignore_file`; docker reads the context's own .dockerignore).
        *build_args* are ``--build-arg NAME=VALUE``. *registries_conf* is the registry
        configuration (mirrors, insecure registries) for the kinds that read one; docker's
        daemon has its own.
        """
        verb = "bud" if self.kind is EngineKind.BUILDAH else "build"
        args = [verb, "--platform", platform, "--file", str(dockerfile), "--tag", tag]
        for name, value in (build_args or {}).items():
            args += ["--build-arg", f"{name}={value}"]
        if ignore_file is not None and self.kind.takes_ignore_file:
            args += ["--ignorefile", str(ignore_file)]
        env = None
        if registries_conf is not None and self.kind.reads_registries_conf:
            env = {REGISTRIES_CONF_ENV: str(registries_conf)}
        self._execute([*args, str(context)], what="build", env=env, log=log, stream=True,
                      hint="the lines above are the engine's own output")  # fmt: skip

    def local_image(self, reference: str) -> LocalImage | None:
        """The image local storage holds as *reference* (a name or an ID), or None."""
        if not self.kind.runs_containers:  # buildah's inspect describes images otherwise
            raise ContainerEngineError(f"{self.name} keeps no images to run", engine=self.name)
        result = self._execute(["image", "inspect", reference], what="image inspect",
                               check=False)  # fmt: skip
        try:
            data = parse_json(result.stdout) if result.returncode == 0 else None
        except ValueError:
            return None
        found = data[0] if isinstance(data, list) and data else None
        if not isinstance(found, dict) or not isinstance(found.get("Id"), str):
            return None
        names = [*(found.get("RepoTags") or []), *(found.get("RepoDigests") or [])]
        return LocalImage(found["Id"].removeprefix("sha256:"), tuple(map(str, names)))

    def tag(self, reference: str, name: str) -> None:
        """Give the local image *reference* the name *name* (taken from any other image)."""
        self._execute(["tag", reference, name], what="tag")

    def remove_image(self, reference: str, *, force: bool = True) -> None:
        """Remove *reference* from local storage (best effort). A name of an image that
        has other names only loses that name. Without *force*, an image a container uses
        stays."""
        self._execute(["rmi", *(["--force"] if force else []), reference], what="rmi",
                      check=False)  # fmt: skip

    # -- containers --------------------------------------------------------------------
    def run(
        self, spec: ContainerSpec, *, timeout: float, log: Log | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run a container to its end and remove it; the result carries its exit status
        and output, whatever they are. Raises ContainerEngineError only when the engine
        could not be run or the container outlived *timeout* (it is removed then)."""
        try:
            return self._run_container(["--rm"], spec, timeout=timeout, check=False, log=log)
        except ContainerEngineError:
            self.remove(spec.name)
            raise

    def start(self, spec: ContainerSpec) -> str:
        """Start a detached container; returns its ID."""
        return self._run_container(["--detach"], spec).stdout.strip()

    def inspect(self, container: str) -> dict[str, Any] | None:
        """The engine's description of *container*, or None when it does not exist."""
        result = self._execute(["inspect", container], what="inspect", check=False)
        if result.returncode != 0:
            return None
        try:
            data = parse_json(result.stdout)
        except ValueError:
            return None
        return data[0] if isinstance(data, list) and data and isinstance(data[0], dict) else None

    def running(self, container: str) -> bool:
        state = (self.inspect(container) or {}).get("State")
        return isinstance(state, dict) and state.get("Running") is True

    def logs(self, container: str) -> str:
        result = self._execute(["logs", container], what="logs", check=False)
        return result.stdout + result.stderr

    def remove(self, container: str) -> None:
        """Stop and remove *container* (best effort, quick)."""
        grace = ["--time", "1"] if self.kind is EngineKind.PODMAN else []
        self._execute(["rm", "--force", *grace, container], what="rm", check=False)

    def _run_container(
        self,
        mode: list[str],
        spec: ContainerSpec,
        *,
        timeout: float = COMMAND_TIMEOUT,
        check: bool = True,
        log: Log | None = None,
    ) -> subprocess.CompletedProcess[str]:
        if not self.kind.runs_containers:
            raise ContainerEngineError(f"{self.name} cannot run containers", engine=self.name,
                                       hint="use podman or docker")  # fmt: skip
        # Running never pulls (--pull=never), but podman reads the credential store anyway:
        # give it an empty one. docker's configuration holds more than credentials (the
        # current context, proxies), so docker keeps it.
        docker = self.kind is EngineKind.DOCKER
        credentials = contextlib.nullcontext(_AS_IS) if docker else self._no_credentials()
        with credentials as (before, after, env):
            argv = [*before, "run", *mode, *spec.options(), *after, spec.image, *spec.command]
            return self._execute(argv, what="run", timeout=timeout, env=env, check=check,
                                 log=log)  # fmt: skip

    # -- the program -------------------------------------------------------------------
    def _execute(
        self,
        args: Sequence[str],
        *,
        what: str,
        timeout: float = COMMAND_TIMEOUT,
        env: Mapping[str, str] | None = None,
        check: bool = True,
        log: Log | None = None,
        stream: bool = False,
        hint: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """``PROGRAM ARGS`` in the engine environment (*env* on top). With *log*, the
        command line is logged, and with *stream* its output too, line by line as it comes
        (then without a timeout). With *check*, a non-zero exit raises ContainerEngineError
        quoting the output's tail."""
        argv = [self.program, *args]
        environment = engine_environment(**(env or {}))
        streamed = stream and log is not None
        if log is not None:
            log(f"$ {' '.join(argv)}")
        try:
            if stream and log is not None:
                result = run_streamed(argv, env=environment, log=log)
            else:
                result = run_captured(argv, env=environment, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ContainerEngineError(
                f"'{self.name} {what}' did not finish within {timeout:.0f} s",
                hint=f"check that {self.name} works on this machine: '{self.name} info'",
                engine=self.name,
            ) from None
        except OSError as exc:
            raise ContainerEngineError(
                f"cannot run {self.program}: {exc}", engine=self.name,
                hint=f"check that {self.name} is installed and works: '{self.name} info'",
            ) from None  # fmt: skip
        if check and result.returncode != 0:
            if streamed:  # many lines, already logged one by one: quote a block of them
                tail = output_tail(result.stdout, lines=STREAM_TAIL_LINES, separator="\n",
                                   limit=STREAM_TAIL_CHARS)  # fmt: skip
                message = f"{self.name} {what} failed (exit {result.returncode}):\n{tail}"
            else:
                tail = output_tail(result.stderr or result.stdout)
                message = f"{self.name} {what} failed (exit {result.returncode}): {tail}"
            raise ContainerEngineError(
                message, engine=self.name, exit_status=result.returncode, output=tail,
                hint=hint or f"check that {self.name} works on this machine: '{self.name} info'",
            )  # fmt: skip
        return result

    def _tls(self, verify: bool) -> list[str]:
        return [] if verify or self.kind is EngineKind.DOCKER else ["--tls-verify=false"]

    @contextlib.contextmanager
    def _no_credentials(self) -> Iterator[_Invocation]:
        """(options before the subcommand, options after it, environment) that give the
        engine an empty credential store instead of the user's."""
        with tempfile.TemporaryDirectory(prefix="mpkit-anonymous-") as empty:
            if self.kind is EngineKind.DOCKER:
                # A config.json without any login makes docker use a credential store of its
                # own choosing (pass or secretservice, when installed): one empty entry keeps
                # it on this file, which holds no credentials.
                (Path(empty) / "config.json").write_text(NO_DOCKER_LOGINS)
                yield ["--config", empty], [], {}
                return
            auth = Path(empty) / "auth.json"
            auth.write_text('{"auths": {}}\n')
            yield [], ["--authfile", str(auth)], {
                "DOCKER_CONFIG": empty, "REGISTRY_AUTH_FILE": str(auth)
            }  # fmt: skip


def find_engines(choice: EngineChoice, *, to_run: bool = False) -> list[Engine]:
    """The installed engines *choice* allows, in preference order (podman first)."""
    return [
        Engine(kind, program)
        for kind in choice.kinds(to_run=to_run)
        if (program := shutil.which(kind.value))
    ]


def find_engine(choice: EngineChoice, *, to_run: bool = False) -> Engine:
    """The first of :func:`find_engines`; a ContainerEngineError saying why there is none."""
    found = find_engines(choice, to_run=to_run)
    if found:
        return found[0]
    raise ContainerEngineError(
        choice.unavailable(to_run=to_run), hint=choice.install_hint(to_run=to_run)
    )
