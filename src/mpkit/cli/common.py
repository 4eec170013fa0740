"""Argument groups and conversions shared by several commands."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path

from mpkit.credentials import ENV_PASSWORD, ENV_USERNAME, Credential, env_credential
from mpkit.errors import InvalidReferenceError, UsageError
from mpkit.image.select import DEFAULT_PLATFORM
from mpkit.image.types import Platform
from mpkit.project.links import ALLOW_ENV, ALLOW_FLAG
from mpkit.reference import (
    Reference,
    Repository,
    normalize_registry,
    parse_reference,
    parse_repository,
    registry_from_server_url,
)
from mpkit.registry.retry import RetryPolicy
from mpkit.registry.transport import ClientOptions
from mpkit.settings import Settings, load_settings


def add_output_options(parser: argparse.ArgumentParser) -> None:
    # SUPPRESS lets the flags appear before or after the sub-command.
    parser.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print one JSON object on stdout",
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="log HTTP traffic (without secrets) and show tracebacks",
    )


def add_pull_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--pull",
        action="store_true",
        help="ask the base image's registry for its tag now, even if a build checked it "
        "within base_recheck_seconds (default 300)",
    )


def add_registry_cache_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "registry cache (dependency layers shared through a registry)"
    )
    group.add_argument(
        "--cache-from",
        action="append",
        default=[],
        metavar="REPOSITORY",
        help="also look for dependency layers here (before the push target)",
    )
    group.add_argument(
        "--cache-to",
        metavar="REPOSITORY",
        help="record the dependency layers built here instead of in the push target",
    )
    group.add_argument(
        "--no-registry-cache",
        action="store_true",
        help="neither look up nor record dependency layers in a registry",
    )


def registry_cache_args(
    args: argparse.Namespace,
) -> tuple[tuple[Repository, ...], Repository | None]:
    """(--cache-from repositories, --cache-to repository), parsed; usage errors if bad."""
    try:
        sources = tuple(parse_repository(text) for text in args.cache_from)
        destination = parse_repository(args.cache_to) if args.cache_to else None
    except InvalidReferenceError as exc:
        raise UsageError(f"--cache-from/--cache-to: {exc.message}", hint=exc.hint) from None
    return sources, destination


def add_external_links_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        ALLOW_FLAG,
        action="store_true",
        help="follow symbolic links that lead out of the project (eula, icon, scripts, "
        f"content/, resources/, conf/, COPY sources) instead of refusing them; also ${ALLOW_ENV}=1",
    )


def allow_external_links(args: argparse.Namespace, settings: Settings) -> bool:
    """The flag, else MPKIT_ALLOW_EXTERNAL_LINKS, else the settings file."""
    return bool(args.allow_external_links) or settings.allow_external_links


def add_registry_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("registry connection")
    group.add_argument(
        "--insecure-registry",
        action="append",
        default=[],
        metavar="HOST[:PORT]",
        help="allow plain HTTP or an unverified certificate for this registry",
    )
    group.add_argument(
        "--ca-cert",
        action="append",
        default=[],
        type=Path,
        metavar="FILE",
        help="trust this PEM CA certificate (in addition to the system and certs.d ones)",
    )
    group.add_argument(
        "--concurrency",
        type=int,
        default=4,
        metavar="N",
        help="parallel blob transfers (default 4)",
    )
    group.add_argument(
        "--retries",
        type=int,
        default=RetryPolicy().attempts,
        metavar="N",
        help=f"tries per request on transient failures (default {RetryPolicy().attempts})",
    )


def add_credential_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("credentials (default: docker/podman stored logins)")
    group.add_argument("-u", "--username", help="registry user name")
    group.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password or token from standard input",
    )


def add_remote_options(parser: argparse.ArgumentParser) -> None:
    """Credentials, registry connection and output: for commands that use a registry."""
    add_credential_options(parser)
    add_registry_options(parser)
    add_output_options(parser)


def add_platform_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--platform",
        default=str(DEFAULT_PLATFORM),
        metavar="OS/ARCH[/VARIANT]",
        help="platform to pick from a multi-platform image (default linux/amd64)",
    )


def platform_arg(args: argparse.Namespace) -> Platform:
    try:
        return Platform.parse(args.platform)
    except ValueError as exc:
        raise UsageError(
            f"--platform {args.platform!r}: {exc}",
            hint="use a form like linux/amd64 or linux/arm64/v8",
        ) from exc


def client_options(args: argparse.Namespace, settings: Settings | None = None) -> ClientOptions:
    """Connection options from the flags, plus the settings file's insecure registries
    and endpoints."""
    settings = settings or load_settings()
    if args.concurrency < 1 or args.retries < 1:
        raise UsageError("--concurrency and --retries must be at least 1")
    try:
        insecure = frozenset(normalize_registry(h) for h in args.insecure_registry)
    except InvalidReferenceError as exc:
        raise UsageError(f"--insecure-registry: {exc.message}", hint=exc.hint) from exc
    insecure |= settings.insecure_registries
    for path in args.ca_cert:
        if not path.is_file():
            raise UsageError(f"--ca-cert {path}: no such file")
    return ClientOptions(
        insecure_registries=insecure,
        ca_certs=tuple(args.ca_cert),
        retry=RetryPolicy(attempts=args.retries),
        concurrency=args.concurrency,
        endpoints=settings.endpoints,
        remember_pings=True,
    )


def reference_arg(text: str, what: str = "image reference") -> Reference:
    """Parse a reference given on the command line; a bad one is a usage error (exit 2)."""
    try:
        return parse_reference(text)
    except InvalidReferenceError as exc:
        raise UsageError(f"{what} {text!r}: {exc.message}", hint=exc.hint) from exc


def registry_arg(text: str) -> str:
    """A registry given on the command line (host[:port], or a URL as docker accepts)."""
    try:
        return normalize_registry(registry_from_server_url(text) if "://" in text else text)
    except InvalidReferenceError as exc:
        raise UsageError(f"registry {text!r}: {exc.message}", hint=exc.hint) from exc


def read_secret_stdin() -> str:
    if sys.stdin is None or sys.stdin.closed:
        raise UsageError("--password-stdin was given but standard input is closed")
    value = sys.stdin.read().rstrip("\r\n")
    if not value:
        raise UsageError("--password-stdin was given but standard input was empty")
    return value


def can_prompt(args: argparse.Namespace) -> bool:
    return bool(sys.stdin and sys.stdin.isatty() and not getattr(args, "no_ttl", False))


def explicit_credential(args: argparse.Namespace) -> Credential | None:
    """-u/--password-stdin, else MPKIT_REGISTRY_USERNAME/PASSWORD, else None (stored logins)."""
    username = getattr(args, "username", None)
    if getattr(args, "password_stdin", False):
        if not username and not os.environ.get(ENV_USERNAME):
            raise UsageError(
                "--password-stdin needs a user name", hint=f"add -u USER or set {ENV_USERNAME}"
            )
        return Credential(
            username=username or os.environ[ENV_USERNAME],
            password=read_secret_stdin(),
            source="standard input",
        )
    if username:
        password = os.environ.get(ENV_PASSWORD)
        if password:
            return Credential(username=username, password=password, source=f"-u and {ENV_PASSWORD}")
        if can_prompt(args):
            return Credential(
                username=username, password=getpass.getpass("Password: "), source="prompt"
            )
        raise UsageError(
            f"-u {username} was given without a password",
            hint=f"pipe it with --password-stdin, or set {ENV_PASSWORD}",
        )
    return env_credential()


def add_default_registry_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--default-registry",
        metavar="HOST[:PORT]",
        help="the installation's default registry, for packs built with --use-default-registry",
    )


def default_registry(args: argparse.Namespace) -> str | None:
    value: str | None = args.default_registry
    if value is None:
        return None
    try:
        return normalize_registry(value)
    except InvalidReferenceError as exc:
        raise UsageError(f"--default-registry {value!r}: {exc.message}", hint=exc.hint) from None
