"""save_container_repository: key order and unknown keys kept, atomic, untouched on error."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mpkit.errors import ConfigError, InvalidReferenceError
from mpkit.project.load import load_project_config, save_container_repository
from tests.project.sdkproject import write_project


def test_replaces_in_place_keeping_order_and_unknown_keys(tmp_path: Path) -> None:
    body = {
        "zeta": [1, {"b": 2, "a": 1}],
        "container_repository": "old.example.com/p/a",
        "alpha": "ünïcode",
        "default_memory_limit": 1024,
    }
    root = write_project(tmp_path, config=body)
    save_container_repository(load_project_config(root), "new.example.com/p/adapter")
    text = (root / "config.json").read_text(encoding="utf-8")
    saved = json.loads(text)
    assert list(saved) == list(body)
    assert saved == {**body, "container_repository": "new.example.com/p/adapter"}
    assert text == json.dumps(saved, indent=4, ensure_ascii=False) + "\n"  # SDK's indent
    assert load_project_config(root).container_repository == "new.example.com/p/adapter"


def test_appends_the_key_when_absent(tmp_path: Path) -> None:
    root = write_project(tmp_path, config={"use_default_registry": False})
    save_container_repository(load_project_config(root), "localhost:5000/adapter")
    saved = json.loads((root / "config.json").read_text(encoding="utf-8"))
    assert list(saved.items()) == [
        ("use_default_registry", False),
        ("container_repository", "localhost:5000/adapter"),
    ]


def test_creates_the_file_when_absent(tmp_path: Path) -> None:
    root = write_project(tmp_path)
    save_container_repository(load_project_config(root), "myuser/adapter")
    saved = json.loads((root / "config.json").read_text(encoding="utf-8"))
    assert saved == {"container_repository": "docker.io/myuser/adapter"}
    assert (root / "config.json").stat().st_mode & 0o777 == 0o644


def test_rereads_the_file_so_edits_during_the_build_survive(tmp_path: Path) -> None:
    root = write_project(tmp_path, config={"a": 1})
    config = load_project_config(root)
    (root / "config.json").write_text('{"a": 1, "edited": true}', encoding="utf-8")
    save_container_repository(config, "h.example.com/p/a")
    saved = json.loads((root / "config.json").read_text(encoding="utf-8"))
    assert saved == {"a": 1, "edited": True, "container_repository": "h.example.com/p/a"}


def test_same_repository_written_differently_is_not_rewritten(tmp_path: Path) -> None:
    root = write_project(tmp_path, config='{"container_repository":"myuser/adapter"}')
    before = (root / "config.json").read_bytes()
    save_container_repository(load_project_config(root), "docker.io/myuser/adapter")
    assert (root / "config.json").read_bytes() == before


def test_keeps_file_mode(tmp_path: Path) -> None:
    root = write_project(tmp_path, config={})
    (root / "config.json").chmod(0o600)
    save_container_repository(load_project_config(root), "h.example.com/p/a")
    assert (root / "config.json").stat().st_mode & 0o777 == 0o600


def test_symlinked_config_keeps_the_link(tmp_path: Path) -> None:
    root = write_project(tmp_path / "proj")
    real = tmp_path / "shared-config.json"
    real.write_text('{"x": 1}', encoding="utf-8")
    (root / "config.json").symlink_to(real)
    save_container_repository(load_project_config(root), "h.example.com/p/a")
    assert (root / "config.json").is_symlink()
    assert (
        json.loads(real.read_text(encoding="utf-8"))["container_repository"] == "h.example.com/p/a"
    )


def test_invalid_repository_touches_nothing(tmp_path: Path) -> None:
    root = write_project(tmp_path, config={"a": 1})
    before = (root / "config.json").read_bytes()
    with pytest.raises(InvalidReferenceError, match="tag"):
        save_container_repository(load_project_config(root), "h.example.com/p/a:1.0")
    assert (root / "config.json").read_bytes() == before


def test_file_broken_meanwhile_is_not_overwritten(tmp_path: Path) -> None:
    root = write_project(tmp_path, config={"a": 1})
    config = load_project_config(root)
    (root / "config.json").write_text('{"a": 1,', encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid JSON"):
        save_container_repository(config, "h.example.com/p/a")
    assert (root / "config.json").read_text(encoding="utf-8") == '{"a": 1,'


def test_failed_write_leaves_original_and_no_temp_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash between writing the temp file and renaming it (here: fsync fails)."""
    root = write_project(tmp_path, config={"container_repository": "old.example.com/p/a"})
    before = (root / "config.json").read_bytes()
    listing = sorted(root.iterdir())

    def failing_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_fsync)  # what write_json_atomic calls
    with pytest.raises(ConfigError) as caught:
        save_container_repository(load_project_config(root), "new.example.com/p/a")
    assert (root / "config.json").read_bytes() == before
    assert sorted(root.iterdir()) == listing
    assert "Input/output error" in caught.value.message
    assert "new.example.com/p/a" in caught.value.message
    assert caught.value.hint and "--registry-tag new.example.com/p/a" in caught.value.hint
