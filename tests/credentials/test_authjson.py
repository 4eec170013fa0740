from __future__ import annotations

import json
from pathlib import Path

import pytest

from mpkit.credentials import auth_json_credential, auth_json_paths
from mpkit.credentials.authjson import repository_scopes
from mpkit.credentials.entries import encode_basic_auth
from mpkit.errors import ConfigError

from .conftest import CredEnv


def write_auths(path: Path, auths: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"auths": auths}))


def basic(user: str) -> dict[str, str]:
    return {"auth": encode_basic_auth(user, "pw-" + user)}


def test_paths_order() -> None:
    assert auth_json_paths({"REGISTRY_AUTH_FILE": "/a.json", "XDG_RUNTIME_DIR": "/run"}) == [
        Path("/a.json")
    ]
    assert auth_json_paths({"XDG_RUNTIME_DIR": "/run/u", "HOME": "/h"}) == [
        Path("/run/u/containers/auth.json"),
        Path("/h/.config/containers/auth.json"),
    ]
    assert auth_json_paths({"HOME": "/h", "XDG_CONFIG_HOME": "/c"}) == [
        Path("/c/containers/auth.json")
    ]


def test_runtime_file_then_fallback(cred_env: CredEnv) -> None:
    write_auths(cred_env.fallback_auth, {"quay.io": basic("fallback"), "ghcr.io": basic("g")})
    write_auths(cred_env.runtime_auth, {"quay.io": basic("runtime")})
    found = auth_json_credential("quay.io")
    assert found is not None and found.username == "runtime"
    assert found.source == str(cred_env.runtime_auth)
    found = auth_json_credential("ghcr.io")
    assert found is not None and found.username == "g"
    assert auth_json_credential("nothing.example") is None


def test_registry_auth_file_overrides(cred_env: CredEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    explicit = cred_env.root / "explicit.json"
    write_auths(explicit, {"quay.io": basic("explicit")})
    write_auths(cred_env.runtime_auth, {"quay.io": basic("runtime")})
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(explicit))
    found = auth_json_credential("quay.io")
    assert found is not None and found.username == "explicit"


def test_most_specific_key_wins(cred_env: CredEnv) -> None:
    write_auths(
        cred_env.runtime_auth,
        {
            "reg.example": basic("host"),
            "reg.example/team": basic("team"),
            "reg.example/team/app": basic("app"),
        },
    )

    def user(repository: str | None) -> str | None:
        found = auth_json_credential("reg.example", repository=repository)
        return found.username if found else None

    assert user("team/app") == "app"
    assert user("team/other") == "team"
    assert user("team/app/sub") == "app"
    assert user("elsewhere/app") == "host"
    assert user(None) == "host"
    assert user("team") == "team"


def test_docker_hub_aliases_and_legacy_url_keys(cred_env: CredEnv) -> None:
    write_auths(
        cred_env.runtime_auth,
        {
            "https://index.docker.io/v1/": basic("hub"),
            "docker.io/library/alpine": basic("alpine"),
            "http://legacy:5000/v2/": basic("legacy"),
        },
    )
    hub = auth_json_credential("docker.io", repository="library/alpine")
    assert hub is not None and hub.username == "alpine"
    hub = auth_json_credential("docker.io", repository="me/app")
    assert hub is not None and hub.username == "hub"
    legacy = auth_json_credential("legacy:5000", repository="x/y")
    assert legacy is not None and legacy.username == "legacy"


def test_namespace_key_does_not_apply_to_other_hosts(cred_env: CredEnv) -> None:
    write_auths(cred_env.runtime_auth, {"reg.example/team": basic("team")})
    assert auth_json_credential("reg.example") is None
    assert auth_json_credential("other.example", repository="team") is None


def test_malformed_auth_json(cred_env: CredEnv) -> None:
    cred_env.runtime_auth.parent.mkdir(parents=True)
    cred_env.runtime_auth.write_text('{"auths": {"a": }}')
    with pytest.raises(ConfigError) as info:
        auth_json_credential("a")
    assert (info.value.line, info.value.column) == (1, 17)
    assert str(cred_env.runtime_auth) in info.value.message


def test_deeply_nested_auth_json(cred_env: CredEnv) -> None:
    cred_env.runtime_auth.parent.mkdir(parents=True)
    cred_env.runtime_auth.write_text('{"auths": {"a": ' + "[" * 100_000)
    with pytest.raises(ConfigError) as info:
        auth_json_credential("a")
    assert (info.value.line, info.value.column) == (1, 115)
    assert f"{cred_env.runtime_auth} is not valid JSON: nesting deeper than 100" in str(info.value)


def test_repository_scopes() -> None:
    assert repository_scopes("a/b/c") == ["a/b/c", "a/b", "a", ""]
    assert repository_scopes(None) == [""]
    assert repository_scopes("/a/") == ["a", ""]
