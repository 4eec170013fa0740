"""Asks an adapter for its definition, its library's units and its API version.

This file is copied into a scratch directory and run there, inside the adapter image
(``python3 /io/runner.py /io``) or on the host, so it imports only the standard library
and runs on Python 3.7 and later. It reads ``job.json`` from that directory and always
writes ``result.json`` there; a missing result.json therefore means the runner never ran.

Job keys: ``command`` (the adapter_definition argv; when absent, the ``[Commands]
adapter_definition`` entry of ``commands.cfg`` in the working directory, split on blanks
as the SDK's server does; the input and output files are appended), ``cwd``,
``timeout``, ``units`` (ask the adapter's Python for its library's unit table, with
``units_command`` or else the command's own interpreter), ``server`` (the image's own
ENTRYPOINT+CMD, started to ask ``GET /apiVersion``, or null), ``server_port``,
``server_timeout`` and ``log_dirs`` (whose files the adapter changed are quoted).
``result.json`` says how the wait for the API version ended in ``api_version_outcome``:
``version``, ``answer`` (the server answered something else, e.g. 404: final),
``exited`` or ``deadline``.
"""

# ruff: noqa: PTH105, PTH109, PTH113, PTH118, PTH119, PTH204, PTH208
# (os.path on purpose: this file runs alone, on whatever Python the image has.)
from __future__ import annotations

import configparser
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

TAIL_BYTES = 16 * 1024
LOG_TAIL_BYTES = 4 * 1024
COMMAND_KEY = "adapter_definition"
PYTHON_NAME = re.compile(r"^python[0-9.]*$")
# RFC 9110: a server (or proxy) that is busy or not ready yet may answer these; ask again.
RETRYABLE_STATUS = (408, 429, 502, 503, 504)
UNITS_TIMEOUT = 60
SERVER_STOP_TIMEOUT = 5
UNITS_SNIPPET = """
import json, sys
from aria.ops.definition import units as library
types = []
for name, group in vars(library.Units).items():
    if name.startswith("_") or not isinstance(group, type):
        continue
    if not issubclass(group, library.UnitGroup):
        continue
    subtypes = {}
    for member in group:
        unit = member.value
        subtype = getattr(unit, "_subtype", "") or ""
        subtypes.setdefault(subtype, []).append({
            "key": unit.key,
            "label": unit.label,
            "order": int(getattr(unit, "_order")),
            "conversion_factor": int(getattr(unit, "_conversion_factor")),
        })
    for subtype, units in subtypes.items():
        types.append({"key": group.__name__ + subtype, "units": units})
with open(sys.argv[1], "w") as out:
    json.dump(types, out)
"""


def main(argv: list[str]) -> int:
    io_dir = argv[1]
    with open(os.path.join(io_dir, "job.json")) as handle:
        job = json.load(handle)
    result: dict[str, Any] = {"started": True}
    started = time.time() - 1
    server = _start_server(job, io_dir) if job.get("server") else None
    try:
        command = _command(job, result)
        if command:
            result["command"] = command
            _run_definition(job, command, io_dir, result)
        if command and job.get("units") and result.get("exit_code") == 0:
            _dump_units(job, command, io_dir, result)
        if server is not None:
            _api_version(job, server, result)
    finally:
        if server is not None:
            _stop(server)
    result["logs"] = _changed_logs(job.get("log_dirs") or [], started)
    temp = os.path.join(io_dir, "result.json.tmp")
    with open(temp, "w") as handle:
        json.dump(result, handle)
    os.replace(temp, os.path.join(io_dir, "result.json"))
    return 0


def _command(job: dict[str, Any], result: dict[str, Any]) -> list[str]:
    result.update(exit_code=None, timed_out=False, start_error=None)
    if job.get("command"):
        return list(job["command"])
    path = os.path.join(job.get("cwd") or os.getcwd(), "commands.cfg")
    config = configparser.ConfigParser(interpolation=None)
    try:
        found = config.read(path)
    except configparser.Error as exc:
        result["start_error"] = f"{path} is not a valid INI file: {exc}"
        return []
    if not found:
        result["start_error"] = f"{path} does not exist in the image"
        return []
    if not config.has_option("Commands", COMMAND_KEY):
        result["start_error"] = f"{path} has no {COMMAND_KEY} entry in [Commands]"
        return []
    command = config.get("Commands", COMMAND_KEY).split()
    if not command:
        result["start_error"] = f"the {COMMAND_KEY} entry of {path} is empty"
    return command


def _run_definition(
    job: dict[str, Any], command: list[str], io_dir: str, result: dict[str, Any]
) -> None:
    input_path = os.path.join(io_dir, "input.json")
    output_path = os.path.join(io_dir, "output.json")
    argv = [*command, input_path, output_path]
    out_path, err_path = os.path.join(io_dir, "stdout.txt"), os.path.join(io_dir, "stderr.txt")
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        try:
            done = subprocess.run(
                argv,
                cwd=job.get("cwd") or None,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                timeout=float(job.get("timeout") or 300),
                check=False,
            )
            result["exit_code"] = done.returncode
        except subprocess.TimeoutExpired:
            result["timed_out"] = True
        except OSError as exc:
            result["start_error"] = f"{type(exc).__name__}: {exc}"
    result["stdout"] = _tail(out_path, TAIL_BYTES)
    result["stderr"] = _tail(err_path, TAIL_BYTES)


def _dump_units(
    job: dict[str, Any], command: list[str], io_dir: str, result: dict[str, Any]
) -> None:
    target = os.path.join(io_dir, "units.json")
    interpreter = job.get("units_command")
    if not interpreter:
        if not PYTHON_NAME.match(os.path.basename(command[0])):
            result["units_error"] = "the adapter_definition command does not start Python"
            return
        interpreter = [command[0]]
    argv = [*interpreter, "-c", UNITS_SNIPPET, target]
    try:
        done = subprocess.run(
            argv,
            cwd=job.get("cwd") or None,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=UNITS_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        result["units_error"] = f"{type(exc).__name__}: {exc}"
        return
    if done.returncode != 0:
        lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
        result["units_error"] = lines[-1] if lines else f"exit status {done.returncode}"
        return
    with open(target) as handle:
        result["units"] = json.load(handle)


def _start_server(job: dict[str, Any], io_dir: str) -> subprocess.Popen[bytes] | None:
    try:
        with open(os.path.join(io_dir, "server.txt"), "wb") as log:
            return subprocess.Popen(
                list(job["server"]),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
    except OSError:
        return None


def _api_version(
    job: dict[str, Any], server: subprocess.Popen[bytes], result: dict[str, Any]
) -> None:
    """Poll ``GET /apiVersion`` until the server answers or exits. Only a refused or
    dropped connection (the server is still starting) and a retryable status are polled
    again; any other answer is final."""
    url = f"http://127.0.0.1:{int(job.get('server_port') or 8080)}/apiVersion"
    deadline = time.time() + float(job.get("server_timeout") or 30)
    problem = "the image's server did not answer"
    outcome = "deadline"
    result["api_version_attempts"] = 0
    while time.time() < deadline:
        if server.poll() is not None:
            problem = f"the image's server exited with status {server.returncode}"
            outcome = "exited"
            break
        result["api_version_attempts"] += 1
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:
            problem = f"GET /apiVersion answered HTTP {exc.code}"
            if exc.code not in RETRYABLE_STATUS:
                outcome = "answer"
                break
        except OSError as exc:  # refused, reset, timed out: not up yet
            problem = f"GET /apiVersion failed: {exc}"
        else:
            try:
                answer = json.loads(body.decode("utf-8"))
                parts = (int(answer["major"]), int(answer["minor"]), int(answer["maintenance"]))
            except (ValueError, KeyError, TypeError) as exc:
                problem = f"GET /apiVersion answered {body[:80]!r}, not a version ({exc})"
                outcome = "answer"
                break
            result["api_version"] = ".".join(map(str, parts))
            result["api_version_outcome"] = "version"
            return
        time.sleep(0.2)
    result["api_version_error"] = problem
    result["api_version_outcome"] = outcome


def _stop(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(timeout=SERVER_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _changed_logs(directories: list[str], since: float) -> dict[str, str]:
    found: dict[str, str] = {}
    for directory in directories:
        try:
            names = sorted(os.listdir(directory))
        except OSError:
            continue
        for name in names:
            path = os.path.join(directory, name)
            try:
                if os.path.isfile(path) and os.path.getmtime(path) >= since:
                    found[path] = _tail(path, LOG_TAIL_BYTES)
            except OSError:
                continue
    return found


def _tail(path: str, limit: int) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - limit))
            data = handle.read()
    except OSError:
        return ""
    text = data.decode("utf-8", "replace")
    return ("…" + text) if size > limit else text


if __name__ == "__main__":
    sys.exit(main(sys.argv))
