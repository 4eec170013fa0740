"""`mpkit registry serve|status|stop`: the built-in OCI registry."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mpkit.cli.common import add_output_options
from mpkit.cli.output import Output
from mpkit.server.config import (
    DEFAULT_ADDR,
    DEFAULT_BODY_TIMEOUT,
    DEFAULT_HEADER_TIMEOUT,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MIN_BODY_RATE,
    DEFAULT_UPLOAD_TTL,
    LOG_FILE,
    ServerConfig,
    default_root,
    is_loopback,
    parse_addr,
)

if TYPE_CHECKING:
    from mpkit.server.server import Server

# The server modules themselves are imported by the commands that need them, so other
# mpkit commands start without loading them.


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    registry = subparsers.add_parser(
        "registry",
        help="run the built-in OCI registry",
        description="A small OCI distribution registry on this machine: anonymous pulls, "
        "pushes from this machine (or with an htpasswd login), content-addressed storage.",
    )
    add_output_options(registry)
    verbs = registry.add_subparsers(dest="verb", metavar="VERB", required=True)

    serve = verbs.add_parser(
        "serve",
        help="serve a registry (in the foreground, or --detach)",
        description="Serve the registry until stopped (Ctrl-C, SIGTERM or "
        "'mpkit registry stop'). One access line per request goes to standard error.",
    )
    serve.add_argument(
        "--addr",
        default=DEFAULT_ADDR,
        metavar="HOST:PORT",
        help=f"listen address (default {DEFAULT_ADDR}; port 0 picks a free one)",
    )
    _add_root(serve)
    serve.add_argument(
        "--htpasswd",
        type=Path,
        metavar="FILE",
        help="bcrypt htpasswd file ('htpasswd -B'): pushes need one of its "
        "logins; without it pushes are accepted only from this machine",
    )
    serve.add_argument("--tls-cert", type=Path, metavar="FILE", help="PEM certificate (chain)")
    serve.add_argument("--tls-key", type=Path, metavar="FILE", help="PEM private key")
    serve.add_argument(
        "--detach",
        action="store_true",
        help=f"run in the background (log in ROOT/{LOG_FILE}) and return",
    )
    serve.add_argument(
        "--insecure-open",
        action="store_true",
        help="allow a non-loopback --addr without --htpasswd: anyone who can "
        "reach it may pull; pushes still come only from this machine",
    )
    serve.add_argument(
        "--upload-ttl",
        type=float,
        default=DEFAULT_UPLOAD_TTL,
        metavar="SECONDS",
        help="delete unfinished uploads idle this long (default one day)",
    )
    _add_connection_limits(serve)
    add_output_options(serve)
    serve.set_defaults(handler=cmd_serve)

    show = verbs.add_parser("status", help="is a registry serving ROOT? (exit 1 if not)")
    _add_root(show)
    add_output_options(show)
    show.set_defaults(handler=cmd_status)

    halt = verbs.add_parser("stop", help="stop the registry serving ROOT")
    _add_root(halt)
    add_output_options(halt)
    halt.set_defaults(handler=cmd_stop)


def _add_connection_limits(parser: argparse.ArgumentParser) -> None:
    limits = parser.add_argument_group(
        "connection limits", "how long clients may take, and how many are served at once"
    )
    limits.add_argument(
        "--max-connections",
        type=int,
        default=DEFAULT_MAX_CONNECTIONS,
        metavar="N",
        help="open connections at most; at the limit a new one replaces the connection "
        f"idle or sending its request head the longest (default {DEFAULT_MAX_CONNECTIONS})",
    )
    limits.add_argument(
        "--header-timeout",
        type=float,
        default=DEFAULT_HEADER_TIMEOUT,
        metavar="SECONDS",
        help="time for the TLS handshake, request line and headers together "
        f"(default {DEFAULT_HEADER_TIMEOUT:g})",
    )
    limits.add_argument(
        "--idle-timeout",
        type=float,
        default=DEFAULT_IDLE_TIMEOUT,
        metavar="SECONDS",
        help=f"close keep-alive connections idle this long (default {DEFAULT_IDLE_TIMEOUT:g})",
    )
    limits.add_argument(
        "--body-timeout",
        type=float,
        default=DEFAULT_BODY_TIMEOUT,
        metavar="SECONDS",
        help="cut off a request body that stalls this long, or stays below --min-body-rate "
        f"(default {DEFAULT_BODY_TIMEOUT:g})",
    )
    limits.add_argument(
        "--min-body-rate",
        type=float,
        default=DEFAULT_MIN_BODY_RATE,
        metavar="BYTES/S",
        help="the rate a request body must keep up on balance; a slower upload is cut off "
        f"after --body-timeout (0: only stalls; default {DEFAULT_MIN_BODY_RATE:g})",
    )


def _add_root(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--root",
        type=Path,
        default=None,
        metavar="DIR",
        help=f"storage directory (default $MPKIT_REGISTRY_ROOT or {default_root()})",
    )


def _root(args: argparse.Namespace) -> Path:
    root: Path = args.root or default_root()
    return root.expanduser().absolute()


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    host, port = parse_addr(args.addr)
    return ServerConfig(
        root=_root(args),
        host=host,
        port=port,
        htpasswd=args.htpasswd.absolute() if args.htpasswd else None,
        tls_cert=args.tls_cert.absolute() if args.tls_cert else None,
        tls_key=args.tls_key.absolute() if args.tls_key else None,
        insecure_open=args.insecure_open,
        upload_ttl=args.upload_ttl,
        max_connections=args.max_connections,
        header_timeout=args.header_timeout,
        idle_timeout=args.idle_timeout,
        body_timeout=args.body_timeout,
        min_body_rate=args.min_body_rate,
    )


def cmd_serve(args: argparse.Namespace, out: Output) -> int:
    from mpkit.server.control import serve_in_foreground, start_detached

    config = config_from_args(args)
    config.validate()
    if config.htpasswd and not config.tls and not is_loopback(config.host):
        out.warn("passwords will cross the network in clear text; add --tls-cert/--tls-key")
    if args.detach:
        handle = start_detached(config)
        out.result(
            handle.to_dict(),
            f"registry serving {handle.url} (pid {handle.pid}), "
            f"root {handle.root}, log {handle.log}",
        )
        return 0

    def started(server: Server) -> None:
        out.result(server.state.to_dict() if server.state else {}, "")
        out.info(
            f"registry serving {server.url} from {config.root} "
            f"(pushes: {_push_policy(config)}); Ctrl-C stops it"
        )

    if not serve_in_foreground(config, access_log=sys.stderr, started=started):
        out.warn("the registry stopped unexpectedly; see the messages above")
        return 1
    out.info("registry stopped")
    return 0


def _push_policy(config: ServerConfig) -> str:
    return "htpasswd logins" if config.htpasswd else "this machine only"


def cmd_status(args: argparse.Namespace, out: Output) -> int:
    from mpkit.server.control import status

    root = _root(args)
    handle = status(root)
    if handle is None:
        out.result({"running": False, "root": str(root)}, f"no registry is serving {root}")
        return 1
    data: dict[str, Any] = {"running": True, **handle.to_dict()}
    out.result(
        data,
        f"registry serving {handle.url} (pid {handle.pid}) since "
        f"{handle.started}, root {handle.root}",
    )
    return 0


def cmd_stop(args: argparse.Namespace, out: Output) -> int:
    from mpkit.server.control import stop

    root = _root(args)
    handle = stop(root)
    if handle is None:
        out.result({"stopped": False, "root": str(root)}, f"no registry is serving {root}")
        return 0
    out.result(
        {"stopped": True, **handle.to_dict()},
        f"stopped the registry at {handle.addr} (pid {handle.pid})",
    )
    return 0
