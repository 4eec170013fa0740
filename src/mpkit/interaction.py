"""How a flow talks to the user: the CLI implements these, the flows never print."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any, Protocol


class Prompter(Protocol):
    """Questions on a terminal. ``interactive`` is False in CI, with --no-ttl or without
    a TTY on stdin; then nothing may be asked and flows fail naming the flag to use."""

    interactive: bool

    def ask(self, question: str, default: str | None = None) -> str: ...

    def secret(self, question: str) -> str: ...

    def choose(self, question: str, options: list[str]) -> int: ...


class Reporter(Protocol):
    def info(self, message: str) -> None: ...

    def warn(self, message: str) -> None: ...

    def progress(self, verb: str) -> AbstractContextManager[Any]: ...


class NoPrompter:
    interactive = False

    def ask(self, question: str, default: str | None = None) -> str:
        raise AssertionError("asked a question without a terminal")

    def secret(self, question: str) -> str:
        raise AssertionError("asked for a secret without a terminal")

    def choose(self, question: str, options: list[str]) -> int:
        raise AssertionError("asked to choose without a terminal")
