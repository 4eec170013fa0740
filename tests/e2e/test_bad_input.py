"""Hostile and broken input through the real CLI: every failure names the file (and line)
and the fix, never "internal error"; nothing needs a registry, since each one is found
before mpkit talks to one.

- JSON files users give mpkit nested 100000 levels deep, or holding huge integers:
  manifest.txt, config.json, the SDK global config, settings.json, docker's config.json.
- ``COPY``/``ADD`` whose sources match nothing (podman and Docker's classic builder fail it).
- Symbolic links that leave the project: refused for the pack and the image alike unless
  ``--allow-external-links`` (or MPKIT_ALLOW_EXTERNAL_LINKS=1, or the settings file).
"""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

import pytest

from tests.e2e.conftest import CommandResult, Mpkit
from tests.fixtures.files import write_files
from tests.project.sdkproject import write_project

DEEP = '{"a": ' + "[" * 100_000  # the 101st level opens at column 106
DEEP_WHERE = "nesting deeper than 100 levels at line 1, column 106"
HUGE = '{"a": ' + "7" * 5000 + "}"
HUGE_WHERE = "an integer with 5000 digits (at most 4300 are allowed) at line 1, column 7"


def assert_clean_failure(result: CommandResult) -> None:
    assert result.returncode == 1, result.output
    assert "Traceback" not in result.output, result.output
    assert "internal error" not in result.output, result.output
    assert "error: " in result.stderr, result.output


# -- JSON that would exhaust the stack -------------------------------------------------------


@pytest.mark.parametrize(("text", "where"), [(DEEP, DEEP_WHERE), (HUGE, HUGE_WHERE)],
                         ids=["deep", "huge-integer"])  # fmt: skip
@pytest.mark.parametrize("name", ["manifest.txt", "config.json"])
def test_hostile_project_json_names_the_file(
    mpkit: Mpkit, tmp_path: Path, name: str, text: str, where: str
) -> None:
    project = write_project(tmp_path / "project", config={})
    (project / name).write_text(text)
    result = mpkit.run("build", str(project), "--no-ttl")
    assert_clean_failure(result)
    assert f"{project / name} is not valid JSON: {where}" in result.stderr
    assert "restore the file from a backup" in result.stderr


@pytest.mark.parametrize(
    ("variable", "command"),
    [
        ("MPKIT_SDK_CONFIG", ("build", "{project}", "--no-ttl")),
        ("MPKIT_CONFIG", ("image", "build", "{project}", "--output", "oci:{out}")),
    ],
    ids=["sdk-global-config", "settings"],
)
def test_hostile_user_config_names_the_file(
    mpkit: Mpkit, tmp_path: Path, variable: str, command: tuple[str, ...]
) -> None:
    project = write_project(tmp_path / "project", config={})
    config = tmp_path / "user-config.json"
    config.write_text(DEEP)
    argv = [arg.format(project=project, out=tmp_path / "out") for arg in command]
    result = mpkit.run(*argv, env={variable: str(config)})
    assert_clean_failure(result)
    assert f"{config} is not valid JSON: {DEEP_WHERE}" in result.stderr


def test_hostile_docker_config_names_the_file(mpkit: Mpkit) -> None:
    mpkit.docker_config.parent.mkdir(parents=True, exist_ok=True)
    mpkit.docker_config.write_text('{"auths": {"x": ' + "[" * 100_000)
    result = mpkit.run("logout", "127.0.0.1:5000")
    assert_clean_failure(result)
    assert f"{mpkit.docker_config} is not valid JSON: nesting deeper than 100" in result.stderr


# -- COPY sources that match nothing ---------------------------------------------------------


def scratch_project(root: Path, dockerfile: str) -> Path:
    return write_files(root, {"Dockerfile": dockerfile, "a.txt": "a\n", "sub/b.txt": "b\n"})


def test_copy_matching_nothing_fails_at_its_line(mpkit: Mpkit, tmp_path: Path) -> None:
    dockerfile = "FROM scratch\nCOPY a.txt /a/\nCOPY nomatch*.txt /x/\n"
    project = scratch_project(tmp_path / "p", dockerfile)
    out = tmp_path / "image"
    result = mpkit.run("image", "build", str(project), "--output", f"oci:{out}")
    assert_clean_failure(result)
    assert (
        f"{project / 'Dockerfile'} line 3: COPY nomatch*.txt /x/: no file in the build context "
        "matches 'nomatch*.txt'"
    ) in result.stderr
    assert not out.exists()

    (project / "Dockerfile").write_text("FROM scratch\nCOPY a.txt nomatch*.txt sub/*.txt /x/\n")
    built = mpkit.run("image", "build", str(project), "--output", f"oci:{out}", "--json")
    assert built.returncode == 0, built.output
    assert layer_files(out) == {"x/a.txt": b"a\n", "x/b.txt": b"b\n"}


def layer_files(layout: Path) -> dict[str, bytes]:
    """Regular files of every layer of the single image in the OCI layout *layout*."""
    index = json.loads((layout / "index.json").read_text())
    blobs = layout / "blobs" / "sha256"
    manifest = json.loads((blobs / index["manifests"][0]["digest"].split(":")[1]).read_text())
    files: dict[str, bytes] = {}
    for layer in manifest["layers"]:
        with tarfile.open(blobs / layer["digest"].split(":")[1]) as tar:
            for member in tar.getmembers():
                handle = tar.extractfile(member) if member.isfile() else None
                if handle is not None:
                    files[member.name] = handle.read()
    return files


# -- symbolic links that leave the project ---------------------------------------------------


@pytest.fixture
def host_file(tmp_path: Path) -> Path:
    """A file of "this machine", outside every project."""
    path = tmp_path / "host" / "secret.txt"
    path.parent.mkdir()
    path.write_text("a file of this machine\n")
    return path


def test_image_build_refuses_an_external_link_unless_allowed(
    mpkit: Mpkit, tmp_path: Path, host_file: Path
) -> None:
    project = scratch_project(tmp_path / "p", "FROM scratch\nCOPY sub /s/\n")
    (project / "sub" / "notes.txt").symlink_to(host_file)
    (project / "sub" / "alias.txt").symlink_to("b.txt")  # inside: a link in the image
    out = tmp_path / "image"
    result = mpkit.run("image", "build", str(project), "--output", f"oci:{out}")
    assert_clean_failure(result)
    assert (
        f"line 2: COPY: the symbolic link 'sub/notes.txt' points outside the project {project} "
        f"(target: {host_file})"
    ) in result.stderr
    assert "--allow-external-links" in result.stderr

    settings = tmp_path / "settings.json"
    settings.write_text('{"allow_external_links": true}')
    for how in (["--allow-external-links"], {"MPKIT_ALLOW_EXTERNAL_LINKS": "1"},
                {"MPKIT_CONFIG": str(settings)}):  # fmt: skip
        flags = how if isinstance(how, list) else []
        env = how if isinstance(how, dict) else None
        built = mpkit.run("image", "build", str(project), "--output", f"oci:{out}", *flags,
                          env=env)  # fmt: skip
        assert built.returncode == 0, built.output
        assert layer_files(out)["s/notes.txt"] == b"a file of this machine\n"

    off = {"MPKIT_CONFIG": str(settings), "MPKIT_ALLOW_EXTERNAL_LINKS": "0"}  # the variable wins
    no = mpkit.run("image", "build", str(project), "--output", f"oci:{out}", env=off)
    assert_clean_failure(no)
    bad = mpkit.run("image", "build", str(project), "--output", f"oci:{out}",
                    env={"MPKIT_ALLOW_EXTERNAL_LINKS": "maybe"})  # fmt: skip
    assert_clean_failure(bad)
    assert "MPKIT_ALLOW_EXTERNAL_LINKS='maybe' is neither 1 nor 0" in bad.stderr
    settings.write_text('{"allow_external_links": "yes"}')
    bad = mpkit.run("image", "build", str(project), "--output", f"oci:{out}",
                    env={"MPKIT_CONFIG": str(settings)})  # fmt: skip
    assert_clean_failure(bad)
    assert "allow_external_links must be true or false" in bad.stderr


@pytest.mark.parametrize("link", ["eula.txt", "icon.png", "content/alertdefs/a.xml",
                                  "resources/extra.properties"])  # fmt: skip
def test_build_refuses_an_external_link_before_building(
    mpkit: Mpkit, tmp_path: Path, host_file: Path, link: str
) -> None:
    project = write_project(tmp_path / "project", config={})
    path = project / link
    path.unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(os.path.relpath(host_file, path.parent))
    result = mpkit.run("build", str(project), "--no-ttl")
    assert_clean_failure(result)
    assert f"the symbolic link {link!r} points outside the project" in result.stderr
    assert f"which is {host_file})" in result.stderr
    # Found before anything else: no registry was asked for, no log or pack written.
    assert "registry" not in result.stderr.lower()
    assert not (project / "build").exists()
