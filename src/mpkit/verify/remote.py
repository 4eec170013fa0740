"""The registry half of `mpkit verify`: pull the pack's image the way a cloud proxy does,
minus the layer downloads.

HEAD the manifest by digest (no Docker Hub pull is counted; its RateLimit headers are
read here), GET it and hash the bytes, descend from an index to linux/amd64, then in
parallel HEAD every layer and GET the config, whose platform is checked.

Right after a push (:func:`run_checks` with *pushed*), the manifest and config are
known here and the registry has confirmed the manifest's digest, so what is left to
prove is what a cloud proxy finds: one round of parallel HEAD requests, for the manifest
and every blob.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from mpkit.errors import (
    AccessDeniedError,
    AuthenticationError,
    DigestMismatchError,
    ImageFormatError,
    MpkitError,
    NotFoundError,
    RegistryError,
    RegistryUnreachableError,
    RetriesExhaustedError,
    TLSVerificationError,
)
from mpkit.image import mediatypes
from mpkit.image.digest import compute_digest, digest_algorithm
from mpkit.image.select import DEFAULT_PLATFORM, match_score, select_platform
from mpkit.image.types import Descriptor, Image, Platform
from mpkit.jsonfile import parse_json
from mpkit.reference import Reference
from mpkit.registry import RegistryClient
from mpkit.verify import report as r
from mpkit.verify.report import BlobCheck, Problem, RateLimit, VerifyReport

F = TypeVar("F")


class _Stop(Exception):
    """A problem that ends the remote checks (recorded in the report already)."""


def check_remote(
    client: RegistryClient, ref: Reference, report: VerifyReport, *, pack_hint: str
) -> None:
    """Run every registry check for *ref* (pinned by digest), recording into *report*.

    *pack_hint* names the pack in fix-it hints (e.g. ``mpkit preload build/x.pak``).
    """
    try:
        run_checks(client, ref, report)
    except MpkitError as exc:
        report.add(problem_for(exc, ref, anonymous=report.anonymous, pack_hint=pack_hint))


def run_checks(
    client: RegistryClient, ref: Reference, report: VerifyReport, *, pushed: Image | None = None
) -> None:
    """check_remote's checks: a finding is recorded in *report*, an error of the registry
    client (which :func:`problem_for` turns into one) is raised. *pushed* is the image this
    process just pushed, whose digest the registry confirmed: when *ref* names it, its
    manifest and config are not downloaded again."""
    try:
        if pushed is not None and pushed.digest == ref.digest:
            _check_pushed(client, ref, pushed, report)
        else:
            _check(client, ref, report)
    except _Stop:
        pass


def probe_anonymous(client: RegistryClient, ref: Reference) -> str:
    """HEAD the manifest without credentials: "allowed", "denied", "missing" or "unknown"."""
    assert ref.digest is not None
    try:
        found = client.head_manifest(ref.path, ref.digest)
    except AccessDeniedError:
        return "denied"
    except MpkitError:
        return "unknown"
    return "allowed" if found is not None else "missing"


def _check(client: RegistryClient, ref: Reference, report: VerifyReport) -> None:
    digest = ref.digest
    assert digest is not None
    repository = ref.path
    where = f"{ref.registry}/{repository}"
    head = client.head_manifest(repository, digest)
    if head is None:
        report.add(_digest_not_found(ref))
        raise _Stop()
    descriptor, headers = head
    report.rate_limit = RateLimit.from_headers(headers)
    if descriptor.digest and descriptor.digest != digest:
        report.add(_served_other(where, digest, f"Docker-Content-Digest {descriptor.digest}"))
        raise _Stop()
    report.passed("manifest found (HEAD)")

    top = client.get_manifest(repository, digest)
    actual = compute_digest(top.data, digest_algorithm(digest))
    if actual != digest:
        raise DigestMismatchError(
            f"the manifest {where}@{digest} hashes to {actual}", registry=ref.registry,
            repository=repository,
        )  # fmt: skip
    report.manifest_media_type = top.media_type
    report.passed("manifest digest verified")
    parsed = _parse(top.data, f"{where}@{digest}")

    manifest_size = len(top.data)
    if top.media_type in mediatypes.INDEX_MEDIA_TYPES or "manifests" in parsed:
        report.index_digest = digest
        children = [
            Descriptor.from_dict(d, where=f"index entry {i}")
            for i, d in enumerate(parsed.get("manifests") or [])
        ]
        try:
            chosen = select_platform(children, DEFAULT_PLATFORM)
        except ImageFormatError as exc:
            report.add(_wrong_platform(ref, exc.message))
            raise _Stop() from None
        child = client.get_manifest(repository, chosen.digest)
        manifest_size += len(child.data)
        parsed = _parse(child.data, f"{where}@{chosen.digest}")
        report.image_digest = child.digest
        report.manifest_media_type = child.media_type
        media_type = child.media_type
    else:
        report.image_digest = digest
        media_type = top.media_type
    if media_type not in mediatypes.MANIFEST_MEDIA_TYPES or "config" not in parsed:
        report.add(Problem(
            r.INVALID_IMAGE,
            f"{where}@{digest} is a {media_type or 'unknown'} document, not a container image",
            hint="the pack must point at an OCI or Docker v2 image (or an index of them)",
            digest=digest,
        ))  # fmt: skip
        raise _Stop()

    config = Descriptor.from_dict(parsed["config"], where="manifest config")
    layers = [
        Descriptor.from_dict(d, where=f"manifest layer {i}")
        for i, d in enumerate(parsed.get("layers") or [])
    ]
    config_data, sizes = _with_blob_heads(
        client, ref, lambda: _read_config(client, ref, config), layers
    )
    config_size = None if config_data is None else len(config_data)
    _report_blobs(ref, [config, *layers], [config_size, *sizes], report)
    report.total_size = manifest_size + config.size + sum(d.size for d in layers)
    if config_data is not None:
        _check_platform(ref, config, config_data, report)


def _check_pushed(client: RegistryClient, ref: Reference, image: Image, report: VerifyReport
                  ) -> None:  # fmt: skip
    """The checks for the image just pushed: HEAD its manifest and every blob at once."""
    digest = image.digest
    where = f"{ref.registry}/{ref.path}"
    blobs = [image.config.descriptor, *(layer.descriptor for layer in image.layers)]
    head, sizes = _with_blob_heads(
        client, ref, lambda: client.head_manifest(ref.path, digest), blobs
    )
    if head is None:
        report.add(_digest_not_found(ref))
        raise _Stop()
    descriptor, headers = head
    report.rate_limit = RateLimit.from_headers(headers)
    served = descriptor.size
    if (descriptor.digest and descriptor.digest != digest) or (
        served and served != len(image.manifest_bytes)
    ):
        report.add(_served_other(
            where, digest, f"Docker-Content-Digest {descriptor.digest or '(none)'} and "
            f"{served} bytes, not the {len(image.manifest_bytes)} bytes this build pushed",
        ))  # fmt: skip
        raise _Stop()
    report.passed("manifest found (HEAD)")
    report.passed("manifest digest verified (the bytes this build pushed)")
    report.manifest_media_type = image.media_type
    report.image_digest = digest
    _report_blobs(ref, blobs, sizes, report)
    report.total_size = len(image.manifest_bytes) + sum(d.size for d in blobs)
    _check_platform(ref, blobs[0], image.config_bytes, report)


def _with_blob_heads(
    client: RegistryClient, ref: Reference, first: Callable[[], F], blobs: Sequence[Descriptor]
) -> tuple[F, list[int | None]]:
    """*first*'s result and each blob's size in the registry (HEAD; None: missing), all
    asked at once (a connection each, up to the client's pool); *first*'s error wins."""
    client.transport.ping()  # once, before the threads
    workers = max(1, min(client.transport.connections, 1 + len(blobs)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mpkit-verify") as pool:
        head = pool.submit(first)
        sizes = [pool.submit(_head, client, ref, desc) for desc in blobs]
    return head.result(), [size.result() for size in sizes]


def _report_blobs(
    ref: Reference, blobs: list[Descriptor], sizes: list[int | None], report: VerifyReport
) -> None:
    """Record the config (first) and layer blobs found with *sizes* (None: missing)."""
    layers = len(blobs) - 1
    roles = ["config", *(f"layer {i + 1} of {layers}" for i in range(layers))]
    for role, desc, size in zip(roles, blobs, sizes, strict=True):
        check = BlobCheck(role, desc.digest, desc.size, desc.media_type, size is not None, size)
        report.blobs.append(check)
        where = f"{ref.registry}/{ref.path}"
        if size is None:
            report.add(Problem(
                r.BLOB_MISSING,
                f"the {role} blob {desc.digest} ({desc.size} bytes) is missing from {where}: "
                "a cloud proxy's pull would fail on it",
                hint="push the image again (mpkit pushes only the missing blobs), or ask the "
                "registry administrator whether garbage collection removed it",
                digest=desc.digest,
            ))  # fmt: skip
        elif size != desc.size and size != 0:
            report.add(Problem(
                r.BLOB_SIZE_MISMATCH,
                f"the {role} blob {desc.digest} in {where} is {size} bytes, but the manifest "
                f"says {desc.size}", hint="the registry's copy is damaged; push the image again",
                digest=desc.digest,
            ))  # fmt: skip
    if all(blob.present for blob in report.blobs):
        report.passed(f"config and {layers} layer blob(s) present (HEAD)")


def _head(client: RegistryClient, ref: Reference, desc: Descriptor) -> int | None:
    if desc.urls:
        return desc.size  # a foreign layer: pulled from its URLs, not from the registry
    return client.blob_size(ref.path, desc.digest)


def _read_config(client: RegistryClient, ref: Reference, config: Descriptor) -> bytes | None:
    """The config blob (digest verified), or None when the registry lacks it."""
    try:
        return client.read_blob(ref.path, config)
    except NotFoundError:
        return None


def _check_platform(ref: Reference, config: Descriptor, data: bytes, report: VerifyReport) -> None:
    parsed = _parse(data, f"config {config.digest}")
    os_name, arch = parsed.get("os"), parsed.get("architecture")
    if not isinstance(os_name, str) or not isinstance(arch, str):
        report.add(_wrong_platform(ref, "the image config names no os/architecture"))
        return
    variant = parsed.get("variant")
    platform = Platform(os_name, arch, variant if isinstance(variant, str) else None)
    report.platform = str(platform)
    if match_score(platform, DEFAULT_PLATFORM) == 0:
        report.add(_wrong_platform(ref, f"the image is {platform}"))
        return
    report.passed(f"platform {platform}")


def _parse(data: bytes, what: str) -> dict[str, Any]:
    try:
        parsed = parse_json(data)
    except ValueError as exc:
        raise ImageFormatError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise ImageFormatError(f"{what} is not a JSON object")
    return parsed


# -- problems ------------------------------------------------------------------------------
def _digest_not_found(ref: Reference) -> Problem:
    return Problem(
        r.DIGEST_NOT_FOUND,
        f"digest not found: {ref.registry}/{ref.path} has no manifest {ref.digest}",
        hint="the image was deleted, pushed elsewhere, or the pack's DIGEST was changed; push "
        "the image again and rebuild the pack (mpkit build)",
        digest=ref.digest,
    )


def _served_other(where: str, digest: str, answer: str) -> Problem:
    return Problem(
        r.DIGEST_MISMATCH,
        f"{where} answers HEAD {digest} with {answer}",
        hint="the registry serves different content under this digest; push the image "
        "again and rebuild the pack",
        digest=digest,
    )


def _wrong_platform(ref: Reference, detail: str) -> Problem:
    return Problem(
        r.WRONG_PLATFORM,
        f"wrong platform: {ref.registry}/{ref.path}@{ref.digest} has no linux/amd64 image "
        f"({detail}); Aria Operations cloud proxies are linux/amd64",
        hint="build the adapter image for linux/amd64 (mpkit builds it by default) and rebuild "
        "the pack",
        digest=ref.digest,
    )


def denied_problem(ref: Reference, pack_hint: str) -> Problem:
    target = f"{ref.registry}/{ref.path}"
    return Problem(
        r.ANONYMOUS_PULL_DENIED,
        f"anonymous pull denied: {target} does not let a cloud proxy pull {ref.digest} "
        "without credentials (the repository is private, or it does not exist)",
        hint="Aria Operations cloud proxies pull images only anonymously. Either make the "
        f"repository {target} public (allow anonymous pulls), or preload the image on every "
        f"cloud proxy before installing the pack ('{pack_hint}' writes a script for that). "
        "Add --with-credentials to check that the image exists",
        digest=ref.digest,
    )


def problem_for(exc: MpkitError, ref: Reference, *, anonymous: bool, pack_hint: str) -> Problem:
    """The verify problem for an error of the registry client."""
    if isinstance(exc, AccessDeniedError) and exc.anonymous and anonymous:
        return denied_problem(ref, pack_hint)
    if isinstance(exc, AccessDeniedError):
        return Problem(r.ACCESS_DENIED, exc.message, exc.hint, ref.digest)
    if isinstance(exc, AuthenticationError):
        return Problem(r.AUTHENTICATION_FAILED, exc.message, exc.hint)
    if isinstance(exc, TLSVerificationError):
        hint = (exc.hint or "") + "; every cloud proxy must trust that CA as well"
        return Problem(r.TLS_UNTRUSTED, exc.message, hint)
    if isinstance(exc, (RegistryUnreachableError, RetriesExhaustedError)):
        return Problem(r.REGISTRY_UNREACHABLE, exc.message, exc.hint)
    if isinstance(exc, DigestMismatchError):
        return Problem(
            r.DIGEST_MISMATCH,
            f"digest mismatch: {exc.message}",
            hint="the registry serves different bytes than the pack's DIGEST names; push the "
            "image again and rebuild the pack",
            digest=ref.digest,
        )
    if isinstance(exc, NotFoundError):
        return _digest_not_found(ref)
    if isinstance(exc, ImageFormatError):
        return Problem(r.INVALID_IMAGE, exc.message, exc.hint, ref.digest)
    if isinstance(exc, RegistryError):
        return Problem(r.REGISTRY_ERROR, exc.message, exc.hint)
    return Problem(exc.code, exc.message, exc.hint)
