from __future__ import annotations

from mpkit.credentials import Credential
from mpkit.credentials.types import redact

SECRET = "hunter2-very-secret"


def test_kind_priority() -> None:
    assert Credential(username="u", password=SECRET).kind == "basic"
    assert Credential(identity_token=SECRET).kind == "identity_token"
    assert Credential(username="u", password="p", registry_token=SECRET).kind == "registry_token"
    assert Credential(username="u", identity_token=SECRET).kind == "identity_token"


def test_repr_and_str_never_show_secrets() -> None:
    creds = [
        Credential(username="alice", password=SECRET, source="~/.docker/config.json"),
        Credential(username="alice", identity_token=SECRET, source="helper"),
        Credential(registry_token=SECRET),
    ]
    for cred in creds:
        for text in (repr(cred), str(cred), f"{cred}", f"{cred!r}", repr([cred])):
            assert SECRET not in text
    assert "alice" in repr(creds[0]) and "basic" in repr(creds[0])
    assert "config.json" in str(creds[0])


def test_secrets_and_redact() -> None:
    cred = Credential(username="u", password="pw", identity_token="tok")
    assert cred.secrets == ("pw", "tok")
    assert redact("a pw b tok", cred.secrets) == "a *** b ***"
    assert redact("nothing", ()) == "nothing"
