"""`mpkit image push|pull|inspect`: plumbing on top of the registry client."""

from __future__ import annotations

import argparse
import json

from mpkit.cache.root import CacheRoot
from mpkit.cli import build
from mpkit.cli.common import (
    add_output_options,
    add_platform_option,
    add_remote_options,
    client_options,
    explicit_credential,
    platform_arg,
    reference_arg,
)
from mpkit.cli.output import Output, human_size
from mpkit.errors import UsageError
from mpkit.image.cache import LayerCache
from mpkit.image.layout import OCILayoutWriter
from mpkit.image.source import load_source, parse_source
from mpkit.registry import blob_locations, inspect_image, open_client, pull_image, push_image


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    image = subparsers.add_parser("image", help="build, push, pull and inspect images")
    add_output_options(image)
    verbs = image.add_subparsers(dest="verb", metavar="VERB", required=True)
    build.register(verbs)

    push = verbs.add_parser(
        "push",
        help="push an image from a layout or archive",
        description="Push SOURCE to REF, uploading only the blobs the registry lacks.",
        epilog="SOURCE is oci:DIR[:TAG], oci-archive:FILE[:TAG] or docker-archive:FILE[:REF] "
        "(the output of 'docker save' or 'podman save').",
    )
    push.add_argument("source", metavar="SOURCE")
    push.add_argument("ref", metavar="REF", help="target, e.g. harbor.example.com/team/adapter:1.0")
    push.add_argument(
        "--mount-from",
        action="append",
        default=[],
        metavar="REPO",
        help="try to mount blobs from this repository of the same registry",
    )
    add_platform_option(push)
    add_remote_options(push)
    push.set_defaults(handler=cmd_push)

    pull = verbs.add_parser(
        "pull",
        help="pull an image into an OCI layout",
        description="Pull REF into DEST (oci:DIR[:TAG]), verifying every digest.",
    )
    pull.add_argument("ref", metavar="REF")
    pull.add_argument("dest", metavar="DEST")
    pull.add_argument(
        "--anonymous",
        action="store_true",
        help="use no credentials, as an Aria Operations cloud proxy does",
    )
    add_platform_option(pull)
    add_remote_options(pull)
    pull.set_defaults(handler=cmd_pull)

    inspect = verbs.add_parser("inspect", help="show an image's manifest, config and sizes")
    inspect.add_argument("ref", metavar="REF")
    inspect.add_argument(
        "--anonymous",
        action="store_true",
        help="use no credentials, as an Aria Operations cloud proxy does",
    )
    add_platform_option(inspect)
    add_remote_options(inspect)
    inspect.set_defaults(handler=cmd_inspect)


def cmd_push(args: argparse.Namespace, out: Output) -> int:
    target = reference_arg(args.ref)
    options = client_options(args)
    credential = explicit_credential(args)
    image = load_source(
        args.source, platform=platform_arg(args), cache=LayerCache(CacheRoot.default().open())
    )
    mount_from = tuple(
        reference_arg(f"{target.registry}/{r}", "--mount-from").path for r in args.mount_from
    )
    with (
        open_client(target.registry, options=options, explicit=credential) as client,
        out.progress("push") as progress,
    ):
        result = push_image(
            client,
            image,
            target,
            locations=blob_locations(),
            mount_from=mount_from,
            progress=progress,
        )
    stats = result.stats
    out.result(
        {"digest": result.digest, "reference": str(result.reference), "stats": stats.to_dict()},
        f"{result.digest}",
    )
    out.info(
        f"pushed {result.reference}: {stats.blobs_uploaded} blob(s) uploaded "
        f"({human_size(stats.bytes_uploaded)}), {stats.blobs_mounted} mounted, "
        f"{stats.blobs_skipped} already present"
    )
    return 0


def cmd_pull(args: argparse.Namespace, out: Output) -> int:
    ref = reference_arg(args.ref)
    kind, _, rest = args.dest.partition(":")
    if kind != "oci" or not rest:
        raise UsageError(f"DEST {args.dest!r} is not supported", hint="use oci:DIR or oci:DIR:TAG")
    _, directory, tag = parse_source(args.dest)
    options = client_options(args)
    credential = None if args.anonymous else explicit_credential(args)
    with (
        open_client(
            ref.registry, options=options, anonymous=args.anonymous, explicit=credential
        ) as client,
        out.progress("pull") as progress,
    ):
        result = pull_image(
            client,
            ref,
            OCILayoutWriter(directory),
            tag=tag or ref.tag,
            platform=platform_arg(args),
            locations=blob_locations(),
            progress=progress,
        )
    out.result(
        {
            "digest": result.digest,
            "index_digest": result.index_digest,
            "destination": args.dest,
            "stats": result.stats.to_dict(),
        },
        result.digest,
    )
    return 0


def cmd_inspect(args: argparse.Namespace, out: Output) -> int:
    ref = reference_arg(args.ref)
    options = client_options(args)
    credential = None if args.anonymous else explicit_credential(args)
    with open_client(
        ref.registry, options=options, anonymous=args.anonymous, explicit=credential
    ) as client:
        info = inspect_image(client, ref, platform_arg(args))
    out.result(info, _inspect_text(info))
    return 0


def _inspect_text(info: dict[str, object]) -> str:
    config = info["config"]
    assert isinstance(config, dict)
    layers = info["layers"]
    assert isinstance(layers, list)
    lines = [
        f"Reference:   {info['reference']}",
        f"Digest:      {info['digest']}",
        f"Media type:  {info['media_type']}",
    ]
    index = info.get("index")
    if isinstance(index, dict):
        manifest = info["manifest"]
        assert isinstance(manifest, dict)
        lines.append(f"Platforms:   {', '.join(index['platforms'])}")
        lines.append(f"Selected:    {info['platform']} {manifest['digest']}")
    else:
        lines.append(f"Platform:    {info['platform']}")
    size = info["size"]
    assert isinstance(size, int)
    lines += [
        f"Created:     {info.get('created') or '-'}",
        f"User:        {config['user'] or '(root)'}",
        f"WorkingDir:  {config['working_dir'] or '/'}",
        f"Entrypoint:  {_argv(config['entrypoint'])}",
        f"Cmd:         {_argv(config['cmd'])}",
        f"Size:        {human_size(size)} compressed, {len(layers)} layer(s)",
    ]
    for layer in layers:
        lines.append(f"  {layer['digest']}  {human_size(layer['size'])}")
    return "\n".join(lines)


def _argv(value: object) -> str:
    return json.dumps(value) if value else "-"
