"""Choose the manifest for one platform out of an image index."""

from __future__ import annotations

from collections.abc import Sequence

from mpkit.errors import ImageFormatError
from mpkit.image.types import Descriptor, Platform, normalize_architecture

# The Aria Operations cloud proxy is linux/amd64, whatever the build host is.
DEFAULT_PLATFORM = Platform("linux", "amd64")

# containerd platforms.Normalize: these architectures have a default variant.
_DEFAULT_VARIANT = {"arm64": "v8", "arm": "v7"}


def _arch(platform: Platform) -> str:
    return normalize_architecture(platform.architecture)


def _variant(platform: Platform) -> str | None:
    variant = platform.variant.lower() if platform.variant else None
    return variant or _DEFAULT_VARIANT.get(_arch(platform))


def match_score(candidate: Platform, want: Platform) -> int:
    """0 when *candidate* cannot run as *want*; higher is a closer match.

    arm64 without a variant means v8 (arm: v7). For other architectures (amd64
    above all) the candidate's variant is ignored unless *want* names one.
    """
    if candidate.os.lower() != want.os.lower() or _arch(candidate) != _arch(want):
        return 0
    if want.os_version and candidate.os_version and want.os_version != candidate.os_version:
        return 0
    have, need = _variant(candidate), _variant(want)
    if _arch(want) in _DEFAULT_VARIANT or want.variant:
        if (have or (None if _arch(want) in _DEFAULT_VARIANT else "v1")) != need:
            return 0
        return 2
    # Variant not asked for: an entry without one (or v1) beats e.g. amd64/v3.
    return 2 if have in (None, "v1") else 1


def platform_matches(candidate: Platform, want: Platform) -> bool:
    return match_score(candidate, want) > 0


def describe_platforms(manifests: Sequence[Descriptor]) -> str:
    names = sorted({str(d.platform) for d in manifests if d.platform is not None})
    return ", ".join(names) if names else "none (the entries carry no platform)"


def select_platform(manifests: Sequence[Descriptor], want: Platform) -> Descriptor:
    """The best entry of an index for *want*; ties go to the first listed."""
    best: Descriptor | None = None
    best_score = 0
    for descriptor in manifests:
        if descriptor.platform is None:
            continue
        score = match_score(descriptor.platform, want)
        if score > best_score:
            best, best_score = descriptor, score
    if best is None:
        raise ImageFormatError(
            f"the image index has no manifest for platform {want}; "
            f"available: {describe_platforms(manifests)}",
            hint="choose one of the available platforms (e.g. --platform linux/amd64) or "
            "use a base image built for the one you need",
        )
    return best
