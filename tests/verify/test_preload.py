"""`mpkit preload`: the script and the archive, run for real against podman, and
`mpkit run` finding the preloaded image locally."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.e2e.conftest import Mpkit, creds_env
from tests.fixtures.podman import Podman
from tests.fixtures.registry import RegistryServer
from tests.fixtures.tools import require_tool
from tests.verify.conftest import alice, pack_for, podman_env, push, sdk_image, small_image


def run_script(
    script: Path, *args: str, env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    sh = require_tool("sh")
    return subprocess.run(
        [sh, str(script), *args], env=env, capture_output=True, text=True, timeout=timeout,
        stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip


def test_script_is_posix_and_holds_no_secrets(
    registry_token: RegistryServer, tmp_path: Path, mpkit: Mpkit
) -> None:
    pushed = push(registry_token, "private/mp/script", small_image(tmp_path),
                  credential=alice(registry_token))  # fmt: skip
    pack = pack_for(tmp_path, pushed)
    password = registry_token.users["alice"]

    result = mpkit.ok("preload", "--json", str(pack), env=creds_env(registry_token.users))
    data = result.json()
    script = Path(data["script"])
    assert script == pack.with_name(f"{pack.stem}-preload.sh")
    assert os.access(script, os.X_OK)
    text = script.read_text()
    assert password not in text and password not in result.output
    assert f"REGISTRY={registry_token.host}\n" in text
    assert "REPOSITORY=private/mp/script\n" in text
    assert f"DIGEST={pushed.digest}\n" in text
    assert "--password-stdin" in text and "logout" in text
    assert data["image"] == pushed.pinned
    assert data["archive"] is None
    assert any("REGISTRY_USERNAME=" in c and script.name in c for c in data["commands"])
    for shell in ("sh", "bash"):
        syntax = subprocess.run([require_tool(shell), "-n", str(script)], capture_output=True,
                                text=True, check=False)  # fmt: skip
        assert syntax.returncode == 0, syntax.stderr

    text_out = mpkit.ok("preload", "-o", str(tmp_path / "p.sh"), "-u", "robot", str(pack)).stdout
    assert "On every cloud proxy" in text_out
    assert "REGISTRY_USERNAME=robot sh /tmp/p.sh" in text_out


def test_script_needs_credentials_without_a_terminal(
    registry_token: RegistryServer, tmp_path: Path, mpkit: Mpkit
) -> None:
    pushed = push(registry_token, "private/mp/nocreds", small_image(tmp_path),
                  credential=alice(registry_token))  # fmt: skip
    script = Path(mpkit.ok("preload", "--json", str(pack_for(tmp_path, pushed))).json()["script"])
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    env = {"PATH": f"{fake_bin}:/usr/bin:/bin", "CONTAINER_ENGINE": "true"}
    result = run_script(script, env=env)
    assert result.returncode == 1
    assert "set REGISTRY_USERNAME" in result.stderr


def test_preload_script_then_run_finds_the_image_locally(
    registry_token: RegistryServer, fresh_podman: Podman, tmp_path: Path, mpkit: Mpkit
) -> None:
    """The private image, preloaded with credentials from the environment, is in podman's
    storage; `mpkit run` then finds it there and never pulls (anonymous pulls fail)."""
    pushed = push(registry_token, "private/mp/preload", sdk_image(),
                  credential=alice(registry_token))  # fmt: skip
    pack = pack_for(tmp_path, pushed)
    script = Path(mpkit.ok("preload", "--json", str(pack)).json()["script"])
    fresh_podman.add_registry(registry_token.host)  # plain HTTP on loopback
    auth_before = fresh_podman.auth_file.read_text()

    env = {**fresh_podman.env, "CONTAINER_ENGINE": "podman", "REGISTRY_USERNAME": "alice",
           "REGISTRY_PASSWORD": registry_token.users["alice"]}  # fmt: skip
    result = run_script(script, env=env)
    assert result.returncode == 0, result.stderr
    assert fresh_podman.image_exists(pushed.pinned)
    assert fresh_podman.image_digest(pushed.pinned) == pushed.digest
    assert fresh_podman.image_exists(f"{pushed.registry}/{pushed.path}:1.2.3_abc")
    assert fresh_podman.auth_file.read_text() == auth_before  # a private store, then gone
    assert registry_token.users["alice"] not in result.stderr + result.stdout

    run = mpkit.run("run", "--json", str(pack), env=podman_env(fresh_podman))
    assert run.returncode == 0, run.output
    data = run.json()
    assert data["found_locally"] is True and data["pulled"] is False
    assert data["api_version"] == {"major": 1, "minor": 0, "maintenance": 0}
    text = mpkit.ok("run", str(pack), env=podman_env(fresh_podman))
    assert "not pulling" in text.stderr
    assert "found, not pulled" in text.stdout and "removed" in text.stdout
    assert _containers(fresh_podman) == []


def test_archive_loads_with_the_script_and_runs(
    registry_token: RegistryServer, fresh_podman: Podman, tmp_path: Path, mpkit: Mpkit
) -> None:
    pushed = push(registry_token, "private/mp/archive", sdk_image(),
                  credential=alice(registry_token))  # fmt: skip
    pack = pack_for(tmp_path, pushed)
    archive = tmp_path / "adapter.tar"
    result = mpkit.run("preload", "--json", "--archive", str(archive), str(pack),
                       env=creds_env(registry_token.users))  # fmt: skip
    assert result.returncode == 0, result.output
    data = result.json()
    name = f"{pushed.registry}/{pushed.path}:1.2.3_abc"
    assert data["archive"]["name"] == name
    assert data["archive"]["image_digest"] == pushed.digest
    assert any("adapter.tar" in c for c in data["commands"])

    script = Path(data["script"])
    loaded = run_script(
        script, str(archive), env={**fresh_podman.env, "CONTAINER_ENGINE": "podman"}
    )
    assert loaded.returncode == 0, loaded.stderr
    assert fresh_podman.image_exists(name)
    assert fresh_podman.image_exists(pushed.pinned)
    ran = fresh_podman.run("run", "--rm", name, "python3", "-c", "import os; print(os.getcwd())")
    assert ran.stdout.strip() == "/home/aria-ops-adapter-user/src/app"


def test_archive_needs_credentials_for_a_private_image(
    registry_token: RegistryServer, tmp_path: Path, mpkit: Mpkit
) -> None:
    pushed = push(registry_token, "private/mp/archive-denied", small_image(tmp_path),
                  credential=alice(registry_token))  # fmt: skip
    result = mpkit.run(
        "preload", "--archive", str(tmp_path / "a.tar"), str(pack_for(tmp_path, pushed))
    )
    assert result.returncode == 1
    assert "denied" in result.stderr
    assert not (tmp_path / "a.tar").exists()
    assert list(tmp_path.glob(".mpkit-preload-*")) == []


def _containers(engine: Podman) -> list[str]:
    out = engine.run("ps", "--all", "--filter", "label=io.mpkit.run", "--format", "{{.Names}}")
    return out.stdout.split()


# A stand-in for the docker CLI of a cloud proxy (no docker daemon runs here): it logs its
# arguments and standard input, and answers `image inspect` like docker does.
FAKE_DOCKER = """#!/bin/sh
printf '%s\\n' "$*" >> "$FAKE_LOG"
case "$*" in
    info) exit 0 ;;
    *" login "*) cat > "$FAKE_LOG.stdin"; [ -d "$2" ] || exit 9 ;;
    *"{{.Id}}"*) printf '%s\\n' "$FAKE_ID" ;;
    *"image inspect"*) printf '%s' "$FAKE_REPO_DIGESTS" ;;
esac
exit 0
"""


def _fake_docker(tmp: Path) -> tuple[dict[str, str], Path]:
    bin_dir = tmp / "fake-bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(FAKE_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    log = tmp / "docker.log"
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "FAKE_LOG": str(log), "TMPDIR": str(tmp)}
    return env, log


def test_script_drives_docker_like_a_cloud_proxy(
    registry_token: RegistryServer, tmp_path: Path, mpkit: Mpkit
) -> None:
    pushed = push(registry_token, "private/mp/docker", small_image(tmp_path),
                  credential=alice(registry_token))  # fmt: skip
    script = Path(mpkit.ok("preload", "--json", str(pack_for(tmp_path, pushed))).json()["script"])
    env, log = _fake_docker(tmp_path)
    password = "pa55 with 'quotes' and $dollar"
    env.update(REGISTRY_USERNAME="robot", REGISTRY_PASSWORD=password,
               FAKE_REPO_DIGESTS=f"{pushed.pinned}\n")  # fmt: skip

    result = run_script(script, env=env)
    assert result.returncode == 0, result.stderr
    calls = log.read_text().splitlines()
    assert calls[0] == "info"  # the engine was chosen because its daemon answers
    config_dir = calls[1].split()[1]
    assert calls[1:] == [
        f"--config {config_dir} login --username robot --password-stdin {pushed.registry}",
        f"--config {config_dir} pull {pushed.pinned}",
        "image inspect --format {{range .RepoDigests}}{{println .}}{{end}} " + pushed.pinned,
        f"--config {config_dir} logout {pushed.registry}",
        f"tag {pushed.pinned} {pushed.registry}/{pushed.path}:1.2.3_abc",
    ]
    assert Path(f"{log}.stdin").read_text() == password + "\n"
    assert password not in log.read_text()
    assert not Path(config_dir).exists()

    env["FAKE_REPO_DIGESTS"] = f"{pushed.registry}/{pushed.path}@sha256:{'0' * 64}\n"
    result = run_script(script, env=env)
    assert result.returncode == 1
    assert f"with digest {pushed.digest}" in result.stderr


def test_archive_check_needs_the_digest_and_names_docker_s_missing_one(
    registry_token: RegistryServer, tmp_path: Path, mpkit: Mpkit
) -> None:
    """docker's classic image store records no digest on load (moby/moby#22011): the image
    ID tells the pack's image from another, but a cloud proxy looks for the digest."""
    pushed = push(registry_token, "private/mp/docker-archive", small_image(tmp_path),
                  credential=alice(registry_token))  # fmt: skip
    archive = tmp_path / "adapter.tar"
    data = mpkit.ok("preload", "--json", "--archive", str(archive), str(pack_for(tmp_path, pushed)),
                    env=creds_env(registry_token.users)).json()  # fmt: skip
    script = Path(data["script"])
    env, log = _fake_docker(tmp_path)
    env.update(FAKE_REPO_DIGESTS=f"{pushed.pinned}\n")  # an engine that records it
    result = run_script(script, str(archive), env=env)
    assert result.returncode == 0, result.stderr
    assert f"load --input {archive}" in log.read_text()

    env.update(FAKE_REPO_DIGESTS="", FAKE_ID=data["archive"]["image_id"])
    result = run_script(script, str(archive), env=env)
    assert result.returncode == 1
    assert "records no digest for a loaded image" in result.stderr
    assert "run this script without FILE" in result.stderr

    env["FAKE_ID"] = "sha256:" + "0" * 64
    result = run_script(script, str(archive), env=env)
    assert result.returncode == 1
    assert "is not the pack's image" in result.stderr
