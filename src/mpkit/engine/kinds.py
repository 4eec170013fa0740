"""The container engines mpkit drives, and the user's choice among them (--engine)."""

from __future__ import annotations

from enum import Enum

from mpkit.errors import UsageError


class EngineKind(Enum):
    """A container engine program, in preference order: podman (no daemon) first."""

    PODMAN = "podman"
    DOCKER = "docker"
    BUILDAH = "buildah"

    def __str__(self) -> str:
        return self.value

    @property
    def runs_containers(self) -> bool:
        """Whether it can run an image (buildah only builds)."""
        return self is not EngineKind.BUILDAH

    @property
    def takes_ignore_file(self) -> bool:
        """Whether its build reads exclusions from a file we name (``--ignorefile``); docker
        reads only the ``.dockerignore`` inside the build context."""
        return self is not EngineKind.DOCKER

    @property
    def reads_registries_conf(self) -> bool:
        """Whether it takes mirrors and insecure registries from a containers-registries.conf
        we name (``CONTAINERS_REGISTRIES_CONF``); docker's daemon has its own daemon.json."""
        return self is not EngineKind.DOCKER


def kinds_for(*, to_run: bool) -> tuple[EngineKind, ...]:
    """Every engine kind that can build (*to_run* False) or run containers, in order."""
    return tuple(kind for kind in EngineKind if kind.runs_containers or not to_run)


def _either(kinds: tuple[EngineKind, ...]) -> str:
    names = [kind.value for kind in kinds]
    return " or ".join([", ".join(names[:-1]), names[-1]] if len(names) > 2 else names)


class EngineChoice(Enum):
    """``--engine``: any installed engine in preference order, none, or exactly one."""

    AUTO = "auto"
    NONE = "none"
    PODMAN = "podman"
    DOCKER = "docker"
    BUILDAH = "buildah"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def names(cls, *, to_run: bool = False) -> list[str]:
        """The values ``--engine`` accepts for building, or for running containers."""
        usable = (cls.AUTO, *(() if to_run else (cls.NONE,)))  # none: nothing to run with
        return [c.value for c in cls if c in usable or c.kind in kinds_for(to_run=to_run)]

    @classmethod
    def parse(cls, text: str, *, to_run: bool = False) -> EngineChoice:
        """*text* as a choice; a usage error naming the accepted values otherwise."""
        names = cls.names(to_run=to_run)
        if text not in names:
            raise UsageError(
                f"--engine {text!r} is not a container engine mpkit can use here",
                hint=f"use one of: {', '.join(names)}",
            )
        return cls(text)

    @property
    def kind(self) -> EngineKind | None:
        """The one engine this choice names (None for auto and none)."""
        return None if self in (EngineChoice.AUTO, EngineChoice.NONE) else EngineKind(self.value)

    def kinds(self, *, to_run: bool = False) -> tuple[EngineKind, ...]:
        """The engine kinds to look for, in preference order."""
        allowed = kinds_for(to_run=to_run)
        if self is EngineChoice.AUTO:
            return allowed
        return (self.kind,) if self.kind in allowed else ()

    def unavailable(self, *, to_run: bool = False) -> str:
        """Why no engine of this choice can be used, as a clause for a message."""
        if self is EngineChoice.NONE:
            return "--engine none rules out container engines"
        if self.kind is not None and not self.kinds(to_run=to_run):
            return f"--engine {self.kind} cannot run containers"
        if self.kind is not None:
            return f"{self.kind} is not installed"
        return f"no container engine ({_either(kinds_for(to_run=to_run))}) is installed"

    def install_hint(self, *, to_run: bool = False) -> str:
        """What to install for this choice."""
        kinds = self.kinds(to_run=to_run) or kinds_for(to_run=to_run)
        first, *others = (kind.value for kind in kinds)
        return f"install {first}" + (f" (or {' or '.join(others)})" if others else "")
