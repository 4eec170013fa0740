"""`mpkit verify`, `mpkit preload` and `mpkit run`: the cloud proxy's view of a pack."""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

from mpkit.cli.common import (
    add_default_registry_option,
    add_output_options,
    add_remote_options,
    client_options,
    default_registry,
    explicit_credential,
)
from mpkit.cli.output import Output, human_size, short
from mpkit.engine import EngineChoice
from mpkit.errors import EXIT_FAILED, EXIT_OK, InvalidReferenceError, UsageError
from mpkit.project.load import MIN_MEMORY_LIMIT_MB
from mpkit.reference import normalize_registry
from mpkit.verify import VerifyReport, pack_image, read_pack, verify_pack
from mpkit.verify.preload import export_archive, local_name, render_script, write_script
from mpkit.verify.run import run_pack


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    verify = subparsers.add_parser(
        "verify",
        help="check that a cloud proxy can pull a pack's image anonymously",
        description="Open PACK safely, check that manifest.txt and <KIND>.conf agree, then "
        "pull REGISTRY/REPOSITORY@DIGEST's manifest the way an Aria Operations cloud proxy "
        "does: anonymously, even if you have stored credentials. Checks the manifest digest, "
        "the linux/amd64 platform and every blob (HEAD only). Exit 0 only when the pack "
        "would install.",
    )
    verify.add_argument("pack", type=Path, metavar="PACK", help="the .pak file")
    verify.add_argument(
        "--with-credentials",
        action="store_true",
        help="run the same checks with your credentials, to tell a private image (exit 0, "
        "with a warning: preload it) from a missing one (exit 1)",
    )
    add_default_registry_option(verify)
    add_remote_options(verify)
    verify.set_defaults(handler=cmd_verify)

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

    run = subparsers.add_parser(
        "run",
        help="run a pack's image as a cloud proxy would (needs podman or docker)",
        description="Look for the pack's image locally by digest, pull it anonymously if it "
        "is absent, start it with the memory limit (swap 512 MB above it) and the adapter "
        "port published on 127.0.0.1, wait for GET /apiVersion, print it, then remove the "
        "container (also on Ctrl-C).",
        epilog="The memory limit is --memory, else default_memory_limit from the project's "
        "config.json when PACK is in <project>/build/, else 1024 MB.",
    )
    run.add_argument("pack", type=Path, metavar="PACK", help="the .pak file")
    run.add_argument("--engine", choices=EngineChoice.names(to_run=True), default="auto",
                     help="container engine (default: podman, else docker)")  # fmt: skip
    run.add_argument("--memory", type=int, metavar="MB", help="memory limit in MB")
    run.add_argument("-P", "--port", type=int, metavar="PORT",
                     help="host port for the adapter on 127.0.0.1 (default: any free)")  # fmt: skip
    run.add_argument("--keep", action="store_true",
                     help="leave the container running and print its URL")  # fmt: skip
    run.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                     help="how long to wait for GET /apiVersion (default 60)")  # fmt: skip
    run.add_argument("--insecure-registry", action="append", default=[], metavar="HOST[:PORT]",
                     help="let the engine pull from this registry over plain HTTP")  # fmt: skip
    add_default_registry_option(run)
    add_output_options(run)
    run.set_defaults(handler=cmd_run)


# -- verify ------------------------------------------------------------------------------
def cmd_verify(args: argparse.Namespace, out: Output) -> int:
    if (args.username or args.password_stdin) and not args.with_credentials:
        raise UsageError(
            "-u/--password-stdin apply only with --with-credentials",
            hint="verify checks anonymously, as a cloud proxy pulls; add --with-credentials "
            "to check with these credentials too",
        )
    options = client_options(args)
    credential = explicit_credential(args) if args.with_credentials else None
    report = verify_pack(
        args.pack,
        options=options,
        with_credentials=args.with_credentials,
        credential=credential,
        default_registry=default_registry(args),
    )
    out.result(report.to_dict(), verify_text(report))
    for warning in report.warnings:
        out.warn(warning)
    for problem in report.problems:
        _problem(out, problem.message, problem.hint)
    return EXIT_OK if report.ok else EXIT_FAILED


def _problem(out: Output, message: str, hint: str | None) -> None:
    text = f"error: {message}"
    if hint:
        text += f"\n  hint: {hint}"
    out.stderr.write(text + "\n")
    out.stderr.flush()


def verify_text(report: VerifyReport) -> str:
    kind = f" (adapter kind {report.kind})" if report.kind else ""
    lines = [f"Pack:       {report.pack}{kind}"]
    if report.image:
        tag = f" (tag {report.tag})" if report.tag else ""
        lines.append(f"Image:      {report.image}{tag}")
    how = "anonymous, as a cloud proxy pulls" if report.anonymous else "with your credentials"
    lines.append(f"Access:     {how}")
    if report.manifest_media_type:
        lines.append(f"Manifest:   {report.manifest_media_type}")
    if report.index_digest and report.image_digest:
        lines.append(f"Index:      linux/amd64 is {report.image_digest}")
    if report.platform:
        lines.append(f"Platform:   {report.platform}")
    if report.blobs:
        present = sum(1 for blob in report.blobs if blob.present)
        lines.append(f"Blobs:      {present} of {len(report.blobs)} present")
        lines += [
            f"  {blob.role:<14} {short(blob.digest)}  {human_size(blob.size):>9}  "
            f"{'ok' if blob.present else 'MISSING'}"
            for blob in report.blobs
        ]
    if report.total_size is not None:
        lines.append(f"Size:       {human_size(report.total_size)} compressed")
    if report.rate_limit:
        lines.append(f"Docker Hub: {report.rate_limit.describe()}")
    if report.anonymous_pull:
        lines.append(f"Anonymous:  {report.anonymous_pull}")
    lines.append(f"Result:     {report.summary()}")
    return "\n".join(lines)


# -- preload -----------------------------------------------------------------------------
def cmd_preload(args: argparse.Namespace, out: Output) -> int:
    contents, problems = read_pack(args.pack)
    if problems:
        raise UsageError(
            f"{args.pack} is inconsistent: {problems[0]}",
            hint="run 'mpkit verify' on it and rebuild it with mpkit build",
        )
    ref = pack_image(contents).reference(default_registry(args))
    script_path = args.output or args.pack.with_name(f"{args.pack.stem}-preload.sh")
    archive = None
    if args.archive is not None:
        out.info(f"pulling {ref.registry}/{ref.path}@{ref.digest} into {args.archive}")
        archive = export_archive(
            ref, args.archive, options=client_options(args), credential=explicit_credential(args)
        )
        if archive.image_digest != ref.digest:
            out.warn(
                f"the pack's digest names a multi-platform index; the archive holds its "
                f"linux/amd64 image {archive.image_digest}. A cloud proxy that looks for "
                f"{ref.digest} may not find a loaded archive: prefer the registry pull"
            )
    write_script(script_path, render_script(ref, pack_name=args.pack.name, archive=archive))
    commands = preload_commands(script_path, archive.path if archive else None, args.username)
    data = {
        "script": str(script_path),
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
    text = [f"Wrote {script_path}"]
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


# -- run ---------------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace, out: Output) -> int:
    if args.timeout <= 0:
        raise UsageError("--timeout must be positive")
    if args.memory is not None and args.memory < MIN_MEMORY_LIMIT_MB:
        raise UsageError(
            f"--memory {args.memory} is below the {MIN_MEMORY_LIMIT_MB} MB engines accept",
            hint="give the adapter's memory limit in MB, e.g. 1024",
        )
    if args.port is not None and not 0 < args.port < 65536:
        raise UsageError(f"--port {args.port} is not a port number")
    try:
        insecure = frozenset(normalize_registry(h) for h in args.insecure_registry)
    except InvalidReferenceError as exc:
        raise UsageError(f"--insecure-registry: {exc.message}", hint=exc.hint) from None
    result = run_pack(
        args.pack, EngineChoice.parse(args.engine, to_run=True), memory_mb=args.memory,
        host_port=args.port, keep=args.keep, timeout=args.timeout,
        default_registry=default_registry(args), insecure_registries=insecure, say=out.info,
    )  # fmt: skip
    lines = [
        f"Image:      {result.image}",
        f"Local:      {'found, not pulled' if result.found_locally else 'pulled anonymously'}",
        f"Memory:     {result.memory_mb} MB, swap {result.memory_swap_mb - result.memory_mb} MB "
        f"more ({result.memory_source})",
        f"apiVersion: {json.dumps(result.api_version)} ({result.api_version_text})",
    ]
    if result.kept:
        lines.append(f"Running:    {result.url} (container {result.container})")
        lines.append(f"Stop it:    {result.engine} rm --force {result.container}")
    else:
        lines.append(f"Container:  {result.container} removed")
    for warning in result.warnings:
        out.warn(warning)
    out.result(result.to_dict(), "\n".join(lines))
    return EXIT_OK
