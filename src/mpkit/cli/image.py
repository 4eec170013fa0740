"""`mpkit image build|push|pull|inspect`: build an adapter image without a Docker daemon, and
plumbing on top of the registry client."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from mpkit.cache.root import CacheRoot
from mpkit.cli.common import (
    add_external_links_option,
    add_output_options,
    add_platform_option,
    add_pull_option,
    add_registry_cache_options,
    add_remote_options,
    allow_external_links,
    client_options,
    explicit_credential,
    platform_arg,
    reference_arg,
    registry_cache_args,
)
from mpkit.cli.output import Output, human_size
from mpkit.engine import EngineChoice
from mpkit.errors import UsageError
from mpkit.image.cache import LayerCache
from mpkit.image.layout import OCILayoutWriter
from mpkit.image.source import load_source, parse_source, save_image
from mpkit.imagebuild.builder import BuildRequest, BuildResult, build_image
from mpkit.registry import blob_locations, inspect_image, open_client, pull_image, push_image
from mpkit.settings import load_settings
from mpkit.workflow.imagepush import build_and_push


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    image = subparsers.add_parser("image", help="build, push, pull and inspect images")
    add_output_options(image)
    verbs = image.add_subparsers(dest="verb", metavar="VERB", required=True)
    _register_build(verbs)

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


def _register_build(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    build = verbs.add_parser(
        "build",
        help="build an adapter image without a Docker daemon",
        description="Build PROJECT's Dockerfile for linux/amd64, reproducibly, then push it "
        "(--push REF) or write it (--output). Dockerfiles the native builder cannot do go "
        "to a container engine (--engine).",
    )
    build.add_argument("project", nargs="?", default=".", type=Path, metavar="PROJECT")
    target = build.add_mutually_exclusive_group(required=True)
    target.add_argument("--push", metavar="REF", help="push to this image reference")
    target.add_argument(
        "--output", metavar="DEST", help="oci:DIR[:TAG] or docker-archive:FILE[:NAME:TAG]"
    )
    build.add_argument(
        "--engine",
        choices=EngineChoice.names(),
        default="auto",
        help="engine for what the native builder cannot do (default auto)",
    )
    build.add_argument(
        "--platform",
        default="linux/amd64",
        metavar="OS/ARCH",
        help="target platform (default linux/amd64, what cloud proxies run)",
    )
    build.add_argument("--build-arg", action="append", default=[], metavar="NAME=VALUE")
    add_pull_option(build)
    build.add_argument(
        "--wheelhouse",
        type=Path,
        metavar="DIR",
        help="extra wheels for requirements PyPI has no target wheel for",
    )
    add_external_links_option(build)
    add_registry_cache_options(build)
    add_remote_options(build)
    build.set_defaults(handler=cmd_build)


def _build_args(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"--build-arg {item!r} is not NAME=VALUE")
        out[name] = value
    return out


def cmd_build(args: argparse.Namespace, out: Output) -> int:
    settings = load_settings()
    target = reference_arg(args.push) if args.push else None
    if args.wheelhouse is not None and not args.wheelhouse.is_dir():
        raise UsageError(f"--wheelhouse {args.wheelhouse}: no such directory")
    request = BuildRequest(
        project=args.project.resolve(),
        cache_root=CacheRoot.default().path,
        settings=settings,
        client_options=client_options(args, settings),
        platform=platform_arg(args),
        build_args=_build_args(args.build_arg),
        engine=EngineChoice.parse(args.engine),
        wheelhouse=args.wheelhouse,
        pull=args.pull,
        allow_external_links=allow_external_links(args, settings),
    )
    if target is None:
        result = build_image(request, log=out.info)
        save_image(result.image, args.output)
        out.result({**_build_report(result), "output": args.output}, result.image.digest)
        return 0
    cache_from, cache_to = registry_cache_args(args)
    outcome = build_and_push(
        request, target, credential=explicit_credential(args), cache_from=cache_from,
        cache_to=cache_to, registry_cache=not args.no_registry_cache, reporter=out,
    )  # fmt: skip
    pushed = outcome.pushed
    out.info(
        f"pushed {pushed.reference}: {pushed.stats.blobs_uploaded} blob(s) uploaded "
        f"({human_size(pushed.stats.bytes_uploaded)}), "
        f"{pushed.stats.blobs_skipped} already present"
    )
    report = {
        **_build_report(outcome.build),
        "registry_cache": outcome.registry_cache,
        "reference": str(pushed.reference),
        "push": pushed.stats.to_dict(),
    }
    out.result(report, outcome.build.image.digest)
    return 0


def _build_report(result: BuildResult) -> dict[str, Any]:
    return {
        "digest": result.image.digest,
        "builder": result.builder,
        "fallback_reason": result.fallback_reason,
        "context_digest": result.context_digest,
        "base": (
            {"name": result.base.name, "digest": result.base.digest, "source": result.base.source}
            if result.base else None
        ),
        "layers": [
            {"line": s.line, "instruction": s.instruction, "digest": s.layer, "size": s.size,
             "cached": s.cached}
            for s in result.steps if s.layer
        ],
    }  # fmt: skip


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
