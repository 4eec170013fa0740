"""Recording an image alias in the settings file: atomic, every other key kept."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from mpkit.errors import ConfigError
from mpkit.settings import load_settings, record_alias

NAME = "base-adapter:python-1.2.0"
PINNED = "harbor.example.com/team/base-adapter:python-1.2.0@sha256:" + "b" * 64


def test_a_missing_settings_file_is_created_with_the_alias(tmp_path: Path) -> None:
    path = tmp_path / "config" / "mpkit" / "settings.json"
    assert record_alias(NAME, PINNED, path) == path
    assert json.loads(path.read_text()) == {"aliases": {NAME: PINNED}}
    settings = load_settings({"MPKIT_CONFIG": str(path)})
    assert settings.aliases == {NAME: PINNED}


def test_other_keys_known_or_not_and_the_files_mode_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    before = {
        "mirrors": {"docker.io": ["mirror.corp.example/hub"]},
        "aliases": {"other:1": "harbor.example.com/x/other:1", NAME: "old.example.com/x:1"},
        "insecure_registries": ["lab:5000"],
        "a_future_key": {"nested": [1, 2, 3]},
    }
    path.write_text(json.dumps(before))
    path.chmod(0o600)
    record_alias(NAME, PINNED, path)
    after = json.loads(path.read_text())
    assert after == {**before, "aliases": {"other:1": "harbor.example.com/x/other:1", NAME: PINNED}}
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["settings.json"]  # no temp left behind


def test_a_linked_settings_file_stays_a_link(tmp_path: Path) -> None:
    real = tmp_path / "dotfiles" / "mpkit.json"
    real.parent.mkdir()
    real.write_text('{"base_recheck_seconds": 60}\n')
    link = tmp_path / "settings.json"
    link.symlink_to(real)
    record_alias(NAME, PINNED, link)
    assert link.is_symlink()
    assert json.loads(real.read_text()) == {"base_recheck_seconds": 60, "aliases": {NAME: PINNED}}


def test_an_invalid_settings_file_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    path.write_text('{"aliases": {"a": "b",}}\n')
    with pytest.raises(ConfigError) as failed:
        record_alias(NAME, PINNED, path)
    assert "line 1" in failed.value.message
    assert path.read_text() == '{"aliases": {"a": "b",}}\n'
    path.write_text('{"aliases": ["not", "an", "object"]}')
    with pytest.raises(ConfigError, match="aliases must be a JSON object"):
        record_alias(NAME, PINNED, path)


def test_a_settings_file_that_cannot_be_written_names_the_variable_instead(
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    with pytest.raises(ConfigError) as failed:
        record_alias(NAME, PINNED, blocker / "settings.json")
    assert failed.value.message.startswith(f"cannot write the mpkit settings file {blocker}/")
    assert failed.value.hint == (
        f"make {blocker} writable, or set MPKIT_IMAGE_ALIASES={NAME}={PINNED}"
    )


def test_aliases_recorded_at_the_same_time_are_all_kept(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    path.write_text('{"mirrors": {}}')
    names = [f"base-adapter:lang{n}-1.0.0" for n in range(8)]
    threads = [
        threading.Thread(target=record_alias, args=(name, f"h.example.com/x/{n}:1", path))
        for n, name in enumerate(names)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(json.loads(path.read_text())["aliases"]) == sorted(names)
