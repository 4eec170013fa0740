"""The safe pack reader: what the writer wrote reads back; hostile zips are refused."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import pytest

from mpkit.errors import PackError
from mpkit.pack import build_pack, check_consistency, open_pack
from tests.pack.projects import (
    DESCRIBE,
    DIGEST,
    IMAGE,
    KIND,
    declare_size,
    kind_conf,
    pack_manifest,
    write_pack,
    write_project,
    write_zip,
    zip_bytes,
)

MiB = 1 << 20


def test_reads_what_the_writer_wrote(tmp_path: Path) -> None:
    pack = build_pack(write_project(tmp_path / "proj"), IMAGE)

    contents = open_pack(pack)

    assert contents.kind == KIND
    assert contents.kind_conf == {
        "KINDKEY": KIND,
        "API_VERSION": "1.0.0",
        "API_PROTOCOL": "https",
        "API_PORT": "443",
        "REGISTRY": "registry.example.com:5000",
        "REPOSITORY": "/mp/myadapter",
        "DIGEST": DIGEST,
    }
    assert contents.container_image == {
        "registry": "registry.example.com:5000",
        "repository": "/mp/myadapter",
        "digest": DIGEST,
        "tag": "1.2.3_abc",
    }
    assert contents.describe_xml == DESCRIBE
    assert contents.manifest["name"] == "iSDK_MyAdapter"
    with zipfile.ZipFile(pack) as archive:
        assert contents.names == archive.namelist()
    assert f"{KIND}/conf/version.txt" in contents.adapter_names
    assert check_consistency(contents) == []


def test_hand_made_pack_is_consistent(tmp_path: Path) -> None:
    assert check_consistency(open_pack(write_pack(tmp_path / "p.pak", tmp_path))) == []


@pytest.mark.parametrize(
    ("manifest", "conf", "expected"),
    [
        (pack_manifest(registry="other:5000"), kind_conf(), "container_image registry"),
        (pack_manifest(), kind_conf(REGISTRY=None), "container_image registry"),
        (pack_manifest(registry=None), kind_conf(), "container_image registry"),
        (pack_manifest(repository="/other"), kind_conf(), "container_image repository"),
        (pack_manifest(), kind_conf(DIGEST="sha256:" + "00" * 32), "container_image digest"),
        (pack_manifest(digest="sha256:xyz"), kind_conf(), "digest 'sha256:xyz' is malformed"),
        (pack_manifest(), kind_conf(DIGEST="md5:00"), "is not sha256"),
        (pack_manifest(), kind_conf(DIGEST=None), "has no DIGEST= line"),
        (pack_manifest(), kind_conf(KINDKEY="Other"), "KINDKEY=Other"),
        (pack_manifest(), kind_conf(REPOSITORY="mp/x"), "does not start with '/'"),
        (pack_manifest(), kind_conf(API_PORT="https"), "not a port"),
        (pack_manifest(tag=None), kind_conf(), "has no 'tag'"),
    ],
)
def test_consistency_problems(tmp_path: Path, manifest: bytes, conf: bytes, expected: str) -> None:
    contents = open_pack(write_pack(tmp_path / "p.pak", tmp_path, manifest=manifest, conf=conf))
    problems = check_consistency(contents)
    assert any(expected in problem for problem in problems), problems


def test_missing_container_image_and_describe(tmp_path: Path) -> None:
    manifest = b'{"adapter_kinds": ["MyAdapter"]}'
    path = write_pack(tmp_path / "p.pak", tmp_path, manifest=manifest)
    with zipfile.ZipFile(path) as archive:
        inner = zipfile.ZipFile(io.BytesIO(archive.read("adapter.zip")))
        kept = {n: inner.read(n) for n in inner.namelist() if not n.endswith("describe.xml")}
    write_zip(path, {"manifest.txt": manifest, "adapter.zip": zip_bytes(kept, tmp_path)})
    problems = check_consistency(open_pack(path))
    assert any("no container_image" in problem for problem in problems)
    assert any("describe.xml" in problem for problem in problems)


@pytest.mark.parametrize(
    "name", ["../evil", "a/../../evil", "/etc/evil", "C:/evil", "a\\..\\evil", "./x"]
)
def test_refuses_path_traversal(tmp_path: Path, name: str) -> None:
    path = write_pack(tmp_path / "p.pak", tmp_path, extra={name: b"x"})
    with pytest.raises(PackError, match="escapes the extraction directory"):
        open_pack(path)


def test_refuses_traversal_inside_adapter_zip(tmp_path: Path) -> None:
    path = write_pack(tmp_path / "p.pak", tmp_path, adapter_extra={"../evil": b"x"})
    with pytest.raises(PackError, match=r"adapter\.zip in .*'\.\./evil'"):
        open_pack(path)


def test_refuses_symlink_entries(tmp_path: Path) -> None:
    path = write_zip(
        tmp_path / "p.pak",
        {"manifest.txt": pack_manifest(), "link": b"/etc/passwd"},
        symlinks=("link",),
    )
    with pytest.raises(PackError, match="symbolic link"):
        open_pack(path)


def test_refuses_declared_zip_bomb(tmp_path: Path) -> None:
    path = write_pack(tmp_path / "p.pak", tmp_path, extra={"bomb.bin": bytes(4 * MiB)})
    with pytest.raises(PackError, match="zip bomb"):
        open_pack(path)


def test_refuses_zip_bomb_in_adapter_zip(tmp_path: Path) -> None:
    path = write_pack(tmp_path / "p.pak", tmp_path, adapter_extra={"bomb.bin": bytes(4 * MiB)})
    with pytest.raises(PackError, match=r"adapter\.zip.*zip bomb"):
        open_pack(path)


def test_refuses_entry_beyond_size_limit(tmp_path: Path) -> None:
    path = write_pack(tmp_path / "p.pak", tmp_path, extra={"big.bin": os.urandom(2 * MiB)})
    with pytest.raises(PackError, match="beyond the 1048576 allowed"):
        open_pack(path, max_entry=MiB)
    with pytest.raises(PackError, match="declared total"):
        open_pack(path, max_total=MiB + 1000, max_entry=4 * MiB)


def test_refuses_an_entry_that_lies_about_its_size(tmp_path: Path) -> None:
    path = write_pack(tmp_path / "p.pak", tmp_path, extra={"liar.bin": bytes(8 * MiB)})
    path.write_bytes(declare_size(path.read_bytes(), "liar.bin", 1000))
    with zipfile.ZipFile(path) as archive:
        assert archive.getinfo("liar.bin").file_size == 1000  # declared: small, harmless
    with pytest.raises(PackError, match="lies about its size"):
        open_pack(path)


def test_refuses_too_many_entries(tmp_path: Path) -> None:
    extra = {f"content/f{i}.txt": b"x" for i in range(20)}
    path = write_pack(tmp_path / "p.pak", tmp_path, extra=extra)
    with pytest.raises(PackError, match="exceeds 10 entries"):
        open_pack(path, max_entries=10)


def test_refuses_duplicate_entries(tmp_path: Path) -> None:
    path = tmp_path / "p.pak"
    with (
        pytest.warns(UserWarning, match="Duplicate name"),
        zipfile.ZipFile(path, "w") as archive,
    ):
        archive.writestr("manifest.txt", pack_manifest())
        archive.writestr("manifest.txt", b"{}")
    with pytest.raises(PackError, match="appears twice"):
        open_pack(path)


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ({"adapter.zip": b"PK"}, "has no manifest.txt"),
        ({"manifest.txt": b"{}"}, "has no adapter.zip"),
        ({"manifest.txt": b"[1]", "adapter.zip": b""}, "not a JSON object"),
        ({"manifest.txt": b"{", "adapter.zip": b""}, "not valid JSON"),
        ({"manifest.txt": b"{}", "adapter.zip": b"not a zip"}, "not a readable zip"),
    ],
)
def test_refuses_malformed_packs(tmp_path: Path, entries: dict[str, bytes], message: str) -> None:
    with pytest.raises(PackError, match=message):
        open_pack(write_zip(tmp_path / "p.pak", entries))


def test_adapter_zip_needs_one_kind_conf(tmp_path: Path) -> None:
    path = write_pack(tmp_path / "p.pak", tmp_path, adapter_extra={"Other.conf": b"A=b\n"})
    with pytest.raises(PackError, match=r"exactly one <KIND>\.conf"):
        open_pack(path)


def test_malformed_kind_conf(tmp_path: Path) -> None:
    path = write_pack(tmp_path / "p.pak", tmp_path, conf=b"KINDKEY=MyAdapter\ngarbage\n")
    with pytest.raises(PackError, match="line 2"):
        open_pack(path)


def test_not_a_zip_or_missing(tmp_path: Path) -> None:
    (tmp_path / "junk.pak").write_bytes(b"hello")
    with pytest.raises(PackError, match="not a readable zip"):
        open_pack(tmp_path / "junk.pak")
    with pytest.raises(PackError, match="cannot read the pack"):
        open_pack(tmp_path / "missing.pak")
