"""Terminal prompts (only ever used on a TTY)."""

from __future__ import annotations

import getpass
import sys


class TerminalPrompter:
    def __init__(self, *, allowed: bool) -> None:
        self.interactive = allowed and bool(sys.stdin and sys.stdin.isatty())

    def ask(self, question: str, default: str | None = None) -> str:
        suffix = f" [{default}]" if default else ""
        answer = input(f"{question}{suffix}: ").strip()
        return answer or (default or "")

    def secret(self, question: str) -> str:
        return getpass.getpass(f"{question}: ")

    def choose(self, question: str, options: list[str]) -> int:
        for number, option in enumerate(options, 1):
            sys.stderr.write(f"  {number}) {option}\n")
        while True:
            answer = input(f"{question} [1-{len(options)}]: ").strip()
            if answer.isdigit() and 1 <= int(answer) <= len(options):
                return int(answer) - 1
