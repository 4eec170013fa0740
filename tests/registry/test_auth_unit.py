"""Unit tests for challenge parsing, the token cache and Retry-After handling."""

from __future__ import annotations

import time

import pytest

from mpkit.registry.auth import Token, TokenCache, parse_challenges
from mpkit.registry.retry import RetryPolicy, parse_retry_after


def test_bearer_challenge_with_scope_and_error() -> None:
    header = (
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:samalba/my-app:pull,push",error="insufficient_scope"'
    )
    (challenge,) = parse_challenges([header])
    assert challenge.scheme == "bearer"
    assert challenge.realm == "https://auth.docker.io/token"
    assert challenge.service == "registry.docker.io"
    assert challenge.scopes == ["repository:samalba/my-app:pull,push"]
    assert challenge.error == "insufficient_scope"


def test_basic_challenge_and_several_in_one_header() -> None:
    challenges = parse_challenges(['Basic realm="Registry Realm", Bearer realm="https://a/t"'])
    assert [c.scheme for c in challenges] == ["basic", "bearer"]
    assert challenges[0].realm == "Registry Realm"
    assert challenges[1].realm == "https://a/t"


def test_quoted_escapes_and_unquoted_values() -> None:
    (challenge,) = parse_challenges(['Bearer realm="a\\"b", service=svc'])
    assert challenge.realm == 'a"b'
    assert challenge.service == "svc"


def test_multiple_scopes_are_space_separated() -> None:
    (challenge,) = parse_challenges(
        ['Bearer realm="r",scope="repository:a:pull repository:b:pull"']
    )
    assert challenge.scopes == ["repository:a:pull", "repository:b:pull"]


def test_token_cache_keys_on_scope_set_and_expiry() -> None:
    cache = TokenCache()
    cache.put(["repository:a:pull", "repository:b:pull"], Token("t1", time.monotonic() + 300, 300))
    assert cache.get(["repository:b:pull", "repository:a:pull"]) is not None
    assert cache.get(["repository:a:pull"]) is None
    cache.put(["x"], Token("old", time.monotonic() + 0.5, 3))
    assert cache.get(["x"]) is None  # inside the refresh margin: fetch a new one


@pytest.mark.parametrize(
    ("value", "expected"),
    [("3", 3.0), ("0", 0.0), (None, None), ("", None), ("soon", None)],
)
def test_retry_after_seconds(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


def test_retry_after_http_date_in_the_past_is_zero() -> None:
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


def test_retry_policy_caps_server_hints_and_backs_off() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=4.0, max_retry_after=5.0)
    assert policy.delay(1, "100") == 5.0
    assert 0.5 <= policy.delay(1) <= 1.0
    assert 2.0 <= policy.delay(5) <= 4.0
