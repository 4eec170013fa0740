"""Requirements published only as source distributions: built here when pure Python, else
SourceBuildError (only the image's compiler can build them).

The sdists are made here (tests.imagebuild.sdists) and served from a ``--find-links``
directory, so nothing but the PyPI-marked test needs a package index.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from mpkit.errors import DependencyError, SourceBuildError
from mpkit.imagebuild.pydeps.sourcebuild import build_python, failed_builds
from mpkit.imagebuild.pydeps.uvrun import uv_binary
from tests.imagebuild.sdists import make_sdist
from tests.imagebuild.test_pydeps import (
    SITE,
    by_path,
    content,
    debian_base,
    install_offline,
    install_pypi,
    make_wheel,
)

HOST_VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"
OFFLINE = "pip3 install --no-index --find-links links"


@pytest.fixture
def links(context: Path) -> Path:
    """The project's find-links directory: sdists only, plus a wheel of demo-dep."""
    directory = context / "links"
    make_sdist(directory, "purepkg", "1.0", requires=("demo-dep",))
    make_sdist(directory, "cext", "1.0", kind="native")
    make_wheel(directory, "demo-dep", "1.0")
    return directory


@pytest.fixture
def build_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every build of a test sdist appends a line here (the build sees uv's environment)."""
    path = tmp_path / "builds.log"
    monkeypatch.setenv("MPKIT_TEST_BUILD_LOG", str(path))
    return path


def builds(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def test_a_pure_sdist_is_built_and_installed_as_pip_in_the_image_would(
    context: Path, tmp_path: Path, links: Path, build_log: Path
) -> None:
    layer = install_offline(
        f"{OFFLINE} purepkg", debian_base(), context=context, cache=tmp_path / "cache",
        wheelhouse=None,
    )  # fmt: skip
    assert layer.installed == {"purepkg": "1.0", "demo-dep": "1.0"}
    entries = by_path(layer)
    assert content(entries[f"{SITE}/purepkg/__init__.py"]).startswith(b"VERSION = '1.0'")
    wheel = content(entries[f"{SITE}/purepkg-1.0.dist-info/WHEEL"]).decode()
    assert "Tag: py3-none-any" in wheel
    assert content(entries[f"{SITE}/purepkg-1.0.dist-info/INSTALLER"]) == b"pip\n"
    assert not any(p.endswith(("uv_build.json", "uv_cache.json")) for p in entries)
    assert all((e.uid, e.gid) == (1000, 1000) for e in layer.entries)
    assert builds(build_log) == [f"purepkg 1.0 {HOST_VERSION}"]


def test_a_built_wheel_is_kept_by_its_sdist_and_not_built_again(
    context: Path, tmp_path: Path, links: Path, build_log: Path
) -> None:
    cache = tmp_path / "cache"
    first = install_offline(f"{OFFLINE} purepkg", debian_base(), context=context, cache=cache,
                            wheelhouse=None)  # fmt: skip
    # Another line (another staging key) that needs the same sdist: uv's cache has its wheel.
    second = install_offline(f"{OFFLINE} purepkg demo-dep", debian_base(), context=context,
                             cache=cache, wheelhouse=None)  # fmt: skip
    assert first.cache_key != second.cache_key
    assert second.installed == first.installed
    assert len(builds(build_log)) == 1
    # A changed sdist (same name and version, other content) is built again.
    make_sdist(links, "purepkg", "1.0", requires=("demo-dep>=1",))
    install_offline(f"{OFFLINE} purepkg", debian_base(), context=context, cache=cache,
                    wheelhouse=None)  # fmt: skip
    assert len(builds(build_log)) == 2


def test_an_sdist_with_a_c_extension_needs_the_image(
    context: Path, tmp_path: Path, links: Path
) -> None:
    cache = tmp_path / "cache"
    with pytest.raises(SourceBuildError) as caught:
        install_offline(f"{OFFLINE} purepkg cext", debian_base(), context=context, cache=cache,
                        wheelhouse=None)  # fmt: skip
    error = caught.value
    assert error.requirements == ("cext",)
    assert "only a source distribution of cext fits the image" in error.message
    # With a compiler here it built a platform wheel; without one its build failed.
    assert "cp311-cp311-linux_x86_64" in error.message or "build failed" in error.message
    hint = error.hint or ""
    assert "podman or docker" in hint and "--wheelhouse DIR" in hint
    assert "cp311-manylinux_2_36_x86_64" in hint
    assert not list((cache / "pydeps").glob("*/complete"))  # nothing was kept


def test_a_host_built_platform_wheel_for_another_python_needs_the_image(
    context: Path, tmp_path: Path, links: Path
) -> None:
    with pytest.raises(SourceBuildError) as caught:
        install_offline(f"{OFFLINE} cext", debian_base(version="3.12"), context=context,
                        cache=tmp_path / "cache", wheelhouse=None)  # fmt: skip
    assert caught.value.requirements == ("cext",)
    assert "cp312-manylinux_2_36_x86_64" in (caught.value.hint or "")


def test_a_pure_sdist_for_another_python_names_the_python_that_built_it(
    context: Path, tmp_path: Path, links: Path, build_log: Path
) -> None:
    warnings: list[str] = []
    layer = install_offline(
        f"{OFFLINE} purepkg", debian_base(version="3.12"), context=context,
        cache=tmp_path / "cache", wheelhouse=None, warn=warnings.append,
    )  # fmt: skip
    assert layer.installed == {"purepkg": "1.0", "demo-dep": "1.0"}
    builder = build_python("3.12", uv_binary(), {**os.environ})
    assert builds(build_log) == [f"purepkg 1.0 {builder.version}"]
    if builder.version == "3.12":  # this machine has the image's Python: it built the sdist
        assert warnings == []
    else:
        assert len(warnings) == 1
        assert "built purepkg from source with python" in warnings[0]
        assert "uv python install 3.12" in warnings[0]


def test_prefer_binary_takes_an_older_wheel_over_a_newer_sdist(
    context: Path, tmp_path: Path, links: Path, build_log: Path
) -> None:
    make_wheel(links, "purepkg", "0.9")
    cache = tmp_path / "cache"
    newest = install_offline(f"{OFFLINE} purepkg", debian_base(), context=context,
                             cache=cache, wheelhouse=None)  # fmt: skip
    assert newest.installed["purepkg"] == "1.0"  # pip takes the newest version, even an sdist
    wheel = install_offline(f"{OFFLINE} --prefer-binary purepkg", debian_base(),
                            context=context, cache=cache, wheelhouse=None)  # fmt: skip
    assert wheel.installed == {"purepkg": "0.9"}
    only_sdist = install_offline(f"{OFFLINE} --prefer-binary purepkg==1.0", debian_base(),
                                 context=context, cache=cache, wheelhouse=None)  # fmt: skip
    assert only_sdist.installed["purepkg"] == "1.0"  # no wheel at all: the sdist after all


def test_only_binary_on_the_line_is_respected(context: Path, tmp_path: Path, links: Path) -> None:
    with pytest.raises(DependencyError) as caught:
        install_offline(f"{OFFLINE} --only-binary :all: purepkg", debian_base(),
                        context=context, cache=tmp_path / "cache", wheelhouse=None)  # fmt: skip
    assert not isinstance(caught.value, SourceBuildError)
    assert "purepkg" in caught.value.message


# -- uv's reports of failed builds --------------------------------------------------------------


def test_failed_builds_from_uv_output() -> None:
    compiler = (
        "   Building cext==1.0\n"
        "error: Failed to build `cext==1.0`\n"
        "  cause: The build backend returned an error\n"
        "  cause: Call to `backend.build_wheel` failed (exit status: 1)\n"
        "         [stderr]\n"
        "         error: command 'cc' failed: No such file or directory\n"
        "hint: Build failures usually indicate a problem with the package\n"
    )
    [found] = failed_builds(compiler)
    assert found.name == "cext" and "(it needs a compiler)" in found.reason
    assert "hint:" not in found.reason
    platform = (
        "error: Failed to download and build `Cext==1.0`\n"
        "  cause: The built wheel `cext-1.0-cp311-cp311-linux_x86_64.whl` is not compatible "
        "with the target Python 3.9 on Linux x86_64.\n"
    )
    [other] = failed_builds(platform)
    assert other.name == "cext" and "cext-1.0-cp311-cp311-linux_x86_64.whl" in other.reason
    build_requirements = (
        "error: Failed to build `purepkg==1.0`\n"
        "  cause: Failed to resolve requirements from `build-system.requires`\n"
        "  cause: No solution found when resolving: `setuptools>=40.8.0`\n"
    )
    assert failed_builds(build_requirements) == []  # an index problem, not the image's


# -- PyPI ------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("pypi")
def test_pypi_sdist_only_pure_requirement_is_built(shared_cache: Path, context: Path) -> None:
    """docopt 0.6.2 is published only as an sdist (setup.py, setuptools from PyPI)."""
    layer = install_pypi("pip3 install six==1.16.0 docopt==0.6.2", debian_base(), shared_cache,
                         context)  # fmt: skip
    assert layer.installed == {"six": "1.16.0", "docopt": "0.6.2"}
    entries = by_path(layer)
    assert f"{SITE}/docopt.py" in entries
    wheel = content(entries[f"{SITE}/docopt-0.6.2.dist-info/WHEEL"]).decode()
    tags = [line.split(": ", 1)[1] for line in wheel.splitlines() if line.startswith("Tag: ")]
    assert tags and all(tag.endswith("-none-any") for tag in tags)
