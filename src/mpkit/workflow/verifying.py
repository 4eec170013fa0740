"""The cloud proxy's check at the end of a flow (build, promote): a failed check is a
warning on a flow that itself succeeded, with each problem and its fix."""

from __future__ import annotations

import logging
from pathlib import Path

from mpkit.interaction import Reporter
from mpkit.registry.transport import ClientOptions
from mpkit.verify import PushedImageCheck, VerifyReport, verify_pack

log = logging.getLogger("mpkit.verify")


def verify_and_report(
    pack: Path,
    options: ClientOptions,
    reporter: Reporter,
    *,
    default_registry: str | None = None,
    pushed: PushedImageCheck | None = None,
) -> VerifyReport:
    report = verify_pack(pack, options=options, default_registry=default_registry,
                         pushed=pushed)  # fmt: skip
    log.info("%s", report.summary())
    if report.ok:
        reporter.info(report.summary())
        return report
    reporter.warn(report.summary())
    for problem in report.problems:
        reporter.warn(problem.message + (f" ({problem.hint})" if problem.hint else ""))
    return report
