"""The distribution-spec endpoints, independent of HTTP plumbing (see handler.py).

Each method takes a :class:`Request` and returns a :class:`Response` or raises
:class:`~mpkit.server.apierrors.ApiError`. Names, tags and digests are validated here
before storage sees them.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

from mpkit.image.mediatypes import OCI_INDEX
from mpkit.server import apierrors as codes
from mpkit.server.apierrors import ApiError, bad_request, not_found
from mpkit.server.auth import Authorizer, Identity
from mpkit.server.bodies import Body, Headers, read_all
from mpkit.server.config import ServerConfig
from mpkit.server.manifests import ParsedManifest, parse_manifest
from mpkit.server.names import (
    Route,
    looks_like_digest,
    split_digest,
    valid_digest,
    valid_name,
    valid_tag,
)
from mpkit.server.storage import Storage
from mpkit.server.uploads import Session, Uploads, range_not_satisfiable

EMPTY_SHA256 = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
SMALL_BODY_LIMIT = 64 * 1024
CONTENT_RANGE_PREFIXES = ("bytes=", "bytes ")


@dataclass
class Request:
    method: str
    route: Route
    query: dict[str, list[str]]
    headers: Headers
    identity: Identity
    peer_loopback: bool
    realm: str
    open_body: Callable[[int, str], Body]

    def param(self, key: str) -> str | None:
        values = self.query.get(key)
        return values[0] if values else None


@dataclass
class Response:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    file: Path | None = None  # send this file's [offset, offset+length) instead of body
    offset: int = 0
    length: int = 0


def json_response(status: int, data: Any, content_type: str = "application/json") -> Response:
    return Response(status, {"Content-Type": content_type}, json.dumps(data).encode())


class RegistryApi:
    """One registry root served under one configuration."""

    def __init__(
        self, config: ServerConfig, storage: Storage, uploads: Uploads, authorizer: Authorizer
    ) -> None:
        self.config = config
        self.storage = storage
        self.uploads = uploads
        self.authorizer = authorizer
        self._manifest_lock = threading.Lock()  # tag moves and deletes of one root, in order

    def handle(self, req: Request) -> Response:
        kind = req.route.kind
        if kind == "base":
            return self.base(req)
        if kind == "token":
            return self.token(req)
        if kind == "catalog":
            return self.catalog(req)
        name = req.route.name
        if not valid_name(name):
            raise bad_request(
                codes.NAME_INVALID,
                f"invalid repository name {name[:100]!r}",
                detail={"name": name[:256]},
            )
        handler = _METHODS.get((kind, req.method if req.method != "HEAD" else "GET"))
        if handler is None:
            raise ApiError(
                405,
                codes.UNSUPPORTED,
                f"{req.method} is not supported here",
                headers={"Allow": _allowed(kind)},
            )
        return handler(self, req)

    # -- base, token, catalog --------------------------------------------------------
    def base(self, req: Request) -> Response:
        # distribution-spec "Determining Support": 200 means the API is spoken here.
        if (
            self.authorizer.auth_enabled
            and req.identity.user is None
            and not req.headers.get("Authorization")
        ):
            raise ApiError(
                401,
                codes.UNAUTHORIZED,
                "log in to push; pulls need no credentials",
                headers=self.authorizer.challenge(req.realm),
            )
        return json_response(200, {})

    def token(self, req: Request) -> Response:
        authorization = req.headers.get("Authorization")
        scopes = req.query.get("scope", [])
        if req.method == "POST":
            form = _form(
                read_all(
                    req.open_body(SMALL_BODY_LIMIT, "the token request"),
                    SMALL_BODY_LIMIT,
                    "the token request",
                )
            )
            if (form.get("grant_type") or [""])[0] != "password":
                return json_response(400, {"error": "unsupported_grant_type"})
            user = (form.get("username") or [""])[0]
            password = (form.get("password") or [""])[0]
            authorization = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
            scopes = [s for value in form.get("scope", []) for s in value.split()]
        elif req.method not in ("GET", "HEAD"):
            raise ApiError(
                405, codes.UNSUPPORTED, "use GET or POST", headers={"Allow": "GET, POST"}
            )
        return json_response(
            200, self.authorizer.token(authorization, scopes, req.realm, time.time())
        )

    def catalog(self, req: Request) -> Response:
        if req.method not in ("GET", "HEAD"):
            raise ApiError(405, codes.UNSUPPORTED, "use GET", headers={"Allow": "GET, HEAD"})
        names, link = _page(self.storage.list_repositories(), req, "/v2/_catalog")
        response = json_response(200, {"repositories": names})
        if link:
            response.headers["Link"] = link
        return response

    # -- manifests -------------------------------------------------------------------
    def _resolve(self, name: str, reference: str) -> tuple[str, str]:
        """(digest, media type) of a tag or digest in *name*; 404 MANIFEST_UNKNOWN."""
        unknown = not_found(
            codes.MANIFEST_UNKNOWN,
            f"manifest {reference[:140]!r} is not in {name}",
            detail={"reference": reference[:140]},
        )
        if valid_tag(reference):
            digest = self.storage.resolve_tag(name, reference)
            if digest is None:
                raise unknown
        elif valid_digest(reference):
            digest = reference
        elif looks_like_digest(reference):
            raise bad_request(codes.DIGEST_INVALID, f"unsupported digest {reference[:140]!r}")
        else:
            raise unknown
        media_type = self.storage.manifest_media_type(name, digest)
        if media_type is None:
            raise unknown
        return digest, media_type

    def get_manifest(self, req: Request) -> Response:
        name, reference = req.route.name, req.route.arg
        digest, media_type = self._resolve(name, reference)
        try:
            data = self.storage.read_blob(digest)
        except FileNotFoundError:
            raise not_found(codes.MANIFEST_UNKNOWN, f"manifest {digest} is missing") from None
        return Response(
            200,
            {"Content-Type": media_type, "Docker-Content-Digest": digest, "ETag": f'"{digest}"'},
            data,
        )

    def put_manifest(self, req: Request) -> Response:
        name, reference = req.route.name, req.route.arg
        self._require_write(req, name)
        by_digest = valid_digest(reference)
        if not by_digest and not valid_tag(reference):
            raise bad_request(
                codes.MANIFEST_INVALID,
                f"{reference[:140]!r} is neither a tag nor a supported digest",
            )
        limit = self.config.max_manifest_bytes
        data = read_all(req.open_body(limit, "the manifest"), limit, "the manifest")
        parsed = parse_manifest(data, req.headers.get("Content-Type"))
        algorithm = split_digest(reference)[0] if by_digest else "sha256"
        digest = _digest_of(data, algorithm)
        if by_digest and digest != reference:
            raise bad_request(
                codes.DIGEST_INVALID,
                f"the manifest's digest is {digest}, not {reference}",
                detail={"digest": reference},
            )
        extra_tags = req.query.get("tag", []) if by_digest else []
        for tag in extra_tags:
            if not valid_tag(tag):
                raise bad_request(codes.MANIFEST_INVALID, f"invalid tag {tag[:140]!r}")
        self._check_references(name, parsed)
        with self._manifest_lock:
            self.storage.put_manifest(name, digest, data, parsed.media_type)
            if not by_digest:
                self.storage.set_tag(name, reference, digest)
            for tag in extra_tags:
                self.storage.set_tag(name, tag, digest)
            if parsed.subject is not None:
                self.storage.add_referrer(
                    name, parsed.subject.digest, parsed.referrer_descriptor(digest, len(data))
                )
        headers = {"Location": f"/v2/{name}/manifests/{digest}", "Docker-Content-Digest": digest}
        if parsed.subject is not None:
            headers["OCI-Subject"] = parsed.subject.digest
        if extra_tags:
            headers["OCI-Tag"] = ", ".join(extra_tags)
        return Response(201, headers)

    def _check_references(self, name: str, parsed: ParsedManifest) -> None:
        # distribution-spec: a manifest naming unknown blobs or manifests is rejected with
        # one MANIFEST_BLOB_UNKNOWN per missing descriptor (a subject may be missing).
        missing: list[tuple[str, str, Any]] = []
        for ref in parsed.blobs:
            size = self.storage.repo_blob_size(name, ref.digest)
            if size is None and not ref.optional:
                missing.append(
                    (
                        codes.MANIFEST_BLOB_UNKNOWN,
                        f"blob {ref.digest} is not in {name}",
                        {"digest": ref.digest},
                    )
                )
            elif size is not None and size != ref.size:
                missing.append(
                    (
                        codes.MANIFEST_BLOB_UNKNOWN,
                        f"blob {ref.digest} has {size} bytes in {name}, the manifest "
                        f"says {ref.size}",
                        {"digest": ref.digest},
                    )
                )
        for ref in parsed.children:
            if self.storage.manifest_media_type(name, ref.digest) is None:
                missing.append(
                    (
                        codes.MANIFEST_BLOB_UNKNOWN,
                        f"manifest {ref.digest} is not in {name}",
                        {"digest": ref.digest},
                    )
                )
        if missing:
            code, message, detail = missing[0]
            raise ApiError(400, code, message, detail=detail, errors=missing[1:])

    def delete_manifest(self, req: Request) -> Response:
        name, reference = req.route.name, req.route.arg
        self._require_write(req, name)
        if not self.storage.repository_exists(name):
            raise not_found(codes.NAME_UNKNOWN, f"repository {name} is not known")
        with self._manifest_lock:
            if valid_tag(reference):
                if not self.storage.delete_tag(name, reference):
                    raise not_found(codes.MANIFEST_UNKNOWN, f"tag {reference} is not in {name}")
                return Response(202)
            digest, _ = self._resolve(name, reference)
            subject = _subject_of(self.storage, digest)
            if subject is not None:
                self.storage.remove_referrer(name, subject, digest)
            self.storage.delete_manifest(name, digest)
        return Response(202)

    # -- blobs -----------------------------------------------------------------------
    def _blob_digest(self, req: Request) -> str:
        digest = req.route.arg
        if not valid_digest(digest):
            raise bad_request(
                codes.DIGEST_INVALID, f"invalid or unsupported digest {digest[:140]!r}"
            )
        return digest

    def get_blob(self, req: Request) -> Response:
        name, digest = req.route.name, self._blob_digest(req)
        size = self.storage.repo_blob_size(name, digest)
        if size is None:
            raise not_found(
                codes.BLOB_UNKNOWN, f"blob {digest} is not in {name}", detail={"digest": digest}
            )
        headers = {
            "Content-Type": "application/octet-stream",
            "Docker-Content-Digest": digest,
            "ETag": f'"{digest}"',
            "Accept-Ranges": "bytes",
            "Cache-Control": "max-age=31536000",
        }
        span = _byte_range(req.headers.get("Range"), size)
        if span is None:
            return Response(200, headers, file=self.storage.blob_path(digest), length=size)
        start, end = span
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        return Response(
            206, headers, file=self.storage.blob_path(digest), offset=start, length=end - start + 1
        )

    def delete_blob(self, req: Request) -> Response:
        name, digest = req.route.name, self._blob_digest(req)
        self._require_write(req, name)
        if not self.storage.unlink_blob(name, digest):
            raise not_found(codes.BLOB_UNKNOWN, f"blob {digest} is not in {name}")
        return Response(202)

    # -- uploads ---------------------------------------------------------------------
    def start_upload(self, req: Request) -> Response:
        name = req.route.name
        self._require_write(req, name)
        mount, source = req.param("mount"), req.param("from")
        # distribution-spec: mount → 201; when the source lacks the blob, fall back to 202.
        if (
            mount
            and source
            and valid_digest(mount)
            and valid_name(source)
            and self.storage.repo_blob_size(source, mount) is not None
        ):
            self.storage.link_blob(name, mount)
            return _blob_created(name, mount)
        algorithm = req.param("digest-algorithm") or "sha256"
        if algorithm not in ("sha256", "sha512"):
            raise bad_request(
                codes.DIGEST_INVALID,
                f"digest algorithm {algorithm[:40]!r} is not supported (sha256, sha512)",
            )
        digest = req.param("digest")
        body = req.open_body(self.config.max_blob_bytes, "the blob")
        if digest is not None and (body.declared_length != 0 or digest == EMPTY_SHA256):
            # distribution-spec "Single POST": the whole blob in one request → 201.
            session = self.uploads.create(name, algorithm)
            with session.lock:
                try:
                    self.uploads.append(session, body, None)
                except BaseException:
                    self.uploads.close(session)
                    raise
                self.uploads.finish(session, digest)
            return _blob_created(name, digest)
        session = self.uploads.create(name, algorithm)
        return Response(202, _session_headers(session))

    def _session(self, req: Request) -> Session:
        name = req.route.name
        self._require_write(req, name)
        return self.uploads.get(name, req.route.arg)

    def upload_status(self, req: Request) -> Response:
        session = self._session(req)
        return Response(204, _session_headers(session))

    def patch_upload(self, req: Request) -> Response:
        session = self._session(req)
        with session.lock:
            _check_open(session)
            start, length = _content_range(req, session)
            body = req.open_body(self.config.max_blob_bytes - session.offset, "the blob")
            self.uploads.append(session, body, start, length)
        return Response(202, _session_headers(session))

    def put_upload(self, req: Request) -> Response:
        session = self._session(req)
        digest = req.param("digest")
        with session.lock:
            _check_open(session)
            start, length = _content_range(req, session)
            body = req.open_body(self.config.max_blob_bytes - session.offset, "the blob")
            if start is not None or body.declared_length != 0:
                self.uploads.append(session, body, start, length)  # the final chunk
            if digest is None:
                raise bad_request(
                    codes.DIGEST_INVALID, "the closing PUT needs ?digest=<digest of the whole blob>"
                )
            self.uploads.finish(session, digest)
        return _blob_created(session.name, digest)

    def cancel_upload(self, req: Request) -> Response:
        session = self._session(req)
        with session.lock:
            self.uploads.close(session)
        return Response(204)

    # -- discovery -------------------------------------------------------------------
    def list_tags(self, req: Request) -> Response:
        name = req.route.name
        if not self.storage.repository_exists(name):
            raise not_found(
                codes.NAME_UNKNOWN, f"repository {name} is not known", detail={"name": name}
            )
        tags, link = _page(self.storage.list_tags(name), req, f"/v2/{name}/tags/list")
        response = json_response(200, {"name": name, "tags": tags})
        if link:
            response.headers["Link"] = link
        return response

    def referrers(self, req: Request) -> Response:
        name, digest = req.route.name, req.route.arg
        if not valid_digest(digest):
            raise bad_request(
                codes.DIGEST_INVALID, f"invalid or unsupported digest {digest[:140]!r}"
            )
        found = self.storage.referrers(name, digest)
        headers: dict[str, str] = {}
        artifact_type = req.param("artifactType")
        if artifact_type is not None:
            found = [d for d in found if d.get("artifactType") == artifact_type]
            headers["OCI-Filters-Applied"] = "artifactType"
        response = json_response(
            200, {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": found}, OCI_INDEX
        )
        response.headers.update(headers)
        return response

    # -- access ----------------------------------------------------------------------
    def _require_write(self, req: Request, name: str) -> None:
        self.authorizer.require_write(
            req.identity, name, peer_loopback=req.peer_loopback, realm=req.realm
        )


_METHODS: dict[tuple[str, str], Callable[[RegistryApi, Request], Response]] = {
    ("manifest", "GET"): RegistryApi.get_manifest,
    ("manifest", "PUT"): RegistryApi.put_manifest,
    ("manifest", "DELETE"): RegistryApi.delete_manifest,
    ("blob", "GET"): RegistryApi.get_blob,
    ("blob", "DELETE"): RegistryApi.delete_blob,
    ("upload_start", "POST"): RegistryApi.start_upload,
    ("upload", "GET"): RegistryApi.upload_status,
    ("upload", "PATCH"): RegistryApi.patch_upload,
    ("upload", "PUT"): RegistryApi.put_upload,
    ("upload", "DELETE"): RegistryApi.cancel_upload,
    ("tags", "GET"): RegistryApi.list_tags,
    ("referrers", "GET"): RegistryApi.referrers,
}


def _allowed(kind: str) -> str:
    methods = sorted({m for k, m in _METHODS if k == kind})
    if "GET" in methods:
        methods.append("HEAD")
    return ", ".join(methods)


def _digest_of(data: bytes, algorithm: str) -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def _subject_of(storage: Storage, digest: str) -> str | None:
    with contextlib.suppress(OSError, ValueError, AttributeError, TypeError):
        subject = json.loads(storage.read_blob(digest)).get("subject")
        if isinstance(subject, dict) and valid_digest(str(subject.get("digest"))):
            return str(subject["digest"])
    return None


def _blob_created(name: str, digest: str) -> Response:
    return Response(
        201, {"Location": f"/v2/{name}/blobs/{digest}", "Docker-Content-Digest": digest}
    )


def _session_headers(session: Session) -> dict[str, str]:
    return {
        "Location": session.location(),
        "Range": session.range_header(),
        "Docker-Upload-UUID": session.id,
        "Blob-Upload-Session-ID": session.id,
    }


def _check_open(session: Session) -> None:
    if session.closed:
        raise not_found(codes.BLOB_UPLOAD_UNKNOWN, f"upload {session.id} has ended")


def _content_range(req: Request, session: Session) -> tuple[int | None, int | None]:
    """(start, length) from ``Content-Range: <start>-<end>``; 416 if malformed or inconsistent."""
    text = req.headers.get("Content-Range")
    if text is None:
        return None, None
    value = text.strip()
    for prefix in CONTENT_RANGE_PREFIXES:
        value = value.removeprefix(prefix)
    value = value.split("/", 1)[0]
    first, dash, last = value.partition("-")
    if not (dash and first.isdigit() and last.isdigit()) or len(value) > 40:
        raise range_not_satisfiable(session)
    start, end = int(first), int(last)
    if end < start:
        raise range_not_satisfiable(session)
    length = end - start + 1
    declared = req.headers.get("Content-Length")
    if declared is not None and declared.strip().isdigit() and int(declared) != length:
        raise range_not_satisfiable(session)
    return start, length


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """RFC 9110 single byte range → (start, end) inclusive; None for the whole blob."""
    if not header or not header.strip().lower().startswith("bytes="):
        return None
    spec = header.strip()[6:]
    if "," in spec:
        return None  # multiple ranges: a server may answer with the whole representation
    first, dash, last = spec.strip().partition("-")
    unsatisfiable = ApiError(
        416,
        codes.BLOB_UNKNOWN,
        f"range {spec[:60]!r} is outside the blob",
        headers={"Content-Range": f"bytes */{size}"},
    )
    if (
        not dash
        or not (first.isdigit() or last.isdigit())
        or (first and not first.isdigit())
        or (last and not last.isdigit())
    ):
        return None
    if not first:  # suffix: the last N bytes
        count = int(last)
        if count == 0 or size == 0:
            raise unsatisfiable
        return max(size - count, 0), size - 1
    start = int(first)
    end = int(last) if last else size - 1
    if start >= size or end < start:
        raise unsatisfiable
    return start, min(end, size - 1)


def _page(items: list[str], req: Request, path: str) -> tuple[list[str], str | None]:
    """distribution-spec tag listing: ``last`` (exclusive) and ``n``, with a Link for more."""
    last = req.param("last")
    if last:
        items = [i for i in items if i > last]
    n_text = req.param("n")
    if n_text is None or n_text == "":
        return items, None
    if not n_text.isdigit():
        raise bad_request(codes.UNSUPPORTED, f"n={n_text[:20]!r} is not a non-negative integer")
    n = int(n_text)
    if n == 0:
        return [], None  # distribution-spec: n=0 → empty list and no Link
    if len(items) <= n:
        return items, None
    page = items[:n]
    query = urlencode({"n": n, "last": page[-1]})
    return page, f'<{quote(path)}?{query}>; rel="next"'


def _form(data: bytes) -> dict[str, list[str]]:
    return parse_qs(data.decode("utf-8", "replace"), keep_blank_values=True)
