"""Detecting the image's Python from its filesystem and config (MemoryFilesystem bases
modelled on Debian bookworm with the SDK's user, python:3.11-slim, Alpine and a venv)."""

from __future__ import annotations

from typing import Any

import pytest

from mpkit.errors import TargetError
from mpkit.imagebuild.fsview import FileInfo, MemoryFilesystem
from mpkit.imagebuild.target import (
    canonical_name,
    detect_target,
    effective_user,
    glibc_version,
    parse_env,
    writable,
)

USER = "aria-ops-adapter-user"
HOME = f"/home/{USER}"
DEFAULT_ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
PASSWD = (
    b"root:x:0:0:root:/root:/bin/bash\n"
    b"staff:x:50:50::/nonexistent:/usr/sbin/nologin\n"
    b"aria-ops-adapter-user:x:1000:1000::/home/aria-ops-adapter-user:/bin/sh\n"
)
GROUP = (
    b"root:x:0:\nstaff:x:50:\naria-ops-adapter-user:x:1000:\nextra:x:1500:aria-ops-adapter-user\n"
)
LIBC_236 = (
    b"\x7fELF\x02\x01\x01" + b"\x00" * 64 + b"GLIBC_2.2.5\x00GLIBC_2.34\x00GLIBC_2.36\x00"
    b"GNU C Library (Debian GLIBC 2.36-9+deb12u4) stable release version 2.36.\n"
)


def symlink(fs: MemoryFilesystem, path: str, target: str) -> None:
    fs.add(path, FileInfo("symlink", 0o777, linkname=target))


def bookworm(*, user_site_dists: bool = False) -> MemoryFilesystem:
    """Debian bookworm (merged /usr) with python3 + python3-pip and the SDK's user."""
    fs = MemoryFilesystem()
    for top in ("bin", "lib", "lib64", "sbin"):
        symlink(fs, f"/{top}", f"usr/{top}")
    fs.add_file("/usr/lib/x86_64-linux-gnu/libc.so.6", LIBC_236, mode=0o755)
    fs.add_file("/usr/bin/python3.11", b"\x7fELF", mode=0o755)
    symlink(fs, "/usr/bin/python3", "python3.11")
    symlink(fs, "/usr/local/bin/python", "/usr/bin/python3")
    fs.add_file("/usr/bin/pip3", b"#!/usr/bin/python3\n# -*- coding: utf-8 -*-\n", mode=0o755)
    fs.add_file("/usr/lib/python3.11/os.py", b"")
    packages = "/usr/lib/python3/dist-packages"
    fs.add_file(f"{packages}/pip/__init__.py", b"")
    fs.add(f"{packages}/pip-23.0.1.dist-info", FileInfo("dir", 0o755))
    fs.add(f"{packages}/idna-3.3.egg-info", FileInfo("dir", 0o755))
    fs.add(f"{packages}/Flask-2.2.2.egg-info", FileInfo("dir", 0o755))
    fs.add(f"{packages}/python_apt-2.6.0.egg-info", FileInfo("file", 0o644))
    fs.add("/usr/local/lib/python3.11/dist-packages", FileInfo("dir", 0o2775, 0, 50))
    fs.add_file("/etc/passwd", PASSWD)
    fs.add_file("/etc/group", GROUP)
    fs.add(HOME, FileInfo("dir", 0o755, 1000, 1000))
    fs.add(f"{HOME}/src/app", FileInfo("dir", 0o755))
    if user_site_dists:
        site = f"{HOME}/.local/lib/python3.11/site-packages"
        fs.add(f"{HOME}/.local", FileInfo("dir", 0o755, 1000, 1000))
        fs.add(f"{site}/idna-3.4.dist-info", FileInfo("dir", 0o755, 1000, 1000))
    return fs


def python_slim() -> MemoryFilesystem:
    """python:3.11-slim: a source-built python in /usr/local, root; libc via a versioned
    file name (as in bullseye) to cover that path too."""
    fs = MemoryFilesystem()
    fs.add_file("/lib/x86_64-linux-gnu/libc-2.31.so", b"\x7fELF", mode=0o755)
    symlink(fs, "/lib/x86_64-linux-gnu/libc.so.6", "libc-2.31.so")
    fs.add_file("/usr/local/bin/python3.11", b"\x7fELF", mode=0o755)
    symlink(fs, "/usr/local/bin/python3", "python3.11")
    symlink(fs, "/usr/local/bin/python", "python3")
    fs.add_file("/usr/local/bin/pip3", b"#!/usr/local/bin/python3.11\n", mode=0o755)
    fs.add_file("/usr/local/lib/python3.11/os.py", b"")
    site = "/usr/local/lib/python3.11/site-packages"
    fs.add_file(f"{site}/pip/__init__.py", b"")
    for dist in ("pip-24.0", "setuptools-65.5.1", "wheel-0.43.0"):
        fs.add(f"{site}/{dist}.dist-info", FileInfo("dir", 0o755))
    fs.add_file("/etc/passwd", b"root:x:0:0:root:/root:/bin/bash\n")
    return fs


def alpine() -> MemoryFilesystem:
    fs = MemoryFilesystem()
    fs.add_file("/lib/ld-musl-x86_64.so.1", b"\x7fELF", mode=0o755)
    fs.add_file("/usr/bin/python3.11", b"\x7fELF", mode=0o755)
    symlink(fs, "/usr/bin/python3", "python3.11")
    fs.add_file("/usr/bin/pip3", b"#!/usr/bin/python3\n", mode=0o755)
    fs.add_file("/usr/lib/python3.11/os.py", b"")
    fs.add_file("/usr/lib/python3.11/EXTERNALLY-MANAGED", b"[externally-managed]\n")
    fs.add_file("/usr/lib/python3.11/site-packages/pip/__init__.py", b"")
    fs.add("/usr/lib/python3.11/site-packages/pip-24.0.dist-info", FileInfo("dir", 0o755))
    return fs


def config(user: str = "", env: list[str] | None = None) -> dict[str, Any]:
    return {"User": user, "Env": env or DEFAULT_ENV, "WorkingDir": f"{HOME}/src/app"}


def test_bookworm_with_the_sdk_user_installs_into_the_user_site() -> None:
    target = detect_target(bookworm(), config(USER), launcher=("pip3",))
    assert (target.interpreter, target.executable) == ("/usr/bin/python3", "/usr/bin/python3.11")
    assert (target.version, target.abi, target.implementation) == ("3.11", "cp311", "cp")
    assert (target.libc, target.libc_version, target.arch) == ("glibc", (2, 36), "x86_64")
    assert target.user.name == USER
    assert (target.user.uid, target.user.gid, target.user.home) == (1000, 1000, HOME)
    assert target.user.groups == (1000, 1500)
    assert target.user_install
    assert target.scheme.site == f"{HOME}/.local/lib/python3.11/site-packages"
    assert target.scheme.scripts == f"{HOME}/.local/bin"
    assert target.site_dirs[:3] == (
        f"{HOME}/.local/lib/python3.11/site-packages",
        "/usr/local/lib/python3.11/dist-packages",
        "/usr/lib/python3/dist-packages",
    )
    assert target.installed == {
        "pip": "23.0.1", "idna": "3.3", "flask": "2.2.2", "python-apt": "2.6.0"
    }  # fmt: skip
    assert target.has_pip and not target.externally_managed and target.venv is None
    assert target.full_version is None


def test_bookworm_as_root_installs_into_usr_local_dist_packages() -> None:
    target = detect_target(bookworm(), config(""))
    assert target.user.is_root and target.user.home == "/root"
    assert target.scheme.kind == "system"
    assert target.scheme.site == "/usr/local/lib/python3.11/dist-packages"
    assert target.scheme.scripts == "/usr/local/bin"
    assert target.interpreter == "/usr/bin/python3"  # from pip3's shebang


def test_root_with_user_flag_or_pip_user_env_installs_into_root_home() -> None:
    target = detect_target(bookworm(), config("root"), user_flag=True)
    assert target.scheme.site == "/root/.local/lib/python3.11/site-packages"
    env = [*DEFAULT_ENV, "PIP_USER=1"]
    assert detect_target(bookworm(), config("0", env)).user_install


def test_python_m_pip_uses_the_python_found_on_path_as_sys_executable() -> None:
    target = detect_target(bookworm(), config(USER), launcher=("python", "-m", "pip"))
    assert target.interpreter == "/usr/local/bin/python"
    assert target.executable == "/usr/bin/python3.11"
    explicit = detect_target(bookworm(), config(USER), launcher=("/usr/bin/python3", "-m", "pip"))
    assert explicit.interpreter == "/usr/bin/python3"


def test_user_site_distributions_come_first() -> None:
    target = detect_target(bookworm(user_site_dists=True), config(USER))
    assert target.installed["idna"] == "3.4"
    assert target.distributions["idna"].site_dir == target.scheme.site


def test_python_slim_root_uses_usr_local_site_packages() -> None:
    env = [*DEFAULT_ENV, "PYTHON_VERSION=3.11.9", "LANG=C.UTF-8"]
    target = detect_target(python_slim(), config("", env))
    assert target.interpreter == "/usr/local/bin/python3.11"
    assert target.scheme.kind == "system"
    assert target.scheme.site == "/usr/local/lib/python3.11/site-packages"
    assert target.scheme.scripts == "/usr/local/bin"
    assert (target.libc, target.libc_version) == ("glibc", (2, 31))
    assert target.full_version == "3.11.9"
    assert target.installed == {"pip": "24.0", "setuptools": "65.5.1", "wheel": "0.43.0"}


def test_alpine_is_musl_and_externally_managed() -> None:
    target = detect_target(alpine(), config(""), arch="amd64")
    assert (target.libc, target.libc_version) == ("musl", None)
    assert target.scheme.site == "/usr/lib/python3.11/site-packages"
    assert target.scheme.scripts == "/usr/bin"
    assert target.externally_managed


def test_venv_on_path_is_the_install_scheme() -> None:
    fs = python_slim()
    symlink(fs, "/opt/venv/bin/python", "/usr/local/bin/python3.11")
    symlink(fs, "/opt/venv/bin/python3", "python")
    fs.add_file("/opt/venv/bin/pip", b"#!/opt/venv/bin/python3\n", mode=0o755)
    fs.add_file("/opt/venv/pyvenv.cfg", b"home = /usr/local/bin\nversion = 3.11.9\n")
    fs.add_file("/opt/venv/lib/python3.11/site-packages/pip/__init__.py", b"")
    fs.add("/opt/venv/lib/python3.11/site-packages/pip-24.0.dist-info", FileInfo("dir"))
    env = ["PATH=/opt/venv/bin:/usr/local/bin:/usr/bin:/bin"]
    target = detect_target(fs, config("", env), launcher=("pip",))
    assert target.venv == "/opt/venv"
    assert target.interpreter == "/opt/venv/bin/python3"
    assert target.scheme.kind == "venv"
    assert target.scheme.site == "/opt/venv/lib/python3.11/site-packages"
    assert target.scheme.scripts == "/opt/venv/bin"
    assert target.site_dirs == ("/opt/venv/lib/python3.11/site-packages",)
    with pytest.raises(TargetError, match="virtual environment"):
        detect_target(fs, config("", env), launcher=("pip",), user_flag=True)


def test_writable_site_dir_means_no_user_install() -> None:
    fs = python_slim()
    fs.add_file("/etc/passwd", PASSWD)
    fs.add("/usr/local/lib/python3.11/site-packages", FileInfo("dir", 0o755, 1000, 1000))
    target = detect_target(fs, config("1000:1000"))
    assert target.scheme.kind == "system"
    assert (target.user.uid, target.user.gid) == (1000, 1000)


def test_numeric_user_without_passwd_entry() -> None:
    target = detect_target(bookworm(), config("4242:4242"))
    assert (target.user.uid, target.user.gid, target.user.home) == (4242, 4242, "/")
    assert target.scheme.site == "/.local/lib/python3.11/site-packages"


def test_home_and_pythonuserbase_from_env() -> None:
    env = [*DEFAULT_ENV, "HOME=/data", "PYTHONPATH=/app/lib"]
    target = detect_target(bookworm(), config(USER, env))
    assert target.scheme.site == "/data/.local/lib/python3.11/site-packages"
    assert target.site_dirs[0] == "/app/lib"
    env = [*DEFAULT_ENV, "PYTHONUSERBASE=/opt/pyuser"]
    target = detect_target(bookworm(), config(USER, env))
    assert target.scheme.site == "/opt/pyuser/lib/python3.11/site-packages"
    assert target.scheme.scripts == "/opt/pyuser/bin"


def test_pip_script_with_env_shebang() -> None:
    fs = bookworm()
    fs.add_file("/usr/local/bin/pip", b"#!/usr/bin/env python3\n", mode=0o755)
    target = detect_target(fs, config(USER), launcher=("pip",))
    assert target.interpreter == "/usr/bin/python3"


def test_arm64_uses_the_aarch64_libc() -> None:
    fs = bookworm()
    fs.add_file("/usr/lib/aarch64-linux-gnu/libc.so.6", b"GNU C Library release version 2.36")
    target = detect_target(fs, config(USER), arch="arm64")
    assert target.arch == "aarch64" and target.libc_version == (2, 36)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda fs, cfg: cfg.update(User="nobody-here"), "not in its /etc/passwd"),
        (lambda fs, cfg: cfg.update(User=f"{USER}:nogroup"), "not in its /etc/group"),
        (lambda fs, cfg: cfg.update(Env=["PATH=/nowhere"]), "has no pip3 on its PATH"),
        (lambda fs, cfg: fs.entries.pop("/usr/lib/x86_64-linux-gnu/libc.so.6"), "neither glibc"),
        (lambda fs, cfg: fs.add_file("/usr/bin/pip3", b"\x7fELF", mode=0o755), "not a Python"),
        (lambda fs, cfg: symlink(fs, "/usr/bin/python3", "pypy3"), "dangling"),
    ],
)
def test_unsupported_bases_raise_target_error(change: Any, message: str) -> None:
    fs, cfg = bookworm(), config(USER)
    change(fs, cfg)
    with pytest.raises(TargetError, match=message) as caught:
        detect_target(fs, cfg, launcher=("pip3",))
    assert caught.value.code == "python_target"


def test_unsupported_platforms() -> None:
    with pytest.raises(TargetError, match="only linux"):
        detect_target(bookworm(), config(), os="windows")
    with pytest.raises(TargetError, match="s390x") as caught:
        detect_target(bookworm(), config(), arch="s390x")
    assert "--engine" in (caught.value.hint or "")


def test_pypy_is_refused() -> None:
    fs = python_slim()
    fs.add_file("/usr/local/bin/pypy3.10", b"\x7fELF", mode=0o755)
    symlink(fs, "/usr/local/bin/python3", "pypy3.10")
    with pytest.raises(TargetError, match="PyPy"):
        detect_target(fs, config(), launcher=("python3", "-m", "pip"))


def test_unversioned_binary_falls_back_to_the_stdlib_directory() -> None:
    fs = python_slim()
    fs.add_file("/usr/local/bin/python3", b"\x7fELF", mode=0o755)
    fs.add_file("/usr/local/lib/python3.12/os.py", b"")
    target = detect_target(fs, config(), launcher=("python3", "-m", "pip"))
    assert target.version == "3.12"


def test_glibc_version_from_bytes() -> None:
    assert glibc_version(LIBC_236) == (2, 36)
    assert glibc_version(b"..GLIBC_2.17\x00GLIBC_2.28\x00GLIBC_2.3\x00") == (2, 28)
    assert glibc_version(b"musl") is None


def test_effective_user_group_forms() -> None:
    fs = bookworm()
    assert effective_user(fs, f"{USER}:staff", {}).gid == 50
    assert effective_user(fs, "1000:50", {}).gid == 50
    assert effective_user(fs, "1000", {}).name == USER
    assert effective_user(fs, "", {"HOME": "/x"}).home == "/x"


def test_writable_checks_owner_group_other_and_ancestors() -> None:
    fs = bookworm()
    user = effective_user(fs, USER, {})
    assert not writable(fs, "/usr/local/lib/python3.11/dist-packages", user)  # root:staff 2775
    assert writable(fs, f"{HOME}/.local/lib/python3.11/site-packages", user)  # via $HOME
    fs.add("/srv/shared", FileInfo("dir", 0o775, 0, 1500))
    assert writable(fs, "/srv/shared/x", user)  # supplementary group
    fs.add("/srv/tmp", FileInfo("dir", 0o1777))
    assert writable(fs, "/srv/tmp", user)
    assert writable(fs, "/anything", effective_user(fs, "", {}))


def test_small_helpers() -> None:
    assert canonical_name("Foo_Bar.baz") == "foo-bar-baz"
    assert parse_env(["A=1", "B=x=y", "C"]) == {"A": "1", "B": "x=y", "C": ""}
