"""`mpkit preload PACK`: write a script that preloads a pack's image on cloud proxies."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from mpkit.cli.common import (
    add_default_registry_option,
    add_remote_options,
    client_options,
    default_registry,
    explicit_credential,
)
from mpkit.cli.output import Output
from mpkit.errors import EXIT_OK
from mpkit.verify.preload import local_name, preload_pack


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    preload = subparsers.add_parser(
        "preload",
        help="write a script that preloads a pack's image on a cloud proxy",
        description="Write a POSIX shell script for cloud proxies: it logs in to the "
        "registry, pulls REGISTRY/REPOSITORY@DIGEST, checks the digest and logs out, so a "
        "pack from a private registry installs. The script holds no secrets. With "
        "--archive, also export the image for proxies without registry access.",
    )
    preload.add_argument("pack", type=Path, metavar="PACK", help="the .pak file")
    preload.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="SCRIPT",
        help="where to write the script (default: PACK's name with -preload.sh)",
    )
    preload.add_argument(
        "--archive",
        type=Path,
        metavar="FILE",
        help="also pull the image (with your credentials) into this docker-archive, which "
        "docker load, podman load and ctr import accept under the pack's image name",
    )
    add_default_registry_option(preload)
    add_remote_options(preload)
    preload.set_defaults(handler=cmd_preload)


def cmd_preload(args: argparse.Namespace, out: Output) -> int:
    script = args.output or args.pack.with_name(f"{args.pack.stem}-preload.sh")
    pulls = args.archive is not None  # only the archive needs the registry
    done = preload_pack(
        args.pack, script, archive=args.archive, default_registry=default_registry(args),
        options=client_options(args) if pulls else None,
        credential=explicit_credential(args) if pulls else None, say=out.info,
    )  # fmt: skip
    for warning in done.warnings:
        out.warn(warning)
    ref, archive = done.image, done.archive
    commands = preload_commands(script, archive.path if archive else None, args.username)
    data = {
        "script": str(script),
        "image": f"{ref.registry}/{ref.path}@{ref.digest}",
        "local_name": local_name(ref),
        "archive": None
        if archive is None
        else {
            "path": str(archive.path),
            "name": archive.name,
            "image_digest": archive.image_digest,
            "image_id": archive.image_id,
        },
        "commands": commands,
    }
    text = [f"Wrote {script}"]
    if archive is not None:
        text.append(f"Wrote {archive.path} (loads as {archive.name})")
    text.append("On every cloud proxy, before installing the pack, run:")
    text += [f"  {command}" for command in commands]
    out.result(data, "\n".join(text))
    return EXIT_OK


def preload_commands(script: Path, archive: Path | None, username: str | None) -> list[str]:
    """The exact commands to run from this machine, for a proxy reached as root@PROXY."""
    remote_dir = "/tmp"  # noqa: S108 - on the proxy, as its administrator would
    remote_script = f"{remote_dir}/{script.name}"
    if archive is not None:
        remote_archive = f"{remote_dir}/{archive.name}"
        return [
            f"scp {shlex.quote(str(script))} {shlex.quote(str(archive))} root@PROXY:/tmp/",
            f"ssh root@PROXY sh {shlex.quote(remote_script)} {shlex.quote(remote_archive)}",
        ]
    user = shlex.quote(username) if username else "USER"
    return [
        f"scp {shlex.quote(str(script))} root@PROXY:/tmp/",
        f"ssh -t root@PROXY REGISTRY_USERNAME={user} sh {shlex.quote(remote_script)}"
        "    # asks for the password; or set REGISTRY_PASSWORD",
    ]
