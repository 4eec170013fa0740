"""What every real engine must do with mpkit's archives: load one, save it back."""

from __future__ import annotations

import json
from pathlib import Path

from mpkit.engine import Engine
from mpkit.image.archive import read_docker_archive
from mpkit.image.archive_writer import write_docker_archive
from tests.verify.conftest import small_image


def check_load_and_save_round_trip(engine: Engine, tmp_path: Path, tag: str) -> None:
    """A docker-archive mpkit writes loads as *tag*; the engine's save of it reads back as
    the same image (ID and layers); the tag is gone after removal."""
    image = small_image(tmp_path)
    archive, saved = tmp_path / "in.tar", tmp_path / "out.tar"
    write_docker_archive(image, archive, [tag])
    engine.load(archive)
    try:
        assert engine.has_image(tag)
        engine.save(tag, saved)
        again = read_docker_archive(saved, None, None)
        assert again.config.digest == image.config.digest  # the image ID
        assert json.loads(again.config.read_bytes())["rootfs"] == image.config_json["rootfs"]
    finally:
        engine.remove_image(tag)
    assert not engine.has_image(tag)
