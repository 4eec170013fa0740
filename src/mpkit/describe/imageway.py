"""The image way: run the definition runner inside the built image with podman or docker.

The image reaches the engine by ``pull`` of the pushed reference when one is given, else
by ``load`` of a docker-archive mpkit writes. The runner and its scratch files live in a
host directory mounted at /io; the container has no network (its own loopback only,
where the image's REST server answers ``GET /apiVersion``). Whatever the engine was
given is removed again, unless the engine already had it.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from mpkit.image.archive_writer import write_docker_archive
from mpkit.image.digest import digest_hex
from mpkit.image.types import Image
from mpkit.imagebuild.engine import engine_environment, installed_engines
from mpkit.reference import is_loopback_host, parse_reference
from mpkit.verify.engine import RUN_ENGINES

ENGINES = RUN_ENGINES
MOUNT = "/io"
ENGINE_FAILED = 125  # podman and docker: the engine itself failed, not the command
ENGINE_TIMEOUT = 600.0


class EngineFailure(Exception):
    """The engine could not take or run the image (not the adapter's failure)."""


def available_engines(choice: str | None) -> list[str]:
    """Engines to try for *choice* ("auto"/None: podman then docker; "none": none)."""
    return [path for _, path in installed_engines(choice, ENGINES)]


def run_in_image(
    engine: str,
    image: Image,
    io_dir: Path,
    *,
    pushed_reference: str | None,
    insecure_registries: Collection[str],
    timeout: float,
    log: Callable[[str], None],
) -> None:
    """Run ``runner.py`` from *io_dir* inside *image*; raise EngineFailure if it never ran."""
    name = Path(engine).name
    reference, cleanup = _image_in_engine(
        engine, image, io_dir, pushed_reference, insecure_registries, log
    )
    container = f"mpkit-definition-{uuid.uuid4().hex[:12]}"
    try:
        # ":Z" relabels the scratch directory on SELinux hosts; engines ignore it elsewhere.
        argv = [
            engine, "run", "--rm", "--name", container, "--network", "none",
            "--entrypoint", "python3", "--volume", f"{io_dir}:{MOUNT}:Z",
            reference, f"{MOUNT}/runner.py", MOUNT,
        ]  # fmt: skip
        log(f"$ {' '.join(argv)}")
        try:
            done = _run(argv, timeout=timeout + 60)
        except EngineFailure:
            _run([engine, "rm", "--force", container], timeout=60)
            raise
        if not (io_dir / "result.json").is_file():
            raise EngineFailure(
                f"{name} run exited with status {done.returncode} before the definition runner "
                f"finished: {_last_lines(done.stderr)}"
            )
    finally:
        if cleanup:
            _run([engine, "rmi", "--force", reference], timeout=120)


def _image_in_engine(
    engine: str,
    image: Image,
    io_dir: Path,
    pushed_reference: str | None,
    insecure_registries: Collection[str],
    log: Callable[[str], None],
) -> tuple[str, bool]:
    """The name to run the image by, and whether to remove it afterwards."""
    name = Path(engine).name
    if pushed_reference:
        reference = _by_digest(pushed_reference, image.digest)
        had_it = _run([engine, "image", "inspect", reference], timeout=60).returncode == 0
        argv = [engine, "pull", "--quiet"]
        registry = parse_reference(reference).registry
        if name == "podman" and (is_loopback_host(registry) or registry in insecure_registries):
            argv.append("--tls-verify=false")
        done = _run([*argv, reference], timeout=ENGINE_TIMEOUT)
        if done.returncode == 0:
            log(f"{name} pulled {reference}")
            return reference, not had_it
        log(f"{name} could not pull {reference} ({_last_lines(done.stderr)}); loading the image")
    tag = f"localhost/mpkit-definition:{digest_hex(image.digest)[:12]}"
    with tempfile.TemporaryDirectory(prefix="mpkit-archive-") as scratch:
        archive = Path(scratch) / "image.tar"
        write_docker_archive(image, archive, [tag])
        done = _run([engine, "load", "--input", str(archive)], timeout=ENGINE_TIMEOUT)
    if done.returncode != 0:
        raise EngineFailure(f"{name} load failed: {_last_lines(done.stderr or done.stdout)}")
    log(f"{name} loaded the image as {tag}")
    return tag, True


def _by_digest(reference: str, digest: str) -> str:
    parsed = parse_reference(reference)
    return f"{parsed.registry}/{parsed.path}@{digest}"


def _run(argv: list[str], *, timeout: float) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
            check=False, env=engine_environment(),
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise EngineFailure(f"{' '.join(argv[:2])} took longer than {timeout:.0f} s") from None
    except OSError as exc:
        raise EngineFailure(f"cannot run {argv[0]}: {exc}") from None


def _last_lines(text: str, count: int = 3) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return " / ".join(lines[-count:]) or "no output"


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
