"""The state repo's post-receive hook: a push pokes the reconciler at once.

The hook only asks the daemon to look now (`lanai reconcile --now`), so a push
returns in milliseconds; the poll interval still catches a lost poke.
"""

from __future__ import annotations

import os
import shlex
import stat
from pathlib import Path

MARKER = "# lanai post-receive hook"
PASS_ENV = ("LANAI_CONFIG", "LANAI_HOME")


def hook_script(lanai: str, environ: dict[str, str]) -> str:
    exports = "".join(f"export {name}={shlex.quote(environ[name])}\n"
                      for name in PASS_ENV if environ.get(name))
    return (f"#!/bin/sh\n{MARKER}: tell the reconciler a push arrived (never fails the push).\n"
            f"{exports}"
            f"{shlex.quote(lanai)} reconcile --now >/dev/null 2>&1 || true\n"
            "echo 'lanai: deploy queued; `lanai status` or `lanai history` on the server "
            "shows the result.'\n")


def install_hook(repo: Path, lanai: str, environ: dict[str, str] | None = None) -> Path:
    """Write hooks/post-receive into a bare repo; refuses to overwrite a foreign hook."""
    env = dict(os.environ if environ is None else environ)
    hooks = repo / "hooks"
    if not (repo / "HEAD").is_file() or not hooks.is_dir():
        raise ValueError(f"{repo} is not a bare git repository; create it with "
                         "`git init --bare`.")
    path = hooks / "post-receive"
    if path.exists() and MARKER not in path.read_text(errors="replace"):
        raise ValueError(f"{path} exists and was not written by lanai; merge it by hand "
                         f"(add: {shlex.quote(lanai)} reconcile --now).")
    path.write_text(hook_script(lanai, env))
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path
