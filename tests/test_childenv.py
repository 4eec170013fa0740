"""Programs mpkit starts never inherit the registry secret it was given."""

from __future__ import annotations

import pytest

from mpkit.childenv import PRIVATE_VARIABLES, child_environment
from mpkit.credentials import ENV_PASSWORD


def test_the_registry_password_is_private() -> None:
    assert ENV_PASSWORD in PRIVATE_VARIABLES


def test_child_environment_drops_secrets_and_keeps_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENV_PASSWORD, "s3cret")
    monkeypatch.setenv("KEEP_ME", "1")
    env = child_environment(PATH="/bin")
    assert ENV_PASSWORD not in env
    assert env["KEEP_ME"] == "1"
    assert env["PATH"] == "/bin"


def test_an_explicit_base_is_filtered_too() -> None:
    assert child_environment({ENV_PASSWORD: "x", "A": "b"}) == {"A": "b"}
