"""`mpkit login` / `mpkit logout` against real registries and a real credential helper."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys

import pexpect
import pytest

from tests.e2e.conftest import Mpkit
from tests.fixtures.passstore import PassStore
from tests.fixtures.registry import RegistryServer
from tests.image.builders import make_oci_layout


def read_config(mpkit: Mpkit) -> dict:  # type: ignore[type-arg]
    data: dict = json.loads(mpkit.docker_config.read_text())  # type: ignore[type-arg]
    return data


@pytest.mark.parametrize("mode", ["basic", "token"])
def test_login_stores_in_config_json_and_push_uses_it(
    mpkit: Mpkit, mode: str, request: pytest.FixtureRequest, tmp_path: os.PathLike[str]
) -> None:
    registry: RegistryServer = request.getfixturevalue(f"registry_{mode}")
    password = registry.users["alice"]
    mpkit.docker_config.write_text(json.dumps({"auths": {"other.example:5000": {"auth": "eDp5"}},
                                               "psFormat": "table"}))  # fmt: skip
    result = mpkit.ok("login", registry.host, "-u", "alice", "--password-stdin", input=password)
    assert "Login Succeeded" in result.stdout
    assert password not in result.output

    config = read_config(mpkit)
    assert config["psFormat"] == "table"
    assert "other.example:5000" in config["auths"]
    auth = base64.b64decode(config["auths"][registry.host]["auth"]).decode()
    assert auth == f"alice:{password}"
    assert stat.S_IMODE(mpkit.docker_config.stat().st_mode) == 0o600

    src = tmp_path / "src"  # type: ignore[operator]
    digest = make_oci_layout(src, "v1")
    pushed = mpkit.ok("image", "push", f"oci:{src}:v1", f"{registry.host}/private/stored:v1",
                      "--json")  # fmt: skip
    assert pushed.json()["digest"] == digest

    out = mpkit.ok("logout", registry.host)
    assert "Removed" in out.stdout
    assert registry.host not in read_config(mpkit)["auths"]
    denied = mpkit.run("image", "inspect", f"{registry.host}/private/stored:v1")
    assert denied.returncode == 1
    assert "anonymous pull" in denied.stderr


def test_login_with_wrong_password_stores_nothing(
    mpkit: Mpkit, registry_token: RegistryServer
) -> None:
    secret = "not-the-Password-9"
    result = mpkit.run("login", registry_token.host, "-u", "alice", "--password-stdin",
                       "--json", input=secret)  # fmt: skip
    assert result.returncode == 1
    assert "rejected the credentials" in result.stderr
    assert json.loads(result.stdout)["error"] == "authentication_failed"
    assert secret not in result.output
    assert not mpkit.docker_config.exists()


def test_login_without_terminal_never_prompts(mpkit: Mpkit, registry_basic: RegistryServer) -> None:
    result = mpkit.run("login", registry_basic.host, "-u", "alice")
    assert result.returncode == 2
    assert "--password-stdin" in result.stderr
    assert "MPKIT_REGISTRY_PASSWORD" in result.stderr


def test_login_prompts_on_a_terminal(mpkit: Mpkit, registry_basic: RegistryServer) -> None:
    child = pexpect.spawn(
        sys.executable, ["-m", "mpkit", "login", registry_basic.host],
        env=mpkit.env, encoding="utf-8", timeout=30,
    )  # fmt: skip
    child.expect("Username: ")
    child.sendline("alice")
    child.expect("Password: ")
    child.sendline(registry_basic.users["alice"])
    child.expect("Login Succeeded")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert registry_basic.host in read_config(mpkit)["auths"]


def test_login_logout_through_docker_credential_pass(
    mpkit: Mpkit, registry_token: RegistryServer, pass_store: PassStore, tmp_path: os.PathLike[str]
) -> None:
    env = {"GNUPGHOME": pass_store.gnupghome, "PASSWORD_STORE_DIR": pass_store.store_dir}
    mpkit.env.update(env)
    mpkit.docker_config.write_text(json.dumps({"credsStore": "pass"}))
    password = registry_token.users["alice"]
    result = mpkit.ok(
        "login", registry_token.host, "-u", "alice", "--password-stdin", input=password
    )
    assert "pass" in result.stdout
    assert password not in mpkit.docker_config.read_text()
    listing = subprocess.run(
        ["docker-credential-pass", "list"], env={**os.environ, **env}, capture_output=True,
        text=True, check=True,
    )  # fmt: skip
    assert json.loads(listing.stdout).get(registry_token.host) == "alice"

    src = tmp_path / "src"  # type: ignore[operator]
    digest = make_oci_layout(src, "v1")
    pushed = mpkit.ok("image", "push", f"oci:{src}:v1", f"{registry_token.host}/private/helper:v1",
                      "--json")  # fmt: skip
    assert pushed.json()["digest"] == digest

    mpkit.ok("logout", registry_token.host)
    listing = subprocess.run(
        ["docker-credential-pass", "list"], env={**os.environ, **env}, capture_output=True,
        text=True, check=True,
    )  # fmt: skip
    assert registry_token.host not in json.loads(listing.stdout)
