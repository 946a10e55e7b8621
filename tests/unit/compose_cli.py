"""Unit tests that run the real `docker compose config` (the CLI, no engine)."""

from __future__ import annotations

import subprocess

import pytest


def compose_available() -> bool:
    try:
        return subprocess.run(["docker", "compose", "version"], capture_output=True,
                              timeout=20, check=False).returncode == 0
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return False


needs_compose = pytest.mark.skipif(not compose_available(),
                                   reason="needs the `docker compose` CLI (not the engine)")
