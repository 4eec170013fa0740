"""Source strings: oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE[:REF]."""

from __future__ import annotations

from pathlib import Path

import pytest

from mpkit.errors import ImageFormatError, UsageError
from mpkit.image import mediatypes as mt
from mpkit.image.source import load_source, parse_source
from tests.image.builders import make_oci_layout
from tests.image.conftest import Runner


@pytest.mark.parametrize(
    "text, expected",
    [
        ("oci:dir", ("oci", Path("dir"), None)),
        ("oci:/a/b:v1", ("oci", Path("/a/b"), "v1")),
        ("oci:/a/b:", ("oci", Path("/a/b"), None)),
        ("oci-archive:x.tar:latest", ("oci-archive", Path("x.tar"), "latest")),
        (
            "docker-archive:x.tar:localhost:5000/app:1",
            ("docker-archive", Path("x.tar"), "localhost:5000/app:1"),
        ),
        ("docker-archive:x.tar:@2", ("docker-archive", Path("x.tar"), "@2")),
        ("oci:C:\\img:v1", ("oci", Path("C:\\img"), "v1")),
    ],
)
def test_parse_source(text: str, expected: tuple[str, Path, str | None]) -> None:
    assert parse_source(text) == expected


@pytest.mark.parametrize("text", ["docker://x/y:1", "dir:/tmp/x", "/tmp/x", "oci:", "oci::tag"])
def test_parse_source_rejects(text: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_source(text)
    assert "docker-archive:FILE" in (info.value.hint or "")
    assert "oci:DIR" in (info.value.hint or "")


def test_load_source_reads_all_three(tmp_path: Path, skopeo: Runner) -> None:
    layout = tmp_path / "img"
    digest = make_oci_layout(layout, "v1")
    skopeo("copy", f"oci:{layout}:v1", f"oci-archive:{tmp_path / 'o.tar'}:v1")
    skopeo("copy", f"oci:{layout}:v1", f"docker-archive:{tmp_path / 'd.tar'}:x/y:1")
    assert load_source(f"oci:{layout}:v1").digest == digest
    assert load_source(f"oci-archive:{tmp_path / 'o.tar'}").digest == digest
    docker = load_source(f"docker-archive:{tmp_path / 'd.tar'}:docker.io/x/y:1")
    assert docker.media_type == mt.DOCKER_MANIFEST
    # No cache given: the default one, which the autouse fixture points into tmp_path.
    assert all(
        layer.path and layer.path.is_relative_to(tmp_path / "mpkit-cache")
        for layer in docker.layers
    )


@pytest.mark.parametrize("kind", ["oci", "oci-archive", "docker-archive"])
def test_load_source_missing_path_is_named(tmp_path: Path, kind: str) -> None:
    missing = tmp_path / "absent"
    with pytest.raises(ImageFormatError) as info:
        load_source(f"{kind}:{missing}")
    assert str(missing) in info.value.message
