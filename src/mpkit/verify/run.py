"""`mpkit run`: do what a cloud proxy does with a pack's image, locally.

Look for ``REGISTRY/REPOSITORY@DIGEST`` in the engine's storage; pull it anonymously if
absent; start it with the memory limit (swap 512 MB above) and the adapter port
published on 127.0.0.1; wait for ``GET /apiVersion``; then remove the container, also
on Ctrl-C or SIGTERM, unless asked to keep it.

The memory limit is ``--memory``, else ``default_memory_limit`` from the project's
config.json when the pack sits in ``<project>/build/`` (where mpkit build writes it),
else 1024 MB. The adapter is spoken to over http on container port 8080, as the SDK's
mp-test does; a cloud proxy with API_PROTOCOL=https mounts its own certificate and uses 443.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import signal
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mpkit.engine import ContainerSpec, Engine, EngineChoice, find_engine, output_tail
from mpkit.errors import (
    AccessDeniedError,
    ContainerEngineError,
    MpkitError,
    NotFoundError,
    PackError,
)
from mpkit.project.load import DEFAULT_MEMORY_LIMIT_MB, MIN_MEMORY_LIMIT_MB, load_project_config
from mpkit.project.registry import SWAP_EXTRA_MB
from mpkit.reference import is_loopback_host
from mpkit.verify.preload import local_name
from mpkit.verify.target import pack_image, read_pack

CONTAINER_PORT = 8080
POLL_INTERVAL = 0.2
RUN_LABEL = "io.mpkit.run"
_DENIED = re.compile(
    r"unauthorized|authentication required|access.*denied|denied.*access|requested access",
    re.IGNORECASE,
)
_MISSING = re.compile(r"manifest unknown|not found|name unknown|does not exist", re.IGNORECASE)


@dataclass
class RunResult:
    image: str  # REGISTRY/REPOSITORY@DIGEST
    engine: str
    found_locally: bool
    container: str  # the container's name
    url: str
    memory_mb: int
    memory_swap_mb: int
    memory_source: str  # "--memory", the config.json path, or "default"
    api_version: dict[str, Any] | None = None
    kept: bool = False
    warnings: list[str] = field(default_factory=list)

    @property
    def pulled(self) -> bool:
        return not self.found_locally

    @property
    def api_version_text(self) -> str | None:
        v = self.api_version
        if not v:
            return None
        return f"{v.get('major')}.{v.get('minor')}.{v.get('maintenance')}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "engine": self.engine,
            "found_locally": self.found_locally,
            "pulled": self.pulled,
            "container": self.container,
            "url": self.url,
            "memory_mb": self.memory_mb,
            "memory_swap_mb": self.memory_swap_mb,
            "memory_source": self.memory_source,
            "api_version": self.api_version,
            "kept": self.kept,
            "warnings": list(self.warnings),
        }


def memory_limit(pack: Path, flag: int | None) -> tuple[int, str]:
    """(MB, where it came from): --memory, the project's config.json, or the default."""
    if flag is not None:
        if flag < MIN_MEMORY_LIMIT_MB:
            raise PackError(
                f"--memory {flag} is below the {MIN_MEMORY_LIMIT_MB} MB engines accept",
                hint=f"use the adapter's limit in MB, e.g. {DEFAULT_MEMORY_LIMIT_MB}",
            )
        return flag, "--memory"
    project = pack.resolve().parent.parent
    if pack.resolve().parent.name == "build" and (project / "manifest.txt").is_file():
        config = load_project_config(project)
        if config.path.is_file():
            return config.default_memory_limit, str(config.path)
    return DEFAULT_MEMORY_LIMIT_MB, "default"


def run_pack(
    pack: Path,
    choice: EngineChoice = EngineChoice.AUTO,
    *,
    memory_mb: int | None = None,
    host_port: int | None = None,
    keep: bool = False,
    timeout: float = 60.0,
    default_registry: str | None = None,
    insecure_registries: frozenset[str] = frozenset(),
    say: Callable[[str], None] = lambda _msg: None,
) -> RunResult:
    """Run *pack*'s image as a cloud proxy would, with the engine *choice* finds; the
    container is removed at the end (also on Ctrl-C and SIGTERM) unless *keep*. *say*
    receives progress messages."""
    engine = find_engine(choice, to_run=True)
    contents, problems = read_pack(pack)
    if problems:
        raise PackError(
            f"the pack is inconsistent: {problems[0]}",
            hint="run 'mpkit verify' on it; rebuild it with mpkit build",
        )
    ref = pack_image(contents).reference(default_registry)
    image = f"{ref.registry}/{ref.path}@{ref.digest}"
    limit, source = memory_limit(pack, memory_mb)
    port = host_port or _free_port()
    kind = re.sub(r"[^a-z0-9_.-]+", "-", contents.kind.lower())[:40]
    name = f"mpkit-run-{kind}-{secrets.token_hex(4)}"
    result = RunResult(
        image=image, engine=engine.name, found_locally=engine.has_image(image), container=name,
        url=f"http://127.0.0.1:{port}", memory_mb=limit, memory_swap_mb=limit + SWAP_EXTRA_MB,
        memory_source=source,
    )  # fmt: skip
    if result.found_locally:
        say(f"found {image} in {engine.name}'s local storage; not pulling")
    else:
        say(f"{image} is not in {engine.name}'s local storage; pulling it anonymously")
        tls_verify = not (is_loopback_host(ref.registry) or ref.registry in insecure_registries)
        try:
            _pull_anonymously(engine, image, tls_verify=tls_verify)
        except MpkitError as exc:
            _explain_loaded_without_digest(engine, local_name(ref), image, exc)
            raise
    started = False
    with _interrupts_as_keyboard_interrupt():
        try:
            say(f"starting {name} (memory {limit} MB, swap {SWAP_EXTRA_MB} MB more)")
            engine.start(ContainerSpec(
                image, name, publish=[f"127.0.0.1:{port}:{CONTAINER_PORT}"],
                memory_mb=limit, memory_swap_mb=result.memory_swap_mb,
                labels={RUN_LABEL: contents.kind, f"{RUN_LABEL}.pack": pack.name},
            ))  # fmt: skip
            started = True
            result.api_version = _wait_for_api_version(engine, name, result.url, timeout)
            expected = contents.kind_conf.get("API_VERSION")
            if expected and result.api_version_text != expected:
                result.warnings.append(
                    f"the adapter answers API version {result.api_version_text}, but the pack "
                    f"records API_VERSION={expected}"
                )
            result.kept = keep
        finally:
            if not result.kept:
                with _ignoring_interrupts():
                    engine.remove(name)
                if started:
                    say(f"removed {name}")
    return result


def _pull_anonymously(engine: Engine, image: str, *, tls_verify: bool) -> None:
    """Pull as a cloud proxy pulls; a refusal or a missing image says what to do."""
    try:
        engine.pull(image, anonymous=True, tls_verify=tls_verify)
    except ContainerEngineError as exc:
        registry, _, rest = image.partition("/")
        if _DENIED.search(exc.output):
            raise AccessDeniedError(
                f"{engine.name} could not pull {image} anonymously: {exc.output}",
                hint="Aria Operations cloud proxies pull images only anonymously: make the "
                "repository public, or preload the image on every cloud proxy (mpkit preload)",
                anonymous=True, registry=registry, repository=rest.partition("@")[0],
            ) from None  # fmt: skip
        if _MISSING.search(exc.output):
            raise NotFoundError(
                f"{engine.name} found no image {image}: {exc.output}",
                hint="push the image again and rebuild the pack (mpkit build)",
                registry=registry,
            ) from None
        exc.hint = "'mpkit verify PACK' tells why a cloud proxy could not pull it"
        raise


def _explain_loaded_without_digest(engine: Engine, name: str, image: str, exc: MpkitError) -> None:
    """When the engine holds the pack's image name (e.g. loaded from `mpkit preload
    --archive`) but not its digest, the failed pull's hint says why: docker's classic image
    store records a digest only when it pulls (moby/moby#22011)."""
    if engine.has_image(name):
        exc.hint = (
            f"{engine.name} has {name}, but not {image}: {engine.name} records no digest for "
            "an image loaded from an archive, and a cloud proxy looks the image up by digest; "
            "preload it with the script from 'mpkit preload' run without an archive (a pull "
            "records the digest)"
        )


def _wait_for_api_version(engine: Engine, name: str, url: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    next_state_check = 0.0
    last_error = "no answer yet"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/apiVersion", timeout=5) as response:  # noqa: S310
                body = response.read(65536)
            answer = json.loads(body)
            if isinstance(answer, dict):
                return answer
            last_error = f"GET /apiVersion answered {body[:200]!r}, not a JSON object"
        except (urllib.error.URLError, OSError, ValueError) as exc:
            last_error = str(getattr(exc, "reason", exc)) or type(exc).__name__
        if time.monotonic() >= next_state_check:
            if not engine.running(name):
                raise ContainerEngineError(
                    f"the adapter container {name} stopped before answering GET /apiVersion; "
                    f"its output ends with: {_output_end(engine, name)}",
                    hint="the image's command fails; run it with 'mpkit run --keep' and read "
                    f"'{engine.name} logs'",
                    engine=engine.name,
                )
            next_state_check = time.monotonic() + 1.0
        time.sleep(POLL_INTERVAL)
    raise ContainerEngineError(
        f"the adapter in {name} did not answer GET {url}/apiVersion within {timeout:.0f} s "
        f"({last_error}); its output ends with: {_output_end(engine, name)}",
        hint="the adapter's REST server must listen on port 8080; raise --timeout if it starts "
        "slowly",
        engine=engine.name,
    )


def _output_end(engine: Engine, container: str) -> str:
    return output_tail(engine.logs(container), lines=5)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def _interrupts_as_keyboard_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP end the run like Ctrl-C does, so the container is removed."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt()

    saved = {}
    try:
        for signum in (signal.SIGTERM, signal.SIGHUP):
            saved[signum] = signal.signal(signum, interrupt)
    except (ValueError, AttributeError):  # not the main thread, or no SIGHUP (Windows)
        pass
    try:
        yield
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def _ignoring_interrupts() -> Iterator[None]:
    """A second Ctrl-C must not leave the container behind half-removed."""
    try:
        saved = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, saved)
