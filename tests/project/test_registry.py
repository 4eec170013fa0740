"""mp-build's repository precedence, Docker Hub normalisation and the cloud proxy's memory
limits."""

from __future__ import annotations

from pathlib import Path

import pytest

from mpkit.errors import InvalidReferenceError, UsageError
from mpkit.project.model import GlobalConfig, ProjectConfig
from mpkit.project.registry import (
    default_repository,
    memory_limits,
    normalize_repository,
    pull_repository,
    push_repository,
)

CONFIG_PATH = Path("/nonexistent/config.json")


def project_config(pull: str | None = None, push: str | None = None) -> ProjectConfig:
    return ProjectConfig(
        path=CONFIG_PATH, container_repository=pull, container_push_repository=push
    )


# (--registry-tag, container_repository, expected pull repository)
PULL_TABLE: list[tuple[str | None, str | None, str | None]] = [
    ("flag.example.com/p/a", "config.example.com/p/a", "flag.example.com/p/a"),
    ("flag.example.com/p/a", None, "flag.example.com/p/a"),
    (None, "config.example.com/p/a", "config.example.com/p/a"),
    ("", "config.example.com/p/a", "config.example.com/p/a"),  # bare -r: like mp-build
    (None, None, None),  # the caller prompts
    ("", None, None),
    ("user/repo", None, "docker.io/user/repo"),
]


@pytest.mark.parametrize(("flag", "configured", "expected"), PULL_TABLE)
def test_pull_precedence(flag: str | None, configured: str | None, expected: str | None) -> None:
    assert pull_repository(flag, project_config(pull=configured)) == expected


# (--push-registry, container_push_repository, pull, expected push repository)
PUSH_TABLE: list[tuple[str | None, str | None, str, str]] = [
    (
        "flag.example.com/p/a",
        "cfg.example.com/push/a",
        "pull.example.com/p/a",
        "flag.example.com/p/a",
    ),
    ("flag.example.com/p/a", None, "pull.example.com/p/a", "flag.example.com/p/a"),
    (None, "cfg.example.com/push/a", "pull.example.com/p/a", "cfg.example.com/push/a"),
    ("", "cfg.example.com/push/a", "pull.example.com/p/a", "cfg.example.com/push/a"),
    (None, None, "pull.example.com/p/a", "pull.example.com/p/a"),
    ("", None, "pull.example.com/p/a", "pull.example.com/p/a"),
    ("localhost:5000/a", None, "pull.example.com/p/a", "localhost:5000/a"),
]


@pytest.mark.parametrize(("flag", "configured", "pull", "expected"), PUSH_TABLE)
def test_push_precedence(
    flag: str | None, configured: str | None, pull: str, expected: str
) -> None:
    assert push_repository(flag, project_config(push=configured), pull) == expected


def test_push_never_changes_the_pull_repository() -> None:
    config = project_config(pull="pull.example.com/p/a", push="push.example.com/p/a")
    pull = pull_repository(None, config)
    assert pull == "pull.example.com/p/a"
    assert push_repository(None, config, pull) == "push.example.com/p/a"
    assert pull_repository(None, config) == "pull.example.com/p/a"


@pytest.mark.parametrize(
    ("function", "flag"),
    [(pull_repository, "--registry-tag"), (push_repository, "--push-registry")],
)
def test_bad_flag_is_a_usage_error_naming_the_flag(function: object, flag: str) -> None:
    config = project_config()
    with pytest.raises(UsageError) as caught:
        if function is pull_repository:
            pull_repository("harbor.example.com/p/a:1.0", config)
        else:
            push_repository("harbor.example.com/p/a:1.0", config, "x.example.com/a")
    assert caught.value.message.startswith(f"{flag}: ")
    assert "'harbor.example.com/p/a'" in caught.value.message  # what to use instead
    assert caught.value.hint


# Docker Hub: USER/REPO and docker.io/USER/REPO are the same; one component = library/NAME.
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("myuser/my-adapter", "docker.io/myuser/my-adapter"),
        ("docker.io/myuser/my-adapter", "docker.io/myuser/my-adapter"),
        ("index.docker.io/myuser/my-adapter", "docker.io/myuser/my-adapter"),
        ("registry-1.docker.io/myuser/my-adapter", "docker.io/myuser/my-adapter"),
        ("alpine", "docker.io/library/alpine"),
        ("docker.io/alpine", "docker.io/library/alpine"),
        ("Harbor.Example.com/proj/adapter", "harbor.example.com/proj/adapter"),
        ("harbor.example.com:8443/proj/sub/adapter", "harbor.example.com:8443/proj/sub/adapter"),
        ("localhost:5000/adapter", "localhost:5000/adapter"),
        ("[::1]:5000/adapter", "[::1]:5000/adapter"),
        (
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/adapter",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/adapter",
        ),
    ],
)
def test_normalize_repository(text: str, expected: str) -> None:
    assert normalize_repository(text, source="test") == expected


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("myuser/adapter:latest", "tag 'latest'"),
        ("h.example.com/a@sha256:" + "0" * 64, "digest"),
        ("h.example.com/a:1@sha256:" + "0" * 64, "tag '1' and digest"),
        ("h.example.com/My-Adapter", "lowercase"),
        ("h.example.com/a/", "trailing slash"),
        ("", "empty"),
    ],
)
def test_normalize_repository_rejects_with_source(text: str, words: str) -> None:
    source = "config.json container_repository"
    with pytest.raises(InvalidReferenceError) as caught:
        normalize_repository(text, source=source)
    assert caught.value.message.startswith(f"{source}: ")
    assert words in caught.value.message
    assert caught.value.hint and "host[:port]/path" in caught.value.hint


def global_config(path: str | None) -> GlobalConfig:
    return GlobalConfig(path=CONFIG_PATH, default_container_registry_path=path)


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("harbor.example.com/my-project/", "harbor.example.com/my-project/myadapter"),
        ("harbor.example.com/my-project", "harbor.example.com/my-project/myadapter"),
        ("localhost:5000/", "localhost:5000/myadapter"),
        (" myuser/ ", "myuser/myadapter"),
        (None, None),
        ("", None),
        ("   ", None),
    ],
)
def test_default_repository(prefix: str | None, expected: str | None) -> None:
    assert default_repository(global_config(prefix), "MyAdapter") == expected


@pytest.mark.parametrize(
    ("limit", "expected"), [(1024, (1024, 1536)), (6, (6, 518)), (4096, (4096, 4608))]
)
def test_memory_limits(limit: int, expected: tuple[int, int]) -> None:
    config = ProjectConfig(path=CONFIG_PATH, default_memory_limit=limit)
    assert memory_limits(config) == expected


def test_memory_limits_default() -> None:
    assert memory_limits(ProjectConfig(path=CONFIG_PATH)) == (1024, 1536)
