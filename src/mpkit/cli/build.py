"""`mpkit image build`: build an adapter image natively (or with an engine) and
push it or write it out."""

from __future__ import annotations

import argparse
import contextlib
from dataclasses import replace
from pathlib import Path
from typing import Any

from mpkit.cache.root import CacheRoot, sharing
from mpkit.cli.common import (
    add_external_links_option,
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
from mpkit.image.archive_writer import write_docker_archive
from mpkit.image.layout import OCILayoutWriter
from mpkit.image.source import parse_source
from mpkit.imagebuild.builder import BuildRequest, BuildResult, build_image
from mpkit.imagebuild.registrycache import registry_cache_for
from mpkit.registry import blob_locations, open_client, push_image
from mpkit.settings import load_settings


def register(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    options = client_options(args, settings)
    target = reference_arg(args.push) if args.push else None
    credential = explicit_credential(args) if target else None
    if args.wheelhouse is not None and not args.wheelhouse.is_dir():
        raise UsageError(f"--wheelhouse {args.wheelhouse}: no such directory")
    request = BuildRequest(
        project=args.project.resolve(),
        cache_root=CacheRoot.default().path,
        settings=settings,
        client_options=options,
        platform=platform_arg(args),
        build_args=_build_args(args.build_arg),
        engine=EngineChoice.parse(args.engine),
        wheelhouse=args.wheelhouse,
        pull=args.pull,
        allow_external_links=allow_external_links(args, settings),
    )
    if target is None:
        result = build_image(request, log=out.info)
        report = _report(result)
        report["output"] = _write_output(args.output, result)
        out.result(report, result.image.digest)
        return 0
    sources, destination = registry_cache_args(args)
    with open_client(target.registry, options=options, explicit=credential) as client:
        cache = registry_cache_for(
            client, target.repository, cache_from=sources, cache_to=destination,
            enabled=not args.no_registry_cache, options=options, warn=out.warn,
        )  # fmt: skip
        with contextlib.closing(cache), sharing(cache):
            result = build_image(replace(request, registry_cache=cache), log=out.info)
            report = _report(result)
            with out.progress("push") as progress:
                pushed = push_image(
                    client, result.image, target, locations=blob_locations(), progress=progress
                )
            report["registry_cache"] = {"hits": cache.hits, "recorded": cache.publish()}
    report["reference"] = str(pushed.reference)
    report["push"] = pushed.stats.to_dict()
    out.info(
        f"pushed {pushed.reference}: {pushed.stats.blobs_uploaded} blob(s) uploaded "
        f"({human_size(pushed.stats.bytes_uploaded)}), "
        f"{pushed.stats.blobs_skipped} already present"
    )
    out.result(report, result.image.digest)
    return 0


def _write_output(dest: str, result: BuildResult) -> str:
    kind, path, suffix = parse_source(dest)
    if kind == "oci":
        OCILayoutWriter(path).write_image(result.image, suffix)
    elif kind == "docker-archive":
        write_docker_archive(result.image, path, [suffix] if suffix else [])
    else:
        raise UsageError(f"--output {dest!r}: use oci:DIR[:TAG] or docker-archive:FILE[:NAME:TAG]")
    return dest


def _report(result: BuildResult) -> dict[str, Any]:
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
