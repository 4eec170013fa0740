"""Registry authentication: challenges, the token protocol and a token cache.

References: RFC 9110 §11.6.1 (WWW-Authenticate), distribution `docs/spec/auth/token.md`
(GET token with Basic or anonymous) and `oauth.md` (POST grant_type=refresh_token).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import httpx

from mpkit.credentials import Credential
from mpkit.errors import RegistryProtocolError
from mpkit.jsonfile import parse_json

CLIENT_ID = "mpkit"
DEFAULT_TOKEN_LIFETIME = 60  # token.md: expires_in defaults to 60 s when absent
REFRESH_MARGIN = 10.0  # fetch a new token this long before expiry (at most 1/5 of its life)


@dataclass(frozen=True)
class Challenge:
    scheme: str  # lower case: "basic" or "bearer"
    params: dict[str, str] = field(default_factory=dict)

    @property
    def realm(self) -> str | None:
        return self.params.get("realm")

    @property
    def service(self) -> str | None:
        return self.params.get("service")

    @property
    def scopes(self) -> list[str]:
        return self.params.get("scope", "").split()

    @property
    def error(self) -> str | None:
        return self.params.get("error")


def parse_challenges(headers: Iterable[str]) -> list[Challenge]:
    """Parse every challenge in the WWW-Authenticate header values."""
    out: list[Challenge] = []
    for header in headers:
        out.extend(_parse_one_header(header))
    return out


def preferred_challenge(challenges: list[Challenge]) -> Challenge | None:
    """The challenge to answer: Bearer over Basic; None when neither is offered."""
    for scheme in ("bearer", "basic"):
        for challenge in challenges:
            if challenge.scheme == scheme:
                return challenge
    return None


def _parse_one_header(text: str) -> list[Challenge]:
    challenges: list[Challenge] = []
    i, n = 0, len(text)
    current: Challenge | None = None
    while i < n:
        while i < n and text[i] in " ,\t":
            i += 1
        start = i
        while i < n and text[i] not in " =,\t":
            i += 1
        token = text[start:i]
        if not token:
            break
        j = i
        while j < n and text[j] in " \t":
            j += 1
        if j < n and text[j] == "=" and current is not None and not text[j:].startswith("=="):
            i = j + 1
            while i < n and text[i] in " \t":
                i += 1
            value, i = _read_value(text, i)
            current.params[token.lower()] = value
        else:  # a new auth-scheme
            current = Challenge(scheme=token.lower(), params={})
            challenges.append(current)
    return challenges


def _read_value(text: str, i: int) -> tuple[str, int]:
    if i < len(text) and text[i] == '"':
        i += 1
        chars: list[str] = []
        while i < len(text) and text[i] != '"':
            if text[i] == "\\" and i + 1 < len(text):
                i += 1
            chars.append(text[i])
            i += 1
        return "".join(chars), i + 1
    start = i
    while i < len(text) and text[i] not in ",":
        i += 1
    return text[start:i].strip(), i


@dataclass(frozen=True)
class Token:
    value: str
    expires_at: float
    lifetime: float = DEFAULT_TOKEN_LIFETIME

    def fresh(self) -> bool:
        margin = min(REFRESH_MARGIN, self.lifetime / 5)
        return time.monotonic() < self.expires_at - margin


def scope_key(scopes: Iterable[str]) -> frozenset[str]:
    return frozenset(s for s in scopes if s)


class TokenCache:
    """Tokens for one registry, keyed by the exact set of scopes they were asked for."""

    def __init__(self) -> None:
        self._tokens: dict[frozenset[str], Token] = {}
        self._lock = threading.Lock()

    def get(self, scopes: Iterable[str]) -> Token | None:
        with self._lock:
            token = self._tokens.get(scope_key(scopes))
        return token if token is not None and token.fresh() else None

    def put(self, scopes: Iterable[str], token: Token) -> None:
        with self._lock:
            self._tokens[scope_key(scopes)] = token

    def drop(self, scopes: Iterable[str]) -> None:
        with self._lock:
            self._tokens.pop(scope_key(scopes), None)


MAX_TOKEN_RESPONSE = 64 * 1024  # go-containerregistry bounds token bodies the same way


@dataclass(frozen=True)
class TokenRequest:
    """One HTTP request to a token realm (never logged: it may carry secrets)."""

    method: str
    url: str
    params: tuple[tuple[str, str], ...] = ()
    form: dict[str, str] | None = None
    basic: tuple[str, str] | None = None  # (username, secret) for Basic auth


def token_requests(
    challenge: Challenge, scopes: list[str], credential: Credential | None
) -> list[TokenRequest]:
    """The requests to try, in order, for a token covering *scopes*.

    oauth.md: an identity token goes in a refresh-token POST; not every token server
    implements OAuth2, so a GET with Basic ``<token>:identity`` follows as fallback.
    token.md: otherwise GET with Basic credentials, or anonymously.
    """
    realm = challenge.realm or ""
    service = (("service", challenge.service),) if challenge.service else ()
    scope_params = tuple(("scope", s) for s in scopes)
    get = TokenRequest("GET", realm, params=service + scope_params)
    if credential is None:
        return [get]
    if credential.identity_token:
        form = {"grant_type": "refresh_token", "refresh_token": credential.identity_token,
                "client_id": CLIENT_ID, "scope": " ".join(scopes)}  # fmt: skip
        form.update(dict(service))
        return [
            TokenRequest("POST", realm, form=form),
            TokenRequest("GET", realm, params=get.params,
                         basic=(credential.username or "<token>", credential.identity_token)),
        ]  # fmt: skip
    if credential.username is not None:
        return [TokenRequest("GET", realm, params=get.params,
                             basic=(credential.username, credential.password or ""))]  # fmt: skip
    return [get]


def parse_token_response(response: httpx.Response, *, registry: str, started: float) -> Token:
    """token.md: {"token" | "access_token", "expires_in"?, "issued_at"?}."""
    body_bytes = response.content[: MAX_TOKEN_RESPONSE + 1]
    if len(body_bytes) > MAX_TOKEN_RESPONSE:
        raise RegistryProtocolError(
            f"the token service of {registry} sent an oversized answer", registry=registry
        )
    try:
        body = parse_json(body_bytes)
    except ValueError as exc:
        raise RegistryProtocolError(
            f"the token service of {registry} returned a non-JSON body", registry=registry
        ) from exc
    value = body.get("token") or body.get("access_token") if isinstance(body, dict) else None
    if not isinstance(value, str) or not value:
        raise RegistryProtocolError(
            f"the token service of {registry} returned no token", registry=registry
        )
    lifetime = body.get("expires_in")
    if not isinstance(lifetime, (int, float)) or lifetime <= 0:
        lifetime = DEFAULT_TOKEN_LIFETIME
    return Token(value, started + float(lifetime), float(lifetime))
