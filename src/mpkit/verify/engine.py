"""A container engine (podman or docker) driven through its CLI, as a cloud proxy drives
docker: look for an image by digest, pull it anonymously, run it with limits, remove it."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from mpkit.errors import AccessDeniedError, MpkitError, NotFoundError
from mpkit.imagebuild.engine import installed_engines

RUN_ENGINES = ("podman", "docker")  # engines that run containers (buildah only builds)
ENGINE_CHOICES = ("auto", *RUN_ENGINES)
PULL_TIMEOUT = 1800.0
COMMAND_TIMEOUT = 120.0
_DENIED = re.compile(
    r"unauthorized|authentication required|access.*denied|denied.*access|requested access",
    re.IGNORECASE,
)
_MISSING = re.compile(r"manifest unknown|not found|name unknown|does not exist", re.IGNORECASE)


class ContainerEngineError(MpkitError):
    """podman or docker is missing or failed."""

    code = "container_engine"


@dataclass(frozen=True)
class Engine:
    name: str  # "podman" or "docker"
    program: str

    def run(
        self,
        *args: str,
        timeout: float = COMMAND_TIMEOUT,
        env: Mapping[str, str] | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        try:
            result = subprocess.run(
                [self.program, *args], capture_output=True, text=True, timeout=timeout,
                stdin=subprocess.DEVNULL, env=dict(env) if env is not None else None, check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            raise ContainerEngineError(
                f"'{self.name} {args[0]}' did not finish within {timeout:.0f} s",
                hint=f"check that {self.name} works: '{self.name} info'",
            ) from None
        except OSError as exc:
            raise ContainerEngineError(f"cannot run {self.program}: {exc}") from None
        if check and result.returncode != 0:
            raise ContainerEngineError(
                f"'{self.name} {' '.join(args[:2])}' failed: {_tail(result.stderr)}",
                hint=f"check that {self.name} works on this machine: '{self.name} info'",
            )
        return result

    def has_image(self, reference: str) -> bool:
        """Whether local storage holds *reference* (``REPO@DIGEST``), as a proxy checks."""
        if self.name == "podman":
            return self.run("image", "exists", reference, check=False).returncode == 0
        return self.run("image", "inspect", reference, check=False).returncode == 0

    def pull_anonymously(self, reference: str, *, tls_verify: bool = True) -> None:
        """Pull with an empty credential store, as a cloud proxy pulls."""
        with _empty_auth() as (empty, auth):
            if self.name == "podman":
                env = {**os.environ, "DOCKER_CONFIG": empty, "REGISTRY_AUTH_FILE": str(auth)}
                args = ["pull", "--authfile", str(auth)]
                if not tls_verify:
                    args.append("--tls-verify=false")
                result = self.run(*args, reference, env=env, timeout=PULL_TIMEOUT, check=False)
            else:
                result = self.run(
                    "--config", empty, "pull", reference, timeout=PULL_TIMEOUT, check=False
                )
        if result.returncode == 0:
            return
        detail = _tail(result.stderr)
        registry, _, rest = reference.partition("/")
        if _DENIED.search(detail):
            raise AccessDeniedError(
                f"{self.name} could not pull {reference} anonymously: {detail}",
                hint="Aria Operations cloud proxies pull images only anonymously: make the "
                "repository public, or preload the image on every cloud proxy (mpkit preload)",
                anonymous=True, registry=registry, repository=rest.partition("@")[0],
            )  # fmt: skip
        if _MISSING.search(detail):
            raise NotFoundError(
                f"{self.name} found no image {reference}: {detail}",
                hint="push the image again and rebuild the pack (mpkit build)",
                registry=registry,
            )
        raise ContainerEngineError(
            f"{self.name} could not pull {reference}: {detail}",
            hint="'mpkit verify PACK' tells why a cloud proxy could not pull it",
        )

    def start(
        self,
        reference: str,
        *,
        name: str,
        publish: str,
        memory_mb: int,
        memory_swap_mb: int,
        labels: Mapping[str, str],
    ) -> str:
        """Start a detached container; returns its ID."""
        args = ["run", "--detach", "--name", name, "--pull=never"]
        args += ["--memory", f"{memory_mb}m", "--memory-swap", f"{memory_swap_mb}m"]
        args += ["--publish", publish]
        for key, value in sorted(labels.items()):
            args += ["--label", f"{key}={value}"]
        if self.name != "podman":
            return self.run(*args, reference).stdout.strip()
        with _empty_auth() as (_, auth):
            # podman 4 reads credentials even with --pull=never, and fails when
            # $DOCKER_CONFIG names a directory without config.json.
            return self.run(*args, "--authfile", str(auth), reference).stdout.strip()

    def running(self, name: str) -> bool:
        result = self.run("inspect", "--format", "{{.State.Running}}", name, check=False)
        return result.returncode == 0 and result.stdout.strip() == "true"

    def logs(self, name: str) -> str:
        result = self.run("logs", name, check=False)
        return result.stdout + result.stderr

    def remove(self, name: str) -> None:
        """Stop and remove the container (best effort, quick)."""
        if self.name == "podman":
            self.run("rm", "--force", "--time", "1", name, check=False)
        else:
            self.run("rm", "--force", name, check=False)

    def inspect(self, name: str) -> dict[str, object]:
        data = json.loads(self.run("inspect", name).stdout)
        return data[0] if isinstance(data, list) and data else {}


@contextlib.contextmanager
def _empty_auth() -> Iterator[tuple[str, Path]]:
    """A temporary directory holding an empty credential store: (directory, auth.json)."""
    with tempfile.TemporaryDirectory(prefix="mpkit-anonymous-") as empty:
        auth = Path(empty) / "auth.json"
        auth.write_text('{"auths": {}}\n')
        yield empty, auth


def find_engine(choice: str = "auto") -> Engine:
    """podman (daemonless) first, then docker; or exactly *choice*."""
    found = installed_engines(choice, RUN_ENGINES)
    if found:
        return Engine(*found[0])
    names = RUN_ENGINES if choice == "auto" else (choice,)
    raise ContainerEngineError(
        f"no container engine found ({' or '.join(names)})",
        hint="install podman (or docker) to run the adapter image locally",
    )


def _tail(text: str, limit: int = 600) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    tail = " ".join(lines[-3:])
    return (tail[-limit:] if len(tail) > limit else tail) or "no error output"
