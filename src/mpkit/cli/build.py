"""`mpkit build`, and `mp-build`, which takes the VMware SDK's command line unchanged."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from mpkit.cli.common import (
    add_external_links_option,
    add_output_options,
    add_pull_option,
    add_registry_cache_options,
    add_registry_options,
    allow_external_links,
    client_options,
    registry_cache_args,
)
from mpkit.cli.output import Output, human_size, short
from mpkit.cli.prompts import TerminalPrompter
from mpkit.credentials import ENV_PASSWORD, ENV_USERNAME, Credential, env_credential
from mpkit.engine import EngineChoice
from mpkit.errors import EXIT_FAILED, EXIT_OK, MpkitError, UsageError
from mpkit.project.globalconfig import find_project, load_global_config, no_project_error
from mpkit.settings import load_settings
from mpkit.workflow.multibuild import (
    GLOB_CHARACTERS,
    ProjectResult,
    build_many,
    default_jobs,
    expand_projects,
)
from mpkit.workflow.packbuild import PackBuildOptions, build_pack_flow

ASK = "\0ask"  # -r/--registry-tag given without a value


def add_build_arguments(parser: argparse.ArgumentParser, *, positional: bool) -> None:
    if positional:
        parser.add_argument("path", nargs="*", metavar="PATH",
                            help="project directory (default: -p, the current directory, or "
                            "the SDK's list of projects); several, or a quoted glob such as "
                            "'packs/*', build many packs in one run")  # fmt: skip
        parser.add_argument("-j", "--jobs", type=int, default=default_jobs(), metavar="N",
                            help="with several projects: builds at once (default "
                            f"{default_jobs()})")  # fmt: skip
    parser.add_argument("-p", "--path", dest="path_flag", type=Path, metavar="PATH",
                        help="project directory")  # fmt: skip
    parser.add_argument("-r", "--registry-tag", nargs="?", const=ASK, metavar="REPO",
                        help="pull repository recorded in the pack (overrides config.json); "
                        "without a value, ask")  # fmt: skip
    parser.add_argument("--push-registry", metavar="REPO",
                        help="push to this repository instead (the pack still records the "
                        "pull repository)")  # fmt: skip
    parser.add_argument("--use-default-registry", action="store_true",
                        help="record no registry host: the installation's default registry is "
                        "used")  # fmt: skip
    parser.add_argument("--registry-username", metavar="USER", help="registry user name")
    parser.add_argument("--registry-password", metavar="PASSWORD",
                        help="accepted for SDK compatibility; visible in the process list: "
                        f"prefer --password-stdin or ${ENV_PASSWORD}")  # fmt: skip
    parser.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the registry password or token from standard input",
    )
    parser.add_argument(
        "-i",
        "--insecure-collector-communication",
        action="store_true",
        help="the adapter speaks http on 8080 instead of https on 443",
    )
    parser.add_argument("--no-ttl", action="store_true", help="never prompt")
    parser.add_argument(
        "--no-verify",
        action="store_true",
        help="skip the cloud proxy's checks (anonymous pull) at the end",
    )
    parser.add_argument(
        "-P",
        "--port",
        type=int,
        default=8080,
        help="adapter port used while building (default 8080)",
    )
    parser.add_argument(
        "--engine",
        choices=EngineChoice.names(),
        default="auto",
        help="container engine for what the native builder cannot do",
    )
    add_pull_option(parser)
    parser.add_argument(
        "--wheelhouse",
        type=Path,
        metavar="DIR",
        help="extra wheels for requirements PyPI has no target wheel for",
    )
    add_external_links_option(parser)
    add_registry_cache_options(parser)
    add_registry_options(parser)
    add_output_options(parser)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    build = subparsers.add_parser(
        "build",
        help="build the adapter image, push it and write the pack (mp-build)",
        description="Build PROJECT's adapter image for linux/amd64 without a Docker daemon, "
        "push only the missing blobs, record the registry and the confirmed digest, and "
        "write build/<name>_<version>.pak.",
    )
    add_build_arguments(build, positional=True)
    build.set_defaults(handler=cmd_build)


def _credential(args: argparse.Namespace, out: Output) -> Credential | None:
    username = args.registry_username or os.environ.get(ENV_USERNAME)
    if args.registry_password is not None:
        out.warn("--registry-password is visible to every user in the process list; use "
                 f"--password-stdin or ${ENV_PASSWORD} instead")  # fmt: skip
    if args.password_stdin:
        if not username:
            raise UsageError("--password-stdin needs --registry-username (or $"
                             f"{ENV_USERNAME})")  # fmt: skip
        secret = sys.stdin.read().rstrip("\r\n")
        if not secret:
            raise UsageError("--password-stdin was given but standard input was empty")
        return Credential(username=username, password=secret, source="standard input")
    if args.registry_password is not None:
        if not username:
            raise UsageError("--registry-password needs --registry-username")
        return Credential(username=username, password=args.registry_password,
                          source="--registry-password")  # fmt: skip
    if args.registry_username and os.environ.get(ENV_PASSWORD):
        return Credential(username=args.registry_username, password=os.environ[ENV_PASSWORD],
                          source=f"--registry-username and ${ENV_PASSWORD}")  # fmt: skip
    if args.registry_username:
        return None  # asked for on a terminal when the registry wants it
    return env_credential()


def _project_path(args: argparse.Namespace, prompter: TerminalPrompter) -> Path:
    paths = getattr(args, "path", None) or []
    given = args.path_flag or (Path(paths[0]) if paths else None)
    global_config = load_global_config()
    found = find_project(given, cwd=Path.cwd(), global_config=global_config)
    if isinstance(found, Path):
        return found
    if not found or not prompter.interactive:
        raise no_project_error(Path.cwd(), found, global_config)
    return found[prompter.choose("Which project?", [str(p) for p in found])]


def cmd_build(args: argparse.Namespace, out: Output) -> int:
    paths: list[str] = getattr(args, "path", None) or []
    if len(paths) > 1 or any(GLOB_CHARACTERS & set(path) for path in paths):
        return _build_many(args, out, paths)
    prompter = TerminalPrompter(allowed=not args.no_ttl and not out.json_mode)
    settings = load_settings()
    cache_from, cache_to = registry_cache_args(args)
    options = PackBuildOptions(
        project=_project_path(args, prompter),
        global_config=load_global_config(),
        settings=settings,
        client_options=client_options(args, settings),
        registry_tag=None if args.registry_tag == ASK else args.registry_tag,
        ask_registry=args.registry_tag == ASK,
        push_registry=args.push_registry,
        use_default_registry=args.use_default_registry,
        credential=_credential(args, out),
        insecure_collector=args.insecure_collector_communication,
        verify=not args.no_verify,
        engine=EngineChoice.parse(args.engine),
        wheelhouse=args.wheelhouse,
        pull=args.pull,
        allow_external_links=allow_external_links(args, settings),
        cache_from=cache_from,
        cache_to=cache_to,
        registry_cache=not args.no_registry_cache,
    )
    try:
        outcome = build_pack_flow(options, prompter=prompter, reporter=out)
    except KeyboardInterrupt:
        raise MpkitError(
            "Build cancelled: nothing was written, the previous pack and config.json are unchanged"
        ) from None
    stats = outcome.stats
    text = "\n".join([
        f"Pack:    {outcome.pack}",
        f"Image:   {outcome.image}",
        f"Pushed:  {stats.blobs_uploaded} blob(s), {human_size(stats.bytes_uploaded)} "
        f"({stats.blobs_skipped} already there, {stats.blobs_mounted} mounted)",
        f"Builder: {outcome.builder}",
        f"Time:    {outcome.seconds:.1f} s",
    ])  # fmt: skip
    out.result(outcome.to_dict(), text)
    return 0


def mp_build_main(argv: Sequence[str] | None = None) -> int:
    """The VMware SDK's `mp-build` command line, run by mpkit."""
    from mpkit.cli import parser_for, run_handler

    return run_handler(parser_for("mp-build"), argv)


def build_mp_build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mp-build",
        description="Build a management pack (VMware SDK compatible; powered by mpkit).",
    )
    add_build_arguments(parser, positional=False)
    parser.set_defaults(handler=cmd_build)
    return parser


def mp_build() -> None:
    sys.exit(mp_build_main())


# -- many projects ------------------------------------------------------------------------
def _build_many(args: argparse.Namespace, out: Output, patterns: list[str]) -> int:
    for value, flag in ((args.path_flag, "-p"), (args.registry_tag, "-r/--registry-tag"),
                        (args.push_registry, "--push-registry")):  # fmt: skip
        if value is not None:
            raise UsageError(
                f"{flag} names one project's repository and cannot apply to several projects",
                hint="set container_repository (and container_push_repository) in each "
                "project's config.json",
            )
    projects = expand_projects(patterns)
    credential = _credential(args, out)
    names = [str(project) for project in projects]
    with out.jobs(names) as view:

        def event(kind: str, project: Path, result: ProjectResult | None) -> None:
            if result is None:
                view.start(str(project))
            else:
                view.done(str(project), result.ok, _summary(result))

        results = build_many(projects, _shared_flags(args), jobs=args.jobs,
                             credential=credential, on_event=event)  # fmt: skip
    failed = [r for r in results if not r.ok]
    data = {"ok": not failed, "results": [r.to_dict() for r in results]}
    out.result(data, _table(results))
    return EXIT_FAILED if failed else EXIT_OK


def _shared_flags(args: argparse.Namespace) -> list[str]:
    """The options every project's build gets (credentials travel in the environment)."""
    flags: list[str] = []
    for on, flag in ((args.use_default_registry, "--use-default-registry"),
                     (args.insecure_collector_communication, "-i"),
                     (args.no_verify, "--no-verify"), (args.pull, "--pull"),
                     (args.allow_external_links, "--allow-external-links"),
                     (getattr(args, "debug", False), "--debug")):  # fmt: skip
        if on:
            flags.append(flag)
    flags += ["-P", str(args.port), "--engine", args.engine]
    flags += ["--concurrency", str(args.concurrency), "--retries", str(args.retries)]
    if args.wheelhouse is not None:
        flags += ["--wheelhouse", str(args.wheelhouse.absolute())]
    if args.no_registry_cache:
        flags.append("--no-registry-cache")
    for repository in args.cache_from:
        flags += ["--cache-from", repository]
    if args.cache_to:
        flags += ["--cache-to", args.cache_to]
    for host in args.insecure_registry:
        flags += ["--insecure-registry", host]
    for path in args.ca_cert:
        flags += ["--ca-cert", str(path.absolute())]
    return flags


def _summary(result: ProjectResult) -> str:
    if not result.ok:
        return result.message
    pushed = result.to_dict()["bytes_pushed"] or 0
    return f"{result.seconds:.1f} s, {human_size(pushed)} pushed"


def _table(results: list[ProjectResult]) -> str:
    rows = [("PACK", "IMAGE DIGEST", "PUSHED", "TIME", "RESULT")]
    for result in results:
        data = result.to_dict()
        pack = _shown(Path(data["pack"])) if data["pack"] else _shown(result.project)
        digest = short(data["digest"]) if data["digest"] else "-"
        pushed = human_size(data["bytes_pushed"]) if data["bytes_pushed"] is not None else "-"
        outcome = "ok" if result.ok else f"failed: {_shorten(result.message)}"
        rows.append((pack, digest, pushed, f"{result.seconds:.1f} s", outcome))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join([*(cell.ljust(w) for cell, w in zip(row[:4], widths, strict=True)), row[4]])
             for row in rows]  # fmt: skip
    failed = sum(not r.ok for r in results)
    lines.append(f"{len(results) - failed} of {len(results)} pack(s) built")
    return "\n".join(lines)


def _shorten(text: str, limit: int = 100) -> str:
    """One table cell of a long error (the whole one is printed as it happens, and is in
    --json and in the project's logs/build.log)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _shown(path: Path) -> str:
    """*path* relative to the current directory when it is below it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
