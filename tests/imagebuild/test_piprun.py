"""RUN lines that are one pip install: what is accepted, parsed, and refused (with why)."""

from __future__ import annotations

import pytest

from mpkit.imagebuild.piprun import PipInstall, parse_pip_run, redact_url

ACCEPTED: list[tuple[str | list[str], dict[str, object]]] = [
    ("pip install six", {"launcher": ("pip",), "specs": ("six",)}),
    ("pip3 install -r adapter_requirements.txt", {"requirements": ("adapter_requirements.txt",)}),
    ("pip3.11 install --requirement=a.txt -rb.txt --requirement c.txt",
     {"launcher": ("pip3.11",), "requirements": ("a.txt", "b.txt", "c.txt")}),
    ("python -m pip install six", {"launcher": ("python", "-m", "pip")}),
    ("python3 -m pip install six", {"launcher": ("python3", "-m", "pip")}),
    ("/usr/bin/python3 -m pip install six", {"launcher": ("/usr/bin/python3", "-m", "pip")}),
    ("/usr/local/bin/pip3 install six", {"launcher": ("/usr/local/bin/pip3",)}),
    ("pip3 install -r adapter_requirements.txt --upgrade", {"upgrade": True}),
    ("pip install -U six", {"upgrade": True}),
    ("pip install -qU six", {"upgrade": True}),
    ("pip install --upgrade --upgrade-strategy eager six", {"upgrade_strategy": "eager"}),
    ("pip install --no-cache-dir --user six", {"no_cache_dir": True, "user": True}),
    ("pip install -i https://mirror.example/simple six",
     {"index_url": "https://mirror.example/simple"}),
    ("pip install --index-url=https://m/simple --extra-index-url https://x/simple six",
     {"index_url": "https://m/simple", "extra_index_urls": ("https://x/simple",)}),
    ("pip install --find-links ./wheels -f /w --no-index six",
     {"find_links": ("./wheels", "/w"), "no_index": True}),
    ("pip install --trusted-host m.example six", {"trusted_hosts": ("m.example",)}),
    ("pip install -c constraints.txt six", {"constraints": ("constraints.txt",)}),
    ("pip install --constraint=c.txt six", {"constraints": ("c.txt",)}),
    ("pip install --pre --no-deps --prefer-binary six",
     {"pre": True, "no_deps": True, "prefer_binary": True}),
    ("pip install --only-binary :all: six", {"only_binary": (":all:",)}),
    ("pip install --only-binary=a,b six", {"only_binary": ("a", "b")}),
    ("pip install --quiet -q --disable-pip-version-check --root-user-action=ignore six",
     {"specs": ("six",)}),
    ("pip install --root-user-action ignore six", {"specs": ("six",)}),
    ("pip -q --no-cache-dir install six", {"no_cache_dir": False, "specs": ("six",)}),
    ("pip install 'tomli; python_version < \"3.12\"' \"pyyaml==6.0.2\"",
     {"specs": ('tomli; python_version < "3.12"', "pyyaml==6.0.2")}),
    ("pip install 'requests[socks]>=2'", {"specs": ("requests[socks]>=2",)}),
    ("pip install 'pkg @ https://example.com/pkg-1.0-py3-none-any.whl'",
     {"specs": ("pkg @ https://example.com/pkg-1.0-py3-none-any.whl",)}),
    ("pip install \\\n  six  # trailing comment", {"specs": ("six",)}),
    (["pip3", "install", "-r", "req.txt"], {"requirements": ("req.txt",)}),
    (["python3", "-m", "pip", "install", "six>=1"], {"specs": ("six>=1",)}),
    (["/bin/sh", "-c", "pip install six"], {"specs": ("six",)}),
    ("pip install --break-system-packages six", {"break_system_packages": True}),
]  # fmt: skip

REFUSED: list[tuple[str | list[str], str]] = [
    ("apt-get install -y gcc", "not pip"),
    ("pip install six && pip install idna", "shell operator '&&'"),
    ("pip install six; echo done", "shell operator ';'"),
    ("pip install six | tee log", "shell operator '|'"),
    ("pip install requests>=2", "shell operator '>'"),
    ("pip install $PKG", "shell expansion"),
    ("pip install `cat req`", "shell expansion"),
    ("PIP_INDEX_URL=x pip install six", "environment variables"),
    ("pip install -e .", "editable"),
    ("pip install --editable=./src", "editable"),
    ("pip install --target /opt/lib six", "--target"),
    ("pip install -t /opt/lib six", "--target"),
    ("pip install --prefix /opt six", "--prefix"),
    ("pip install --no-binary :all: six", "--no-binary"),
    ("pip install --force-reinstall six", "--force-reinstall"),
    ("pip install --frobnicate six", "--frobnicate is not supported"),
    ("pip install -x six", "-x is not supported"),
    ("pip install .", "local path or URL"),
    ("pip install ./dist/pkg-1.0-py3-none-any.whl", "local path or URL"),
    ("pip install https://example.com/pkg.tar.gz", "local path or URL"),
    ("pip install", "without requirements"),
    ("pip install -r", "needs a value"),
    ("pip uninstall six", "is not 'pip install'"),
    ("pip download six", "is not 'pip install'"),
    ("python3 setup.py install", "other than '-m pip'"),
    ("python3 -m venv /opt/venv", "other than '-m pip'"),
    ("pip install --upgrade-strategy=sometimes six", "upgrade strategy"),
    ("pip install --user=yes six", "takes no value"),
    ("pip install 'unterminated", "does not parse"),
    ([], "empty command"),
]


@pytest.mark.parametrize(("command", "expected"), ACCEPTED)
def test_accepted(command: str | list[str], expected: dict[str, object]) -> None:
    parsed = parse_pip_run(command)
    assert parsed.ok, parsed.reason
    assert parsed.reason == ""
    assert parsed.install is not None
    for name, value in expected.items():
        assert getattr(parsed.install, name) == value, name


@pytest.mark.parametrize(("command", "reason"), REFUSED)
def test_refused_with_reason(command: str | list[str], reason: str) -> None:
    parsed = parse_pip_run(command)
    assert parsed.install is None
    assert not parsed.ok
    assert reason in parsed.reason


def test_defaults() -> None:
    install = parse_pip_run("pip3 install six").install
    assert install == PipInstall(launcher=("pip3",), specs=("six",))
    assert install.upgrade_strategy == "only-if-needed"
    assert install.python_launcher is None
    assert parse_pip_run("python3 -m pip install six").install.python_launcher == "python3"  # type: ignore[union-attr]


def test_repr_and_reason_hide_index_credentials() -> None:
    command = (
        "pip install -i https://bob:s3cret@mirror.example/simple "
        "--extra-index-url https://tok@x.example/simple six"
    )
    install = parse_pip_run(command).install
    assert install is not None
    assert install.index_url == "https://bob:s3cret@mirror.example/simple"  # kept for use
    shown = repr(install)
    assert "s3cret" not in shown and "tok@" not in shown
    assert "mirror.example" in shown
    refused = parse_pip_run("pip install https://bob:s3cret@host/pkg.tar.gz")
    assert "s3cret" not in refused.reason


def test_redact_url() -> None:
    assert redact_url("https://u:p@h/x and http://t@h2") == "https://***@h/x and http://***@h2"
    assert redact_url("https://h/x") == "https://h/x"
