"""`mpkit verify` against the real registries: what a cloud proxy would see."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from mpkit.registry import ClientOptions
from mpkit.verify import verify_pack
from mpkit.verify.report import RateLimit
from tests.e2e.conftest import Mpkit, creds_env
from tests.fixtures.fakeregistry import FakeRegistry, Reply
from tests.fixtures.procs import free_port
from tests.fixtures.registry import RegistryServer
from tests.pack.projects import declare_size, write_pack, write_zip, zip_bytes
from tests.verify.conftest import (
    alice,
    make_pack,
    pack_for,
    push,
    push_index,
    small_image,
)

OPTIONS = ClientOptions()


def codes(report: object) -> list[str]:
    return [p.code for p in report.problems]  # type: ignore[attr-defined]


# -- the token registry: public, private, missing -----------------------------------------
def test_public_repository_verifies(
    registry_token: RegistryServer, tmp_path: Path, mpkit: Mpkit
) -> None:
    pushed = push(registry_token, "public/mp/adapter", small_image(tmp_path),
                  credential=alice(registry_token))  # fmt: skip
    pack = pack_for(tmp_path, pushed)

    result = mpkit.run("verify", str(pack))
    assert result.returncode == 0, result.output
    assert "verify ok" in result.stdout
    assert "anonymous, as a cloud proxy pulls" in result.stdout

    data = mpkit.ok("verify", "--json", str(pack)).json()
    assert data["ok"] is True and data["problems"] == []
    assert data["image"] == pushed.pinned
    assert data["platform"] == "linux/amd64"
    assert [b["role"] for b in data["blobs"]] == ["config", "layer 1 of 2", "layer 2 of 2"]
    assert all(b["present"] for b in data["blobs"])
    image = pushed.image
    assert image is not None
    assert data["total_size"] == image.size
    assert data["rate_limit"] is None  # not Docker Hub


def test_private_repository_fails_anonymously_even_with_credentials_at_hand(
    registry_token: RegistryServer, tmp_path: Path, mpkit: Mpkit
) -> None:
    pushed = push(registry_token, "private/mp/adapter", small_image(tmp_path),
                  credential=alice(registry_token))  # fmt: skip
    pack = pack_for(tmp_path, pushed)
    mpkit.ok("login", registry_token.host, "-u", "alice", "--password-stdin",
             input=registry_token.users["alice"])  # fmt: skip
    env = creds_env(registry_token.users)  # also in the environment: still unused

    result = mpkit.run("verify", str(pack), env=env)
    assert result.returncode == 1, result.output
    assert "anonymous pull denied" in result.stderr
    assert "make the repository" in result.stderr and "public" in result.stderr
    assert "preload the image on every cloud proxy" in result.stderr
    assert f"mpkit preload {pack}" in result.stderr
    assert registry_token.users["alice"] not in result.output

    data = mpkit.run("verify", "--json", str(pack), env=env).json()
    assert data["ok"] is False
    assert [p["code"] for p in data["problems"]] == ["anonymous_pull_denied"]

    # --with-credentials: the image exists, it is private.
    result = mpkit.run("verify", "--with-credentials", "--json", str(pack), env=env)
    assert result.returncode == 0, result.output
    data = result.json()
    assert data["ok"] is True and data["anonymous"] is False
    assert data["anonymous_pull"] == "denied"
    assert all(b["present"] for b in data["blobs"])
    assert "preloaded" in data["warnings"][0]
    assert registry_token.users["alice"] not in result.output


def test_with_credentials_tells_missing_from_private(
    registry_token: RegistryServer, tmp_path: Path
) -> None:
    digest = "sha256:" + "12" * 32
    pack = make_pack(tmp_path / "p", registry_token.host, "private/mp/nothing-here", digest)

    anonymous = verify_pack(pack, options=OPTIONS)
    assert codes(anonymous) == ["anonymous_pull_denied"]  # the registry cannot say more

    private = verify_pack(pack, options=OPTIONS, with_credentials=True,
                          credential=alice(registry_token))  # fmt: skip
    assert codes(private) == ["digest_not_found"]
    assert "digest not found" in private.problems[0].message


def test_basic_auth_registry_fails_like_a_private_repository(
    registry_basic: RegistryServer, tmp_path: Path
) -> None:
    pushed = push(registry_basic, "mp/adapter", small_image(tmp_path),
                  credential=alice(registry_basic))  # fmt: skip
    pack = pack_for(tmp_path, pushed)

    report = verify_pack(pack, options=OPTIONS)
    assert codes(report) == ["anonymous_pull_denied"]
    assert "public" in (report.problems[0].hint or "")
    assert "preload" in (report.problems[0].hint or "")

    report = verify_pack(pack, options=OPTIONS, with_credentials=True,
                         credential=alice(registry_basic))  # fmt: skip
    assert report.ok, report.problems
    assert report.anonymous_pull == "denied"


# -- damaged registry content and edited packs ---------------------------------------------
def test_deleted_blob_is_named(registry_open: RegistryServer, tmp_path: Path, mpkit: Mpkit) -> None:
    image = small_image(tmp_path)
    pushed = push(registry_open, "mp/lost-blob", image)
    lost = image.layers[1].digest
    registry_open.blob_path(lost).unlink()
    pack = pack_for(tmp_path, pushed)

    result = mpkit.run("verify", str(pack))
    assert result.returncode == 1, result.output
    assert lost in result.stderr
    assert "layer 2 of 2" in result.stderr
    data = mpkit.run("verify", "--json", str(pack)).json()
    assert [(p["code"], p["digest"]) for p in data["problems"]] == [("blob_missing", lost)]
    assert [b["present"] for b in data["blobs"]] == [True, True, False]


def test_edited_digest_is_not_found(registry_open: RegistryServer, tmp_path: Path) -> None:
    pushed = push(registry_open, "mp/edited", small_image(tmp_path))
    other = "sha256:" + ("0" if pushed.digest[-1] != "0" else "1") * 64
    pack = make_pack(tmp_path / "p", pushed.registry, pushed.path, other)

    report = verify_pack(pack, options=OPTIONS)
    assert codes(report) == ["digest_not_found"]
    assert "digest not found" in report.problems[0].message


def test_digest_edited_in_conf_only_is_a_mismatch(
    registry_open: RegistryServer, tmp_path: Path
) -> None:
    pushed = push(registry_open, "mp/conf-edit", small_image(tmp_path))
    pack = pack_for(tmp_path, pushed)
    other = "sha256:" + "ab" * 32
    edited = _rewrite_conf(pack, tmp_path, lambda conf: conf.replace(pushed.digest, other))

    report = verify_pack(edited, options=OPTIONS)
    assert "inconsistent_pack" in codes(report)
    assert any("digest" in p.message and other in p.message for p in report.problems)
    assert "digest_not_found" in codes(report)  # the installer reads the conf: not there


def _rewrite_conf(pack: Path, tmp: Path, edit: object) -> Path:
    """A copy of *pack* whose adapter.zip's <KIND>.conf went through *edit*."""
    with zipfile.ZipFile(pack) as outer:
        entries = {name: outer.read(name) for name in outer.namelist() if not name.endswith("/")}
    with zipfile.ZipFile(tmp / "adapter-in.zip", "w") as _:
        pass
    (tmp / "adapter-in.zip").write_bytes(entries["adapter.zip"])
    with zipfile.ZipFile(tmp / "adapter-in.zip") as inner:
        adapter = {n: inner.read(n) for n in inner.namelist() if not n.endswith("/")}
    conf = next(n for n in adapter if n.endswith(".conf") and "/" not in n)
    adapter[conf] = edit(adapter[conf].decode()).encode()  # type: ignore[operator]
    entries["adapter.zip"] = zip_bytes(adapter, tmp)
    return write_zip(tmp / "edited.pak", entries)


def test_registry_serving_other_bytes_is_a_digest_mismatch(tmp_path: Path) -> None:
    with FakeRegistry() as fake:
        image = small_image(tmp_path)
        real = push_fake(fake, image)
        forged = "sha256:" + "cd" * 32
        fake.manifests[("mp/adapter", forged)] = fake.manifests[("mp/adapter", real)]
        fake.route("HEAD", "/manifests/", Reply(200, {"Content-Type": image.media_type}))
        pack = make_pack(tmp_path / "p", fake.host, "mp/adapter", forged)
        report = verify_pack(pack, options=OPTIONS)
    assert codes(report) == ["digest_mismatch"]
    assert forged in report.problems[0].message


def push_fake(fake: FakeRegistry, image: object) -> str:
    from mpkit.image.types import Image

    assert isinstance(image, Image)
    for blob in image.blobs():
        with blob.open() as stream:
            fake.blobs[blob.digest] = stream.read()
    fake.manifests[("mp/adapter", image.digest)] = (image.manifest_bytes, image.media_type)
    return image.digest


# -- unsafe packs ----------------------------------------------------------------------------
def test_path_traversal_entry_is_refused(tmp_path: Path, mpkit: Mpkit) -> None:
    pack = write_pack(tmp_path / "evil.pak", tmp_path, extra={"../escape.txt": b"owned\n"})
    result = mpkit.run("verify", "--json", str(pack))
    assert result.returncode == 1
    problems = result.json()["problems"]
    assert [p["code"] for p in problems] == ["unsafe_pack"]
    assert "escapes" in problems[0]["message"]
    assert not (tmp_path / "escape.txt").exists()


def test_zip_bomb_is_refused(tmp_path: Path) -> None:
    pack = write_pack(tmp_path / "bomb.pak", tmp_path, extra={"content/big.bin": bytes(8 << 20)})
    report = verify_pack(pack, options=OPTIONS)
    assert codes(report) == ["unsafe_pack"]
    assert "zip bomb" in report.problems[0].message

    lying = tmp_path / "lying.pak"
    small = write_pack(tmp_path / "small.pak", tmp_path, extra={"content/x.bin": b"x" * 4096})
    lying.write_bytes(declare_size(small.read_bytes(), "content/x.bin", 1024))
    report = verify_pack(lying, options=OPTIONS)
    assert codes(report) == ["unsafe_pack"]


@pytest.mark.parametrize(
    ("manifest", "problem"),
    [
        (b'{"a": ' + b"[" * 100_000, "nesting deeper than 100 levels: line 1 column 106"),
        (b'{"a": ' + b"9" * 5000 + b"}", "an integer with 5000 digits"),
    ],
    ids=["deep", "long-integer"],
)
def test_hostile_pack_manifest_is_named(
    tmp_path: Path, mpkit: Mpkit, manifest: bytes, problem: str
) -> None:
    pack = write_pack(tmp_path / "deep.pak", tmp_path, manifest=manifest)
    result = mpkit.run("verify", str(pack))
    assert result.returncode == 1, result.output
    assert "internal error" not in result.output and "Traceback" not in result.output
    assert f"manifest.txt in {pack} is not valid JSON" in result.stderr
    assert problem in result.stderr


def test_not_a_pack(tmp_path: Path, mpkit: Mpkit) -> None:
    (tmp_path / "x.pak").write_bytes(b"not a zip")
    result = mpkit.run("verify", str(tmp_path / "x.pak"))
    assert result.returncode == 1
    assert "not a readable zip" in result.stderr
    result = mpkit.run("verify", str(tmp_path / "missing.pak"))
    assert result.returncode == 1
    assert "cannot read the pack" in result.stderr


# -- platform -------------------------------------------------------------------------------
def test_wrong_platform(registry_open: RegistryServer, tmp_path: Path) -> None:
    pushed = push(registry_open, "mp/arm", small_image(tmp_path, architecture="arm64"))
    report = verify_pack(pack_for(tmp_path, pushed), options=OPTIONS)
    assert codes(report) == ["wrong_platform"]
    assert "linux/arm64" in report.problems[0].message


def test_index_with_amd64_verifies_and_without_fails(
    registry_open: RegistryServer, tmp_path: Path
) -> None:
    both = push_index(registry_open, "mp/multi", tmp_path, ("linux/arm64/v8", "linux/amd64"))
    report = verify_pack(pack_for(tmp_path, both), options=OPTIONS)
    assert report.ok, report.problems
    assert report.index_digest == both.digest
    assert report.image_digest != both.digest
    assert report.platform == "linux/amd64"

    arm_only = push_index(registry_open, "mp/arm-only", tmp_path, ("linux/arm64/v8",))
    report = verify_pack(pack_for(tmp_path, arm_only), options=OPTIONS)
    assert codes(report) == ["wrong_platform"]
    assert "linux/arm64/v8" in report.problems[0].message


# -- connection problems ------------------------------------------------------------------
def test_unreachable_registry(tmp_path: Path, mpkit: Mpkit) -> None:
    host = f"127.0.0.1:{free_port()}"
    pack = make_pack(tmp_path / "p", host, "mp/adapter", "sha256:" + "ab" * 32)
    result = mpkit.run("verify", "--retries", "1", "--json", str(pack))
    assert result.returncode == 1
    assert [p["code"] for p in result.json()["problems"]] == ["registry_unreachable"]


def test_untrusted_tls_certificate(
    registry_tls: RegistryServer, tmp_path: Path, mpkit: Mpkit
) -> None:
    pushed = push(registry_tls, "mp/tls", small_image(tmp_path))
    pack = pack_for(tmp_path, pushed)
    result = mpkit.run("verify", str(pack))
    assert result.returncode == 1
    assert "not trusted" in result.stderr
    assert "every cloud proxy must trust" in result.stderr
    assert registry_tls.ca_path is not None
    mpkit.ok("verify", "--ca-cert", str(registry_tls.ca_path), str(pack))


def test_pack_without_registry_needs_default_registry(
    registry_open: RegistryServer, tmp_path: Path, mpkit: Mpkit
) -> None:
    pushed = push(registry_open, "mp/default", small_image(tmp_path))
    pack = make_pack(tmp_path / "p", None, pushed.path, pushed.digest)
    result = mpkit.run("verify", str(pack))
    assert result.returncode == 1
    assert "--default-registry" in result.stderr
    mpkit.ok("verify", "--default-registry", registry_open.host, str(pack))


# -- Docker Hub's allowance -------------------------------------------------------------
def test_rate_limit_comes_from_head_requests(tmp_path: Path, mpkit: Mpkit) -> None:
    headers = {"RateLimit-Limit": "100;w=21600", "RateLimit-Remaining": "76;w=21600",
               "Docker-RateLimit-Source": "203.0.113.7"}  # fmt: skip
    with FakeRegistry() as fake:
        image = small_image(tmp_path)
        digest = push_fake(fake, image)

        def head(request: object) -> Reply:
            return Reply(200, {"Content-Type": image.media_type,
                               "Docker-Content-Digest": digest, **headers})  # fmt: skip

        fake.route("HEAD", "/manifests/", head)
        pack = make_pack(tmp_path / "p", fake.host, "mp/adapter", digest)
        result = mpkit.run("verify", "--json", str(pack))
        text = mpkit.run("verify", str(pack)).stdout
        manifest_gets = fake.count("GET", "/manifests/")
    assert result.returncode == 0, result.output
    assert result.json()["rate_limit"] == {
        "limit": 100, "remaining": 76, "window_seconds": 21600, "source": "203.0.113.7"
    }  # fmt: skip
    assert "76 of 100 anonymous pulls left per 6 h" in text
    assert manifest_gets == 2  # one GET per verify: the count comes from HEAD


def test_rate_limit_parsing() -> None:
    assert RateLimit.from_headers({}) is None
    limit = RateLimit.from_headers({"ratelimit-remaining": "0;w=21600"})
    assert limit == RateLimit(limit=None, remaining=0, window_seconds=21600)
    assert limit is not None and limit.describe() == "0 of ? anonymous pulls left per 6 h"


def test_report_summary_and_dict(registry_open: RegistryServer, tmp_path: Path) -> None:
    pushed = push(registry_open, "mp/summary", small_image(tmp_path))
    report = verify_pack(pack_for(tmp_path, pushed), options=OPTIONS)
    assert report.summary().startswith(f"verify ok: {pushed.pinned} pulls anonymously")
    assert json.loads(json.dumps(report.to_dict()))["ok"] is True
    registry_open.blob_path(report.blobs[0].digest).unlink()
    report = verify_pack(report.pack, options=OPTIONS)
    assert report.summary().startswith("verify failed: the config blob")


@pytest.mark.parametrize("argv", [["verify"], ["verify", "a.pak", "--default-registry", "a b"]])
def test_usage_errors(mpkit: Mpkit, argv: list[str]) -> None:
    assert mpkit.run(*argv).returncode == 2


def test_credentials_without_with_credentials_is_a_usage_error(
    tmp_path: Path, mpkit: Mpkit
) -> None:
    result = mpkit.run("verify", "-u", "alice", str(tmp_path / "x.pak"))
    assert result.returncode == 2
    assert "--with-credentials" in result.stderr
