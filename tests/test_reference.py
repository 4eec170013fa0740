"""Image references: Docker Hub normalisation, hosts and ports, ECR hosts, errors."""

from __future__ import annotations

import pytest

from mpkit.errors import InvalidReferenceError
from mpkit.reference import (
    DOCKER_HUB,
    DOCKER_HUB_API_HOST,
    DOCKER_HUB_AUTH_HOST,
    DOCKER_HUB_CREDENTIAL_KEY,
    Reference,
    Repository,
    api_host,
    credential_key,
    is_loopback_host,
    join_host_port,
    normalize_registry,
    parse_reference,
    parse_repository,
    registry_from_server_url,
    split_host_port,
    validate_digest,
    validate_tag,
)

SHA256 = "sha256:" + "0123456789abcdef" * 4
SHA512 = "sha512:" + "0123456789abcdef" * 8
ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com"


def test_docker_hub_constants() -> None:
    assert DOCKER_HUB == "docker.io"
    assert DOCKER_HUB_API_HOST == "registry-1.docker.io"
    assert DOCKER_HUB_AUTH_HOST == "auth.docker.io"
    assert DOCKER_HUB_CREDENTIAL_KEY == "https://index.docker.io/v1/"


# --- successful parses ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "registry", "path", "tag", "digest"),
    [
        # Docker Hub forms
        ("alpine", "docker.io", "library/alpine", None, None),
        ("alpine:3.20", "docker.io", "library/alpine", "3.20", None),
        ("user/repo", "docker.io", "user/repo", None, None),
        ("user/repo:1.0.0_ab12", "docker.io", "user/repo", "1.0.0_ab12", None),
        ("docker.io/alpine", "docker.io", "library/alpine", None, None),
        ("docker.io/library/alpine", "docker.io", "library/alpine", None, None),
        ("index.docker.io/library/alpine:3", "docker.io", "library/alpine", "3", None),
        ("registry-1.docker.io/user/repo", "docker.io", "user/repo", None, None),
        ("Docker.IO/user/repo", "docker.io", "user/repo", None, None),
        ("localhost", "docker.io", "library/localhost", None, None),
        ("host/repo", "docker.io", "host/repo", None, None),
        (f"alpine@{SHA256}", "docker.io", "library/alpine", None, SHA256),
        # registries with dots, ports, loopback names and addresses
        (
            "harbor.example.com/my-project/adapter",
            "harbor.example.com",
            "my-project/adapter",
            None,
            None,
        ),
        ("Harbor.Example.COM/p/a:1.0", "harbor.example.com", "p/a", "1.0", None),
        ("localhost/x", "localhost", "x", None, None),
        ("localhost:5000/x", "localhost:5000", "x", None, None),
        ("myhost:5000/x", "myhost:5000", "x", None, None),
        ("127.0.0.1:5000/x:1", "127.0.0.1:5000", "x", "1", None),
        ("127.0.0.1/a/b/c", "127.0.0.1", "a/b/c", None, None),
        ("[::1]:5000/x", "[::1]:5000", "x", None, None),
        ("[::1]/x:tag", "[::1]", "x", "tag", None),
        ("[FE80::1]:443/x", "[fe80::1]:443", "x", None, None),
        ("host:1/x", "host:1", "x", None, None),
        ("host:65535/x", "host:65535", "x", None, None),
        (f"{ECR}/adapter:1.0.0", ECR, "adapter", "1.0.0", None),
        # path separators and tags/digests
        ("h.io/a.b/c_d/e__f/g---h/0-9", "h.io", "a.b/c_d/e__f/g---h/0-9", None, None),
        ("h.io/x:_tag-With.Caps", "h.io", "x", "_tag-With.Caps", None),
        (f"h.io/x:1@{SHA256}", "h.io", "x", "1", SHA256),
        (f"h.io/x@{SHA512}", "h.io", "x", None, SHA512),
        ("h.io/x:" + "t" * 128, "h.io", "x", "t" * 128, None),
    ],
)
def test_parse_reference(
    text: str, registry: str, path: str, tag: str | None, digest: str | None
) -> None:
    ref = parse_reference(text)
    assert (ref.registry, ref.path, ref.tag, ref.digest) == (registry, path, tag, digest)
    assert ref.repository == Repository(registry, path)
    # str() round-trips to an equal reference
    assert parse_reference(str(ref)) == ref


def test_uppercase_first_component_is_a_host() -> None:
    # docker's rule; str() cannot round-trip such a host (no dot, port or uppercase left).
    ref = parse_reference("MyHost/repo:1")
    assert (ref.registry, ref.path, ref.tag) == ("myhost", "repo", "1")
    assert str(ref) == "myhost/repo:1"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("alpine", "docker.io/library/alpine"),
        ("alpine:3.20", "docker.io/library/alpine:3.20"),
        ("index.docker.io/user/repo:1", "docker.io/user/repo:1"),
        ("LOCALHOST:5000/x:v1", "localhost:5000/x:v1"),
        ("[::1]:5000/ns/x", "[::1]:5000/ns/x"),
        (f"h.io/x:1@{SHA256}", f"h.io/x:1@{SHA256}"),
        (f"h.io/x@{SHA256}", f"h.io/x@{SHA256}"),
    ],
)
def test_reference_str(text: str, expected: str) -> None:
    assert str(parse_reference(text)) == expected


@pytest.mark.parametrize(
    ("text", "identifier"),
    [
        ("h.io/x", "latest"),
        ("h.io/x:1.0", "1.0"),
        (f"h.io/x@{SHA256}", SHA256),
        (f"h.io/x:1.0@{SHA256}", SHA256),
    ],
)
def test_identifier(text: str, identifier: str) -> None:
    assert parse_reference(text).identifier == identifier


def test_with_digest_keeps_tag_and_with_tag_drops_digest() -> None:
    ref = parse_reference("h.io/x:1.0")
    pinned = ref.with_digest(SHA256)
    assert str(pinned) == f"h.io/x:1.0@{SHA256}"
    retagged = pinned.with_tag("2.0")
    assert (retagged.tag, retagged.digest, retagged.identifier) == ("2.0", None, "2.0")
    assert ref.tag == "1.0" and ref.digest is None  # frozen originals untouched


def test_with_digest_and_with_tag_validate() -> None:
    ref = parse_reference("h.io/x")
    with pytest.raises(InvalidReferenceError, match="needs exactly 64"):
        ref.with_digest("sha256:abc")
    with pytest.raises(InvalidReferenceError, match="must start with a letter"):
        ref.with_tag("-x")


def test_repository_reference_helper() -> None:
    repo = parse_repository("h.io/x")
    assert repo.reference("1") == parse_reference("h.io/x:1")
    assert repo.reference(digest=SHA256).identifier == SHA256


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("alpine", "docker.io/library/alpine"),
        ("docker.io/alpine", "docker.io/library/alpine"),
        ("user/repo", "docker.io/user/repo"),
        ("index.docker.io/user/repo", "docker.io/user/repo"),
        ("harbor.example.com/my-project/adapter", "harbor.example.com/my-project/adapter"),
        ("localhost:5000/adapter", "localhost:5000/adapter"),
        ("[::1]:5000/adapter", "[::1]:5000/adapter"),
        (f"{ECR}/adapter", f"{ECR}/adapter"),
    ],
)
def test_parse_repository(text: str, expected: str) -> None:
    repo = parse_repository(text)
    assert str(repo) == expected
    assert parse_repository(str(repo)) == repo


def test_repository_constructor_normalises() -> None:
    assert Repository("index.docker.io", "alpine") == parse_repository("alpine")
    assert Repository("Harbor.Example.com", "p/a").registry == "harbor.example.com"
    with pytest.raises(InvalidReferenceError, match="must be lowercase"):
        Repository("h.io", "My/Repo")
    with pytest.raises(InvalidReferenceError, match="out of range"):
        Repository("h.io:0", "x")


def test_reference_constructor_validates() -> None:
    repo = parse_repository("h.io/x")
    with pytest.raises(InvalidReferenceError, match="unsupported algorithm 'md5'"):
        Reference(repo, digest="md5:" + "0" * 32)
    with pytest.raises(InvalidReferenceError, match="invalid character '/'"):
        Reference(repo, tag="a/b")


# --- repository properties ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "api", "key", "hub", "loopback"),
    [
        ("alpine", "registry-1.docker.io", "https://index.docker.io/v1/", True, False),
        ("index.docker.io/u/r", "registry-1.docker.io", "https://index.docker.io/v1/", True, False),
        ("harbor.example.com/p/a", "harbor.example.com", "harbor.example.com", False, False),
        ("localhost:5000/a", "localhost:5000", "localhost:5000", False, True),
        ("localhost/a", "localhost", "localhost", False, True),
        (
            "registry.localhost:5000/a",
            "registry.localhost:5000",
            "registry.localhost:5000",
            False,
            True,
        ),
        ("127.0.0.1:5000/a", "127.0.0.1:5000", "127.0.0.1:5000", False, True),
        ("127.8.9.10/a", "127.8.9.10", "127.8.9.10", False, True),
        ("[::1]:5000/a", "[::1]:5000", "[::1]:5000", False, True),
        ("10.0.0.1:5000/a", "10.0.0.1:5000", "10.0.0.1:5000", False, False),
        ("notlocalhost.com/a", "notlocalhost.com", "notlocalhost.com", False, False),
    ],
)
def test_repository_properties(text: str, api: str, key: str, hub: bool, loopback: bool) -> None:
    repo = parse_repository(text)
    assert repo.api_host == api
    assert repo.credential_key == key
    assert repo.is_docker_hub is hub
    assert repo.is_loopback is loopback


@pytest.mark.parametrize(
    ("host", "account", "region"),
    [
        ("123456789012.dkr.ecr.us-east-1.amazonaws.com", "123456789012", "us-east-1"),
        ("123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com", "123456789012", "us-gov-west-1"),
        ("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn", "123456789012", "cn-north-1"),
        ("123456789012.dkr.ecr-fips.us-east-2.amazonaws.com", "123456789012", "us-east-2"),
        ("123456789012.dkr-ecr.eu-west-1.on.aws", "123456789012", "eu-west-1"),
        ("123456789012.DKR.ECR.AP-SOUTHEAST-2.AMAZONAWS.COM", "123456789012", "ap-southeast-2"),
    ],
)
def test_ecr_hosts(host: str, account: str, region: str) -> None:
    repo = parse_repository(f"{host}/team/adapter")
    assert repo.is_ecr
    assert repo.ecr_region == region
    assert repo.ecr_account_id == account
    assert not repo.is_docker_hub and not repo.is_loopback


@pytest.mark.parametrize(
    "host",
    [
        "12345678901.dkr.ecr.us-east-1.amazonaws.com",  # 11-digit account
        "123456789012.ecr.us-east-1.amazonaws.com",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com.evil.com",
        "public.ecr.aws",
        "harbor.example.com",
    ],
)
def test_not_ecr(host: str) -> None:
    repo = parse_repository(f"{host}/adapter")
    assert not repo.is_ecr
    assert repo.ecr_region is None and repo.ecr_account_id is None


# --- host helpers ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("docker.io", "docker.io"),
        ("index.docker.io", "docker.io"),
        ("registry-1.docker.io", "docker.io"),
        ("INDEX.Docker.io", "docker.io"),
        ("Harbor.Example.COM", "harbor.example.com"),
        ("harbor.example.com:8443", "harbor.example.com:8443"),
        ("localhost:5000", "localhost:5000"),
        ("[::1]:5000", "[::1]:5000"),
        ("[FE80::1]", "[fe80::1]"),
        ("127.0.0.1", "127.0.0.1"),
        ("docker.io:443", "docker.io:443"),  # only the bare names are aliases
    ],
)
def test_normalize_registry(host: str, expected: str) -> None:
    assert normalize_registry(host) == expected


@pytest.mark.parametrize(
    ("registry", "key", "api"),
    [
        ("docker.io", DOCKER_HUB_CREDENTIAL_KEY, DOCKER_HUB_API_HOST),
        ("index.docker.io", DOCKER_HUB_CREDENTIAL_KEY, DOCKER_HUB_API_HOST),
        ("registry-1.docker.io", DOCKER_HUB_CREDENTIAL_KEY, DOCKER_HUB_API_HOST),
        ("Harbor.example.com", "harbor.example.com", "harbor.example.com"),
        ("localhost:5000", "localhost:5000", "localhost:5000"),
        ("[::1]:5000", "[::1]:5000", "[::1]:5000"),
    ],
)
def test_credential_key_and_api_host(registry: str, key: str, api: str) -> None:
    assert credential_key(registry) == key
    assert api_host(registry) == api


@pytest.mark.parametrize(
    ("url", "registry"),
    [
        ("https://index.docker.io/v1/", "docker.io"),
        ("index.docker.io", "docker.io"),
        ("http://localhost:5000", "localhost:5000"),
        ("host:5000/v2/", "host:5000"),
        ("https://[::1]:5000/v2/", "[::1]:5000"),
    ],
)
def test_registry_from_server_url(url: str, registry: str) -> None:
    assert registry_from_server_url(url) == registry


@pytest.mark.parametrize(
    ("registry", "expected"),
    [
        ("harbor.example.com", ("harbor.example.com", None)),
        ("localhost:5000", ("localhost", 5000)),
        ("127.0.0.1:80", ("127.0.0.1", 80)),
        ("[::1]", ("::1", None)),
        ("[::1]:5000", ("::1", 5000)),
        ("[2001:db8::7]:443", ("2001:db8::7", 443)),
    ],
)
def test_split_and_join_host_port(registry: str, expected: tuple[str, int | None]) -> None:
    assert split_host_port(registry) == expected
    assert join_host_port(*expected) == registry


@pytest.mark.parametrize(
    ("registry", "loopback"),
    [
        ("localhost", True),
        ("localhost:5000", True),
        ("LOCALHOST:5000", True),
        ("registry.localhost", True),
        ("a.b.localhost:443", True),
        ("127.0.0.1", True),
        ("127.0.0.1:5000", True),
        ("127.255.255.254:1", True),
        ("[::1]", True),
        ("[::1]:5000", True),
        ("::1", True),
        ("[::ffff:127.0.0.1]:5000", True),
        ("128.0.0.1", False),
        ("0.0.0.0:5000", False),
        ("10.1.2.3", False),
        ("[::2]:5000", False),
        ("localhost.example.com", False),
        ("mylocalhost", False),
        ("docker.io", False),
        ("host:notaport", False),
    ],
)
def test_is_loopback_host(registry: str, loopback: bool) -> None:
    assert is_loopback_host(registry) is loopback


def test_validate_tag_and_digest_return_their_input() -> None:
    assert validate_tag("1.0.0_ab") == "1.0.0_ab"
    assert validate_digest(SHA256) == SHA256
    assert validate_digest(SHA512) == SHA512


# --- errors ---------------------------------------------------------------------------


def _error_of(parse: object, text: str) -> InvalidReferenceError:
    assert callable(parse)
    with pytest.raises(InvalidReferenceError) as info:
        parse(text)
    error = info.value
    assert error.hint, "every reference error carries a hint"
    assert "e.g." in error.hint
    assert error.to_dict()["error"] == "invalid_reference"
    return error


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        # empty input
        ("", "empty input: expected an image reference"),
        ("   ", "empty input"),
        # uppercase path
        (
            "harbor.example.com/My/Repo",
            "repository path 'My/Repo' must be lowercase: use 'my/repo'",
        ),
        ("My/Repo", "repository path 'My/Repo' must be lowercase: use 'my/repo'"),
        ("Alpine", "repository path 'Alpine' must be lowercase: use 'alpine'"),
        ("user/Repo:1", "repository path 'user/Repo' must be lowercase: use 'user/repo'"),
        # invalid characters, named with their position
        ("harbor.example.com/my!repo", "invalid character '!' at position 22"),
        ("h.io/a:b:c", "invalid character ':' at position 7"),
        ("ho st/x", "invalid character ' ' at position 3"),
        ("h.io/é", "invalid character 'é' at position 6"),
        ("h_b.com/x", "invalid character '_' at position 2"),
        ("h.io/x:v1!", "invalid character '!' in tag 'v1!' at position 10"),
        # ports
        ("host:0/x", "port 0 in 'host:0/x' is out of range"),
        ("host:65536/x", "port 65536 in 'host:65536/x' is out of range: use 1-65535"),
        ("localhost:99999/x", "out of range"),
        ("[::1]:70000/x", "port 70000 in '[::1]:70000/x' is out of range"),
        ("host:/x", "missing port number after ':' at position 5"),
        ("host:5o00/x", "port '5o00' is not a number: invalid character 'o' at position 7"),
        # empty components, double and trailing slashes
        ("h.io//x", "empty path component (double slash '//') at position 5"),
        ("h.io/a//b", "double slash"),
        ("h.io/x/", "trailing slash in 'h.io/x/': remove it and use 'h.io/x'"),
        ("/x", "starts with '/'"),
        ("docker.io/", "missing repository path"),
        ("harbor..example.com/x", "empty label"),
        (".harbor.com/x", "empty label"),
        # path component structure
        ("h.io/a..b", "separator '..'"),
        ("h.io/a___b", "separator '___'"),
        ("h.io/a._b", "separator '._'"),
        ("h.io/-a", "must start with a letter or digit, not '-'"),
        ("h.io/a_", "must end with a letter or digit, not '_'"),
        # hosts
        ("-bad.com/x", "starts or ends with '-'"),
        ("::1/x", "looks like an IPv6 address without brackets: write it as '[::1]'"),
        ("[::1/x", "never closes it"),
        ("[zz::1]:5000/x", "is not a valid IPv6 address"),
        ("[::1]x/y", "only ':port' may follow ']'"),
        ("1.2.3.256/x", "not a valid one"),
        # a registry host alone
        ("localhost:5000", "looks like a registry host without a repository path"),
        ("[::1]:5000", "'[::1]:5000/my-project/adapter'"),
        ("harbor.example.com", "'harbor.example.com/my-project/adapter'"),
        # tags
        ("h.io/x:", "empty tag after ':' at position 7"),
        ("h.io/x:" + "a" * 129, "is too long: 129 characters, at most 128"),
        ("h.io/x:.v1", "tag '.v1' in 'h.io/x:.v1' must start with a letter, digit or '_'"),
        ("h.io/x:-v1", "must start with a letter, digit or '_', not '-'"),
        # digests
        ("h.io/x@", "empty digest after '@'"),
        ("h.io/x@sha256", "has no ':'"),
        ("h.io/x@md5:" + "0" * 32, "unsupported algorithm 'md5'"),
        ("h.io/x@SHA256:" + "0" * 64, "must be lowercase: use 'sha256'"),
        ("h.io/x@sha-:" + "0" * 64, "malformed algorithm 'sha-'"),
        ("h.io/x@sha256:abc", "has 3 hex digits; sha256 needs exactly 64"),
        ("h.io/x@sha256:" + "0" * 65, "has 65 hex digits; sha256 needs exactly 64"),
        ("h.io/x@sha512:" + "0" * 64, "has 64 hex digits; sha512 needs exactly 128"),
        ("h.io/x@sha256:" + "A" * 64, "uppercase hex digit 'A' in digest at position 15"),
        ("h.io/x@sha256:" + "g" * 64, "invalid character 'g' in digest at position 15"),
        (f"h.io/x@{SHA256}@{SHA256}", "invalid character '@'"),
        # schemes
        ("https://harbor.example.com/p/a", "drop it and use 'harbor.example.com/p/a'"),
        ("http://localhost:5000/a", "URL scheme 'http://'"),
        # name length (registry included)
        ("h.io/" + "a" * 251, "too long: 256 characters, at most 255"),
    ],
)
def test_reference_errors(text: str, fragment: str) -> None:
    assert fragment in _error_of(parse_reference, text).message


def test_name_length_limit_counts_the_docker_hub_prefix() -> None:
    longest = "a" * (255 - len("docker.io/library/"))
    assert parse_repository(longest).path == f"library/{longest}"
    error = _error_of(parse_repository, longest + "a")
    assert "too long: 256 characters" in error.message


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (
            "host/repo:1.0",
            "'host/repo:1.0' is an image reference with tag '1.0', but a repository without a "
            "tag is expected here: use 'host/repo'",
        ),
        (f"h.io/r@{SHA256}", "with digest 'sha256:"),
        (f"h.io/r@{SHA256}", "without a digest is expected here: use 'h.io/r'"),
        (f"h.io/r:1@{SHA256}", "without a tag or digest is expected here: use 'h.io/r'"),
        ("alpine:3.20", "use 'alpine'"),
        ("localhost:5000/a:latest", "use 'localhost:5000/a'"),
        ("localhost:5000", "looks like a registry host without a repository path"),
        ("https://harbor.example.com/p/a", "drop it and use 'harbor.example.com/p/a'"),
        ("https://harbor.example.com/", "drop it and use 'harbor.example.com'"),
        ("", "empty input: expected a repository"),
        ("harbor.example.com/My/Repo", "must be lowercase: use 'my/repo'"),
    ],
)
def test_repository_errors(text: str, fragment: str) -> None:
    error = _error_of(parse_repository, text)
    assert fragment in error.message
    assert "without a tag or digest" in (error.hint or "")


@pytest.mark.parametrize(
    ("host", "fragment"),
    [
        ("", "empty registry host"),
        ("https://harbor.example.com", "drop it and use 'harbor.example.com'"),
        ("harbor.example.com/project", "must not contain '/'"),
        ("host:0", "out of range"),
        ("host:65536", "out of range"),
        ("host:", "missing port number"),
        ("fe80::1", "without brackets"),
        ("[fe80::1%eth0]", "not a valid IPv6 address"),
        ("harbor.example.com.", "empty label"),
        ("har bor", "invalid character ' '"),
    ],
)
def test_normalize_registry_errors(host: str, fragment: str) -> None:
    error = _error_of(normalize_registry, host)
    assert fragment in error.message
    assert "harbor.example.com" in (error.hint or "")


@pytest.mark.parametrize(
    ("function", "value", "fragment"),
    [
        (validate_tag, "", "empty tag"),
        (validate_tag, "x" * 129, "too long"),
        (validate_tag, "a b", "invalid character ' '"),
        (validate_digest, "", "empty digest"),
        (validate_digest, "sha256:" + "0" * 63, "needs exactly 64"),
        (validate_digest, "blake3:" + "0" * 64, "unsupported algorithm 'blake3'"),
    ],
)
def test_validate_errors(function: object, value: str, fragment: str) -> None:
    assert fragment in _error_of(function, value).message
