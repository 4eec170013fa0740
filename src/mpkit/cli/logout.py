"""`mpkit logout`: remove a registry's stored credentials, wherever docker keeps them."""

from __future__ import annotations

import argparse

from mpkit.cli.common import add_output_options, registry_arg
from mpkit.cli.output import Output
from mpkit.credentials import erase_credential
from mpkit.reference import DOCKER_HUB


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    logout = subparsers.add_parser("logout", help="remove stored credentials for a registry")
    logout.add_argument("registry", nargs="?", default=DOCKER_HUB, metavar="REGISTRY")
    add_output_options(logout)
    logout.set_defaults(handler=cmd_logout)


def cmd_logout(args: argparse.Namespace, out: Output) -> int:
    registry = registry_arg(args.registry)
    removed = erase_credential(registry)
    text = (
        f"Removed login credentials for {registry} from {', '.join(removed)}"
        if removed
        else f"Not logged in to {registry}"
    )
    out.result({"registry": registry, "removed_from": removed}, text)
    return 0
