"""`mpkit build DIR…`: several packs in one run, one summary, a failure among them."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.conftest import Mpkit
from tests.e2e.sdkproject import PACK_NAME, flow_env, write_sdk_project
from tests.fixtures.baseimage import SdkBase
from tests.fixtures.registry import RegistryServer


def projects(root: Path, registry: RegistryServer, names: list[str]) -> list[Path]:
    made = []
    for name in names:
        made.append(write_sdk_project(
            root / name, config={"container_repository": f"{registry.host}/many/{name}"}
        ))  # fmt: skip
        adapter = root / name / "app" / "adapter.py"
        adapter.write_text(adapter.read_text() + f"\n# {name}\n")  # each its own image
    return made


def test_many_projects_one_summary_and_the_failure_counts(
    tmp_path: Path, registry_open: RegistryServer, sdk_base: SdkBase
) -> None:
    root = tmp_path / "packs"
    good = projects(root, registry_open, ["alpha", "beta", "gamma"])
    broken = root / "broken"
    broken.mkdir()
    (broken / "manifest.txt").write_text('{"name": "Broken", ')  # not JSON
    user = tmp_path / "user"
    mpkit = Mpkit(user, flow_env(user, base_registry_host=sdk_base.registry.host))

    result = mpkit.run("build", "packs/*", "--jobs", "2", cwd=tmp_path, timeout=900)
    assert result.returncode == 1, result.output
    assert "3 of 4 pack(s) built" in result.stdout
    table = result.stdout.splitlines()
    assert table[0].split()[:5] == ["PACK", "IMAGE", "DIGEST", "PUSHED", "TIME"]
    assert any(line.startswith("packs/broken") and "failed:" in line for line in table)
    assert f"FAILED {broken}" in result.stderr and "manifest.txt" in result.stderr
    for project in good:
        assert (project / "build" / PACK_NAME).is_file()
        assert f"built {project}" in result.stderr  # plain progress lines without a TTY

    again = mpkit.run("build", *(str(p) for p in good), "--json", timeout=900)
    assert again.returncode == 0, again.output
    data = json.loads(again.stdout)
    assert data["ok"] is True
    assert [r["project"] for r in data["results"]] == [str(p) for p in good]
    for entry in data["results"]:
        assert entry["ok"] and entry["bytes_pushed"] == 0  # unchanged: nothing to push
        assert entry["digest"].startswith("sha256:") and entry["pack"].endswith(PACK_NAME)


def test_one_repository_for_many_projects_is_a_usage_error(
    tmp_path: Path, mpkit: Mpkit, registry_open: RegistryServer
) -> None:
    made = projects(tmp_path, registry_open, ["one", "two"])
    result = mpkit.run("build", *(str(p) for p in made), "-r", f"{registry_open.host}/x/y")
    assert result.returncode == 2 and "cannot apply to several projects" in result.stderr
    nothing = mpkit.run("build", str(tmp_path / "nope-*"))
    assert nothing.returncode == 2 and "matches no project directory" in nothing.stderr
    not_a_project = mpkit.run("build", str(made[0]), str(tmp_path))
    assert not_a_project.returncode == 2 and "is not a project directory" in not_a_project.stderr
