"""OCI distribution API operations on one registry (distribution-spec v1.1)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx

from mpkit.errors import (
    AuthenticationError,
    DigestMismatchError,
    RegistryError,
    RegistryProtocolError,
    RegistryUnreachableError,
)
from mpkit.image import mediatypes
from mpkit.image.digest import sha256_digest
from mpkit.image.types import Blob, Descriptor
from mpkit.registry.progress import MOUNTED, UPLOADED, NoProgress, Progress
from mpkit.registry.responses import raise_for_status
from mpkit.registry.stats import TransferStats
from mpkit.registry.transport import Body, Transport

CHUNK = 1024 * 1024
DEFAULT_CHUNK_SIZE = 16 * 1024 * 1024  # for chunked uploads when the registry sets no minimum
MAX_MANIFEST_BYTES = 4 * 1024 * 1024  # containerd and distribution use the same bound
MAX_CONFIG_BYTES = 16 * 1024 * 1024


def pull_scope(repository: str) -> str:
    return f"repository:{repository}:pull"


def push_scope(repository: str) -> str:
    return f"repository:{repository}:pull,push"


@dataclass(frozen=True)
class Manifest:
    data: bytes
    media_type: str
    digest: str

    @property
    def descriptor(self) -> Descriptor:
        return Descriptor(media_type=self.media_type, digest=self.digest, size=len(self.data))


class RegistryClient:
    """Blob and manifest operations against one registry, through a :class:`Transport`."""

    def __init__(self, transport: Transport, *, stats: TransferStats | None = None) -> None:
        self.transport = transport
        self.stats = stats if stats is not None else TransferStats()

    @property
    def registry(self) -> str:
        return self.transport.registry

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- helpers ------------------------------------------------------------
    def _request(
        self,
        method: str,
        path: str,
        *,
        repository: str,
        push: bool,
        action: str,
        extra_scopes: tuple[str, ...] = (),
        **kwargs: object,
    ) -> httpx.Response:
        scope = push_scope(repository) if push else pull_scope(repository)
        return self.transport.request(
            method,
            path,
            scopes=[scope, *extra_scopes],
            action=action,
            repository=repository,
            stats=self.stats,
            **kwargs,  # type: ignore[arg-type]
        )

    def check(self, response: httpx.Response, *, repository: str, action: str, what: str) -> None:
        """Raise the typed error for a failed response."""
        if (
            response.status_code == 401
            and self.transport.credential is not None
            and (
                self.transport.challenge is not None and self.transport.challenge.scheme == "basic"
            )
        ):
            cred = self.transport.credential
            raise AuthenticationError(
                f"{self.registry} rejected the credentials for user '{cred.username}' "
                f"(from {cred.source})",
                hint=f"check the user name and password, then run 'mpkit login {self.registry}'",
                registry=self.registry,
                repository=repository,
                status=401,
            )
        raise_for_status(
            response,
            registry=self.registry,
            repository=repository,
            action=action,
            what=what,
            anonymous=self.transport.credential is None,
            who=self.transport.who,
        )

    def _location(self, response: httpx.Response, *, repository: str) -> str:
        location = response.headers.get("location")
        if not location:
            raise RegistryProtocolError(
                f"{self.registry} started an upload without a Location header",
                registry=self.registry,
                repository=repository,
                status=response.status_code,
            )
        # distribution-spec: Location may be absolute or relative to the request URL.
        return str(response.request.url.join(location))

    # -- blobs ----------------------------------------------------------------
    def blob_size(self, repository: str, digest: str, *, push: bool = False) -> int | None:
        """HEAD the blob; its size if present, None if absent."""
        response = self._request(
            "HEAD",
            f"/v2/{repository}/blobs/{digest}",
            repository=repository,
            push=push,
            action="push to" if push else "pull",
        )
        if response.status_code == 404:
            return None
        self.check(response, repository=repository, action="read", what=f"blob {digest}")
        length = response.headers.get("content-length")
        return int(length) if length and length.isdigit() else 0

    def mount_blob(self, repository: str, digest: str, from_repository: str) -> str | None:
        """Cross-repository mount. True-ish: returns None when mounted, else the upload
        location the registry opened instead (reusable for a normal upload)."""
        response = self._request(
            "POST",
            f"/v2/{repository}/blobs/uploads/",
            repository=repository,
            push=True,
            action="push to",
            extra_scopes=(pull_scope(from_repository),),
            params={"mount": digest, "from": from_repository},
        )
        if response.status_code == 201:
            return None  # distribution-spec: 201 Created = mounted
        if response.status_code == 202:
            return self._location(response, repository=repository)
        raise_for_status(
            response,
            registry=self.registry,
            repository=repository,
            action="mount",
            what=f"blob {digest}",
            anonymous=self.transport.credential is None,
            who=self.transport.who,
        )
        raise AssertionError("unreachable")

    def start_upload(self, repository: str) -> tuple[str, int | None]:
        """POST a new upload session; returns (location, OCI-Chunk-Min-Length)."""
        response = self._request(
            "POST",
            f"/v2/{repository}/blobs/uploads/",
            repository=repository,
            push=True,
            action="push to",
        )
        if response.status_code != 202:
            self.check(response, repository=repository, action="push to", what="a blob upload")
            raise RegistryProtocolError(
                f"{self.registry} answered HTTP {response.status_code} to an upload start "
                "(expected 202)",
                registry=self.registry,
                repository=repository,
                status=response.status_code,
            )
        minimum = response.headers.get("oci-chunk-min-length")
        return self._location(response, repository=repository), (
            int(minimum) if minimum and minimum.isdigit() else None
        )

    def cancel_upload(self, location: str, repository: str) -> None:
        response = self.transport.request(
            "DELETE",
            location,
            scopes=[push_scope(repository)],
            action="push to",
            repository=repository,
            retry=False,
        )
        if response.status_code not in (204, 404):
            self.check(response, repository=repository, action="cancel", what="an upload")

    def upload_blob(
        self,
        repository: str,
        blob: Blob,
        *,
        mount_from: tuple[str, ...] = (),
        chunked: bool = False,
        progress: Progress | None = None,
    ) -> str:
        """Push one blob; returns UPLOADED or MOUNTED. Retries the whole upload on failure."""
        progress = progress or NoProgress()
        desc = blob.descriptor
        location: str | None = None
        for source in mount_from:
            try:
                location = self.mount_blob(repository, desc.digest, source)
            except RegistryError:
                location = None  # no pull access on the source: fall back to uploading
                continue
            if location is None:
                self.stats.add(blobs_mounted=1, bytes_mounted=desc.size)
                progress.finish(desc, MOUNTED)
                return MOUNTED
            break
        policy = self.transport.options.retry
        last_error: Exception | None = None
        for attempt in range(1, policy.attempts + 1):
            minimum: int | None = None
            if location is None:
                location, minimum = self.start_upload(repository)
            try:
                if chunked or minimum:
                    self._upload_chunked(repository, location, blob, minimum, progress)
                else:
                    self._upload_monolithic(repository, location, blob, progress)
            except (
                httpx.TransportError,
                _TransientUploadError,
                RegistryProtocolError,
                RegistryUnreachableError,
            ) as exc:
                last_error = exc
                location = None
                progress.reset(desc)
                if attempt < policy.attempts:
                    self.stats.add(retries=1)
                    policy.sleep(attempt, getattr(exc, "retry_after", None))
                    chunked = True  # distribution-spec allows chunks when monolithic fails
                continue
            self.stats.add(blobs_uploaded=1, bytes_uploaded=desc.size)
            progress.finish(desc, UPLOADED)
            return UPLOADED
        raise RegistryError(
            f"uploading blob {desc.digest} ({desc.size} bytes) to {self.registry}/{repository} "
            f"failed {policy.attempts} times; last error: {last_error}",
            hint="the registry or the network dropped the transfer repeatedly; retry later",
            registry=self.registry,
            repository=repository,
        ) from last_error

    def _body(
        self, blob: Blob, progress: Progress, start: int = 0, length: int | None = None
    ) -> Body:
        def chunks() -> Iterator[bytes]:
            with blob.open() as handle:
                if start:
                    handle.seek(start)
                remaining = blob.descriptor.size - start if length is None else length
                while remaining > 0:
                    data = handle.read(min(CHUNK, remaining))
                    if not data:
                        raise _TransientUploadError(
                            f"blob {blob.descriptor.digest} is shorter than its descriptor says"
                        )
                    remaining -= len(data)
                    progress.advance(blob.descriptor, len(data))
                    yield data

        return chunks

    def _upload_monolithic(
        self, repository: str, location: str, blob: Blob, progress: Progress
    ) -> None:
        desc = blob.descriptor
        # distribution-spec: PUT <location>?digest=<digest> with the whole body → 201.
        response = self.transport.request(
            "PUT",
            location,
            scopes=[push_scope(repository)],
            action="push to",
            repository=repository,
            params={"digest": desc.digest},
            retry=False,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(desc.size)},
            body=self._body(blob, progress),
        )
        self._finish_upload(response, repository, desc)

    def _upload_chunked(
        self,
        repository: str,
        location: str,
        blob: Blob,
        minimum: int | None,
        progress: Progress,
    ) -> None:
        desc = blob.descriptor
        size = max(minimum or 0, DEFAULT_CHUNK_SIZE)
        offset = 0
        while offset < desc.size:
            length = min(size, desc.size - offset)
            # distribution-spec: PATCH with Content-Range "<start>-<end>" (inclusive) → 202.
            response = self.transport.request(
                "PATCH",
                location,
                scopes=[push_scope(repository)],
                action="push to",
                repository=repository,
                retry=False,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(length),
                    "Content-Range": f"{offset}-{offset + length - 1}",
                },
                body=self._body(blob, progress, offset, length),
            )
            if response.status_code == 416:
                # distribution-spec: out-of-order chunk; the Range header says where to resume.
                offset = self._upload_offset(location, repository)
                continue
            if response.status_code in (408, 429) or response.status_code >= 500:
                raise _TransientUploadError(
                    f"PATCH answered HTTP {response.status_code}",
                    response.headers.get("retry-after"),
                )
            if response.status_code != 202:
                self.check(
                    response, repository=repository, action="push to", what=f"blob {desc.digest}"
                )
            location = self._location(response, repository=repository)
            offset += length
        response = self.transport.request(
            "PUT",
            location,
            scopes=[push_scope(repository)],
            action="push to",
            repository=repository,
            params={"digest": desc.digest},
            retry=False,
            headers={"Content-Length": "0"},
        )
        self._finish_upload(response, repository, desc)

    def _upload_offset(self, location: str, repository: str) -> int:
        response = self.transport.request(
            "GET",
            location,
            scopes=[push_scope(repository)],
            action="push to",
            repository=repository,
        )
        if response.status_code != 204:
            raise _TransientUploadError(f"upload status answered HTTP {response.status_code}")
        ranged = response.headers.get("range", "")
        if "-" not in ranged:
            return 0
        return int(ranged.rsplit("-", 1)[1]) + 1

    def _finish_upload(self, response: httpx.Response, repository: str, desc: Descriptor) -> None:
        if response.status_code in (408, 429) or response.status_code >= 500:
            raise _TransientUploadError(
                f"upload of {desc.digest} answered HTTP {response.status_code}",
                response.headers.get("retry-after"),
            )
        if response.status_code != 201:
            self.check(
                response, repository=repository, action="push to", what=f"blob {desc.digest}"
            )
            raise RegistryProtocolError(
                f"{self.registry} answered HTTP {response.status_code} to a blob upload "
                "(expected 201)",
                registry=self.registry,
                repository=repository,
                status=response.status_code,
            )
        confirmed = response.headers.get("docker-content-digest")
        if confirmed and confirmed != desc.digest:
            raise DigestMismatchError(
                f"{self.registry} stored blob {desc.digest} as {confirmed}",
                registry=self.registry,
                repository=repository,
            )

    @contextmanager
    def open_blob(self, repository: str, desc: Descriptor) -> Iterator[Iterator[bytes]]:
        """Stream a blob; the iterator raises DigestMismatchError at the end if the bytes
        do not hash to the descriptor's digest."""
        response = self._request(
            "GET",
            f"/v2/{repository}/blobs/{desc.digest}",
            repository=repository,
            push=False,
            action="pull",
            stream=True,
        )
        try:
            if response.status_code != 200:
                response.read()
                self.check(
                    response, repository=repository, action="pull", what=f"blob {desc.digest}"
                )
                raise RegistryProtocolError(
                    f"{self.registry} answered HTTP {response.status_code} to a blob GET",
                    registry=self.registry,
                    repository=repository,
                    status=response.status_code,
                )
            yield self._verified(response, repository, desc)
        finally:
            response.close()

    def _verified(
        self, response: httpx.Response, repository: str, desc: Descriptor
    ) -> Iterator[bytes]:
        algorithm, _, expected = desc.digest.partition(":")
        hasher = hashlib.new(algorithm)
        received = 0
        for data in response.iter_raw(CHUNK):
            received += len(data)
            if received > desc.size:
                break
            hasher.update(data)
            yield data
        if received != desc.size or hasher.hexdigest() != expected:
            raise DigestMismatchError(
                f"blob {desc.digest} from {self.registry}/{repository} is corrupt: got "
                f"{received} bytes hashing to {algorithm}:{hasher.hexdigest()}, expected "
                f"{desc.size} bytes",
                hint="the registry storage may be damaged; push the image again",
                registry=self.registry,
                repository=repository,
            )
        self.stats.add(blobs_downloaded=1, bytes_downloaded=received)

    def read_blob(
        self, repository: str, desc: Descriptor, *, limit: int = MAX_CONFIG_BYTES
    ) -> bytes:
        if desc.size > limit:
            raise RegistryProtocolError(
                f"blob {desc.digest} is {desc.size} bytes, more than the {limit} allowed here",
                registry=self.registry,
                repository=repository,
            )
        with self.open_blob(repository, desc) as chunks:
            return b"".join(chunks)

    # -- manifests ----------------------------------------------------------
    def get_manifest(self, repository: str, reference: str, *, push: bool = False) -> Manifest:
        """GET a manifest or index by tag or digest, verifying its digest."""
        response = self._request(
            "GET",
            f"/v2/{repository}/manifests/{reference}",
            repository=repository,
            push=push,
            action="pull",
            headers={"Accept": mediatypes.ACCEPT_MANIFESTS},
            stream=True,
        )
        try:
            if response.status_code != 200:
                response.read()
                self.check(
                    response, repository=repository, action="pull", what=f"manifest {reference}"
                )
            data = _read_bounded(response, MAX_MANIFEST_BYTES, self.registry, repository)
        finally:
            response.close()
        digest = sha256_digest(data)
        if reference.startswith("sha256:") and digest != reference:
            raise DigestMismatchError(
                f"manifest {reference} from {self.registry}/{repository} hashes to {digest}",
                hint="the registry returned different content than requested",
                registry=self.registry,
                repository=repository,
            )
        header = response.headers.get("docker-content-digest")
        if header and header.startswith("sha256:") and header != digest:
            raise DigestMismatchError(
                f"{self.registry}/{repository} says manifest {reference} is {header}, but its "
                f"bytes hash to {digest}",
                registry=self.registry,
                repository=repository,
            )
        media_type = _media_type(data, response.headers.get("content-type"))
        return Manifest(data=data, media_type=media_type, digest=digest)

    def head_manifest(
        self, repository: str, reference: str, *, push: bool = False
    ) -> Descriptor | None:
        response = self._request(
            "HEAD",
            f"/v2/{repository}/manifests/{reference}",
            repository=repository,
            push=push,
            action="pull",
            headers={"Accept": mediatypes.ACCEPT_MANIFESTS},
        )
        if response.status_code == 404:
            return None
        self.check(response, repository=repository, action="pull", what=f"manifest {reference}")
        digest = response.headers.get("docker-content-digest", "")
        length = response.headers.get("content-length", "0")
        return Descriptor(
            media_type=(response.headers.get("content-type") or "").split(";")[0],
            digest=digest,
            size=int(length) if length.isdigit() else 0,
        )

    def put_manifest(self, repository: str, reference: str, data: bytes, media_type: str) -> str:
        """PUT exact manifest bytes; returns the digest, confirmed against the registry's."""
        digest = sha256_digest(data)
        response = self._request(
            "PUT",
            f"/v2/{repository}/manifests/{reference}",
            repository=repository,
            push=True,
            action="push to",
            headers={"Content-Type": media_type},
            body=data,
        )
        if response.status_code not in (200, 201):
            self.check(
                response, repository=repository, action="push to", what=f"manifest {reference}"
            )
            raise RegistryProtocolError(
                f"{self.registry} answered HTTP {response.status_code} to a manifest PUT",
                registry=self.registry,
                repository=repository,
                status=response.status_code,
            )
        confirmed = response.headers.get("docker-content-digest")
        if confirmed and confirmed != digest:
            raise DigestMismatchError(
                f"{self.registry} stored the manifest as {confirmed}, but mpkit computed {digest}",
                hint="the registry rewrote the manifest; the digest in a pack would not match",
                registry=self.registry,
                repository=repository,
            )
        self.stats.add(manifests_pushed=1)
        return digest

    def list_tags(self, repository: str) -> list[str]:
        response = self._request(
            "GET",
            f"/v2/{repository}/tags/list",
            repository=repository,
            push=False,
            action="pull",
        )
        self.check(response, repository=repository, action="list tags of", what="tags")
        tags = response.json().get("tags") or []
        return [str(t) for t in tags]


class _TransientUploadError(Exception):
    def __init__(self, message: str, retry_after: str | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def _read_bounded(response: httpx.Response, limit: int, registry: str, repository: str) -> bytes:
    parts: list[bytes] = []
    total = 0
    for data in response.iter_bytes(CHUNK):
        total += len(data)
        if total > limit:
            raise RegistryProtocolError(
                f"{registry}/{repository} sent a manifest larger than {limit} bytes",
                registry=registry,
                repository=repository,
            )
        parts.append(data)
    return b"".join(parts)


def _media_type(data: bytes, content_type: str | None) -> str:
    """The manifest's own mediaType wins over Content-Type (image-spec manifest.md)."""
    import json

    try:
        body = json.loads(data)
    except ValueError:
        body = {}
    declared = body.get("mediaType") if isinstance(body, dict) else None
    if isinstance(declared, str) and declared:
        return declared
    header = (content_type or "").split(";")[0].strip()
    if header:
        return header
    if isinstance(body, dict) and "manifests" in body:
        return mediatypes.OCI_INDEX
    return mediatypes.OCI_MANIFEST
