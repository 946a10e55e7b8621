"""A reconcile that fails in a way lanai did not foresee still ends recorded (state,
history, `lanai status`), and a running reconcile shows what it does. A real git repo on
disk is the source; the failing phase is made to raise as a real bug would."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from reconciler.core.errors import ExitCode
from reconciler.engine.reconcile import Engine
from reconciler.server import working
from reconciler.server.record import State, read_history
from reconciler.server.settings import ServerSettings
from reconciler.stack.health import build
from reconciler.stack.render import Rendered, load_rendered


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=T", "-c", "user.email=t@x.invalid", *args],
                          cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    bare = tmp_path / "state.git"
    git(tmp_path, "init", "-q", "--bare", "--initial-branch=main", str(bare))
    work = tmp_path / "work"
    git(tmp_path, "clone", "-q", str(bare), str(work))
    (work / "compose.yaml").write_text("services: {}\n")
    git(work, "checkout", "-q", "-b", "main")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "First commit")
    git(work, "push", "-q", "origin", "main")
    settings = ServerSettings(home=tmp_path / "home", repo=str(bare), branch="main",
                              secrets_file=tmp_path / "secrets.env",
                              config_file=tmp_path / "server.yaml", deploy_key=tmp_path / "k")
    return Engine(settings, progress=lambda _m: None)


def non_utf8_name(commit: str) -> Rendered:
    """What encoding a file name that is not UTF-8 raises, as a bug deep in a phase would."""
    raise UnicodeEncodeError("utf-8", "x\udcff.md", 1, 2, "surrogates not allowed")


def test_an_unexpected_exception_is_a_recorded_failure_of_the_head(engine: Engine) -> None:
    engine.preparer.prepare = non_utf8_name  # type: ignore[method-assign]
    outcome = engine.reconcile(trigger="poll")
    head = engine.source.branch_head("main")
    assert (outcome.status, outcome.commit) == ("failed", head)
    assert outcome.exit_code == ExitCode.APPLY_FAILED
    assert outcome.error.startswith(f"lanai failed while loading commit {head[:12]} "
                                    "(UnicodeEncodeError: 'utf-8' codec can't encode")
    state = engine.state()
    assert state.head_commit == head and state.failure is not None
    assert state.failure.error == outcome.error and not state.failure.deterministic
    assert state.failure.next_retry is not None  # retried on the backoff, not in a loop
    [record] = read_history(engine.settings.history_file)
    assert (record["status"], record["error"]) == ("failed", outcome.error)
    status = build(state, None, None, repo=None, suspended=None, daemon=None)
    assert (status.sync, status.last_error) == ("Failed", outcome.error)
    assert not working.file(engine.settings.home).exists()


def test_a_moved_head_is_never_synced_with_the_old_commit(engine: Engine) -> None:
    old = "a" * 40
    engine.save(State(applied_commit=old, head_commit=old))
    engine.preparer.prepare = non_utf8_name  # type: ignore[method-assign]
    engine.reconcile(trigger="poll")
    status = build(engine.state(), None, None, repo=None, suspended=None, daemon=None)
    assert status.sync == "Failed" and status.head_commit != old


def test_a_running_reconcile_shows_what_it_does(engine: Engine) -> None:
    seen = []

    def prepare(commit: str) -> Rendered:
        engine.progress("open-webui settings: uploading knowledge Everything 3/10")
        record = working.read(working.file(engine.settings.home), engine.settings.lock_dir)
        seen.append(build(State(applied_commit=commit, head_commit=commit), None, None,
                          repo=None, suspended=None, daemon=None, working=record))
        raise RuntimeError("stop here")

    engine.preparer.prepare = prepare  # type: ignore[method-assign]
    engine.reconcile()
    [status] = seen
    assert (status.sync, status.doing) == (
        "Progressing", "open-webui settings: uploading knowledge Everything 3/10")
    # Once the reconcile is over, the record is gone; one left by a killed process (its
    # pid does not hold the lock) never counts.
    path = working.file(engine.settings.home)
    assert working.read(path, engine.settings.lock_dir) is None
    working.note(path, "c" * 40, "deploying")
    assert working.read(path, engine.settings.lock_dir) is None


def test_a_part_that_did_not_converge_is_degraded_with_its_sentence() -> None:
    from ..stack.test_report import A, report

    state = State(applied_commit=A, head_commit=A,
                  problems={"open-webui settings": "knowledge Family: a.md: refused."})
    result = report(state)
    assert (result.sync, result.health) == ("Synced", "Degraded")
    assert result.problems == {"open-webui settings": "knowledge Family: a.md: refused."}


def test_a_deployment_of_an_older_lanai_gets_its_documents_from_the_commit(
        tmp_path: Path) -> None:
    from ..conftest import EXAMPLE_STATE

    bare = tmp_path / "state.git"
    git(tmp_path, "init", "-q", "--bare", "--initial-branch=main", str(bare))
    work = tmp_path / "work"
    shutil.copytree(EXAMPLE_STATE, work)
    (work / "docs").mkdir()
    (work / "docs" / "a.md").write_text("# a\n")
    with (work / "webui.yaml").open("a") as handle:
        handle.write("knowledge:\n  - name: Family\n    files: ['docs/*.md']\n")
    git(work, "init", "-q", "--initial-branch=main")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "Knowledge")
    git(work, "push", "-q", str(bare), "main")
    settings = ServerSettings(home=tmp_path / "home", repo=str(bare), branch="main",
                              secrets_file=tmp_path / "secrets.env",
                              config_file=tmp_path / "server.yaml", deploy_key=tmp_path / "k")
    engine = Engine(settings, progress=lambda _m: None)
    engine.source.fetch()
    head = engine.source.branch_head("main")
    deployment = tmp_path / "home" / "deployments" / "old"
    deployment.mkdir(parents=True)
    (deployment / "docs").mkdir()
    (deployment / "docs" / "a.md").write_text("# a\n")
    old = Rendered(directory=deployment, commit=head, key="old", project="lanai",
                   compose_file="compose.yaml", services={})
    listed = engine.preparer.list_documents(old)
    assert listed.documents == {"Family": [
        ["docs/a.md", hashlib.sha256(b"# a\n").hexdigest()]]}
    assert load_rendered(deployment).documents == listed.documents
    assert [p.name for p in (tmp_path / "home" / "deployments").iterdir()] == ["old"]
