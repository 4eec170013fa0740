"""oci-archive and docker-archive readers against archives made by real skopeo."""

from __future__ import annotations

import gzip
import io
import json
import shutil
import tarfile
import zlib
from pathlib import Path

import pytest

from mpkit.cache.root import CacheRoot
from mpkit.errors import ImageFormatError
from mpkit.image import mediatypes as mt
from mpkit.image.archive import read_docker_archive, read_oci_archive
from mpkit.image.cache import LayerCache
from mpkit.image.digest import sha256_digest
from mpkit.image.layout import read_oci_layout
from mpkit.image.types import Image, Platform
from tests.image.builders import layer_tar, make_oci_layout, sha256
from tests.image.conftest import Runner

DOCKER_REF = "example.com/x:1"


@pytest.fixture
def layout(tmp_path: Path) -> Path:
    path = tmp_path / "layout"
    make_oci_layout(path, "v1")
    return path


@pytest.fixture
def docker_tar(tmp_path: Path, layout: Path, skopeo: Runner) -> Path:
    out = tmp_path / "docker.tar"
    skopeo("copy", f"oci:{layout}:v1", f"docker-archive:{out}:{DOCKER_REF}")
    return out


def _read_all(image: Image) -> dict[str, bytes]:
    out = {}
    for blob in image.blobs():
        with blob.open() as stream:
            out[blob.digest] = stream.read()
    return out


def test_oci_archive_from_skopeo(tmp_path: Path, layout: Path, skopeo: Runner) -> None:
    archive = tmp_path / "oci.tar"
    skopeo("copy", f"oci:{layout}:v1", f"oci-archive:{archive}:v1")
    image = read_oci_archive(archive, "v1")
    raw = skopeo("inspect", "--raw", f"oci-archive:{archive}:v1").encode()
    assert image.digest == sha256_digest(raw) == read_oci_layout(layout, "v1").digest
    for digest, data in _read_all(image).items():
        assert sha256_digest(data) == digest
    assert all(blob.path is None for blob in image.blobs())  # served from the tar
    assert read_oci_archive(archive).digest == image.digest  # the only image

    compressed = tmp_path / "oci.tar.gz"
    compressed.write_bytes(gzip.compress(archive.read_bytes()))
    assert read_oci_archive(compressed, "v1").digest == image.digest


def test_archive_member_stream_is_bounded_and_seekable(tmp_path: Path, layout: Path) -> None:
    archive = tmp_path / "plain.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(layout, arcname=".")
    image = read_oci_archive(archive, "v1")
    layer = image.layers[1]
    expected = (layout / "blobs" / "sha256" / layer.digest.split(":")[1]).read_bytes()
    with layer.open() as stream:
        assert stream.read(5) == expected[:5]
        stream.seek(0)
        assert stream.read() == expected
        assert stream.read() == b""
        stream.seek(-3, io.SEEK_END)
        assert stream.read() == expected[-3:]


def test_docker_archive_from_skopeo(tmp_path: Path, docker_tar: Path, skopeo: Runner) -> None:
    image = read_docker_archive(
        docker_tar, DOCKER_REF, cache=LayerCache(CacheRoot(tmp_path / "c1"))
    )
    assert image.media_type == mt.DOCKER_MANIFEST
    assert image.config.media_type == mt.DOCKER_CONFIG
    config_raw = skopeo("inspect", "--config", "--raw", f"docker-archive:{docker_tar}").encode()
    assert image.config_bytes == config_raw  # config bytes unchanged
    manifest = json.loads(image.manifest_bytes)
    assert list(manifest) == ["schemaVersion", "mediaType", "config", "layers"]
    assert image.manifest_bytes == json.dumps(manifest, separators=(",", ":")).encode()
    # Every layer is gzip whose content hashes to the config's diff_id.
    blobs = _read_all(image)
    decompressed = [sha256(gzip.decompress(blobs[layer.digest])) for layer in image.layers]
    assert decompressed == image.diff_ids == [layer.diff_id for layer in image.layers]
    for layer in image.layers:
        assert layer.media_type == mt.DOCKER_LAYER_GZIP
        header = blobs[layer.digest][:10]
        assert header == b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # no name, mtime 0
    # skopeo's own conversion of the same archive agrees on config and diff_ids.
    converted = tmp_path / "converted"
    skopeo("copy", f"docker-archive:{docker_tar}", f"oci:{converted}:t")
    theirs = read_oci_layout(converted, "t")
    assert json.loads(theirs.config_bytes)["rootfs"] == json.loads(image.config_bytes)["rootfs"]


def test_docker_archive_is_deterministic_and_cached(tmp_path: Path, docker_tar: Path) -> None:
    cache = LayerCache(CacheRoot(tmp_path / "cache-a"))
    first = read_docker_archive(docker_tar, cache=cache)
    assert (cache.hits, cache.misses) == (0, 2)
    fresh = read_docker_archive(docker_tar, cache=LayerCache(CacheRoot(tmp_path / "cache-b")))
    assert fresh.manifest_bytes == first.manifest_bytes
    assert _read_all(fresh) == _read_all(first)  # byte-identical gzip

    paths = [layer.path for layer in first.layers]
    assert all(p is not None and p.is_relative_to(cache.root.blobs) for p in paths)
    stamps = [(p.stat().st_ino, p.stat().st_mtime_ns) for p in paths if p]
    again_cache = LayerCache(cache.root)  # a new process, same cache directory
    again = read_docker_archive(docker_tar, "@0", cache=again_cache)
    assert (again_cache.hits, again_cache.misses) == (2, 0)
    assert again.digest == first.digest
    assert [(p.stat().st_ino, p.stat().st_mtime_ns) for p in paths if p] == stamps
    assert not list(cache.root.tmp.iterdir())  # no temp file left


def test_default_cache_dir_honours_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MPKIT_CACHE_DIR", str(tmp_path / "elsewhere"))
    assert CacheRoot.default().path == tmp_path / "elsewhere"
    assert LayerCache.default().root.path == tmp_path / "elsewhere"
    monkeypatch.delenv("MPKIT_CACHE_DIR")
    assert CacheRoot.default().path.name == "mpkit"


def test_docker_archive_ref_selection_errors(tmp_path: Path, docker_tar: Path) -> None:
    cache = LayerCache(CacheRoot(tmp_path / "cache"))
    with pytest.raises(ImageFormatError, match=r"example.com/x:1") as info:
        read_docker_archive(docker_tar, "example.com/y:2", cache=cache)
    assert info.value.hint
    with pytest.raises(ImageFormatError, match="no image @3"):
        read_docker_archive(docker_tar, "@3", cache=cache)
    with pytest.raises(ImageFormatError, match="is an image for linux/amd64, not linux/arm64"):
        read_docker_archive(docker_tar, platform=Platform.parse("linux/arm64"), cache=cache)


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _legacy_archive(path: Path, corrupt: bool = False) -> tuple[list[bytes], bytes]:
    """A hand-made docker save tar: 2 images, a symlinked layer and a gzip layer."""
    tars = [layer_tar({"a.txt": b"A"}), layer_tar({"b.txt": b"B" * 5000})]
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [sha256(t) for t in tars]},
        }
    ).encode()
    gz = gzip.compress(tars[1], mtime=0)
    with tarfile.open(path, "w") as tar:
        _add(tar, "one/layer.tar", tars[0] + (b"\0" if corrupt else b""))
        link = tarfile.TarInfo("alias/layer.tar")
        link.type = tarfile.SYMTYPE
        link.linkname = "../one/layer.tar"
        tar.addfile(link)
        _add(tar, "two/layer.tar.gz", gz)
        _add(tar, "cfg.json", config)
        entries = [
            {"Config": "cfg.json", "RepoTags": ["quay.io/a/b:1"], "Layers": ["one/layer.tar"]},
            {
                "Config": "cfg.json",
                "RepoTags": ["c:2"],
                "Layers": ["alias/layer.tar", "two/layer.tar.gz"],
            },
        ]
        entries[0]["Layers"] = entries[1]["Layers"]
        _add(tar, "manifest.json", json.dumps(entries).encode())
    return tars, gz


def test_legacy_docker_save_with_links_and_gzip_layers(tmp_path: Path) -> None:
    archive = tmp_path / "save.tar"
    tars, gz = _legacy_archive(archive)
    cache = LayerCache(CacheRoot(tmp_path / "cache"))
    with pytest.raises(ImageFormatError, match=r"@0: quay.io/a/b:1; @1: c:2"):
        read_docker_archive(archive, cache=cache)
    image = read_docker_archive(archive, "docker.io/library/c:2", cache=cache)
    assert image.diff_ids == [sha256(t) for t in tars]
    # The already-gzip layer is pushed as it is, straight from the archive.
    assert image.layers[1].digest == sha256(gz) and image.layers[1].path is None
    assert cache.misses == 1
    with image.layers[0].open() as stream:
        assert zlib.decompress(stream.read(), 31) == tars[0]
    assert read_docker_archive(archive, "quay.io/a/b:1", cache=cache).digest == image.digest


def test_layer_that_does_not_match_its_diff_id_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "bad.tar"
    _legacy_archive(archive, corrupt=True)
    cache = LayerCache(CacheRoot(tmp_path / "cache"))
    with pytest.raises(ImageFormatError, match=r"rootfs.diff_ids") as info:
        read_docker_archive(archive, "@1", cache=cache)
    assert "layer 0" in info.value.message and info.value.hint
    assert [p for p in cache.root.path.rglob("*") if p.is_file()] == []


def test_docker_save_with_oci_layout_is_read_as_oci(tmp_path: Path, layout: Path) -> None:
    """docker 25+ writes index.json + blobs/ next to manifest.json."""
    index = json.loads((layout / "index.json").read_text())
    entry = index["manifests"][0]
    entry["annotations"]["io.containerd.image.name"] = "docker.io/library/app:3"
    (layout / "index.json").write_text(json.dumps(index))
    oci = read_oci_layout(layout, "v1")
    layer_names = [f"blobs/sha256/{layer.digest.split(':')[1]}" for layer in oci.layers]
    config_name = f"blobs/sha256/{oci.config.digest.split(':')[1]}"
    (layout / "manifest.json").write_text(
        json.dumps([{"Config": config_name, "RepoTags": ["app:3"], "Layers": layer_names}])
    )
    archive = tmp_path / "docker25.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(layout, arcname=".")
    cache = LayerCache(CacheRoot(tmp_path / "cache"))
    assert read_docker_archive(archive, "app:3", cache=cache).digest == oci.digest
    assert read_docker_archive(archive, cache=cache).digest == oci.digest
    assert read_docker_archive(archive, "@0", cache=cache).digest == oci.digest
    assert cache.misses == 0


def test_archive_errors(tmp_path: Path, layout: Path) -> None:
    with pytest.raises(ImageFormatError, match="does not exist") as info:
        read_oci_archive(tmp_path / "missing.tar")
    assert str(tmp_path / "missing.tar") in info.value.message
    not_tar = tmp_path / "junk.tar"
    not_tar.write_bytes(b"this is not a tar archive" * 40)
    with pytest.raises(ImageFormatError, match="not a readable tar"):
        read_docker_archive(not_tar, cache=LayerCache(CacheRoot(tmp_path / "c")))
    oci_tar = tmp_path / "oci-only.tar"
    shutil.make_archive(str(tmp_path / "oci-only"), "tar", layout)
    with pytest.raises(ImageFormatError, match=r"no manifest.json"):
        read_docker_archive(oci_tar, "nope:1", cache=LayerCache(CacheRoot(tmp_path / "c")))
    with pytest.raises(ImageFormatError, match="no image tagged 'v2'"):
        read_oci_archive(oci_tar, "v2")
