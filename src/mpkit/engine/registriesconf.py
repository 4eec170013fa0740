"""A containers-registries.conf(5) for one podman or buildah command
(``CONTAINERS_REGISTRIES_CONF``): the registries mpkit was told about, each with its
mirrors, its API location and whether it may be reached without TLS verification.

The file the engine would read otherwise is kept, except the ``[[registry]]`` tables of
the registries mpkit configures (read with tomllib, so on Python 3.11 and later); the
drop-in files of ``registries.conf.d`` still apply on top, as they always do.
"""

from __future__ import annotations

import datetime
import json
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mpkit.reference import DOCKER_HUB

REGISTRIES_CONF_ENV = "CONTAINERS_REGISTRIES_CONF"
SYSTEM_REGISTRIES_CONF = Path("/etc/containers/registries.conf")
USER_REGISTRIES_CONF = Path(".config/containers/registries.conf")  # under $HOME


@dataclass(frozen=True)
class Mirror:
    location: str  # host[:port][/path]
    insecure: bool = False


@dataclass(frozen=True)
class RegistryRule:
    """One ``[[registry]]`` table: images under *prefix* come from *location* (after the
    mirrors, in order); *insecure* allows plain HTTP and unverified TLS for it."""

    prefix: str
    location: str
    insecure: bool = False
    mirrors: tuple[Mirror, ...] = ()

    def table(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "prefix": self.prefix,
            "location": self.location,
            "insecure": self.insecure,
        }
        if self.mirrors:
            out["mirror"] = [{"location": m.location, "insecure": m.insecure} for m in self.mirrors]
        return out


def engine_registries_conf(environ: Mapping[str, str] | None = None) -> Path | None:
    """The registries.conf podman and buildah read in *environ*, if there is one."""
    env = os.environ if environ is None else environ
    chosen = env.get(REGISTRIES_CONF_ENV)
    if chosen:
        return Path(chosen)
    home = env.get("HOME")
    candidates = ([Path(home) / USER_REGISTRIES_CONF] if home else []) + [SYSTEM_REGISTRIES_CONF]
    return next((path for path in candidates if path.is_file()), None)


def read_registries_conf(path: Path | None) -> dict[str, Any]:
    """The settings in *path* that can be carried over: nothing from a missing or
    unreadable file, from the old version 1 format (which cannot be mixed with
    ``[[registry]]`` tables), or without tomllib (Python 3.10)."""
    if path is None:
        return {}
    try:
        data = _parse_toml(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return {}
    return {} if data is None or "registries" in data else data


if sys.version_info >= (3, 11):
    import tomllib

    def _parse_toml(text: str) -> dict[str, Any] | None:
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError:
            return None

else:

    def _parse_toml(text: str) -> dict[str, Any] | None:
        return None


def registries_conf_text(rules: Iterable[RegistryRule], carried: Mapping[str, Any]) -> str:
    """The file: *carried* settings, their ``[[registry]]`` tables for other registries,
    then *rules*. A short name means Docker Hub, as for docker, unless *carried* says
    otherwise."""
    rules = list(rules)
    ours = {rule.prefix for rule in rules} | {rule.location for rule in rules}
    theirs = [
        table
        for table in carried.get("registry", [])
        if isinstance(table, dict)
        and table.get("prefix", table.get("location")) not in ours
        and table.get("location") not in ours
    ]
    data = {key: value for key, value in carried.items() if key != "registry"}
    data.setdefault("unqualified-search-registries", [DOCKER_HUB])
    data["registry"] = [*theirs, *(rule.table() for rule in rules)]
    # Every value inline (TOML 1.0 inline tables): one key per line, no table headers.
    return "".join(f"{_key(key)} = {_value(value)}\n" for key, value in data.items())


def _key(key: str) -> str:
    return json.dumps(key)  # a quoted key is valid for any name


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()  # TOML's local and offset dates and times are RFC 3339
    raise TypeError(f"no TOML form for {type(value).__name__}")
