from __future__ import annotations

import base64
from pathlib import Path

import pytest

from mpkit.credentials import Credential
from mpkit.credentials.entries import (
    credential_from_entry,
    encode_basic_auth,
    key_hostname,
    split_auth_key,
)
from mpkit.errors import ConfigError

P = Path("/x/config.json")


@pytest.mark.parametrize(
    ("key", "host"),
    [
        ("https://index.docker.io/v1/", "docker.io"),
        ("index.docker.io", "docker.io"),
        ("registry-1.docker.io", "docker.io"),
        ("docker.io", "docker.io"),
        ("http://host:5000", "host:5000"),
        ("https://host:5000/v2/", "host:5000"),
        ("host:5000/v2/", "host:5000"),
        ("host:5000", "host:5000"),
        ("HTTPS://Harbor.Example.COM", "harbor.example.com"),
        ("https://[::1]:5000/v2/", "[::1]:5000"),
        ("localhost", "localhost"),
    ],
)
def test_key_hostname(key: str, host: str) -> None:
    assert key_hostname(key) == host


def test_split_auth_key() -> None:
    assert split_auth_key("quay.io/ns/repo") == ("quay.io", "ns/repo")
    assert split_auth_key("quay.io") == ("quay.io", "")
    assert split_auth_key("https://quay.io/v1/") == ("quay.io", "")
    assert split_auth_key("index.docker.io/library/alpine") == ("docker.io", "library/alpine")


def entry(value: object) -> Credential | None:
    return credential_from_entry(value, key="k", path=P, source="src")


def test_auth_field_splits_at_first_colon_and_strips_nul() -> None:
    cred = entry({"auth": base64.b64encode(b"bob:pa:ss\x00\x00").decode()})
    assert cred is not None
    assert (cred.username, cred.password, cred.source) == ("bob", "pa:ss", "src")


def test_auth_without_padding_is_accepted() -> None:
    cred = entry({"auth": encode_basic_auth("bob", "x").rstrip("=")})
    assert cred is not None and cred.password == "x"


def test_plain_fields_and_tokens() -> None:
    cred = entry({"username": "u", "password": "p"})
    assert cred is not None and (cred.username, cred.password) == ("u", "p")
    cred = entry({"auth": encode_basic_auth("u", ""), "identitytoken": "idt"})
    assert cred is not None and cred.kind == "identity_token" and cred.identity_token == "idt"
    cred = entry({"registrytoken": "rt"})
    assert cred is not None and cred.kind == "registry_token" and cred.registry_token == "rt"


def test_empty_entries_hold_no_credential() -> None:
    assert entry({}) is None
    assert entry({"auth": ""}) is None
    assert entry({"email": "a@b"}) is None


@pytest.mark.parametrize(
    "value",
    [
        {"auth": "!!!not base64!!!"},
        {"auth": base64.b64encode(b"no-colon-here").decode()},
        {"auth": base64.b64encode(b":emptyuser").decode()},
        {"auth": 42},
        "not an object",
    ],
)
def test_malformed_entries_raise_config_error_without_content(value: object) -> None:
    with pytest.raises(ConfigError) as info:
        entry(value)
    assert "/x/config.json" in info.value.message
    assert "no-colon-here" not in info.value.message and "emptyuser" not in info.value.message
    assert info.value.hint
