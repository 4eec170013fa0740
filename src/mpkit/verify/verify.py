"""`verify_pack`: would a cloud proxy install this pack?"""

from __future__ import annotations

import shlex
import threading
from pathlib import Path

from mpkit.credentials import Credential
from mpkit.errors import MpkitError, PackError
from mpkit.image.types import Image
from mpkit.reference import Reference
from mpkit.registry import ClientOptions, open_client
from mpkit.verify import report as r
from mpkit.verify.remote import check_remote, probe_anonymous, problem_for, run_checks
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
    pushed: PushedImageCheck | None = None,
) -> VerifyReport:
    """Check *path* as a cloud proxy would; never raises for what it finds (see ``.problems``).

    Without *with_credentials* the registry is asked anonymously, whatever credentials the
    user has stored. With it, the same checks run authenticated (*credential*, else the
    stored login), which tells a private image from a missing one; the report then also
    says whether anonymous pulls are allowed, and ``ok`` means "installs once preloaded".
    *default_registry* stands in for a pack built with use_default_registry. *pushed* is
    the anonymous check of the image the caller just pushed, started before the pack was
    written: if the pack names that image, its findings stand for the registry's half.
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
    if pushed is not None and not with_credentials and pushed.checks(ref):
        pushed.report_into(report, pack_hint=pack_hint)
        return report
    with open_client(
        ref.registry,
        options=options,
        anonymous=not with_credentials,
        explicit=credential if with_credentials else None,
    ) as client:
        check_remote(client, ref, report, pack_hint=pack_hint)
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


class PushedImageCheck:
    """The registry's half of :func:`verify_pack` for an image just pushed, started in the
    background at once, so that its round trips overlap what the build does before the
    pack exists. Anonymous, as a cloud proxy pulls; the manifest and config are the ones
    pushed (their digest confirmed by the registry), so it is one round of HEAD requests.
    """

    def __init__(self, ref: Reference, pushed: Image, *, options: ClientOptions) -> None:
        self.ref = ref
        self._found = VerifyReport(pack=Path(), anonymous=True)
        self._error: MpkitError | None = None
        self._thread = threading.Thread(target=self._run, args=(pushed, options),
                                        name="mpkit-verify-pushed", daemon=True)  # fmt: skip
        self._thread.start()

    def _run(self, pushed: Image, options: ClientOptions) -> None:
        try:
            with open_client(self.ref.registry, options=options, anonymous=True) as client:
                run_checks(client, self.ref, self._found, pushed=pushed)
        except MpkitError as exc:
            self._error = exc

    def checks(self, ref: Reference) -> bool:
        """Whether this check is about the image *ref* pins."""
        return (ref.registry, ref.path, ref.digest) == (
            self.ref.registry, self.ref.path, self.ref.digest,
        )  # fmt: skip

    def report_into(self, report: VerifyReport, *, pack_hint: str) -> None:
        """Wait for the check, then record what it found in *report*."""
        self._thread.join()
        found = self._found
        for name in _REGISTRY_FIELDS:
            setattr(report, name, getattr(found, name))
        report.blobs.extend(found.blobs)
        report.checks.extend(found.checks)
        report.problems.extend(found.problems)
        if self._error is not None:
            report.add(problem_for(self._error, self.ref, anonymous=True, pack_hint=pack_hint))


# What the registry's half of a check fills in, besides blobs, checks and problems.
_REGISTRY_FIELDS = ("manifest_media_type", "index_digest", "image_digest", "platform",
                    "total_size", "rate_limit")  # fmt: skip
