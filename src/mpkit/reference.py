"""Image references: parse, normalise (Docker Hub rules) and validate.

The grammar follows distribution's reference package (``reference/regexp.go``)::

    reference      := name [ ":" tag ] [ "@" digest ]
    name           := [ domain "/" ] path-component ( "/" path-component )*
    domain         := host [ ":" port ]
    host           := domain-name | "[" IPv6address "]"
    domain-name    := label ( "." label )*         label := [a-z0-9] | [a-z0-9][a-z0-9-]*[a-z0-9]
    path-component := [a-z0-9]+ ( separator [a-z0-9]+ )*     separator := "." | "_" | "__" | "-"+
    tag            := [A-Za-z0-9_] [A-Za-z0-9_.-]{0,127}
    digest         := algorithm ":" hex

The first component of a name is a registry host iff it contains ``.`` or ``:``, is
``localhost`` or has uppercase letters (docker's ``splitDockerDomain``); otherwise the
whole name is a Docker Hub path, and a single-component Docker Hub path means
``library/NAME``. Errors are :class:`~mpkit.errors.InvalidReferenceError` naming the
exact problem, with a hint showing a valid form.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from dataclasses import dataclass

from mpkit.errors import InvalidReferenceError

__all__ = [
    "DIGEST_HEX_LENGTHS",
    "DOCKER_HUB",
    "DOCKER_HUB_API_HOST",
    "DOCKER_HUB_AUTH_HOST",
    "DOCKER_HUB_CREDENTIAL_KEY",
    "NAME_TOTAL_LENGTH_MAX",
    "TAG_LENGTH_MAX",
    "Reference",
    "Repository",
    "api_host",
    "credential_key",
    "is_loopback_host",
    "join_host_port",
    "normalize_registry",
    "parse_reference",
    "parse_repository",
    "registry_from_server_url",
    "split_host_port",
    "validate_digest",
    "validate_tag",
]

# Docker Hub is one registry under three names: its API, its token service and its credential key.
DOCKER_HUB = "docker.io"
DOCKER_HUB_API_HOST = "registry-1.docker.io"
DOCKER_HUB_AUTH_HOST = "auth.docker.io"
DOCKER_HUB_CREDENTIAL_KEY = "https://index.docker.io/v1/"
DOCKER_HUB_ALIASES = frozenset({DOCKER_HUB, "index.docker.io", DOCKER_HUB_API_HOST})
DOCKER_HUB_OFFICIAL_NAMESPACE = "library"

NAME_TOTAL_LENGTH_MAX = 255  # distribution: NameTotalLengthMax
TAG_LENGTH_MAX = 128
# OCI image-spec "Registered algorithms": encoded part is lowercase hex of this length.
DIGEST_HEX_LENGTHS = {"sha256": 64, "sha512": 128}

_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")
_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_PATH_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789._-")
_TAG_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
_DIGEST_ALGORITHM = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*")
_HEX = frozenset("0123456789abcdef")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_ECR_HOST = re.compile(
    r"(?P<account>[0-9]{12})\.(?:"
    r"dkr\.ecr(?:-fips)?\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?"
    r"|dkr-ecr(?:-fips)?\.(?P<dual_region>[a-z0-9-]+)\.on\.aws"  # dual-stack endpoints
    r")"
)

_REGISTRY_EXAMPLES = (
    "'harbor.example.com', '123456789012.dkr.ecr.us-east-1.amazonaws.com', 'docker.io', "
    "'localhost:5000' or '[::1]:5000'"
)
REPOSITORY_HINT = (
    "A repository is host[:port]/path without a tag or digest, in lowercase, e.g. "
    "'harbor.example.com/my-project/adapter', "
    "'123456789012.dkr.ecr.us-east-1.amazonaws.com/my-adapter', "
    "'docker.io/myuser/my-adapter' (or just 'myuser/my-adapter') or 'localhost:5000/my-adapter'."
)
REFERENCE_HINT = (
    "An image reference is host[:port]/path[:tag][@digest], e.g. "
    "'harbor.example.com/my-project/adapter:1.0.0', "
    "'123456789012.dkr.ecr.us-east-1.amazonaws.com/my-adapter@sha256:<64 hex digits>', "
    "'docker.io/library/alpine:3.20' (or just 'alpine:3.20') or 'localhost:5000/my-adapter:latest'."
)
REGISTRY_HINT = (
    f"A registry is host[:port] with no scheme and no path, e.g. {_REGISTRY_EXAMPLES}; "
    "IPv6 addresses go in brackets and ports are 1-65535."
)
TAG_HINT = (
    "A tag is 1-128 letters, digits, '_', '.' or '-' and does not start with '.' or '-', e.g. "
    "'harbor.example.com/my-project/adapter:1.0.0_ab12cd' or 'docker.io/library/alpine:3.20'."
)
DIGEST_HINT = (
    "A digest is 'sha256:' followed by 64 lowercase hex digits (or 'sha512:' and 128), e.g. "
    "'harbor.example.com/my-project/adapter@sha256:<64 hex digits>'."
)


def _error(message: str, hint: str) -> InvalidReferenceError:
    return InvalidReferenceError(message, hint=hint)


def _where(source: str, position: int) -> str:
    """Describe a 0-based index in *source* for a message (positions are 1-based)."""
    return f"at position {position + 1} in {source!r}"


def _reject_scheme(text: str, hint: str) -> None:
    match = _SCHEME.match(text)
    if match:
        rest = text[match.end() :].rstrip("/") or "harbor.example.com/my-project/adapter"
        raise _error(
            f"{text!r} starts with the URL scheme {match.group()!r}; registries are named "
            f"without a scheme: drop it and use {rest!r}",
            hint,
        )


def _reject_unprintable(source: str, hint: str) -> None:
    for index, char in enumerate(source):
        if char.isspace() or not char.isprintable() or not char.isascii():
            raise _error(f"invalid character {char!r} {_where(source, index)}", hint)


# --- hosts -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _HostPort:
    host: str  # without brackets
    bracketed: bool
    port: int | None
    port_text: str | None  # as written, so credential keys match what the user typed


def _split_host_port(text: str, *, source: str, offset: int, hint: str) -> _HostPort:
    """Split ``host[:port]`` or ``[IPv6][:port]`` and check the port range."""
    if text.startswith("["):
        close = text.find("]")
        if close == -1:
            raise _error(
                f"registry host {text!r} opens an IPv6 bracket '[' but never closes it "
                f"({_where(source, offset)})",
                hint,
            )
        host, rest, bracketed = text[1:close], text[close + 1 :], True
        if rest and not rest.startswith(":"):
            raise _error(
                f"unexpected {rest[0]!r} after the IPv6 address "
                f"{_where(source, offset + close + 1)}; only ':port' may follow ']'",
                hint,
            )
        port_text = rest[1:] if rest else None
        port_offset = offset + close + 2
    else:
        bracketed = False
        if text.count(":") > 1:
            raise _error(
                f"registry host {text!r} looks like an IPv6 address without brackets: "
                f"write it as '[{text}]' (or '[ADDRESS]:PORT' with a port)",
                hint,
            )
        host, colon, port_text_or_empty = text.partition(":")
        port_text = port_text_or_empty if colon else None
        port_offset = offset + len(host) + 1
    port = None if port_text is None else _parse_port(port_text, source, port_offset, hint)
    return _HostPort(host=host, bracketed=bracketed, port=port, port_text=port_text)


def _parse_port(port_text: str, source: str, offset: int, hint: str) -> int:
    if not port_text:
        raise _error(f"missing port number after ':' {_where(source, offset - 1)}", hint)
    for index, char in enumerate(port_text):
        if not char.isdigit() or not char.isascii():
            raise _error(
                f"port {port_text!r} is not a number: invalid character {char!r} "
                f"{_where(source, offset + index)}",
                hint,
            )
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise _error(f"port {port_text} in {source!r} is out of range: use 1-65535", hint)
    return port


def _check_host_name(host: str, *, source: str, offset: int, hint: str) -> str:
    """Validate a DNS name or IPv4 address; return it lowercased."""
    if not host:
        raise _error(f"empty registry host in {source!r}", hint)
    lowered = host.lower()
    position = offset
    for label in lowered.split("."):
        if not label:
            raise _error(
                f"empty label (a leading, trailing or doubled '.') in registry host "
                f"{host!r} {_where(source, position)}",
                hint,
            )
        if not _LABEL.fullmatch(label):
            for index, char in enumerate(label):
                if not (char.isalnum() and char.isascii()) and char != "-":
                    raise _error(
                        f"invalid character {char!r} {_where(source, position + index)}: "
                        "registry hosts contain only letters, digits, '-' and '.'",
                        hint,
                    )
            raise _error(
                f"label {label!r} of registry host {host!r} starts or ends with '-' "
                f"({_where(source, position)})",
                hint,
            )
        position += len(label) + 1
    labels = lowered.split(".")
    if len(labels) == 4 and all(label.isdigit() for label in labels):
        try:
            ipaddress.IPv4Address(lowered)
        except ValueError:
            raise _error(
                f"registry host {host!r} looks like an IPv4 address but is not a valid one "
                "(four numbers 0-255 without leading zeros)",
                hint,
            ) from None
    return lowered


def _normalize_registry(text: str, *, source: str, offset: int, hint: str) -> str:
    if not text:
        raise _error(f"empty registry host in {source!r}", hint)
    if "/" in text:
        raise _error(
            f"registry {text!r} must not contain '/': give only host[:port], "
            f"e.g. {text.split('/', 1)[0]!r}",
            hint,
        )
    parts = _split_host_port(text, source=source, offset=offset, hint=hint)
    if parts.bracketed:
        try:
            if "%" in parts.host:
                raise ValueError("zone ids are not allowed in registry hosts")
            ipaddress.IPv6Address(parts.host)
        except ValueError:
            raise _error(
                f"{parts.host!r} in {source!r} is not a valid IPv6 address (zone ids are not "
                "supported either)",
                hint,
            ) from None
        # validated; the spelling is kept (lowercased) so credential keys stay as typed
        host = f"[{parts.host.lower()}]"
    else:
        host = _check_host_name(parts.host, source=source, offset=offset, hint=hint)
    if parts.port_text is None:
        return DOCKER_HUB if host in DOCKER_HUB_ALIASES else host
    return f"{host}:{parts.port_text}"


def normalize_registry(host: str) -> str:
    """Validate ``host[:port]``; return it lowercased, with Docker Hub aliases as ``docker.io``."""
    _reject_unprintable(host, REGISTRY_HINT)
    _reject_scheme(host, REGISTRY_HINT)
    return _normalize_registry(host, source=host, offset=0, hint=REGISTRY_HINT)


def registry_from_server_url(url: str) -> str:
    """Registry of a credential-store key such as ``https://index.docker.io/v1/`` or ``host:5000``.

    Like docker's ``ConvertToHostname``: drop the scheme and any path, then normalise.
    """
    match = _SCHEME.match(url)
    rest = url[match.end() :] if match else url
    return normalize_registry(rest.split("/", 1)[0])


def credential_key(registry: str) -> str:
    """Key in docker config.json ``auths`` and for credential helpers (Hub: the index URL)."""
    normalized = normalize_registry(registry)
    return DOCKER_HUB_CREDENTIAL_KEY if normalized == DOCKER_HUB else normalized


def api_host(registry: str) -> str:
    """Host[:port] serving the ``/v2/`` API: Docker Hub's lives on ``registry-1.docker.io``."""
    normalized = normalize_registry(registry)
    return DOCKER_HUB_API_HOST if normalized == DOCKER_HUB else normalized


def split_host_port(registry: str) -> tuple[str, int | None]:
    """``"host:5000"`` -> ``("host", 5000)``; ``"[::1]:5000"`` -> ``("::1", 5000)``, unbracketed."""
    parts = _split_host_port(registry, source=registry, offset=0, hint=REGISTRY_HINT)
    return parts.host, parts.port


def join_host_port(host: str, port: int | None) -> str:
    """Inverse of :func:`split_host_port`: brackets an IPv6 host when needed."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return host if port is None else f"{host}:{port}"


def is_loopback_host(registry: str) -> bool:
    """True for ``localhost``, ``*.localhost``, 127.0.0.0/8 and ``[::1]``, with or without port."""
    try:
        host = split_host_port(registry)[0].lower()
    except InvalidReferenceError:
        host = registry  # maybe a bare IPv6 address such as "::1"
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


# --- tags and digests -----------------------------------------------------------------


def _check_tag(tag: str, *, source: str, offset: int) -> str:
    if not tag:
        raise _error(f"empty tag after ':' {_where(source, offset - 1)}", TAG_HINT)
    for index, char in enumerate(tag):
        if char not in _TAG_CHARS:
            raise _error(
                f"invalid character {char!r} in tag {tag!r} {_where(source, offset + index)}",
                TAG_HINT,
            )
    if tag[0] in ".-":
        raise _error(
            f"tag {tag!r} in {source!r} must start with a letter, digit or '_', not {tag[0]!r}",
            TAG_HINT,
        )
    if len(tag) > TAG_LENGTH_MAX:
        raise _error(
            f"tag {tag[:20] + '…'!r} in {source!r} is too long: {len(tag)} characters, "
            f"at most {TAG_LENGTH_MAX} are allowed",
            TAG_HINT,
        )
    return tag


def _check_digest(digest: str, *, source: str, offset: int) -> str:
    if not digest:
        raise _error(f"empty digest after '@' {_where(source, offset - 1)}", DIGEST_HINT)
    algorithm, colon, encoded = digest.partition(":")
    if not colon:
        raise _error(
            f"digest {digest!r} in {source!r} has no ':': a digest is 'algorithm:hex', "
            "e.g. 'sha256:<64 hex digits>'",
            DIGEST_HINT,
        )
    if algorithm.lower() in DIGEST_HEX_LENGTHS and algorithm != algorithm.lower():
        raise _error(
            f"digest algorithm {algorithm!r} in {source!r} must be lowercase: "
            f"use {algorithm.lower()!r}",
            DIGEST_HINT,
        )
    if not _DIGEST_ALGORITHM.fullmatch(algorithm):
        raise _error(
            f"digest {digest!r} in {source!r} has a malformed algorithm {algorithm!r}: "
            "use 'sha256'",
            DIGEST_HINT,
        )
    expected = DIGEST_HEX_LENGTHS.get(algorithm)
    if expected is None:
        raise _error(
            f"digest {digest!r} in {source!r} uses the unsupported algorithm {algorithm!r}: "
            f"supported are {', '.join(sorted(DIGEST_HEX_LENGTHS))}",
            DIGEST_HINT,
        )
    encoded_offset = offset + len(algorithm) + 1
    for index, char in enumerate(encoded):
        if char not in _HEX:
            problem = "uppercase hex digit" if char in "ABCDEF" else "invalid character"
            raise _error(
                f"{problem} {char!r} in digest {_where(source, encoded_offset + index)}: "
                f"{algorithm} digests are lowercase hex",
                DIGEST_HINT,
            )
    if len(encoded) != expected:
        raise _error(
            f"digest {digest!r} in {source!r} has {len(encoded)} hex digits; "
            f"{algorithm} needs exactly {expected}",
            DIGEST_HINT,
        )
    return digest


def validate_tag(tag: str) -> str:
    """Return *tag* if it matches ``[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}``, else raise."""
    return _check_tag(tag, source=tag, offset=0)


def validate_digest(digest: str) -> str:
    """Return *digest* if it is ``sha256:<64 hex>`` or ``sha512:<128 hex>``, else raise."""
    return _check_digest(digest, source=digest, offset=0)


# --- repository paths -----------------------------------------------------------------


def _check_path(path: str, *, source: str, offset: int, hint: str) -> None:
    """Validate a repository path as written (before ``library/`` is added)."""
    if not path:
        raise _error(f"missing repository path in {source!r}", hint)
    if path.startswith("/") and offset > 0:
        raise _error(f"empty path component (double slash '//') {_where(source, offset - 1)}", hint)
    if path.startswith("/"):
        raise _error(
            f"empty path component: repository path {path!r} starts with '/' "
            f"{_where(source, offset)}",
            hint,
        )
    if path.endswith("/"):
        raise _error(
            f"trailing slash in {source!r}: remove it and use {source.rstrip('/')!r}", hint
        )
    double = path.find("//")
    if double != -1:
        raise _error(
            f"empty path component (double slash '//') {_where(source, offset + double)}", hint
        )
    for index, char in enumerate(path):
        if char != "/" and char.lower() not in _PATH_CHARS:
            raise _error(
                f"invalid character {char!r} {_where(source, offset + index)}: repository "
                "paths contain only lowercase letters, digits, '/' and the separators "
                "'.', '_', '__' and '-'",
                hint,
            )
    if path != path.lower():
        raise _error(
            f"repository path {path!r} must be lowercase: use {path.lower()!r}"
            + ("" if source == path else f" (in {source!r})"),
            hint,
        )
    position = offset
    for component in path.split("/"):
        if not _PATH_COMPONENT.fullmatch(component):
            raise _error(_component_problem(component, source, position), hint)
        position += len(component) + 1


def _component_problem(component: str, source: str, offset: int) -> str:
    if not component[0].isalnum():
        return (
            f"path component {component!r} must start with a letter or digit, not "
            f"{component[0]!r} ({_where(source, offset)})"
        )
    if not component[-1].isalnum():
        return (
            f"path component {component!r} must end with a letter or digit, not "
            f"{component[-1]!r} ({_where(source, offset + len(component) - 1)})"
        )
    for match in re.finditer(r"[._-]+", component):
        run = match.group()
        if not re.fullmatch(r"[._]|__|-+", run):
            return (
                f"separator {run!r} in path component {component!r} "
                f"{_where(source, offset + match.start())} is not allowed: between letters "
                "and digits use a single '.', '_' or '__', or a run of '-'"
            )
    return f"path component {component!r} in {source!r} is malformed"  # pragma: no cover


def _canonical_path(registry: str, path: str) -> str:
    if registry == DOCKER_HUB and "/" not in path:
        return f"{DOCKER_HUB_OFFICIAL_NAMESPACE}/{path}"
    return path


def _check_name_length(registry: str, path: str, hint: str) -> None:
    name = f"{registry}/{path}"
    if len(name) > NAME_TOTAL_LENGTH_MAX:
        raise _error(
            f"repository name {name[:40] + '…'!r} is too long: {len(name)} characters, at most "
            f"{NAME_TOTAL_LENGTH_MAX} are allowed (registry included)",
            hint,
        )


# --- the value types ------------------------------------------------------------------


@dataclass(frozen=True)
class Repository:
    """A registry plus a repository path, normalised (``alpine`` -> ``docker.io/library/alpine``).

    Constructing one directly normalises and validates exactly like :func:`parse_repository`.
    """

    registry: str
    path: str

    def __post_init__(self) -> None:
        registry = normalize_registry(self.registry)
        source = f"{registry}/{self.path}"
        _check_path(self.path, source=source, offset=len(registry) + 1, hint=REPOSITORY_HINT)
        path = _canonical_path(registry, self.path)
        _check_name_length(registry, path, REPOSITORY_HINT)
        object.__setattr__(self, "registry", registry)
        object.__setattr__(self, "path", path)

    def __str__(self) -> str:
        return f"{self.registry}/{self.path}"

    @property
    def api_host(self) -> str:
        return api_host(self.registry)

    @property
    def credential_key(self) -> str:
        return credential_key(self.registry)

    @property
    def is_docker_hub(self) -> bool:
        return self.registry == DOCKER_HUB

    @property
    def is_loopback(self) -> bool:
        return is_loopback_host(self.registry)

    @property
    def is_ecr(self) -> bool:
        return self._ecr_match() is not None

    @property
    def ecr_region(self) -> str | None:
        """AWS region of an ECR host (``ACCOUNT.dkr.ecr[-fips].REGION.amazonaws.com[.cn]``)."""
        match = self._ecr_match()
        if match is None:
            return None
        return match.group("region") or match.group("dual_region")

    @property
    def ecr_account_id(self) -> str | None:
        match = self._ecr_match()
        return None if match is None else match.group("account")

    def _ecr_match(self) -> re.Match[str] | None:
        return _ECR_HOST.fullmatch(split_host_port(self.registry)[0])

    def reference(self, tag: str | None = None, digest: str | None = None) -> Reference:
        """This repository with a tag and/or digest."""
        return Reference(self, tag=tag, digest=digest)


@dataclass(frozen=True)
class Reference:
    """An image in a repository, by tag and/or digest (the digest wins when both are set)."""

    repository: Repository
    tag: str | None = None
    digest: str | None = None

    def __post_init__(self) -> None:
        if self.tag is not None:
            validate_tag(self.tag)
        if self.digest is not None:
            validate_digest(self.digest)

    @property
    def registry(self) -> str:
        return self.repository.registry

    @property
    def path(self) -> str:
        return self.repository.path

    @property
    def identifier(self) -> str:
        """What goes after ``/manifests/``: the digest if set, else the tag, else ``latest``."""
        return self.digest or self.tag or "latest"

    def with_digest(self, digest: str) -> Reference:
        """Same repository and tag, pinned to *digest*."""
        return dataclasses.replace(self, digest=digest)

    def with_tag(self, tag: str) -> Reference:
        """Same repository with *tag*; any digest is dropped (it named the old content)."""
        return dataclasses.replace(self, tag=tag, digest=None)

    def __str__(self) -> str:
        text = str(self.repository)
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text


# --- parsing --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Parts:
    name: str
    tag: str | None
    tag_offset: int
    digest: str | None
    digest_offset: int


def _split_reference(text: str) -> _Parts:
    """Split ``name[:tag][@digest]`` (the tag's ':' must come after the last '/')."""
    name_and_tag, at, digest = text.partition("@")
    digest_offset = len(name_and_tag) + 1
    colon = name_and_tag.rfind(":")
    if colon > name_and_tag.rfind("/"):
        return _Parts(
            name=name_and_tag[:colon],
            tag=name_and_tag[colon + 1 :],
            tag_offset=colon + 1,
            digest=digest if at else None,
            digest_offset=digest_offset,
        )
    return _Parts(name_and_tag, None, 0, digest if at else None, digest_offset)


def _looks_like_host(component: str) -> bool:
    # docker's splitDockerDomain rule
    return (
        "." in component
        or ":" in component
        or component == "localhost"
        or component != component.lower()
    )


def _reject_bare_host(text: str, parts: _Parts, hint: str) -> None:
    """``localhost:5000``, ``[::1]:5000`` or ``harbor.example.com`` alone: a registry, no path.

    Docker would read most of these as Docker Hub images (``library/localhost:5000``); no
    official Docker Hub image has such a name, so it is almost surely a forgotten path.
    """
    name_and_tag = text.partition("@")[0]
    if "/" in name_and_tag:
        return
    name = parts.name
    port_like = parts.tag is not None and parts.tag.isdigit()
    if name_and_tag.startswith("[") or (port_like and _looks_like_host(name)):
        host = name_and_tag
    elif "." in name:
        host = name
    else:
        return
    docker_hub = (
        ""
        if name_and_tag.startswith("[")
        else f" (for a Docker Hub image of that name write 'docker.io/library/{name_and_tag}')"
    )
    raise _error(
        f"{text!r} looks like a registry host without a repository path: add one, e.g. "
        f"'{host.lower()}/my-project/adapter'{docker_hub}",
        hint,
    )


def _parse_name(text: str, name: str, hint: str) -> Repository:
    slash = name.find("/")
    first = name[:slash] if slash != -1 else ""
    if slash != -1 and _looks_like_host(first):
        rest = name[slash + 1 :]
        if (
            first.lower() != "localhost"
            and not any(c in first for c in ".:")
            and rest.lower() != rest
        ):
            # Host only by docker's uppercase rule, and the rest is uppercase too: the
            # user almost surely typed a mixed-case path, so say that.
            raise _error(f"repository path {name!r} must be lowercase: use {name.lower()!r}", hint)
        registry = _normalize_registry(first, source=text, offset=0, hint=REGISTRY_HINT)
        path, path_offset = rest, slash + 1
    else:
        registry, path, path_offset = DOCKER_HUB, name, 0
    _check_path(path, source=text, offset=path_offset, hint=hint)
    canonical = _canonical_path(registry, path)
    _check_name_length(registry, canonical, hint)
    return Repository(registry, canonical)


def _prepare(text: str, hint: str, expected: str) -> _Parts:
    if not text.strip():
        raise _error(f"empty input: expected {expected}", hint)
    _reject_unprintable(text, hint)
    _reject_scheme(text, hint)
    parts = _split_reference(text)
    _reject_bare_host(text, parts, hint)
    return parts


def parse_reference(text: str) -> Reference:
    """Parse ``[host[:port]/]path[:tag][@digest]``; without tag or digest it means ``latest``."""
    parts = _prepare(text, REFERENCE_HINT, "an image reference")
    repository = _parse_name(text, parts.name, REFERENCE_HINT)
    tag = None if parts.tag is None else _check_tag(parts.tag, source=text, offset=parts.tag_offset)
    digest = parts.digest
    if digest is not None:
        _check_digest(digest, source=text, offset=parts.digest_offset)
    return Reference(repository, tag=tag, digest=digest)


def parse_repository(text: str) -> Repository:
    """Parse ``[host[:port]/]path``; a tag or digest is an error naming the form to use."""
    parts = _prepare(text, REPOSITORY_HINT, "a repository")
    found = [
        (kind, value)
        for kind, value in (("tag", parts.tag), ("digest", parts.digest))
        if value is not None
    ]
    if found:
        described = " and ".join(f"{kind} {value!r}" for kind, value in found)
        kinds = " or ".join(kind for kind, _ in found)
        raise _error(
            f"{text!r} is an image reference with {described}, but a repository without a "
            f"{kinds} is expected here: use {parts.name!r}",
            REPOSITORY_HINT,
        )
    return _parse_name(text, parts.name, REPOSITORY_HINT)
