"""Each `mpkit` command lives in the cli module named after it, and nowhere else."""

from __future__ import annotations

import argparse
import pkgutil
from types import ModuleType

import pytest

import mpkit.cli
from mpkit.cli import COMMANDS, build_parser
from mpkit.cli.common import registry_arg
from mpkit.errors import UsageError

HELPERS = {"common", "output", "prompts"}  # shared by the commands; none is a command


def short_name(module: ModuleType) -> str:
    return module.__name__.rpartition(".")[2]


def top_level_commands() -> list[str]:
    parser = build_parser()
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return list(actions[0].choices)


def test_every_command_has_the_module_named_after_it() -> None:
    assert [short_name(module) for module in COMMANDS] == top_level_commands()


def test_every_cli_module_is_a_command_or_a_shared_helper() -> None:
    found = {info.name for info in pkgutil.iter_modules(mpkit.cli.__path__)}
    assert found - HELPERS == set(top_level_commands())


@pytest.mark.parametrize("module", COMMANDS, ids=short_name)
def test_a_command_module_registers_its_own_command_only(module: ModuleType) -> None:
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers()
    module.register(commands)
    assert list(commands.choices) == [short_name(module)]


def test_image_build_is_a_verb_of_image() -> None:
    args = build_parser().parse_args(["image", "build", "proj", "--output", "oci:out"])
    assert args.handler.__module__ == "mpkit.cli.image"


@pytest.mark.parametrize(
    ("given", "registry"),
    [
        ("harbor.example.com", "harbor.example.com"),
        ("https://harbor.example.com:8443/v2/", "harbor.example.com:8443"),
        ("https://index.docker.io/v1/", "docker.io"),
    ],
)
def test_a_registry_argument_takes_docker_s_forms(given: str, registry: str) -> None:
    assert registry_arg(given) == registry


def test_a_bad_registry_argument_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="registry 'bad host'"):
        registry_arg("bad host")
