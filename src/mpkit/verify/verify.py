"""`verify_pack`: would a cloud proxy install this pack?"""

from __future__ import annotations

import shlex
from pathlib import Path

from mpkit.credentials import Credential
from mpkit.image.types import Image
from mpkit.pack import PackError
from mpkit.registry import ClientOptions, open_client
from mpkit.verify import report as r
from mpkit.verify.remote import check_remote, probe_anonymous
from mpkit.verify.report import Problem, VerifyReport
from mpkit.verify.target import DEFAULT_REGISTRY_HINT, pack_image, read_pack

_ANONYMOUS_OUTCOMES = {
    "denied": "are denied",
    "missing": "find no such image",
    "unknown": "could not be checked",
}


def verify_pack(
    path: Path,
    *,
    options: ClientOptions,
    with_credentials: bool = False,
    credential: Credential | None = None,
    default_registry: str | None = None,
    pushed: Image | None = None,
) -> VerifyReport:
    """Check *path* as a cloud proxy would; never raises for what it finds (see ``.problems``).

    Without *with_credentials* the registry is asked anonymously, whatever credentials the
    user has stored. With it, the same checks run authenticated (*credential*, else the
    stored login), which tells a private image from a missing one; the report then also
    says whether anonymous pulls are allowed, and ``ok`` means "installs once preloaded".
    *default_registry* stands in for a pack built with use_default_registry. *pushed* is
    the image the caller just pushed (its digest confirmed by the registry): if the pack
    names it, its manifest and config are not downloaded again.
    """
    report = VerifyReport(pack=path, anonymous=not with_credentials)
    try:
        contents, inconsistencies = read_pack(path)
    except PackError as exc:
        report.add(Problem(r.UNSAFE_PACK, exc.message, exc.hint))
        return report
    report.kind = contents.kind
    report.passed("pack opened safely")
    for text in inconsistencies:
        report.add(Problem(
            r.INCONSISTENT_PACK, text,
            hint="rebuild the pack with mpkit build; the installer reads the image location "
            f"from adapter.zip's {contents.kind}.conf",
        ))  # fmt: skip
    try:
        image = pack_image(contents)
    except PackError as exc:
        report.add(Problem(r.INCONSISTENT_PACK, exc.message, exc.hint))
        return report
    if not inconsistencies:
        report.passed(f"manifest.txt and {contents.kind}.conf agree")
    report.repository, report.digest, report.tag = image.repository, image.digest, image.tag
    report.registry = image.registry or default_registry
    if report.registry is None:
        report.add(Problem(
            r.NO_REGISTRY,
            "the pack records no registry (use_default_registry), so mpkit cannot check the "
            "pull a cloud proxy would make",
            hint=DEFAULT_REGISTRY_HINT,
        ))  # fmt: skip
        return report
    try:
        ref = image.reference(default_registry)
    except PackError as exc:
        report.add(Problem(r.INCONSISTENT_PACK, exc.message, exc.hint))
        return report
    report.registry = ref.registry
    pack_hint = f"mpkit preload {shlex.quote(str(path))}"
    with open_client(
        ref.registry,
        options=options,
        anonymous=not with_credentials,
        explicit=credential if with_credentials else None,
    ) as client:
        check_remote(client, ref, report, pack_hint=pack_hint, pushed=pushed)
    if with_credentials and report.ok:
        with open_client(ref.registry, options=options, anonymous=True) as anonymous:
            report.anonymous_pull = probe_anonymous(anonymous, ref)
        if report.anonymous_pull != "allowed":
            outcome = _ANONYMOUS_OUTCOMES.get(report.anonymous_pull, "fail")
            report.warnings.append(
                f"anonymous pulls of {ref.registry}/{ref.path} {outcome}: "
                "a cloud proxy installs this pack only if the image is preloaded on it "
                f"('{pack_hint}'), or once the repository is public"
            )
    return report
