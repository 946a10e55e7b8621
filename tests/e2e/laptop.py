"""The `lanai` command as a laptop gets it: `pipx install .` from a checkout.

pipx builds the package (not an editable link to this tree) into its own venv and links
the entry point into a bin directory; both live under the test's directory, so a user's
~/.local is never touched. The checkout is copied first, without .git, .venv and build
outputs, so the build writes nothing into the tree under test."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from .harness import REPO_ROOT

_NOT_SHIPPED = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info",
                                      "__pycache__", ".pytest_cache", ".ruff_cache", "artifacts")


def pipx_install(directory: Path) -> Path:
    """Install this checkout with pipx under `directory`; the path of its `lanai`."""
    pipx = shutil.which("pipx")
    if pipx is None:
        pytest.fail("pipx is not installed; the test command (tests/run) installs it with apt")
    source = directory / "checkout"
    shutil.copytree(REPO_ROOT, source, ignore=_NOT_SHIPPED)
    env = {**os.environ, "PIPX_HOME": str(directory / "pipx"),
           "PIPX_BIN_DIR": str(directory / "bin")}
    result = subprocess.run([pipx, "install", str(source)], env=env, capture_output=True,
                            text=True, timeout=900, stdin=subprocess.DEVNULL, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    lanai = directory / "bin" / "lanai"
    assert lanai.is_file(), f"pipx installed no lanai command: {result.stdout}"
    return lanai
