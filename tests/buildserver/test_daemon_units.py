"""Unit tests for the build server's pieces that need no server: frames, settings,
paths, the code fingerprint, routing, and what the server's environment keeps."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mpkit.buildserver import child, control, paths, wire
from mpkit.launcher import SERVED_COMMANDS, _served


def test_frames_split_and_join_across_reads() -> None:
    data = wire.encode(("run", {"argv": ["image", "build"], "umask": 0o22})) + wire.encode(
        ("signal", 2)
    )
    reader = wire.FrameReader()
    got: list[object] = []
    for i in range(len(data)):  # one byte at a time
        got += reader.feed(data[i : i + 1])
    assert got == [("run", {"argv": ["image", "build"], "umask": 0o22}), ("signal", 2)]


def test_bad_frames_are_protocol_errors() -> None:
    with pytest.raises(wire.ProtocolError, match="larger than"):
        wire.FrameReader().feed((wire.MAX_FRAME + 1).to_bytes(4, "big"))
    with pytest.raises(wire.ProtocolError, match="undecodable"):
        wire.FrameReader().feed(b"\x00\x00\x00\x03\xff\xfe\xfd")


@pytest.mark.parametrize(
    ("value", "expected"),
    [("", "auto"), ("AUTO", "auto"), ("on", "on"), ("1", "on"), ("true", "on"),
     ("off", "off"), ("0", "off"), ("no", "off")],
)  # fmt: skip
def test_mode_values(value: str, expected: str) -> None:
    assert paths.mode({paths.ENV_MODE: value}) == expected


def test_bad_mode_and_idle_values() -> None:
    with pytest.raises(ValueError, match="auto, on, off"):
        paths.mode({paths.ENV_MODE: "sometimes"})
    assert paths.idle_seconds({}) == paths.DEFAULT_IDLE_SECONDS
    assert paths.idle_seconds({paths.ENV_IDLE: "2.5"}) == 2.5
    for bad in ("0", "-1"):
        with pytest.raises(ValueError, match="positive"):
            paths.idle_seconds({paths.ENV_IDLE: bad})
    with pytest.raises(ValueError):
        paths.idle_seconds({paths.ENV_IDLE: "soon"})


def test_runtime_directory_precedence(tmp_path: Path) -> None:
    explicit = str(tmp_path / "explicit")
    assert paths.runtime_directory({paths.ENV_DIR: explicit, "XDG_RUNTIME_DIR": "/x"}) == explicit
    assert paths.runtime_directory({"XDG_RUNTIME_DIR": str(tmp_path)}) == str(tmp_path / "mpkit")
    fallback = paths.runtime_directory(
        {"XDG_RUNTIME_DIR": str(tmp_path / "absent"), "TMPDIR": "/t"}
    )
    assert fallback == f"/t/mpkit-{os.getuid()}"


def test_only_a_private_directory_may_hold_the_socket(tmp_path: Path) -> None:
    private = tmp_path / "private"
    paths.ensure_private_directory(str(private), create=True)
    assert stat.S_IMODE(private.stat().st_mode) == 0o700
    private.chmod(0o750)
    with pytest.raises(paths.UnsafeDirectoryError, match="open to other users"):
        paths.ensure_private_directory(str(private), create=False)
    with pytest.raises(paths.UnsafeDirectoryError, match="does not exist"):
        paths.ensure_private_directory(str(tmp_path / "absent"), create=False)
    with pytest.raises(paths.UnsafeDirectoryError, match="longer than"):
        paths.check_socket_path("/tmp/" + "x" * 120)


def test_fingerprint_follows_the_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "mpkit"
    (package / "sub").mkdir(parents=True)
    module = package / "sub" / "module.py"
    module.write_text("A = 1\n")
    (package / "sub" / "module.cpython-311.pyc").write_bytes(b"compiled")
    monkeypatch.setattr(paths, "package_directory", lambda: str(package))
    first = paths.fingerprint()
    assert paths.fingerprint() == first
    (package / "sub" / "module.cpython-311.pyc").write_bytes(b"recompiled")
    assert paths.fingerprint() == first  # bytecode is not code
    module.write_text("A = 22\n")
    assert paths.fingerprint() != first


def test_server_paths_are_per_environment_and_installation(tmp_path: Path) -> None:
    where = paths.server_paths({paths.ENV_DIR: str(tmp_path)})
    assert where.directory == str(tmp_path)
    assert Path(where.socket).parent == tmp_path
    assert where.socket.endswith(".sock") and where.lock.endswith(".lock")
    assert Path(where.socket).stem == Path(where.log).stem


def test_the_server_environment_keeps_no_secrets() -> None:
    env = control.server_environment(
        {
            "PATH": "/usr/bin",
            "HOME": "/home/u",
            "LC_ALL": "C.UTF-8",
            "MPKIT_DAEMON_DIR": "/run/x",
            "MPKIT_REGISTRY_PASSWORD": "secret",
            "AWS_SECRET_ACCESS_KEY": "secret",
            "DOCKER_CONFIG": "/home/u/.docker",
            "PYTHONPATH": "/extra",
        }
    )
    assert "secret" not in env.values()
    assert env["PATH"] == "/usr/bin" and env["MPKIT_DAEMON_DIR"] == "/run/x"
    parent = str(Path(paths.package_directory()).parent)
    assert env["PYTHONPATH"] == f"{parent}{os.pathsep}/extra"


@pytest.mark.parametrize(
    ("prog", "args", "served"),
    [
        ("mpkit", ["build", "."], True),
        ("mpkit", ["--json", "image", "push", "a", "b"], True),
        ("mpkit", ["verify", "x.pak"], True),
        ("mpkit", ["login", "host"], False),
        ("mpkit", ["init"], False),
        ("mpkit", ["daemon", "stop"], False),
        ("mpkit", ["registry", "serve"], False),
        ("mpkit", ["--version"], False),
        ("mp-build", ["--no-ttl"], True),
    ],
)
def test_which_commands_the_server_takes(prog: str, args: list[str], served: bool) -> None:
    assert _served(prog, args) is served
    assert "daemon" not in SERVED_COMMANDS


def test_exit_codes_follow_system_exit(capsys: pytest.CaptureFixture[str]) -> None:
    assert child.exit_code(None) == 0
    assert child.exit_code(3) == 3
    assert child.exit_code("fatal: message") == 1
    assert "fatal: message" in capsys.readouterr().err


def test_a_signal_before_the_command_starts_cancels_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-C while the request is on its way: the signal is held, and when the server
    then goes away the command is not run in-process instead: it is cancelled."""
    import signal
    import socket
    import threading

    from mpkit.buildserver import client

    where = paths.server_paths({paths.ENV_DIR: str(tmp_path)})
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(where.socket)
        listener.listen(1)

        def interrupt_then_hang_up() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)
                os.kill(os.getpid(), signal.SIGINT)  # reaches the client's handler

        helper = threading.Thread(target=interrupt_then_hang_up)
        helper.start()
        code = client.run("mpkit", ["cache"], where, "fingerprint")
        helper.join()
    assert code == 1
    assert "cancelled by the user" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
