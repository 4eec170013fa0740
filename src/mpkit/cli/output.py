"""Printing: human text (rich on a TTY, plain lines otherwise) or one JSON object."""

from __future__ import annotations

import json
import sys
import threading
from contextlib import AbstractContextManager
from typing import Any, TextIO

from mpkit.errors import MpkitError
from mpkit.image.types import Descriptor


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def short(digest: str) -> str:
    algorithm, _, hexpart = digest.partition(":")
    return f"{algorithm}:{hexpart[:12]}"


class Output:
    """Where a command's results and messages go."""

    def __init__(
        self,
        *,
        json_mode: bool,
        debug: bool,
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
    ) -> None:
        self.json_mode = json_mode
        self.debug = debug
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        self.interactive = self.stderr.isatty()

    def result(self, data: dict[str, Any], text: str) -> None:
        """The command's answer: JSON on stdout with --json, else *text*."""
        if self.json_mode:
            self.stdout.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
        elif text:
            self.stdout.write(text.rstrip("\n") + "\n")
        self.stdout.flush()

    def info(self, message: str) -> None:
        if not self.json_mode:
            self.stderr.write(message + "\n")
            self.stderr.flush()

    def warn(self, message: str) -> None:
        self.stderr.write(f"warning: {message}\n")
        self.stderr.flush()

    def error(self, exc: MpkitError) -> None:
        if self.json_mode:
            self.stdout.write(json.dumps(exc.to_dict(), indent=2, sort_keys=True) + "\n")
            self.stdout.flush()
        text = f"error: {exc.message}"
        if exc.hint:
            text += f"\n  hint: {exc.hint}"
        self.stderr.write(text + "\n")
        self.stderr.flush()

    def jobs(self, names: list[str]) -> AbstractContextManager[Any]:
        """One view of several jobs (a live table on a TTY, a line per event otherwise):
        ``start(name)`` and ``done(name, ok, detail)``."""
        if self.json_mode:
            return _QuietJobs()
        if self.interactive:
            return _RichJobs(self.stderr, names)
        return _LineJobs(self.stderr)

    def progress(self, verb: str) -> AbstractContextManager[Any]:
        """A progress renderer for a transfer (rich bars on a TTY, lines otherwise)."""
        if self.json_mode:
            return _Quiet()
        if self.interactive:
            return _RichProgress(self.stderr, verb)
        return _LineProgress(self.stderr)


class _Quiet:
    def __enter__(self) -> _Quiet:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def start(self, descriptor: Descriptor, action: str) -> None:
        pass

    def advance(self, descriptor: Descriptor, nbytes: int) -> None:
        pass

    def reset(self, descriptor: Descriptor) -> None:
        pass

    def finish(self, descriptor: Descriptor, outcome: str) -> None:
        pass


class _LineProgress(_Quiet):
    """One line per finished blob: readable in CI logs."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.lock = threading.Lock()

    def finish(self, descriptor: Descriptor, outcome: str) -> None:
        with self.lock:
            self.stream.write(
                f"{short(descriptor.digest)}  {outcome:<10} {human_size(descriptor.size)}\n"
            )
            self.stream.flush()


class _RichProgress(_Quiet):
    def __init__(self, stream: TextIO, verb: str) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TransferSpeedColumn,
        )

        self.bars = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=Console(file=stream),
            transient=False,
        )
        self.verb = verb
        self.tasks: dict[str, Any] = {}
        self.lock = threading.Lock()

    def __enter__(self) -> _RichProgress:
        self.bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bars.stop()

    def _task(self, descriptor: Descriptor) -> Any:
        with self.lock:
            if descriptor.digest not in self.tasks:
                self.tasks[descriptor.digest] = self.bars.add_task(
                    f"{short(descriptor.digest)} {self.verb}", total=descriptor.size
                )
            return self.tasks[descriptor.digest]

    def start(self, descriptor: Descriptor, action: str) -> None:
        self._task(descriptor)

    def advance(self, descriptor: Descriptor, nbytes: int) -> None:
        self.bars.advance(self._task(descriptor), nbytes)

    def reset(self, descriptor: Descriptor) -> None:
        self.bars.reset(self._task(descriptor), total=descriptor.size)

    def finish(self, descriptor: Descriptor, outcome: str) -> None:
        task = self._task(descriptor)
        self.bars.update(
            task, completed=descriptor.size, description=f"{short(descriptor.digest)} {outcome}"
        )


class _QuietJobs:
    def __enter__(self) -> _QuietJobs:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def start(self, name: str) -> None:
        pass

    def done(self, name: str, ok: bool, detail: str) -> None:
        pass


class _LineJobs(_QuietJobs):
    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.lock = threading.Lock()

    def _line(self, text: str) -> None:
        with self.lock:
            self.stream.write(text + "\n")
            self.stream.flush()

    def start(self, name: str) -> None:
        self._line(f"building {name}")

    def done(self, name: str, ok: bool, detail: str) -> None:
        self._line(f"{'built' if ok else 'FAILED'} {name}: {detail}")


class _RichJobs(_QuietJobs):
    def __init__(self, stream: TextIO, names: list[str]) -> None:
        from rich.console import Console
        from rich.live import Live

        self.states = dict.fromkeys(names, "waiting")
        self.lock = threading.Lock()
        self.live = Live(self._table(), console=Console(file=stream), auto_refresh=False)

    def _table(self) -> Any:
        from rich.table import Table

        table = Table(show_header=False, box=None)
        for name, state in self.states.items():
            table.add_row(name, state)
        return table

    def __enter__(self) -> _RichJobs:
        self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.stop()

    def _set(self, name: str, state: str) -> None:
        with self.lock:
            self.states[name] = state
            self.live.update(self._table(), refresh=True)

    def start(self, name: str) -> None:
        self._set(name, "building…")

    def done(self, name: str, ok: bool, detail: str) -> None:
        self._set(name, f"{'built' if ok else 'FAILED'}: {detail}")
