"""The files of a new SDK-style adapter project (manifest.txt, config.json, Dockerfile,
commands.cfg, app/, conf/ …), as text."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from mpkit.javaproperties import escape_value

SDK_BASE_IMAGE = (
    "projects.packages.broadcom.com/vmware_aria_operations_integration_sdk/"
    "base-adapter:python-1.0.0"
)
ADAPTER_LIBRARY = "vmware-aria-operations-integration-sdk-lib==1.1.0"
# The library imports requests without declaring it (the SDK's base image happens to have
# it, as a dependency of its server); naming it makes the adapter work on any base.
EXTRA_REQUIREMENTS = ("requests==2.32.3",)
PYTHON = "/usr/local/bin/python"  # the SDK base image's interpreter
COMMANDS = ("test", "collect", "adapter_definition", "endpoint_urls")
EULA_NAME = "eula.txt"
DEFAULT_EULA = "There is no EULA associated with this Management Pack.\n"
TEMPLATES = Path(__file__).with_name("templates")
CONTENT_DIRECTORIES = (
    "alertdefs", "customgroups", "dashboards", "files/reskndmetric", "files/solutionconfig",
    "files/topowidget", "files/txtwidget", "policies", "recommendations", "reports",
    "resources", "supermetrics", "symptomdefs", "traversalspecs",
)  # fmt: skip
IMAGE_DIRECTORIES = ("AdapterKind", "ResourceKind", "TraversalSpec")
GITIGNORE = "build/\nlogs/\n__pycache__/\n*.pyc\n.venv/\nvenv*/\n"


def dockerfile(display_name: str) -> str:
    return (
        f"# The adapter image of {_one_line(display_name)}: the SDK's Python base, the adapter's\n"
        "# requirements and app/. 'mpkit build' builds it (no Docker needed), pushes it and\n"
        "# writes the pack.\n"
        f"FROM {SDK_BASE_IMAGE}\n"
        "COPY commands.cfg .\n"
        "COPY adapter_requirements.txt .\n"
        "RUN pip3 install -r adapter_requirements.txt --upgrade\n"
        "COPY app app\n"
    )


def commands_cfg() -> str:
    lines = ["[Commands]"]
    lines += [f"{name}={PYTHON} app/adapter.py {name}" for name in COMMANDS]
    return "\n".join(lines) + "\n"


def requirements() -> str:
    return "\n".join([ADAPTER_LIBRARY, *EXTRA_REQUIREMENTS]) + "\n"


def adapter_source(template: str, display_name: str, adapter_kind: str) -> str:
    text = (TEMPLATES / f"adapter_{template}.py.tmpl").read_text(encoding="utf-8")
    return (
        text.replace("{{ADAPTER_KIND}}", json.dumps(adapter_kind))
        .replace("{{DISPLAY_NAME}}", json.dumps(display_name, ensure_ascii=False))
        .replace("{{DISPLAY_NAME_TEXT}}", _docstring_text(display_name))
    )


def manifest(adapter_kind: str, eula_file: str, icon_file: str) -> dict[str, Any]:
    """manifest.txt with the SDK's keys in the SDK's order; its texts are the keys of
    resources/resources.properties, as in the SDK's template."""
    return {
        "display_name": "DISPLAY_NAME",
        "name": f"iSDK_{adapter_kind}",
        "description": "DESCRIPTION",
        "version": "1.0.0",
        "vcops_minimum_version": "8.10.0",
        "disk_space_required": 500,
        "run_scripts_on_all_nodes": "true",
        "eula_file": eula_file,
        "platform": ["Linux Non-VA", "Linux VA"],
        "vendor": "VENDOR",
        "pak_icon": icon_file,
        "pak_validation_script": {"script": ""},
        "adapter_pre_script": {"script": ""},
        "adapter_post_script": {"script": ""},
        "adapters": ["adapter.zip"],
        "adapter_kinds": [adapter_kind],
        "license_type": "",
    }


def manifest_properties(display_name: str, description: str, vendor: str) -> str:
    """resources/resources.properties: what manifest.txt's DISPLAY_NAME etc. stand for."""
    return (
        "# The pack's texts in the default language (manifest.txt refers to these keys).\n"
        f"DISPLAY_NAME={escape_value(display_name)}\n"
        f"DESCRIPTION={escape_value(description)}\n"
        f"VENDOR={escape_value(vendor)}\n"
    )


def config_json() -> dict[str, Any]:
    """config.json: the registry is the one thing to fill in before 'mpkit build'."""
    return {"container_repository": None, "default_memory_limit": 1024}


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _docstring_text(text: str) -> str:
    return _one_line(text).replace("\\", "/").replace('"', "'")
