"""How often a build asks the base image's registry.

A tag resolved less than ``base_recheck_seconds`` ago is reused without the registry, as
``podman build`` reuses a local base; ``--pull`` or a window of 0 asks again and picks up a
moved tag; a digest-pinned base needs no registry once cached. Real CNCF registry, real
CLI; the bases are tiny images pushed by mpkit itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.e2e.conftest import Mpkit, isolated_env
from tests.fixtures.registry import RegistryServer
from tests.image.builders import make_oci_layout

MakeRegistry = Callable[..., RegistryServer]
TIMEOUT = 120.0


def _cli(tmp_path: Path, **extra: str) -> Mpkit:
    root = tmp_path / "user"
    return Mpkit(root=root, env=isolated_env(root, extra))


def _publish(cli: Mpkit, layout: Path, text: str, ref: str) -> str:
    make_oci_layout(layout, "v1", [{"etc/base-release": text.encode()}])
    pushed = cli.ok("image", "push", f"oci:{layout}:v1", ref, "--json")
    digest: str = pushed.json()["digest"]
    return digest


def _project(root: Path, base: str) -> Path:
    root.mkdir(parents=True)
    (root / "Dockerfile").write_text(f"FROM {base}\nCOPY app.txt /app/app.txt\n")
    (root / "app.txt").write_text("the adapter\n")
    return root


def _build(cli: Mpkit, project: Path, *args: str, **env: str) -> Any:
    result = cli.run(
        "image", "build", str(project), "--output", f"oci:{project}/../out", "--json", *args,
        env=env, timeout=TIMEOUT,
    )  # fmt: skip
    assert result.returncode == 0, result.output
    return json.loads(result.stdout)


def test_a_recent_tag_is_reused_and_pull_or_a_zero_window_sees_it_move(
    tmp_path: Path, make_registry: MakeRegistry
) -> None:
    registry = make_registry()
    cli = _cli(tmp_path)
    ref = f"{registry.host}/bases/tiny:v1"
    first_base = _publish(cli, tmp_path / "base-1", "one\n", ref)
    project = _project(tmp_path / "project", ref)

    first = _build(cli, project)
    assert first["base"]["digest"] == first_base
    assert first["base"]["source"] == ref

    moved = _publish(cli, tmp_path / "base-2", "two\n", ref)
    assert moved != first_base
    within = _build(cli, project)
    assert within["base"]["digest"] == first_base  # not asked: checked seconds ago
    assert within["base"]["source"].startswith(f"{ref}, checked ")
    assert within["digest"] == first["digest"]

    pulled = _build(cli, project, "--pull")
    assert pulled["base"]["digest"] == moved and pulled["base"]["source"] == ref

    third = _publish(cli, tmp_path / "base-3", "three\n", ref)
    always = _build(cli, project, MPKIT_BASE_RECHECK="0")
    assert always["base"]["digest"] == third


def test_a_digest_pinned_base_needs_no_registry_once_cached(
    tmp_path: Path, make_registry: MakeRegistry
) -> None:
    registry = make_registry()
    cli = _cli(tmp_path)
    ref = f"{registry.host}/bases/pinned:v1"
    digest = _publish(cli, tmp_path / "base", "pinned\n", ref)
    project = _project(tmp_path / "project", f"{registry.host}/bases/pinned@{digest}")
    first = _build(cli, project)
    registry.stop()
    again = cli.run(
        "image", "build", str(project), "--output", f"oci:{tmp_path}/again", "--json",
        timeout=TIMEOUT,
    )  # fmt: skip
    assert again.returncode == 0, again.output
    assert json.loads(again.stdout)["digest"] == first["digest"]
    assert json.loads(again.stdout)["base"]["source"] == "cache (pinned by digest)"
    assert "warning" not in again.stderr


def test_bad_recheck_settings_are_clear(tmp_path: Path) -> None:
    cli = _cli(tmp_path)
    project = _project(tmp_path / "project", "127.0.0.1:9/bases/none:v1")
    for value in ("soon", "-5"):
        bad = cli.run("image", "build", str(project), "--output", f"oci:{tmp_path}/x",
                      env={"MPKIT_BASE_RECHECK": value})  # fmt: skip
        assert bad.returncode == 1, bad.output
        assert "MPKIT_BASE_RECHECK" in bad.stderr and "Traceback" not in bad.output
    settings = tmp_path / "settings.json"
    settings.write_text('{"base_recheck_seconds": "often"}')
    bad = cli.run("image", "build", str(project), "--output", f"oci:{tmp_path}/x",
                  env={"MPKIT_CONFIG": str(settings)})  # fmt: skip
    assert bad.returncode == 1
    assert "base_recheck_seconds must be a number" in bad.stderr
