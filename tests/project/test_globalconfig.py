"""The SDK's global config: its path per platform, loading, find_project, remember_project."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mpkit.errors import ConfigError
from mpkit.project.globalconfig import (
    SDK_CONFIG_ENV,
    find_project,
    global_config_path,
    load_global_config,
    no_project_error,
    remember_project,
)
from mpkit.project.model import GlobalConfig
from tests.project.sdkproject import write_project

# --- paths -------------------------------------------------------------------------------


def test_posix_path_under_home() -> None:
    path = global_config_path({"HOME": "/home/dev"}, os_name="posix")
    assert path == Path("/home/dev/.vmware-aria-operations-integration-sdk/config.json")


def test_windows_path_under_local_app_data() -> None:
    env = {"LocalAppData": r"C:\Users\dev\AppData\Local", "HOME": "/ignored"}
    path = global_config_path(env, os_name="nt")
    assert str(path) == (
        r"C:\Users\dev\AppData\Local\VMware\Aria Operations Integration SDK\config.json"
    )


def test_windows_path_upper_case_variable() -> None:
    path = global_config_path({"LOCALAPPDATA": r"D:\Local"}, os_name="nt")
    assert str(path) == r"D:\Local\VMware\Aria Operations Integration SDK\config.json"


def test_override_wins_everywhere(tmp_path: Path) -> None:
    override = str(tmp_path / "sdk.json")
    for os_name in ("posix", "nt"):
        env = {SDK_CONFIG_ENV: override, "HOME": "/h", "LocalAppData": r"C:\x"}
        assert global_config_path(env, os_name=os_name) == Path(override)


def test_default_environment_is_os_environ(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(SDK_CONFIG_ENV, str(tmp_path / "c.json"))
    assert global_config_path() == tmp_path / "c.json"


# --- loading -----------------------------------------------------------------------------


def load(tmp_path: Path, body: object | None) -> GlobalConfig:
    path = tmp_path / "sdk" / "config.json"
    if body is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body if isinstance(body, str) else json.dumps(body, indent=4))
    return load_global_config({SDK_CONFIG_ENV: str(path)})


def test_absent_file_gives_defaults_and_is_not_created(tmp_path: Path) -> None:
    config = load(tmp_path, None)
    assert (config.default_container_registry_path, config.container_port) == (None, 8080)
    assert config.projects == () and config.data == {}
    assert not (tmp_path / "sdk").exists()


def test_sdk_written_file(tmp_path: Path) -> None:
    body = {
        "container_port": 8181,
        "default_container_registry_path": "harbor.example.com/mps/",
        "projects": ["/home/dev/a", "/home/dev/b"],
        "unknown": 1,
    }
    config = load(tmp_path, body)
    assert config.default_container_registry_path == "harbor.example.com/mps/"
    assert config.container_port == 8181
    assert config.projects == (Path("/home/dev/a"), Path("/home/dev/b"))
    assert config.data == body


def test_sdk_nulls_mean_unset(tmp_path: Path) -> None:
    body = {"container_port": None, "default_container_registry_path": None, "projects": None}
    config = load(tmp_path, body)
    assert (config.container_port, config.default_container_registry_path) == (8080, None)
    assert config.projects == ()


@pytest.mark.parametrize(
    ("body", "key", "fix"),
    [
        ({"container_port": "8080"}, "container_port", "8080"),
        ({"container_port": 70000}, "container_port", "8080"),
        ({"container_port": True}, "container_port", "8080"),
        ({"default_container_registry_path": 3}, "default_container_registry_path", "harbor"),
        ({"projects": "/home/dev/a"}, "projects", "list of strings"),
        ({"projects": [1]}, "projects", "list of strings"),
    ],
)
def test_invalid_values(tmp_path: Path, body: dict[str, object], key: str, fix: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, body)
    path = tmp_path / "sdk" / "config.json"
    assert caught.value.message.startswith(f'SDK global config {path}: "{key}" (line 2)')
    assert caught.value.hint and fix in caught.value.hint
    assert (caught.value.path, caught.value.line) == (str(path), 2)


def test_syntax_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, '{"projects": [\n"/a",\n]}')
    assert caught.value.line == 3 and "SDK global config" in caught.value.message


# --- find_project ------------------------------------------------------------------------


def test_path_flag_wins_over_cwd(tmp_path: Path) -> None:
    chosen = write_project(tmp_path / "chosen")
    cwd = write_project(tmp_path / "cwd")
    found = find_project(Path("../chosen"), cwd=cwd, global_config=GlobalConfig(path=tmp_path))
    assert found == chosen


def test_path_flag_expands_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    project = write_project(tmp_path / "proj")
    found = find_project(Path("~/proj"), cwd=Path("/"), global_config=GlobalConfig(path=tmp_path))
    assert found == project


@pytest.mark.parametrize(
    ("setup", "words"),
    [("missing", "does not exist"), ("file", "is not a directory"), ("empty", "no manifest.txt")],
)
def test_path_flag_must_be_a_project(tmp_path: Path, setup: str, words: str) -> None:
    target = tmp_path / "target"
    if setup == "file":
        target.write_text("x")
    elif setup == "empty":
        target.mkdir()
    write_project(tmp_path / "cwd")  # even a project in cwd does not rescue a bad -p
    with pytest.raises(ConfigError) as caught:
        find_project(target, cwd=tmp_path / "cwd", global_config=GlobalConfig(path=tmp_path))
    assert caught.value.message.startswith(f"-p/--path {target}: ")
    assert words in caught.value.message
    assert caught.value.hint and "-p" in caught.value.hint


def test_cwd_project(tmp_path: Path) -> None:
    cwd = write_project(tmp_path / "proj")
    other = write_project(tmp_path / "other")
    config = GlobalConfig(path=tmp_path, projects=(other,))
    assert find_project(None, cwd=cwd, global_config=config) == cwd


def test_parent_of_cwd_is_not_searched(tmp_path: Path) -> None:
    """As in the SDK: only the current directory itself counts."""
    project = write_project(tmp_path / "proj")
    (project / "app").mkdir()
    found = find_project(None, cwd=project / "app", global_config=GlobalConfig(path=tmp_path))
    assert found == []


def test_known_projects_existing_only_in_order_without_duplicates(tmp_path: Path) -> None:
    b = write_project(tmp_path / "b")
    a = write_project(tmp_path / "a")
    (tmp_path / "not-a-project").mkdir()
    config = GlobalConfig(
        path=tmp_path,
        projects=(b, tmp_path / "gone", a, tmp_path / "not-a-project", Path(str(b) + "/")),
    )
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    assert find_project(None, cwd=cwd, global_config=config) == [b, a]


def test_no_project_error_lists_candidates(tmp_path: Path) -> None:
    candidates = [tmp_path / "a", tmp_path / "b"]
    config = GlobalConfig(path=tmp_path / "config.json")
    error = no_project_error(tmp_path, candidates, config)
    assert str(tmp_path / "a") in error.message and "knows 2" in error.message
    assert error.hint == f"choose one with -p, e.g. -p {tmp_path / 'a'}"
    empty = no_project_error(tmp_path, [], config)
    assert "lists no existing project" in empty.message
    assert empty.hint and "-p PATH" in empty.hint


# --- remember_project --------------------------------------------------------------------


def test_remember_appends_and_keeps_other_keys(tmp_path: Path) -> None:
    body = {"projects": ["/x/old"], "container_port": 8080, "zz": {"k": 1}}
    config = load(tmp_path, body)
    project = write_project(tmp_path / "proj")
    updated = remember_project(config, project)
    saved = json.loads(config.path.read_text())
    assert list(saved) == list(body)
    assert saved["projects"] == ["/x/old", str(project)]
    assert saved["zz"] == {"k": 1}
    assert updated.projects == (Path("/x/old"), project)


def test_remember_twice_writes_once(tmp_path: Path) -> None:
    config = load(tmp_path, {"projects": []})
    project = write_project(tmp_path / "proj")
    remember_project(config, project)
    before = config.path.stat().st_mtime_ns, config.path.read_bytes()
    again = remember_project(config, project / ".")
    assert (config.path.stat().st_mtime_ns, config.path.read_bytes()) == before
    assert again.projects == (project,)


def test_remember_does_not_create_the_sdk_config(tmp_path: Path) -> None:
    config = load(tmp_path, None)
    assert remember_project(config, tmp_path) is config
    assert not config.path.exists()


def test_remember_creates_when_asked(tmp_path: Path) -> None:
    config = load(tmp_path, None)
    updated = remember_project(config, tmp_path / "proj", create=True)
    assert json.loads(config.path.read_text()) == {"projects": [str(tmp_path / "proj")]}
    assert updated.projects == (tmp_path / "proj",)


def test_remember_relative_root_is_stored_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load(tmp_path, {})
    monkeypatch.chdir(tmp_path)
    remember_project(config, Path("proj"))
    assert json.loads(config.path.read_text())["projects"] == [str(tmp_path / "proj")]
