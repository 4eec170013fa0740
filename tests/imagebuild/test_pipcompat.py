"""Requirement lines that the image's pip accepts and uv rejects: installed as that pip
would install them, with warnings that name the project's file and line; refused the same
way when the image's pip (24.1 or later) refuses them too."""

from __future__ import annotations

from pathlib import Path

import pytest

from mpkit.errors import DependencyError
from mpkit.imagebuild.fsview import FileInfo, MemoryFilesystem
from mpkit.imagebuild.pydeps.pipcompat import PipReader, PipRules, logical_lines
from tests.imagebuild.test_pydeps import (
    WORKDIR,
    debian_base,
    install_offline,
    make_wheel,
    pip,
    slim_base,
    target_for,
)

OLD_PIP = PipRules("23.0.1")  # Debian bookworm's python3-pip: packaging 21.3
NEW_PIP = PipRules("25.0.1")  # what the SDK 1.3 base recipe upgrades to


def adapt(text: str, rules: PipRules = OLD_PIP) -> tuple[str, list[str]]:
    warnings: list[str] = []
    out = PipReader(rules, warnings.append).file(text.encode(), "adapter_requirements.txt")
    return out.decode(), warnings


def with_pip(fs: MemoryFilesystem, version: str) -> MemoryFilesystem:
    """*fs* with its pip dist-info replaced by one of *version*."""
    for site in ("/usr/lib/python3/dist-packages", "/usr/local/lib/python3.11/site-packages"):
        for name in fs.listdir(site):
            if name.startswith("pip-") and name.endswith(".dist-info"):
                del fs.entries[f"{site}/{name}"]
                fs.add(f"{site}/pip-{version}.dist-info", FileInfo("dir"))
    return fs


# -- reading lines as pip does --------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "legacy"),
    [("9.0.3", True), ("23.0.1", True), ("24.0", True), ("24.1b1", False), ("24.1", False),
     ("25.0.1", False), (None, True)],
)  # fmt: skip
def test_which_pip_reads_legacy_specifiers(version: str | None, legacy: bool) -> None:
    assert PipRules(version).legacy_specifiers is legacy


def test_the_pip_version_is_read_from_the_image() -> None:
    assert target_for(debian_base(), pip("pip3 install x")).pip_version == "23.0.1"
    assert target_for(slim_base(), pip("pip3 install x"), user="root").pip_version == "24.0"


def test_logical_lines_join_continuations_and_drop_comments_like_pip() -> None:
    text = "# top\nsix\\\n==1.16.0  # pinned\n\n  \nrequests #x\n#c \\\nlast"
    assert list(logical_lines(text)) == [(2, 3, "six==1.16.0"), (6, 6, "requests"), (8, 8, "last")]


@pytest.mark.parametrize(
    ("line", "faithful", "modern"),
    [
        ("requests>=2.32.*", "requests>=2.32.dev0", "requests>=2.32"),
        ("requests > 2.32.*", "requests >=2.32.dev0", "requests >=2.32"),
        ("requests<3.*", "requests<3.dev0", "requests<3"),
        ("requests<=2.32.*", "requests<2.32.dev0", "requests<2.32"),
        ("requests[socks]>=2.*,<3", "requests[socks]>=2.dev0,<3", "requests[socks]>=2,<3"),
        ("requests (>=2.32.*)", "requests (>=2.32.dev0)", "requests (>=2.32)"),
    ],
)
def test_a_legacy_wildcard_is_read_as_old_pip_did(line: str, faithful: str, modern: str) -> None:
    out, warnings = adapt(f"six\n{line}\n")
    assert out == f"six\n{faithful}\n"
    [warning] = warnings
    assert warning.startswith(f"adapter_requirements.txt:2: {line!r} is a legacy version spec")
    assert "pip 23.0.1 in the base image" in warning and f"Write {modern!r}" in warning


def test_markers_options_and_valid_wildcards_are_kept() -> None:
    text = (
        'requests>=2.32.* ; python_version >= "3.8" --hash=sha256:00\n'
        "six==1.16.*\npyyaml!=6.*\nname @ https://h/x-1.0.tar.gz\n-r more.txt\n"
    )
    out, warnings = adapt(text)
    first, *rest = out.splitlines()
    assert first == 'requests>=2.32.dev0 ; python_version >= "3.8" --hash=sha256:00'
    assert rest == text.splitlines()[1:]
    assert len(warnings) == 1


def test_a_stray_dash_line_is_skipped_as_pip_skips_it() -> None:
    text = "six\n- wavefront-sdk-python==1.8.12\r\n-\nrequests\n"
    out, warnings = adapt(text, NEW_PIP)  # every pip skips it
    assert out == "six\n\r\n\nrequests\n"
    assert warnings[0] == (
        "adapter_requirements.txt:2: '- wavefront-sdk-python==1.8.12' installs nothing: pip "
        "reads a line that starts with '- ' as options and ignores the words after the dash, "
        "and so does mpkit; write 'wavefront-sdk-python==1.8.12' to install it, or delete "
        "the line"
    )
    assert warnings[1].startswith("adapter_requirements.txt:3: '-' installs nothing")


def test_a_continued_line_keeps_the_line_numbers_of_the_rest() -> None:
    out, warnings = adapt("a>=1.*\\\n,<2\nb\n")
    assert out == "a>=1.dev0,<2\n\nb\n"
    assert warnings[0].startswith("adapter_requirements.txt:1:")


def test_nothing_to_adapt_keeps_the_bytes() -> None:
    data = b"\xff\xfesix==1.16.0\r\n"
    assert PipReader(OLD_PIP, lambda _m: None).file(data, "x") is data


def test_a_pip_without_legacy_specifiers_refuses_the_line_with_its_file_and_line() -> None:
    with pytest.raises(DependencyError) as caught:
        adapt("six\n\nrequests>=2.32.*\n", NEW_PIP)
    error = caught.value
    assert error.message.startswith("adapter_requirements.txt:3: 'requests>=2.32.*' is not a")
    assert "pip 25.0.1 in the base image rejects it too" in error.message
    assert error.hint == "write 'requests>=2.32'"


# -- through install_requirements: versions chosen, files and lines named ---------------------


@pytest.fixture
def releases(tmp_path: Path) -> Path:
    house = tmp_path / "releases"
    house.mkdir()
    for version in ("2.31.0", "2.32.0", "2.33.0rc1"):
        make_wheel(house, "demo-lib", version)
    make_wheel(house, "demo-dep", "1.0")
    return house


def test_old_pip_semantics_are_installed_pre_releases_included(
    context: Path, tmp_path: Path, releases: Path
) -> None:
    (context / "adapter_requirements.txt").write_text("demo-lib>=2.32.*\n")
    warnings: list[str] = []
    layer = install_offline(
        "pip3 install --no-index -r adapter_requirements.txt", debian_base(), context=context,
        cache=tmp_path / "cache", wheelhouse=releases, warn=warnings.append,
    )  # fmt: skip
    # pip 23.0.1's LegacySpecifier admits 2.33.0rc1, and pip takes the newest it admits.
    assert layer.installed == {"demo-lib": "2.33.0rc1"}
    assert [w.split(": ", 1)[0] for w in warnings] == ["adapter_requirements.txt:1"]
    below = context / "below.txt"
    below.write_text("demo-lib<2.32.*\n")
    older = install_offline(
        "pip3 install --no-index -r below.txt", debian_base(), context=context,
        cache=tmp_path / "cache", wheelhouse=releases,
    )  # fmt: skip
    assert older.installed == {"demo-lib": "2.31.0"}


def test_nested_and_copied_files_are_named_by_their_project_path(
    context: Path, tmp_path: Path, releases: Path
) -> None:
    (context / "adapter_requirements.txt").write_text("# deps\n-r extra/more.txt\ndemo-dep\n")
    (context / "extra").mkdir()
    (context / "extra" / "more.txt").write_text("\n- forgotten-pkg==1.0\ndemo-lib>=2.32.*\n")
    warnings: list[str] = []
    copied = {f"{WORKDIR}/adapter_requirements.txt": context / "adapter_requirements.txt"}
    layer = install_offline(
        "pip3 install --no-index -r adapter_requirements.txt 'demo-lib>=2.*'", debian_base(),
        context=context, cache=tmp_path / "cache", wheelhouse=releases,
        requirement_files=copied, warn=warnings.append, line_origin="Dockerfile:4",
    )  # fmt: skip
    assert layer.installed == {"demo-lib": "2.33.0rc1", "demo-dep": "1.0"}
    places = [w.split(": ", 1)[0] for w in warnings]
    assert places == ["Dockerfile:4", "extra/more.txt:2", "extra/more.txt:3"]
    assert not any(WORKDIR in w for w in warnings)  # never the path inside the image


def test_a_base_whose_pip_rejects_the_line_fails_before_uv_runs(
    context: Path, tmp_path: Path, releases: Path
) -> None:
    (context / "adapter_requirements.txt").write_text("demo-dep\ndemo-lib>=2.32.*\n")
    with pytest.raises(DependencyError) as caught:
        install_offline(
            "pip3 install --no-index -r adapter_requirements.txt",
            with_pip(debian_base(), "24.2"), context=context, cache=tmp_path / "cache",
            wheelhouse=releases,
        )  # fmt: skip
    assert caught.value.message.startswith("adapter_requirements.txt:2: 'demo-lib>=2.32.*'")
    assert "pip 24.2 in the base image rejects it too" in caught.value.message
    assert not (tmp_path / "cache" / "pydeps").exists() or not any(
        (tmp_path / "cache" / "pydeps").glob("*/complete")
    )


def test_a_standard_specifier_for_the_same_name_keeps_pre_releases_out(
    context: Path, tmp_path: Path, releases: Path
) -> None:
    """pip 23 filters by every specifier in turn: a PEP 440 one drops pre-releases again
    (checked with pip 23.2.1: 'demo-lib>=2.32.*' with 'demo-lib<3' takes 2.32.0)."""
    (context / "adapter_requirements.txt").write_text("demo-lib>=2.32.*\n")
    layer = install_offline(
        "pip3 install --no-index -r adapter_requirements.txt 'demo-lib<3'", debian_base(),
        context=context, cache=tmp_path / "cache", wheelhouse=releases,
    )  # fmt: skip
    assert layer.installed == {"demo-lib": "2.32.0"}
    reader = PipReader(OLD_PIP, lambda _m: None)
    reader.requirement("a>=1.*", "x")
    reader.requirement("b>=1.*,<2", "x")
    reader.requirement("c>=1.*", "x")
    reader.requirement("C<2", "x")
    reader.requirement("d", "x")
    assert reader.prerelease_names == ["a"]
