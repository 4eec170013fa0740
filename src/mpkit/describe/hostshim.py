"""Runs an adapter's Python command on the host as it would run inside its image.

Started by the definition runner as ``<host python> -s -S hostshim.py ARGS``, where ARGS
are the image interpreter's own arguments (``app/adapter.py adapter_definition …``,
``-m package …`` or ``-c code …``). ``-S`` keeps the host's site-packages out; the
image's site directories (extracted from its layers) are added in the image's order,
with their ``.pth`` files. Paths under the image's log directory (``/var/log``, where
the SDK library logs) are redirected to a scratch directory, so the adapter neither
needs nor touches the host's. Settings come from the ``MPKIT_HOST_SHIM`` environment
variable (JSON: ``site_dirs``, ``redirects``). Standard library only.
"""

# ruff: noqa: PTH100, PTH109, PTH120
# (os.path on purpose: this file runs alone, under the host's Python with -S.)
from __future__ import annotations

import builtins
import functools
import io
import json
import os
import runpy
import site
import sys
from collections.abc import Callable
from typing import Any

CONFIG_ENV = "MPKIT_HOST_SHIM"
FLAGS_WITHOUT_VALUE = set("bBdEhiIOqsSuvVxR")
FLAGS_WITH_VALUE = set("WX")
PATH_FUNCTIONS = ("open", "access", "stat", "lstat", "listdir", "scandir", "mkdir", "makedirs",
                  "remove", "unlink", "rmdir", "chmod", "utime")  # fmt: skip
TWO_PATH_FUNCTIONS = ("rename", "replace")
OS_PATH_FUNCTIONS = ("exists", "isfile", "isdir", "getsize", "getmtime", "lexists")


def main() -> int:
    config = json.loads(os.environ.pop(CONFIG_ENV, "{}"))
    redirect_paths(dict(config.get("redirects") or {}))
    mode, target, rest = parse_arguments(sys.argv[1:])
    for directory in config.get("site_dirs") or []:
        site.addsitedir(directory)
    if mode == "module":
        sys.argv = [target, *rest]
        sys.path[0] = os.getcwd()
        runpy.run_module(target, run_name="__main__", alter_sys=True)
    elif mode == "code":
        sys.argv = ["-c", *rest]
        sys.path[0] = ""
        exec(compile(target, "<string>", "exec"), {"__name__": "__main__"})  # noqa: S102
    else:
        sys.argv = [target, *rest]
        sys.path[0] = os.path.dirname(os.path.abspath(target))
        runpy.run_path(target, run_name="__main__")
    return 0


def parse_arguments(args: list[str]) -> tuple[str, str, list[str]]:
    """(mode, target, remaining arguments) from a python command line without the binary."""
    index = 0
    while index < len(args):
        arg = args[index]
        if arg in ("-m", "-c"):
            if index + 1 >= len(args):
                raise SystemExit(f"hostshim: {arg} needs an argument")
            mode = "module" if arg == "-m" else "code"
            return mode, args[index + 1], args[index + 2 :]
        if arg.startswith("-m") or arg.startswith("-c"):
            mode = "module" if arg[1] == "m" else "code"
            return mode, arg[2:], args[index + 1 :]
        if arg.startswith("-") and arg != "-" and len(arg) > 1:
            letter = arg[1]
            if letter in FLAGS_WITH_VALUE:
                index += 1 if len(arg) > 2 else 2
                continue
            if all(char in FLAGS_WITHOUT_VALUE for char in arg[1:]):
                index += 1
                continue
            raise SystemExit(f"hostshim: the python option {arg} is not supported")
        if arg == "-":
            raise SystemExit("hostshim: a script on standard input is not supported")
        return "script", arg, args[index + 1 :]
    raise SystemExit("hostshim: the command names no script, -m module or -c code")


def redirect_paths(redirects: dict[str, str]) -> None:
    """Make file functions see ``redirects[prefix] + rest`` for paths under each prefix."""
    if not redirects:
        return

    def mapped(path: Any) -> Any:
        if isinstance(path, int):
            return path
        try:
            raw = os.fspath(path)
        except TypeError:
            return path
        if not isinstance(raw, str):
            return path
        for source, target in redirects.items():
            if raw == source or raw.startswith(source + "/"):
                return target + raw[len(source) :]
        return path

    def first(function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if args:
                args = (mapped(args[0]), *args[1:])
            return function(*args, **kwargs)

        return wrapper

    def both(function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def wrapper(source: Any, target: Any, *args: Any, **kwargs: Any) -> Any:
            return function(mapped(source), mapped(target), *args, **kwargs)

        return wrapper

    opener = first(io.open)
    builtins.open = opener
    io.open = opener
    for name in PATH_FUNCTIONS:
        setattr(os, name, first(getattr(os, name)))
    for name in TWO_PATH_FUNCTIONS:
        setattr(os, name, both(getattr(os, name)))
    for name in OS_PATH_FUNCTIONS:
        setattr(os.path, name, first(getattr(os.path, name)))
    logging = sys.modules.get("logging")
    if logging is not None:  # FileHandler keeps its own reference to open()
        logging.FileHandler._builtin_open = opener


if __name__ == "__main__":
    sys.exit(main())
