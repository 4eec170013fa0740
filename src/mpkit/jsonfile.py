"""JSON files users edit: precise errors (file, line, column) and atomic writes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mpkit.atomicfile import write_bytes
from mpkit.errors import ConfigError


def load_json_object(path: Path, what: str, *, hint: str) -> dict[str, Any] | None:
    """The JSON object in *path*, or None if the file does not exist.

    Malformed JSON raises ConfigError naming the line and column; *what* names the file
    in messages ("mpkit settings file") and *hint* says how to fix it.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"cannot read the {what} {path}: {exc}", path=str(path), hint=hint
        ) from None
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"the {what} {path} is not valid JSON: {exc.msg} at line {exc.lineno}, "
            f"column {exc.colno}",
            path=str(path), line=exc.lineno, column=exc.colno,
            hint=f"fix the JSON near line {exc.lineno} (a missing or trailing comma is the "
            f"usual cause); {hint}",
        ) from None  # fmt: skip
    if not isinstance(data, dict):
        raise ConfigError(
            f"the {what} {path} must hold a JSON object ({{...}}), not {type(data).__name__}",
            path=str(path), hint=hint,
        )  # fmt: skip
    return data


def write_json_atomic(
    path: Path, data: dict[str, Any], *, mode: int = 0o644, indent: int = 4
) -> None:
    """Write *data* to a temp file beside *path*, fsync, then rename over it."""
    text = json.dumps(data, indent=indent, ensure_ascii=False) + "\n"
    write_bytes(path, text.encode("utf-8"), mode=mode)
