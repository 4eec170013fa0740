"""`mpkit verify PACK`: check that a cloud proxy can pull a pack's image anonymously."""

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
from mpkit.cli.output import Output, human_size, short
from mpkit.errors import EXIT_FAILED, EXIT_OK, UsageError
from mpkit.verify import VerifyReport, verify_pack


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
