"""The laptop side: `pipx install .` from a checkout gives a `lanai` command that works
on its own, and `lanai --host` hands the command to ssh intact. No server is booted: the
real-SSH path is tests/e2e/test_bootstrap_remote.py::test_lanai_host_reads_the_server_from_here,
which uses this same installed command."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

from .harness import REPO_ROOT

EXAMPLE_STATE = REPO_ROOT / "desired-state"

# Stands in for the transport only: records its arguments, then runs the remote command
# (the last argument) here with sh, as sshd would run it with the user's shell.
FAKE_SSH = """#!/bin/sh
printf '%s\\n' "$@" > "$SSH_RECORD"
for last; do :; done
exec sh -c "$last"
"""
# The remote command uses `sudo -n` when not root; here that is just the command.
FAKE_SUDO = """#!/bin/sh
[ "$1" = -n ] && shift
exec "$@"
"""


def run(argv: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=180, cwd="/",
                          env=env, stdin=subprocess.DEVNULL, check=False)


def test_the_installed_command_runs_without_the_checkout(laptop_lanai: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = run([str(laptop_lanai), "--help"], env)
    assert result.returncode == 0, result.stderr
    assert "--host" in result.stdout
    for command in ("status", "validate", "backup", "trust"):
        assert f"  {command} " in result.stdout
    # The package it runs is pipx's copy, not this tree (an editable link would hide a
    # module missing from the package).
    python = laptop_lanai.resolve().parent / "python"
    where = run([str(python), "-c", "import reconciler; print(reconciler.__file__)"], env)
    module = Path(where.stdout.strip())
    assert module.is_relative_to(laptop_lanai.parents[1] / "pipx"), where.stdout + where.stderr
    assert not module.is_relative_to(REPO_ROOT)


def _fake_transport(tmp_path: Path, lanai: Path) -> tuple[dict[str, str], Path]:
    """An environment whose ssh runs the remote command here, with `lanai` on PATH."""
    shims = tmp_path / "shims"
    shims.mkdir()
    for name, text in (("ssh", FAKE_SSH), ("sudo", FAKE_SUDO)):
        (shims / name).write_text(text)
        (shims / name).chmod(0o755)
    record = tmp_path / "ssh-args"
    return {**os.environ, "SSH_RECORD": str(record),
            "PATH": f"{shims}:{lanai.parent}:{os.environ['PATH']}"}, record


def test_lanai_host_hands_the_command_to_ssh_intact(laptop_lanai: Path, tmp_path: Path) -> None:
    """Arguments the remote shell would split or expand arrive as written, and the remote
    command's exit status and output come back (here the 'server' is this machine, where
    the same installed lanai is on PATH)."""
    env, record = _fake_transport(tmp_path, laptop_lanai)
    state = tmp_path / "state dir; $(touch pwned) 'x'"
    shutil.copytree(EXAMPLE_STATE, state)
    ssh_config = tmp_path / "ssh config"
    ssh_config.write_text("Host gpu-box\n  HostName 127.0.0.1\n")
    result = run([str(laptop_lanai), "--host", "admin@gpu-box", "--ssh-config",
                  str(ssh_config), "validate", str(state)], env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{state}: valid" in result.stderr
    assert not (Path("/") / "pwned").exists() and not list(tmp_path.rglob("pwned"))
    args = record.read_text().splitlines()
    assert args[:-1] == ["-F", str(ssh_config), "-o", "BatchMode=yes", "-o",
                         "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=20", "admin@gpu-box"]

    compose = state / "compose.yaml"
    compose.write_text(compose.read_text().replace(
        "    image: caddy:2.6.2\n", "    image: caddy:2.6.2\n    privileged: true\n"))
    refused = run([str(laptop_lanai), "--host", "admin@gpu-box", "validate", str(state)], env)
    assert refused.returncode == 2  # the remote lanai's exit status, through ssh
    assert "services.proxy.privileged: privileged: true gives the container" in refused.stderr


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_lanai_host_with_no_server_there_is_ssh_s_own_failure(laptop_lanai: Path,
                                                               tmp_path: Path) -> None:
    """The real ssh client, pointed at a closed port on 127.0.0.1 by the ssh config."""
    ssh_config = tmp_path / "ssh_config"
    ssh_config.write_text(f"Host gpu-box\n  HostName 127.0.0.1\n  Port {_closed_port()}\n")
    result = run([str(laptop_lanai), "--host", "gpu-box", "--ssh-config", str(ssh_config),
                  "status"])
    assert result.returncode == 255, result.stdout + result.stderr
    assert "Connection refused" in result.stderr
