"""Reading and writing OCI layouts, checked against real skopeo and umoci."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from mpkit.errors import DigestMismatchError, ImageFormatError
from mpkit.image import mediatypes as mt
from mpkit.image.digest import sha256_digest
from mpkit.image.layout import OCILayoutWriter, open_oci_layout, read_oci_layout
from mpkit.image.types import Descriptor, Platform
from tests.image.builders import (
    make_multiplatform_layout,
    make_oci_layout,
    write_image,
)
from tests.image.conftest import Runner


def test_read_layout_matches_skopeo(tmp_path: Path, skopeo: Runner) -> None:
    layout = tmp_path / "a"
    digest = make_oci_layout(layout, "v1")
    image = read_oci_layout(layout, "v1")
    raw = skopeo("inspect", "--raw", f"oci:{layout}:v1").encode()
    assert image.digest == sha256_digest(raw) == digest
    assert image.media_type == mt.OCI_MANIFEST
    config = json.loads(skopeo("inspect", "--config", f"oci:{layout}:v1"))
    assert image.platform == Platform("linux", "amd64")
    assert [layer.diff_id for layer in image.layers] == config["rootfs"]["diff_ids"]
    assert image.config_bytes == skopeo("inspect", "--config", "--raw", f"oci:{layout}:v1").encode()
    for blob in image.blobs():
        assert blob.path is not None and blob.path.stat().st_size == blob.size
        with blob.open() as stream:
            assert sha256_digest(stream.read()) == blob.digest


def test_read_layout_with_docker_media_types(tmp_path: Path) -> None:
    # skopeo 1.9 cannot read such a layout; other tools (and registries pulled into one) can.
    built = write_image(tmp_path, media="docker")
    make_oci_layout(tmp_path, "d", media="docker")
    image = read_oci_layout(tmp_path, "d")
    assert image.digest == built.digest
    assert image.media_type == mt.DOCKER_MANIFEST
    assert image.config.media_type == mt.DOCKER_CONFIG
    assert [layer.diff_id for layer in image.layers] == built.diff_ids


def test_single_untagged_image_is_taken_without_a_tag(tmp_path: Path) -> None:
    digest = make_oci_layout(tmp_path, tag=None)
    assert read_oci_layout(tmp_path).digest == digest


def test_multi_platform_index_selects_the_platform(tmp_path: Path, skopeo: Runner) -> None:
    index_digest, children = make_multiplatform_layout(tmp_path, "multi")
    amd = read_oci_layout(tmp_path, "multi")
    arm = read_oci_layout(tmp_path, "multi", Platform.parse("linux/arm64"))
    assert amd.digest == children["linux/amd64"]
    assert arm.digest == children["linux/arm64/v8"]
    assert arm.platform == Platform("linux", "arm64", "v8")
    raw = skopeo("inspect", "--raw", f"oci:{tmp_path}:multi").encode()
    assert sha256_digest(raw) == index_digest
    index_entry = open_oci_layout(tmp_path).index().manifests[0]
    assert open_oci_layout(tmp_path).load_index(index_entry).digest == index_digest
    with pytest.raises(ImageFormatError) as info:
        read_oci_layout(tmp_path, "multi", Platform.parse("linux/s390x"))
    assert "linux/amd64, linux/arm64/v8" in info.value.message


def test_image_for_another_platform_is_refused(tmp_path: Path) -> None:
    make_oci_layout(tmp_path, architecture="arm64")
    with pytest.raises(ImageFormatError, match="linux/arm64, not linux/amd64"):
        read_oci_layout(tmp_path, "latest")
    assert read_oci_layout(tmp_path, "latest", None).platform == Platform("linux", "arm64")


def test_unknown_tag_lists_the_tags(tmp_path: Path) -> None:
    make_oci_layout(tmp_path, "one")
    make_oci_layout(tmp_path, "two", layers=[{"x": b"2"}])
    with pytest.raises(ImageFormatError) as info:
        read_oci_layout(tmp_path, "three")
    assert "'three'" in info.value.message and "one, two" in info.value.message
    with pytest.raises(ImageFormatError, match="holds 2 images") as info:
        read_oci_layout(tmp_path)
    assert info.value.hint


def test_missing_directory_and_files(tmp_path: Path) -> None:
    with pytest.raises(ImageFormatError, match="does not exist") as info:
        read_oci_layout(tmp_path / "nope")
    assert str(tmp_path / "nope") in info.value.message
    with pytest.raises(ImageFormatError, match="no 'oci-layout' file"):
        read_oci_layout(tmp_path)
    make_oci_layout(tmp_path)
    (tmp_path / "index.json").unlink()
    with pytest.raises(ImageFormatError, match=r"no index.json"):
        read_oci_layout(tmp_path)


@pytest.mark.parametrize(
    "content, match",
    [
        ("{not json", "not valid JSON"),
        ("[]", "JSON object"),
        ('{"schemaVersion": 2}', "manifests"),
        ('{"schemaVersion": 2, "manifests": [{"mediaType": "x", "size": 1}]}', "digest"),
    ],
)
def test_bad_index_json(tmp_path: Path, content: str, match: str) -> None:
    make_oci_layout(tmp_path)
    (tmp_path / "index.json").write_text(content)
    with pytest.raises(ImageFormatError, match=match) as info:
        read_oci_layout(tmp_path)
    assert "index.json" in info.value.message


def test_bad_layout_version(tmp_path: Path) -> None:
    make_oci_layout(tmp_path)
    (tmp_path / "oci-layout").write_text('{"imageLayoutVersion": "2.0.0"}')
    with pytest.raises(ImageFormatError, match=r"2.0.0"):
        read_oci_layout(tmp_path)


def test_missing_or_truncated_blob(tmp_path: Path) -> None:
    built = write_image(tmp_path)
    make_oci_layout(tmp_path)
    layer_digest = json.loads(built.manifest_bytes)["layers"][1]["digest"]
    blob = tmp_path / "blobs" / "sha256" / layer_digest.split(":")[1]
    blob.write_bytes(blob.read_bytes()[:-1])
    with pytest.raises(ImageFormatError, match="bytes, but its descriptor says"):
        read_oci_layout(tmp_path)
    blob.unlink()
    with pytest.raises(ImageFormatError, match=f"lacks blob {layer_digest}"):
        read_oci_layout(tmp_path)


def test_verify_detects_corrupt_content(tmp_path: Path) -> None:
    built = write_image(tmp_path)
    make_oci_layout(tmp_path)
    layer_digest = json.loads(built.manifest_bytes)["layers"][0]["digest"]
    blob = tmp_path / "blobs" / "sha256" / layer_digest.split(":")[1]
    blob.write_bytes(bytes(len(blob.read_bytes())))  # same size, other bytes
    read_oci_layout(tmp_path)  # presence and size only
    with pytest.raises(DigestMismatchError, match=layer_digest):
        read_oci_layout(tmp_path, verify=True)


def test_writer_copy_passes_skopeo_and_umoci(tmp_path: Path, skopeo: Runner, umoci: Runner) -> None:
    source = tmp_path / "src"
    make_oci_layout(source, "v1")
    image = read_oci_layout(source, "v1")
    out = tmp_path / "out"
    writer = OCILayoutWriter(out)
    descriptor = writer.write_image(image, "copied")
    assert descriptor.digest == image.digest
    assert json.loads((out / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    raw = skopeo("inspect", "--raw", f"oci:{out}:copied").encode()
    assert raw == image.manifest_bytes
    stat = umoci("stat", "--json", "--image", f"{out}:copied")
    assert len(json.loads(stat)["history"]) == 2
    skopeo("copy", f"oci:{out}:copied", f"oci:{tmp_path / 'other'}:again")
    assert read_oci_layout(tmp_path / "other", "again").digest == image.digest
    assert not list((out / "blobs" / "sha256").glob(".tmp-*"))


def test_writer_retag_replaces_and_untagged_is_not_duplicated(tmp_path: Path) -> None:
    writer = OCILayoutWriter(tmp_path)
    first = writer.write_bytes_blob(b'{"a":1}', mt.OCI_MANIFEST)
    second = writer.write_bytes_blob(b'{"a":2}', mt.OCI_MANIFEST)
    writer.add_manifest(first, "v1")
    writer.add_manifest(second, "v1")
    writer.add_manifest(first)
    writer.add_manifest(first)
    manifests = json.loads((tmp_path / "index.json").read_text())["manifests"]
    assert [(m["digest"], m.get("annotations")) for m in manifests] == [
        (second.digest, {"org.opencontainers.image.ref.name": "v1"}),
        (first.digest, None),
    ]
    missing = Descriptor(mt.OCI_MANIFEST, "sha256:" + "b" * 64, 3)
    with pytest.raises(ImageFormatError, match="not in the layout"):
        writer.add_manifest(missing, "v2")


def test_tagging_the_same_manifest_again_only_marks_the_layout_used(tmp_path: Path) -> None:
    writer = OCILayoutWriter(tmp_path)
    manifest = writer.write_bytes_blob(b'{"a":1}', mt.OCI_MANIFEST)
    writer.add_manifest(manifest, "v1")
    index = tmp_path / "index.json"
    content, before = index.read_bytes(), index.stat()
    os.utime(index, ns=(before.st_atime_ns, before.st_mtime_ns - 10**9))
    writer.add_manifest(manifest, "v1")  # a base pulled again: nothing changed
    after = index.stat()
    assert index.read_bytes() == content and after.st_ino == before.st_ino  # not rewritten
    assert after.st_mtime_ns > before.st_mtime_ns - 10**9  # but 'mpkit cache prune' sees a use
    writer.add_manifest(writer.write_bytes_blob(b'{"a":2}', mt.OCI_MANIFEST), "v1")
    assert index.read_bytes() != content


def test_write_blob_refuses_mismatch_and_leaves_no_file(tmp_path: Path) -> None:
    writer = OCILayoutWriter(tmp_path)
    data = b"x" * 3000
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with pytest.raises(DigestMismatchError):
        writer.write_blob(digest, len(data), [data[:1000], b"y" * 2000])
    with pytest.raises(DigestMismatchError, match="more than"):
        writer.write_blob(digest, len(data), [data, b"extra"])
    with pytest.raises(DigestMismatchError):
        writer.write_blob(digest, len(data), [data[:10]])
    assert not writer.has_blob(digest)
    assert list((tmp_path / "blobs" / "sha256").iterdir()) == []
    path = writer.write_blob(digest, len(data), [data[:1000], data[1000:]])
    assert path.read_bytes() == data and writer.has_blob(digest, len(data))

    consumed: list[bool] = []

    def chunks() -> Iterator[bytes]:
        consumed.append(True)
        yield data

    assert writer.write_blob(digest, len(data), chunks()) == path
    assert not consumed  # an existing blob is kept, the source not read


def test_writer_refuses_foreign_layout_version(tmp_path: Path) -> None:
    (tmp_path / "oci-layout").write_text('{"imageLayoutVersion": "9"}')
    with pytest.raises(ImageFormatError, match="imageLayoutVersion"):
        OCILayoutWriter(tmp_path)
