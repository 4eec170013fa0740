"""OCI distribution client: transport (TLS, auth, retries), blobs, manifests, push, pull."""

# First: every module below imports httpx, which must be imported lean (see _httpx).
import mpkit.registry._httpx  # noqa: F401

# isort: split
from mpkit.registry.client import Manifest, RegistryClient
from mpkit.registry.inspect import inspect_image
from mpkit.registry.pull import PullResult, ResolvedImage, pull_image, resolve_image
from mpkit.registry.push import PushResult, push_image, tag_image
from mpkit.registry.session import blob_locations, open_client
from mpkit.registry.stats import TransferStats
from mpkit.registry.transport import ClientOptions, Transport

__all__ = [
    "ClientOptions",
    "Manifest",
    "PullResult",
    "PushResult",
    "RegistryClient",
    "ResolvedImage",
    "TransferStats",
    "Transport",
    "blob_locations",
    "inspect_image",
    "open_client",
    "pull_image",
    "push_image",
    "resolve_image",
    "tag_image",
]
