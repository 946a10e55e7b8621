"""The post-receive hook lanai writes: what it runs, and that it imports no package."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.daemon import control
from reconciler.daemon.hooks import MARKER, install_hook


def bare_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "state.git"
    subprocess.run(["git", "init", "--quiet", "--bare", str(repo)], check=True)
    return repo


def test_the_hook_names_the_socket_and_runs_control_py_isolated(tmp_path: Path) -> None:
    socket_path = tmp_path / "run" / "lanai.sock"
    path = install_hook(bare_repo(tmp_path), sys.executable, socket_path,
                        {"LANAI_HOME": "/var/lib/lanai x", "OTHER": "no"})
    lines = path.read_text().splitlines()
    assert lines[1].startswith(MARKER)
    assert lines[2] == "export LANAI_HOME='/var/lib/lanai x'"
    control_py = Path(control.__file__)
    assert lines[3] == f"exec {sys.executable} -I -S {control_py} --socket {socket_path}"


def test_the_hook_without_a_daemon_stores_the_push_and_says_how_to_deploy(
        tmp_path: Path) -> None:
    """Run as the hook runs it: -I -S, so a package import would fail here."""
    path = install_hook(bare_repo(tmp_path), sys.executable, tmp_path / "none.sock", {})
    result = subprocess.run(["sh", str(path)], capture_output=True, text=True, timeout=30,
                            check=False, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.startswith("lanai: the reconciler daemon is not running")


@pytest.mark.parametrize(("reply", "line"), [
    ({"done": True, "sync": "Synced", "status": "applied", "applied_commit": "a" * 40},
     f"lanai: Synced at {'a' * 12} (applied)"),
    ({"done": True, "sync": "Failed", "status": "failed", "commit": "b" * 40,
      "error": "compose.yaml:3: x is wrong; fix it and push again."},
     "lanai: Failed: compose.yaml:3: x is wrong; fix it and push again."),
])
def test_result_line(reply: dict[str, object], line: str) -> None:
    assert control.result_line(reply) == line


def test_the_hook_is_executable_but_writable_by_its_owner_only(tmp_path: Path) -> None:
    repo = bare_repo(tmp_path)
    hook = repo / "hooks" / "post-receive"
    hook.write_text(f"#!/bin/sh\n{MARKER}: an older one\n")
    hook.chmod(0o775)  # as core.sharedRepository=group and `chmod -R g+rwX` leave it
    install_hook(repo, "/opt/lanai/venv/bin/python", tmp_path / "lanai.sock", {})
    mode = stat.S_IMODE(hook.stat().st_mode)
    assert mode == 0o755, oct(mode)
    assert os.access(hook, os.X_OK)
