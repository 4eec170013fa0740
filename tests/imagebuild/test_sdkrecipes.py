"""Finding the SDK's base-image recipes, where to publish them, and the commands that do
it by hand (mpkit.imagebuild.sdkrecipes, sdkmanual; no engine or registry needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mpkit.errors import BaseImageError
from mpkit.imagebuild.base import base_reference
from mpkit.imagebuild.sdkmanual import ManualContext, publish_by_hand
from mpkit.imagebuild.sdkrecipes import (
    find_recipe,
    local_bases_in,
    publish_reference,
    sdk_site_packages,
)
from mpkit.reference import parse_repository
from mpkit.settings import Settings
from tests.fixtures.sdkrecipe import (
    CONTAINER_VERSIONS,
    LOCAL_JAVA,
    LOCAL_PYTHON,
    fake_venv,
    install_fake_sdk,
    install_sdk,
    recipe_path,
)

NO_PATH = {"PATH": ""}


def test_the_projects_sdk_environment_has_each_languages_own_recipe(tmp_path: Path) -> None:
    project = tmp_path / "mysql-pack"
    packages = install_fake_sdk(project, "venv-MySQL Pack")
    expected = {
        LOCAL_PYTHON: "base-python-adapter",
        LOCAL_JAVA: "java-adapter",
        "base-adapter:powershell-1.1.0": "powershell-adapter",
    }
    for name, directory in expected.items():
        search = find_recipe(name, project, environ=NO_PATH)
        assert search.recipe is not None, search.why_not()
        assert search.recipe.path == recipe_path(packages, directory)
        assert search.recipe.version_known
    java = find_recipe(LOCAL_JAVA, project, environ=NO_PATH).recipe
    assert java is not None and java.local_bases() == [LOCAL_PYTHON]  # FROM the Python base


def test_a_recipe_for_another_version_is_not_used_and_the_reason_names_it(
    tmp_path: Path,
) -> None:
    project = tmp_path / "project"
    packages = install_fake_sdk(project)
    search = find_recipe("base-adapter:python-1.3.0", project, environ=NO_PATH)
    assert search.recipe is None
    assert search.why_not() == (
        "no installed SDK has the recipe for python-1.3.0 "
        f"({recipe_path(packages)} builds python-1.2.0)"
    )
    assert find_recipe("base-adapter:ruby-1.0.0", project, environ=NO_PATH).recipe is None
    odd = find_recipe("base-adapter:latest", project, environ=NO_PATH)
    assert odd.base is None and "not a name the SDK builds" in odd.why_not()


def test_without_container_versions_the_recipe_is_used_unconfirmed(tmp_path: Path) -> None:
    project = tmp_path / "project"
    packages = install_sdk(fake_venv(project / ".venv"), versions=None)
    recipe = find_recipe(LOCAL_PYTHON, project, environ=NO_PATH).recipe
    assert recipe is not None and recipe.path == recipe_path(packages)
    assert not recipe.version_known


def test_an_unreadable_versions_file_leaves_the_recipe_unconfirmed(tmp_path: Path) -> None:
    project = tmp_path / "project"
    packages = install_fake_sdk(project)
    versions = packages / "vmware_aria_operations_integration_sdk" / "container_versions.json"
    for text in (
        "[" * 100_000,
        '{"base_image": [1, 2]}',
        "not json",
        '["a list"]',
        '{"secondary_images": 5}',
    ):
        versions.write_text(text)
        recipe = find_recipe(LOCAL_PYTHON, project, environ=NO_PATH).recipe
        assert recipe is not None and not recipe.version_known, text


def test_mp_init_environments_come_before_other_environments_of_the_project(
    tmp_path: Path,
) -> None:
    project = tmp_path / "project"
    install_sdk(fake_venv(project / "aaa-env"), versions={**CONTAINER_VERSIONS,
                "base_image": {"language": "Python", "path": "base-python-adapter",
                               "version": "1.1.0"}})  # fmt: skip
    packages = install_fake_sdk(project, "venv-Adapter")
    search = find_recipe(LOCAL_PYTHON, project, environ=NO_PATH)
    assert search.recipe is not None and search.recipe.site_packages == packages
    assert sdk_site_packages(project, environ=NO_PATH)[:2] == [
        packages,
        project / "aaa-env" / "lib" / "python3.11" / "site-packages",
    ]


def test_the_sdk_of_an_mp_build_on_path_is_found(tmp_path: Path) -> None:
    # pip writes an sh-exec header when the interpreter's path has a space in it.
    venv = tmp_path / "sdk env"
    packages = install_sdk(fake_venv(venv))
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "mp-build").write_text(
        f"#!/bin/sh\n'''exec' \"{venv}/bin/python3.11\" \"$0\" \"$@\"\n' '''\nimport sys\n"
    )
    search = find_recipe(LOCAL_PYTHON, None, environ={"PATH": str(scripts)})
    assert search.recipe is not None and search.recipe.site_packages == packages

    # pipx links the script from the environment it installed into.
    pipx = tmp_path / "pipx"
    pipx_packages = install_sdk(fake_venv(pipx / "venvs" / "sdk"))
    script = pipx / "venvs" / "sdk" / "bin" / "mp-build"
    script.write_text("#!/usr/bin/env python\n")
    local_bin = tmp_path / "local-bin"
    local_bin.mkdir()
    (local_bin / "mp-build").symlink_to(script)
    found = find_recipe(LOCAL_PYTHON, None, environ={"PATH": str(local_bin)}).recipe
    assert found is not None and found.site_packages == pipx_packages


def test_local_bases_in_a_dockerfile() -> None:
    dockerfile = (
        f"FROM {LOCAL_PYTHON} AS build\nRUN true\nFROM build\nFROM scratch\n"
        f"FROM {LOCAL_JAVA}\nFROM {LOCAL_PYTHON}\nFROM harbor.example.com/x/base-adapter:1\n"
    )
    assert local_bases_in(dockerfile) == [LOCAL_PYTHON, LOCAL_JAVA]
    assert local_bases_in("FROM\n") == []  # a broken Dockerfile is the builder's to report


@pytest.mark.parametrize(
    ("target", "published"),
    [
        ("harbor.example.com/team/my-adapter", "harbor.example.com/team/base-adapter:python-1.2.0"),
        ("harbor.example.com/a/b/my-adapter", "harbor.example.com/a/b/base-adapter:python-1.2.0"),
        ("localhost:5000/hello-adapter", "localhost:5000/base-adapter:python-1.2.0"),
        ("alice/adapter", "docker.io/alice/base-adapter:python-1.2.0"),
    ],
)
def test_the_base_goes_next_to_the_adapter(target: str, published: str) -> None:
    assert str(publish_reference(parse_repository(target), LOCAL_PYTHON)) == published


# -- the commands that publish it by hand ------------------------------------------------------


def _context(
    project: Path, engine: str | None, *, target: str = "harbor.example.com/team/my-adapter",
    aliases: dict[str, str] | None = None, plain_http: bool = False,
) -> ManualContext:  # fmt: skip
    settings = Settings(aliases=aliases or {}, path=project.parent / "settings.json")
    return ManualContext(project, parse_repository(target), engine, settings, plain_http)


def test_by_hand_with_podman_every_step_reads_what_the_one_before_wrote(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", "")
    project = tmp_path / "project"
    recipe = recipe_path(install_fake_sdk(project, "venv-My Pack"))
    hint = publish_by_hand(LOCAL_PYTHON, _context(project, "podman"))
    ref = "harbor.example.com/team/base-adapter:python-1.2.0"
    assert hint == (
        "publish it once with podman:\n"
        f"    $ podman build --platform linux/amd64 -t {LOCAL_PYTHON} -t {ref} '{recipe}'\n"
        f"    $ podman push {ref}\n"
        f"  then build again: mpkit finds {ref} and records the alias in "
        f"{tmp_path / 'settings.json'}; or record it yourself: "
        f'{{"aliases": {{"{LOCAL_PYTHON}": "{ref}"}}}} in {tmp_path / "settings.json"} '
        f"(or MPKIT_IMAGE_ALIASES={LOCAL_PYTHON}={ref})"
    )


def test_by_hand_without_an_engine_and_for_java(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", "")
    project = tmp_path / "project"
    packages = install_fake_sdk(project)
    hint = publish_by_hand(LOCAL_JAVA, _context(project, None, target="127.0.0.1:5000/t/a",
                                                plain_http=True))  # fmt: skip
    python, java = (
        "127.0.0.1:5000/t/base-adapter:python-1.2.0",
        "127.0.0.1:5000/t/base-adapter:java-1.2.0",
    )
    lines = hint.splitlines()
    assert lines[0] == "install podman (or docker), then publish it once:"
    # The Java recipe starts FROM base-adapter:python-1.2.0: the Python build gives that name.
    assert lines[1:5] == [
        f"    $ podman build --platform linux/amd64 -t {LOCAL_PYTHON} -t {python} "
        f"'{recipe_path(packages)}'",
        f"    $ podman push --tls-verify=false {python}",
        f"    $ podman build --platform linux/amd64 -t {LOCAL_JAVA} -t {java} "
        f"'{recipe_path(packages, 'java-adapter')}'",
        f"    $ podman push --tls-verify=false {java}",
    ]
    assert lines[5] == (
        "  or, on a machine that has podman: run the build commands above there (with the recipe "
        "directories copied), then 'podman save --format docker-archive -o "
        f"base-adapter-java-1.2.0.tar {java}' there, and here 'mpkit image push "
        f"docker-archive:base-adapter-java-1.2.0.tar {java}'"
    )
    assert "base-python-adapter" not in lines[3]  # never the Python recipe for Java
    assert f'{{"aliases": {{"{LOCAL_JAVA}": "{java}"}}}}' in lines[6]


def test_by_hand_when_the_python_base_has_an_alias_the_engine_gets_it_under_its_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", "")
    project = tmp_path / "project"
    install_fake_sdk(project)
    pinned = "harbor.example.com/sdk/base-adapter:python-1.2.0@sha256:" + "a" * 64
    hint = publish_by_hand(LOCAL_JAVA, _context(project, "docker",
                                                aliases={LOCAL_PYTHON: pinned}))  # fmt: skip
    assert f"$ docker pull {pinned}\n    $ docker tag {pinned} {LOCAL_PYTHON}\n" in hint
    assert "docker build --platform linux/amd64 -t base-adapter:java-1.2.0" in hint
    buildah = publish_by_hand(LOCAL_PYTHON, _context(project, "buildah", plain_http=True))
    assert "$ buildah bud --platform linux/amd64 -t base-adapter:python-1.2.0" in buildah
    assert "$ buildah push --tls-verify=false harbor.example.com/" in buildah


def test_by_hand_without_a_recipe_installs_the_sdk_into_the_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", "")
    project = tmp_path / "my project"
    project.mkdir()
    hint = publish_by_hand(LOCAL_PYTHON, _context(project, "podman"))
    venv = project / "venv-sdk"
    assert hint.splitlines()[1:3] == [
        f"    $ python3 -m venv '{venv}'",
        f"    $ '{venv}/bin/pip' install vmware-aria-operations-integration-sdk==1.3.1",
    ]
    # What those commands make is where mpkit looks.
    install_sdk(fake_venv(venv))
    assert find_recipe(LOCAL_PYTHON, project, environ=NO_PATH).recipe is not None


def test_without_an_alias_a_build_that_knows_no_target_says_how_for_this_language(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sdk = install_sdk(fake_venv(tmp_path / "sdk"))
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "mp-build").write_text(f"#!{tmp_path / 'sdk' / 'bin' / 'python'}\n")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    settings = Settings(path=tmp_path / "settings.json")
    with pytest.raises(BaseImageError) as failed:
        base_reference(LOCAL_JAVA, settings)
    error = failed.value
    assert error.message == (
        "FROM base-adapter:java-1.2.0 names the SDK's Java base, which the VMware SDK builds "
        "from a recipe it installs; no registry serves it and no image alias points at it"
    )
    assert error.hint is not None
    assert (
        f"podman build --platform linux/amd64 -t {LOCAL_JAVA} -t REGISTRY/NAMESPACE/" in error.hint
    )
    assert f"{recipe_path(sdk, 'java-adapter')}\n" in error.hint
    assert "REGISTRY/NAMESPACE/base-adapter:java-1.2.0" in error.hint
    for wrong in ("<sdk>", "python-1.0.0", "docker-archive:base.tar"):
        assert wrong not in error.hint
