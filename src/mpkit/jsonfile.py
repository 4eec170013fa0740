"""JSON files users edit: precise errors (file, line, column) and atomic writes."""

from __future__ import annotations

import json
import re
import stat
import sys
from pathlib import Path
from typing import Any

from mpkit.atomicfile import write_bytes
from mpkit.errors import ConfigError

# Far deeper than any file mpkit reads (they nest three or four levels), and far below the
# depth at which Python's json module and later processing would exhaust the stack.
MAX_JSON_DEPTH = 100
# Strings are skipped whole, so brackets and digits inside them do not count.
_BRACKETS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')
_NUMBERS = re.compile(r'"(?:[^"\\]|\\.)*"|-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?')


class JSONLimitError(json.JSONDecodeError):
    """Text that may be well-formed JSON but goes beyond what mpkit reads."""


def parse_json(text: str | bytes) -> Any:
    """``json.loads(text)``, with every way hostile text can fail as a JSONDecodeError.

    Besides malformed JSON: nesting deeper than MAX_JSON_DEPTH (which would otherwise end
    in a RecursionError, here or in later processing) and an integer with more digits than
    Python converts (both JSONLimitError). The error's position points at the offending
    bracket or number.
    """
    if isinstance(text, bytes):
        text = text.decode(json.detect_encoding(text), "surrogatepass")
    too_deep = None
    try:
        value = json.loads(text)
    except RecursionError:
        too_deep = _too_deep_at(text) or 0
    except json.JSONDecodeError:
        raise
    except ValueError as exc:  # int() refused a huge integer
        raise _long_integer(text) or JSONLimitError(str(exc), text, 0) from None
    else:
        too_deep = _too_deep_at(text)
    if too_deep is not None:
        raise JSONLimitError(f"nesting deeper than {MAX_JSON_DEPTH} levels", text, too_deep)
    return value


def _too_deep_at(text: str) -> int | None:
    """Where the first bracket beyond MAX_JSON_DEPTH levels is, or None."""
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:
        return None  # cheap and exact: fewer brackets cannot nest deeper
    depth = 0
    for match in _BRACKETS.finditer(text):
        char = match.group()
        if char in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return match.start()
        elif char in "]}":
            depth -= 1
    return None


def _long_integer(text: str) -> JSONLimitError | None:
    limit = sys.get_int_max_str_digits() if hasattr(sys, "get_int_max_str_digits") else 0
    for match in _NUMBERS.finditer(text):
        number = match.group()
        if number.startswith('"') or match.group(1) or match.group(2):
            continue
        digits = len(number.lstrip("-"))
        if limit and digits > limit:
            return JSONLimitError(
                f"an integer with {digits} digits (at most {limit} are allowed)",
                text,
                match.start(),
            )
    return None


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
        data = parse_json(text)
    except json.JSONDecodeError as exc:
        cause = (
            "nothing mpkit reads needs that: restore the file from a backup or version control"
            if isinstance(exc, JSONLimitError)
            else "a missing or trailing comma is the usual cause"
        )
        raise ConfigError(
            f"the {what} {path} is not valid JSON: {exc.msg} at line {exc.lineno}, "
            f"column {exc.colno}",
            path=str(path), line=exc.lineno, column=exc.colno,
            hint=f"fix the JSON near line {exc.lineno} ({cause}); {hint}",
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


def rewrite_json_file(path: Path, data: dict[str, Any], *, indent: int = 4) -> None:
    """Replace the JSON file *path* with *data* atomically, as its owner keeps it: a file
    that is a symbolic link stays one (its target is rewritten), and an existing file
    keeps its mode (a new one gets 0644). Raises OSError when it cannot be written."""
    target = path.resolve() if path.is_symlink() else path
    try:
        mode = stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        mode = 0o644
    write_json_atomic(target, data, mode=mode, indent=indent)
