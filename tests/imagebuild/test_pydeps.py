"""Installing a pip install RUN step for the image's Python with uv.

Offline tests use a wheelhouse of wheels built here (``--no-index``); the tests marked
``pypi`` install real packages from PyPI for linux/amd64 (and arm64) CPython targets and
share one uv cache per session.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import socket
import subprocess
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest

from mpkit.cache.root import CacheRoot
from mpkit.errors import DependencyError, NoWheelError, PackageIndexError
from mpkit.image.layerwriter import LayerEntry, write_layer
from mpkit.imagebuild.fsview import FileInfo, MemoryFilesystem
from mpkit.imagebuild.piprun import PipInstall, parse_pip_run
from mpkit.imagebuild.pydeps import DependencyLayer, install_requirements
from mpkit.imagebuild.pydeps.scripts import pip_script, pip_shebang, rewrite_shebang, script_specs
from mpkit.imagebuild.pydeps.uvrun import _failure, uv_python_platform, wheel_platform_tag
from mpkit.imagebuild.target import PythonTarget, detect_target

USER = "aria-ops-adapter-user"
HOME = f"/home/{USER}"
WORKDIR = f"{HOME}/src/app"
SITE = f"{HOME}/.local/lib/python3.11/site-packages"
BIN = f"{HOME}/.local/bin"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


# -- bases ------------------------------------------------------------------------------------


def debian_base(*, version: str = "3.11", glibc: str = "2.36") -> MemoryFilesystem:
    """Debian with python3 + pip, the SDK's non-root user and WORKDIR (no PEP 668 marker)."""
    fs = MemoryFilesystem()
    fs.add("/lib", FileInfo("symlink", 0o777, linkname="usr/lib"))
    banner = f"GNU C Library (Debian GLIBC {glibc}-9) stable release version {glibc}.\n"
    for arch in ("x86_64", "aarch64"):
        fs.add_file(f"/usr/lib/{arch}-linux-gnu/libc.so.6", banner.encode(), mode=0o755)
    fs.add_file(f"/usr/bin/python{version}", b"\x7fELF", mode=0o755)
    fs.add("/usr/bin/python3", FileInfo("symlink", 0o777, linkname=f"python{version}"))
    fs.add_file("/usr/bin/pip3", b"#!/usr/bin/python3\n", mode=0o755)
    fs.add_file(f"/usr/lib/python{version}/os.py", b"")
    fs.add_file("/usr/lib/python3/dist-packages/pip/__init__.py", b"")
    fs.add("/usr/lib/python3/dist-packages/pip-23.0.1.dist-info", FileInfo("dir"))
    fs.add(f"/usr/local/lib/python{version}/dist-packages", FileInfo("dir", 0o2775, 0, 50))
    fs.add_file(
        "/etc/passwd", f"root:x:0:0::/root:/bin/sh\n{USER}:x:1000:1000::{HOME}:/bin/sh\n".encode()
    )
    fs.add_file("/etc/group", f"root:x:0:\n{USER}:x:1000:\n".encode())
    fs.add(HOME, FileInfo("dir", 0o755, 1000, 1000))
    fs.add(WORKDIR, FileInfo("dir", 0o755))
    return fs


def slim_base() -> MemoryFilesystem:
    """python:3.11-slim: root, python in /usr/local, site-packages already present."""
    fs = MemoryFilesystem()
    fs.add_file(
        "/lib/x86_64-linux-gnu/libc.so.6", b"GNU C Library release version 2.36", mode=0o755
    )
    fs.add_file("/usr/local/bin/python3.11", b"\x7fELF", mode=0o755)
    fs.add("/usr/local/bin/python3", FileInfo("symlink", 0o777, linkname="python3.11"))
    for name in ("pip", "pip3"):
        fs.add_file(f"/usr/local/bin/{name}", b"#!/usr/local/bin/python3.11\n", mode=0o755)
    fs.add_file("/usr/local/lib/python3.11/os.py", b"")
    fs.add_file("/usr/local/lib/python3.11/site-packages/pip/__init__.py", b"")
    fs.add("/usr/local/lib/python3.11/site-packages/pip-24.0.dist-info", FileInfo("dir"))
    return fs


def target_for(
    fs: MemoryFilesystem, install: PipInstall, user: str = USER, arch: str = "amd64"
) -> PythonTarget:
    config = {"User": user, "Env": [PATH_ENV], "WorkingDir": WORKDIR}
    return detect_target(fs, config, arch=arch, launcher=install.launcher, user_flag=install.user)


def pip(command: str) -> PipInstall:
    parsed = parse_pip_run(command)
    assert parsed.install is not None, parsed.reason
    return parsed.install


# -- wheels -------------------------------------------------------------------------------------


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def make_wheel(
    directory: Path,
    name: str,
    version: str,
    *,
    requires: tuple[str, ...] = (),
    scripts: dict[str, str] | None = None,
    extra_files: dict[str, bytes] | None = None,
) -> Path:
    """A pure-Python wheel with a module, an executable data file and console scripts."""
    module = name.replace("-", "_")
    info = f"{module}-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    metadata += "".join(f"Requires-Dist: {r}\n" for r in requires)
    files: dict[str, bytes] = {
        f"{module}/__init__.py": f"VERSION = {version!r}\n\ndef main():\n    print(1)\n".encode(),
        f"{module}/tool.sh": b"#!/bin/sh\necho tool\n",
        f"{info}/METADATA": metadata.encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
        **(extra_files or {}),
    }
    if scripts:
        lines = "".join(f"{k} = {v}\n" for k, v in scripts.items())
        files[f"{info}/entry_points.txt"] = f"[console_scripts]\n{lines}".encode()
    record = "".join(f"{p},{_record_hash(d)},{len(d)}\n" for p, d in files.items())
    files[f"{info}/RECORD"] = (record + f"{info}/RECORD,,\n").encode()
    path = directory / f"{module}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for member, data in files.items():
            item = zipfile.ZipInfo(member, date_time=(2020, 1, 1, 0, 0, 0))
            mode = 0o755 if member.endswith(".sh") else 0o644
            item.external_attr = (0o100000 | mode) << 16
            archive.writestr(item, data)
    return path


def by_path(layer: DependencyLayer) -> dict[str, LayerEntry]:
    return {entry.path: entry for entry in layer.entries}


def content(entry: LayerEntry) -> bytes:
    if entry.data is not None:
        return entry.data
    assert entry.source is not None
    return entry.source.read_bytes()


def install_offline(
    command: str,
    fs: MemoryFilesystem,
    *,
    context: Path,
    cache: Path,
    wheelhouse: Path | None,
    user: str = USER,
    **kwargs: Any,
) -> DependencyLayer:
    install = pip(command)
    return install_requirements(
        install, context_root=context, target=target_for(fs, install, user), workdir=WORKDIR,
        cache=CacheRoot(cache), base=fs, wheelhouse=wheelhouse, **kwargs,
    )  # fmt: skip


# -- offline: layout, owners, modes, shebangs ------------------------------------------------


def test_user_install_layout_matches_pip_inside_the_image(
    context: Path, tmp_path: Path, wheelhouse: Path
) -> None:
    (context / "requirements.txt").write_text("# adapter deps\ndemo-pkg  # the package\n")
    layer = install_offline(
        "pip3 install --no-index -r requirements.txt", debian_base(),
        context=context, cache=tmp_path / "cache", wheelhouse=wheelhouse,
    )  # fmt: skip
    assert layer.installed == {"demo-pkg": "1.0", "demo-dep": "2.0"}
    assert layer.uninstalled == {}
    entries = by_path(layer)
    assert all((e.uid, e.gid) == (1000, 1000) for e in layer.entries)
    # pip creates ~/.local/... (owned by the user) but not the existing home directory
    for directory in (f"{HOME}/.local", f"{HOME}/.local/lib", f"{HOME}/.local/lib/python3.11",
                      SITE, BIN, f"{SITE}/demo_pkg", f"{SITE}/demo_pkg-1.0.dist-info"):  # fmt: skip
        assert entries[directory].kind == "dir" and entries[directory].mode == 0o755, directory
    assert HOME not in entries and "/home" not in entries
    assert entries[f"{SITE}/demo_pkg/__init__.py"].mode == 0o644
    assert entries[f"{SITE}/demo_pkg/tool.sh"].mode == 0o755  # exec bit from the wheel
    script = entries[f"{BIN}/demo"]
    assert script.mode == 0o755
    assert content(script).startswith(b"#!/usr/bin/python3\n")
    assert b"from demo_pkg import main" in content(script)
    assert not any("__pycache__" in p or p.endswith(".pyc") for p in entries)
    assert not any(p.endswith((".lock", "uv_cache.json")) for p in entries)
    info = f"{SITE}/demo_pkg-1.0.dist-info"
    assert content(entries[f"{info}/INSTALLER"]) == b"pip\n"
    assert f"{info}/REQUESTED" in entries
    assert f"{SITE}/demo_dep-2.0.dist-info/REQUESTED" not in entries  # a dependency
    record = content(entries[f"{info}/RECORD"]).decode()
    assert "../../../bin/demo,sha256=" in record
    script_row = next(r for r in record.splitlines() if r.startswith("../../../bin/demo,"))
    assert script_row.endswith(f"{_record_hash(content(script))},{len(content(script))}")
    assert f"demo_pkg-1.0.dist-info/INSTALLER,{_record_hash(b'pip' + bytes([10]))},4" in record
    assert "demo_pkg-1.0.dist-info/REQUESTED," in record
    assert (
        "demo_dep-2.0.dist-info/REQUESTED"
        not in content(entries[f"{SITE}/demo_dep-2.0.dist-info/RECORD"]).decode()
    )
    # the entries make a real layer
    sink = io.BytesIO()
    write_layer(layer.entries, sink)
    with tarfile.open(fileobj=io.BytesIO(sink.getvalue()), mode="r:gz") as tar:
        members = {m.name: m for m in tar.getmembers()}
    member = members[f"{SITE.lstrip('/')}/demo_pkg/__init__.py"]
    assert (member.uid, member.gid, member.mode) == (1000, 1000, 0o644)


def test_wheel_data_and_headers_go_where_pip_puts_them(context: Path, tmp_path: Path) -> None:
    (context / "wheels").mkdir()
    make_wheel(
        context / "wheels", "datapkg", "1.0",
        extra_files={
            "datapkg-1.0.data/data/share/datapkg/x.txt": b"x",
            "datapkg-1.0.data/headers/h.h": b"//",
            "datapkg-1.0.data/scripts/rawscript": b"#!python\nprint(1)\n",
        },
    )  # fmt: skip
    install = pip("pip3 install --no-index --find-links ./wheels datapkg")
    fs = debian_base()
    layer = install_requirements(
        install, context_root=context, target=target_for(fs, install), workdir=WORKDIR,
        cache=CacheRoot(tmp_path / "cache"), base=fs,
    )  # fmt: skip
    entries = by_path(layer)
    assert f"{HOME}/.local/share/datapkg/x.txt" in entries
    assert f"{HOME}/.local/include/python3.11/datapkg/h.h" in entries
    assert content(entries[f"{BIN}/rawscript"]) == b"#!/usr/bin/python3\nprint(1)\n"
    record = content(entries[f"{SITE}/datapkg-1.0.dist-info/RECORD"]).decode()
    assert "../../../share/datapkg/x.txt,sha256=" in record
    assert "../../../include/python3.11/datapkg/h.h,sha256=" in record
    assert "uv_cache.json" not in record and not any("uv_cache" in p for p in entries)


def test_root_install_on_python_slim(context: Path, tmp_path: Path, wheelhouse: Path) -> None:
    fs = slim_base()
    layer = install_offline(
        "pip install --no-index other-pkg", fs, user="",
        context=context, cache=tmp_path / "cache", wheelhouse=wheelhouse,
    )  # fmt: skip
    site = "/usr/local/lib/python3.11/site-packages"
    entries = by_path(layer)
    assert f"{site}/other_pkg/__init__.py" in entries
    assert site not in entries and "/usr/local/lib" not in entries  # already in the base
    assert all((e.uid, e.gid) == (0, 0) for e in layer.entries)


def test_root_script_shebang_names_the_python_that_runs_pip(
    context: Path, tmp_path: Path, wheelhouse: Path
) -> None:
    layer = install_offline(
        "python3 -m pip install --no-index demo-pkg", slim_base(), user="",
        context=context, cache=tmp_path / "cache", wheelhouse=wheelhouse,
    )  # fmt: skip
    script = by_path(layer)["/usr/local/bin/demo"]
    assert content(script).startswith(b"#!/usr/local/bin/python3\n")


def test_nested_requirement_files_resolve_relative_to_their_file(
    context: Path, tmp_path: Path, wheelhouse: Path
) -> None:
    host = tmp_path / "elsewhere"
    (host / "more").mkdir(parents=True)
    (host / "main.txt").write_text("-r more/extra.txt\n-c /etc/pins.txt\ndemo-pkg\n")
    (host / "more" / "extra.txt").write_text("--requirement=../other.txt\n")
    (host / "other.txt").write_text("other-pkg\n")
    fs = debian_base()
    fs.add_file("/etc/pins.txt", b"demo-dep==1.0\n")  # a file that only the base image has
    layer = install_offline(
        "pip3 install --no-index -r reqs/main.txt", fs,
        context=context, cache=tmp_path / "cache", wheelhouse=wheelhouse,
        requirement_files={f"{WORKDIR}/reqs/main.txt": host / "main.txt"},
    )  # fmt: skip
    assert layer.installed == {"demo-pkg": "1.0", "demo-dep": "1.0", "other-pkg": "1.0"}
    assert f"{SITE}/other_pkg-1.0.dist-info/REQUESTED" in by_path(layer)  # top-level via -r


def test_missing_requirements_file(context: Path, tmp_path: Path, wheelhouse: Path) -> None:
    with pytest.raises(DependencyError, match=r"'nope\.txt'") as caught:
        install_offline(
            "pip3 install -r nope.txt", debian_base(),
            context=context, cache=tmp_path / "cache", wheelhouse=wheelhouse,
        )  # fmt: skip
    assert "COPY" in (caught.value.hint or "")


def test_secrets_stay_out_of_uvs_argv(
    context: Path, tmp_path: Path, wheelhouse: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[list[str], dict[str, str]]] = []
    real_run = subprocess.run

    def spy(argv: list[str], **kwargs: Any) -> Any:
        seen.append((list(argv), dict(kwargs.get("env") or {})))
        return real_run(argv, **kwargs)

    monkeypatch.setattr(subprocess, "run", spy)  # pydeps calls subprocess.run
    monkeypatch.setenv("UV_INDEX_URL", "https://host-setting.example/simple")  # not the image's
    layer = install_offline(
        "pip3 install --no-index -i https://bob:s3cret@mirror.example/simple "
        "'other-pkg @ file://" + str(wheelhouse / "other_pkg-1.0-py3-none-any.whl") + "'",
        debian_base(), context=context, cache=tmp_path / "cache", wheelhouse=wheelhouse,
    )  # fmt: skip
    assert layer.installed == {"other-pkg": "1.0"}
    argv, env = next((a, e) for a, e in seen if "install" in a)
    assert not any("s3cret" in arg or "other-pkg" in arg for arg in argv)
    assert env["UV_INDEX_URL"] == "https://bob:s3cret@mirror.example/simple"
    assert "--python-platform" in argv and "x86_64-manylinux_2_36" in argv
    assert "--only-binary" not in argv and "--no-config" in argv  # sdists may be built


def test_find_links_directory_from_the_context(context: Path, tmp_path: Path) -> None:
    (context / "wheels").mkdir()
    make_wheel(context / "wheels", "other-pkg", "1.0")
    layer = install_offline(
        "pip3 install --no-index --find-links=wheels other-pkg", debian_base(),
        context=context, cache=tmp_path / "cache", wheelhouse=None,
    )  # fmt: skip
    assert layer.installed == {"other-pkg": "1.0"}
    with pytest.raises(DependencyError, match="--find-links"):
        install_offline(
            "pip3 install --no-index --find-links /opt/wheels other-pkg", debian_base(),
            context=context, cache=tmp_path / "cache", wheelhouse=None,
        )  # fmt: skip


def test_resolution_errors_name_image_paths(
    context: Path, tmp_path: Path, wheelhouse: Path
) -> None:
    (context / "requirements.txt").write_text("-r nested.txt\n")
    (context / "nested.txt").write_text("no-such-pkg==1\n")
    with pytest.raises(DependencyError) as caught:
        install_offline(
            "pip3 install --no-index -r requirements.txt", debian_base(),
            context=context, cache=tmp_path / "cache", wheelhouse=wheelhouse,
        )  # fmt: skip
    assert "no-such-pkg" in caught.value.message
    assert str(tmp_path) not in caught.value.message


# -- offline: respecting what the base has -----------------------------------------------------


def base_with_demo_09(fs: MemoryFilesystem) -> MemoryFilesystem:
    """demo-pkg 0.9 installed by pip into the user site (with RECORD and bytecode)."""
    info = f"{SITE}/demo_pkg-0.9.dist-info"
    files = {
        f"{SITE}/demo_pkg/__init__.py": b"VERSION = '0.9'\n",
        f"{SITE}/demo_pkg/old.py": b"",
        f"{SITE}/demo_pkg/__pycache__/old.cpython-311.pyc": b"",
        f"{SITE}/demo_pkg/__pycache__/__init__.cpython-311.pyc": b"",
        f"{BIN}/demo": b"#!/usr/bin/python3\n",
        f"{info}/METADATA": b"Name: demo-pkg\nVersion: 0.9\n",
        f"{info}/INSTALLER": b"pip\n",
    }
    for path, data in files.items():
        fs.add_file(path, data, uid=1000, gid=1000)
    rows = [os.path.relpath(p, SITE) + ",," for p in files if "__pycache__" not in p]
    fs.add_file(
        f"{info}/RECORD", ("\n".join([*rows, f"{info[len(SITE) + 1 :]}/RECORD,,"]) + "\n").encode()
    )
    fs.add_file(f"{SITE}/keep_me.py", b"", uid=1000, gid=1000)
    return fs


def test_requirements_satisfied_by_the_base_are_not_installed(
    context: Path, tmp_path: Path, wheelhouse: Path
) -> None:
    fs = base_with_demo_09(debian_base())
    fs.add("/usr/lib/python3/dist-packages/demo_dep-1.0.dist-info", FileInfo("dir"))
    cache = tmp_path / "cache"
    layer = install_offline(
        "pip3 install --no-index demo-pkg", fs, context=context, cache=cache, wheelhouse=wheelhouse
    )
    assert layer.installed == {} and layer.entries == []
    layer = install_offline(
        "pip3 install --no-index 'demo-pkg>=1'",
        fs,
        context=context,
        cache=cache,
        wheelhouse=wheelhouse,
    )
    assert layer.installed == {"demo-pkg": "1.0"}  # demo-dep 1.0 from the base still fits


def test_upgrade_replaces_the_base_copy_in_the_same_site_with_whiteouts(
    context: Path, tmp_path: Path, wheelhouse: Path
) -> None:
    fs = base_with_demo_09(debian_base())
    fs.add("/usr/lib/python3/dist-packages/demo_dep-1.0.dist-info", FileInfo("dir"))
    layer = install_offline(
        "pip3 install --no-index --upgrade demo-pkg", fs,
        context=context, cache=tmp_path / "cache", wheelhouse=wheelhouse,
    )  # fmt: skip
    # top-level upgraded; the dependency the base satisfies keeps the base's version
    assert layer.installed == {"demo-pkg": "1.0"}
    assert layer.uninstalled == {"demo-pkg": "0.9"}
    entries = by_path(layer)
    whiteouts = {p for p, e in entries.items() if e.kind == "whiteout"}
    assert whiteouts == {
        f"{SITE}/demo_pkg-0.9.dist-info",
        f"{SITE}/demo_pkg/old.py",
        f"{SITE}/demo_pkg/__pycache__",
    }
    # pip removed the package directory and wrote it again: a fresh directory entry
    assert entries[f"{SITE}/demo_pkg"].kind == "dir"
    assert entries[f"{SITE}/demo_pkg/__init__.py"].kind == "file"
    assert entries[f"{BIN}/demo"].kind == "file"
    assert f"{SITE}/keep_me.py" not in entries and SITE not in entries
    eager = install_offline(
        "pip3 install --no-index -U --upgrade-strategy eager demo-pkg", fs,
        context=context, cache=tmp_path / "cache", wheelhouse=wheelhouse,
    )  # fmt: skip
    assert eager.installed == {"demo-pkg": "1.0", "demo-dep": "2.0"}


# -- offline: refusals, cache key, helpers ---------------------------------------------------


def test_externally_managed_python_is_refused(
    context: Path, tmp_path: Path, wheelhouse: Path
) -> None:
    fs = debian_base()
    fs.add_file("/usr/lib/python3.11/EXTERNALLY-MANAGED", b"[externally-managed]\n")
    with pytest.raises(DependencyError, match="EXTERNALLY-MANAGED"):
        install_offline(
            "pip3 install six", fs, context=context, cache=tmp_path, wheelhouse=wheelhouse
        )
    layer = install_offline(
        "pip3 install --no-index --break-system-packages other-pkg", fs,
        context=context, cache=tmp_path, wheelhouse=wheelhouse,
    )  # fmt: skip
    assert layer.installed == {"other-pkg": "1.0"}


def test_python_without_pip_is_refused(context: Path, tmp_path: Path, wheelhouse: Path) -> None:
    fs = debian_base()
    fs.entries.pop("/usr/lib/python3/dist-packages/pip/__init__.py")
    fs.entries.pop("/usr/lib/python3/dist-packages/pip")
    with pytest.raises(DependencyError, match="no pip module"):
        install_offline(
            "python3 -m pip install six", fs, context=context, cache=tmp_path, wheelhouse=wheelhouse
        )


def test_cache_key_and_staging_reuse(context: Path, tmp_path: Path, wheelhouse: Path) -> None:
    (context / "requirements.txt").write_text("other-pkg\n")
    cache = tmp_path / "cache"

    def run(fs: MemoryFilesystem | None = None, user: str = USER) -> DependencyLayer:
        return install_offline(
            "pip3 install --no-index -r requirements.txt", fs or debian_base(), user=user,
            context=context, cache=cache, wheelhouse=wheelhouse,
        )  # fmt: skip

    first = run()
    assert first.staging is not None and (first.staging / "complete").is_file()
    stamp = (first.staging / "complete").stat().st_mtime_ns
    again = run()
    assert again.cache_key == first.cache_key and again.staging == first.staging
    assert (again.staging / "complete").stat().st_mtime_ns == stamp  # uv did not run again
    assert [e.path for e in again.entries] == [e.path for e in first.entries]
    assert run(user="").cache_key != first.cache_key  # another owner and scheme
    fs = debian_base()
    fs.add("/usr/lib/python3/dist-packages/zzz-1.0.dist-info", FileInfo("dir"))
    assert run(fs).cache_key != first.cache_key  # the base's distributions count
    (context / "requirements.txt").write_text("other-pkg==1.0\n")
    assert run().cache_key != first.cache_key


def test_uv_python_platform() -> None:
    install = pip("pip3 install six")
    assert uv_python_platform(target_for(debian_base(), install)) == "x86_64-manylinux_2_36"
    assert (
        uv_python_platform(target_for(debian_base(glibc="2.30"), install))
        == "x86_64-manylinux_2_28"
    )
    assert (
        uv_python_platform(target_for(debian_base(glibc="2.41"), install))
        == "x86_64-manylinux_2_40"
    )
    arm = target_for(debian_base(glibc="2.31"), install, arch="arm64")
    assert uv_python_platform(arm) == "aarch64-manylinux_2_31"
    with pytest.raises(DependencyError, match="older than manylinux2014"):
        uv_python_platform(target_for(debian_base(glibc="2.12"), install))
    musl = MemoryFilesystem()
    musl.add_file("/lib/ld-musl-aarch64.so.1", b"", mode=0o755)
    musl.add_file("/usr/bin/python3.12", b"", mode=0o755)
    musl_target = detect_target(musl, {"Env": [PATH_ENV]}, arch="arm64", launcher=("python3.12",))
    assert uv_python_platform(musl_target) == "aarch64-unknown-linux-musl"
    assert wheel_platform_tag("x86_64-manylinux_2_36") == "manylinux_2_36_x86_64"
    assert wheel_platform_tag("aarch64-unknown-linux-musl") == "musllinux_1_2_aarch64"


def test_rewrite_shebang() -> None:
    body = b"# -*- coding: utf-8 -*-\nimport sys\n"
    expected = b"#!/usr/bin/python3\n" + body
    assert rewrite_shebang(b"#!/root/.venv/bin/python\n" + body, "/usr/bin/python3") == expected
    assert rewrite_shebang(b"#!python\n" + body, "/usr/bin/python3") == expected
    trampoline = b"#!/bin/sh\n'''exec' '/very long/python' \"$0\" \"$@\"\n' '''\n" + body
    assert rewrite_shebang(trampoline, "/usr/bin/python3") == expected
    assert rewrite_shebang(b"#!/bin/bash\necho\n", "/usr/bin/python3") == b"#!/bin/bash\necho\n"
    assert rewrite_shebang(b"\x7fELF", "/usr/bin/python3") == b"\x7fELF"


def test_pip_script_matches_pips_script_maker() -> None:
    script = pip_script("charset_normalizer.cli:cli_detect", "/usr/bin/python3")
    assert script == (
        b"#!/usr/bin/python3\n# -*- coding: utf-8 -*-\nimport re\nimport sys\n"
        b"from charset_normalizer.cli import cli_detect\n"
        b"if __name__ == '__main__':\n"
        b"    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])\n"
        b"    sys.exit(cli_detect())\n"
    )
    dotted = pip_script("pkg.mod:App.run [extra]", "/usr/bin/python3")
    assert dotted is not None
    assert b"from pkg.mod import App\n" in dotted and b"sys.exit(App.run())" in dotted
    assert pip_script("just_a_module", "/usr/bin/python3") is None
    assert pip_shebang("/opt/my venv/bin/python") == (
        b"#!/bin/sh\n'''exec' \"/opt/my venv/bin/python\" \"$0\" \"$@\"\n' '''\n"
    )
    long_path = "/opt/" + "x" * 130 + "/bin/python"
    assert pip_shebang(long_path).startswith(b"#!/bin/sh\n'''exec' /opt/xxx")


def test_script_specs_rename_pips_own_scripts_for_the_image_python() -> None:
    entry_points = (
        "[console_scripts]\npip = pip._internal.cli.main:main\n"
        "pip3 = pip._internal.cli.main:main\npip3.12 = pip._internal.cli.main:main\n"
        "[gui_scripts]\nviewer = pkg.gui:run\n"
    )
    specs, declared = script_specs(entry_points, "3.11")
    assert set(specs) == {"pip", "pip3", "pip3.11", "viewer"}
    assert declared == {"pip", "pip3", "pip3.12", "viewer"}
    assert script_specs("not an ini [", "3.11") == ({}, set())


def test_failure_messages_from_uv_output() -> None:
    target = target_for(debian_base(), pip("pip3 install six"))
    stderr = (
        "Using CPython 3.11.7 interpreter at: /usr/bin/python3.11\n"
        "error: No solution found when resolving dependencies\n"
        "  cause: Because pywin32<=302 has no wheels with a matching Python ABI tag (e.g., `cp311`)"
        " and you require pywin32, we can conclude that your requirements are unsatisfiable.\n"
        "hint: Wheels are available for `pywin32` (v312) on the following platforms: `win32`\n"
    )
    error = _failure(stderr, target, "x86_64-manylinux_2_36")
    assert isinstance(error, NoWheelError) and error.requirements == ("pywin32",)
    assert "Using CPython" not in error.message
    network = _failure(
        "error: Request failed after 3 retries\n  cause: Failed to fetch: "
        "https://***@127.0.0.1:9/simple/six/\n  cause: tcp connect error\n",
        target,
        "x",
    )
    assert isinstance(network, PackageIndexError)
    other = _failure("error: Because there is no version of six==99 ...\n", target, "x")
    assert type(other) is DependencyError and "no version of six==99" in other.message


# -- PyPI ------------------------------------------------------------------------------------------


def install_pypi(
    command: str, fs: MemoryFilesystem, cache: Path, context: Path, arch: str = "amd64"
) -> DependencyLayer:
    install = pip(command)
    target = target_for(fs, install, arch=arch)
    return install_requirements(
        install,
        context_root=context,
        target=target,
        workdir=WORKDIR,
        cache=CacheRoot(cache),
        base=fs,
    )


@pytest.mark.usefixtures("pypi")
def test_pypi_pure_and_compiled_wheels_for_linux_amd64_cp311(
    shared_cache: Path, context: Path
) -> None:
    (context / "adapter_requirements.txt").write_text(
        "six==1.16.0\npyyaml==6.0.2\ncharset-normalizer==3.4.0\n"
    )
    layer = install_pypi(
        "pip3 install -r adapter_requirements.txt --upgrade", debian_base(), shared_cache, context
    )
    assert layer.installed == {"six": "1.16.0", "pyyaml": "6.0.2", "charset-normalizer": "3.4.0"}
    entries = by_path(layer)
    assert all(p.startswith(f"{HOME}/.local") for p in entries)
    assert all((e.uid, e.gid) == (1000, 1000) for e in layer.entries)
    assert f"{SITE}/six.py" in entries
    assert f"{SITE}/yaml/_yaml.cpython-311-x86_64-linux-gnu.so" in entries
    wheel = content(entries[f"{SITE}/PyYAML-6.0.2.dist-info/WHEEL"]).decode()
    tags = [line.split(": ", 1)[1] for line in wheel.splitlines() if line.startswith("Tag: ")]
    assert tags and all(
        t.startswith("cp311-cp311-manylinux") and t.endswith("_x86_64") for t in tags
    )
    assert not any(p.endswith(".pyc") or "__pycache__" in p for p in entries)
    assert content(entries[f"{BIN}/normalizer"]).startswith(b"#!/usr/bin/python3\n")
    assert entries[f"{BIN}/normalizer"].mode == 0o755


@pytest.mark.usefixtures("pypi")
def test_pypi_wheels_follow_the_target_not_the_host(shared_cache: Path, context: Path) -> None:
    arm = install_pypi(
        "pip3 install pyyaml==6.0.2", debian_base(), shared_cache, context, arch="arm64"
    )
    assert f"{SITE}/yaml/_yaml.cpython-311-aarch64-linux-gnu.so" in by_path(arm)
    py312 = install_pypi(
        "pip3 install pyyaml==6.0.2", debian_base(version="3.12"), shared_cache, context
    )
    site312 = f"{HOME}/.local/lib/python3.12/site-packages"
    assert f"{site312}/yaml/_yaml.cpython-312-x86_64-linux-gnu.so" in by_path(py312)


@pytest.mark.usefixtures("pypi")
def test_pypi_markers_are_evaluated_for_the_target(shared_cache: Path, context: Path) -> None:
    command = (
        """pip3 install 'pywin32; sys_platform == "win32"' """
        """'tomli==2.0.1; python_version < "3.12"'"""
    )
    on311 = install_pypi(command, debian_base(), shared_cache, context)
    assert on311.installed == {"tomli": "2.0.1"}
    on312 = install_pypi(command, debian_base(version="3.12"), shared_cache, context)
    assert on312.installed == {} and on312.entries == []


@pytest.mark.usefixtures("pypi")
def test_pypi_respects_pins_in_the_base(shared_cache: Path, context: Path) -> None:
    fs = debian_base()
    fs.add("/usr/lib/python3/dist-packages/idna-3.4.dist-info", FileInfo("dir"))
    plain = install_pypi("pip3 install requests==2.32.3", fs, shared_cache, context)
    assert "requests" in plain.installed and "idna" not in plain.installed
    upgraded = install_pypi("pip3 install -U requests==2.32.3", fs, shared_cache, context)
    assert "idna" not in upgraded.installed  # a dependency: only if needed
    satisfied = install_pypi("pip3 install idna", fs, shared_cache, context)
    assert satisfied.installed == {}
    newest = install_pypi("pip3 install --upgrade idna", fs, shared_cache, context)
    assert newest.installed["idna"] != "3.4"
    assert newest.uninstalled == {}  # the base copy is in Debian's directory: left alone


def test_unreachable_index_is_reported_without_credentials(
    context: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("UV_HTTP_RETRIES", "0")
    command = f"pip3 install -i http://bob:s3cret@127.0.0.1:{port}/simple six==1.16.0"
    with pytest.raises(PackageIndexError) as caught:
        install_pypi(command, debian_base(), tmp_path / "cache", context)
    assert "s3cret" not in caught.value.message and "s3cret" not in repr(caught.value)
    assert f"127.0.0.1:{port}" in caught.value.message
