"""The faithful SDK-server base stand-in: the SDK's own REST server on the Debian base."""

from __future__ import annotations

from tests.fixtures.podman import Podman
from tests.fixtures.procs import free_port
from tests.fixtures.sdkserverbase import SdkServerBase
from tests.test_baseimage import _wait_until_ready, request

SITE = "/home/aria-ops-adapter-user/.local/lib/python3.11/site-packages"


def test_the_sdk_server_answers_api_version(podman: Podman, sdk_server_base: SdkServerBase) -> None:
    podman.pull(sdk_server_base.reference)
    # What the SDK's adapter library needs from the base: requests, installed for the user.
    found = podman.container_run(
        sdk_server_base.reference, "-c", "import requests, swagger_server; print('ok')"
    ).stdout
    assert found.strip() == "ok"
    port = free_port()
    with podman.running(sdk_server_base.reference, publish=[f"127.0.0.1:{port}:8080"]) as name:
        _wait_until_ready(podman, name, port)
        status, body = request(port, "GET", "/apiVersion")
    assert status == 200 and body == {"major": 1, "minor": 0, "maintenance": 0}
