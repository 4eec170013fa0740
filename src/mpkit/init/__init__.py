"""``mpkit init`` / ``mp-init``: a new Python adapter project that builds as it is."""

from __future__ import annotations

from mpkit.init.project import (
    TEMPLATE_NAMES,
    InitOptions,
    adapter_kind_problem,
    check_options,
    create_project,
)

__all__ = [
    "TEMPLATE_NAMES",
    "InitOptions",
    "adapter_kind_problem",
    "check_options",
    "create_project",
]
