"""`lanai setup service`: the systemd unit's text, and the background daemon where there
is no systemd (bootstrap.sh's step 8). The daemon is the `venv` fixture's stand-in."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.setup.base import E_DAEMON, SetupError, SetupPaths
from reconciler.setup.config import Wanted, step_config
from reconciler.setup.service import (
    daemon_pid,
    render_unit,
    step_daemon_background,
    step_daemon_systemd,
    stop_background_daemon,
)
from tests.unit.setup.conftest import REPO_ROOT

UNIT = REPO_ROOT / "packaging" / "lanai.service"


def test_unit_template_renders_without_placeholders_or_secrets(paths: SetupPaths,
                                                                root: Path) -> None:
    unit = render_unit(UNIT.read_text(), paths)
    assert "@" not in unit.replace("multi-user", "")
    directives = [line for line in unit.splitlines() if line and not line.startswith("#")]
    for expected in (f"ExecStart={root}/opt/lanai/venv/bin/lanai run",
                     "Restart=on-failure", "RestartSec=5",
                     "After=docker.service network-online.target",
                     "Wants=docker.service network-online.target",
                     "Environment=PYTHONUNBUFFERED=1",
                     f"Environment=LANAI_CONFIG={root}/etc/lanai/server.yaml",
                     "StandardOutput=journal", "WantedBy=multi-user.target"):
        assert expected in directives, expected
    assert not any("SECRET" in line.upper() and line.startswith("Environment")
                   for line in directives)
    assert "ExecStart=@LANAI@ run" in UNIT.read_text()


def test_a_dry_run_says_the_unit_would_be_installed(
        paths: SetupPaths, root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    step_daemon_systemd(paths, UNIT.read_text(), restart=False, dry_run=True)
    assert f"· daemon: would install {paths.unit_file}" in capsys.readouterr().out
    assert not root.exists()


@pytest.fixture
def background(paths: SetupPaths, venv: Path, capsys: pytest.CaptureFixture[str]
               ) -> Iterator[SetupPaths]:
    """A server with its config, whose daemon is killed at the end whatever happened."""
    step_config(paths, Wanted(), dry_run=False)
    capsys.readouterr()
    yield paths
    with contextlib.suppress(OSError, ValueError):
        os.kill(int(paths.pid_file.read_text()), signal.SIGKILL)


def test_background_daemon_starts_once_restarts_and_stops(
        background: SetupPaths, root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paths = background
    step_daemon_background(paths, restart=False, dry_run=False)
    first = capsys.readouterr()
    assert "started `lanai run` in the background" in first.out
    assert "will not start again after a reboot" in first.err
    pid = int(paths.pid_file.read_text())
    assert daemon_pid(paths.pid_file) == pid
    assert (root / "var" / "lib" / "lanai" / "daemon.sock").is_socket()

    step_daemon_background(paths, restart=False, dry_run=False)
    assert f"already set up and running (pid {pid})" in capsys.readouterr().out
    step_daemon_background(paths, restart=True, dry_run=True)
    assert f"already set up and running (pid {pid})" in capsys.readouterr().out

    step_daemon_background(paths, restart=True, dry_run=False)
    again = int(paths.pid_file.read_text())
    assert again != pid
    assert f"restarted `lanai run` with the new version (pid {again}" in \
        capsys.readouterr().out

    stop_background_daemon(paths.pid_file)
    assert not paths.pid_file.exists()
    assert daemon_pid(paths.pid_file) is None


def test_a_daemon_that_does_not_start_fails_with_its_log(
        background: SetupPaths, venv: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paths = background
    (venv / "bin" / "lanai").write_text("#!/bin/sh\necho 'docker is not running' >&2\n"
                                        "exit 5\n")
    with pytest.raises(SetupError) as failed:
        step_daemon_background(paths, restart=False, dry_run=False)
    assert failed.value.code == E_DAEMON
    assert "`lanai run` did not start" in failed.value.message
    assert "| docker is not running" in capsys.readouterr().err
    assert not paths.pid_file.exists()


def test_a_stale_pid_file_is_no_daemon(paths: SetupPaths) -> None:
    paths.pid_file.parent.mkdir(parents=True)
    paths.pid_file.write_text(f"{os.getpid()}\n")  # alive, but not `lanai run`
    assert daemon_pid(paths.pid_file) is None
    paths.pid_file.write_text("not a pid\n")
    assert daemon_pid(paths.pid_file) is None
