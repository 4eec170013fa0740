"""`mpkit promote PACK REPOSITORY`: copy a pack's image to another registry, new pack."""

from __future__ import annotations

import argparse
from pathlib import Path

from mpkit.cli.common import (
    add_default_registry_option,
    add_remote_options,
    client_options,
    default_registry,
    explicit_credential,
)
from mpkit.cli.output import Output, human_size
from mpkit.errors import EXIT_FAILED, EXIT_OK
from mpkit.workflow.promote import PromoteOptions, promote_pack


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    promote = subparsers.add_parser(
        "promote",
        help="copy a pack's image to another registry and write a pack that points there",
        description="Copy the image PACK names, by its digest, to REPOSITORY (only the blobs "
        "it lacks; within one registry they are mounted), write a new pack that records the "
        "new registry and repository with the same digest, and check it as a cloud proxy "
        "would pull it. Build once in a development registry, ship from production. The "
        "original pack is left as it is. Credentials (-u, --password-stdin, "
        "MPKIT_REGISTRY_*) are for REPOSITORY's registry; the source uses stored logins.",
    )
    promote.add_argument("pack", type=Path, metavar="PACK", help="the .pak file")
    promote.add_argument(
        "repository",
        metavar="REPOSITORY",
        help="where the image goes: host[:port]/path, without a tag (the pack's is kept)",
    )
    promote.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="FILE",
        help="the new pack (default: REGISTRY/PACK-NAME in PACK's directory, the same name)",
    )
    add_default_registry_option(promote)
    promote.add_argument(
        "--use-default-registry",
        action="store_true",
        help="the new pack records no registry: proxies use the installation's default",
    )
    promote.add_argument(
        "--no-verify", action="store_true", help="skip the cloud proxy's check of the new pack"
    )
    add_remote_options(promote)
    promote.set_defaults(handler=cmd_promote)


def cmd_promote(args: argparse.Namespace, out: Output) -> int:
    options = PromoteOptions(
        pack=args.pack,
        repository=args.repository,
        client_options=client_options(args),
        output=args.output,
        source_registry=default_registry(args),
        use_default_registry=args.use_default_registry,
        credential=explicit_credential(args),
        verify=not args.no_verify,
    )
    outcome = promote_pack(options, reporter=out)
    stats = outcome.stats
    text = "\n".join([
        f"Pack:    {outcome.pack}",
        f"Image:   {outcome.image}",
        f"Copied:  {stats.blobs_uploaded} blob(s), {human_size(stats.bytes_uploaded)} "
        f"({stats.blobs_skipped} already there, {stats.blobs_mounted} mounted)",
    ])  # fmt: skip
    out.result(outcome.to_dict(), text)
    verified = outcome.verification is None or outcome.verification.ok
    return EXIT_OK if verified else EXIT_FAILED
