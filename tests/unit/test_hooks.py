"""The post-receive hook lanai installs into a bare state repo."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

from reconciler.hooks import MARKER, install_hook


def test_the_hook_is_executable_but_writable_by_its_owner_only(tmp_path: Path) -> None:
    repo = tmp_path / "state.git"
    subprocess.run(["git", "init", "-q", "--bare", str(repo)], check=True)
    hook = repo / "hooks" / "post-receive"
    hook.write_text(f"#!/bin/sh\n{MARKER}: an older one\n")
    hook.chmod(0o775)  # as core.sharedRepository=group and `chmod -R g+rwX` leave it
    install_hook(repo, "/opt/lanai/venv/bin/python", {})
    mode = stat.S_IMODE(hook.stat().st_mode)
    assert mode == 0o755, oct(mode)
    assert os.access(hook, os.X_OK)
