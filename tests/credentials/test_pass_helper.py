"""The real Debian `docker-credential-pass` helper, with a throwaway gpg key and store."""

from __future__ import annotations

import pytest

from mpkit.credentials import (
    Credential,
    CredentialHelper,
    erase_credential,
    resolve_credential,
    store_credential,
)
from tests.fixtures.passstore import PassStore

from .conftest import CredEnv, HelperCall

SECRET = "pass-Real-s3cret:with:colons"
REG = "localhost:5000"
HUB_KEY = "https://index.docker.io/v1/"


@pytest.mark.parametrize("config", [{"credsStore": "pass"}, {"credHelpers": {REG: "pass"}}])
def test_store_get_list_erase_through_pass(
    cred_env: CredEnv,
    pass_env: PassStore,
    helper_calls: list[HelperCall],
    config: dict[str, object],
) -> None:
    cred_env.write_config(config)
    assert resolve_credential(REG) is None  # pass answers "nothing" with empty fields

    where = store_credential(REG, Credential(username="bob", password=SECRET))
    assert where.startswith("credential helper 'pass'")
    assert SECRET not in cred_env.config_path.read_text()

    found = resolve_credential(REG)
    assert found is not None
    assert (found.username, found.password, found.kind) == ("bob", SECRET, "basic")
    assert found.source.startswith("credential helper 'pass'")
    assert CredentialHelper("pass").list() == {REG: "bob"}

    assert erase_credential(REG) == [where]
    assert resolve_credential(REG) is None
    assert CredentialHelper("pass").list() == {}
    assert erase_credential(REG) == []

    assert helper_calls
    for call in helper_calls:
        assert not any(SECRET in arg for arg in call.argv)
        assert call.env is None or not any(SECRET in v for v in call.env.values())


def test_identity_token_roundtrip_for_docker_hub(cred_env: CredEnv, pass_env: PassStore) -> None:
    cred_env.write_config({"credsStore": "pass"})
    store_credential("docker.io", Credential(username="hubuser", identity_token=SECRET))
    assert CredentialHelper("pass").list() == {HUB_KEY: "<token>"}
    found = resolve_credential("docker.io")
    assert found is not None and found.kind == "identity_token" and found.identity_token == SECRET
    assert erase_credential("docker.io") == ["credential helper 'pass' (credsStore in "
                                             f"{cred_env.config_path})"]  # fmt: skip
