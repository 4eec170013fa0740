"""TLS trust for one registry host, the way Docker and podman configure it.

Trust = system CAs (OpenSSL defaults, which honour SSL_CERT_FILE/SSL_CERT_DIR)
+ every ``*.crt`` in ``<certs.d>/<host[:port]>/`` + ``--ca-cert`` files.
A ``client.cert``/``client.key`` pair in the same directory enables mutual TLS.
"""

from __future__ import annotations

import functools
import os
import ssl
from collections.abc import Iterable, Sequence
from pathlib import Path

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


def default_context() -> ssl.SSLContext:
    """The system-trust context, shared by every registry that adds nothing to it.

    Loading the system CA bundle costs ~20 ms, so the build server creates this one before
    it forks. Keyed by SSL_CERT_FILE/SSL_CERT_DIR, which OpenSSL reads while loading.
    """
    return _default_context(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))


@functools.lru_cache(maxsize=4)
def _default_context(cert_file: str | None, cert_dir: str | None) -> ssl.SSLContext:
    del cert_file, cert_dir  # the cache key only: OpenSSL reads the environment itself
    return ssl.create_default_context()


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
    return _build_ssl_context(registry, tuple(ca_certs), dirs, verify)


@functools.lru_cache(maxsize=16)
def _build_ssl_context(
    registry: str, ca_certs: tuple[Path, ...], search: tuple[Path, ...], verify: bool
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
