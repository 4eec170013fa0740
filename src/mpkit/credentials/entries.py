"""What docker's config.json and containers' auth.json share: `auths` keys, entries, file I/O."""

from __future__ import annotations

import base64
import binascii
import json
import os
from contextlib import suppress
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mpkit.atomicfile import write_bytes
from mpkit.errors import ConfigError, CredentialError
from mpkit.jsonfile import load_json_object

from .types import Credential

# Docker Hub answers to several names; credentials saved under any of them apply to all.
DOCKER_HUB_HOSTS = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
CANONICAL_DOCKER_HUB_HOST = "docker.io"

# Entry fields that carry credentials (everything else in an entry is left alone).
CREDENTIAL_FIELDS = ("auth", "username", "password", "identitytoken", "registrytoken")


def normalize_host(host: str) -> str:
    """Lowercase *host* and fold Docker Hub's aliases into ``docker.io``."""
    host = host.lower()
    return CANONICAL_DOCKER_HUB_HOST if host in DOCKER_HUB_HOSTS else host


def key_hostname(key: str) -> str:
    """The registry host an `auths`/`credHelpers` key names (docker's ConvertToHostname).

    ``https://host:5000/v2/`` and ``http://host:5000`` give ``host:5000``; ``host:5000/v2/``
    gives ``host:5000``; Docker Hub's ``https://index.docker.io/v1/`` gives ``docker.io``.
    """
    if "://" in key:
        with suppress(ValueError):
            parts = urlsplit(key)
            if parts.hostname:
                host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
                port = parts.port
                return normalize_host(host if port is None else f"{host}:{port}")
        key = key.split("://", 1)[1]
    return normalize_host(key.split("/", 1)[0])


def split_auth_key(key: str) -> tuple[str, str]:
    """Split an auth.json key into (normalised host, repository path or "").

    containers-auth.json(5): URL-style keys name a whole registry; other keys may be
    ``host/namespace/repo`` and apply to that namespace only.
    """
    if key.startswith(("http://", "https://")):
        return key_hostname(key), ""
    host, _, path = key.partition("/")
    return normalize_host(host), path.strip("/")


def encode_basic_auth(username: str, password: str) -> str:
    """The `auth` field: base64 of ``username:password``."""
    return base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


def credential_from_entry(entry: object, *, key: str, path: Path, source: str) -> Credential | None:
    """Decode one `auths` entry; ``None`` when it holds no credential (e.g. docker's ``{}``)."""
    where = f'auths["{key}"] in {path}'
    if not isinstance(entry, dict):
        raise ConfigError(
            f"{where} is not a JSON object.",
            path=str(path),
            hint='Each entry under `auths` must be an object such as {"auth": "..."}.',
        )
    fields = {name: _string_field(entry, name, where, path) for name in CREDENTIAL_FIELDS}
    username, password = fields["username"], fields["password"]
    if fields["auth"]:
        username, password = _decode_auth(fields["auth"], where, path)
    identity_token, registry_token = fields["identitytoken"], fields["registrytoken"]
    if not (username or password or identity_token or registry_token):
        return None
    return Credential(
        username=username or None,
        password=password,
        identity_token=identity_token or None,
        registry_token=registry_token or None,
        source=source,
    )


def _string_field(entry: dict[str, Any], name: str, where: str, path: Path) -> str | None:
    value = entry.get(name)
    if value is None or isinstance(value, str):
        return value
    raise ConfigError(
        f"Field {name!r} of {where} must be a string.",
        path=str(path),
        hint="Remove the entry and log in again with `mpkit login`.",
    )


def _decode_auth(auth: str, where: str, path: Path) -> tuple[str, str]:
    # docker config: auth = base64("user:pass"); split at the first ':'; strip NUL padding.
    hint = "Remove the entry (or run `mpkit logout`) and log in again with `mpkit login`."
    try:
        padded = auth.strip() + "=" * (-len(auth.strip()) % 4)
        decoded = base64.b64decode(padded, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise ConfigError(
            f"The `auth` field of {where} is not valid base64.", path=str(path), hint=hint
        ) from None
    username, sep, password = decoded.partition(":")
    if not sep or not username:
        raise ConfigError(
            f"The `auth` field of {where} does not decode to 'username:password'.",
            path=str(path),
            hint=hint,
        )
    return username, password.strip("\x00")


def read_json_object(path: Path, what: str) -> dict[str, Any] | None:
    """Load a JSON object from *path*; ``None`` if the file does not exist.

    An empty file counts as ``{}`` (docker accepts it too). Error messages never quote
    the document, so no secret can leak from them.
    """
    data = load_json_object(
        path,
        what,
        hint="or move the file away and log in again with `mpkit login`",
    )
    if data is None:
        return None
    auths = data.get("auths")
    if auths is not None and not isinstance(auths, dict):
        raise ConfigError(
            f"`auths` in the {what} {path} must be a JSON object.",
            path=str(path),
            hint='Use the form {"auths": {"registry.example.com": {"auth": "..."}}}.',
        )
    return data


def write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    """Write *data* (tab-indented, like docker) to *path* atomically with mode 0600.

    A symlinked file is replaced at its target, as docker does. Missing directories are
    created with mode 0700.
    """
    target = Path(os.path.realpath(path))
    text = json.dumps(data, indent="\t", ensure_ascii=False) + "\n"
    try:
        write_bytes(target, text.encode("utf-8"), mode=0o600, dir_mode=0o700,
                    sync_directory=True)  # fmt: skip
    except OSError as exc:
        raise CredentialError(
            f"Cannot write {target}: {exc.strerror or exc}.",
            hint="Check that the directory exists and is writable by you, and that the disk "
            "is not full.",
        ) from None
