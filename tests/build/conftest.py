"""``mini_podman``: a minimal, isolated podman for the COPY equivalence tests (SPEC §9).

(Named so that it does not shadow the shared ``podman`` fixture of tests/fixtures.)

Its containers.conf (runc, cgroupfs, ulimits below the hard limit) and storage.conf
(overlay, graphroot and runroot in a short /tmp directory) are its own, so it never
touches the user's podman storage. Everything is removed at the end of the module.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fixtures.tools import require_tool

# path → (kind, mode, uid, gid, size or link target)
Listing = dict[str, tuple[str, int, int, int, str]]


@dataclass
class MiniPodman:
    binary: str
    root: Path
    env: dict[str, str]

    def run(self, *args: str, timeout: float = 120) -> str:
        done = subprocess.run(
            [self.binary, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        if done.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} failed:\n{done.stderr.strip()}")
        return done.stdout

    def build_listing(self, context: Path, tag: str) -> Listing:
        """``podman build`` *context*, export a container of it, list the tar."""
        self.run("build", "--quiet", "--pull=never", "--tag", tag, str(context))
        container = self.run("create", tag, "/none").strip()
        export = self.root / f"{tag}.tar"
        try:
            self.run("export", "--output", str(export), container)
        finally:
            self.run("rm", "--force", container)
        return tar_listing(export)


def tar_listing(path: Path) -> Listing:
    listing: Listing = {}
    with tarfile.open(path) as tar:
        for member in tar.getmembers():
            name = "/" + member.name.strip("/").removeprefix("./")
            if name == "/":
                continue
            if member.isdir():
                kind, extra = "dir", ""
            elif member.issym():
                kind, extra = "symlink", member.linkname
            else:
                kind, extra = "file", str(member.size)
            mode = 0o777 if kind == "symlink" else member.mode & 0o7777
            listing[name] = (kind, mode, member.uid, member.gid, extra)
    return listing


def _toml(value: object) -> str:
    return json.dumps(value)


@pytest.fixture(scope="module")
def mini_podman() -> Iterator[MiniPodman]:
    binary = require_tool("podman")
    require_tool("runc")
    root = Path(tempfile.mkdtemp(prefix="mpfe", dir="/tmp"))  # short: podman puts sockets here
    graph, run, tmp = root / "g", root / "r", root / "t"
    conf, storage = root / "containers.conf", root / "storage.conf"
    conf.write_text(
        "[containers]\n"
        f"default_ulimits = {_toml(['nofile=10000:10000', 'nproc=1000:1000'])}\n"
        "[engine]\n"
        'runtime = "runc"\ncgroup_manager = "cgroupfs"\nevents_logger = "none"\n'
        f"tmp_dir = {_toml(str(tmp))}\n"
        f"static_dir = {_toml(str(graph / 'libpod'))}\n"
        f"volume_path = {_toml(str(graph / 'volumes'))}\n"
        "[network]\n"
        f"network_config_dir = {_toml(str(root / 'networks'))}\n"
    )
    storage.write_text(
        f'[storage]\ndriver = "overlay"\ngraphroot = {_toml(str(graph))}\n'
        f"runroot = {_toml(str(run))}\n"
    )
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(root),
        "CONTAINERS_CONF": str(conf),
        "CONTAINERS_STORAGE_CONF": str(storage),
        "CONTAINERS_REGISTRIES_CONF": str(root / "registries.conf"),
    }
    (root / "registries.conf").write_text("unqualified-search-registries = []\n")
    tool = MiniPodman(binary, root, env)
    try:
        yield tool
    finally:
        for args in (["rm", "--all", "--force"], ["rmi", "--all", "--force"]):
            subprocess.run([binary, *args], env=env, capture_output=True, timeout=120, check=False)
        shutil.rmtree(root, ignore_errors=True)
