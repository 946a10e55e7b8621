"""A commit in swarm mode on a server that is not the swarm's manager fails with one
sentence naming the manager, before anything on the server is touched (the compose engine
would otherwise deploy it as one box). A real git repo holds the example state as two
servers; Docker's `info` answer is the only stand-in."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

from reconciler.core.errors import ExitCode
from reconciler.engine.reconcile import Engine
from reconciler.server.settings import ServerSettings
from tests.unit.conftest import EXAMPLE_STATE

SWARM = """\
mode: swarm
servers:
  - {name: box-a, ssh: admin@box-a.lan, gpu: none}
  - {name: box-b, ssh: admin@box-b.lan, gpu: rtx-4090}
"""


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=T", "-c", "user.email=t@x.invalid", *args],
                   cwd=cwd, check=True, capture_output=True, text=True)


class NotAManager:
    """docker-py's client as far as `docker info` goes, on a box outside any swarm."""

    def info(self) -> dict[str, Any]:
        return {"Runtimes": {"runc": {}}, "Swarm": {"LocalNodeState": "inactive",
                                                    "ControlAvailable": False}}


def test_a_swarm_commit_off_the_manager_fails_naming_it_and_touches_nothing(
        tmp_path: Path) -> None:
    bare = tmp_path / "state.git"
    git(tmp_path, "init", "-q", "--bare", "--initial-branch=main", str(bare))
    work = tmp_path / "work"
    shutil.copytree(EXAMPLE_STATE, work)
    settings_file = work / "lanai.yaml"
    settings_file.write_text(SWARM + settings_file.read_text(encoding="utf-8"),
                             encoding="utf-8")
    webui = work / "webui.yaml"
    webui.write_text(webui.read_text(encoding="utf-8").replace(
        "  ollama: [http://ollama:11434]\n", ""), encoding="utf-8")
    git(work, "init", "-q", "--initial-branch=main")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "Three servers")
    git(work, "push", "-q", str(bare), "main")
    settings = ServerSettings(home=tmp_path / "home", repo=str(bare), branch="main",
                              secrets_file=tmp_path / "secrets.env",
                              config_file=tmp_path / "server.yaml", deploy_key=tmp_path / "k")
    engine = Engine(settings, progress=lambda _m: None,
                    client_factory=NotAManager)  # type: ignore[arg-type]
    outcome = engine.reconcile(trigger="poll")
    assert outcome.status == "failed"
    assert outcome.exit_code == ExitCode.DOCKER
    assert outcome.error == (
        "lanai.yaml: mode: swarm: this server is not a swarm manager (its swarm state is "
        "inactive), and lanai's daemon deploys a swarm from the manager, box-a; run "
        "bootstrap.sh with box-a first to make the swarm, or keep mode: compose on the branch "
        "this server follows.")
    state = engine.state()
    # Retried on the backoff: making the swarm on the server is the fix, not a new commit.
    assert state.failure is not None and not state.failure.deterministic
    assert state.applied_commit is None
    assert not any(settings.deployments_dir.glob("*"))  # nothing rendered
