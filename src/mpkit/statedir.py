"""mpkit's own state: what it has learnt and must keep (blob locations, engine verdicts),
unlike the cache, which it can always make again."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

STATE_DIR_ENV = "MPKIT_STATE_DIR"


def state_dir() -> Path:
    """``$MPKIT_STATE_DIR``, else the per-user state directory."""
    override = os.environ.get(STATE_DIR_ENV)
    return Path(override) if override else Path(platformdirs.user_state_dir("mpkit"))
