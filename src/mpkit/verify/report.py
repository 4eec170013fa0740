"""What `mpkit verify` found: checks, problems and the numbers a user needs."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Problem codes: one per exact reason a cloud proxy would fail to install the pack.
UNSAFE_PACK = "unsafe_pack"
INCONSISTENT_PACK = "inconsistent_pack"
NO_REGISTRY = "no_registry"
ANONYMOUS_PULL_DENIED = "anonymous_pull_denied"
ACCESS_DENIED = "access_denied"
AUTHENTICATION_FAILED = "authentication_failed"
DIGEST_NOT_FOUND = "digest_not_found"
DIGEST_MISMATCH = "digest_mismatch"
BLOB_MISSING = "blob_missing"
BLOB_SIZE_MISMATCH = "blob_size_mismatch"
WRONG_PLATFORM = "wrong_platform"
INVALID_IMAGE = "invalid_image"
REGISTRY_UNREACHABLE = "registry_unreachable"
TLS_UNTRUSTED = "tls_untrusted"
REGISTRY_ERROR = "registry_error"


@dataclass(frozen=True)
class Problem:
    """One reason the pack would not install, with how to fix it."""

    code: str
    message: str
    hint: str | None = None
    digest: str | None = None  # the blob or manifest concerned, when there is one

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.hint:
            out["hint"] = self.hint
        if self.digest:
            out["digest"] = self.digest
        return out


@dataclass(frozen=True)
class BlobCheck:
    """A config or layer blob, HEAD-checked in the registry."""

    role: str  # "config" or "layer N"
    digest: str
    size: int  # as the manifest declares it
    media_type: str
    present: bool
    registry_size: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "digest": self.digest,
            "size": self.size,
            "media_type": self.media_type,
            "present": self.present,
            "registry_size": self.registry_size,
        }


@dataclass(frozen=True)
class RateLimit:
    """Docker Hub's ``ratelimit-limit``/``ratelimit-remaining`` headers (``100;w=21600``)."""

    limit: int | None
    remaining: int | None
    window_seconds: int | None
    source: str | None = None  # docker-ratelimit-source: the address being counted

    @classmethod
    def from_headers(cls, headers: Any) -> RateLimit | None:
        limit_text = headers.get("ratelimit-limit")
        remaining_text = headers.get("ratelimit-remaining")
        if not limit_text and not remaining_text:
            return None
        limit, window = _quota(limit_text)
        remaining, remaining_window = _quota(remaining_text)
        return cls(
            limit=limit,
            remaining=remaining,
            window_seconds=window or remaining_window,
            source=headers.get("docker-ratelimit-source"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "limit": self.limit,
            "remaining": self.remaining,
            "window_seconds": self.window_seconds,
            "source": self.source,
        }

    def describe(self) -> str:
        left = "?" if self.remaining is None else str(self.remaining)
        total = "?" if self.limit is None else str(self.limit)
        text = f"{left} of {total} anonymous pulls left"
        if self.window_seconds:
            hours = self.window_seconds / 3600
            text += f" per {hours:g} h" if hours >= 1 else f" per {self.window_seconds} s"
        if self.source:
            text += f" for {self.source}"
        return text


def _quota(text: str | None) -> tuple[int | None, int | None]:
    """``"100;w=21600"`` → (100, 21600)."""
    if not text:
        return None, None
    match = re.match(r"\s*(\d+)\s*(?:;\s*w\s*=\s*(\d+))?", text)
    if match is None:
        return None, None
    return int(match.group(1)), int(match.group(2)) if match.group(2) else None


@dataclass
class VerifyReport:
    """The cloud proxy's view of one pack. ``ok`` is True only when it would install."""

    pack: Path
    anonymous: bool = True  # False with --with-credentials
    kind: str | None = None
    registry: str | None = None
    repository: str | None = None  # without the leading "/"
    digest: str | None = None
    tag: str | None = None
    manifest_media_type: str | None = None
    index_digest: str | None = None  # when DIGEST names a multi-platform index
    image_digest: str | None = None  # the linux/amd64 image manifest
    platform: str | None = None
    blobs: list[BlobCheck] = field(default_factory=list)
    total_size: int | None = None  # manifest + config + layers, compressed
    rate_limit: RateLimit | None = None
    anonymous_pull: str | None = None  # with credentials: "allowed", "denied", "unknown"
    checks: list[str] = field(default_factory=list)  # what passed, in order
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def image(self) -> str | None:
        """``REGISTRY/REPOSITORY@DIGEST``, what the cloud proxy pulls."""
        if self.registry is None or self.repository is None or self.digest is None:
            return None
        return f"{self.registry}/{self.repository}@{self.digest}"

    def add(self, problem: Problem) -> None:
        self.problems.append(problem)

    def passed(self, check: str) -> None:
        self.checks.append(check)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "pack": str(self.pack),
            "anonymous": self.anonymous,
            "kind": self.kind,
            "image": self.image,
            "registry": self.registry,
            "repository": self.repository,
            "digest": self.digest,
            "tag": self.tag,
            "manifest_media_type": self.manifest_media_type,
            "index_digest": self.index_digest,
            "image_digest": self.image_digest,
            "platform": self.platform,
            "blobs": [blob.to_dict() for blob in self.blobs],
            "total_size": self.total_size,
            "rate_limit": self.rate_limit.to_dict() if self.rate_limit else None,
            "anonymous_pull": self.anonymous_pull,
            "checks": list(self.checks),
            "problems": [problem.to_dict() for problem in self.problems],
            "warnings": list(self.warnings),
        }

    def summary(self) -> str:
        """One line: the verdict and its main reason (for `mpkit build`'s last line)."""
        target = self.image or str(self.pack)
        if self.ok:
            size = f", {_size(self.total_size)}" if self.total_size is not None else ""
            facts = f"({self.platform or 'linux/amd64'}{size})"
            if self.anonymous:
                return f"verify ok: {target} pulls anonymously, as a cloud proxy does {facts}"
            text = f"verify ok with credentials: {target} is complete {facts}"
            if self.anonymous_pull != "allowed":
                text += "; anonymous pulls fail, so preload it on every cloud proxy"
            return text
        first = self.problems[0]
        more = f" (+{len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
        return f"verify failed: {first.message}{more}"


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"
