"""`lanai --host`: the ssh command line it runs, as exact lists (no server needed)."""

from __future__ import annotations

import subprocess
import sys

from reconciler.cli.remote import _args_after_host, remote_argv


def test_remote_argv_is_strict_non_interactive_and_quoted() -> None:
    argv = remote_argv("ubuntu@gpu-box", None, ["logs", "open-webui", "--tail", "5"])
    assert argv[:-1] == ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                         "-o", "ConnectTimeout=20", "ubuntu@gpu-box"]
    assert argv[-1] == ('if [ "$(id -u)" = 0 ]; then exec lanai logs open-webui --tail 5; '
                        "else exec sudo -n lanai logs open-webui --tail 5; fi")


def test_remote_argv_quotes_what_the_remote_shell_would_split() -> None:
    argv = remote_argv("box", "/home/me/ssh config", ["suspend", "--reason", "GPU swap; $(x)"])
    assert argv[1:3] == ["-F", "/home/me/ssh config"]
    assert "lanai suspend --reason 'GPU swap; $(x)'" in argv[-1]


def test_host_options_stay_on_this_side() -> None:
    assert _args_after_host(["--host", "box", "status", "--json"]) == ["status", "--json"]
    assert _args_after_host(["--host=box", "--ssh-config", "c", "history", "-n", "3"]) == [
        "history", "-n", "3"]


def test_host_option_runs_ssh_and_passes_its_failure_through() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "reconciler", "--host", "admin@lanai-nowhere.invalid",
         "status"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 255  # ssh's own status: it never reached the server
    assert "Could not resolve hostname lanai-nowhere.invalid" in result.stderr
