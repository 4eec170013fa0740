"""Small raw-HTTP helpers for the built-in registry tests (no mpkit client involved)."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt
import httpx

from tests.fixtures.procs import ManagedProcess, ProcessStartError, free_port, http_ready

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
USERS = {"alice": "s3cret-Pa55"}


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def client(url: str, **kwargs: Any) -> httpx.Client:
    """An httpx client for *url* that ignores proxies and ambient credentials."""
    return httpx.Client(base_url=url, trust_env=False, timeout=30, **kwargs)


def write_htpasswd(path: Path, users: Mapping[str, str] = USERS) -> Path:
    lines = [
        f"{user}:{bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=4)).decode()}\n"
        for user, pw in users.items()
    ]
    path.write_text("".join(lines))
    return path


def push_blob(http: httpx.Client, name: str, data: bytes) -> str:
    """POST then monolithic PUT; returns the digest."""
    digest = sha256(data)
    start = http.post(f"/v2/{name}/blobs/uploads/")
    assert start.status_code == 202, start.text
    done = http.put(start.headers["Location"], params={"digest": digest}, content=data)
    assert done.status_code == 201, done.text
    return digest


@dataclass
class PushedImage:
    name: str
    tag: str
    digest: str
    manifest: bytes
    blobs: dict[str, bytes]


def image_manifest(config: bytes, layers: Sequence[bytes], **extra: Any) -> bytes:
    document = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
        "layers": [
            {"mediaType": OCI_LAYER, "digest": sha256(layer), "size": len(layer)}
            for layer in layers
        ],
        **extra,
    }
    return json.dumps(document, indent=1).encode()


def push_image(
    http: httpx.Client, name: str, tag: str = "v1", seed: str = "x", layer_size: int = 1000
) -> PushedImage:
    """Push a tiny image (a config and two layers derived from *seed*) by hand."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "seed": seed}).encode()
    layers = [(seed * layer_size).encode()[:layer_size], f"{seed}-second".encode()]
    blobs = {push_blob(http, name, b): b for b in [config, *layers]}
    manifest = image_manifest(config, layers)
    put = http.put(
        f"/v2/{name}/manifests/{tag}", content=manifest, headers={"Content-Type": OCI_MANIFEST}
    )
    assert put.status_code == 201, put.text
    assert put.headers["Docker-Content-Digest"] == sha256(manifest)
    return PushedImage(name, tag, sha256(manifest), manifest, blobs)


def error_codes(response: httpx.Response) -> list[str]:
    return [e["code"] for e in response.json()["errors"]]


def fsck(root: Path) -> int:
    """Every stored blob hashes to its name; returns how many there are."""
    count = 0
    for path in (root / "blobs").rglob("*"):
        if path.is_file():
            algorithm = path.parent.parent.name
            assert hashlib.new(algorithm, path.read_bytes()).hexdigest() == path.name, path
            count += 1
    return count


def tree(directory: Path, *, skip: Sequence[Path] = ()) -> set[str]:
    """Every path under *directory* (relative), leaving out the *skip* directories."""
    found: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(directory):
        current = Path(dirpath)
        dirnames[:] = [d for d in dirnames if current / d not in skip]
        found.update(str((current / n).relative_to(directory)) for n in dirnames + filenames)
    return found


class ServeProcess:
    """``python -m mpkit registry serve`` as a child process on a free loopback port."""

    def __init__(self, root: Path, log: Path, *extra: str, env: Mapping[str, str] | None = None):
        self.root = root
        self.log = log
        self.extra = list(extra)
        self.env = dict(env or os.environ)
        self.process: ManagedProcess | None = None
        self.port = 0

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def start(self) -> ServeProcess:
        last: ProcessStartError | None = None
        for _ in range(3):
            self.port = free_port()
            argv = [
                sys.executable,
                "-m",
                "mpkit",
                "registry",
                "serve",
                "--addr",
                self.host,
                "--root",
                str(self.root),
                *self.extra,
            ]
            self.process = ManagedProcess(
                argv, log_path=self.log, env=self.env, name=f"mpkit-registry:{self.port}"
            )
            try:
                self.process.start(http_ready("127.0.0.1", self.port), timeout=20)
                return self
            except ProcessStartError as error:
                self.process.stop()
                last = error
        assert last is not None
        raise last

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        import signal

        assert self.process is not None and self.process.pid is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.stop()

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
