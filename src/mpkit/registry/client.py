"""OCI distribution API operations on one registry (distribution-spec v1.1)."""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

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
from mpkit.jsonfile import parse_json
from mpkit.registry.progress import MOUNTED, UPLOADED, NoProgress, Progress
from mpkit.registry.responses import error_detail, raise_for_status
from mpkit.registry.stats import TransferStats
from mpkit.registry.transport import Body, TransferAborted, Transport

CHUNK = 1024 * 1024
DEFAULT_CHUNK_SIZE = 16 * 1024 * 1024  # for chunked uploads when the registry sets no minimum
MONOLITHIC_DROPS = 2  # dropped whole-body uploads of one blob before it goes in chunks
MAX_MANIFEST_BYTES = 4 * 1024 * 1024  # containerd and distribution use the same bound
MAX_CONFIG_BYTES = 16 * 1024 * 1024
NO_ENCODING = {"Accept-Encoding": "identity"}  # digests are over the stored bytes
# An upload session opened ahead is used only this young: registries expire idle
# sessions (distribution after days, others sooner), and a PUT into an expired one
# costs a restart with backoff.
OPEN_SESSION_MAX_AGE = 60.0
CANCEL_WAIT = 5.0  # seconds close() waits for the cancellation of unused sessions


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


@dataclass(frozen=True)
class UploadSession:
    """An upload session the registry opened (distribution-spec: POST …/blobs/uploads/)."""

    repository: str
    location: str
    minimum: int | None  # OCI-Chunk-Min-Length
    opened: float = field(default_factory=time.monotonic)


class RestartUpload(Exception):
    """The upload session is unusable (dropped, expired, out of order): start a new one."""

    def __init__(self, message: str, retry_after: str | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RegistryClient:
    """Blob and manifest operations against one registry, through a :class:`Transport`."""

    def __init__(self, transport: Transport, *, stats: TransferStats | None = None) -> None:
        self.transport = transport
        self.stats = stats if stats is not None else TransferStats()
        self._sessions: list[UploadSession] = []  # opened ahead, not yet used
        self._sessions_lock = threading.Lock()
        self._cancelling: list[threading.Thread] = []

    @property
    def registry(self) -> str:
        return self.transport.registry

    def close(self) -> None:
        """Cancel the upload sessions no upload used, then close the connections."""
        self.release_uploads()
        for thread in self._cancelling:
            thread.join(CANCEL_WAIT)
        self.transport.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- helpers ------------------------------------------------------------
    def _request(
        self, method: str, url: str, *, repository: str, push: bool,
        extra_scopes: tuple[str, ...] = (), **kwargs: object,
    ) -> httpx.Response:  # fmt: skip
        scope = push_scope(repository) if push else pull_scope(repository)
        return self.transport.request(
            method, url, scopes=[scope, *extra_scopes], action="push" if push else "pull",
            repository=repository, stats=self.stats, **kwargs,  # type: ignore[arg-type]
        )  # fmt: skip

    def check(self, response: httpx.Response, *, repository: str, action: str, what: str) -> None:
        """Raise the typed error for a failed response."""
        challenge = self.transport.challenge
        credential = self.transport.credential
        if (
            response.status_code == 401
            and credential is not None
            and (challenge is not None and challenge.scheme == "basic")
        ):
            raise AuthenticationError(
                f"{self.registry} rejected the credentials for user '{credential.username}' "
                f"(from {credential.source})",
                hint=f"check the user name and password, then run 'mpkit login {self.registry}'",
                registry=self.registry,
                repository=repository,
                status=401,
            )
        raise_for_status(
            response, registry=self.registry, repository=repository, action=action, what=what,
            anonymous=credential is None, who=self.transport.who,
        )  # fmt: skip

    def _fail(self, response: httpx.Response, *, repository: str, action: str, what: str,
              expected: str) -> RegistryError:  # fmt: skip
        """check(), and for an unexpected success code a protocol error to raise."""
        self.check(response, repository=repository, action=action, what=what)
        return RegistryProtocolError(
            f"{self.registry} answered HTTP {response.status_code} to the {action} of {what} "
            f"(expected {expected})",
            registry=self.registry, repository=repository, status=response.status_code,
        )  # fmt: skip

    def _location(self, response: httpx.Response, *, repository: str) -> str:
        location = response.headers.get("location")
        if not location:
            raise RegistryProtocolError(
                f"{self.registry} started an upload without a Location header",
                registry=self.registry, repository=repository, status=response.status_code,
            )  # fmt: skip
        # distribution-spec: Location may be absolute or relative to the request URL.
        return str(response.request.url.join(location))

    # -- blobs ----------------------------------------------------------------
    def blob_size(
        self, repository: str, digest: str, *, push: bool = False, expected: int | None = None
    ) -> int | None:
        """HEAD the blob; its size if present, None if absent (or of the wrong size)."""
        response = self._request(
            "HEAD", f"/v2/{repository}/blobs/{digest}", repository=repository, push=push
        )
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._fail(response, repository=repository, action="push" if push else "pull",
                             what=f"blob {digest}", expected="200 or 404")  # fmt: skip
        length = response.headers.get("content-length", "")
        size = int(length) if length.isdigit() else None
        if expected is not None and size is not None and size != expected:
            return None  # a damaged copy: upload again rather than trust it
        return size if size is not None else 0

    def mount_blob(self, repository: str, digest: str, from_repository: str) -> bool:
        """Cross-repository mount (distribution-spec: 201 mounted, 202 upload opened instead).

        An opened session is cancelled; the caller falls back to a normal upload.
        """
        response = self._request(
            "POST", f"/v2/{repository}/blobs/uploads/", repository=repository, push=True,
            extra_scopes=(pull_scope(from_repository),),
            params={"mount": digest, "from": from_repository},
        )  # fmt: skip
        if response.status_code == 201:
            return True
        if response.status_code == 202:
            self.cancel_upload(self._location(response, repository=repository), repository)
            return False
        raise self._fail(response, repository=repository, action="mount",
                         what=f"blob {digest}", expected="201 or 202")  # fmt: skip

    def open_uploads(self, repository: str, count: int = 1) -> None:
        """Open *count* upload sessions in *repository* now, in parallel, for the next
        uploads there to use (:meth:`start_upload`).

        Proves push access, as ``docker push`` learns it from its first upload, and takes
        the POST off the path of the uploads that follow. Sessions still unused are
        cancelled by :meth:`release_uploads` or :meth:`close`.
        """
        opened = self._post_uploads(repository, count)
        with self._sessions_lock:
            self._sessions.extend(opened)

    def start_upload(self, repository: str) -> tuple[str, int | None]:
        """A new upload session: one opened ahead by :meth:`open_uploads` if a young one
        is left, else POST one now; returns (location, OCI-Chunk-Min-Length)."""
        session = self._take_session(repository)
        if session is None:
            [session] = self._post_uploads(repository, 1)
        return session.location, session.minimum

    def release_uploads(self) -> None:
        """Cancel, in the background, the sessions opened ahead that no upload took."""
        with self._sessions_lock:
            unused, self._sessions = self._sessions, []
        self._cancel_in_background(unused)

    def _take_session(self, repository: str) -> UploadSession | None:
        with self._sessions_lock:
            now = time.monotonic()
            stale = [s for s in self._sessions if now - s.opened > OPEN_SESSION_MAX_AGE]
            self._sessions = [s for s in self._sessions if s not in stale]
            found = next((s for s in self._sessions if s.repository == repository), None)
            if found is not None:
                self._sessions.remove(found)
        self._cancel_in_background(stale)
        return found

    def _cancel_in_background(self, sessions: list[UploadSession]) -> None:
        for session in sessions:
            thread = threading.Thread(
                target=self.cancel_upload, args=(session.location, session.repository),
                name="mpkit-cancel-upload", daemon=True,
            )  # fmt: skip
            thread.start()
            self._cancelling.append(thread)

    def _post_uploads(self, repository: str, count: int) -> list[UploadSession]:
        """*count* sessions, opened at once. A refusal leaves this client usable (unlike
        run_all, whose first failure stops the transport): the caller may try again."""
        if count == 1:
            return [self._post_upload(repository)]
        self.transport.ping()  # once, before the threads
        with ThreadPoolExecutor(max_workers=count, thread_name_prefix="mpkit-open") as pool:
            futures = [pool.submit(self._post_upload, repository) for _ in range(count)]
        opened = [f.result() for f in futures if f.exception() is None]
        failed = next((f.exception() for f in futures if f.exception() is not None), None)
        if failed is not None:
            self._cancel_in_background(opened)
            raise failed
        return opened

    def _post_upload(self, repository: str) -> UploadSession:
        response = self._request(
            "POST", f"/v2/{repository}/blobs/uploads/", repository=repository, push=True
        )
        if response.status_code != 202:
            raise self._fail(response, repository=repository, action="push",
                             what="a blob upload", expected="202")  # fmt: skip
        minimum = response.headers.get("oci-chunk-min-length", "")
        return UploadSession(
            repository,
            self._location(response, repository=repository),
            int(minimum) if minimum.isdigit() else None,
        )

    def cancel_upload(self, location: str, repository: str) -> None:
        """distribution-spec: DELETE <location> ends a session; best effort, one request.

        Registries with token auth may want a ``delete`` grant for it (distribution does),
        which a push token lacks: such a session is left to the registry's expiry.
        """
        with contextlib.suppress(RegistryError, httpx.HTTPError, TransferAborted):
            self.transport.request(
                "DELETE", location, scopes=[push_scope(repository)], action="push",
                repository=repository, retry=False, reauthenticate=False,
            )  # fmt: skip

    def upload_blob(
        self,
        repository: str,
        blob: Blob,
        *,
        mount_from: tuple[str, ...] = (),
        chunked: bool = False,
        progress: Progress | None = None,
        stale_sources: list[str] | None = None,
    ) -> str:
        """Push one blob; returns UPLOADED or MOUNTED. A broken upload restarts whole.

        Sources that turn out not to hold the blob are appended to *stale_sources*.
        """
        progress = progress or NoProgress()
        desc = blob.descriptor
        for source in mount_from:
            try:
                mounted = self.mount_blob(repository, desc.digest, source)
            except RegistryError:
                mounted = False  # e.g. no pull access on the source
            if mounted:
                self.stats.add(blobs_mounted=1, bytes_mounted=desc.size)
                progress.finish(desc, MOUNTED)
                return MOUNTED
            if stale_sources is not None:
                stale_sources.append(source)
        policy = self.transport.options.retry
        last_error: Exception | None = None
        dropped = 0
        # The data PUT and PATCH are sent once per session: after a failure the session
        # may hold part of the body, so the upload starts over from a new POST.
        for attempt in range(1, policy.attempts + 1):
            location, minimum = self.start_upload(repository)
            try:
                if chunked:
                    self._upload_chunked(repository, location, blob, minimum, progress)
                else:
                    self._upload_monolithic(repository, location, blob, progress)
            except (httpx.TransportError, RestartUpload, RegistryUnreachableError) as exc:
                last_error = exc
                self.cancel_upload(location, repository)
                progress.reset(desc)
                if not isinstance(exc, RestartUpload):
                    dropped += 1
                # distribution-spec allows chunks when a whole body keeps being cut off
                # (a proxy limiting request bodies); once could be any transient failure.
                chunked = chunked or dropped >= MONOLITHIC_DROPS
                if attempt < policy.attempts:
                    self.stats.add(retries=1)
                    retry_after = exc.retry_after if isinstance(exc, RestartUpload) else None
                    self.transport.retrying.pause(attempt, retry_after)
                continue
            except BaseException:
                self.cancel_upload(location, repository)
                raise
            self.stats.add(blobs_uploaded=1, bytes_uploaded=desc.size)
            progress.finish(desc, UPLOADED)
            return UPLOADED
        raise RegistryError(
            f"uploading blob {desc.digest} ({desc.size} bytes) to {self.registry}/{repository} "
            f"failed {policy.attempts} times; last error: {last_error}",
            hint="the registry or the network dropped the transfer repeatedly; retry later",
            registry=self.registry, repository=repository,
        ) from last_error  # fmt: skip

    def _body(
        self, blob: Blob, progress: Progress, start: int = 0, length: int | None = None
    ) -> Body:
        abort = self.transport.abort

        def chunks() -> Iterator[bytes]:
            with blob.open() as handle:
                if start:
                    handle.seek(start)
                remaining = blob.descriptor.size - start if length is None else length
                while remaining > 0:
                    if abort.is_set():
                        raise TransferAborted()
                    data = handle.read(min(CHUNK, remaining))
                    if not data:
                        raise RegistryError(
                            f"blob {blob.descriptor.digest} is shorter than its descriptor says "
                            f"({blob.descriptor.size} bytes)",
                            hint="the local image is damaged; rebuild or re-export it",
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
            "PUT", location, scopes=[push_scope(repository)], action="push",
            repository=repository, params={"digest": desc.digest}, retry=False,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(desc.size)},
            body=self._body(blob, progress),
        )  # fmt: skip
        self._finish_upload(response, repository, desc)

    def _upload_chunked(
        self, repository: str, location: str, blob: Blob, minimum: int | None, progress: Progress
    ) -> None:
        desc = blob.descriptor
        size = max(minimum or 0, DEFAULT_CHUNK_SIZE)
        offset = 0
        while offset < desc.size:
            length = min(size, desc.size - offset)
            # distribution-spec: PATCH with Content-Range "<start>-<end>" (inclusive) → 202.
            response = self.transport.request(
                "PATCH", location, scopes=[push_scope(repository)], action="push",
                repository=repository, retry=False,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(length),
                    "Content-Range": f"{offset}-{offset + length - 1}",
                },
                body=self._body(blob, progress, offset, length),
            )  # fmt: skip
            _restart_if_session_lost(response)
            if response.status_code != 202:
                raise self._fail(response, repository=repository, action="push",
                                 what=f"blob {desc.digest}", expected="202")  # fmt: skip
            location = self._location(response, repository=repository)
            offset += length
        response = self.transport.request(
            "PUT", location, scopes=[push_scope(repository)], action="push",
            repository=repository, params={"digest": desc.digest}, retry=False,
            headers={"Content-Length": "0"},
        )  # fmt: skip
        self._finish_upload(response, repository, desc)

    def _finish_upload(self, response: httpx.Response, repository: str, desc: Descriptor) -> None:
        _restart_if_session_lost(response)
        if response.status_code != 201:
            raise self._fail(response, repository=repository, action="push",
                             what=f"blob {desc.digest}", expected="201")  # fmt: skip
        confirmed = response.headers.get("docker-content-digest")
        if confirmed and confirmed != desc.digest:
            raise DigestMismatchError(
                f"{self.registry} stored blob {desc.digest} as {confirmed}",
                registry=self.registry, repository=repository,
            )  # fmt: skip

    @contextmanager
    def open_blob(self, repository: str, desc: Descriptor) -> Iterator[Iterator[bytes]]:
        """Stream a blob; the iterator raises DigestMismatchError at the end if the bytes
        do not hash to the descriptor's digest."""
        response = self._request(
            "GET", f"/v2/{repository}/blobs/{desc.digest}", repository=repository, push=False,
            stream=True, headers=NO_ENCODING,
        )  # fmt: skip
        try:
            if response.status_code != 200:
                response.read()
                raise self._fail(response, repository=repository, action="pull",
                                 what=f"blob {desc.digest}", expected="200")  # fmt: skip
            yield self._verified(response, repository, desc)
        finally:
            response.close()

    def _verified(
        self, response: httpx.Response, repository: str, desc: Descriptor
    ) -> Iterator[bytes]:
        algorithm, _, expected = desc.digest.partition(":")
        hasher = hashlib.new(algorithm)
        received = 0
        abort = self.transport.abort
        try:
            for data in response.iter_raw(CHUNK):
                if abort.is_set():
                    raise TransferAborted()
                received += len(data)
                if received > desc.size:
                    break
                hasher.update(data)
                yield data
        except httpx.TransportError as exc:
            raise RegistryUnreachableError(
                f"the connection to {self.registry} broke while downloading blob {desc.digest} "
                f"({received} of {desc.size} bytes): {exc or type(exc).__name__}",
                hint="check the network path to the registry and retry",
                registry=self.registry, repository=repository,
            ) from exc  # fmt: skip
        if received != desc.size or hasher.hexdigest() != expected:
            raise DigestMismatchError(
                f"blob {desc.digest} from {self.registry}/{repository} is corrupt: got "
                f"{received} bytes hashing to {algorithm}:{hasher.hexdigest()}, expected "
                f"{desc.size} bytes",
                hint="the registry storage may be damaged; push the image again",
                registry=self.registry, repository=repository,
            )  # fmt: skip
        self.stats.add(blobs_downloaded=1, bytes_downloaded=received)

    def read_blob(
        self, repository: str, desc: Descriptor, *, limit: int = MAX_CONFIG_BYTES
    ) -> bytes:
        if desc.size > limit:
            raise RegistryProtocolError(
                f"blob {desc.digest} is {desc.size} bytes, more than the {limit} allowed here",
                registry=self.registry, repository=repository,
            )  # fmt: skip
        with self.open_blob(repository, desc) as chunks:
            return b"".join(chunks)

    # -- manifests ----------------------------------------------------------
    def get_manifest(self, repository: str, reference: str, *, push: bool = False) -> Manifest:
        """GET a manifest or index by tag or digest, verifying its digest."""
        response = self._request(
            "GET", f"/v2/{repository}/manifests/{reference}", repository=repository, push=push,
            headers={"Accept": mediatypes.ACCEPT_MANIFESTS, **NO_ENCODING}, stream=True,
        )  # fmt: skip
        try:
            if response.status_code != 200:
                response.read()
                raise self._fail(response, repository=repository, action="pull",
                                 what=f"manifest {reference}", expected="200")  # fmt: skip
            data = self._read_bounded(response, repository)
        finally:
            response.close()
        digest = sha256_digest(data)
        if reference.startswith("sha256:") and digest != reference:
            raise DigestMismatchError(
                f"manifest {reference} from {self.registry}/{repository} hashes to {digest}",
                hint="the registry returned different content than requested",
                registry=self.registry, repository=repository,
            )  # fmt: skip
        header = response.headers.get("docker-content-digest")
        if header and header.startswith("sha256:") and header != digest:
            raise DigestMismatchError(
                f"{self.registry}/{repository} says manifest {reference} is {header}, but its "
                f"bytes hash to {digest}", registry=self.registry, repository=repository,
            )  # fmt: skip
        media_type = _media_type(data, response.headers.get("content-type"))
        return Manifest(data=data, media_type=media_type, digest=digest)

    def _read_bounded(self, response: httpx.Response, repository: str) -> bytes:
        parts: list[bytes] = []
        total = 0
        try:
            for data in response.iter_raw(CHUNK):
                total += len(data)
                if total > MAX_MANIFEST_BYTES:
                    raise RegistryProtocolError(
                        f"{self.registry}/{repository} sent a manifest larger than "
                        f"{MAX_MANIFEST_BYTES} bytes",
                        registry=self.registry, repository=repository,
                    )  # fmt: skip
                parts.append(data)
        except httpx.TransportError as exc:
            raise RegistryUnreachableError(
                f"the connection to {self.registry} broke while reading a manifest: {exc}",
                hint="check the network path to the registry and retry",
                registry=self.registry, repository=repository,
            ) from exc  # fmt: skip
        return b"".join(parts)

    def head_manifest(
        self, repository: str, reference: str, *, push: bool = False
    ) -> tuple[Descriptor, httpx.Headers] | None:
        """HEAD a manifest (costs no Docker Hub pull); None if absent. The descriptor's
        digest comes from Docker-Content-Digest, or from *reference* if that is a digest."""
        response = self._request(
            "HEAD", f"/v2/{repository}/manifests/{reference}", repository=repository, push=push,
            headers={"Accept": mediatypes.ACCEPT_MANIFESTS},
        )  # fmt: skip
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._fail(response, repository=repository, action="pull",
                             what=f"manifest {reference}", expected="200")  # fmt: skip
        digest = response.headers.get("docker-content-digest") or (
            reference if reference.startswith("sha256:") else ""
        )
        length = response.headers.get("content-length", "0")
        descriptor = Descriptor(
            media_type=(response.headers.get("content-type") or "").split(";")[0],
            digest=digest,
            size=int(length) if length.isdigit() else 0,
        )
        return descriptor, response.headers

    def put_manifest(self, repository: str, reference: str, data: bytes, media_type: str) -> str:
        """PUT exact manifest bytes; returns the digest, confirmed against the registry's."""
        digest = sha256_digest(data)
        response = self._request(
            "PUT", f"/v2/{repository}/manifests/{reference}", repository=repository, push=True,
            headers={"Content-Type": media_type}, body=data,
        )  # fmt: skip
        if response.status_code not in (200, 201):
            raise self._fail(response, repository=repository, action="push",
                             what=f"manifest {reference}", expected="201")  # fmt: skip
        confirmed = response.headers.get("docker-content-digest")
        if confirmed and confirmed != digest:
            raise DigestMismatchError(
                f"{self.registry} stored the manifest as {confirmed}, but mpkit computed {digest}",
                hint="the registry rewrote the manifest; the digest in a pack would not match",
                registry=self.registry, repository=repository,
            )  # fmt: skip
        self.stats.add(manifests_pushed=1)
        return digest


def _restart_if_session_lost(response: httpx.Response) -> None:
    """distribution-spec: an unknown session (404) MUST restart the upload; 416 means the
    registry lost track of the offset; 408/429/5xx are transient."""
    status = response.status_code
    if status in (404, 416, 408, 429) or status >= 500:
        request = response.request
        detail = error_detail(response)
        raise RestartUpload(
            f"{request.method} {request.url.path} answered HTTP {status}"
            + (f": {detail}" if detail else ""),
            response.headers.get("retry-after"),
        )


def _media_type(data: bytes, content_type: str | None) -> str:
    """The manifest's own mediaType wins over Content-Type (image-spec manifest.md)."""
    try:
        body = parse_json(data)
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
