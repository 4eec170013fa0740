"""Credentials shared with the real docker client: what `docker login` stores (config.json
``auths``, or a ``credsStore`` helper: docker-credential-pass), mpkit uses; what
`mpkit login` stores, `docker pull` uses. The registry is the token-auth one, where
`docker login` keeps an identity token (a refresh token) rather than the password."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.conftest import Mpkit
from tests.fixtures.dockerd import Dockerd
from tests.fixtures.passstore import PassStore
from tests.fixtures.registry import RegistryServer
from tests.image.builders import make_oci_layout
from tests.verify.conftest import Pushed, alice, push, small_image


@dataclass(frozen=True)
class Setup:
    env: dict[str, str]  # what docker needs to use the store
    pushed: Pushed  # a private image, pushed with alice's credentials


@pytest.fixture(params=["config.json", "pass"])
def setup(
    request: pytest.FixtureRequest, mpkit: Mpkit, registry_token: RegistryServer, tmp_path: Path
) -> Setup:
    """The credential store in mpkit's DOCKER_CONFIG, and a private image in the registry."""
    store: str = request.param
    env = {"DOCKER_CONFIG": str(mpkit.docker_config.parent)}
    # A config.json without any login makes docker pick a store of its own (pass, when
    # installed), so the config.json case starts from an unrelated login.
    mpkit.docker_config.write_text(json.dumps({"auths": {"other.example:5000": {"auth": "eDp5"}}}))
    if store == "pass":
        pass_store: PassStore = request.getfixturevalue("pass_store")
        env |= {"GNUPGHOME": pass_store.gnupghome, "PASSWORD_STORE_DIR": pass_store.store_dir}
        mpkit.docker_config.write_text(json.dumps({"credsStore": "pass"}))
        mpkit.env.update(env)
    path = f"private/{request.function.__name__}/{store}"
    pushed = push(registry_token, path, small_image(tmp_path), credential=alice(registry_token))
    return Setup(env, pushed)


def _helper_list(env: dict[str, str]) -> dict[str, str]:
    listing = subprocess.run(["docker-credential-pass", "list"], env={**os.environ, **env},
                             capture_output=True, text=True, check=True)  # fmt: skip
    data: dict[str, str] = json.loads(listing.stdout)
    return data


def test_docker_login_credentials_are_used_by_mpkit(
    setup: Setup, dockerd: Dockerd, registry_token: RegistryServer, mpkit: Mpkit, tmp_path: Path
) -> None:
    env, pushed, password = setup.env, setup.pushed, registry_token.users["alice"]
    assert mpkit.run("image", "inspect", pushed.pinned).returncode == 1  # nothing stored yet

    login = dockerd.run("login", "--username", "alice", "--password-stdin", pushed.registry,
                        input=password, env=env)  # fmt: skip
    assert "Login Succeeded" in login.stdout
    stored = mpkit.docker_config.read_text()
    assert password not in stored
    entry = json.loads(stored)["auths"][pushed.registry]
    pass_store = "PASSWORD_STORE_DIR" in env
    if pass_store:
        assert entry == {} and _helper_list(env) == {pushed.registry: "<token>"}
    else:
        assert set(entry) == {"auth", "identitytoken"}  # the refresh token, not the password

    assert mpkit.ok("image", "inspect", "--json", pushed.pinned).json()["digest"] == pushed.digest
    layout = tmp_path / "upload"
    digest = make_oci_layout(layout, "v1")
    pushing = ["image", "push", f"oci:{layout}:v1", f"{pushed.registry}/{pushed.path}-2:v1"]
    assert mpkit.ok(*pushing, "--json").json()["digest"] == digest

    mpkit.ok("logout", pushed.registry)  # erases what docker stored
    assert pushed.registry not in json.loads(mpkit.docker_config.read_text())["auths"]
    assert not pass_store or _helper_list(env) == {}


def test_mpkit_login_credentials_are_used_by_docker_pull(
    setup: Setup, dockerd: Dockerd, registry_token: RegistryServer, mpkit: Mpkit
) -> None:
    env, pushed = setup.env, setup.pushed
    denied = dockerd.run("pull", pushed.pinned, env=env, check=False)
    assert denied.returncode != 0 and "denied" in denied.stderr

    mpkit.ok("login", pushed.registry, "-u", "alice", "--password-stdin",
             input=registry_token.users["alice"])  # fmt: skip
    dockerd.run("pull", pushed.pinned, env=env)
    assert dockerd.repo_digests(pushed.pinned) == [pushed.pinned]
    dockerd.remove_images([pushed.pinned])

    dockerd.run("logout", pushed.registry, env=env)  # erases what mpkit stored
    assert mpkit.run("image", "inspect", pushed.pinned).returncode == 1
