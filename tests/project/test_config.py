"""load_project_config / load_project: defaults, SDK nulls, validation, unknown keys kept."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mpkit.errors import ConfigError
from mpkit.project.load import is_project_dir, load_project, load_project_config
from tests.project.sdkproject import write_project


def config_error(tmp_path: Path, config: dict[str, Any] | str) -> ConfigError:
    root = write_project(tmp_path, config=config)
    with pytest.raises(ConfigError) as caught:
        load_project_config(root)
    return caught.value


def test_absent_config_gives_defaults(tmp_path: Path) -> None:
    config = load_project_config(tmp_path)
    assert config.path == tmp_path / "config.json"
    assert config.data == {}
    assert config.container_repository is None
    assert config.container_push_repository is None
    assert config.use_default_registry is False
    assert config.default_memory_limit == 1024


@pytest.mark.parametrize("body", ["{}", "", "  \n"])
def test_empty_config_gives_defaults(tmp_path: Path, body: str) -> None:
    config = load_project_config(write_project(tmp_path, config=body))
    assert (config.container_repository, config.default_memory_limit) == (None, 1024)


def test_sdk_written_nulls_mean_unset(tmp_path: Path) -> None:
    """The SDK writes null for keys it looked up without a default."""
    root = write_project(
        tmp_path,
        config={
            "container_push_repository": None,
            "container_repository": None,
            "default_memory_limit": None,
            "use_default_registry": None,
        },
    )
    config = load_project_config(root)
    assert config.container_repository is None and config.container_push_repository is None
    assert (config.use_default_registry, config.default_memory_limit) == (False, 1024)


def test_values_are_read_and_normalised(tmp_path: Path) -> None:
    body = {
        "zzz_unknown": {"nested": [1, 2]},
        "container_repository": "myuser/my-adapter",
        "container_push_repository": "Harbor.Example.com:8443/push/my-adapter",
        "use_default_registry": True,
        "default_memory_limit": 2048,
        "suite_api_hostname": "ops.example.com",
    }
    config = load_project_config(write_project(tmp_path, config=body))
    assert config.container_repository == "docker.io/myuser/my-adapter"
    assert config.container_push_repository == "harbor.example.com:8443/push/my-adapter"
    assert config.use_default_registry is True
    assert config.default_memory_limit == 2048
    assert config.data == body and list(config.data) == list(body)


def test_memory_limit_as_digit_string_is_accepted(tmp_path: Path) -> None:
    """The SDK passes the value on as f"{value}m", so "2048" worked there."""
    config = load_project_config(write_project(tmp_path, config={"default_memory_limit": "2048"}))
    assert config.default_memory_limit == 2048


def test_json_syntax_error(tmp_path: Path) -> None:
    error = config_error(tmp_path, '{\n  "container_repository": "a/b"\n  "x": 1\n}')
    assert (error.line, error.column) == (3, 3)
    assert "config.json" in error.message and "line 3, column 3" in error.message
    assert error.hint


# (config, key, words in the message, words in the hint)
CASES: list[tuple[dict[str, Any], str, str, str]] = [
    (
        {"container_repository": "harbor.example.com/p/adapter:1.0.0"},
        "container_repository",
        "tag '1.0.0'",
        "without a tag",
    ),
    (
        {"container_repository": "harbor.example.com/p/adapter@sha256:" + "a" * 64},
        "container_repository",
        "digest",
        "without a tag or digest",
    ),
    (
        {"container_repository": "harbor.example.com"},
        "container_repository",
        "without a repository path",
        "host[:port]/path",
    ),
    (
        {"container_repository": "https://h.example.com/a"},
        "container_repository",
        "scheme",
        "host[:port]/path",
    ),
    ({"container_repository": 5}, "container_repository", "is a number", "harbor.example.com"),
    (
        {"container_push_repository": "h.example.com/A"},
        "container_push_repository",
        "lowercase",
        "host[:port]/path",
    ),
    (
        {"use_default_registry": "false"},
        "use_default_registry",
        "not true or false",
        "without quotes",
    ),
    ({"use_default_registry": 1}, "use_default_registry", "not true or false", "true or false"),
    ({"default_memory_limit": 0}, "default_memory_limit", "at least 6", "1024"),
    ({"default_memory_limit": -5}, "default_memory_limit", "at least 6", "1024"),
    ({"default_memory_limit": 1.5}, "default_memory_limit", "whole number", "1024"),
    ({"default_memory_limit": True}, "default_memory_limit", "whole number", "1024"),
    ({"default_memory_limit": "1g"}, "default_memory_limit", "whole number", "1024"),
]


@pytest.mark.parametrize(
    ("body", "key", "what", "fix"), CASES, ids=[c[1] + ":" + c[2] for c in CASES]
)
def test_invalid_value(tmp_path: Path, body: dict[str, Any], key: str, what: str, fix: str) -> None:
    error = config_error(tmp_path, {"other": 1, **body})
    path = tmp_path / "config.json"
    assert error.message.startswith(f'{path}: "{key}" (line 3) ')
    assert what in error.message
    assert error.hint and fix in error.hint
    assert (error.path, error.line) == (str(path), 3)


def test_several_problems_in_one_error(tmp_path: Path) -> None:
    error = config_error(
        tmp_path,
        {"container_repository": "a/b:1", "use_default_registry": "yes", "default_memory_limit": 0},
    )
    assert "has 3 problems" in error.message
    assert all(
        key in error.message
        for key in ("container_repository", "use_default_registry", "default_memory_limit")
    )


def test_load_project(tmp_path: Path) -> None:
    root = write_project(tmp_path, config={"container_repository": "localhost:5000/my-adapter"})
    project = load_project(root)
    assert project.root == root
    assert project.manifest.adapter_kind == "MyAdapter"
    assert project.config.container_repository == "localhost:5000/my-adapter"


def test_load_project_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist") as caught:
        load_project(tmp_path / "nope")
    assert caught.value.hint and "-p" in caught.value.hint


def test_is_project_dir(tmp_path: Path) -> None:
    assert not is_project_dir(tmp_path)
    assert not is_project_dir(tmp_path / "missing")
    (tmp_path / "manifest.txt").mkdir()
    assert not is_project_dir(tmp_path)
    assert is_project_dir(write_project(tmp_path / "p"))
