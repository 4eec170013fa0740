"""`mpkit registry serve|status|stop`: the built-in OCI registry."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from mpkit.cli.common import add_output_options
from mpkit.cli.output import Output
from mpkit.server.config import (
    DEFAULT_ADDR,
    DEFAULT_UPLOAD_TTL,
    LOG_FILE,
    ServerConfig,
    default_root,
    is_loopback,
    parse_addr,
)

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
    )


def cmd_serve(args: argparse.Namespace, out: Output) -> int:
    from mpkit.server.control import start_detached
    from mpkit.server.server import Server

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
    stopping = threading.Event()
    # Handlers first: the state file that start() writes tells 'mpkit registry stop' it may
    # signal us, and a SIGTERM must then mean a clean stop, never the default death.
    previous = {
        sig: signal.signal(sig, lambda *_: stopping.set())
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    server = Server(config, record_state=True, access_log=sys.stderr)
    try:
        server.start()
        state = server.state.to_dict() if server.state else {}
        out.result(state, "")
        out.info(
            f"registry serving {server.url} from {config.root} "
            f"(pushes: {_push_policy(config)}); Ctrl-C stops it"
        )
        server.wait(stopping)
    finally:
        server.shutdown()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not stopping.is_set():
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
