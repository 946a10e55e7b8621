"""`lanai setup summary`, and what keeps `lanai setup` in step with bootstrap.sh."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

from reconciler.setup import base
from reconciler.setup.base import SetupPaths
from reconciler.setup.config import GENERATED_SECRETS, Wanted
from reconciler.setup.summary import address, summary_lines
from tests.unit.setup.conftest import REPO_ROOT

SCRIPT = (REPO_ROOT / "bootstrap.sh").read_text(encoding="utf-8")
EXAMPLE = REPO_ROOT / "desired-state"


def test_the_summary_names_the_https_address_the_login_and_the_clone_line(
        paths: SetupPaths) -> None:
    text = "\n".join(summary_lines(paths, Wanted(), EXAMPLE, "192.0.2.7", systemd=True))
    assert "Open WebUI: https://192.0.2.7/ (and https://ai.home.arpa/" in text
    assert "`lanai trust`" in text
    assert f"password: `sudo grep ^WEBUI_ADMIN_PASSWORD= {paths.secrets_file}`" in text
    assert f"  git clone root@192.0.2.7:{paths.state_repo}" in text
    assert f"  git clone {paths.state_repo} " in text
    assert text.endswith("journalctl -u lanai -f")


def test_without_the_proxy_the_summary_names_the_port_and_a_followed_repo(
        paths: SetupPaths, tmp_path: Path) -> None:
    seed = tmp_path / "seed"
    shutil.copytree(EXAMPLE, seed)
    compose = seed / "compose.yaml"
    compose.write_text(compose.read_text().replace('"443:443"', '"8443:443"'))
    lines = summary_lines(paths, Wanted("git@example.invalid:me/s.git", "prod"), seed,
                          "192.0.2.7", systemd=False)
    assert "Open WebUI: http://192.0.2.7:3000" in lines
    assert "State repo: git@example.invalid:me/s.git (push to its prod branch to deploy)" \
        in lines
    assert lines[-1].endswith(f"tail -f {paths.daemon_log}")


def test_the_lan_address_is_not_loopback() -> None:
    assert address() and not address().startswith("127.")


def test_the_json_summary_has_no_secret(env: dict[str, str], venv: Path) -> None:
    result = subprocess.run([str(venv / "bin" / "lanai"), "setup", "summary", "--json",
                             "--example", str(EXAMPLE)], env=env, capture_output=True,
                            text=True, check=True)
    facts = json.loads(result.stdout)
    assert facts["webui_url"].startswith("https://")
    assert facts["admin_email"] == "admin@lanai.home.arpa"
    assert "PASSWORD" not in result.stdout


def test_paths_and_exit_codes_are_bootstraps() -> None:
    """bootstrap.sh does not export its path variables, so both sides need the same
    defaults; `lanai setup` exits with bootstrap's codes."""
    defaults = dict(re.findall(r'^: "\$\{(LANAI_[A-Z_]+):=([^}]*)\}"', SCRIPT, re.M))
    paths = SetupPaths.from_environ({})
    for name, field in (("LANAI_CONFIG", "config"), ("LANAI_SECRETS_FILE", "secrets_file"),
                        ("LANAI_HOME", "home"), ("LANAI_STATE_REPO_DIR", "state_repo"),
                        ("LANAI_OPT", "opt"), ("LANAI_UNIT_FILE", "unit_file"),
                        ("LANAI_DAEMON_LOG", "daemon_log"), ("LANAI_PID_FILE", "pid_file"),
                        ("LANAI_BOOTSTRAP_LOG", "bootstrap_log")):
        assert str(getattr(paths, field)) == defaults[name], name
    assert str(paths.deploy_key) == "/etc/lanai/deploy_key"
    codes = dict(re.findall(r"^(E_[A-Z]+)=(\d+)$", SCRIPT, re.M))
    assert int(codes["E_SETUP"]) == base.E_SETUP and int(codes["E_DAEMON"]) == base.E_DAEMON
    assert re.search(r"^GENERATED_SECRETS=\((.*)\)$", SCRIPT, re.M)[1].split() == \
        list(GENERATED_SECRETS)  # type: ignore[index]
