from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from mpkit.credentials import Credential, docker_config_path, load_docker_config
from mpkit.credentials.entries import encode_basic_auth
from mpkit.errors import ConfigError, CredentialError

from .conftest import CredEnv

HUB = "https://index.docker.io/v1/"


def test_path_from_docker_config_env(cred_env: CredEnv) -> None:
    assert docker_config_path() == cred_env.config_path
    env = {"HOME": "/h"}
    assert docker_config_path(env) == Path("/h/.docker/config.json")
    assert docker_config_path({"HOME": "/h", "DOCKER_CONFIG": "/d"}) == Path("/d/config.json")


def test_missing_and_empty_files_are_empty_configs(cred_env: CredEnv) -> None:
    config = load_docker_config()
    assert not config.exists and config.data == {}
    cred_env.docker_config_dir.mkdir()
    cred_env.config_path.write_text("  \n")
    assert load_docker_config().data == {}


def test_malformed_json_reports_path_line_and_column(cred_env: CredEnv) -> None:
    cred_env.docker_config_dir.mkdir()
    secret = encode_basic_auth("bob", "s3cret")
    cred_env.config_path.write_text(
        '{\n\t"auths": {\n\t\t"h": {"auth": "' + secret + '"},\n\t}\n}\n'
    )
    with pytest.raises(ConfigError) as info:
        load_docker_config()
    err = info.value
    assert (err.path, err.line, err.column) == (str(cred_env.config_path), 4, 2)
    assert str(cred_env.config_path) in err.message and "line 4, column 2" in err.message
    assert secret not in err.message and err.hint and "line 4" in err.hint


@pytest.mark.parametrize(
    "content", ["[1, 2]", '{"auths": []}', '{"credHelpers": "pass"}', '{"credsStore": 1}']
)
def test_wrong_shapes_are_config_errors(cred_env: CredEnv, content: str) -> None:
    cred_env.docker_config_dir.mkdir()
    cred_env.config_path.write_text(content)
    with pytest.raises(ConfigError) as info:
        load_docker_config()
    assert info.value.path == str(cred_env.config_path)


@pytest.mark.parametrize(
    ("stored_key", "registry", "key"),
    [
        (HUB, "docker.io", HUB),
        ("index.docker.io", "docker.io", HUB),
        ("docker.io", "docker.io", HUB),
        ("http://host:5000", "host:5000", "host:5000"),
        ("https://host:5000/v2/", "host:5000", "host:5000"),
        ("host:5000/v2/", "host:5000", "host:5000"),
        ("host:5000", "host:5000", "host:5000"),
    ],
)
def test_auths_lookup_normalises_keys(
    cred_env: CredEnv, stored_key: str, registry: str, key: str
) -> None:
    cred_env.write_config({"auths": {stored_key: {"auth": encode_basic_auth("u", "p")}}})
    cred = load_docker_config().credential(registry, key)
    assert cred is not None and (cred.username, cred.password) == ("u", "p")
    assert cred.source == str(cred_env.config_path)


def test_auths_lookup_port_matters_and_exact_key_wins(cred_env: CredEnv) -> None:
    cred_env.write_config(
        {
            "auths": {
                "http://host:5000": {"auth": encode_basic_auth("legacy", "p")},
                "host:5000": {"auth": encode_basic_auth("exact", "p")},
                "host": {"auth": encode_basic_auth("noport", "p")},
            }
        }
    )
    config = load_docker_config()
    found = config.credential("host:5000", "host:5000")
    assert found is not None and found.username == "exact"
    assert config.credential("host:5001", "host:5001") is None


def test_save_is_0600_in_0700_dir_tab_indented_with_newline(cred_env: CredEnv) -> None:
    config = load_docker_config()
    config.set_credential("host:5000", Credential(username="u", password="p"))
    config.save()
    path = cred_env.config_path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(cred_env.docker_config_dir.stat().st_mode) & 0o077 == 0
    text = path.read_text()
    assert text.endswith("}\n") and '\n\t"auths": {' in text
    assert json.loads(text) == {"auths": {"host:5000": {"auth": encode_basic_auth("u", "p")}}}


def test_save_preserves_unknown_keys_and_order(cred_env: CredEnv) -> None:
    original = {
        "psFormat": "table {{.ID}}",
        "auths": {
            "other.example": {"auth": encode_basic_auth("o", "p")},
            "host:5000": {"auth": encode_basic_auth("old", "old"), "email": "x@y"},
        },
        "HttpHeaders": {"X-Meta": "1"},
        "somethingNew": {"nested": [1, 2, {"deep": True}]},
        "credHelpers": {"gcr.io": "gcloud"},
    }
    cred_env.write_config(original)
    cred_env.config_path.chmod(0o644)
    config = load_docker_config()
    config.set_credential("host:5000", Credential(username="new", password="pw"))
    config.set_credential(HUB, Credential(username="hub", identity_token="idt"))
    config.save()
    saved = cred_env.read_config()
    assert list(saved) == list(original)
    assert saved["somethingNew"] == original["somethingNew"]
    assert saved["HttpHeaders"] == original["HttpHeaders"]
    assert saved["credHelpers"] == original["credHelpers"]
    assert list(saved["auths"]) == ["other.example", "host:5000", HUB]
    assert saved["auths"]["host:5000"] == {"email": "x@y", "auth": encode_basic_auth("new", "pw")}
    assert saved["auths"][HUB] == {"auth": encode_basic_auth("hub", ""), "identitytoken": "idt"}
    assert stat.S_IMODE(cred_env.config_path.stat().st_mode) == 0o600
    assert sorted(p.name for p in cred_env.docker_config_dir.iterdir()) == ["config.json"]


def test_registry_token_is_stored_as_registrytoken(cred_env: CredEnv) -> None:
    config = load_docker_config()
    config.set_credential("h", Credential(registry_token="rt"))
    config.save()
    assert cred_env.read_config()["auths"]["h"] == {"registrytoken": "rt"}


def test_save_through_symlink_replaces_the_target(cred_env: CredEnv, tmp_path: Path) -> None:
    real = tmp_path / "real" / "config.json"
    real.parent.mkdir()
    real.write_text('{"keep": 1}')
    cred_env.docker_config_dir.mkdir()
    cred_env.config_path.symlink_to(real)
    config = load_docker_config()
    config.set_credential("h", Credential(username="u", password="p"))
    config.save()
    assert cred_env.config_path.is_symlink()
    assert json.loads(real.read_text())["keep"] == 1


def test_save_is_atomic_on_failure(cred_env: CredEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    cred_env.write_config({"auths": {}, "keep": True})
    before = cred_env.config_path.read_text()

    def failing_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    config = load_docker_config()
    config.set_credential("h", Credential(username="u", password="p"))
    with pytest.raises(CredentialError) as info:
        config.save()
    assert "No space left" in info.value.message
    assert cred_env.config_path.read_text() == before
    assert sorted(p.name for p in cred_env.docker_config_dir.iterdir()) == ["config.json"]


def test_clear_credentials(cred_env: CredEnv) -> None:
    cred_env.write_config(
        {
            "auths": {
                "http://host:5000": {"auth": encode_basic_auth("a", "b"), "email": "e"},
                "host:5000": {"auth": encode_basic_auth("a", "b")},
                "other": {"auth": encode_basic_auth("a", "b")},
            }
        }
    )
    config = load_docker_config()
    assert config.clear_credentials("host:5000", "host:5000", drop_entries=False) == [
        "host:5000",
        "http://host:5000",
    ]
    assert config.auths["http://host:5000"] == {"email": "e"}
    assert config.clear_credentials("host:5000", "host:5000", drop_entries=True) == [
        "host:5000",
        "http://host:5000",
    ]
    assert list(config.auths) == ["other"]
