"""The containers ``auth.json`` (podman, buildah, skopeo): read-only lookup.

containers-auth.json(5): keys are ``host`` or ``host/namespace[/repo]``; for a repository
the most specific key wins (``host/ns/repo``, then ``host/ns``, then ``host``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from .dockerconfig import home_dir
from .entries import credential_from_entry, normalize_host, read_json_object, split_auth_key
from .types import Credential

REGISTRY_AUTH_FILE_ENV = "REGISTRY_AUTH_FILE"
WHAT = "containers auth file"


def auth_json_paths(environ: Mapping[str, str] | None = None) -> list[Path]:
    """The files to read, in order.

    ``$REGISTRY_AUTH_FILE`` alone when set; otherwise podman's primary file
    ``$XDG_RUNTIME_DIR/containers/auth.json`` followed by its fallback
    ``${XDG_CONFIG_HOME:-~/.config}/containers/auth.json``.
    """
    env = os.environ if environ is None else environ
    explicit = env.get(REGISTRY_AUTH_FILE_ENV)
    if explicit:
        return [Path(explicit)]
    paths: list[Path] = []
    runtime_dir = env.get("XDG_RUNTIME_DIR")
    if runtime_dir:
        paths.append(Path(runtime_dir) / "containers" / "auth.json")
    config_home = env.get("XDG_CONFIG_HOME")
    config_dir = Path(config_home) if config_home else home_dir(environ) / ".config"
    paths.append(config_dir / "containers" / "auth.json")
    return list(dict.fromkeys(paths))


def auth_json_credential(
    registry: str,
    *,
    repository: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Credential | None:
    """The credential for *registry* (and optionally *repository*) from the auth.json files."""
    for path in auth_json_paths(environ):
        data = read_json_object(path, WHAT)
        if data is None:
            continue
        found = lookup_auths(data.get("auths") or {}, registry, repository, path)
        if found is not None:
            return found
    return None


def lookup_auths(
    auths: Mapping[str, object], registry: str, repository: str | None, path: Path
) -> Credential | None:
    """Most specific match in one file's `auths` for host (+ repository path)."""
    host = normalize_host(registry)
    keys_by_scope: dict[tuple[str, str], list[str]] = {}
    for key in auths:
        keys_by_scope.setdefault(split_auth_key(key), []).append(key)
    for scope in repository_scopes(repository):
        for key in keys_by_scope.get((host, scope), []):
            found = credential_from_entry(auths[key], key=key, path=path, source=str(path))
            if found is not None:
                return found
    return None


def repository_scopes(repository: str | None) -> list[str]:
    """``ns/sub/repo`` -> ``["ns/sub/repo", "ns/sub", "ns", ""]`` ("" is the whole registry)."""
    parts = [p for p in (repository or "").strip("/").split("/") if p]
    return ["/".join(parts[:n]) for n in range(len(parts), 0, -1)] + [""]
