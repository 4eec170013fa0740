"""The host way: run the adapter's Python command with the host's Python, on the image's
installed packages and app, when the host can load them.

The image's working directory (commands.cfg, app/) and its Python site directories are
copied out of the layers into a scratch directory. The command's interpreter becomes the
host's Python, started through ``hostshim.py``, which puts those site directories on
``sys.path`` in the image's order (and nothing of the host's) and gives the adapter a
writable log directory in place of /var/log.
"""

from __future__ import annotations

import configparser
import json
import os
import posixpath
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mpkit.cache.root import CacheRoot
from mpkit.describe.imagefs import HostPython, compiled_problem, extract_paths
from mpkit.errors import TargetError
from mpkit.image.types import Image
from mpkit.imagebuild.basefs import LayeredFilesystem
from mpkit.imagebuild.fsview import normpath
from mpkit.imagebuild.target import ARCHITECTURES, PythonTarget, detect_target, parse_env

PYTHON_NAME = re.compile(r"^python[0-9.]*$")
IMAGE_LOG_DIR = "/var/log"
SHIM = Path(__file__).with_name("hostshim.py")
# Environment of the image that must not reach the host's Python.
DROPPED_ENV = ("PATH", "HOME", "PYTHONHOME", "PYTHONPATH", "PYTHONUSERBASE", "PYTHONSTARTUP")


class HostUnsuitable(Exception):
    """The host's Python cannot run this adapter; the message says why."""


@dataclass(frozen=True)
class HostPlan:
    command: list[str]  # as written in commands.cfg
    workdir: str  # the image's WORKDIR
    target: PythonTarget
    image_env: dict[str, str]


def plan_host_run(image: Image, cache_dir: Path | None) -> HostPlan:
    """Check that the host can run the adapter_definition command; raise HostUnsuitable."""
    config = image.config_json.get("config") or {}
    workdir = normpath(config.get("WorkingDir") or "/")
    fs = LayeredFilesystem(image.layers, cache=CacheRoot(cache_dir) if cache_dir else None)
    command = _definition_command(fs.read_file(posixpath.join(workdir, "commands.cfg")), workdir)
    interpreter = command[0]
    if not PYTHON_NAME.match(posixpath.basename(interpreter)):
        raise HostUnsuitable(
            f"the adapter_definition command starts {interpreter!r}, not Python, so only the "
            "image can run it"
        )
    platform = image.platform
    arch = platform.architecture if platform else "amd64"
    try:
        target = detect_target(fs, config, arch=arch, launcher=(interpreter,))
    except TargetError as exc:
        raise HostUnsuitable(f"the image's Python could not be identified: {exc.message}") from None
    host = HostPython.current()
    if target.version != host.version:
        raise HostUnsuitable(
            f"the image's Python is {target.version} and the host's is {host.version}"
        )
    if ARCHITECTURES.get(arch) is None:
        raise HostUnsuitable(f"the image is for {arch}")
    return HostPlan(command, workdir, target, parse_env(config.get("Env") or []))


def _definition_command(data: bytes | None, workdir: str) -> list[str]:
    where = posixpath.join(workdir, "commands.cfg")
    if data is None:
        raise HostUnsuitable(f"the image has no {where}")
    config = configparser.ConfigParser(interpolation=None)
    try:
        config.read_string(data.decode("utf-8", "replace"))
    except configparser.Error as exc:
        raise HostUnsuitable(f"{where} in the image is not a valid INI file: {exc}") from None
    if not config.has_option("Commands", "adapter_definition"):
        raise HostUnsuitable(f"{where} in the image has no adapter_definition command")
    command = config.get("Commands", "adapter_definition").split()
    if not command:
        raise HostUnsuitable(f"the adapter_definition command in {where} is empty")
    return command


def prepare_host_run(
    plan: HostPlan, image: Image, io_dir: Path, timeout: float, cache_dir: Path | None
) -> tuple[dict[str, Any], dict[str, str]]:
    """Extract the image's files into *io_dir*; the runner's job and environment."""
    root = io_dir / "rootfs"
    site_dirs = list(plan.target.site_dirs)
    cache = CacheRoot(cache_dir) if cache_dir else None
    extract_paths(image.layers, [plan.workdir, *site_dirs], root, cache=cache)
    host = HostPython.current()
    present = [root / d.lstrip("/") for d in site_dirs if (root / d.lstrip("/")).is_dir()]
    for directory in present:
        problem = compiled_problem(directory, host, plan.target.arch)
        if problem:
            raise HostUnsuitable(problem)
    log_dir = io_dir / "log"
    for name in ("log", "home", "tmp"):
        (io_dir / name).mkdir(exist_ok=True)
    python = [sys.executable, "-s", "-S", str(SHIM)]
    job = {
        "command": [*python, *plan.command[1:]],
        "units_command": python,
        "cwd": str(root / plan.workdir.lstrip("/")),
        "timeout": timeout,
        "units": True,
        "server": None,
        "log_dirs": [str(log_dir)],
    }
    env = {k: v for k, v in plan.image_env.items() if k not in DROPPED_ENV}
    env.update(
        PATH=os.environ.get("PATH", os.defpath),
        HOME=str(io_dir / "home"),
        TMPDIR=str(io_dir / "tmp"),
        LANG=env.get("LANG", "C.UTF-8"),
        PYTHONDONTWRITEBYTECODE="1",
    )
    env["MPKIT_HOST_SHIM"] = json.dumps(
        {"site_dirs": [str(p) for p in present], "redirects": {IMAGE_LOG_DIR: str(log_dir)}}
    )
    return job, env


def run_on_host(io_dir: Path, env: dict[str, str], timeout: float) -> None:
    """Run ``runner.py`` from *io_dir* with the host's Python."""
    argv = [sys.executable, "-s", "-S", str(io_dir / "runner.py"), str(io_dir)]
    try:
        subprocess.run(
            argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout + 60,
            check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise HostUnsuitable(
            f"the definition runner took longer than {timeout + 60:.0f} s"
        ) from None
