"""The image way: run the definition runner inside the built image with podman or docker.

The image reaches the engine by ``pull`` of the pushed reference when one is given, else
by ``load`` of a docker-archive mpkit writes. The runner and its scratch files live in a
host directory mounted at /io; the container has no network (its own loopback only,
where the image's REST server answers ``GET /apiVersion``). Whatever the engine was
given is removed again, unless the engine already had it.
"""

from __future__ import annotations

import json
import tempfile
import uuid
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from mpkit.engine import ContainerSpec, Engine, output_tail
from mpkit.errors import ContainerEngineError
from mpkit.image.archive_writer import write_docker_archive
from mpkit.image.digest import digest_hex
from mpkit.image.types import Image
from mpkit.reference import is_loopback_host, parse_reference

MOUNT = "/io"


def run_in_image(
    engine: Engine,
    image: Image,
    io_dir: Path,
    *,
    pushed_reference: str | None,
    insecure_registries: Collection[str],
    timeout: float,
    log: Callable[[str], None],
) -> None:
    """Run ``runner.py`` from *io_dir* inside *image*; a ContainerEngineError if it never ran."""
    reference, cleanup = _image_in_engine(engine, image, pushed_reference, insecure_registries, log)
    try:
        spec = ContainerSpec(
            reference, f"mpkit-definition-{uuid.uuid4().hex[:12]}", network="none",
            entrypoint="python3", mounts=[(io_dir, MOUNT)],
            command=[f"{MOUNT}/runner.py", MOUNT],
        )  # fmt: skip
        done = engine.run(spec, timeout=timeout + 60, log=log)
        if not (io_dir / "result.json").is_file():
            raise ContainerEngineError(
                f"{engine.name} run exited with status {done.returncode} before the definition "
                f"runner finished: {output_tail(done.stderr or done.stdout)}",
                engine=engine.name, exit_status=done.returncode,
            )  # fmt: skip
    finally:
        if cleanup:
            engine.remove_image(reference)


def _image_in_engine(
    engine: Engine,
    image: Image,
    pushed_reference: str | None,
    insecure_registries: Collection[str],
    log: Callable[[str], None],
) -> tuple[str, bool]:
    """The name to run the image by, and whether to remove it afterwards."""
    if pushed_reference:
        reference = _by_digest(pushed_reference, image.digest)
        had_it = engine.has_image(reference)
        registry = parse_reference(reference).registry
        plain_http = is_loopback_host(registry) or registry in insecure_registries
        try:
            engine.pull(reference, tls_verify=not plain_http)
        except ContainerEngineError as exc:
            log(f"{exc.message}; loading the image")
        else:
            log(f"{engine.name} pulled {reference}")
            return reference, not had_it
    tag = f"localhost/mpkit-definition:{digest_hex(image.digest)[:12]}"
    with tempfile.TemporaryDirectory(prefix="mpkit-archive-") as scratch:
        archive = Path(scratch) / "image.tar"
        write_docker_archive(image, archive, [tag])
        engine.load(archive)
    log(f"{engine.name} loaded the image as {tag}")
    return tag, True


def _by_digest(reference: str, digest: str) -> str:
    parsed = parse_reference(reference)
    return f"{parsed.registry}/{parsed.path}@{digest}"


def image_job(image: Image, timeout: float) -> dict[str, Any]:
    """The runner's job inside the image: commands.cfg from the WORKDIR, the image's own
    server for the API version, and /var/log for the adapter's log files."""
    config = image.config_json.get("config") or {}
    server = [*(config.get("Entrypoint") or []), *(config.get("Cmd") or [])]
    return {
        "cwd": config.get("WorkingDir") or None,
        "timeout": timeout,
        "units": True,
        "server": server or None,
        "server_port": 8080,  # the SDK server's plain-HTTP port (443 only with a certificate)
        "server_timeout": 30,
        "log_dirs": ["/var/log"],
    }


def write_job(io_dir: Path, job: dict[str, Any]) -> None:
    (io_dir / "job.json").write_text(json.dumps(job))
