"""`lanai --host`: which commands go to the server over SSH, and the ssh argv that takes them."""

from __future__ import annotations

import shlex


def runs_on_laptop(command: str, args: list[str]) -> bool:
    """Commands that run here and reach the server themselves (a download lands here)."""
    return command == "backup" and any(a == "--download" or a.startswith("--download=")
                                       for a in args)


def remote_argv(host: str, ssh_config: str | None, args: list[str]) -> list[str]:
    """ssh argv that runs `lanai ARGS` on HOST as root (sudo -n unless already root).

    Host keys are checked strictly and nothing prompts: an unknown server fails
    with ssh's own message instead of hanging or trusting it."""
    remote = shlex.join(["lanai", *args])
    command = f'if [ "$(id -u)" = 0 ]; then exec {remote}; else exec sudo -n {remote}; fi'
    argv = ["ssh"]
    if ssh_config:
        argv += ["-F", ssh_config]
    return [*argv, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
            "-o", "ConnectTimeout=20", host, command]


def _args_after_host(argv: list[str]) -> list[str]:
    """The command line without the --host/--ssh-config options (they stay on this side)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in ("--host", "--ssh-config"):
            skip = True
            continue
        if arg.startswith(("--host=", "--ssh-config=")):
            continue
        out.append(arg)
    return out
