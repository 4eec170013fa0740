"""Small source distributions for the tests, served from a local ``--find-links`` directory.

Each sdist carries its own PEP 517 build backend (``backend-path``, no build requirements),
so building it needs no package index. Kinds:

- ``pure``: a pure-Python wheel (``py3-none-any``).
- ``native``: a C extension compiled with ``cc`` against the building Python's headers,
  tagged for the building interpreter and platform; without a compiler the build fails.
- ``optional-native``: like ``native``, but without a compiler it ships its pure-Python
  fallback, still tagged for the platform (as setuptools tags a wheel that declares an
  optional extension): pip in an image without a compiler installs it.

A build appends "NAME VERSION PYTHON" to ``$MPKIT_TEST_BUILD_LOG`` when that is set, so a
test can count builds.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Literal

Kind = Literal["pure", "native", "optional-native"]

BACKEND = '''\
import base64, hashlib, os, subprocess, sys, sysconfig, tempfile, zipfile

NAME, VERSION, KIND, REQUIRES = {name!r}, {version!r}, {kind!r}, {requires!r}
MODULE = NAME.replace("-", "_")


def _hash(data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode()


def _compile():
    """The extension module's bytes, or None without a working compiler."""
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "_speedups" + suffix)
        argv = [os.environ.get("CC", "cc"), "-shared", "-fPIC",
                "-I", sysconfig.get_paths()["include"], "speedups.c", "-o", out]
        try:
            subprocess.run(argv, check=True)
        except (OSError, subprocess.CalledProcessError) as exc:
            print(f"error: command {{argv[0]!r}} failed: {{exc}}", file=sys.stderr)
            return None
        with open(out, "rb") as built:
            return built.read()


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    log = os.environ.get("MPKIT_TEST_BUILD_LOG")
    if log:
        with open(log, "a") as out:
            out.write(f"{{NAME}} {{VERSION}} {{sys.version_info[0]}}.{{sys.version_info[1]}}\\n")
    info = f"{{MODULE}}-{{VERSION}}.dist-info"
    with open(os.path.join(MODULE, "__init__.py"), "rb") as source:
        files = {{f"{{MODULE}}/__init__.py": source.read()}}
    tag = "py3-none-any"
    if KIND != "pure":
        extension = _compile()
        if extension is None and KIND == "native":
            raise SystemExit(1)
        if extension is not None:
            suffix = sysconfig.get_config_var("EXT_SUFFIX")
            files[f"{{MODULE}}/_speedups{{suffix}}"] = extension
        interpreter = f"cp{{sys.version_info[0]}}{{sys.version_info[1]}}"
        platform = sysconfig.get_platform().replace("-", "_").replace(".", "_")
        tag = f"{{interpreter}}-{{interpreter}}-{{platform}}"
    metadata = f"Metadata-Version: 2.1\\nName: {{NAME}}\\nVersion: {{VERSION}}\\n"
    metadata += "".join(f"Requires-Dist: {{r}}\\n" for r in REQUIRES)
    files[f"{{info}}/METADATA"] = metadata.encode()
    pure = "true" if tag == "py3-none-any" else "false"
    wheel = f"Wheel-Version: 1.0\\nGenerator: test\\nRoot-Is-Purelib: {{pure}}\\n"
    files[f"{{info}}/WHEEL"] = (wheel + f"Tag: {{tag}}\\n").encode()
    record = "".join(f"{{p}},{{_hash(d)}},{{len(d)}}\\n" for p, d in files.items())
    files[f"{{info}}/RECORD"] = (record + f"{{info}}/RECORD,,\\n").encode()
    name = f"{{MODULE}}-{{VERSION}}-{{tag}}.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as archive:
        for path, data in files.items():
            archive.writestr(zipfile.ZipInfo(path, date_time=(2020, 1, 1, 0, 0, 0)), data)
    return name
'''

SPEEDUPS_C = b"""\
#include <Python.h>
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_speedups", NULL, -1, NULL};
PyMODINIT_FUNC PyInit__speedups(void) { return PyModule_Create(&module); }
"""


def make_sdist(
    directory: Path,
    name: str,
    version: str,
    *,
    kind: Kind = "pure",
    requires: tuple[str, ...] = (),
) -> Path:
    """Write NAME-VERSION.tar.gz (a source distribution of *kind*) into *directory*."""
    module = name.replace("-", "_")
    root = f"{module}-{version}"
    dependencies = ", ".join(f'"{r}"' for r in requires)
    pyproject = (
        '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n\n'
        f'[project]\nname = "{name}"\nversion = "{version}"\ndependencies = [{dependencies}]\n'
    )
    pkg_info = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    pkg_info += "".join(f"Requires-Dist: {r}\n" for r in requires)
    members = {
        "pyproject.toml": pyproject.encode(),
        "PKG-INFO": pkg_info.encode(),
        "backend.py": BACKEND.format(
            name=name, version=version, kind=kind, requires=list(requires)
        ).encode(),
        f"{module}/__init__.py": f"VERSION = {version!r}\nKIND = {kind!r}\n".encode(),
    }
    if kind != "pure":
        members["speedups.c"] = SPEEDUPS_C
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{root}.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        for member, data in members.items():
            info = tarfile.TarInfo(f"{root}/{member}")
            info.size, info.mode, info.mtime = len(data), 0o644, 1577836800
            archive.addfile(info, io.BytesIO(data))
    return path
