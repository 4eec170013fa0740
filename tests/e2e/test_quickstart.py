"""README's quick start, run exactly as written, offline.

The only differences from a user's machine: the SDK base comes from the test registry
through the documented mirror setting, and `localhost:5000` is served on a free port
(an endpoint mapping, so the test never claims a fixed port). Nothing else is set up:
no registry runs at localhost:5000 until `mpkit build` starts its own.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import zipfile
from pathlib import Path

from tests.e2e.conftest import Mpkit
from tests.fixtures.baseimage import SdkBase
from tests.fixtures.procs import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]


def quick_start_commands() -> list[list[str]]:
    text = (REPO_ROOT / "README.md").read_text()
    match = re.search(r"<!-- quick-start -->\n```sh\n(.*?)```", text, re.DOTALL)
    assert match, "README.md has no quick-start block"
    return [shlex.split(line) for line in match.group(1).splitlines() if line.strip()]


def test_readme_quick_start_builds_a_verified_pack_offline(
    mpkit: Mpkit, sdk_base: SdkBase, tmp_path: Path
) -> None:
    install, build = quick_start_commands()
    # The install step is what .ci/install-deps already ran (editable, same tree).
    assert install == ["pip", "install", "."]
    assert build[:2] == ["mpkit", "build"]

    work = tmp_path / "checkout"
    shutil.copytree(REPO_ROOT / "examples", work / "examples")
    port = free_port()
    registry_root = tmp_path / "builtin-registry"
    env = {
        "MPKIT_MIRRORS": f"projects.packages.broadcom.com={sdk_base.registry.host}",
        "MPKIT_REGISTRY_ENDPOINTS": f"localhost:5000=127.0.0.1:{port}",
        "MPKIT_REGISTRY_ROOT": str(registry_root),
    }
    try:
        result = mpkit.run(*build[1:], env=env, cwd=work, timeout=600)
        assert result.returncode == 0, result.output
        assert "started its built-in registry" in result.stderr
        assert "mpkit registry stop" in result.stderr
        assert "verify ok" in result.stderr

        pack = work / "examples/hello-adapter/build/HelloAdapter_1.0.0.pak"
        with zipfile.ZipFile(pack) as archive:
            manifest = json.loads(archive.read("manifest.txt"))
        image = manifest["container_image"]
        assert image["registry"] == "localhost:5000"
        assert image["repository"] == "/hello-adapter"
        assert image["digest"].startswith("sha256:")
        assert mpkit.run("registry", "status", env=env).returncode == 0
    finally:
        mpkit.run("registry", "stop", env=env)
    assert mpkit.run("registry", "status", env=env).returncode == 1
