"""HEALTHCHECK and duration parsing (Docker's `--interval=30s` syntax → nanoseconds)."""

from __future__ import annotations

import re
from typing import Any

_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
          "m": 60_000_000_000, "h": 3_600_000_000_000}  # fmt: skip
_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_FLAGS = {"interval": "Interval", "timeout": "Timeout", "start-period": "StartPeriod",
          "start-interval": "StartInterval"}  # fmt: skip


def parse_duration(text: str) -> int:
    """Go's time.ParseDuration subset: "1m30s", "500ms" → nanoseconds."""
    pos, total = 0, 0.0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(f"invalid duration {text!r} (use e.g. 30s, 1m30s, 500ms)")
    return int(total)


def healthcheck(args: list[str], flags: dict[str, str], json_form: bool) -> dict[str, Any]:
    """The config's Healthcheck object for `HEALTHCHECK [OPTIONS] CMD …` or `NONE`."""
    if args and args[0].upper() == "NONE":
        return {"Test": ["NONE"]}
    if not args or args[0].upper() != "CMD":
        raise ValueError("HEALTHCHECK needs NONE or CMD followed by a command")
    command = args[1:]
    test = ["CMD", *command] if json_form else ["CMD-SHELL", " ".join(command)]
    out: dict[str, Any] = {"Test": test}
    for flag, value in flags.items():
        name = flag.lstrip("-")
        if name in _FLAGS:
            out[_FLAGS[name]] = parse_duration(value)
        elif name == "retries":
            out["Retries"] = int(value)
        else:
            raise ValueError(f"unknown HEALTHCHECK option --{name}")
    return out
