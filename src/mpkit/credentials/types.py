"""The credential value type shared by every source and by the registry client."""

from __future__ import annotations

from dataclasses import dataclass, field

KIND_BASIC = "basic"
KIND_IDENTITY_TOKEN = "identity_token"  # noqa: S105
KIND_REGISTRY_TOKEN = "registry_token"  # noqa: S105


@dataclass(frozen=True)
class Credential:
    """Username + password, an identity (refresh) token, or a registry (bearer) token.

    Secrets are excluded from ``repr`` and ``str``: only the username, the kind and
    the human-readable ``source`` are ever shown.
    """

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    identity_token: str | None = field(default=None, repr=False)
    registry_token: str | None = field(default=None, repr=False)
    source: str = ""

    @property
    def kind(self) -> str:
        """``"registry_token"``, ``"identity_token"`` or ``"basic"`` (in that priority)."""
        if self.registry_token:
            return KIND_REGISTRY_TOKEN
        if self.identity_token:
            return KIND_IDENTITY_TOKEN
        return KIND_BASIC

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every non-empty secret this credential holds (for redaction)."""
        values = (self.password, self.identity_token, self.registry_token)
        return tuple(value for value in values if value)

    def __repr__(self) -> str:
        return f"Credential(kind={self.kind!r}, username={self.username!r}, source={self.source!r})"

    def __str__(self) -> str:
        who = f" for {self.username!r}" if self.username else ""
        where = f" from {self.source}" if self.source else ""
        return f"{self.kind.replace('_', ' ')} credential{who}{where}"


def redact(text: str, secrets: tuple[str, ...] | list[str]) -> str:
    """Replace every occurrence of each secret in *text* with ``***``."""
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, "***")
    return text
