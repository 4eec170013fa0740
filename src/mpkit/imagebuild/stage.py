"""What a stage's instructions do to the image config (BuildKit's ``dockerfile2llb/convert.go``).

``StageEvaluator`` applies ENV, ARG, LABEL, USER, WORKDIR, EXPOSE, CMD, ENTRYPOINT,
SHELL, STOPSIGNAL, HEALTHCHECK, VOLUME, ONBUILD and MAINTAINER to an ``ImageConfig``
and hands back what needs the filesystem (COPY, ADD, WORKDIR) or a runtime (RUN).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from mpkit.errors import DockerfileError
from mpkit.imagebuild.dockerfile import (
    Dockerfile,
    Instruction,
    NeedsEngineError,
    Stage,
    arg_pairs,
    parse_healthcheck,
)
from mpkit.imagebuild.shellwords import expand, expand_words

DEFAULT_PLATFORM = "linux/amd64"
DEFAULT_SHELL = ("/bin/sh", "-c")
_SIGNALS = frozenset(
    [
        "ABRT",
        "ALRM",
        "BUS",
        "CHLD",
        "CLD",
        "CONT",
        "FPE",
        "HUP",
        "ILL",
        "INT",
        "IO",
        "IOT",
        "KILL",
        "PIPE",
        "POLL",
        "PROF",
        "PWR",
        "QUIT",
        "SEGV",
        "STKFLT",
        "STOP",
        "SYS",
        "TERM",
        "TRAP",
        "TSTP",
        "TTIN",
        "TTOU",
        "URG",
        "USR1",
        "USR2",
        "VTALRM",
        "WINCH",
        "XCPU",
        "XFSZ",
    ]
)


@dataclass
class ImageConfig:
    """The parts of an OCI image config ("config" object) that instructions change."""

    env: dict[str, str] = field(default_factory=dict)
    user: str = ""
    workdir: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    exposed_ports: list[str] = field(default_factory=list)
    cmd: list[str] | None = None
    entrypoint: list[str] | None = None
    shell: list[str] | None = None
    stop_signal: str | None = None
    healthcheck: dict[str, Any] | None = None
    volumes: list[str] = field(default_factory=list)
    onbuild: list[str] = field(default_factory=list)
    args_escaped: bool = False
    maintainer: str | None = None  # the image's top-level "author"

    @classmethod
    def from_oci(cls, config: Mapping[str, Any] | None) -> ImageConfig:
        config = config or {}
        env: dict[str, str] = {}
        for item in config.get("Env") or []:
            key, _, value = str(item).partition("=")
            env[key] = value
        return cls(
            env=env,
            user=config.get("User") or "",
            workdir=config.get("WorkingDir") or "",
            labels=dict(config.get("Labels") or {}),
            exposed_ports=sorted(config.get("ExposedPorts") or {}),
            cmd=list(config["Cmd"]) if config.get("Cmd") is not None else None,
            entrypoint=list(config["Entrypoint"]) if config.get("Entrypoint") is not None else None,
            shell=list(config["Shell"]) if config.get("Shell") else None,
            stop_signal=config.get("StopSignal") or None,
            healthcheck=dict(config["Healthcheck"]) if config.get("Healthcheck") else None,
            volumes=sorted(config.get("Volumes") or {}),
            onbuild=list(config.get("OnBuild") or []),
            args_escaped=bool(config.get("ArgsEscaped", False)),
        )

    def to_oci(self) -> dict[str, Any]:
        """The OCI/Docker "config" object, with empty fields left out."""
        out: dict[str, Any] = {}
        if self.user:
            out["User"] = self.user
        if self.exposed_ports:
            out["ExposedPorts"] = {port: {} for port in sorted(set(self.exposed_ports))}
        if self.env:
            out["Env"] = [f"{k}={v}" for k, v in self.env.items()]
        if self.entrypoint is not None:
            out["Entrypoint"] = list(self.entrypoint)
        if self.cmd is not None:
            out["Cmd"] = list(self.cmd)
        if self.volumes:
            out["Volumes"] = {v: {} for v in sorted(set(self.volumes))}
        if self.workdir:
            out["WorkingDir"] = self.workdir
        if self.labels:
            out["Labels"] = dict(sorted(self.labels.items()))
        if self.stop_signal:
            out["StopSignal"] = self.stop_signal
        if self.healthcheck:
            out["Healthcheck"] = dict(self.healthcheck)
        if self.shell:
            out["Shell"] = list(self.shell)
        if self.onbuild:
            out["OnBuild"] = list(self.onbuild)
        if self.args_escaped:
            out["ArgsEscaped"] = True
        return out


class StageEvaluator:
    """Walks one stage: applies config-only instructions, hands back the others.

    ``apply`` returns None for instructions that only change the config, the
    instruction itself for COPY/ADD/RUN (COPY/ADD are expanded by ``plan_copy`` with
    ``env``) and, for WORKDIR, an instruction whose single arg is the new absolute
    working directory (the caller creates it, owned by ``config.user``).
    """

    def __init__(
        self,
        dockerfile: Dockerfile,
        stage: Stage | None = None,
        *,
        base_config: ImageConfig | None = None,
        build_args: Mapping[str, str] | None = None,
        platform: str = DEFAULT_PLATFORM,
    ) -> None:
        self.dockerfile = dockerfile
        self.stage = stage or dockerfile.final_stage
        self.build_args = dict(build_args or {})
        self.meta_args = meta_args(dockerfile, self.build_args, platform=platform)
        base = base_config or ImageConfig()
        self.config = replace(
            base,
            env=dict(base.env),
            labels=dict(base.labels),
            exposed_ports=list(base.exposed_ports),
            volumes=list(base.volumes),
            onbuild=[],  # triggers run in the child build and are not inherited
        )
        self._env: dict[str, str] = dict(base.env)  # the build-time environment
        self._cmd_set = False

    @property
    def base_image(self) -> str:
        """The stage's FROM reference with the global ARGs expanded."""
        return self._expand_from(
            self.stage.base,
            empty=f"FROM {self.stage.base} expands to an empty base image name",
            hint="Give the ARG used in FROM a default value or pass it as a build argument.",
        )

    @property
    def platform(self) -> str | None:
        if self.stage.platform is None:
            return None
        return self._expand_from(
            self.stage.platform,
            empty=f"FROM --platform={self.stage.platform} expands to an empty platform",
        )

    def _expand_from(self, word: str, *, empty: str, hint: str | None = None) -> str:
        value = _expand_at(word, self.meta_args, _from_of(self.stage), self.dockerfile)
        if not value:
            raise DockerfileError(empty, path=self.dockerfile.path, line=self.stage.line, hint=hint)
        return value

    @property
    def env(self) -> Mapping[str, str]:
        """Variables for expansion and RUN: the config Env plus the ARGs in scope."""
        return dict(self._env)

    @property
    def workdir(self) -> str:
        return self.config.workdir or "/"

    def expand(self, word: str, instr: Instruction) -> str:
        return _expand_at(word, self._env, instr, self.dockerfile)

    def apply(self, instr: Instruction) -> Instruction | None:
        handler = getattr(self, f"_apply_{instr.keyword.lower()}", None)
        if handler is None:
            raise DockerfileError(
                f"{instr.keyword} is not valid inside a stage",
                path=self.dockerfile.path,
                line=instr.line,
            )
        try:
            result: Instruction | None = handler(instr)
        except (DockerfileError, NeedsEngineError) as exc:
            raise exc.at(path=self.dockerfile.path, line=instr.line) from None
        return result

    def _apply_env(self, instr: Instruction) -> None:
        pairs = [(self.expand(k, instr), self.expand(v, instr)) for k, v in instr.pairs()]
        for key, value in pairs:
            self.config.env[key] = value
            self._env[key] = value

    def _apply_label(self, instr: Instruction) -> None:
        for key, value in instr.pairs():
            self.config.labels[self.expand(key, instr)] = self.expand(value, instr)

    def _apply_arg(self, instr: Instruction) -> None:
        for key, default in arg_pairs(instr, path=self.dockerfile.path):
            if key in self.build_args:
                value: str | None = self.build_args[key]
            elif default is not None:
                value = self.expand(default, instr)
            else:
                value = self.meta_args.get(key)  # a redeclared global ARG keeps its value
            if value is not None:
                self._env[key] = value

    def _apply_user(self, instr: Instruction) -> None:
        self.config.user = self.expand(instr.args[0], instr)

    def _apply_workdir(self, instr: Instruction) -> Instruction:
        requested = self.expand(instr.args[0], instr)
        joined = requested if requested.startswith("/") else f"{self.workdir}/{requested}"
        workdir = _clean_abs(joined)
        self.config.workdir = workdir
        return replace(instr, args=[workdir])

    def _apply_expose(self, instr: Instruction) -> None:
        for word in instr.args:
            for spec in expand_words(word, self._env, escape=self.dockerfile.escape):
                self.config.exposed_ports.extend(_parse_port(spec))

    def _apply_cmd(self, instr: Instruction) -> None:
        self.config.cmd = self._command(instr)
        self.config.args_escaped = True
        self._cmd_set = True

    def _apply_entrypoint(self, instr: Instruction) -> None:
        if instr.json_form and not instr.args:
            self.config.entrypoint = None
        else:
            self.config.entrypoint = self._command(instr)
        if not self._cmd_set:
            self.config.cmd = None

    def _command(self, instr: Instruction) -> list[str]:
        if instr.json_form:
            return list(instr.args)
        shell = list(self.config.shell or DEFAULT_SHELL)
        return [*shell, " ".join(instr.args)] if instr.args else shell

    def _apply_shell(self, instr: Instruction) -> None:
        self.config.shell = list(instr.args)

    def _apply_stopsignal(self, instr: Instruction) -> None:
        signal = self.expand(instr.args[0], instr)
        name = signal.upper().removeprefix("SIG")
        rt = re.fullmatch(r"RTMIN(\+\d+)?|RTMAX(-\d+)?", name)
        if not (signal.isdecimal() or name in _SIGNALS or rt):
            raise DockerfileError(
                f"STOPSIGNAL: invalid signal {signal!r}",
                hint="Use a signal name such as SIGTERM or SIGINT, or a number.",
            )
        self.config.stop_signal = signal

    def _apply_healthcheck(self, instr: Instruction) -> None:
        self.config.healthcheck = parse_healthcheck(instr)

    def _apply_volume(self, instr: Instruction) -> None:
        for word in instr.args:
            volume = self.expand(word, instr)
            if not volume:
                raise DockerfileError("VOLUME can not be an empty string")
            self.config.volumes.append(volume)

    def _apply_onbuild(self, instr: Instruction) -> None:
        self.config.onbuild.append(instr.args[0])

    def _apply_maintainer(self, instr: Instruction) -> None:
        self.config.maintainer = instr.args[0]

    def _apply_copy(self, instr: Instruction) -> Instruction:
        if instr.flag("from") is not None:
            raise NeedsEngineError(
                "COPY --from copies out of another stage or image, which needs an engine",
                feature="copy-from",
            )
        return instr

    def _apply_add(self, instr: Instruction) -> Instruction:
        return instr

    def _apply_run(self, instr: Instruction) -> Instruction:
        return instr


def meta_args(
    dockerfile: Dockerfile,
    build_args: Mapping[str, str] | None = None,
    *,
    platform: str = DEFAULT_PLATFORM,
) -> dict[str, str]:
    """Values usable in FROM lines: predefined platform ARGs plus the global ARGs."""
    overrides = dict(build_args or {})
    values = {k: overrides.get(k, v) for k, v in platform_args(platform).items()}
    for instr in dockerfile.global_args:
        for key, default in arg_pairs(instr, path=dockerfile.path):
            if key in overrides:
                values[key] = overrides[key]
            elif default is not None:
                values[key] = _expand_at(default, values, instr, dockerfile)
    return values


def platform_args(platform: str = DEFAULT_PLATFORM) -> dict[str, str]:
    """BuildKit's predefined ARGs. mpkit builds for the target, so BUILD* equals TARGET*."""
    os_, _, rest = platform.partition("/")
    arch, _, variant = rest.partition("/")
    values: dict[str, str] = {}
    for prefix in ("BUILD", "TARGET"):
        values[f"{prefix}PLATFORM"] = platform
        values[f"{prefix}OS"] = os_
        values[f"{prefix}ARCH"] = arch
        values[f"{prefix}VARIANT"] = variant
    return values


def _expand_at(
    word: str, env: Mapping[str, str], instr: Instruction, dockerfile: Dockerfile
) -> str:
    try:
        return expand(word, env, escape=dockerfile.escape)
    except DockerfileError as exc:
        raise DockerfileError(
            f"{instr.keyword}: {exc.reason}", path=dockerfile.path, line=instr.line, hint=exc.hint
        ) from None


def _from_of(stage: Stage) -> Instruction:
    return Instruction(stage.line, "FROM", [stage.base], {}, False, "")


def _clean_abs(path: str) -> str:
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    return "/" + "/".join(parts)


def _parse_port(spec: str) -> list[str]:
    """``80``, ``80/udp``, ``8000-8002/tcp`` (and the old ``ip:public:private``) → "port/proto"."""
    port, _, proto = spec.partition("/")
    proto = (proto or "tcp").lower()
    port = port.rsplit(":", 1)[-1]
    start, dash, end = port.partition("-")
    if not start.isdecimal() or (dash and not end.isdecimal()):
        raise DockerfileError(f"EXPOSE: invalid port {spec!r}", hint="Write EXPOSE 8080/tcp.")
    first, last = int(start), int(end) if dash else int(start)
    if not (0 < first <= last <= 65535):
        raise DockerfileError(f"EXPOSE: invalid port range {spec!r}")
    if proto not in ("tcp", "udp", "sctp"):
        raise DockerfileError(f"EXPOSE: invalid protocol in {spec!r}")
    return [f"{p}/{proto}" for p in range(first, last + 1)]
