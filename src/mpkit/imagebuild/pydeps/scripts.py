"""Scripts as pip writes them: console-script wrappers and ``#!`` lines for the image's
python."""

from __future__ import annotations

import configparser
import re

MAX_SHEBANG = 127  # Linux's limit; distlib falls back to a /bin/sh trampoline beyond it
# pip's console-script template (distlib's ScriptMaker.script_template).
SCRIPT_TEMPLATE = r"""# -*- coding: utf-8 -*-
import re
import sys
from %(module)s import %(import_name)s
if __name__ == '__main__':
    sys.argv[0] = re.sub(r'(-script\.pyw|\.exe)?$', '', sys.argv[0])
    sys.exit(%(func)s())
"""


def rewrite_shebang(script: bytes, interpreter: str) -> bytes:
    """Point a staged script's ``#!`` line (uv wrote the host's python, possibly as a
    /bin/sh trampoline) at the image's python, as pip's fix_script() does."""
    lines = script.split(b"\n")
    if lines[0] == b"#!/bin/sh" and len(lines) > 2 and lines[1].startswith(b"'''exec'"):
        body = lines[3:]
    elif lines[0].startswith(b"#!") and b"python" in lines[0]:
        body = lines[1:]
    else:
        return script
    return b"\n".join([b"#!" + interpreter.encode(), *body])


def pip_shebang(interpreter: str) -> bytes:
    """The first line(s) pip's script maker (distlib) writes for *interpreter*."""
    executable = f'"{interpreter}"' if " " in interpreter else interpreter
    if " " not in executable and len(executable) + 3 <= MAX_SHEBANG:
        return f"#!{executable}\n".encode()
    return f"#!/bin/sh\n'''exec' {executable} \"$0\" \"$@\"\n' '''\n".encode()


def pip_script(spec: str, interpreter: str) -> bytes | None:
    """A console script as pip writes it for entry point *spec* ("module:attr [extra]");
    None when the spec names no callable (pip would refuse it)."""
    module, colon, attr = re.sub(r"\[.*\]", "", spec).partition(":")
    module, attr = module.strip(), attr.strip()
    if not colon or not module or not attr:
        return None
    body = SCRIPT_TEMPLATE % {"module": module, "import_name": attr.split(".")[0], "func": attr}
    return pip_shebang(interpreter) + body.encode()


def script_specs(entry_points: str, version: str) -> tuple[dict[str, str], set[str]]:
    """(script name -> spec as pip generates them, every name the file declares).
    pip renames its own and easy_install's scripts for the image's python version."""
    parser = configparser.ConfigParser(delimiters=("=",), interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment, method-assign]
    try:
        parser.read_string(entry_points)
    except configparser.Error:
        return {}, set()
    console = dict(parser.items("console_scripts")) if parser.has_section("console_scripts") else {}
    gui = dict(parser.items("gui_scripts")) if parser.has_section("gui_scripts") else {}
    declared = set(console) | set(gui)
    major = version.split(".")[0]
    for name, pattern, variants in (
        ("pip", r"pip(\d+(\.\d+)?)?$", ("pip", f"pip{major}", f"pip{version}")),
        ("easy_install", r"easy_install(-\d+\.\d+)?$", ("easy_install", f"easy_install-{version}")),
    ):
        spec = console.get(name)
        if spec is not None:
            console = {k: v for k, v in console.items() if not re.match(pattern, k)}
            console.update(dict.fromkeys(variants, spec))
    return {**console, **gui}, declared
