"""The containers-registries.conf mpkit writes for podman and buildah: what it says, and
what it keeps of the file the engine would have read."""

from __future__ import annotations

from pathlib import Path

import pytest

from mpkit.engine.registriesconf import (
    Mirror,
    RegistryRule,
    engine_registries_conf,
    read_registries_conf,
    registries_conf_text,
)

# tomllib (Python 3.11+) reads the files back; on 3.10 mpkit carries nothing over.
tomllib = pytest.importorskip("tomllib")

RULES = [
    RegistryRule("docker.io", "docker.io", mirrors=(Mirror("127.0.0.1:5000/hub", insecure=True),)),
    RegistryRule("lab.example:5000", "lab.example:5000", insecure=True),
]


def test_rules_become_registry_tables_and_short_names_mean_docker_hub() -> None:
    data = tomllib.loads(registries_conf_text(RULES, {}))
    assert data == {
        "unqualified-search-registries": ["docker.io"],
        "registry": [
            {"prefix": "docker.io", "location": "docker.io", "insecure": False,
             "mirror": [{"location": "127.0.0.1:5000/hub", "insecure": True}]},
            {"prefix": "lab.example:5000", "location": "lab.example:5000", "insecure": True},
        ],
    }  # fmt: skip


def test_the_users_file_is_kept_except_the_registries_mpkit_configures(tmp_path: Path) -> None:
    users = tmp_path / "registries.conf"
    users.write_text(
        'unqualified-search-registries = ["quay.io"]\n'
        'short-name-mode = "permissive"\n'
        "[aliases]\n"
        '"tools" = "quay.io/acme/tools"\n'
        "[[registry]]\n"
        'prefix = "docker.io"\n'
        'location = "corp-mirror.example/hub"\n'
        "[[registry]]\n"
        'location = "lab.example:5000"\n'
        "insecure = false\n"
        "[[registry]]\n"
        'prefix = "quay.io/acme"\n'
        'location = "quay.example/acme"\n'
        "blocked = false\n"
        "[[registry.mirror]]\n"
        'location = "quay-cache.example/acme"\n'
    )
    data = tomllib.loads(registries_conf_text(RULES, read_registries_conf(users)))
    assert data["unqualified-search-registries"] == ["quay.io"]
    assert data["short-name-mode"] == "permissive"
    assert data["aliases"] == {"tools": "quay.io/acme/tools"}
    kept, *ours = data["registry"]
    assert kept == {"prefix": "quay.io/acme", "location": "quay.example/acme", "blocked": False,
                    "mirror": [{"location": "quay-cache.example/acme"}]}  # fmt: skip
    assert [table["prefix"] for table in ours] == ["docker.io", "lab.example:5000"]


@pytest.mark.parametrize(
    "text",
    [
        "[registries.search]\nregistries = ['docker.io']\n",
        "not = [toml\n",
        b"\xff\xfe".decode("latin-1"),
    ],
)
def test_an_old_or_broken_file_is_not_carried_over(tmp_path: Path, text: str) -> None:
    users = tmp_path / "registries.conf"
    users.write_text(text, encoding="latin-1")
    assert read_registries_conf(users) == {}
    assert read_registries_conf(tmp_path / "missing.conf") == {}
    assert read_registries_conf(None) == {}


def test_the_file_the_engine_reads(tmp_path: Path) -> None:
    chosen = tmp_path / "chosen.conf"
    assert engine_registries_conf({"CONTAINERS_REGISTRIES_CONF": str(chosen)}) == chosen
    home = tmp_path / "home"
    user_file = home / ".config" / "containers" / "registries.conf"
    user_file.parent.mkdir(parents=True)
    user_file.write_text("")
    assert engine_registries_conf({"HOME": str(home)}) == user_file
    system = Path("/etc/containers/registries.conf")
    expected = system if system.is_file() else None
    assert engine_registries_conf({"HOME": str(tmp_path / "nobody")}) == expected


def test_values_are_written_as_toml_that_reads_back() -> None:
    carried = {"credential-helpers": ["secretservice"], "weird key": 'quote " and \\ and \n'}
    data = tomllib.loads(registries_conf_text([], carried))
    assert data["credential-helpers"] == ["secretservice"]
    assert data["weird key"] == 'quote " and \\ and \n'
    assert data["registry"] == []
