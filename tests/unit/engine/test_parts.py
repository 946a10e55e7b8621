"""The parts after the stack (models, Open WebUI) go through one step of the engine: a part
with nothing to converge records nothing, and a part's failure, foreseen or not, is its own
error (outcome, `lanai status` problems) and never the stack's. Stand-in parts; no Docker."""

from __future__ import annotations

from pathlib import Path

from reconciler.core.errors import ExitCode, SecretsError
from reconciler.engine.reconcile import Engine
from reconciler.engine.syncer import ModelsSyncer, PartSyncer, WebUISyncer
from reconciler.models.sync import ModelsOutcome
from reconciler.server.record import Outcome, State, Timer
from reconciler.server.settings import ServerSettings
from reconciler.stack.sync import Run


class StandIn:
    """A part that is ready or not, and converges, fails, or raises."""

    def __init__(self, name: str, problem: str, *, ready: bool = True,
                 raises: Exception | None = None, errors: tuple[str, ...] = ()) -> None:
        self.name, self.problem = name, problem
        self.doing = self.what = f"converging {problem}"
        self._ready, self.raises, self.errors = ready, raises, list(errors)

    def ready(self, run: Run) -> bool:
        return self._ready

    def sync(self, run: Run) -> ModelsOutcome:
        if self.raises is not None:
            raise self.raises
        return ModelsOutcome(errors=self.errors)

    def failed(self, errors: list[str]) -> ModelsOutcome:
        return ModelsOutcome(errors=errors)

    def summary(self, errors: list[str]) -> str:
        return errors[0]


def engine(tmp_path: Path) -> Engine:
    return Engine(ServerSettings(home=tmp_path, repo=None, branch=None,
                                 secrets_file=tmp_path / "secrets.env",
                                 config_file=tmp_path / "server.yaml", deploy_key=tmp_path / "k"),
                  progress=lambda _m: None)


def after_a_deploy() -> Run:
    return Run(State(), "a" * 40, False, "poll", Timer(), 0.0,
               outcome=Outcome("applied", applied_commit="a" * 40))


def test_the_models_and_open_webui_syncers_are_parts(tmp_path: Path) -> None:
    parts: list[PartSyncer] = engine(tmp_path)._parts()
    assert [type(p) for p in parts] == [ModelsSyncer, WebUISyncer]
    assert [(p.name, p.problem) for p in parts] == [("models", "models"),
                                                    ("webui", "open-webui settings")]


def test_a_part_with_nothing_to_converge_records_nothing(tmp_path: Path) -> None:
    run = after_a_deploy()
    engine(tmp_path)._converge(StandIn("models", "models", ready=False), run)
    assert run.outcome is not None and run.outcome.models == {}
    assert run.timer.marks == {} and run.state.problems == {}


def test_a_part_that_raises_is_that_parts_error_and_the_first_one_leads(
        tmp_path: Path) -> None:
    run, lanai = after_a_deploy(), engine(tmp_path)
    lanai._converge(StandIn("models", "models", raises=KeyError("digest")), run)
    lanai._converge(StandIn("webui", "open-webui settings",
                            raises=SecretsError("secrets.env is readable by others")), run)
    outcome = run.outcome
    assert outcome is not None and outcome.status == "applied"  # the stack's, untouched
    [models_error] = outcome.models["errors"]
    assert models_error.startswith("lanai failed while converging models (KeyError: 'digest')")
    assert outcome.webui["errors"] == ["secrets.env is readable by others"]
    assert (outcome.error, outcome.exit_code) == (models_error, ExitCode.APPLY_FAILED)
    assert run.state.problems == {"models": models_error,
                                  "open-webui settings": "secrets.env is readable by others"}
    assert set(run.timer.marks) == {"models", "webui"}


def test_a_part_that_converges_clears_its_problem(tmp_path: Path) -> None:
    run = after_a_deploy()
    run.state.problems = {"models": "llama3: pull failed"}
    engine(tmp_path)._converge(StandIn("models", "models"), run)
    assert run.state.problems == {}
    assert run.outcome is not None and run.outcome.exit_code == ExitCode.OK
