"""The state repo's post-receive hook: a push pokes the reconciler at once.

The hook only asks the daemon to look now (reconciler.daemon.control, which imports
almost nothing), so a push returns quickly; the poll interval still catches a
lost poke.
"""

from __future__ import annotations

import os
import shlex
import stat
from pathlib import Path

MARKER = "# lanai post-receive hook"
PASS_ENV = ("LANAI_CONFIG", "LANAI_HOME")


def hook_script(python: str, environ: dict[str, str], socket_path: Path) -> str:
    """The hook runs control.py as a file with `-I -S` (no site-packages, no PYTHON*
    variables): it needs only the standard library and the daemon's socket, named here, so
    a push does not wait for the package and its settings to import."""
    exports = "".join(f"export {name}={shlex.quote(environ[name])}\n"
                      for name in PASS_ENV if environ.get(name))
    control = Path(__file__).with_name("control.py")
    return (f"#!/bin/sh\n{MARKER}: tell the reconciler a push arrived (never fails the push).\n"
            f"{exports}"
            f"exec {shlex.quote(python)} -I -S {shlex.quote(str(control))} "
            f"--socket {shlex.quote(str(socket_path))}\n")


def install_hook(repo: Path, python: str, socket_path: Path,
                 environ: dict[str, str] | None = None) -> Path:
    """Write hooks/post-receive into a bare repo; refuses to overwrite a foreign hook."""
    env = dict(os.environ if environ is None else environ)
    hooks = repo / "hooks"
    if not (repo / "HEAD").is_file() or not hooks.is_dir():
        raise ValueError(f"{repo} is not a bare git repository; create it with "
                         "`git init --bare`.")
    path = hooks / "post-receive"
    if path.exists() and MARKER not in path.read_text(errors="replace"):
        raise ValueError(f"{path} exists and was not written by lanai; merge it by hand "
                         f"(add: {shlex.quote(python)} -m reconciler.daemon.control).")
    path.write_text(hook_script(python, env, socket_path))
    # Executable by all; writable by its owner only: it runs as whoever pushes.
    mode = path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH
    path.chmod(mode & ~(stat.S_IWGRP | stat.S_IWOTH))
    return path
