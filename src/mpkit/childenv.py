"""The environment of the programs mpkit starts (uv, container engines, credential helpers,
the adapter's own code): the caller's, without the registry secret mpkit was given."""

from __future__ import annotations

import os
from collections.abc import Mapping

# Variables that carry a secret meant for mpkit only (credentials.ENV_PASSWORD); no child
# program needs them.
PRIVATE_VARIABLES = frozenset({"MPKIT_REGISTRY_PASSWORD"})


def child_environment(base: Mapping[str, str] | None = None, **overrides: str) -> dict[str, str]:
    """*base* (default: this process's environment) minus mpkit's secrets, plus *overrides*."""
    source = os.environ if base is None else base
    env = {name: value for name, value in source.items() if name not in PRIVATE_VARIABLES}
    env.update(overrides)
    return env
