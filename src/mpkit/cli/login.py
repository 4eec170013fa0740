"""`mpkit login`: check credentials against a registry and store them as docker does
(its credential helper, else ~/.docker/config.json)."""

from __future__ import annotations

import argparse
import getpass
import os

from mpkit.cli.common import (
    add_output_options,
    add_registry_options,
    can_prompt,
    client_options,
    read_secret_stdin,
    registry_arg,
)
from mpkit.cli.output import Output
from mpkit.credentials import ENV_PASSWORD, ENV_USERNAME, Credential, store_credential
from mpkit.errors import UsageError
from mpkit.reference import DOCKER_HUB
from mpkit.registry import open_client


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    login = subparsers.add_parser(
        "login",
        help="log in to a registry (stored like 'docker login')",
        description="Check credentials against REGISTRY, then store them through the configured "
        "docker credential helper, or in ~/.docker/config.json (mode 0600).",
    )
    login.add_argument(
        "registry",
        nargs="?",
        default=DOCKER_HUB,
        metavar="REGISTRY",
        help="registry host[:port] (default: Docker Hub)",
    )
    login.add_argument("-u", "--username", help=f"user name (or ${ENV_USERNAME})")
    login.add_argument(
        "--password-stdin",
        action="store_true",
        help=f"read the password or token from standard input (or ${ENV_PASSWORD})",
    )
    login.add_argument("--no-ttl", action="store_true", help="never prompt")
    add_registry_options(login)
    add_output_options(login)
    login.set_defaults(handler=cmd_login)


def cmd_login(args: argparse.Namespace, out: Output) -> int:
    registry = registry_arg(args.registry)
    username = args.username or os.environ.get(ENV_USERNAME)
    if not username and can_prompt(args):
        username = input("Username: ").strip()
    if not username:
        raise UsageError(f"no user name for {registry}", hint=f"pass -u USER or set {ENV_USERNAME}")
    if args.password_stdin:
        password = read_secret_stdin()
    elif os.environ.get(ENV_PASSWORD):
        password = os.environ[ENV_PASSWORD]
    elif can_prompt(args):
        password = getpass.getpass("Password: ")
    else:
        raise UsageError(
            f"no password for {registry} and no terminal to ask on",
            hint=f"pipe it with --password-stdin, or set {ENV_PASSWORD}",
        )
    credential = Credential(username=username, password=password, source="login")
    with open_client(registry, options=client_options(args), explicit=credential) as client:
        scheme = client.transport.authenticate()
    where = store_credential(registry, credential)
    if scheme == "none":
        out.warn(f"{registry} does not ask for credentials; stored them anyway")
    out.result(
        {"registry": registry, "username": username, "stored_in": where},
        f"Login Succeeded ({username} at {registry}, stored in {where})",
    )
    return 0
