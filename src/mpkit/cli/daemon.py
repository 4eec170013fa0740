"""`mpkit daemon start|stop|status`: the resident build server."""

from __future__ import annotations

import argparse
import os
import time

from mpkit.buildserver import control, paths
from mpkit.cli.common import add_output_options
from mpkit.cli.output import Output


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    daemon = subparsers.add_parser(
        "daemon",
        help="the resident build server that makes repeated builds start instantly",
        description="A resident mpkit that has already imported itself and forks one child "
        "per command, so that build, image, verify and cache commands start instantly. Off "
        "until 'mpkit daemon start'; then commands use it until it stops, after "
        f"{paths.ENV_IDLE} seconds without commands (default "
        f"{paths.DEFAULT_IDLE_SECONDS // 60} minutes) or on 'mpkit daemon stop'. "
        f"{paths.ENV_MODE}=on also starts one when none runs; off never uses one.",
    )
    add_output_options(daemon)
    daemon.set_defaults(handler=cmd_status)
    verbs = daemon.add_subparsers(dest="verb", metavar="VERB")
    for name, handler, text in (
        ("status", cmd_status, "whether a server runs for this mpkit, and its state (default)"),
        ("start", cmd_start, "start a server (or keep the running one) and wait until it answers"),
        ("stop", cmd_stop, "stop the server; commands it is running finish first"),
    ):
        verb = verbs.add_parser(name, help=text, description=text)
        add_output_options(verb)
        verb.set_defaults(handler=handler)


def cmd_status(args: argparse.Namespace, out: Output) -> int:
    where = paths.server_paths()
    found = control.status(where)
    if found is None:
        out.result(
            {"running": False, "socket": where.socket, "mode": _mode()},
            f"No build server is running (socket {where.socket}).",
        )
        return 0
    current = found.get("fingerprint") == paths.fingerprint()
    data = {**found, "running": True, "current": current, "mode": _mode()}
    out.result(data, _describe(found, current))
    return 0


def cmd_start(args: argparse.Namespace, out: Output) -> int:
    where = paths.server_paths()
    found, already = control.ensure_running(where, paths.fingerprint())
    text = _describe(found, True)
    out.result({**found, "running": True, "already_running": already}, text)
    return 0


def cmd_stop(args: argparse.Namespace, out: Output) -> int:
    where = paths.server_paths()
    found = control.stop(where)
    if found is None:
        out.result({"stopped": False}, "No build server was running.")
        return 0
    running = found.get("commands_running", 0)
    text = f"Stopped the build server (pid {found.get('pid')})."
    if running:
        text += f" The {running} command(s) it started run to their end."
    out.result({**found, "stopped": True}, text)
    return 0


def _describe(found: dict[str, object], current: bool) -> str:
    started = found.get("started")
    uptime = time.time() - started if isinstance(started, float) else 0.0
    lines = [
        f"Build server:  pid {found.get('pid')}, up {uptime:.0f} s, "
        f"{found.get('served')} command(s) served, {found.get('commands_running')} running",
        f"Socket:        {found.get('socket')}",
        f"Idle timeout:  {found.get('idle_seconds')} s",
    ]
    if not current:
        lines.append("Code:          stale (mpkit changed since it started; it stops on next use)")
    return "\n".join(lines)


def _mode() -> str:
    try:
        return paths.mode()
    except ValueError:
        return os.environ.get(paths.ENV_MODE, "")
