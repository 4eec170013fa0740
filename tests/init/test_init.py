"""`mpkit init` / `mp-init`: flags, --no-ttl, validation and the interactive prompts."""

from __future__ import annotations

import configparser
import json
import sys
from pathlib import Path

import pexpect
import pytest

from mpkit.errors import UsageError
from mpkit.imagebuild.context import BuildContext
from mpkit.init import InitOptions, adapter_kind_problem, create_project
from mpkit.init.files import ADAPTER_LIBRARY, SDK_BASE_IMAGE
from mpkit.project.load import load_project
from tests.e2e.conftest import Mpkit, isolated_env

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32


@pytest.fixture
def cli(tmp_path: Path) -> Mpkit:
    return Mpkit(root=tmp_path / "cli", env=isolated_env(tmp_path / "cli"))


def test_a_new_project_has_every_file_of_an_sdk_project(tmp_path: Path) -> None:
    root = create_project(InitOptions(tmp_path / "p", "My Adapter", "MyAdapter", "Watches",
                                      "ACME"))  # fmt: skip
    project = load_project(root)
    assert project.manifest.adapter_kind == "MyAdapter"
    assert project.manifest.name == "iSDK_MyAdapter"
    assert project.manifest.eula_file == "eula.txt" and (root / "eula.txt").read_text().strip()
    assert project.config.container_repository is None
    assert project.config.default_memory_limit == 1024
    assert (root / "Dockerfile").read_text().splitlines()[3] == f"FROM {SDK_BASE_IMAGE}"
    commands = configparser.ConfigParser()
    commands.read(root / "commands.cfg")
    assert set(commands["Commands"]) == {"test", "collect", "adapter_definition", "endpoint_urls"}
    assert (root / "adapter_requirements.txt").read_text().splitlines()[0] == ADAPTER_LIBRARY
    adapter = (root / "app" / "adapter.py").read_text()
    assert 'ADAPTER_KIND = "MyAdapter"' in adapter and "{{" not in adapter
    compile(adapter, "adapter.py", "exec")
    assert (root / "conf" / "describeSchema.xsd").is_file()
    assert (root / "conf" / "images" / "AdapterKind" / ".gitkeep").is_file()
    assert (root / "content" / "dashboards" / ".gitkeep").is_file()
    properties = (root / "resources" / "resources.properties").read_text()
    assert "DISPLAY_NAME=My Adapter" in properties and "VENDOR=ACME" in properties
    assert "build/" in (root / ".gitignore").read_text()
    # The build context leaves out content/ and resources/, as an SDK project's does.
    context = BuildContext(root)
    assert context.is_excluded("content/dashboards/.gitkeep")
    assert not context.is_excluded("app/adapter.py")


def test_the_minimal_template_and_files_given(tmp_path: Path) -> None:
    eula, icon = tmp_path / "license.txt", tmp_path / "logo.png"
    eula.write_text("Use it well.\n")
    icon.write_bytes(PNG)
    root = create_project(InitOptions(tmp_path / "m", "Minimal", "Minimal_1", eula=eula,
                                      icon=icon, template="minimal"))  # fmt: skip
    manifest = json.loads((root / "manifest.txt").read_text())
    assert (manifest["eula_file"], manifest["pak_icon"]) == ("license.txt", "logo.png")
    assert (root / "logo.png").read_bytes() == PNG and not (root / "eula.txt").exists()
    assert "define_object_type" not in (root / "app" / "adapter.py").read_text().split("# Add")[0]
    load_project(root)


@pytest.mark.parametrize(
    ("key", "problem"),
    [("9Lives", "starts with a digit"), ("my-adapter", "'-'"), ("", "empty"),
     ("Ünï", "only letters, digits and '_'"), ("has space", "' '")],
)  # fmt: skip
def test_adapter_kind_keys_are_validated(tmp_path: Path, key: str, problem: str) -> None:
    assert problem in (adapter_kind_problem(key) or "")
    with pytest.raises(UsageError, match="not valid"):
        create_project(InitOptions(tmp_path / "x", "X", key))
    assert not (tmp_path / "x").exists()
    assert adapter_kind_problem("_Ok_9") is None


def test_refuses_a_non_empty_directory_and_a_non_png_icon(tmp_path: Path) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file").write_text("x")
    with pytest.raises(UsageError, match="not an empty directory"):
        create_project(InitOptions(tmp_path / "busy", "X", "X"))
    (tmp_path / "icon.png").write_text("not a png")
    with pytest.raises(UsageError, match="is not a PNG"):
        create_project(InitOptions(tmp_path / "new", "X", "X", icon=tmp_path / "icon.png"))
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_cli_with_flags_and_no_ttl(cli: Mpkit, tmp_path: Path) -> None:
    target = tmp_path / "flags"
    result = cli.ok("init", "--no-ttl", "--json", "-n", "Flag Adapter", "-k", "FlagAdapter",
                    "--vendor", "ACME", "--template", "minimal", str(target))  # fmt: skip
    assert result.json()["project"] == str(target)
    assert load_project(target).manifest.adapter_kind == "FlagAdapter"
    sdk_config = Path(cli.env["HOME"]) / ".vmware-aria-operations-integration-sdk" / "config.json"
    assert str(target) in json.loads(sdk_config.read_text())["projects"]


def test_cli_without_a_terminal_names_the_missing_flags(cli: Mpkit, tmp_path: Path) -> None:
    result = cli.run("init", "-n", "No Key", str(tmp_path / "nokey"))
    assert result.returncode == 2
    assert "--adapter-kind is required without a terminal" in result.stderr
    bad = cli.run("init", "--no-ttl", "-n", "Bad", "-k", "1bad", str(tmp_path / "bad"))
    assert bad.returncode == 2 and "starts with a digit" in bad.stderr


def test_mp_init_alias(cli: Mpkit, tmp_path: Path) -> None:
    from mpkit.cli.init import mp_init_main

    assert mp_init_main(["--no-ttl", "-n", "Alias", "-k", "Alias", str(tmp_path / "alias")]) == 0
    assert load_project(tmp_path / "alias").manifest.adapter_kind == "Alias"


def test_interactive_prompts(cli: Mpkit, tmp_path: Path) -> None:
    target = tmp_path / "asked"
    child = pexpect.spawn(sys.executable, ["-m", "mpkit", "init"], env=cli.env,
                          cwd=str(tmp_path), encoding="utf-8", timeout=30)  # fmt: skip
    try:
        child.expect("Display name: ")
        child.sendline("Asked Adapter")
        child.expect(r"Adapter kind key \[AskedAdapter\]: ")
        child.sendline("2bad")
        child.expect("starts with a digit")
        child.expect(r"Adapter kind key \[AskedAdapter\]: ")
        child.sendline("")
        child.expect(r"Description \[Monitors Asked Adapter\]: ")
        child.sendline("")
        child.expect("Vendor: ")
        child.sendline("ACME")
        child.expect(r"EULA file \(empty for none\): ")
        child.sendline("")
        child.expect(r"Icon PNG file \(empty for none\): ")
        child.sendline("")
        child.expect(r"Template \[1-2\]: ")
        child.sendline("1")
        child.expect(r"Project directory \[AskedAdapter\]: ")
        child.sendline(str(target))
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0, child.before
    project = load_project(target)
    assert project.manifest.adapter_kind == "AskedAdapter"
    assert "Monitors Asked Adapter" in (target / "resources" / "resources.properties").read_text()
    assert "define_object_type" in (target / "app" / "adapter.py").read_text()
