"""`mpkit promote PACK REPOSITORY` against real registries: copy by digest, only what is
missing, mounts within a registry, a new pack that a cloud proxy can install."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

from tests.e2e.conftest import Mpkit, creds_env
from tests.fixtures.registry import RegistryServer
from tests.verify.conftest import (
    alice,
    make_pack,
    pack_for,
    push,
    push_index,
    small_image,
)

BLOBS = 3  # small_image: a config and two layers


def entries(pack: Path) -> dict[str, tuple[bytes, int]]:
    with zipfile.ZipFile(pack) as archive:
        return {i.filename: (archive.read(i), i.external_attr) for i in archive.infolist()}


def image_location(pack: Path) -> tuple[dict[str, str], dict[str, str]]:
    """(manifest.txt's container_image, adapter.zip's <KIND>.conf) of *pack*."""
    with zipfile.ZipFile(pack) as archive:
        manifest = json.loads(archive.read("manifest.txt"))
        adapter = zipfile.ZipFile(io.BytesIO(archive.read("adapter.zip")))
    [conf_name] = [n for n in adapter.namelist() if n.endswith(".conf") and "/" not in n]
    conf = dict(line.split("=", 1) for line in adapter.read(conf_name).decode().splitlines())
    return manifest["container_image"], conf


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_promotion_to_another_registry_copies_only_what_is_missing(
    registry_open: RegistryServer, make_registry: object, tmp_path: Path, mpkit: Mpkit
) -> None:
    production: RegistryServer = make_registry()  # type: ignore[operator]
    pushed = push(registry_open, "dev/adapter", small_image(tmp_path))
    pack = pack_for(tmp_path, pushed)
    original = sha256(pack)

    first = mpkit.ok("promote", str(pack), f"{production.host}/prod/adapter", "--json").json()
    assert first["digest"] == pushed.digest  # the digest never changes
    assert first["copy"]["blobs_uploaded"] == BLOBS
    assert first["verify"]["ok"] is True
    promoted = Path(first["pack"])
    assert promoted == pack.parent / production.host.replace(":", "_") / pack.name
    assert sha256(pack) == original  # the original pack is left as it is

    image, conf = image_location(promoted)
    assert image["registry"] == production.host and image["repository"] == "/prod/adapter"
    assert image["digest"] == conf["DIGEST"] == pushed.digest
    assert (conf["REGISTRY"], conf["REPOSITORY"]) == (production.host, "/prod/adapter")
    before, after = entries(pack), entries(promoted)
    assert list(before) == list(after)  # same entries, order and modes
    changed = {name for name in before if before[name] != after[name]}
    assert changed == {"manifest.txt", "adapter.zip"}

    again = mpkit.ok("promote", str(pack), f"{production.host}/prod/adapter", "--json").json()
    assert again["copy"]["blobs_uploaded"] == 0 and again["copy"]["blobs_skipped"] == BLOBS
    assert sha256(promoted) == sha256(Path(again["pack"]))  # reproducible


def test_promotion_within_one_registry_mounts(
    registry_open: RegistryServer, tmp_path: Path, mpkit: Mpkit
) -> None:
    pushed = push(registry_open, "dev/mounted", small_image(tmp_path))
    pack = pack_for(tmp_path, pushed)
    out = tmp_path / "release.pak"
    data = mpkit.ok("promote", str(pack), f"{registry_open.host}/release/mounted",
                    "-o", str(out), "--json").json()  # fmt: skip
    assert data["copy"]["blobs_mounted"] == BLOBS and data["copy"]["blobs_uploaded"] == 0
    assert Path(data["pack"]) == out and data["verify"]["ok"] is True


def test_credentials_for_the_destination_stay_secret(
    registry_open: RegistryServer, registry_basic: RegistryServer, tmp_path: Path, mpkit: Mpkit
) -> None:
    pushed = push(registry_open, "dev/secret", small_image(tmp_path))
    pack = pack_for(tmp_path, pushed)
    secret = registry_basic.users["alice"]
    result = mpkit.run("promote", str(pack), f"{registry_basic.host}/prod/secret", "--json",
                       "-u", "alice", "--password-stdin", input=secret + "\n")  # fmt: skip
    # The copy works; a basic-auth registry refuses anonymous pulls, so the check fails.
    assert result.returncode == 1, result.output
    assert secret not in result.output
    data = result.json()
    assert data["copy"]["blobs_uploaded"] == BLOBS
    assert data["verify"]["ok"] is False
    assert "anonymous" in result.stderr


def test_a_private_source_without_credentials_fails_clearly(
    registry_token: RegistryServer, registry_open: RegistryServer, tmp_path: Path, mpkit: Mpkit
) -> None:
    pushed = push(registry_token, "private/adapter", small_image(tmp_path),
                  credential=alice(registry_token))  # fmt: skip
    pack = pack_for(tmp_path, pushed)
    result = mpkit.run("promote", str(pack), f"{registry_open.host}/prod/private")
    assert result.returncode == 1 and "Traceback" not in result.output
    assert registry_token.host in result.stderr and "hint:" in result.stderr
    assert not (pack.parent / registry_open.host.replace(":", "_")).exists()

    allowed = mpkit.run("promote", str(pack), f"{registry_open.host}/prod/private",
                        env=creds_env(registry_token.users))  # fmt: skip
    # MPKIT_REGISTRY_* are for the destination only; the source needs a stored login.
    assert allowed.returncode == 1
    mpkit.ok("login", registry_token.host, "-u", "alice", "--password-stdin",
             input=registry_token.users["alice"] + "\n")  # fmt: skip
    mpkit.ok("promote", str(pack), f"{registry_open.host}/prod/private")


def test_a_pack_without_a_registry_needs_the_source_named(
    registry_open: RegistryServer, tmp_path: Path, mpkit: Mpkit
) -> None:
    pushed = push(registry_open, "dev/default", small_image(tmp_path))
    pack = make_pack(tmp_path / "project", None, pushed.path, pushed.digest)
    missing = mpkit.run("promote", str(pack), f"{registry_open.host}/prod/default")
    assert missing.returncode == 1 and "--default-registry" in missing.stderr
    data = mpkit.ok("promote", str(pack), f"{registry_open.host}/prod/default",
                    "--default-registry", registry_open.host, "--json").json()  # fmt: skip
    assert data["digest"] == pushed.digest and data["verify"]["ok"] is True
    kept = mpkit.ok("promote", str(pack), f"{registry_open.host}/prod/default2",
                    "--default-registry", registry_open.host, "--use-default-registry",
                    "--no-verify", "--json").json()  # fmt: skip
    image, conf = image_location(Path(kept["pack"]))
    assert "registry" not in image and "REGISTRY" not in conf


def test_bad_input_is_refused_before_anything_is_copied(
    registry_open: RegistryServer, tmp_path: Path, mpkit: Mpkit
) -> None:
    pushed = push(registry_open, "dev/bad", small_image(tmp_path))
    pack = pack_for(tmp_path, pushed)
    for args, text in (
        ([f"{registry_open.host}/prod/bad:v1"], "without a tag"),
        ([f"{registry_open.host}/prod/bad", "-o", str(pack)], "would replace"),
        ([f"{registry_open.host}/Bad Name"], "invalid character"),
    ):
        result = mpkit.run("promote", str(pack), *args)
        assert result.returncode != 0 and text in result.stderr, result.output
        assert "Traceback" not in result.output
    tags = mpkit.run("image", "inspect", f"{registry_open.host}/prod/bad:1.2.3_abc")
    assert tags.returncode == 1  # nothing was pushed
    broken = tmp_path / "broken.pak"
    broken.write_bytes(b"not a zip")
    result = mpkit.run("promote", str(broken), f"{registry_open.host}/prod/bad")
    assert result.returncode == 1 and "Traceback" not in result.output


def test_a_multi_platform_index_is_refused(
    registry_open: RegistryServer, tmp_path: Path, mpkit: Mpkit
) -> None:
    pushed = push_index(registry_open, "dev/index", tmp_path, ("linux/amd64", "linux/arm64"))
    pack = pack_for(tmp_path, pushed)
    result = mpkit.run("promote", str(pack), f"{registry_open.host}/prod/index")
    assert result.returncode == 1 and "multi-platform index" in result.stderr
    assert "skopeo copy --all" in result.stderr
