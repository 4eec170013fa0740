"""What a request may name: repositories, tags, digests, upload sessions, and the routes.

Everything that becomes part of a storage path passes one of these patterns first, so
no request can name ``..``, an absolute path or an encoded separator. The path is never
percent-decoded: ``%2e%2e`` simply fails to match.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# distribution-spec "Pulling manifests": <name> and <tag> grammars.
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAME_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
NAME_MAX_LENGTH = 255  # distribution: NameTotalLengthMax
# OCI image-spec "Registered algorithms": lowercase hex of a fixed length.
DIGEST_HEX_LENGTHS = {"sha256": 64, "sha512": 128}
_DIGEST_RE = re.compile(r"(sha256|sha512):([0-9a-f]+)")
_ANY_DIGEST_RE = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
SESSION_RE = re.compile(r"[0-9a-f]{32}")


def valid_name(name: str) -> bool:
    return len(name) <= NAME_MAX_LENGTH and NAME_RE.fullmatch(name) is not None


def valid_tag(tag: str) -> bool:
    return TAG_RE.fullmatch(tag) is not None


def valid_digest(digest: str) -> bool:
    """A digest this registry can verify: sha256 or sha512 with the right hex length."""
    match = _DIGEST_RE.fullmatch(digest)
    return match is not None and len(match.group(2)) == DIGEST_HEX_LENGTHS[match.group(1)]


def looks_like_digest(reference: str) -> bool:
    """True for anything in digest syntax (``algo:encoded``), supported or not."""
    return ":" in reference and _ANY_DIGEST_RE.fullmatch(reference) is not None


def split_digest(digest: str) -> tuple[str, str]:
    algorithm, _, hex_part = digest.partition(":")
    return algorithm, hex_part


@dataclass(frozen=True)
class Route:
    """A matched API path: *kind* plus the raw (not yet validated) name and argument."""

    kind: str
    name: str = ""
    arg: str = ""


# Order matters: ".../blobs/uploads" must win over ".../blobs/<digest>".
_ROUTES = (
    ("upload_start", re.compile(r"/v2/(?P<name>.+)/blobs/uploads/?")),
    ("upload", re.compile(r"/v2/(?P<name>.+)/blobs/uploads/(?P<arg>[^/]+)")),
    ("blob", re.compile(r"/v2/(?P<name>.+)/blobs/(?P<arg>[^/]+)")),
    ("manifest", re.compile(r"/v2/(?P<name>.+)/manifests/(?P<arg>[^/]+)")),
    ("tags", re.compile(r"/v2/(?P<name>.+)/tags/list")),
    ("referrers", re.compile(r"/v2/(?P<name>.+)/referrers/(?P<arg>[^/]+)")),
)


def match_route(path: str) -> Route | None:
    """Map a request path (without the query) to a :class:`Route`, or None."""
    if path in ("/v2/", "/v2"):
        return Route("base")
    if path == "/v2/_catalog":
        return Route("catalog")
    if path == "/token":
        return Route("token")
    for kind, pattern in _ROUTES:
        match = pattern.fullmatch(path)
        if match:
            groups = match.groupdict()
            return Route(kind, groups["name"], groups.get("arg") or "")
    return None
