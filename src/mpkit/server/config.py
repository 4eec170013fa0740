"""Server settings, listen-address parsing and the safety checks made before binding."""

from __future__ import annotations

import ipaddress
import math
import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from mpkit.errors import UsageError

DEFAULT_ADDR = "127.0.0.1:5000"
DEFAULT_UPLOAD_TTL = 24 * 3600.0
DEFAULT_MAX_MANIFEST_BYTES = 4 * 1024 * 1024  # distribution-spec: support at least 4 MB
DEFAULT_MAX_BLOB_BYTES = 64 * 1024**3
DEFAULT_MAX_UPLOADS = 1000
DEFAULT_MAX_CONNECTIONS = 256
DEFAULT_HEADER_TIMEOUT = 30.0  # TLS handshake + request line + headers, all together
DEFAULT_IDLE_TIMEOUT = 60.0  # keep-alive connection without a new request
DEFAULT_BODY_TIMEOUT = 60.0  # longest stall of a request body
DEFAULT_MIN_BODY_RATE = 1024.0  # bytes/s a request body must reach on balance
DEFAULT_SEND_TIMEOUT = 120.0  # longest stall of a client reading a response
ROOT_ENV = "MPKIT_REGISTRY_ROOT"
STATE_FILE = "server.json"  # in the root: pid and address of the server using it
LOG_FILE = "registry.log"  # in the root: what a detached server prints


def default_root() -> Path:
    """``$MPKIT_REGISTRY_ROOT``, else ``registry`` in the per-user data directory."""
    override = os.environ.get(ROOT_ENV)
    return Path(override) if override else Path(platformdirs.user_data_dir("mpkit")) / "registry"


def parse_addr(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[IPV6]:PORT`` or ``:PORT`` (all interfaces) → (host, port)."""
    hint = "use HOST:PORT, e.g. 127.0.0.1:5000, [::1]:5000 or 0.0.0.0:5000"
    text = text.strip()
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or not rest.startswith(":"):
            raise UsageError(f"--addr {text!r} is not [IPV6]:PORT", hint=hint)
        port_text = rest[1:]
    else:
        host, colon, port_text = text.rpartition(":")
        if not colon or ":" in host:
            raise UsageError(f"--addr {text!r} has no port", hint=hint)
        host = host or "0.0.0.0"  # noqa: S104 (":PORT" means every interface, as in Go)
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise UsageError(f"--addr {text!r}: the port must be a number from 0 to 65535", hint=hint)
    if not host:
        raise UsageError(f"--addr {text!r} names no host", hint=hint)
    return host, int(port_text)


def format_addr(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


@dataclass(frozen=True)
class ServerConfig:
    """Everything ``mpkit registry serve`` can be told."""

    root: Path
    host: str = "127.0.0.1"
    port: int = 5000
    htpasswd: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    insecure_open: bool = False  # listen beyond loopback without an htpasswd file
    upload_ttl: float = DEFAULT_UPLOAD_TTL
    max_manifest_bytes: int = DEFAULT_MAX_MANIFEST_BYTES
    max_blob_bytes: int = DEFAULT_MAX_BLOB_BYTES
    max_uploads: int = DEFAULT_MAX_UPLOADS
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    body_timeout: float = DEFAULT_BODY_TIMEOUT
    min_body_rate: float = DEFAULT_MIN_BODY_RATE  # 0: only stalls count
    send_timeout: float = DEFAULT_SEND_TIMEOUT

    @property
    def addr(self) -> str:
        return format_addr(self.host, self.port)

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    def validate(self) -> None:
        """Refuse unsafe or incomplete settings (UsageError, exit 2) before anything binds."""
        if (self.tls_cert is None) != (self.tls_key is None):
            raise UsageError(
                "--tls-cert and --tls-key go together",
                hint="give both PEM files, or neither for plain HTTP",
            )
        for flag, path in (
            ("--htpasswd", self.htpasswd),
            ("--tls-cert", self.tls_cert),
            ("--tls-key", self.tls_key),
        ):
            if path is not None and not path.is_file():
                raise UsageError(f"{flag} {path}: no such file")
        if self.upload_ttl <= 0 or self.max_manifest_bytes <= 0 or self.max_blob_bytes <= 0:
            raise UsageError("limits and --upload-ttl must be positive")
        for flag, value in (
            ("--max-connections", self.max_connections),
            ("--header-timeout", self.header_timeout),
            ("--idle-timeout", self.idle_timeout),
            ("--body-timeout", self.body_timeout),
            ("send_timeout", self.send_timeout),
        ):
            if not (value > 0 and math.isfinite(value)):
                raise UsageError(f"{flag} must be a positive number, not {value:g}")
        if not (self.min_body_rate >= 0 and math.isfinite(self.min_body_rate)):
            raise UsageError(
                f"--min-body-rate must be zero or more bytes/s, not {self.min_body_rate:g}"
            )
        if not is_loopback(self.host) and self.htpasswd is None and not self.insecure_open:
            raise UsageError(
                f"refusing to listen on {self.addr} without authentication: anyone who can "
                "reach it could read every image",
                hint="add --htpasswd FILE (bcrypt, 'htpasswd -B'), listen on 127.0.0.1, or "
                "pass --insecure-open to serve anonymous pulls to the network anyway "
                "(pushes are then still accepted only from this machine)",
            )
