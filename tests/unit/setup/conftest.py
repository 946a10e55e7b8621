"""Fixtures of the setup tests: every path of a bootstrap run moved under tmp_path by
bootstrap.sh's own LANAI_* variables, and a stand-in for lanai's virtualenv."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from reconciler.setup.base import SetupPaths

REPO_ROOT = Path(__file__).resolve().parents[3]

DEBIAN_12 = """PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
"""

FAKE_DAEMON = """\
import os, signal, socket, sys, time
from reconciler.server.settings import load_settings
path = load_settings().socket_path
path.parent.mkdir(parents=True, exist_ok=True)
server = socket.socket(socket.AF_UNIX)
server.bind(str(path))
server.listen()
signal.signal(signal.SIGTERM, lambda *_: (path.unlink(missing_ok=True), sys.exit(0)))
while True:
    time.sleep(1)
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "root"


@pytest.fixture
def env(root: Path, tmp_path: Path) -> dict[str, str]:
    """The environment of a run whose every path lies under `root`, on Debian 12."""
    os_release = tmp_path / "os-release"
    os_release.write_text(DEBIAN_12)
    base = {k: v for k, v in os.environ.items() if not k.startswith("LANAI_")}
    base.update({
        "LANAI_CONFIG": f"{root}/etc/lanai/server.yaml",
        "LANAI_SECRETS_FILE": f"{root}/etc/lanai/secrets.env",
        "LANAI_HOME": f"{root}/var/lib/lanai",
        "LANAI_STATE_REPO_DIR": f"{root}/srv/lanai/state.git",
        "LANAI_OPT": f"{root}/opt/lanai",
        "LANAI_BIN_LINK": f"{root}/usr/local/bin/lanai",
        "LANAI_UNIT_FILE": f"{root}/etc/systemd/system/lanai.service",
        "LANAI_DAEMON_LOG": f"{root}/var/log/lanai.log",
        "LANAI_PID_FILE": f"{root}/run/lanai.pid",
        "LANAI_BOOTSTRAP_LOG": f"{root}/var/log/lanai-bootstrap.log",
        "LANAI_DOCKERD_LOG": f"{root}/var/log/dockerd.log",
        "LANAI_COMPOSE_PLUGIN_DIR": f"{root}/usr/local/lib/docker/cli-plugins",
        "LANAI_OS_RELEASE": str(os_release),
        "PYTHONPATH": str(REPO_ROOT),
        "TMPDIR": str(tmp_path),
    })
    return base


@pytest.fixture
def venv(root: Path, env: dict[str, str]) -> Path:
    """A stand-in for /opt/lanai/venv: this interpreter, and `lanai` running this checkout.

    `lanai run` is a fake daemon that only opens the control socket.
    """
    bin_dir = root / "opt" / "lanai" / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    (root / "var" / "log").mkdir(parents=True)  # made by install_main before the steps
    (bin_dir / "python").symlink_to(sys.executable)
    daemon = root / "fake_daemon.py"
    daemon.write_text(FAKE_DAEMON)
    lanai = bin_dir / "lanai"
    lanai.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = run ]; then exec "{sys.executable}" "{daemon}" lanai run; fi\n'
        f'exec "{sys.executable}" -m reconciler "$@"\n')
    lanai.chmod(0o755)
    return bin_dir.parent




@pytest.fixture
def paths(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> SetupPaths:
    """bootstrap's paths under tmp_path, in this process's environment too (the steps
    read the server settings from it, as `lanai setup` does)."""
    for name, value in env.items():
        if name.startswith("LANAI_"):
            monkeypatch.setenv(name, value)
    return SetupPaths.from_environ(env)
