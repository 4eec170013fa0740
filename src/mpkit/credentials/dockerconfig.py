"""Docker's client config file: ``$DOCKER_CONFIG/config.json`` (default ``~/.docker``)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mpkit.errors import ConfigError

from .entries import (
    CREDENTIAL_FIELDS,
    credential_from_entry,
    encode_basic_auth,
    key_hostname,
    normalize_host,
    read_json_object,
    write_json_atomically,
)
from .types import KIND_REGISTRY_TOKEN, Credential

DOCKER_CONFIG_ENV = "DOCKER_CONFIG"
CONFIG_FILENAME = "config.json"
WHAT = "docker config file"


def home_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$HOME`` from *environ* when given, else the current user's home."""
    if environ is not None and environ.get("HOME"):
        return Path(environ["HOME"])
    return Path.home()


def docker_config_path(environ: Mapping[str, str] | None = None) -> Path:
    """``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``."""
    env = os.environ if environ is None else environ
    directory = env.get(DOCKER_CONFIG_ENV)
    base = Path(directory) if directory else home_dir(env) / ".docker"
    return base / CONFIG_FILENAME


@dataclass(frozen=True)
class HelperChoice:
    """A credential helper named by the config, and which key named it."""

    name: str
    configured_by: str  # e.g. 'credsStore in /home/u/.docker/config.json'


@dataclass
class DockerConfig:
    """The parsed file. ``data`` keeps every key (known or not) in file order."""

    path: Path
    data: dict[str, Any] = field(default_factory=dict)
    exists: bool = False

    @property
    def creds_store(self) -> str | None:
        value = self.data.get("credsStore")
        return value if isinstance(value, str) and value else None

    @property
    def cred_helpers(self) -> dict[str, str]:
        value = self.data.get("credHelpers")
        if not isinstance(value, dict):
            return {}
        return {k: v for k, v in value.items() if isinstance(v, str) and v}

    @property
    def auths(self) -> dict[str, Any]:
        value = self.data.get("auths")
        return value if isinstance(value, dict) else {}

    def host_helper(self, registry: str, key: str) -> HelperChoice | None:
        """``credHelpers`` entry for the registry: exact *key*, then by hostname."""
        helpers = self.cred_helpers
        matches = _matching_keys(helpers, registry, key)
        if not matches:
            return None
        return HelperChoice(helpers[matches[0]], f'credHelpers["{matches[0]}"] in {self.path}')

    def store_helper(self) -> HelperChoice | None:
        """The default helper (``credsStore``), if configured."""
        if self.creds_store is None:
            return None
        return HelperChoice(self.creds_store, f"credsStore in {self.path}")

    def helpers_for(self, registry: str, key: str) -> list[HelperChoice]:
        """Helpers to consult, in order: ``credHelpers[host]``, then ``credsStore``."""
        choices = [c for c in (self.host_helper(registry, key), self.store_helper()) if c]
        if len(choices) == 2 and choices[0].name == choices[1].name:
            return choices[:1]
        return choices

    def auth_keys_for(self, registry: str, key: str) -> list[str]:
        """Every `auths` key naming this registry: the exact *key* first, then others by host."""
        return _matching_keys(self.auths, registry, key)

    def credential(self, registry: str, key: str) -> Credential | None:
        """The credential stored in `auths` for the registry, if any."""
        for auth_key in self.auth_keys_for(registry, key):
            found = credential_from_entry(
                self.auths[auth_key], key=auth_key, path=self.path, source=str(self.path)
            )
            if found is not None:
                return found
        return None

    def set_credential(self, key: str, credential: Credential) -> None:
        """Put *credential* into ``auths[key]``; other fields of that entry are kept."""
        if not isinstance(self.data.get("auths"), dict):
            self.data["auths"] = {}
        old = self.data["auths"].get(key)
        entry: dict[str, Any] = {}
        if isinstance(old, dict):
            entry = _without_credentials(old)
        if credential.kind == KIND_REGISTRY_TOKEN:
            entry["registrytoken"] = credential.registry_token
        elif credential.username or credential.password:
            entry["auth"] = encode_basic_auth(credential.username or "", credential.password or "")
        if credential.identity_token:
            entry["identitytoken"] = credential.identity_token
        self.data["auths"][key] = entry

    def clear_credentials(self, registry: str, key: str, *, drop_entries: bool) -> list[str]:
        """Remove credential fields (or whole entries) for the registry; returns the keys hit."""
        hit: list[str] = []
        for auth_key in self.auth_keys_for(registry, key):
            entry = self.auths[auth_key]
            if drop_entries:
                del self.auths[auth_key]
                hit.append(auth_key)
            elif isinstance(entry, dict) and any(f in entry for f in CREDENTIAL_FIELDS):
                self.auths[auth_key] = _without_credentials(entry)
                hit.append(auth_key)
        return hit

    def save(self) -> None:
        """Atomic write, mode 0600, all other keys preserved, tab indentation like docker."""
        write_json_atomically(self.path, self.data)
        self.exists = True


def load_docker_config(
    path: Path | None = None, *, environ: Mapping[str, str] | None = None
) -> DockerConfig:
    """Read the docker config file; a missing file gives an empty config."""
    path = path if path is not None else docker_config_path(environ)
    data = read_json_object(path, WHAT)
    if data is None:
        return DockerConfig(path=path)
    if "credHelpers" in data and not isinstance(data["credHelpers"], dict):
        raise ConfigError(
            f"`credHelpers` in the {WHAT} {path} must be a JSON object.",
            path=str(path),
            hint='Use the form {"credHelpers": {"registry.example.com": "pass"}}.',
        )
    if "credsStore" in data and not isinstance(data["credsStore"], str):
        raise ConfigError(
            f"`credsStore` in the {WHAT} {path} must be a string.",
            path=str(path),
            hint='Use the form {"credsStore": "pass"} (the helper name without the '
            "docker-credential- prefix).",
        )
    return DockerConfig(path=path, data=data, exists=True)


def _without_credentials(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if k not in CREDENTIAL_FIELDS}


def _matching_keys(mapping: Mapping[str, Any], registry: str, key: str) -> list[str]:
    # docker's file store: exact key first, then any key whose hostname matches.
    exact = [k for k in (key, registry) if k in mapping]
    host = normalize_host(registry)
    by_host = [k for k in mapping if k not in exact and key_hostname(k) == host]
    return list(dict.fromkeys(exact)) + by_host
