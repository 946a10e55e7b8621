"""A commit in swarm mode is refused by this lanai with one sentence, before anything on
the server is touched: the compose engine would otherwise deploy it as one box and ignore
its servers. A real git repo holds the example state as three servers."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from reconciler.core.errors import ExitCode
from reconciler.desired.servers import NOT_DEPLOYABLE_YET
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


def test_a_swarm_commit_fails_with_one_sentence_and_touches_nothing(tmp_path: Path) -> None:
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
    engine = Engine(settings, progress=lambda _m: None)
    outcome = engine.reconcile(trigger="poll")
    assert outcome.status == "failed"
    assert outcome.exit_code == ExitCode.INVALID
    assert NOT_DEPLOYABLE_YET in outcome.error
    state = engine.state()
    assert state.failure is not None and state.failure.deterministic
    assert state.applied_commit is None
    assert not any(settings.deployments_dir.glob("*"))  # nothing rendered
