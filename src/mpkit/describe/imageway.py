"""The image way: run the definition runner inside the built image with podman or docker.

The engine keeps the image it last ran for a project under one stable name,
``localhost/mpkit-definition:<project>``, so the base and dependency layers stay in its
storage: after an app-only change, a pull by digest from the registry the build pushed to
transfers only the new layers (an archive is loaded only when pulling is impossible).
When the name moves to the new image, the image it named before is removed if nothing
else names it; images the user has are never removed.

The runner and its scratch files live in a host directory mounted at /io; the container
has no network (its own loopback only, where the image's REST server answers
``GET /apiVersion``).
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
import uuid
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from mpkit.describe.runner import SERVER_STOP_TIMEOUT, UNITS_TIMEOUT
from mpkit.engine import ContainerSpec, Engine, LocalImage, output_tail
from mpkit.engine.health import container_never_started, daemon_unreachable
from mpkit.errors import ContainerEngineError, EngineUnusable
from mpkit.image.archive_writer import write_docker_archive
from mpkit.image.digest import digest_hex
from mpkit.image.types import Image
from mpkit.project.model import Project
from mpkit.reference import is_loopback_host, parse_reference

MOUNT = "/io"
KEPT_REPOSITORY = "localhost/mpkit-definition"
SERVER_PORT = 8080  # the SDK server's plain-HTTP port (443 only with a certificate)
SERVER_TIMEOUT = 30
# Beyond the definition command's own timeout, the runner may spend this much (units, the
# server's wait and stop, starting up): a container that outlives it hangs in the engine.
RUNNER_OVERHEAD = UNITS_TIMEOUT + SERVER_TIMEOUT + SERVER_STOP_TIMEOUT + 60.0
_TAG_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
Log = Callable[[str], None]


def kept_name(project: Project) -> str:
    """The engine's name for the image last described for *project* (one per project)."""
    where = hashlib.sha256(str(project.root.resolve()).encode()).hexdigest()[:12]
    label = _TAG_UNSAFE.sub("-", project.manifest.name).strip("-.")[:80] or "project"
    return f"{KEPT_REPOSITORY}:{label}-{where}"


def run_in_image(
    engine: Engine,
    image: Image,
    io_dir: Path,
    *,
    kept_as: str,
    pushed_reference: str | None,
    insecure_registries: Collection[str],
    timeout: float,
    log: Log,
    debug: Log,
) -> None:
    """Run ``runner.py`` from *io_dir* inside *image*, which the engine keeps as
    *kept_as*. EngineUnusable when the engine itself failed; ContainerEngineError when the
    runner did not run for another reason (e.g. the image has no python3)."""
    try:
        previous = engine.local_image(kept_as)
        _image_in_engine(engine, image, previous, kept_as, pushed_reference,
                         insecure_registries, log, debug)  # fmt: skip
    except EngineUnusable:
        raise
    except ContainerEngineError as exc:  # load or tag: the engine's own storage failed
        raise EngineUnusable(exc.message, engine=engine.name, exit_status=exc.exit_status,
                             output=exc.output) from None  # fmt: skip
    try:
        _run_runner(engine, kept_as, io_dir, timeout, debug)
    except EngineUnusable:
        engine.remove_image(kept_as, force=False)  # an engine that cannot run it keeps nothing
        raise
    finally:
        if previous is not None and previous.id != digest_hex(image.config.digest):
            _remove_if_unnamed(engine, previous, debug)


def _run_runner(engine: Engine, kept_as: str, io_dir: Path, timeout: float, debug: Log) -> None:
    spec = ContainerSpec(
        kept_as, f"mpkit-definition-{uuid.uuid4().hex[:12]}", network="none",
        entrypoint="python3", mounts=[(io_dir, MOUNT)], command=[f"{MOUNT}/runner.py", MOUNT],
    )  # fmt: skip
    try:
        done = engine.run(spec, timeout=timeout + RUNNER_OVERHEAD, log=debug)
    except ContainerEngineError as exc:  # could not start the program, or it hung
        raise EngineUnusable(exc.message, engine=engine.name, output=exc.output) from None
    if (io_dir / "result.json").is_file():
        return
    output = done.stderr or done.stdout
    message = (f"{engine.name} run exited with status {done.returncode} before the definition "
               f"runner finished: {output_tail(output)}")  # fmt: skip
    never_started = container_never_started(done.returncode, output)
    error = EngineUnusable if never_started else ContainerEngineError
    raise error(message, engine=engine.name, exit_status=done.returncode,
                output=output_tail(output))  # fmt: skip


def _image_in_engine(
    engine: Engine,
    image: Image,
    previous: LocalImage | None,
    kept_as: str,
    pushed_reference: str | None,
    insecure_registries: Collection[str],
    log: Log,
    debug: Log,
) -> None:
    """Make *kept_as* name *image* in the engine, transferring as little as possible."""
    if previous is not None and previous.id == digest_hex(image.config.digest):
        debug(f"{engine.name} already has the image as {kept_as}")
        return
    if pushed_reference:
        reference = _by_digest(pushed_reference, image.digest)
        if engine.has_image(reference):
            engine.tag(reference, kept_as)  # the user's own copy: keep its names
            debug(f"{engine.name} already had {reference}")
            return
        registry = parse_reference(reference).registry
        plain_http = is_loopback_host(registry) or registry in insecure_registries
        try:
            engine.pull(reference, tls_verify=not plain_http)
        except ContainerEngineError as exc:
            if daemon_unreachable(exc.output):
                raise EngineUnusable(exc.message, engine=engine.name, output=exc.output) from None
            log(f"{exc.message}; loading the image")
        else:
            engine.tag(reference, kept_as)
            engine.remove_image(reference, force=False)  # only the name: the image stays
            log(f"{engine.name} pulled {reference} (only the layers it lacked)")
            return
    with tempfile.TemporaryDirectory(prefix="mpkit-archive-") as scratch:
        archive = Path(scratch) / "image.tar"
        write_docker_archive(image, archive, [kept_as])
        engine.load(archive)
    log(f"{engine.name} loaded the image as {kept_as}")


def _remove_if_unnamed(engine: Engine, previous: LocalImage, debug: Log) -> None:
    """Remove the image *kept_as* named before, unless something else still names it."""
    now = engine.local_image(previous.id)
    if now is None or now.names:
        return
    engine.remove_image(previous.id, force=False)  # layers the new image shares stay
    debug(f"{engine.name}: removed the previously described image {previous.id[:12]}")


def _by_digest(reference: str, digest: str) -> str:
    parsed = parse_reference(reference)
    return f"{parsed.registry}/{parsed.path}@{digest}"


def image_job(image: Image, timeout: float, *, ask_server: bool = True) -> dict[str, Any]:
    """The runner's job inside the image: commands.cfg from the WORKDIR, the image's own
    server for the API version (unless *ask_server* is False: it is known), and /var/log
    for the adapter's log files."""
    config = image.config_json.get("config") or {}
    return {
        "cwd": config.get("WorkingDir") or None,
        "timeout": timeout,
        "units": True,
        "server": image_server(image) if ask_server else None,
        "server_port": SERVER_PORT,
        "server_timeout": SERVER_TIMEOUT,
        "log_dirs": ["/var/log"],
    }


def image_server(image: Image) -> list[str] | None:
    """The image's own server (ENTRYPOINT + CMD), or None when it has neither."""
    config = image.config_json.get("config") or {}
    server = [*(config.get("Entrypoint") or []), *(config.get("Cmd") or [])]
    return [str(part) for part in server] or None


def write_job(io_dir: Path, job: dict[str, Any]) -> None:
    (io_dir / "job.json").write_text(json.dumps(job))
