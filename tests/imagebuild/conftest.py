"""Fixtures of the image builder tests: ``mini_podman``, an isolated podman for the COPY
equivalence tests (named so that it does not shadow the shared ``podman`` fixture); local
wheels; the build context; PyPI, when reachable.

``mini_podman`` has storage and configuration of its own (``tests.fixtures.podman``), so it never
touches the user's podman storage. Everything is removed at the end of the module.
"""

from __future__ import annotations

import socket
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fixtures.fakeengine import fake_engines  # noqa: F401  (shared fixture)
from tests.fixtures.podman import Podman, isolated_podman
from tests.fixtures.tools import unavailable

# path → (kind, mode, uid, gid, size or link target)
Listing = dict[str, tuple[str, int, int, int, str]]


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One uv cache (and staging cache) for the whole session: installs stay fast."""
    return tmp_path_factory.mktemp("pydeps-cache")


@pytest.fixture
def context(tmp_path: Path) -> Path:
    root = tmp_path / "context"
    root.mkdir()
    return root


@pytest.fixture(scope="session")
def pypi() -> Iterator[None]:
    """PyPI must be reachable (the package registries are, on this machine kind)."""
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
    except OSError as exc:
        unavailable(f"pypi.org is unreachable: {exc}")
    yield


@pytest.fixture
def wheelhouse(tmp_path: Path) -> Path:
    """Local wheels: demo-pkg 1.0 (needs demo-dep>=1, has a console script), demo-dep 1.0
    and 2.0, other-pkg 1.0."""
    from tests.imagebuild.test_pydeps import make_wheel

    house = tmp_path / "wheelhouse"
    house.mkdir()
    make_wheel(
        house, "demo-pkg", "1.0", requires=("demo-dep>=1",), scripts={"demo": "demo_pkg:main"}
    )
    make_wheel(house, "demo-dep", "1.0")
    make_wheel(house, "demo-dep", "2.0")
    make_wheel(house, "other-pkg", "1.0")
    return house


@dataclass
class MiniPodman:
    """Builds a context with podman and lists the filesystem of the result."""

    engine: Podman

    def build_listing(self, context: Path, tag: str) -> Listing:
        """``podman build`` *context*, export a container of it, list the tar."""
        engine = self.engine
        engine.run("build", "--quiet", "--pull=never", "--tag", tag, str(context))
        container = engine.run("create", tag, "/none").stdout.strip()
        export = engine.root / f"{tag}.tar"
        try:
            engine.run("export", "--output", str(export), container)
        finally:
            engine.run("rm", "--force", container)
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


@pytest.fixture(scope="module")
def mini_podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MiniPodman]:
    with isolated_podman(tmp_path_factory, "mini-podman") as engine:
        yield MiniPodman(engine)
