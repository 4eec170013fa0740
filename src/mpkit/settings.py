"""mpkit's own settings: registry mirrors, image aliases and insecure registries.

Read from ``$MPKIT_CONFIG`` or ``<user config dir>/mpkit/settings.json``::

    {
      "mirrors": {"projects.packages.broadcom.com": ["harbor.corp.example/broadcom-proxy"]},
      "aliases": {"base-adapter:python-1.2.0": "harbor.corp.example/sdk/base-adapter:python-1.2.0"},
      "insecure_registries": ["lab-registry.local:5000"],
      "endpoints": {"harbor.corp.example": "harbor-internal.corp.example:8443"},
      "base_recheck_seconds": 300,
      "allow_external_links": false
    }

``endpoints`` serves a registry's API from another host (containers-registries.conf's
"location"): names and credentials stay the registry's own. ``base_recheck_seconds``: how
long a base image tag resolved by a build is trusted before the next build asks its
registry again (default 300; 0: every build; ``--pull`` forces a check).
``allow_external_links``: follow symbolic links that leave the project when building the
pack and the image (see :mod:`mpkit.project.links`; default false).

For CI, environment variables add to it: ``MPKIT_MIRRORS`` ("registry=mirror,..."),
``MPKIT_IMAGE_ALIASES`` ("name=reference,..."), ``MPKIT_INSECURE_REGISTRIES``
("host[:port],..."), ``MPKIT_REGISTRY_ENDPOINTS`` ("registry=host[:port],..."),
``MPKIT_BASE_RECHECK`` (seconds) and ``MPKIT_ALLOW_EXTERNAL_LINKS`` (1 or 0).

``mpkit build`` writes one thing here: the alias of an SDK local base it published
(:func:`record_alias`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

from mpkit.errors import ConfigError, InvalidReferenceError
from mpkit.filelock import held
from mpkit.jsonfile import load_json_object, rewrite_json_file
from mpkit.project.links import ALLOW_ENV, ALLOW_SETTING
from mpkit.reference import normalize_registry

CONFIG_ENV = "MPKIT_CONFIG"
MIRRORS_ENV = "MPKIT_MIRRORS"
ALIASES_ENV = "MPKIT_IMAGE_ALIASES"
INSECURE_ENV = "MPKIT_INSECURE_REGISTRIES"
ENDPOINTS_ENV = "MPKIT_REGISTRY_ENDPOINTS"
BASE_RECHECK_ENV = "MPKIT_BASE_RECHECK"
DEFAULT_BASE_RECHECK_SECONDS = 300.0
_HINT = 'see "mpkit settings" in README.md for the format'


@dataclass(frozen=True)
class Settings:
    mirrors: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # registry → prefixes
    aliases: Mapping[str, str] = field(default_factory=dict)  # local name → reference
    insecure_registries: frozenset[str] = frozenset()
    endpoints: Mapping[str, str] = field(default_factory=dict)  # registry → API host[:port]
    base_recheck_seconds: float = DEFAULT_BASE_RECHECK_SECONDS
    allow_external_links: bool = False
    path: Path | None = None


def settings_path(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    override = env.get(CONFIG_ENV)
    if override:
        return Path(override)
    return Path(platformdirs.user_config_dir("mpkit")) / "settings.json"


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    path = settings_path(env)
    data = load_json_object(path, "mpkit settings file", hint=_HINT) or {}
    mirrors: dict[str, list[str]] = {}
    for registry, targets in _mapping(data, "mirrors", path).items():
        values = [targets] if isinstance(targets, str) else targets
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise _bad(path, f"mirrors[{registry!r}] must be a string or a list of strings")
        mirrors.setdefault(_registry(registry, path), []).extend(values)
    aliases = {str(k): str(v) for k, v in _mapping(data, "aliases", path).items()}
    insecure_list = data.get("insecure_registries", [])
    if not isinstance(insecure_list, list):
        raise _bad(path, "insecure_registries must be a list of host[:port] strings")
    insecure = {_registry(str(h), path) for h in insecure_list}
    for registry, mirror in _pairs(env.get(MIRRORS_ENV, ""), MIRRORS_ENV):
        mirrors.setdefault(_registry(registry, None), []).insert(0, mirror)
    for name, reference in _pairs(env.get(ALIASES_ENV, ""), ALIASES_ENV):
        aliases[name] = reference
    insecure |= {_registry(h, None) for h in env.get(INSECURE_ENV, "").split(",") if h.strip()}
    endpoints = {
        _registry(str(k), path): _registry(str(v), path)
        for k, v in _mapping(data, "endpoints", path).items()
    }
    for registry, endpoint in _pairs(env.get(ENDPOINTS_ENV, ""), ENDPOINTS_ENV):
        endpoints[_registry(registry, None)] = _registry(endpoint, None)
    return Settings(
        mirrors={k: tuple(v) for k, v in mirrors.items()},
        aliases=aliases,
        insecure_registries=frozenset(insecure),
        endpoints=endpoints,
        base_recheck_seconds=_base_recheck(data, env, path),
        allow_external_links=_allow_external_links(data, env, path),
        path=path,
    )


def record_alias(name: str, reference: str, path: Path | None = None) -> Path:
    """Point the image alias *name* at *reference* in the settings file *path* (default:
    :func:`settings_path`); returns the path.

    The file is read and rewritten under a lock on its directory (two builds recording
    aliases at once both keep theirs) and replaced atomically with its mode kept: every
    other key, known or not, stays as it was. A settings file that is a symbolic link stays
    one (its target is rewritten). Raises ConfigError when the file is invalid or cannot
    be written."""
    path = path or settings_path()
    target = path.resolve() if path.is_symlink() else path
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with held(target.parent):
            data = load_json_object(target, "mpkit settings file", hint=_HINT) or {}
            aliases = _mapping(data, "aliases", path)
            data["aliases"] = {**aliases, name: reference}
            rewrite_json_file(target, data, indent=2)
    except OSError as exc:
        raise ConfigError(
            f"cannot write the mpkit settings file {path}: {exc.strerror or exc}",
            path=str(path),
            hint=f"make {target.parent} writable, or set {ALIASES_ENV}={name}={reference}",
        ) from None
    return path


def _allow_external_links(data: dict[str, Any], env: Mapping[str, str], path: Path) -> bool:
    """MPKIT_ALLOW_EXTERNAL_LINKS (1/0, true/false, yes/no), else the settings file."""
    text = env.get(ALLOW_ENV, "").strip().lower()
    if text:
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ConfigError(
            f"{ALLOW_ENV}={text!r} is neither 1 nor 0",
            hint=f"set {ALLOW_ENV}=1 to follow symbolic links that leave the project, or 0",
        )
    value = data.get(ALLOW_SETTING, False)
    if not isinstance(value, bool):
        raise _bad(path, f"{ALLOW_SETTING} must be true or false")
    return value


def _base_recheck(data: dict[str, Any], env: Mapping[str, str], path: Path) -> float:
    text = env.get(BASE_RECHECK_ENV, "").strip()
    if text:
        try:
            value = float(text)
        except ValueError:
            value = -1.0
        if not value >= 0:
            raise ConfigError(
                f"{BASE_RECHECK_ENV}={text!r} is not a number of seconds (0 or more)",
                hint="e.g. MPKIT_BASE_RECHECK=300, or 0 to ask the registry on every build",
            )
        return value
    value = data.get("base_recheck_seconds", DEFAULT_BASE_RECHECK_SECONDS)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise _bad(path, "base_recheck_seconds must be a number of seconds (0 or more)")
    return float(value)


def _mapping(data: dict[str, Any], key: str, path: Path) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise _bad(path, f"{key} must be a JSON object")
    return value


def _pairs(text: str, variable: str) -> list[tuple[str, str]]:
    pairs = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ConfigError(
                f"{variable} entry {item!r} is not NAME=VALUE",
                hint=f"e.g. {variable}=projects.packages.broadcom.com=127.0.0.1:5000",
            )
        pairs.append((key.strip(), value.strip()))
    return pairs


def _registry(text: str, path: Path | None) -> str:
    try:
        return normalize_registry(text)
    except InvalidReferenceError as exc:
        if path is None:
            raise
        raise _bad(path, exc.message) from exc


def _bad(path: Path, message: str) -> ConfigError:
    return ConfigError(f"mpkit settings file {path}: {message}", path=str(path), hint=_HINT)
