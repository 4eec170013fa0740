"""Which repository, which memory limit: one function per setting, with mp-build's
precedence and the cloud proxy's limits.

Each function applies one precedence rule, so the CLI never mixes flags and config
files itself. Repositories come back normalised by :mod:`mpkit.reference`
(``user/repo`` -> ``docker.io/user/repo``, ``alpine`` -> ``docker.io/library/alpine``).
"""

from __future__ import annotations

from mpkit.errors import InvalidReferenceError, UsageError
from mpkit.project.model import GlobalConfig, ProjectConfig
from mpkit.reference import parse_repository

# The cloud proxy runs the adapter with swap = memory limit + 512 MB.
SWAP_EXTRA_MB = 512
PULL_FLAG = "--registry-tag"
PUSH_FLAG = "--push-registry"


def normalize_repository(text: str, *, source: str) -> str:
    """*text* as a normalised ``registry/path``; a tag, a digest or bad syntax is an error.

    *source* says where the text came from (``"--registry-tag"``, ``"config.json
    container_repository"``) and starts the message of the InvalidReferenceError.
    """
    try:
        return str(parse_repository(text))
    except InvalidReferenceError as exc:
        raise InvalidReferenceError(f"{source}: {exc.message}", hint=exc.hint) from None


def _flag_repository(text: str, flag: str) -> str:
    try:
        return normalize_repository(text, source=flag)
    except InvalidReferenceError as exc:
        raise UsageError(exc.message, hint=exc.hint) from None


def pull_repository(flag: str | None, config: ProjectConfig) -> str | None:
    """As mp-build: ``--registry-tag`` > ``container_repository`` > None (the caller must
    prompt).

    An empty flag (``-r`` given without a value, as mp-build allows) counts as absent.
    """
    if flag:
        return _flag_repository(flag, PULL_FLAG)
    return config.container_repository


def push_repository(flag: str | None, config: ProjectConfig, pull: str) -> str:
    """As mp-build: ``--push-registry`` > ``container_push_repository`` > the pull repository."""
    if flag:
        return _flag_repository(flag, PUSH_FLAG)
    return config.container_push_repository or pull


def default_repository(global_config: GlobalConfig, adapter_kind: str) -> str | None:
    """The prompt's default: ``default_container_registry_path`` + the kind in lower case.

    The SDK expects the path to end with '/'; one is added when it does not. None when
    the global config has no such path. The result is a suggestion, not validated.
    """
    prefix = (global_config.default_container_registry_path or "").strip()
    if not prefix:
        return None
    if not prefix.endswith("/"):
        prefix += "/"
    return prefix + adapter_kind.lower()


def memory_limits(config: ProjectConfig) -> tuple[int, int]:
    """(memory limit, memory+swap limit) in MB, as the cloud proxy sets them."""
    limit = config.default_memory_limit
    return limit, limit + SWAP_EXTRA_MB
