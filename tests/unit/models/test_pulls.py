"""Model pulls off the reconcile (reconciler.models.pulls): the daemon's pull worker's scheduling,
the models step going on while its pull is in flight and finishing once it ends, a commit
that no longer wants the model stopping it, and pull.json as `lanai status` reads it.

The pulls go to the Ollama API double in-process; a gate holds a pull "in flight" for as
long as a test needs it, so nothing here depends on timing."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from reconciler.models import state as models_state
from reconciler.models.ollama import Ollama
from reconciler.models.pulls import (
    PullJob,
    PullResult,
    PullWorker,
    clear_progress,
    load_progress,
    ollama_puller,
    progress_writer,
    run_pull,
)
from reconciler.models.state import server_models
from reconciler.models.sync import ModelsOutcome, ModelSync
from reconciler.stack.render import Rendered

from ..double import serving
from ..models.test_models_sync import FakeContainer, rendered, settings

TINY = "lanai-test:tiny"
PHI3 = "phi3:3.8b-mini-4k-instruct-q4_K_M"
WAIT_S = 30  # a deadline for threads, never a pace


def job(model: str, url: str = "http://127.0.0.1:1") -> PullJob:
    return PullJob(model, url, "not on the server", None, None, 0)


class GatedPuller:
    """A puller that holds each pull until the test opens its gate (or it is cancelled)."""

    def __init__(self, then: Callable[[PullJob, Callable[[], bool]], PullResult] | None = None
                 ) -> None:
        self.gates: dict[str, threading.Event] = {}
        self.started: list[str] = []
        self.began = threading.Condition()
        self.then = then

    def gate(self, model: str) -> threading.Event:
        return self.gates.setdefault(model, threading.Event())

    def __call__(self, pulling: PullJob, cancelled: Callable[[], bool]) -> PullResult:
        with self.began:
            self.started.append(pulling.model)
            self.began.notify_all()
        gate = self.gate(pulling.model)
        while not gate.wait(0.01):
            if cancelled():
                return PullResult(pulling.model, pulling.reason, None, False, 0.0, True)
        if self.then is not None:
            return self.then(pulling, cancelled)
        return PullResult(pulling.model, pulling.reason, None, False, 0.0)

    def wait_started(self, count: int) -> None:
        with self.began:
            assert self.began.wait_for(lambda: len(self.started) >= count, WAIT_S), self.started


class Done:
    """The worker's on_done, as the daemon's queue would see it."""

    def __init__(self) -> None:
        self.results: list[PullResult] = []
        self.cond = threading.Condition()

    def __call__(self, result: PullResult) -> None:
        with self.cond:
            self.results.append(result)
            self.cond.notify_all()

    def wait(self, count: int) -> list[PullResult]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.results) >= count, WAIT_S), self.results
            return list(self.results)


@pytest.fixture
def worker_parts() -> Iterator[tuple[PullWorker, GatedPuller, Done]]:
    puller, done = GatedPuller(), Done()
    worker = PullWorker(puller, done)
    yield worker, puller, done
    for gate in puller.gates.values():
        gate.set()
    worker.stop()


# -- the worker's scheduling -------------------------------------------------------------------

def test_one_pull_at_a_time_in_the_order_handed_over(worker_parts) -> None:
    worker, puller, done = worker_parts
    worker.submit(job("a"))
    worker.submit(job("b"))
    puller.wait_started(1)
    assert worker.running() == "a"
    assert worker.in_flight() == ["a", "b"]
    assert puller.started == ["a"]  # b waits for a
    puller.gate("a").set()
    puller.wait_started(2)
    assert worker.running() == "b"
    assert [r.model for r in done.wait(1)] == ["a"]
    puller.gate("b").set()
    assert [r.model for r in done.wait(2)] == ["a", "b"]
    assert sorted(r.model for r in worker.take_finished()) == ["a", "b"]
    assert worker.take_finished() == []  # taken once
    assert worker.in_flight() == []


def test_a_model_pulling_queued_or_finished_but_not_recorded_is_not_pulled_twice(
        worker_parts) -> None:
    worker, puller, done = worker_parts
    worker.submit(job("a"))
    worker.submit(job("b"))
    worker.submit(job("a"))  # running
    worker.submit(job("b"))  # queued
    assert worker.in_flight() == ["a", "b"]
    puller.gate("a").set()
    done.wait(1)
    worker.submit(job("a"))  # finished, not yet taken by a reconcile
    assert worker.in_flight() == ["b"]
    assert [r.model for r in worker.take_finished()] == ["a"]
    puller.gate("a").clear()
    worker.submit(job("a"))  # recorded: a new pull (a follow check) may start
    assert worker.in_flight() == ["b", "a"]


def test_a_commit_that_no_longer_wants_the_running_pull_stops_it_and_drops_the_queue(
        worker_parts) -> None:
    worker, puller, done = worker_parts
    for model in ("a", "b", "c"):
        worker.submit(job(model))
    puller.wait_started(1)
    assert worker.keep_only({"c"}) == ["a", "b"]
    puller.wait_started(2)  # a stopped at once, b never started: c is next
    assert puller.started == ["a", "c"]
    assert worker.in_flight() == ["c"]
    puller.gate("c").set()
    assert [r.model for r in done.wait(1)] == ["c"]  # a cancelled pull is not news
    assert [r.model for r in worker.take_finished()] == ["c"]


def test_a_puller_that_crashes_ends_as_a_failed_pull_and_the_worker_goes_on() -> None:
    done = Done()
    calls: list[str] = []

    def puller(pulling: PullJob, cancelled: Callable[[], bool]) -> PullResult:
        calls.append(pulling.model)
        if pulling.model == "bad":
            raise RuntimeError("boom")
        return PullResult(pulling.model, pulling.reason, None, False, 0.0)

    worker = PullWorker(puller, done)
    try:
        worker.submit(job("bad"))
        worker.submit(job("good"))
        results = {r.model: r for r in done.wait(2)}
    finally:
        worker.stop()
    assert results["bad"].error == "pulling bad failed: boom"
    assert results["good"].error is None


def test_stop_cancels_the_running_pull_and_forgets_the_queue(worker_parts) -> None:
    worker, puller, _done = worker_parts
    worker.submit(job("a"))
    worker.submit(job("b"))
    puller.wait_started(1)
    worker.stop()
    assert puller.started == ["a"]
    assert worker.in_flight() == []


# -- one pull against the double ------------------------------------------------------------

@pytest.fixture
def ollama_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with serving(tmp_path / "models", monkeypatch) as url:
        yield url


def test_run_pull_ends_as_a_result_pulled_failed_refused_or_cancelled(
        tmp_path: Path, ollama_url: str) -> None:
    with Ollama(ollama_url) as ollama:
        assert run_pull(ollama, job("no-such-model:1b", ollama_url), lambda p: None).error \
            == "pulling no-such-model:1b failed: " + _error_of(ollama, "no-such-model:1b")
        cancelled = run_pull(ollama, job(TINY, ollama_url), lambda p: None, lambda: True)
        assert cancelled.cancelled and cancelled.error is None
        small_disk = PullJob(TINY, ollama_url, "not on the server", 10 * 1024**2, "/srv/ollama",
                             1024**2)
        refused = run_pull(ollama, small_disk, lambda p: None)
        assert refused.deterministic and refused.error is not None
        assert refused.error.startswith(f"not pulling {TINY}: it needs ")
        assert "Ollama's volume (/srv/ollama) has" in refused.error
        pulled = run_pull(ollama, job(TINY, ollama_url), lambda p: None)
        assert pulled.error is None and not pulled.cancelled
        assert TINY in {m.name for m in ollama.tags()}


def _error_of(ollama: Ollama, name: str) -> str:
    try:
        ollama.pull(name)
    except Exception as exc:
        return str(getattr(exc, "message", exc))
    raise AssertionError("the pull should fail")


def test_pull_json_is_written_while_pulling_and_ignored_once_its_process_is_gone(
        tmp_path: Path) -> None:
    from reconciler.models.ollama import PullProgress

    path = tmp_path / "pull.json"
    ticks = iter([0.0, 0.5, 1.5])
    write = progress_writer(path, TINY, clock=lambda: next(ticks))
    write(PullProgress(TINY, "pulling", 1, 4, None, None))
    write(PullProgress(TINY, "pulling", 2, 4, None, None))  # within a second: not written
    data = load_progress(path)
    assert data is not None and data["completed"] == 1 and data["percent"] == 25.0
    write(PullProgress(TINY, "pulling", 3, 4, 10.0, 0.1))
    data = load_progress(path)
    assert data is not None and (data["completed"], data["total"], data["percent"]) == (3, 4, 75.0)
    assert data["pid"] == os.getpid()
    path.write_text(path.read_text().replace(f'"pid": {os.getpid()}', '"pid": 999999999'))
    assert load_progress(path) is None  # left by a daemon that was killed mid-pull
    clear_progress(path, only_own=True)  # another process's: a hand-run reconcile keeps it
    assert path.exists()
    clear_progress(path)
    assert not path.exists()


# -- the models step with the worker -----------------------------------------------------------

def sync_with(tmp_path: Path, worker: PullWorker | None) -> ModelSync:
    return ModelSync(settings(tmp_path), client=None, progress=lambda _m: None,  # type: ignore
                     gpu=lambda: None, pulls=worker)


def converge(tmp_path: Path, url: str, target: Rendered, worker: PullWorker | None
             ) -> ModelsOutcome:
    sync = sync_with(tmp_path, worker)
    out = ModelsOutcome()
    assert target.models is not None
    with Ollama(url) as ollama:
        sync._converge(target, target.models, FakeContainer(), ollama, out, retry=False)
    sync._save()
    return out


def kinds(out: ModelsOutcome) -> list[tuple[str, str]]:
    return [(a["kind"], a["model"]) for a in out.actions]


@pytest.fixture
def gated_worker(tmp_path: Path) -> Iterator[tuple[PullWorker, GatedPuller, Done]]:
    (tmp_path / "home").mkdir()
    puller = GatedPuller(then=ollama_puller(settings(tmp_path).pull_file, lambda _m: None))
    done = Done()
    worker = PullWorker(puller, done)
    yield worker, puller, done
    for gate in puller.gates.values():
        gate.set()
    worker.stop()


def test_the_models_step_goes_on_while_its_pull_is_in_flight_and_finishes_after_it(
        tmp_path: Path, ollama_url: str, gated_worker) -> None:
    worker, puller, done = gated_worker
    target = rendered(tmp_path, f"default: {PHI3}\nlocal:\n  - {PHI3}\n"
                                f"  - name: {TINY}\n    context: 1024\n")
    converge(tmp_path, ollama_url, rendered(tmp_path, f"local:\n  - {PHI3}\n"), None)
    first = converge(tmp_path, ollama_url, target, worker)
    assert first.pulling == [TINY] and first.to_json()["sync"] == "Progressing"
    assert ("pull", TINY) not in kinds(first) and ("tune", TINY) not in kinds(first)
    assert ("warm", PHI3) in kinds(first)  # the rest of the models step did not wait
    puller.wait_started(1)
    again = converge(tmp_path, ollama_url, target, worker)  # a heal's reconcile, meanwhile
    assert again.pulling == [TINY] and puller.started == [TINY]  # not pulled twice
    puller.gate(TINY).set()
    done.wait(1)
    after = converge(tmp_path, ollama_url, target, worker)
    assert after.pulling == [] and after.to_json()["sync"] == "Synced"
    assert ("pull", TINY) in kinds(after) and ("tune", TINY) in kinds(after)
    record = models_state.load(settings(tmp_path).models_file).models[TINY]
    assert record.pulled_at is not None and record.context == 1024
    assert converge(tmp_path, ollama_url, target, worker).actions == []


def test_a_custom_model_waits_for_its_base_to_be_pulled(
        tmp_path: Path, ollama_url: str, gated_worker) -> None:
    worker, puller, done = gated_worker
    (tmp_path / "Modelfile").write_text(f"FROM {TINY}\nSYSTEM You are terse.\n")
    target = rendered(tmp_path, f"local:\n  - {TINY}\n  - name: terse:v1\n"
                                "    modelfile: Modelfile\n")
    first = converge(tmp_path, ollama_url, target, worker)
    assert first.pulling == [TINY] and first.errors == [] and kinds(first) == []
    puller.gate(TINY).set()
    done.wait(1)
    after = converge(tmp_path, ollama_url, target, worker)
    assert ("pull", TINY) in kinds(after) and ("create", "terse:v1") in kinds(after)
    assert after.errors == []


def test_a_newer_commit_without_the_model_stops_its_pull(
        tmp_path: Path, ollama_url: str, gated_worker) -> None:
    worker, puller, done = gated_worker
    converge(tmp_path, ollama_url, rendered(tmp_path, f"local:\n  - {TINY}\n"), worker)
    puller.wait_started(1)
    newer = converge(tmp_path, ollama_url, rendered(tmp_path, f"local:\n  - {PHI3}\n"),
                     worker)
    assert newer.pulling == [PHI3]  # the next model's turn
    puller.wait_started(2)
    assert puller.started == [TINY, PHI3]
    puller.gate(PHI3).set()
    assert [r.model for r in done.wait(1)] == [PHI3]


def test_a_failed_background_pull_is_recorded_with_its_sentence_and_backoff(
        tmp_path: Path, ollama_url: str, gated_worker) -> None:
    worker, puller, done = gated_worker
    target = rendered(tmp_path, "local:\n  - no-such-model:1b\n")
    assert converge(tmp_path, ollama_url, target, worker).pulling == ["no-such-model:1b"]
    puller.gate("no-such-model:1b").set()
    assert done.wait(1)[0].error is not None
    after = converge(tmp_path, ollama_url, target, worker)
    assert after.pulling == [] and after.to_json()["sync"] == "Failed"
    assert after.errors[0].startswith("pulling no-such-model:1b failed: ")
    assert after.next_retry is not None
    record = models_state.load(settings(tmp_path).models_file).models["no-such-model:1b"]
    assert record.error == after.errors[0] and record.failures == 1


def test_a_cli_reconcile_does_not_pull_what_the_daemon_is_pulling(
        tmp_path: Path, ollama_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from reconciler.models.ollama import PullProgress

    (tmp_path / "home").mkdir()
    path = settings(tmp_path).pull_file
    progress_writer(path, TINY)(PullProgress(TINY, "pulling", 5, 10, None, None))
    monkeypatch.setattr(os, "getpid", lambda: 1)  # as if another process wrote it
    out = converge(tmp_path, ollama_url, rendered(tmp_path, f"local:\n  - {TINY}\n"), None)
    assert out.pulling == [TINY] and out.actions == []
    monkeypatch.undo()


# -- what `lanai status` and `lanai models` show -------------------------------------------------

def test_status_says_progressing_with_the_pull_of_this_commit_only(tmp_path: Path) -> None:
    config = rendered(tmp_path, f"local:\n  - {PHI3}\n  - {TINY}\n").models
    assert config is not None
    state = models_state.ModelsState()
    state.record(PHI3).digest = "sha256:1"
    pull = {"model": TINY, "completed": 5, "total": 20, "percent": 25.0}
    data = server_models(config, state, pull)
    assert data["sync"] == "Progressing" and data["pull"] == pull
    assert {r["model"]: r["state"] for r in data["models"]} == {PHI3: "ready", TINY: "pulling"}
    assert server_models(config, state, None)["sync"] == "OutOfSync"  # TINY missing
    leftover = {"model": "gone:1b", "completed": 1, "total": 2}
    assert server_models(config, state, leftover)["pull"] is None
    state.record(TINY).digest = "sha256:2"
    assert server_models(config, state, None)["sync"] == "Synced"
    state.record(TINY).digest, state.record(TINY).error = None, "pulling failed"
    assert server_models(config, state, None)["sync"] == "Failed"

