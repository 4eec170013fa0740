"""Command-line entry point: parse, dispatch, print; no logic beyond that."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from mpkit import __version__
from mpkit.cli import (
    build,
    cache,
    daemon,
    image,
    init,
    login,
    logout,
    preload,
    promote,
    registry,
    run,
    verify,
)
from mpkit.cli.common import add_output_options
from mpkit.cli.output import Output
from mpkit.errors import EXIT_FAILED, MpkitError

# One module per command, named after it, in the order --help lists them.
COMMANDS = (build, init, login, logout, image, cache, verify, preload, run, promote, registry,
            daemon)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mpkit",
        description="Build, push and verify containerized VMware Aria Operations management "
        "packs, without a Docker daemon.",
    )
    parser.add_argument("--version", action="version", version=f"mpkit {__version__}")
    add_output_options(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS:
        module.register(commands)
    return parser


# Parsers built ahead of time by the build server before it forks (~8 ms per command);
# building them reads no environment, so every child may use the same ones.
_PREBUILT: dict[str, argparse.ArgumentParser] = {}
_BUILDERS = {"mpkit": build_parser, "mp-build": build.build_mp_build_parser}


def prebuild_parsers() -> None:
    for prog, make in _BUILDERS.items():
        _PREBUILT[prog] = make()


def parser_for(prog: str) -> argparse.ArgumentParser:
    return _PREBUILT.get(prog) or _BUILDERS[prog]()


def main(argv: Sequence[str] | None = None) -> int:
    return run_handler(parser_for("mpkit"), argv)


def run_handler(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    """Parse, run the chosen handler, and map errors to messages and exit codes."""
    args = parser.parse_args(argv)
    json_mode = getattr(args, "json", False)
    debug = getattr(args, "debug", False)
    out = Output(json_mode=json_mode, debug=debug)
    _configure_logging(debug)
    try:
        code: int = args.handler(args, out)
    except MpkitError as exc:
        if debug:
            logging.getLogger("mpkit").exception("command failed")
        out.error(exc)
        return exc.exit_code
    except KeyboardInterrupt:
        out.error(MpkitError("cancelled by the user (Ctrl-C)"))
        return EXIT_FAILED
    except Exception:
        if debug:
            raise
        out.error(
            MpkitError(
                "mpkit hit an internal error",
                hint="run again with --debug for the traceback, and please report it",
            )
        )
        return EXIT_FAILED
    return code


def _configure_logging(debug: bool) -> None:
    # The handler's own level matters: flows raise the "mpkit" logger to DEBUG while they
    # write logs/build.log, and that must not reach the terminal without --debug.
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.DEBUG if debug else logging.WARNING)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(logging.DEBUG if debug else logging.WARNING)
    # httpx/httpcore log full URLs and connection details; our own logs are redacted.
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
