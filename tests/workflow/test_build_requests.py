"""The requests of an app-only ``mpkit build``, counted by a recording proxy in front of a
real token-auth registry: which ones, how many, and how many the build waits for in turn.

What an app-only rebuild needs from the registry: a push token, the config and the app
layer uploaded (a session each, opened while the image builds, and a PUT), the manifest,
and the anonymous check of a cloud proxy's pull (an anonymous token, then HEAD of the
manifest and every blob, at once). The scheme and challenge are remembered from the
first build and the base layers from the records, so nothing else is asked.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.e2e.conftest import Mpkit, creds_env
from tests.e2e.sdkproject import (
    KIND,
    change_app,
    flow_env,
    pack_path,
    read_pack,
    write_sdk_project,
)
from tests.fixtures.baseimage import SdkBase
from tests.fixtures.faultproxy import FaultProxy, described, in_sequence
from tests.fixtures.registry import RegistryServer

MakeFaultProxy = Callable[..., FaultProxy]
REPOSITORY = "public/requests"  # anonymous pulls allowed under public/
# Every request waits this long at the proxy, so requests sent together overlap there.
LATENCY = 0.15
IN_SEQUENCE_BUDGET = 8
BUILD_TIMEOUT = 300.0


def test_an_app_only_build_asks_the_registry_only_what_it_must(
    tmp_path: Path,
    sdk_base: SdkBase,
    registry_token: RegistryServer,
    make_fault_proxy: MakeFaultProxy,
) -> None:
    proxy = make_fault_proxy(registry_token)
    proxy.delay(None, "", LATENCY, times=None)
    project = write_sdk_project(
        tmp_path / "project", config={"container_repository": f"{proxy.host}/{REPOSITORY}"}
    )
    env = flow_env(tmp_path / "user", base_registry_host=sdk_base.registry.host,
                   extra=creds_env(registry_token.users))  # fmt: skip
    cli = Mpkit(root=tmp_path / "user", env=env)
    build = ("build", str(project), "--json", "--no-registry-cache")
    cli.ok(*build, timeout=BUILD_TIMEOUT)

    change_app(project, "an app-only change")
    before = len(proxy.seen)
    report = cli.ok(*build, timeout=BUILD_TIMEOUT).json()
    seen = proxy.seen[before:]

    blob = f"/v2/{REPOSITORY}/blobs/DIGEST"
    expected = {
        f"GET token repository:{REPOSITORY}:pull,push": 1,  # the push's one token
        f"POST /v2/{REPOSITORY}/blobs/uploads/": 2,  # opened while the image builds
        f"PUT /v2/{REPOSITORY}/blobs/uploads/ID": 2,  # the config and the app layer
        f"PUT /v2/{REPOSITORY}/manifests/TAG": 1,
        f"GET token repository:{REPOSITORY}:pull": 1,  # the anonymous check's token
        f"HEAD /v2/{REPOSITORY}/manifests/DIGEST": 1,
        f"HEAD {blob}": len(report["verify"]["blobs"]),  # the config and every layer
    }
    found: dict[str, int] = {}
    for request in seen:
        found[described(request)] = found.get(described(request), 0) + 1
    assert found == expected, "\n".join(described(r) for r in seen)
    assert len(seen) == sum(expected.values())
    assert report["push"]["blobs_uploaded"] == 2
    assert report["verify"]["ok"] is True

    chain = in_sequence(seen)
    waited = [described(r) for r in chain]
    # token → POST → PUT blob → PUT manifest → anonymous token → HEADs: six in turn.
    assert len(chain) <= IN_SEQUENCE_BUDGET, waited
    assert waited[-1].startswith("HEAD"), waited

    # The digest in the pack is the one the registry confirmed for the manifest PUT.
    kind_conf = read_pack(pack_path(project)).kind_conf(KIND)
    assert kind_conf["DIGEST"] == report["digest"]
    [put] = [r for r in seen if r.method == "PUT" and "/manifests/" in r.target]
    assert put.status == 201
