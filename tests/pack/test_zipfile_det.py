"""The deterministic zip writer and the <KIND>.conf helpers, in isolation."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from mpkit.errors import PackError
from mpkit.pack import build_pack, open_pack
from mpkit.pack.conf import parse_kind_conf, render_kind_conf, render_version_txt
from mpkit.pack.zipfile_det import DIR_MODE, EXECUTABLE_MODE, FILE_MODE, DeterministicZip
from tests.pack.projects import DIGEST, IMAGE, sdk_manifest, write_project


def archive_bytes(entries: list[tuple[str, bytes]]) -> bytes:
    archive = DeterministicZip()
    for name, data in entries:
        archive.add_bytes(name, data)
    out = io.BytesIO()
    archive.write_to(out)
    return out.getvalue()


def test_order_of_adding_does_not_matter() -> None:
    entries = [("b/x.txt", b"x"), ("a.txt", b"a"), ("b/c/y.txt", b"y" * 1000)]
    first = archive_bytes(entries)
    assert archive_bytes(list(reversed(entries))) == first
    with zipfile.ZipFile(io.BytesIO(first)) as archive:
        assert archive.namelist() == ["a.txt", "b/c/y.txt", "b/x.txt"]  # no implied directories


def test_directory_entries_are_stored_where_added(tmp_path: Path) -> None:
    (tmp_path / "run.sh").write_bytes(b"#!/bin/sh\n")
    (tmp_path / "run.sh").chmod(0o744)
    archive = DeterministicZip()
    archive.add_directory("b/c")
    archive.add_bytes("b/c/y.txt", b"y")
    archive.add_directory("empty")
    archive.add_directory("empty")  # once is enough
    archive.add_file("b/run.sh", tmp_path / "run.sh")
    out = io.BytesIO()
    archive.write_to(out)
    with zipfile.ZipFile(out) as written:
        found = {i.filename: (i.external_attr >> 16, i.compress_type) for i in written.infolist()}
        directory_bits = {i.filename: i.external_attr & 0x10 for i in written.infolist()}
    assert found == {
        "b/c/": (DIR_MODE, zipfile.ZIP_STORED),
        "b/c/y.txt": (FILE_MODE, zipfile.ZIP_DEFLATED),
        "b/run.sh": (EXECUTABLE_MODE, zipfile.ZIP_DEFLATED),
        "empty/": (DIR_MODE, zipfile.ZIP_STORED),
    }
    assert directory_bits == {"b/c/": 0x10, "b/c/y.txt": 0, "b/run.sh": 0, "empty/": 0x10}


def test_files_on_disk_and_bytes_give_the_same_archive(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"data" * 100)
    on_disk = DeterministicZip()
    on_disk.add_file("dir/f", tmp_path / "f")
    out = io.BytesIO()
    on_disk.write_to(out)
    assert out.getvalue() == archive_bytes([("dir/f", b"data" * 100)])


@pytest.mark.parametrize("name", ["../x", "/x", "a//b", "a\\b", "C:x", "", "a/./b"])
def test_refuses_unsafe_names(name: str) -> None:
    with pytest.raises(PackError, match="cannot put"):
        DeterministicZip().add_bytes(name, b"")


def test_refuses_duplicates_and_file_directory_clashes() -> None:
    archive = DeterministicZip()
    archive.add_bytes("a", b"")
    with pytest.raises(PackError, match="both be stored"):
        archive.add_bytes("a", b"")
    archive.add_bytes("a/b", b"")
    with pytest.raises(PackError, match="both a file and a directory"):
        archive.names()
    with pytest.raises(PackError, match="both a file and a directory"):
        archive.add_directory("a")
    archive = DeterministicZip()
    archive.add_directory("d")
    with pytest.raises(PackError, match="both a file and a directory"):
        archive.add_bytes("d", b"")


def test_kind_conf_round_trip() -> None:
    text = render_kind_conf(
        "K", IMAGE, api_version="1.2.3", insecure_collector=False, use_default_registry=False
    )
    assert parse_kind_conf(text, name="K.conf") == {
        "KINDKEY": "K",
        "API_VERSION": "1.2.3",
        "API_PROTOCOL": "https",
        "API_PORT": "443",
        "REGISTRY": "registry.example.com:5000",
        "REPOSITORY": "/mp/myadapter",
        "DIGEST": DIGEST,
    }
    assert list(parse_kind_conf(text, name="K.conf")) == [
        "KINDKEY",
        "API_VERSION",
        "API_PROTOCOL",
        "API_PORT",
        "REGISTRY",
        "REPOSITORY",
        "DIGEST",
    ]  # fmt: skip  (the SDK's line order)


def test_version_txt_uses_three_parts() -> None:
    assert render_version_txt("8.12.0.4") == (
        b"Major-Version=8\nMinor-Version=12\nImplementation-Version=0\n"
    )


def test_eula_under_resources_is_stored_once(tmp_path: Path) -> None:
    manifest = sdk_manifest(eula_file="resources/resources.properties")
    project = write_project(tmp_path / "proj", manifest=manifest)
    contents = open_pack(build_pack(project, IMAGE))
    assert contents.names.count("resources/resources.properties") == 1
    assert contents.adapter_names.count("resources/resources.properties") == 1
