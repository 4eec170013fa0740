from __future__ import annotations

import json

import pytest

from mpkit.credentials import Credential, CredentialHelper
from mpkit.errors import CredentialError

from .conftest import FakeHelper, HelperCall

SECRET = "s3cret-P@ss-never-in-argv"
URL = "localhost:5000"


def helper() -> CredentialHelper:
    return CredentialHelper("fake", configured_by='credHelpers["localhost:5000"] in /c.json')


def assert_secret_only_on_stdin(calls: list[HelperCall], fake: FakeHelper) -> None:
    for call in calls:
        assert not any(SECRET in arg for arg in call.argv)
        assert call.env is None or not any(SECRET in v for v in call.env.values())
    for logged in fake.calls():
        assert not any(SECRET in arg for arg in logged["argv"])
        assert not any(SECRET in v for v in logged["env"].values())


def test_store_get_list_erase_roundtrip(
    fake_helper: FakeHelper, helper_calls: list[HelperCall]
) -> None:
    h = helper()
    h.store(URL, Credential(username="bob", password=SECRET))
    assert fake_helper.stored() == {URL: {"Username": "bob", "Secret": SECRET}}
    got = h.get(URL)
    assert got is not None and (got.username, got.password, got.kind) == ("bob", SECRET, "basic")
    assert got.source == "credential helper 'fake' (credHelpers[\"localhost:5000\"] in /c.json)"
    assert h.list() == {URL: "bob"}
    assert h.erase(URL) is True
    assert h.get(URL) is None
    assert h.erase(URL) is False
    assert [c.argv[1:] for c in helper_calls] == [
        ["store"], ["get"], ["list"], ["get"], ["erase"], ["get"], ["get"]
    ]  # fmt: skip
    store_call = helper_calls[0]
    assert json.loads(store_call.stdin) == {"ServerURL": URL, "Username": "bob", "Secret": SECRET}
    assert helper_calls[1].stdin == URL.encode()
    assert_secret_only_on_stdin(helper_calls, fake_helper)


def test_token_username_means_identity_token(fake_helper: FakeHelper) -> None:
    fake_helper.seed(URL, "<token>", SECRET)
    got = helper().get(URL)
    assert got is not None and got.kind == "identity_token"
    assert got.identity_token == SECRET and got.username is None and got.password is None


def test_identity_token_is_stored_with_token_username(fake_helper: FakeHelper) -> None:
    helper().store(URL, Credential(username="ignored", identity_token=SECRET))
    assert fake_helper.stored()[URL] == {"Username": "<token>", "Secret": SECRET}


def test_registry_token_cannot_go_to_a_helper(fake_helper: FakeHelper) -> None:
    with pytest.raises(CredentialError) as info:
        helper().store(URL, Credential(registry_token=SECRET))
    assert SECRET not in info.value.message and fake_helper.calls() == []


def test_not_found_message_and_empty_answer_mean_none(
    fake_helper: FakeHelper, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert helper().get("nowhere:1") is None
    monkeypatch.setenv("FAKE_HELPER_MODE", "empty-not-found")
    assert helper().get("nowhere:1") is None


def test_failure_quotes_output_but_redacts_the_secret(
    fake_helper: FakeHelper, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_HELPER_MODE", "fail")
    with pytest.raises(CredentialError) as info:
        helper().store(URL, Credential(username="bob", password=SECRET))
    message = info.value.message
    assert "helper exploded while handling" in message and "exit status 3" in message
    assert "credential helper 'fake'" in message and SECRET not in message
    assert "***" in message and info.value.hint
    with pytest.raises(CredentialError) as info:
        helper().get(URL)
    assert "helper exploded while handling: localhost:5000" in info.value.message


def test_malformed_get_output_is_not_quoted(
    fake_helper: FakeHelper, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_helper.seed(URL, "bob", SECRET)
    monkeypatch.setenv("FAKE_HELPER_MODE", "badjson")
    with pytest.raises(CredentialError) as info:
        helper().get(URL)
    assert "malformed JSON" in info.value.message and SECRET not in info.value.message


def test_deeply_nested_output_is_malformed_json_not_a_crash(
    fake_helper: FakeHelper, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_HELPER_MODE", "deepjson")
    with pytest.raises(CredentialError) as info:
        helper().get(URL)
    assert "malformed JSON" in info.value.message


def test_missing_helper_names_program_and_config_key(fake_helper: FakeHelper) -> None:
    h = CredentialHelper("nonexistent", configured_by="credsStore in /c.json")
    with pytest.raises(CredentialError) as info:
        h.get(URL)
    assert "'docker-credential-nonexistent'" in info.value.message
    assert "credsStore in /c.json" in info.value.message
    assert info.value.hint and "docker-credential-nonexistent" in info.value.hint


def test_timeout(fake_helper: FakeHelper, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_HELPER_MODE", "hang")
    with pytest.raises(CredentialError) as info:
        CredentialHelper("fake", timeout=0.5).get(URL)
    assert "did not answer within 0.5 s" in info.value.message


def test_explicit_environ_is_used_for_lookup_and_child(
    fake_helper: FakeHelper, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    fake_helper.seed(URL, "bob", SECRET)
    environ = dict(os.environ)
    monkeypatch.setenv("PATH", "/nonexistent")
    got = CredentialHelper("fake", environ=environ).get(URL)
    assert got is not None and got.username == "bob"
