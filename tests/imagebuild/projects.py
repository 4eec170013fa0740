"""Generate SDK-style management-pack projects for build tests.

``make_sdk_project`` writes what ``mp-init`` would give an adapter developer, minus the
pack content: a Dockerfile as the SDK writes it, ``commands.cfg``, the requirements
file and ``app/adapter.py``. The adapter imports every requirement and writes a JSON
report to the output file it is given, so a test can prove from inside a container that
the dependencies were installed for the image's Python and which user ran it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from tests.fixtures.files import write_files

SDK_BASE = (
    "projects.packages.broadcom.com/vmware_aria_operations_integration_sdk/"
    "base-adapter:python-1.0.0"
)
# The SDK's Dockerfile template; COPY/RUN are lines 2-5 (tests name them by number).
SDK_DOCKERFILE = f"""\
FROM {SDK_BASE}
COPY commands.cfg .
COPY adapter_requirements.txt .
RUN pip3 install -r adapter_requirements.txt --upgrade
COPY app app
"""
PIP_LINE = 4  # the RUN pip3 install line of SDK_DOCKERFILE
PURE_REQUIREMENT = "six==1.16.0"
COMPILED_REQUIREMENT = "pyyaml==6.0.2"  # manylinux wheel with a C extension (_yaml)
DEFAULT_REQUIREMENTS = (PURE_REQUIREMENT, COMPILED_REQUIREMENT)
PYTHON = "/usr/local/bin/python"
COMMANDS = ("test", "collect", "adapter_definition", "endpoint_urls")
# Distribution name -> the module it provides, where they differ.
MODULE_NAMES = {"pyyaml": "yaml", "beautifulsoup4": "bs4", "pillow": "PIL"}
GREETING_LINE = 'GREETING = "hello from the adapter"'  # app-only changes edit this line

ADAPTER_TEMPLATE = '''\
"""Test adapter: imports its requirements and reports on them (SDK protocol: the last
two arguments are the input and the output file)."""

import importlib
import json
import os
import pwd
import sys

MODULES = {modules}
{greeting}


def main() -> None:
    command, out_path = sys.argv[1], sys.argv[-1]
    report = {{
        "command": command,
        "greeting": GREETING,
        "uid": os.getuid(),
        "user": pwd.getpwuid(os.getuid()).pw_name,
        "cwd": os.getcwd(),
        "python": sys.version.split()[0],
        "modules": {{}},
    }}
    for name in MODULES:
        module = importlib.import_module(name)
        report["modules"][name] = {{
            "file": module.__file__,
            "version": getattr(module, "__version__", None),
        }}
    if "yaml" in MODULES:
        import yaml

        report["libyaml"] = bool(yaml.__with_libyaml__)  # the compiled extension loaded
    with open(out_path, "w") as out:
        json.dump(report, out)


if __name__ == "__main__":
    main()
'''


def module_name(requirement: str) -> str:
    """The import name of a requirement line ("pyyaml==6.0.2" -> "yaml")."""
    match = re.match(r"[A-Za-z0-9._-]+", requirement.strip())
    if match is None:
        raise ValueError(f"no distribution name in {requirement!r}")
    name = match[0].lower().replace("-", "_").replace(".", "_")
    return MODULE_NAMES.get(name, name)


def adapter_source(requirements: Sequence[str], *, greeting: str = GREETING_LINE) -> str:
    modules = [module_name(r) for r in requirements if r.strip() and not r.startswith("#")]
    return ADAPTER_TEMPLATE.format(modules=json.dumps(modules), greeting=greeting)


def commands_cfg(python: str = PYTHON) -> str:
    lines = ["[Commands]"]
    lines += [f"{command}={python} app/adapter.py {command}" for command in COMMANDS]
    return "\n".join(lines) + "\n"


def manifest_txt(name: str = "TestAdapter") -> str:
    manifest = {
        "display_name": name,
        "name": f"iSDK_{name}",
        "description": "build test project",
        "version": "1.0.0",
        "vcops_minimum_version": "8.10.0",
        "adapter_kinds": [name],
        "adapters": ["adapter.zip"],
    }
    return json.dumps(manifest, indent=4) + "\n"


def make_sdk_project(
    directory: Path,
    *,
    requirements: Sequence[str] = DEFAULT_REQUIREMENTS,
    app_code: str | None = None,
    dockerfile: str | None = None,
    extra_files: Mapping[str, str | bytes] | None = None,
) -> Path:
    """Write an SDK-style project into *directory* (created) and return it.

    *app_code* replaces ``app/adapter.py`` (default: :func:`adapter_source`), *dockerfile*
    the SDK Dockerfile; *extra_files* maps project-relative paths to contents and is
    written last, so it may also replace any generated file.
    """
    files: dict[str, str | bytes] = {
        "Dockerfile": SDK_DOCKERFILE if dockerfile is None else dockerfile,
        "commands.cfg": commands_cfg(),
        "adapter_requirements.txt": "".join(f"{r}\n" for r in requirements),
        "manifest.txt": manifest_txt(),
        "app/adapter.py": adapter_source(requirements) if app_code is None else app_code,
        "app/helpers/__init__.py": "",
        "app/helpers/constants.py": 'ADAPTER_KIND = "TestAdapter"\n',
    }
    files.update(extra_files or {})
    return write_files(directory, files)
