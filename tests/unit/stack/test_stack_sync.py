"""The stack's part of a reconcile (reconciler.stack.sync): what it does with the prepared
head, and the data hook around a deploy. No Docker: the observations are hand-built and
applying the plan is a stand-in that succeeds or fails."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reconciler.core.errors import ApplyError, ExitCode
from reconciler.server.record import Failure, Outcome, State, Timer
from reconciler.server.settings import ServerSettings
from reconciler.stack import facts as facts_mod
from reconciler.stack.apply import ApplyReport
from reconciler.stack.facts import Facts
from reconciler.stack.plan import Plan
from reconciler.stack.render import Rendered
from reconciler.stack.sync import Run, StackSync

from .test_plan import facts, ollama, rendered, webui


class Hook:
    """A data hook that records what the deploy asked of it."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def pin(self) -> dict[str, Any] | None:
        return None

    def protect(self, desired: Rendered, facts: Facts, applied: Rendered | None,
                outcome: Outcome) -> Callable[[], None] | None:
        self.calls.append("protect")
        return lambda: self.calls.append("put the data back")

    def deployed(self, desired: Rendered) -> None:
        self.calls.append("deployed")


def no_docker() -> Any:
    raise AssertionError("this test never connects to Docker")


def stand_in() -> Any:
    return object()  # what the (stand-in) observations and apply are handed


def stack(tmp_path: Path, hook: Hook, monkeypatch: pytest.MonkeyPatch,
          error: ApplyError | None = None) -> StackSync:
    settings = ServerSettings(home=tmp_path, repo=None, branch=None,
                              secrets_file=tmp_path / "secrets.env",
                              config_file=tmp_path / "server.yaml", deploy_key=tmp_path / "k")
    settings.deployments_dir.mkdir(parents=True)
    sync = StackSync(settings, client=stand_in, client_factory=no_docker,
                     progress=lambda _m: None, step=lambda _m: None,
                     start_interval=lambda: True, inputs=lambda: "the-inputs", data=hook)
    monkeypatch.setattr(facts_mod, "observe", lambda *_a: facts())  # nothing runs yet

    def apply(rendered: Rendered, the_plan: Plan, report: ApplyReport) -> None:
        report.results.append({"kind": "create", "service": "open-webui",
                               "result": "failed" if error else "ok"})
        if error is not None:
            raise error

    monkeypatch.setattr(sync, "_apply", apply)
    return sync


def run(state: State, head: str | None, **kwargs: Any) -> Run:
    return Run(state, head, False, "cli", Timer(), 0.0, **kwargs)


def test_a_deploy_that_went_through_is_applied_and_told_to_the_hook(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hook = Hook()
    desired = rendered("k1", ollama(), webui())
    state = State()
    outcome = stack(tmp_path, hook, monkeypatch).sync(run(state, desired.commit,
                                                          desired=desired))
    assert outcome.status == "applied" and outcome.applied_commit == desired.commit
    assert (state.applied_commit, state.applied_key) == (desired.commit, "k1")
    assert hook.calls == ["protect", "deployed"]


def test_a_failed_upgrade_puts_the_data_back_and_waits_on_the_backoff(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hook = Hook()
    desired = rendered("k1", ollama(), webui())
    state = State()
    sync = stack(tmp_path, hook, monkeypatch, ApplyError("open-webui never turned healthy",
                                                         deterministic=False))
    outcome = sync.sync(run(state, desired.commit, desired=desired))
    assert (outcome.status, outcome.error) == ("failed", "open-webui never turned healthy")
    assert hook.calls == ["protect", "put the data back"]
    assert state.applied_commit is None
    assert state.failure is not None and state.failure.commit == desired.commit
    assert state.failure.inputs == "the-inputs" and state.failure.next_retry is not None


def test_a_head_that_could_not_be_loaded_is_a_failure_of_that_commit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = State()
    outcome = stack(tmp_path, Hook(), monkeypatch).sync(
        run(state, "b" * 40, unloadable=ApplyError("compose.yaml: line 3: bad indentation")))
    assert (outcome.status, outcome.exit_code) == ("failed", ExitCode.APPLY_FAILED)
    assert state.failure is not None and state.failure.deterministic
    assert (state.failure.commit, state.failure.key) == ("b" * 40, None)


def test_a_commit_that_failed_before_waits_and_says_why(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    head = "c" * 40
    state = State(head_commit=head, failure=Failure(
        commit=head, key="k9", error="compose.yaml: no services", exit_code=3,
        deterministic=True))
    outcome = stack(tmp_path, Hook(), monkeypatch).sync(run(state, head))
    assert (outcome.status, outcome.error, outcome.exit_code) == (
        "waiting", "compose.yaml: no services", 3)
    assert outcome.notes == [f"commit {head[:12]} failed before and is not retried until a "
                             "new commit or `lanai reconcile --retry`"]
