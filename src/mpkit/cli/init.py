"""`mpkit init` and the SDK-style `mp-init`: create a new Python adapter project."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from mpkit.cli.common import add_output_options
from mpkit.cli.output import Output
from mpkit.cli.prompts import TerminalPrompter
from mpkit.errors import UsageError
from mpkit.init import TEMPLATE_NAMES, InitOptions, adapter_kind_problem, create_project
from mpkit.project.globalconfig import load_global_config, remember_project

TEMPLATE_HELP = {
    "sample": "a working adapter that collects load, memory, disk and uptime of the machine "
    "it runs on",
    "minimal": "the smallest adapter that builds; fill in the definition and collection",
}


def add_init_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", nargs="?", type=Path, metavar="PATH",
                        help="directory to create (default: ./ADAPTER_KIND)")  # fmt: skip
    parser.add_argument("-n", "--display-name", metavar="NAME",
                        help="the pack's name in Aria Operations")  # fmt: skip
    parser.add_argument("-k", "--adapter-kind", metavar="KEY",
                        help="adapter kind key: letters, digits and '_', not starting with a "
                        "digit (it cannot change once the pack is installed)")  # fmt: skip
    parser.add_argument("-d", "--description", help="what the pack monitors")
    parser.add_argument("--vendor", help="who publishes the pack")
    parser.add_argument("--eula", type=Path, metavar="FILE", help="a EULA text file to ship")
    parser.add_argument("--icon", type=Path, metavar="FILE", help="a PNG icon for the pack")
    parser.add_argument("-t", "--template", choices=TEMPLATE_NAMES,
                        help="; ".join(f"{k}: {v}" for k, v in TEMPLATE_HELP.items()))  # fmt: skip
    parser.add_argument("--no-ttl", action="store_true",
                        help="never prompt: take every value from the flags")  # fmt: skip
    add_output_options(parser)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    init = subparsers.add_parser(
        "init",
        help="create a new Python adapter project (mp-init)",
        description="Create a management-pack project with a Python adapter that 'mpkit build' "
        "builds as it is (set the registry in config.json or pass -r).",
    )
    add_init_arguments(init)
    init.set_defaults(handler=cmd_init)


def cmd_init(args: argparse.Namespace, out: Output) -> int:
    prompter = TerminalPrompter(allowed=not args.no_ttl and not out.json_mode)
    options = _options(args, prompter)
    root = create_project(options)
    remember_project(load_global_config(), root, create=True)  # as the SDK's mp-init does
    text = "\n".join([
        f"Created {root} ({options.template} template, adapter kind {options.adapter_kind}).",
        "Next: set container_repository in config.json (or pass -r REPO), then run",
        f"  mpkit build {root}",
    ])  # fmt: skip
    out.result(
        {"project": str(root), "adapter_kind": options.adapter_kind,
         "display_name": options.display_name, "template": options.template},
        text,
    )  # fmt: skip
    return 0


def _options(args: argparse.Namespace, prompter: TerminalPrompter) -> InitOptions:
    ask = prompter.interactive
    display_name = args.display_name
    if display_name is None and ask:
        display_name = _ask_until(prompter, "Display name", None, _display_problem)
    kind = args.adapter_kind
    if kind is None and ask:
        letters = "".join(c for c in (display_name or "") if c.isascii() and c.isalnum())
        suggestion = letters.lstrip("0123456789") or None
        kind = _ask_until(prompter, "Adapter kind key", suggestion, adapter_kind_problem)
    missing = [flag for flag, value in (("--display-name", display_name),
                                        ("--adapter-kind", kind)) if not value]  # fmt: skip
    if missing:
        raise UsageError(
            f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} required without a "
            "terminal (or with --no-ttl)",
            hint="e.g. mpkit init --no-ttl --display-name 'My Adapter' --adapter-kind MyAdapter "
            "my-adapter",
        )
    assert display_name is not None and kind is not None
    description, vendor = args.description, args.vendor
    if description is None and ask:
        description = prompter.ask("Description", f"Monitors {display_name}")
    if vendor is None and ask:
        vendor = prompter.ask("Vendor", "")
    eula, icon, template = args.eula, args.icon, args.template
    if ask and eula is None:
        eula = _optional_path(prompter.ask("EULA file (empty for none)", ""))
    if ask and icon is None:
        icon = _optional_path(prompter.ask("Icon PNG file (empty for none)", ""))
    if template is None and ask:
        choice = prompter.choose(
            "Template", [f"{name}: {TEMPLATE_HELP[name]}" for name in TEMPLATE_NAMES]
        )
        template = TEMPLATE_NAMES[choice]
    path = args.path
    if path is None and ask:
        path = Path(prompter.ask("Project directory", kind))
    return InitOptions(
        path=path or Path(kind),
        display_name=display_name,
        adapter_kind=kind,
        description=description or "",
        vendor=vendor or "",
        eula=eula,
        icon=icon,
        template=template or "sample",
    )


def _ask_until(
    prompter: TerminalPrompter,
    question: str,
    default: str | None,
    problem: Callable[[str], str | None],
) -> str:
    while True:
        answer = prompter.ask(question, default)
        reason = problem(answer)
        if not reason:
            return answer
        sys.stderr.write(f"  {answer!r} cannot be used: {reason}\n")


def _display_problem(name: str) -> str | None:
    return None if name.strip() else "it is empty"


def _optional_path(text: str) -> Path | None:
    return Path(text).expanduser() if text.strip() else None


def mp_init_main(argv: Sequence[str] | None = None) -> int:
    """The VMware SDK's `mp-init`, run by mpkit."""
    from mpkit.cli import run_handler

    parser = argparse.ArgumentParser(
        prog="mp-init",
        description="Create a management-pack project with a Python adapter (VMware SDK "
        "compatible; powered by mpkit).",
    )
    add_init_arguments(parser)
    parser.set_defaults(handler=cmd_init)
    return run_handler(parser, argv)


def mp_init() -> None:
    sys.exit(mp_init_main())
