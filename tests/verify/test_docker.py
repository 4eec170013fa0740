"""The cloud proxy's view with the real Docker Engine: `mpkit run --engine docker` and a
`mpkit preload --archive` loaded with `docker load`."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from tests.e2e.conftest import Mpkit, creds_env
from tests.fixtures.dockerd import NO_LOGINS, Dockerd
from tests.fixtures.registry import RegistryServer
from tests.verify.conftest import TAG, alice, pack_for, push, sdk_image
from tests.verify.test_preload import run_script

MiB = 1024 * 1024
RUN_LABEL = "label=io.mpkit.run"


def test_run_pulls_by_digest_anonymously_then_finds_the_image_locally(
    registry_open: RegistryServer, dockerd: Dockerd, tmp_path: Path, mpkit: Mpkit
) -> None:
    pushed = push(registry_open, "docker/run", sdk_image())
    pack = pack_for(tmp_path, pushed, config={"default_memory_limit": 768})
    env = dockerd.client_env()

    first = mpkit.run("run", "--engine", "docker", "--keep", "--json", str(pack), env=env)
    assert first.returncode == 0, first.output
    data = first.json()
    try:
        assert data["engine"] == "docker" and data["image"] == pushed.pinned
        assert data["found_locally"] is False and data["pulled"] is True
        assert data["api_version"] == {"major": 1, "minor": 0, "maintenance": 0}
        assert (data["memory_mb"], data["memory_swap_mb"]) == (768, 1280)
        with urllib.request.urlopen(f"{data['url']}/apiVersion", timeout=10) as response:
            assert json.loads(response.read()) == data["api_version"]
        container = json.loads(dockerd.run("inspect", data["container"]).stdout)[0]
        host = container["HostConfig"]
        assert (host["Memory"], host["MemorySwap"]) == (768 * MiB, 1280 * MiB)
        ports = host["PortBindings"]["8080/tcp"]
        assert [binding["HostIp"] for binding in ports] == ["127.0.0.1"]
    finally:
        dockerd.run("rm", "--force", data["container"], check=False)
    assert dockerd.repo_digests(pushed.pinned) == [pushed.pinned]

    again = mpkit.run("run", "--engine", "docker", "--json", str(pack), env=env)
    assert again.returncode == 0, again.output
    assert again.json()["found_locally"] is True and again.json()["pulled"] is False
    assert dockerd.containers(RUN_LABEL) == []
    dockerd.remove_images([pushed.pinned])


def test_preload_with_docker_then_run_by_digest(
    registry_token: RegistryServer, dockerd: Dockerd, tmp_path: Path, mpkit: Mpkit
) -> None:
    """A private image preloaded with docker. From the archive (`mpkit preload --archive`,
    `docker load`): docker 20.10 records no digest for a loaded image, so a lookup by digest
    cannot find it, and both the script and `mpkit run` say so. With the script's pull
    (credentials from the environment): `mpkit run` finds it by digest and never pulls."""
    pushed = push(registry_token, "private/docker/preload", sdk_image(),
                  credential=alice(registry_token))  # fmt: skip
    pack = pack_for(tmp_path, pushed)
    archive = tmp_path / "adapter.tar"
    data = mpkit.ok("preload", "--json", "--archive", str(archive), str(pack),
                    env=creds_env(registry_token.users)).json()  # fmt: skip
    script, name = Path(data["script"]), f"{pushed.registry}/{pushed.path}:{TAG}"
    script_env = {**dockerd.env, "CONTAINER_ENGINE": "docker"}
    env = dockerd.client_env()

    loaded = run_script(script, str(archive), env=script_env)
    assert loaded.returncode == 1
    assert f"docker loaded the pack's image as {name}, but records no digest" in loaded.stderr
    assert (dockerd.image_inspect(name) or {}).get("Id") == data["archive"]["image_id"]
    assert not dockerd.image_exists(pushed.pinned)
    refused = mpkit.run("run", "--engine", "docker", str(pack), env=env)
    assert refused.returncode == 1
    assert "could not pull" in refused.stderr and "anonymously" in refused.stderr
    assert f"docker has {name}, but not {pushed.pinned}" in refused.stderr
    assert dockerd.containers(RUN_LABEL) == []

    login = {"REGISTRY_USERNAME": "alice", "REGISTRY_PASSWORD": registry_token.users["alice"]}
    pulled = run_script(script, env={**script_env, **login})
    assert pulled.returncode == 0, pulled.stderr
    assert dockerd.repo_digests(pushed.pinned) == [pushed.pinned]
    assert (dockerd.config_dir / "config.json").read_text() == NO_LOGINS  # untouched
    run = mpkit.run("run", "--engine", "docker", "--json", str(pack), env=env)
    assert run.returncode == 0, run.output
    assert run.json()["found_locally"] is True and run.json()["pulled"] is False
    assert run.json()["api_version"] == {"major": 1, "minor": 0, "maintenance": 0}
    assert dockerd.containers(RUN_LABEL) == []
    dockerd.remove_images([name, pushed.pinned])
