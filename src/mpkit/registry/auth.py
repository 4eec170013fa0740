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
from mpkit.errors import AuthenticationError, RegistryProtocolError, RegistryUnreachableError

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


def fetch_token(
    http: httpx.Client,
    challenge: Challenge,
    scopes: list[str],
    credential: Credential | None,
    *,
    registry: str,
) -> Token:
    """Ask the challenge's realm for a bearer token covering *scopes*."""
    if credential is not None and credential.registry_token:
        # A registry token is used as-is (docker config `registrytoken`).
        return Token(credential.registry_token, time.monotonic() + 3600, 3600)
    realm = challenge.realm
    if not realm:
        raise RegistryProtocolError(
            f"{registry} asked for a bearer token but named no realm",
            registry=registry,
        )
    params: list[tuple[str, str | int | float | bool | None]] = []
    if challenge.service:
        params.append(("service", challenge.service))
    started = time.monotonic()
    try:
        if credential is not None and credential.identity_token:
            # oauth.md: refresh-token grant, sent as a form POST.
            form = {
                "grant_type": "refresh_token",
                "refresh_token": credential.identity_token,
                "client_id": CLIENT_ID,
                "scope": " ".join(scopes),
            }
            if challenge.service:
                form["service"] = challenge.service
            response = http.post(realm, data=form)
        else:
            params.extend(("scope", s) for s in scopes)
            auth = None
            if credential is not None and credential.username is not None:
                auth = httpx.BasicAuth(credential.username, credential.password or "")
            response = http.get(realm, params=params, auth=auth)
    except httpx.TransportError as exc:
        raise RegistryUnreachableError(
            f"cannot reach the token service of {registry} ({_origin(realm)}): {_reason(exc)}",
            hint="check the network path to the registry's authentication service",
            registry=registry,
        ) from exc
    if response.status_code in (401, 403):
        who = f"user '{credential.username}'" if credential and credential.username else "token"
        raise AuthenticationError(
            f"{registry} rejected the credentials ({who}, from {credential.source})"
            if credential
            else f"{registry}'s token service refused anonymous access",
            hint="run 'mpkit login "
            + registry
            + "' or set MPKIT_REGISTRY_USERNAME / MPKIT_REGISTRY_PASSWORD",
            registry=registry,
            status=response.status_code,
        )
    if response.status_code != 200:
        raise RegistryProtocolError(
            f"token service of {registry} answered HTTP {response.status_code}",
            registry=registry,
            status=response.status_code,
        )
    try:
        body = response.json()
    except ValueError as exc:
        raise RegistryProtocolError(
            f"token service of {registry} returned a non-JSON body", registry=registry
        ) from exc
    value = body.get("token") or body.get("access_token")
    if not isinstance(value, str) or not value:
        raise RegistryProtocolError(
            f"token service of {registry} returned no token", registry=registry
        )
    lifetime = body.get("expires_in")
    if not isinstance(lifetime, (int, float)) or lifetime <= 0:
        lifetime = DEFAULT_TOKEN_LIFETIME
    return Token(value, started + float(lifetime), float(lifetime))


def _origin(url: str) -> str:
    parsed = httpx.URL(url)
    return f"{parsed.scheme}://{parsed.netloc.decode()}"


def _reason(exc: Exception) -> str:
    return str(exc) or type(exc).__name__
