from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from mpkit.credentials import (
    ENV_PASSWORD,
    ENV_USERNAME,
    Credential,
    env_credential,
    erase_credential,
    resolve_credential,
    store_credential,
)
from mpkit.credentials.entries import encode_basic_auth
from mpkit.errors import CredentialError

from .conftest import CredEnv, FakeHelper, HelperCall, MakeFakeHelper

HUB_KEY = "https://index.docker.io/v1/"
REG = "reg.example:5000"
SECRET = "Zq9-secret-value"


def basic(user: str) -> dict[str, str]:
    return {"auth": encode_basic_auth(user, "pw")}


def write_auth_json(cred_env: CredEnv, auths: dict[str, object]) -> None:
    cred_env.runtime_auth.parent.mkdir(parents=True, exist_ok=True)
    cred_env.runtime_auth.write_text(json.dumps({"auths": auths}))


def username(registry: str = REG, repository: str | None = None) -> str | None:
    found = resolve_credential(registry, repository=repository)
    return found.username if found else None


# --- env_credential -------------------------------------------------------------------


def test_env_credential() -> None:
    assert env_credential({}) is None
    assert env_credential({ENV_USERNAME: "", ENV_PASSWORD: ""}) is None
    cred = env_credential({ENV_USERNAME: "ci", ENV_PASSWORD: SECRET})
    assert cred is not None and (cred.username, cred.password) == ("ci", SECRET)
    assert ENV_USERNAME in cred.source


@pytest.mark.parametrize("present", [ENV_USERNAME, ENV_PASSWORD])
def test_env_credential_half_set_is_an_error(present: str) -> None:
    with pytest.raises(CredentialError) as info:
        env_credential({present: SECRET})
    assert SECRET not in info.value.message and info.value.hint


def test_env_credential_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_USERNAME, "ci")
    monkeypatch.setenv(ENV_PASSWORD, SECRET)
    cred = env_credential()
    assert cred is not None and cred.username == "ci"


# --- precedence, case by case --------------------------------------------------------


def test_nothing_configured(cred_env: CredEnv) -> None:
    assert resolve_credential(REG) is None


def test_auth_json_only(cred_env: CredEnv) -> None:
    write_auth_json(cred_env, {REG: basic("podman")})
    assert username() == "podman"


def test_auths_beats_auth_json(cred_env: CredEnv) -> None:
    write_auth_json(cred_env, {REG: basic("podman")})
    cred_env.write_config({"auths": {REG: basic("docker")}})
    assert username() == "docker"


def test_creds_store_beats_auths(cred_env: CredEnv, fake_helper: FakeHelper) -> None:
    fake_helper.seed(REG, "store", SECRET)
    cred_env.write_config({"credsStore": "fake", "auths": {REG: basic("docker")}})
    found = resolve_credential(REG)
    assert found is not None and (found.username, found.password) == ("store", SECRET)
    assert found.source.startswith("credential helper 'fake' (credsStore in ")


def test_cred_helper_beats_creds_store(cred_env: CredEnv, make_fake_helper: MakeFakeHelper) -> None:
    make_fake_helper("hosthelper").seed(REG, "host-helper", SECRET)
    make_fake_helper("store").seed(REG, "store", SECRET)
    cred_env.write_config(
        {"credHelpers": {REG: "hosthelper"}, "credsStore": "store", "auths": {REG: basic("d")}}
    )
    assert username() == "host-helper"


def test_helpers_without_entry_fall_through(
    cred_env: CredEnv, make_fake_helper: MakeFakeHelper
) -> None:
    host_helper, store = make_fake_helper("hosthelper"), make_fake_helper("store")
    cred_env.write_config({"credHelpers": {REG: "hosthelper"}, "credsStore": "store"})
    write_auth_json(cred_env, {REG: basic("podman")})
    assert username() == "podman"
    cred_env.write_config(
        {"credHelpers": {REG: "hosthelper"}, "credsStore": "store", "auths": {REG: basic("d")}}
    )
    assert username() == "d"
    store.seed(REG, "store", SECRET)
    assert username() == "store"
    host_helper.seed(REG, "host", SECRET)
    assert username() == "host"


def test_cred_helper_for_another_host_is_ignored(
    cred_env: CredEnv, make_fake_helper: MakeFakeHelper
) -> None:
    make_fake_helper("other").seed(REG, "wrong", SECRET)
    cred_env.write_config({"credHelpers": {"other.example": "other"}, "auths": {REG: basic("d")}})
    assert username() == "d"


def test_missing_helper_program_is_an_error(cred_env: CredEnv) -> None:
    cred_env.write_config({"credHelpers": {REG: "absent-helper"}, "auths": {REG: basic("d")}})
    with pytest.raises(CredentialError) as info:
        resolve_credential(REG)
    assert "docker-credential-absent-helper" in info.value.message
    assert f'credHelpers["{REG}"]' in info.value.message


@pytest.mark.parametrize("helper_key", ["docker.io", "index.docker.io", HUB_KEY])
def test_docker_hub_uses_index_url_as_server_url(
    cred_env: CredEnv,
    fake_helper: FakeHelper,
    helper_calls: list[HelperCall],
    helper_key: str,
) -> None:
    fake_helper.seed(HUB_KEY, "<token>", SECRET)
    cred_env.write_config({"credHelpers": {helper_key: "fake"}})
    found = resolve_credential("docker.io")
    assert found is not None and found.identity_token == SECRET
    assert [c.stdin for c in helper_calls] == [HUB_KEY.encode()]


def test_docker_hub_auths_under_index_url(cred_env: CredEnv) -> None:
    cred_env.write_config({"auths": {HUB_KEY: basic("hubuser")}})
    assert username("docker.io") == "hubuser"


def test_repository_reaches_auth_json(cred_env: CredEnv) -> None:
    write_auth_json(cred_env, {REG: basic("host"), f"{REG}/team": basic("team")})
    assert username(repository="team/app") == "team"
    assert username() == "host"


def test_resolve_ignores_the_environment_override(
    cred_env: CredEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_USERNAME, "ci")
    monkeypatch.setenv(ENV_PASSWORD, SECRET)
    assert resolve_credential(REG) is None


def test_explicit_environ_mapping(cred_env: CredEnv, tmp_path: Path) -> None:
    other = tmp_path / "other-docker"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"auths": {REG: basic("other")}}))
    assert resolve_credential(REG) is None
    found = resolve_credential(REG, environ={"DOCKER_CONFIG": str(other), "HOME": "/nonexistent"})
    assert found is not None and found.username == "other"


# --- store ---------------------------------------------------------------------------


def test_store_to_config_file(cred_env: CredEnv) -> None:
    cred_env.write_config({"currentContext": "x", "auths": {"keep.example": basic("k")}})
    where = store_credential(REG, Credential(username="bob", password=SECRET))
    assert where == str(cred_env.config_path)
    saved = cred_env.read_config()
    assert saved["currentContext"] == "x" and saved["auths"]["keep.example"] == basic("k")
    assert saved["auths"][REG] == {"auth": encode_basic_auth("bob", SECRET)}
    assert stat.S_IMODE(cred_env.config_path.stat().st_mode) == 0o600
    assert username() == "bob"


def test_store_creates_config_dir_0700(cred_env: CredEnv) -> None:
    store_credential("docker.io", Credential(username="hub", identity_token=SECRET))
    assert stat.S_IMODE(cred_env.docker_config_dir.stat().st_mode) == 0o700
    assert cred_env.read_config()["auths"][HUB_KEY]["identitytoken"] == SECRET
    found = resolve_credential("docker.io")
    assert found is not None and found.kind == "identity_token"


def test_store_through_helper_scrubs_plaintext(
    cred_env: CredEnv, fake_helper: FakeHelper, helper_calls: list[HelperCall]
) -> None:
    cred_env.write_config(
        {"credsStore": "fake", "auths": {REG: {**basic("old"), "email": "e@x"}, "o": basic("o")}}
    )
    where = store_credential(REG, Credential(username="bob", password=SECRET))
    assert where.startswith("credential helper 'fake' (credsStore in ")
    assert fake_helper.stored() == {REG: {"Username": "bob", "Secret": SECRET}}
    saved = cred_env.read_config()
    assert saved["auths"] == {REG: {"email": "e@x"}, "o": basic("o")}
    assert SECRET not in cred_env.config_path.read_text()
    assert all(SECRET not in arg for call in helper_calls for arg in call.argv)
    assert username() == "bob"


def test_store_prefers_host_helper(cred_env: CredEnv, make_fake_helper: MakeFakeHelper) -> None:
    host_helper, store = make_fake_helper("hosthelper"), make_fake_helper("store")
    cred_env.write_config({"credHelpers": {REG: "hosthelper"}, "credsStore": "store"})
    store_credential(REG, Credential(username="bob", password=SECRET))
    assert REG in host_helper.stored() and store.stored() == {}
    assert not cred_env.read_config().get("auths")


@pytest.mark.parametrize(
    "credential",
    [
        Credential(username="bob"),
        Credential(password=SECRET),
        Credential(username="a:b", password=SECRET),
    ],
)
def test_store_rejects_unstorable(cred_env: CredEnv, credential: Credential) -> None:
    with pytest.raises(CredentialError) as info:
        store_credential(REG, credential)
    assert SECRET not in info.value.message
    assert not cred_env.config_path.exists()


# --- erase ---------------------------------------------------------------------------


def test_erase_from_config_file_all_aliases(cred_env: CredEnv) -> None:
    cred_env.write_config(
        {"auths": {REG: basic("a"), f"https://{REG}/v2/": basic("b"), "o": basic("o")}, "x": 1}
    )
    places = erase_credential(REG)
    assert places == [
        f'{cred_env.config_path} (auths["{REG}"])',
        f'{cred_env.config_path} (auths["https://{REG}/v2/"])',
    ]
    assert cred_env.read_config() == {"auths": {"o": basic("o")}, "x": 1}
    assert resolve_credential(REG) is None
    assert erase_credential(REG) == []


def test_erase_from_helpers_and_file(cred_env: CredEnv, make_fake_helper: MakeFakeHelper) -> None:
    host_helper, store = make_fake_helper("hosthelper"), make_fake_helper("store")
    host_helper.seed(REG, "h", SECRET)
    store.seed(REG, "s", SECRET)
    store.seed("other:1", "s", SECRET)
    cred_env.write_config(
        {"credHelpers": {REG: "hosthelper"}, "credsStore": "store", "auths": {REG: {}}}
    )
    places = erase_credential(REG)
    assert len(places) == 3
    assert places[1].startswith("credential helper 'hosthelper'")
    assert places[2].startswith("credential helper 'store'")
    assert host_helper.stored() == {} and list(store.stored()) == ["other:1"]
    assert resolve_credential(REG) is None
    assert erase_credential(REG) == []


def test_no_secret_in_child_environment(
    cred_env: CredEnv, fake_helper: FakeHelper, helper_calls: list[HelperCall]
) -> None:
    cred_env.write_config({"credsStore": "fake"})
    store_credential(REG, Credential(username="bob", password=SECRET))
    resolve_credential(REG)
    erase_credential(REG)
    assert helper_calls
    for logged in fake_helper.calls():
        assert SECRET not in " ".join(logged["argv"])
        assert SECRET not in " ".join(logged["env"].values())
    assert SECRET not in " ".join(os.environ.values())
