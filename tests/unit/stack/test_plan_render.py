"""`lanai plan REF` renders into a directory of its own: the daemon may be rendering the
same commit under deployments/ at that moment (a real git repo, the example state)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

from reconciler.engine.reconcile import Engine
from reconciler.server.secrets import write_secret
from reconciler.server.settings import ServerSettings

REPO_ROOT = Path(__file__).resolve().parents[3]


def test_a_plan_never_touches_the_render_the_daemon_is_writing(tmp_path: Path) -> None:
    work = tmp_path / "work"
    shutil.copytree(REPO_ROOT / "desired-state", work)
    git = ["git", "-C", str(work), "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "state"], check=True)
    commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True,
                            check=True).stdout.strip()
    home = tmp_path / "home"
    settings = ServerSettings(home=home, repo=str(work), branch=None,
                              secrets_file=home / "secrets.env",
                              config_file=home / "server.yaml", deploy_key=home / "key")
    for name in ("WEBUI_SECRET_KEY", "WEBUI_ADMIN_PASSWORD"):
        write_secret(settings.secrets_file, name, f"{name.lower()}-0123456789")
    no_gpu = SimpleNamespace(info=lambda: {"Runtimes": {}},
                             version=lambda: {"Version": "20.10.24", "ApiVersion": "1.41"})
    daemon = Engine(settings, client_factory=lambda: no_gpu)
    daemon.source.fetch()
    done = daemon.preparer.prepare(commit)  # what the daemon renders, to learn the directory's name
    writing = done.directory
    shutil.rmtree(writing)
    writing.mkdir()  # the daemon has moved its export in and is half way through rendering
    (writing / "compose.yaml").write_text("services: {}\n")

    plan = Engine(settings, client_factory=lambda: no_gpu)
    private = settings.deployments_dir / ".plan-test"
    private.mkdir()
    rendered = plan.preparer.prepare(commit, private=private)

    assert rendered.directory == private / writing.name
    assert rendered.services == done.services
    assert sorted(p.name for p in writing.iterdir()) == ["compose.yaml"]
    assert (writing / "compose.yaml").read_text() == "services: {}\n"
