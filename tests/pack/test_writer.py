"""The pack writer against the SDK's pack layout, on a realistic project tree."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from mpkit.errors import ExternalLinkError, PackError
from mpkit.pack import ImageLocation, build_pack, check_consistency, open_pack
from mpkit.pack.writer import check_pack_inputs
from mpkit.pack.zipfile_det import DIR_MODE, EXECUTABLE_MODE, FILE_MODE, FIXED_DATE_TIME
from mpkit.project.model import Project
from tests.fixtures.tools import require_tool
from tests.pack.projects import (
    DESCRIBE,
    DIGEST,
    ICON,
    IMAGE,
    KIND,
    PROJECT_FILES,
    load_project,
    sdk_manifest,
    write_project,
)

# The SDK's zip walk: every directory of resources/ (resources/empty/ too); a content/
# directory when it holds anything, a .gitkeep included (content/supermetrics/), but not
# when it is empty (content/policies, content/files/topowidget); no entries for the
# directories of files named in manifest.txt (scripts/).
PACK_NAMES = [
    "adapter.zip",
    "content/",
    "content/alertdefs/",
    "content/alertdefs/alerts.xml",
    "content/dashboards/",
    "content/dashboards/Existing/",
    "content/dashboards/Existing/Existing.json",
    "content/dashboards/Existing/resources/",
    "content/dashboards/Existing/resources/Existing.properties",
    "content/dashboards/foo/",
    "content/dashboards/foo/Foo.json",
    "content/files/",
    "content/files/txtwidget/",
    "content/reports/",
    "content/reports/bar/",
    "content/reports/bar/Bar.xml",
    "content/supermetrics/",
    "eula.txt",
    "icon.png",
    "manifest.txt",
    "resources/",
    "resources/empty/",
    "resources/resources.properties",
    "scripts/post_install.sh",
    "validate.py",
]
ADAPTER_NAMES = [
    f"{KIND}.conf",
    f"{KIND}/",
    f"{KIND}/conf/",
    f"{KIND}/conf/describe.xml",
    f"{KIND}/conf/describeSchema.xsd",
    f"{KIND}/conf/images/",
    f"{KIND}/conf/images/AdapterKind/",
    f"{KIND}/conf/images/AdapterKind/adapter.png",
    f"{KIND}/conf/images/ResourceKind/",
    f"{KIND}/conf/resources/",
    f"{KIND}/conf/resources/resources.properties",
    f"{KIND}/conf/version.txt",
    "eula.txt",
    "icon.png",
    "manifest.txt",
    "resources/",
    "resources/empty/",
    "resources/resources.properties",
]
CONF = (
    f"KINDKEY={KIND}\nAPI_VERSION=1.0.0\nAPI_PROTOCOL=https\nAPI_PORT=443\n"
    f"REGISTRY=registry.example.com:5000\nREPOSITORY=/mp/myadapter\nDIGEST={DIGEST}\n"
)


def read_zip(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def test_pack_matches_spec(tmp_path: Path) -> None:
    project = write_project(tmp_path / "proj")
    original_manifest = (project.root / "manifest.txt").read_bytes()

    pack = build_pack(project, IMAGE)

    assert pack == project.root / "build" / "MyAdapter_1.2.3.pak"
    assert (project.root / "manifest.txt").read_bytes() == original_manifest
    entries = read_zip(pack.read_bytes())
    assert list(entries) == PACK_NAMES
    manifest = json.loads(entries["manifest.txt"])
    expected_image = {
        "registry": "registry.example.com:5000",
        "repository": "/mp/myadapter",
        "digest": DIGEST,
        "tag": "1.2.3_abc",
    }
    assert manifest == {**sdk_manifest(), "container_image": expected_image}
    for name in ("eula.txt", "validate.py", "resources/resources.properties"):
        assert entries[name] == PROJECT_FILES[name]
    assert entries["icon.png"] == ICON
    assert entries["scripts/post_install.sh"] == PROJECT_FILES["scripts/post_install.sh"]
    assert (
        entries["content/dashboards/foo/Foo.json"] == PROJECT_FILES["content/dashboards/Foo.json"]
    )
    assert entries["content/reports/bar/Bar.xml"] == PROJECT_FILES["content/reports/Bar.xml"]

    adapter = read_zip(entries["adapter.zip"])
    assert list(adapter) == ADAPTER_NAMES
    assert adapter[f"{KIND}.conf"].decode() == CONF
    assert adapter["manifest.txt"] == entries["manifest.txt"]
    assert adapter[f"{KIND}/conf/describe.xml"] == DESCRIBE
    assert adapter[f"{KIND}/conf/version.txt"] == (
        b"Major-Version=1\nMinor-Version=2\nImplementation-Version=3\n"
    )
    assert (
        adapter[f"{KIND}/conf/resources/resources.properties"]
        == (PROJECT_FILES["conf/resources/resources.properties"])
    )


def test_zip_metadata_is_fixed(tmp_path: Path) -> None:
    pack = build_pack(write_project(tmp_path / "proj"), IMAGE)
    with zipfile.ZipFile(pack) as archive:
        adapter = archive.read("adapter.zip")
        infos = archive.infolist()
    with zipfile.ZipFile(io.BytesIO(adapter)) as inner:
        infos += inner.infolist()
    for info in infos:
        assert info.date_time == FIXED_DATE_TIME
        assert info.extra == b""
        assert info.create_system == 3
        assert not info.flag_bits & 0x08  # no data descriptors
        if info.is_dir():
            assert info.external_attr >> 16 == DIR_MODE
            assert info.file_size == 0
        else:
            assert info.external_attr >> 16 == FILE_MODE
            assert info.compress_type == zipfile.ZIP_DEFLATED


def test_byte_identical_across_runs_and_copies(tmp_path: Path) -> None:
    first = write_project(tmp_path / "a")
    pack_a = build_pack(first, IMAGE).read_bytes()
    assert build_pack(first, IMAGE).read_bytes() == pack_a

    copy = tmp_path / "elsewhere" / "b"
    shutil.copytree(first.root, copy, ignore=shutil.ignore_patterns("build"))
    for path in copy.rglob("*"):
        os.utime(path, (1_700_000_000, 1_700_000_000))
        path.chmod(0o600 if path.is_file() else 0o700)
    (copy / "content/dashboards/Foo.json").chmod(0o664)
    assert build_pack(load_project(copy), IMAGE).read_bytes() == pack_a

    # Of the mode, the pack keeps what git keeps: whether the file is executable.
    (copy / "content/dashboards/Foo.json").chmod(0o700)
    with zipfile.ZipFile(build_pack(load_project(copy), IMAGE)) as archive:
        info = archive.getinfo("content/dashboards/foo/Foo.json")
    assert info.external_attr >> 16 == EXECUTABLE_MODE


@pytest.mark.parametrize("via", ["location", "config"])
def test_use_default_registry(tmp_path: Path, via: str) -> None:
    project = write_project(tmp_path / "proj", use_default_registry=via == "config")
    image = dataclasses.replace(IMAGE, registry=None) if via == "location" else IMAGE

    contents = open_pack(build_pack(project, image))

    assert "REGISTRY" not in contents.kind_conf
    assert contents.container_image is not None
    assert "registry" not in contents.container_image
    assert contents.kind_conf["REPOSITORY"] == "/mp/myadapter"
    assert check_consistency(contents) == []


def test_insecure_collector_and_api_version(tmp_path: Path) -> None:
    project = write_project(tmp_path / "proj")
    contents = open_pack(build_pack(project, IMAGE, insecure_collector=True, api_version="2.1.0"))
    conf = contents.kind_conf
    assert (conf["API_PROTOCOL"], conf["API_PORT"], conf["API_VERSION"]) == (
        "http",
        "8080",
        "2.1.0",
    )
    assert check_consistency(contents) == []


def test_generated_describe_and_properties_replace_the_projects(tmp_path: Path) -> None:
    project = write_project(tmp_path / "proj", skip=("conf/describe.xml",))
    pack = build_pack(project, IMAGE, describe_xml=b"<generated/>", resources_properties=b"x=y\n")
    adapter = read_zip(read_zip(pack.read_bytes())["adapter.zip"])
    assert adapter[f"{KIND}/conf/describe.xml"] == b"<generated/>"
    assert adapter[f"{KIND}/conf/resources/resources.properties"] == b"x=y\n"


def test_missing_describe_is_a_clear_error(tmp_path: Path) -> None:
    project = write_project(tmp_path / "proj", skip=("conf/describe.xml",))
    with pytest.raises(PackError, match=r"conf/describe\.xml") as caught:
        build_pack(project, IMAGE)
    assert caught.value.code == "pack"
    assert "not available yet" in caught.value.message
    assert caught.value.hint


@pytest.mark.parametrize("directory", ["dashboards", "reports"])
def test_properties_at_top_of_dashboards_or_reports(tmp_path: Path, directory: str) -> None:
    project = write_project(tmp_path / "proj")
    (project.root / "content" / directory / "Foo.properties").write_text("a=b\n")
    with pytest.raises(PackError, match=r"\.properties") as caught:
        build_pack(project, IMAGE)
    assert caught.value.hint is not None
    assert f"content/{directory}/myContent/resources/myContent.properties" in caught.value.hint


def test_project_without_resources_or_content(tmp_path: Path) -> None:
    project = write_project(tmp_path / "proj")
    shutil.rmtree(project.root / "resources")
    shutil.rmtree(project.root / "content")
    names = read_zip(build_pack(project, IMAGE).read_bytes())
    assert not [name for name in names if name.startswith(("content", "resources"))]


def test_missing_named_file(tmp_path: Path) -> None:
    project = write_project(tmp_path / "proj", skip=("eula.txt",))
    with pytest.raises(PackError, match=r"eula file 'eula\.txt'"):
        build_pack(project, IMAGE)


def test_named_file_outside_project(tmp_path: Path) -> None:
    manifest = sdk_manifest(eula_file="../eula.txt")
    project = write_project(tmp_path / "proj", manifest=manifest)
    with pytest.raises(PackError, match="not a path inside the project"):
        build_pack(project, IMAGE)


def test_clash_between_moved_dashboard_and_directory(tmp_path: Path) -> None:
    project = write_project(tmp_path / "proj")
    clash = project.root / "content" / "dashboards" / "foo" / "Foo.json"
    clash.parent.mkdir()
    clash.write_text("{}")
    with pytest.raises(PackError, match=r"content/dashboards/foo/Foo\.json"):
        build_pack(project, IMAGE)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"digest": "sha256:abc"}, "digest"),
        ({"repository": "mp/myadapter"}, "repository"),
        ({"repository": "/mp/x\nDIGEST=sha256:00"}, "repository"),
        ({"registry": "host:5000/path"}, "registry"),
        ({"tag": "v1\nREGISTRY=evil"}, "tag"),
    ],
)
def test_bad_image_location(tmp_path: Path, change: dict[str, str], message: str) -> None:
    project = write_project(tmp_path / "proj")
    image = dataclasses.replace(IMAGE, **change)
    with pytest.raises(PackError, match=message):
        build_pack(project, image)
    assert not (project.root / "build" / "MyAdapter_1.2.3.pak").exists()


def test_bad_api_version(tmp_path: Path) -> None:
    with pytest.raises(PackError, match="API version"):
        build_pack(write_project(tmp_path / "proj"), IMAGE, api_version="1.0")


def test_output_dir(tmp_path: Path) -> None:
    project = write_project(tmp_path / "proj")
    pack = build_pack(project, IMAGE, output_dir=tmp_path / "out" / "deep")
    assert pack == tmp_path / "out" / "deep" / "MyAdapter_1.2.3.pak"
    assert pack.stat().st_mode & 0o777 == 0o644


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_failures_leave_the_previous_pack_untouched(tmp_path: Path) -> None:
    project = write_project(tmp_path / "proj")
    pack = build_pack(project, IMAGE)
    before = pack.read_bytes()
    stamp = pack.stat().st_mtime_ns
    other = ImageLocation(IMAGE.registry, IMAGE.repository, "sha256:" + "cd" * 32, IMAGE.tag)

    # A failure before anything is written.
    (project.root / "content/reports/Bad.properties").write_text("a=b\n")
    with pytest.raises(PackError):
        build_pack(project, other)
    (project.root / "content/reports/Bad.properties").unlink()

    # A failure while the pack is being written: a file that cannot be read.
    if sys.platform == "linux":
        (project.root / "resources/unreadable.bin").symlink_to("/proc/self/mem")
    else:  # pragma: no cover - other systems
        (project.root / "resources/unreadable.bin").write_text("x")
        (project.root / "resources/unreadable.bin").chmod(0)
    with pytest.raises(PackError, match=r"unreadable\.bin"):
        build_pack(project, other, allow_external_links=True)

    assert pack.read_bytes() == before
    assert pack.stat().st_mtime_ns == stamp
    assert _leftovers(pack.parent) == []


def test_broken_symlink_is_reported(tmp_path: Path) -> None:
    project = write_project(tmp_path / "proj")
    (project.root / "content/alertdefs/gone.xml").symlink_to("missing.xml")
    with pytest.raises(PackError, match="broken symbolic link"):
        build_pack(project, IMAGE)


def test_links_inside_the_project_are_followed_and_loops_refused(tmp_path: Path) -> None:
    project = write_project(tmp_path / "proj")
    (project.root / "shared").mkdir()
    (project.root / "shared/Shared.json").write_text("{}")
    (project.root / "content/dashboards/Linked").symlink_to("../../shared")
    (project.root / "terms.txt").symlink_to("eula.txt")
    project = _with_manifest(project, eula_file="terms.txt")
    entries = read_zip(build_pack(project, IMAGE).read_bytes())
    assert entries["content/dashboards/Linked/Shared.json"] == b"{}"
    assert entries["terms.txt"] == PROJECT_FILES["eula.txt"]

    (project.root / "content/alertdefs/loop").symlink_to(project.root / "content")
    with pytest.raises(PackError, match="own parent"):
        build_pack(project, IMAGE)


def _with_manifest(project: Project, **changes: Any) -> Project:
    """*project* with manifest.txt rewritten (and loaded again) with *changes*."""
    (project.root / "manifest.txt").write_text(json.dumps(sdk_manifest(**changes)))
    return load_project(project.root)


EXTERNAL_LINKS = {
    "eula": ("terms.txt", "terms.txt"),
    "icon": ("logo.png", "logo.png"),
    "script": ("validate.py", "validate.py"),
    "content file": ("content/alertdefs/extra.xml", "content/alertdefs/extra.xml"),
    "content directory": ("content/dashboards/Shared", "content/dashboards/Shared/Shared.json"),
    "resources": ("resources/more.properties", "resources/more.properties"),
    "conf": ("conf/images/extra.png", f"adapter.zip:{KIND}/conf/images/extra.png"),
    "through a linked parent": ("docs/eula.txt", "docs/eula.txt"),
}


@pytest.mark.parametrize("case", sorted(EXTERNAL_LINKS))
def test_links_that_leave_the_project_are_refused_unless_allowed(tmp_path: Path, case: str) -> None:
    link, entry = EXTERNAL_LINKS[case]  # entry: where the host file lands when allowed
    host = tmp_path / "host"
    (host / "Shared").mkdir(parents=True)
    (host / "Shared/Shared.json").write_text('{"host": true}')
    (host / "secret.txt").write_text("a file of this machine\n")
    (host / "eula.txt").write_text("a file of this machine\n")
    project = write_project(tmp_path / "proj")
    path = project.root / link
    path.unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    if case == "content directory":
        path.symlink_to(host / "Shared")
    elif case == "through a linked parent":
        path.parent.rmdir()
        path.parent.symlink_to(host)
    else:
        path.symlink_to(os.path.relpath(host / "secret.txt", path.parent))
    if case in ("eula", "icon", "through a linked parent"):
        key = "pak_icon" if case == "icon" else "eula_file"
        project = _with_manifest(project, **{key: link})
    named = link if case != "through a linked parent" else "docs"

    with pytest.raises(ExternalLinkError) as caught:
        build_pack(project, IMAGE, output_dir=tmp_path / "out")
    error = caught.value
    assert error.link == named and error.target == str((project.root / named).readlink())
    assert f"symbolic link {named!r} points outside the project" in error.message
    assert f"(target: {error.target}" in error.message
    assert error.hint is not None and "--allow-external-links" in error.hint
    assert not (tmp_path / "out").exists()

    entries = read_zip(build_pack(project, IMAGE, allow_external_links=True).read_bytes())
    archive, _, entry = entry.rpartition(":")
    if archive:
        entries = read_zip(entries[archive])
    assert entries[entry] in (b"a file of this machine\n", b'{"host": true}')


def test_unzip_accepts_and_extracts_the_pack(tmp_path: Path) -> None:
    unzip = require_tool("unzip")
    pack = build_pack(write_project(tmp_path / "proj"), IMAGE)
    tested = subprocess.run([unzip, "-t", str(pack)], capture_output=True, text=True, check=False)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    out = tmp_path / "out"
    subprocess.run([unzip, "-q", str(pack), "-d", str(out)], check=True)
    assert (out / "content/dashboards/foo/Foo.json").stat().st_mode & 0o777 == 0o644
    subprocess.run([unzip, "-q", str(out / "adapter.zip"), "-d", str(out / "adapter")], check=True)
    assert (out / "adapter" / KIND / "conf").stat().st_mode & 0o777 == 0o755
    assert (out / "adapter" / f"{KIND}.conf").read_text() == CONF


def test_a_dashboard_file_named_like_its_own_directory_stays_where_it_is(tmp_path: Path) -> None:
    """mp_build moves each top-level file into <stem lower-cased>/; a lower-case file
    without an extension would be moved onto itself, so it stays (as with the SDK)."""
    project = write_project(tmp_path / "proj")
    (project.root / "content/dashboards/notes").write_text("kept\n")
    (project.root / "content/dashboards/README").write_text("moved\n")
    names = read_zip(build_pack(project, IMAGE).read_bytes())
    assert names["content/dashboards/notes"] == b"kept\n"
    assert names["content/dashboards/readme/README"] == b"moved\n"
    assert "content/dashboards/readme/" in names and "content/dashboards/notes/" not in names


def test_check_pack_inputs_needs_no_image(tmp_path: Path) -> None:
    project = write_project(tmp_path / "proj")
    files = check_pack_inputs(project)
    assert ("validate.py", project.root / "validate.py") in files.scripts
    assert "content/supermetrics" in files.content.directories
    (project.root / "content/reports/Bad.properties").write_text("a=b\n")
    with pytest.raises(PackError, match=r"content/reports/Bad\.properties"):
        check_pack_inputs(project)
