"""Running an engine program: its environment, its output, and the tail of that output
that failures quote."""

from __future__ import annotations

import collections
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from mpkit.childenv import child_environment

TAIL_LINES = 3
TAIL_CHARS = 800
STREAM_KEEP_LINES = 200  # of a streamed command's output, for its failure message


def engine_environment(**overrides: str) -> dict[str, str]:
    """The environment for engine commands: the child environment (no mpkit secrets).

    podman 4 fails every command when $DOCKER_CONFIG names a directory without a
    config.json ("stat …/config.json: no such file or directory"); such a directory holds
    no credentials anyway, so the variable is left out. *overrides* apply last.
    """
    env = child_environment()
    docker_config = env.get("DOCKER_CONFIG")
    if docker_config and not (Path(docker_config) / "config.json").exists():
        del env["DOCKER_CONFIG"]
    env.update(overrides)
    return env


def output_tail(
    text: str, *, lines: int = TAIL_LINES, separator: str = " | ", limit: int = TAIL_CHARS
) -> str:
    """The last *lines* non-blank lines of a program's output, at most *limit* characters."""
    kept = [line.rstrip() for line in text.splitlines() if line.strip()]
    return separator.join(kept[-lines:])[-limit:] or "(no output)"


def run_captured(
    argv: Sequence[str], *, env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    """Run *argv* without input; its stdout and stderr captured. Raises OSError and
    subprocess.TimeoutExpired."""
    return subprocess.run(
        list(argv), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
        env=env, check=False,
    )  # fmt: skip


def run_streamed(
    argv: Sequence[str], *, env: dict[str, str], log: Callable[[str], None]
) -> subprocess.CompletedProcess[str]:
    """Run *argv* without input, passing each line of its output (stdout and stderr
    merged) to *log* as it comes; the result's stdout keeps the last lines. Raises OSError."""
    with subprocess.Popen(
        list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, env=env,
    ) as process:  # fmt: skip
        assert process.stdout is not None
        kept: collections.deque[str] = collections.deque(maxlen=STREAM_KEEP_LINES)
        for line in process.stdout:
            line = line.rstrip("\n")
            log(line)
            kept.append(line)
        returncode = process.wait()
    return subprocess.CompletedProcess(list(argv), returncode, "\n".join(kept), "")
