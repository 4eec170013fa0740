"""TLS trust for one registry host, the way Docker and podman configure it.

Trust = system CAs (OpenSSL defaults, which honour SSL_CERT_FILE/SSL_CERT_DIR)
+ every ``*.crt`` in ``<certs.d>/<host[:port]>/`` + ``--ca-cert`` files.
A ``client.cert``/``client.key`` pair in the same directory enables mutual TLS.
"""

from __future__ import annotations

import functools
import os
import ssl
import sys
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from mpkit.errors import TLSVerificationError

CERTS_D_ENV = "MPKIT_CERTS_D"


def system_certs_dirs() -> list[Path]:
    """Docker's and podman's certs.d directories (per call: HOME may differ per command)."""
    home = Path.home()
    return [
        Path("/etc/docker/certs.d"),
        home / ".docker" / "certs.d",  # Docker Desktop (macOS, Windows)
        Path("/etc/containers/certs.d"),
        home / ".config" / "containers" / "certs.d",
    ]


def certs_d_dirs(environ: dict[str, str] | None = None) -> list[Path]:
    """Directories searched for per-host CAs; MPKIT_CERTS_D (os.pathsep list) comes first."""
    env = os.environ if environ is None else environ
    extra = [Path(p) for p in env.get(CERTS_D_ENV, "").split(os.pathsep) if p]
    return [*extra, *system_certs_dirs()]


class SystemTrustContext(ssl.SSLContext):
    """What ``ssl.create_default_context()`` makes, except that the system CA certificates
    are loaded when the first TLS connection needs them (:meth:`load_trust`): loading them
    costs 20-40 ms, which a registry spoken to in plain HTTP never needs."""

    def __new__(cls) -> SystemTrustContext:
        return super().__new__(cls, ssl.PROTOCOL_TLS_CLIENT)

    def __init__(self) -> None:
        super().__init__()
        # The rest of create_default_context(): PROTOCOL_TLS_CLIENT already verifies the
        # certificate and the host name.
        if sys.version_info >= (3, 13):
            self.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN | ssl.VERIFY_X509_STRICT
        keylog = os.environ.get("SSLKEYLOGFILE")
        if keylog and not sys.flags.ignore_environment:
            self.keylog_filename = keylog
        self._trust_lock = threading.Lock()
        self._trust_loaded = False

    def load_trust(self) -> None:
        with self._trust_lock:
            if not self._trust_loaded:
                self.load_default_certs(ssl.Purpose.SERVER_AUTH)
                self._trust_loaded = True

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        self.load_trust()
        return super().wrap_socket(*args, **kwargs)

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
        self.load_trust()
        return super().wrap_bio(*args, **kwargs)


def default_context() -> SystemTrustContext:
    """The system-trust context, shared by every registry that adds nothing to it.

    Its certificates load on first use; the build server loads them before it forks.
    Keyed by SSL_CERT_FILE/SSL_CERT_DIR, which OpenSSL reads while loading.
    """
    return _default_context(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))


@functools.lru_cache(maxsize=4)
def _default_context(cert_file: str | None, cert_dir: str | None) -> SystemTrustContext:
    del cert_file, cert_dir  # the cache key only: OpenSSL reads the environment itself
    return SystemTrustContext()


def host_cert_dirs(registry: str, search: Iterable[Path]) -> list[Path]:
    """certs.d sub-directories for *registry* ("host:port", as docker names them)."""
    return [base / registry for base in search if (base / registry).is_dir()]


def build_ssl_context(
    registry: str,
    *,
    ca_certs: Sequence[Path] = (),
    search: Iterable[Path] | None = None,
    verify: bool = True,
) -> tuple[ssl.SSLContext, list[Path]]:
    """Return the context for *registry* and the CA files that were added to it.

    Cached per process: loading the system CA bundle costs tens of milliseconds, and a
    build talks to the same registry through several clients.
    """
    dirs = tuple(certs_d_dirs() if search is None else search)
    system = (os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
    return _build_ssl_context(registry, tuple(ca_certs), dirs, verify, system)


@functools.lru_cache(maxsize=16)
def _build_ssl_context(
    registry: str,
    ca_certs: tuple[Path, ...],
    search: tuple[Path, ...],
    verify: bool,
    system: tuple[str | None, str | None],  # the cache key only, as for default_context
) -> tuple[ssl.SSLContext, list[Path]]:
    cert_dirs = host_cert_dirs(registry, search)
    if verify and not ca_certs and not cert_dirs:
        return default_context(), []
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    added: list[Path] = []
    for ca in ca_certs:
        _load_ca(context, ca, registry)
        added.append(ca)
    for directory in cert_dirs:
        for ca in sorted(directory.glob("*.crt")):
            _load_ca(context, ca, registry)
            added.append(ca)
        for cert in sorted(directory.glob("*.cert")):
            key = cert.with_suffix(".key")
            if not key.exists():
                raise TLSVerificationError(
                    f"client certificate {cert} has no matching key {key}",
                    hint="docker's certs.d convention pairs NAME.cert with NAME.key",
                    registry=registry,
                )
            try:
                # A password callback that refuses: an encrypted key must never prompt.
                context.load_cert_chain(str(cert), str(key), password=_no_password)
            except (OSError, ssl.SSLError, ValueError) as exc:
                raise TLSVerificationError(
                    f"cannot load the client certificate {cert} with key {key}: {exc}",
                    hint="both must be PEM files that belong together, and the key must not "
                    "be encrypted",
                    registry=registry,
                ) from exc
    return context, added


def _no_password() -> bytes:
    raise ValueError("encrypted client keys are not supported")


def _load_ca(context: ssl.SSLContext, path: Path, registry: str) -> None:
    try:
        context.load_verify_locations(cafile=str(path))
    except (OSError, ssl.SSLError) as exc:
        raise TLSVerificationError(
            f"cannot load CA certificate {path} for {registry}: {exc}",
            hint="the file must hold one or more PEM certificates",
            registry=registry,
        ) from exc
