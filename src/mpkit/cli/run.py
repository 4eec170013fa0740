"""`mpkit run PACK`: run a pack's image as a cloud proxy would."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mpkit.cli.common import add_default_registry_option, add_output_options, default_registry
from mpkit.cli.output import Output
from mpkit.engine import EngineChoice
from mpkit.errors import EXIT_OK, InvalidReferenceError, UsageError
from mpkit.project.load import MIN_MEMORY_LIMIT_MB
from mpkit.reference import normalize_registry
from mpkit.verify.run import run_pack


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = subparsers.add_parser(
        "run",
        help="run a pack's image as a cloud proxy would (needs podman or docker)",
        description="Look for the pack's image locally by digest, pull it anonymously if it "
        "is absent, start it with the memory limit (swap 512 MB above it) and the adapter "
        "port published on 127.0.0.1, wait for GET /apiVersion, print it, then remove the "
        "container (also on Ctrl-C).",
        epilog="The memory limit is --memory, else default_memory_limit from the project's "
        "config.json when PACK is in <project>/build/, else 1024 MB.",
    )
    run.add_argument("pack", type=Path, metavar="PACK", help="the .pak file")
    run.add_argument("--engine", choices=EngineChoice.names(to_run=True), default="auto",
                     help="container engine (default: podman, else docker)")  # fmt: skip
    run.add_argument("--memory", type=int, metavar="MB", help="memory limit in MB")
    run.add_argument("-P", "--port", type=int, metavar="PORT",
                     help="host port for the adapter on 127.0.0.1 (default: any free)")  # fmt: skip
    run.add_argument("--keep", action="store_true",
                     help="leave the container running and print its URL")  # fmt: skip
    run.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                     help="how long to wait for GET /apiVersion (default 60)")  # fmt: skip
    run.add_argument("--insecure-registry", action="append", default=[], metavar="HOST[:PORT]",
                     help="let the engine pull from this registry over plain HTTP")  # fmt: skip
    add_default_registry_option(run)
    add_output_options(run)
    run.set_defaults(handler=cmd_run)


def cmd_run(args: argparse.Namespace, out: Output) -> int:
    if args.timeout <= 0:
        raise UsageError("--timeout must be positive")
    if args.memory is not None and args.memory < MIN_MEMORY_LIMIT_MB:
        raise UsageError(
            f"--memory {args.memory} is below the {MIN_MEMORY_LIMIT_MB} MB engines accept",
            hint="give the adapter's memory limit in MB, e.g. 1024",
        )
    if args.port is not None and not 0 < args.port < 65536:
        raise UsageError(f"--port {args.port} is not a port number")
    try:
        insecure = frozenset(normalize_registry(h) for h in args.insecure_registry)
    except InvalidReferenceError as exc:
        raise UsageError(f"--insecure-registry: {exc.message}", hint=exc.hint) from None
    result = run_pack(
        args.pack, EngineChoice.parse(args.engine, to_run=True), memory_mb=args.memory,
        host_port=args.port, keep=args.keep, timeout=args.timeout,
        default_registry=default_registry(args), insecure_registries=insecure, say=out.info,
    )  # fmt: skip
    lines = [
        f"Image:      {result.image}",
        f"Local:      {'found, not pulled' if result.found_locally else 'pulled anonymously'}",
        f"Memory:     {result.memory_mb} MB, swap {result.memory_swap_mb - result.memory_mb} MB "
        f"more ({result.memory_source})",
        f"apiVersion: {json.dumps(result.api_version)} ({result.api_version_text})",
    ]
    if result.kept:
        lines.append(f"Running:    {result.url} (container {result.container})")
        lines.append(f"Stop it:    {result.engine} rm --force {result.container}")
    else:
        lines.append(f"Container:  {result.container} removed")
    for warning in result.warnings:
        out.warn(warning)
    out.result(result.to_dict(), "\n".join(lines))
    return EXIT_OK
