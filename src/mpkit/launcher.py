"""Console entry points: hand the command to the resident build server when one can take
it, else run it in this process. Import-light until it knows which (see mpkit.buildserver)."""

from __future__ import annotations

import os
import sys

from mpkit.exiting import exit_process

# Commands that gain from a warm process and need no controlling terminal of their own
# (they read prompts from the passed stdin). init, login/logout, registry, run, preload
# and daemon always run in-process.
SERVED_COMMANDS = frozenset({"build", "image", "verify", "cache"})


def mpkit() -> None:
    exit_process(launch("mpkit", sys.argv[1:]))


def mp_build() -> None:
    exit_process(launch("mp-build", sys.argv[1:]))


def mp_init() -> None:
    from mpkit.cli.init import mp_init_main

    sys.exit(mp_init_main())


def launch(prog: str, args: list[str]) -> int:
    try:
        return _launch(prog, args)
    except KeyboardInterrupt:  # before the CLI's own handling is in place
        sys.stderr.write("error: cancelled by the user (Ctrl-C)\n")
        return 1


def _launch(prog: str, args: list[str]) -> int:
    if _served(prog, args):
        from mpkit.buildserver import paths

        try:
            mode = paths.mode()
        except ValueError as exc:
            sys.stderr.write(f"mpkit: {exc}\n")
            return 2
        if mode != "off":
            code = _through_server(prog, args, mode)
            if code is not None:
                return code
    return run_in_process(prog, args)


def run_in_process(prog: str, args: list[str]) -> int:
    if prog == "mp-build":
        from mpkit.cli.build import mp_build_main

        return mp_build_main(args)
    from mpkit.cli import main

    return main(args)


def _served(prog: str, args: list[str]) -> bool:
    if prog == "mp-build":
        return True
    command = next((arg for arg in args if not arg.startswith("-")), None)
    return command in SERVED_COMMANDS


def _through_server(prog: str, args: list[str], mode: str) -> int | None:
    """The command's exit code from the build server; None to run it here instead.

    "auto" (the default) uses a server that ``mpkit daemon start`` started; "on" also
    starts one when none runs.
    """
    from mpkit.buildserver import client, paths

    if not client.supported():
        return None
    server = paths.server_paths()
    if mode == "auto" and not os.path.exists(server.socket):
        return None  # the usual case: no server, and no cost to find that out
    fingerprint = paths.fingerprint()
    try:
        return client.run(prog, args, server, fingerprint)
    except client.NotServed:
        if mode != "on":
            return None
    from mpkit.buildserver import control
    from mpkit.errors import BuildServerError

    try:
        control.ensure_running(server, fingerprint)
        return client.run(prog, args, server, fingerprint)
    except BuildServerError as exc:
        sys.stderr.write(f"mpkit: warning: {exc.message}; running without it\n")
    except client.NotServed:
        pass
    return None
