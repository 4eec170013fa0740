"""Who may do what: anonymous pull always, push by loopback (open mode) or by login.

Open mode (no htpasswd): ``GET /v2/`` answers 200, every read is anonymous, and writes
are accepted from loopback peers only.

Auth mode (an htpasswd file of bcrypt entries): reads stay anonymous, writes need a
user. Clients learn how to log in from the ``/v2/`` ping, and only from it (docker,
podman and skopeo ignore challenges on later requests), so the ping answers 401 with a
*Bearer* challenge pointing at this server's own ``/token`` endpoint (Docker token
auth). That is what lets both kinds of client work, as on Harbor: an anonymous client
fetches a pull-only token, a client with credentials sends them by Basic auth to
``/token`` and gets a push token. Basic credentials sent straight to any endpoint are
accepted as well. Tokens are HMAC-signed with a key kept under the root (mode 0600),
so they survive a restart; they last ``TOKEN_SECONDS``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mpkit.errors import ConfigError
from mpkit.server.apierrors import DENIED, UNAUTHORIZED, ApiError
from mpkit.server.names import valid_name

SERVICE = "mpkit-registry"
TOKEN_SECONDS = 3600
_BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")
WRITE_ACTIONS = frozenset({"push", "delete", "*"})


class Htpasswd:
    """bcrypt entries from an Apache htpasswd file (``htpasswd -B``)."""

    def __init__(self, entries: Mapping[str, bytes], path: Path | None = None) -> None:
        self.entries = dict(entries)
        self.path = path
        self._verified: dict[str, bytes] = {}  # user -> keyed hash of a password that passed
        self._key = secrets.token_bytes(32)
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: Path) -> Htpasswd:
        hint = "create entries with 'htpasswd -B -c FILE USER' (bcrypt is the only format accepted)"
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"cannot read the htpasswd file {path}: {exc}", path=str(path), hint=hint
            ) from exc
        entries: dict[str, bytes] = {}
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            user, colon, hashed = line.partition(":")
            if not colon or not user:
                raise ConfigError(
                    f"{path}, line {number}: expected 'user:hash'",
                    path=str(path),
                    line=number,
                    hint=hint,
                )
            if not hashed.startswith(_BCRYPT_PREFIXES):
                raise ConfigError(
                    f"{path}, line {number}: the entry for {user!r} is not a bcrypt hash",
                    path=str(path),
                    line=number,
                    hint=hint,
                )
            entries[user] = hashed.encode()
        if not entries:
            raise ConfigError(f"the htpasswd file {path} has no users", path=str(path), hint=hint)
        try:
            import bcrypt  # noqa: F401
        except ImportError as exc:
            raise ConfigError(
                "--htpasswd needs the Python package bcrypt, which is not installed",
                hint="pip install bcrypt (it is a dependency of mpkit; reinstall mpkit)",
            ) from exc
        return cls(entries, path)

    def verify(self, user: str, password: str) -> bool:
        hashed = self.entries.get(user)
        if hashed is None or not password:
            return False
        keyed = hmac.new(self._key, password.encode(), hashlib.sha256).digest()
        with self._lock:
            known = self._verified.get(user)
        if known is not None and hmac.compare_digest(known, keyed):
            return True  # bcrypt is slow on purpose; a password that passed once is cached
        import bcrypt  # loaded only by servers with logins

        try:
            ok = bcrypt.checkpw(password.encode(), hashed)
        except ValueError:
            return False
        if ok:
            with self._lock:
                self._verified[user] = keyed
        return ok


@dataclass(frozen=True)
class Identity:
    """The caller: a user (or anonymous) and, for tokens, the repositories it may write."""

    user: str | None
    writable: frozenset[str] | None = None  # None: every repository (Basic login)

    def may_write(self, name: str) -> bool:
        if self.user is None:
            return False
        return self.writable is None or name in self.writable


ANONYMOUS = Identity(None)


class TokenSigner:
    """Opaque bearer tokens: base64url(JSON claims) "." base64url(HMAC-SHA256)."""

    def __init__(self, key: bytes) -> None:
        self.key = key

    @classmethod
    def ephemeral(cls) -> TokenSigner:
        return cls(secrets.token_bytes(32))

    @classmethod
    def from_root(cls, root: Path) -> TokenSigner:
        path = root / "token.key"
        with contextlib.suppress(FileNotFoundError):
            key = path.read_bytes()
            if len(key) >= 32:
                return cls(key)
        key = secrets.token_bytes(32)
        tmp = root / f".token.key.{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(key)
        tmp.replace(path)
        return cls(key)

    def issue(self, user: str | None, access: list[dict[str, Any]], now: float) -> str:
        claims = {
            "sub": user or "",
            "access": access,
            "iat": int(now),
            "exp": int(now) + TOKEN_SECONDS,
        }
        payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
        return f"{payload}.{_b64(self._mac(payload))}"

    def verify(self, token: str, now: float) -> Identity | None:
        payload, dot, mac = token.partition(".")
        if not dot:
            return None
        with contextlib.suppress(ValueError, binascii.Error):
            if hmac.compare_digest(_unb64(mac), self._mac(payload)):
                claims = json.loads(_unb64(payload))
                if not isinstance(claims, dict) or claims.get("exp", 0) < now:
                    return None
                writable = frozenset(
                    str(entry.get("name"))
                    for entry in claims.get("access", [])
                    if isinstance(entry, dict) and WRITE_ACTIONS & set(entry.get("actions", []))
                )
                return Identity(str(claims.get("sub") or "") or None, writable)
        return None

    def _mac(self, payload: str) -> bytes:
        return hmac.new(self.key, payload.encode(), hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Authorizer:
    """The registry's access policy (see the module docstring)."""

    def __init__(self, htpasswd: Htpasswd | None, signer: TokenSigner) -> None:
        self.htpasswd = htpasswd
        self.signer = signer

    @property
    def auth_enabled(self) -> bool:
        return self.htpasswd is not None

    def challenge(self, realm: str, scope: str | None = None) -> dict[str, str]:
        value = f'Bearer realm="{realm}",service="{SERVICE}"'
        if scope:
            value += f',scope="{scope}"'
        return {"WWW-Authenticate": value}

    def identify(self, authorization: str | None, realm: str) -> Identity:
        """The caller named by an Authorization header; 401 if it names one badly."""
        if not authorization or self.htpasswd is None:
            return ANONYMOUS
        scheme, _, value = authorization.strip().partition(" ")
        scheme = scheme.lower()
        if scheme == "basic":
            user, password = _basic(value)
            if user == "" and password == "":
                return ANONYMOUS  # podman sends empty Basic credentials when it has none
            if self.htpasswd.verify(user, password):
                return Identity(user)
        elif scheme == "bearer":
            identity = self.signer.verify(value.strip(), time.time())
            if identity is not None:
                return identity
        raise ApiError(
            401, UNAUTHORIZED, "the credentials are not valid", headers=self.challenge(realm)
        )

    def require_write(
        self, identity: Identity, name: str, *, peer_loopback: bool, realm: str
    ) -> None:
        if self.htpasswd is None:
            if peer_loopback:
                return
            raise ApiError(
                403,
                DENIED,
                "this registry has no htpasswd file, so it accepts pushes only from its own "
                "machine (loopback)",
            )
        if identity.may_write(name):
            return
        scope = f"repository:{name}:pull,push"
        if identity.user is None:
            raise ApiError(
                401,
                UNAUTHORIZED,
                "authentication required to push",
                headers=self.challenge(realm, scope),
            )
        raise ApiError(
            401,
            UNAUTHORIZED,
            f"the token does not allow pushing to {name}",
            headers=self.challenge(realm, scope),
        )

    def token(
        self, authorization: str | None, scopes: Iterable[str], realm: str, now: float
    ) -> dict[str, Any]:
        """Docker token auth: a token for the requested scopes (pull only if anonymous)."""
        user: str | None = None
        if authorization:
            identity = self.identify(authorization, realm)
            user = identity.user
        access: list[dict[str, Any]] = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            if kind != "repository" or not valid_name(name):
                continue
            wanted = [a for a in actions.split(",") if a in ("pull", "push", "delete", "*")]
            granted = wanted if user else [a for a in wanted if a == "pull"]
            if granted:
                access.append({"type": "repository", "name": name, "actions": granted})
        token = self.signer.issue(user, access, now)
        issued = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
        return {
            "token": token,
            "access_token": token,
            "expires_in": TOKEN_SECONDS,
            "issued_at": issued,
        }


def _basic(value: str) -> tuple[str, str]:
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return "\0", ""  # matches no user
    user, _, password = decoded.partition(":")
    return user, password
