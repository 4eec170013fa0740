"""The check of an image just pushed (``PushedImageCheck``, started before the pack is
written, then ``verify_pack(..., pushed=check)``): one round of HEAD requests at once (the
manifest and every blob), no download, and still every problem a cloud proxy would meet.
And the standalone check's requests: the config is fetched with the layers' HEADs."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from pathlib import Path

from mpkit.image.types import Image
from mpkit.reference import parse_reference
from mpkit.registry import ClientOptions
from mpkit.verify import PushedImageCheck, verify_pack
from mpkit.verify.report import VerifyReport
from tests.fixtures.faultproxy import FaultProxy
from tests.fixtures.registry import RegistryServer
from tests.verify.conftest import Pushed, alice, pack_for, push, small_image

MakeFaultProxy = Callable[..., FaultProxy]
OPTIONS = ClientOptions()


def through(proxy: FaultProxy, pushed: Pushed) -> Pushed:
    return Pushed(proxy.host, pushed.path, pushed.digest, pushed.image)


def codes(report: object) -> list[str]:
    return [p.code for p in report.problems]  # type: ignore[attr-defined]


def verified(tmp_path: Path, pushed: Pushed, image: Image) -> VerifyReport:
    """The build's way: the check starts right after the push, the pack comes later."""
    check = PushedImageCheck(parse_reference(pushed.pinned), image, options=OPTIONS)
    return verify_pack(pack_for(tmp_path, pushed), options=OPTIONS, pushed=check)


def test_after_a_push_only_heads_are_asked_all_at_once(
    registry_open: RegistryServer, make_fault_proxy: MakeFaultProxy, tmp_path: Path
) -> None:
    image = small_image(tmp_path)
    pushed = push(registry_open, f"mp/pushed-{uuid.uuid4().hex[:6]}", image)
    proxy = make_fault_proxy(registry_open)
    # Every HEAD waits until all of them have arrived: they can only pass if sent at once.
    heads = 1 + len(image.blobs())
    together = threading.Barrier(heads, timeout=30)
    waited: list[int] = []

    original = proxy.take_fault

    def take_fault(method: str, target: str):  # type: ignore[no-untyped-def]
        if method == "HEAD":
            waited.append(together.wait())
        return original(method, target)

    proxy.take_fault = take_fault  # type: ignore[method-assign]
    report = verified(tmp_path, through(proxy, pushed), image)
    assert report.ok, report.problems
    assert sorted(waited) == list(range(heads))
    assert [r.method for r in proxy.seen if r.target != "/v2/"] == ["HEAD"] * heads
    assert report.platform == "linux/amd64"
    assert [b.present for b in report.blobs] == [True] * len(image.blobs())
    assert report.total_size == image.size
    assert report.image_digest == pushed.digest


def test_after_a_push_a_missing_blob_and_a_private_repository_are_found(
    registry_open: RegistryServer, registry_token: RegistryServer, tmp_path: Path
) -> None:
    image = small_image(tmp_path)
    pushed = push(registry_open, f"mp/lost-{uuid.uuid4().hex[:6]}", image)
    lost = image.layers[1].digest
    registry_open.blob_path(lost).unlink()
    report = verified(tmp_path, pushed, image)
    assert [(p.code, p.digest) for p in report.problems] == [("blob_missing", lost)]

    private = push(registry_token, "private/mp/pushed", image, credential=alice(registry_token))
    report = verified(tmp_path, private, image)
    assert codes(report) == ["anonymous_pull_denied"]
    assert f"mpkit preload {report.pack}" in (report.problems[0].hint or "")


def test_another_image_than_the_one_pushed_gets_the_full_check(
    registry_open: RegistryServer, make_fault_proxy: MakeFaultProxy, tmp_path: Path
) -> None:
    image = small_image(tmp_path)
    pushed = push(registry_open, f"mp/other-{uuid.uuid4().hex[:6]}", image)
    proxy = make_fault_proxy(registry_open)
    other = small_image(tmp_path)
    elsewhere = PushedImageCheck(parse_reference(f"{pushed.registry}/mp/other@{other.digest}"),
                                 other, options=OPTIONS)  # fmt: skip
    report = verify_pack(pack_for(tmp_path, through(proxy, pushed)), options=OPTIONS,
                         pushed=elsewhere)  # fmt: skip
    assert report.ok, report.problems
    config = image.config.descriptor.digest
    assert proxy.count("GET", f"/manifests/{pushed.digest}") == 1
    assert proxy.count("GET", f"/blobs/{config}") == 1
    assert proxy.count("HEAD", f"/blobs/{config}") == 0  # its GET says it is there
    assert proxy.count("HEAD", "/blobs/") == len(image.layers)
