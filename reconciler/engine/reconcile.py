"""One reconcile: fetch -> prepare -> the stack -> models -> Open WebUI -> record.

A new commit is deployed; a commit that fails leaves (or puts back) the last
good deployment; with nothing new, the live stack is checked for drift and,
with self-heal on, healed within the restart limit. Each part is a Syncer
(reconciler.engine.syncer); the engine only runs them in order and records.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import docker

from reconciler.backup.guard import DataGuard
from reconciler.backup.store import Backup
from reconciler.core.errors import ApplyError, ExitCode, LanaiError, SourceError
from reconciler.core.files import write_json_atomic
from reconciler.desired.source import GitSource
from reconciler.engine.prepare import Preparer
from reconciler.engine.syncer import ModelsSyncer, PartSyncer, WebUISyncer
from reconciler.models import state as models_state
from reconciler.models.fleet import ServerAccess, unavailable
from reconciler.models.pulls import PullWorker
from reconciler.models.sync import first_gpu
from reconciler.notify.drift_report import model_records
from reconciler.server import working
from reconciler.server.lock import Lock
from reconciler.server.record import (
    Outcome,
    State,
    Timer,
    append_history,
    load_state,
    now_iso,
    save_state,
)
from reconciler.server.settings import ServerSettings
from reconciler.stack import facts as facts_mod
from reconciler.stack.render import Rendered
from reconciler.stack.sync import Run, StackSync, applied_deployment
from reconciler.swarm import facts as swarm_facts
from reconciler.swarm import migrate, relay
from reconciler.swarm.sync import SwarmSync
from reconciler.webui.sync import WebUISync

log = logging.getLogger("lanai")


def servers_down(drift: list[dict[str, Any]] | None) -> set[str]:
    """The servers a stack check found down or gone (swarm mode's drift)."""
    return {str(d.get("service")) for d in drift or []
            if d.get("kind") in ("server-down", "server-absent", "server-drained")}


@dataclass
class Before:
    """What the last reconcile left, so the history records what changed."""

    source_error: str | None
    drift: list[dict[str, Any]]
    models: tuple[tuple[str, str | None, str | None], ...] = ()
    problems: dict[str, str] = field(default_factory=dict)


class Engine:
    def __init__(self, settings: ServerSettings, *,
                 client_factory: Callable[[], docker.DockerClient] = facts_mod.connect,
                 progress: Callable[[str], None] | None = None) -> None:
        self.settings = settings
        self.client_factory = client_factory
        self._report = progress or (lambda msg: log.info(msg))
        self._doing: tuple[str | None, str] | None = None  # this reconcile: commit, step
        self._client: docker.DockerClient | None = None
        self._source: GitSource | None = None
        self._gpu_info: tuple[str, int] | tuple[()] | None = None
        self._webui_tokens: dict[str, str] = {}  # Open WebUI session per URL: sign in once
        self.pulls: PullWorker | None = None  # the daemon's; None: pulls in the foreground
        # The parts get the client and the source through the engine: both are made on
        # first use, and `lanai status` must not need Docker or the repo to start.
        self.preparer = Preparer(settings, source=lambda: self.source,
                                 client=lambda: self.client, step=self._step)
        self.guard = DataGuard(settings, client=lambda: self.client, progress=self.progress)
        self.stack = StackSync(settings, client=lambda: self.client,
                               client_factory=lambda: self.client_factory(),
                               progress=self.progress, step=self._step,
                               start_interval=self.preparer.start_interval,
                               inputs=self.preparer.server_inputs, data=self.guard,
                               leave=lambda r: migrate.leave_stack(self.client, r.project,
                                                                   self.progress))
        self.swarm = SwarmSync(settings, client=lambda: self.client,
                               client_factory=lambda: self.client_factory(),
                               progress=self.progress, step=self._step,
                               start_interval=self.preparer.start_interval,
                               inputs=self.preparer.server_inputs, data=self.guard,
                               cli_version=self.preparer.cli_version)

    def stack_for(self, run: Run) -> StackSync:
        """Compose or Swarm, by the mode of the commit being deployed, else of the applied
        one. (A commit that changes the mode deploys with the new one; the old mode's
        containers are not moved: see README, Several servers.)"""
        rendered = run.desired or run.applied
        return self.swarm if rendered is not None and rendered.mode == "swarm" else self.stack

    # -- plumbing -----------------------------------------------------------------

    def progress(self, message: str) -> None:
        """Report a step; during a reconcile it is also what `lanai status` shows."""
        self._report(message)
        if self._doing is not None:
            with contextlib.suppress(OSError):  # status is a courtesy, never a failure
                working.note(working.file(self.settings.home), self._doing[0], message)

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            self._client = self.client_factory()
        return self._client

    @property
    def source(self) -> GitSource:
        if self._source is None:
            self._source = GitSource(self.settings.require_repo(), self.settings.clone_dir,
                                     self.settings.deploy_key)
        return self._source

    def lock(self, purpose: str = "reconcile") -> Lock:
        return Lock(self.settings.lock_dir, purpose)

    def suspended(self) -> dict[str, Any] | None:
        """Suspension lives in its own file so a running reconcile cannot overwrite it."""
        try:
            return json.loads(self.settings.suspend_file.read_text())
        except FileNotFoundError:
            return None
        except json.JSONDecodeError:
            return {}

    def suspend(self, reason: str | None) -> None:
        write_json_atomic(self.settings.suspend_file, {"since": now_iso(), "reason": reason})

    def resume(self) -> bool:
        try:
            self.settings.suspend_file.unlink()
        except FileNotFoundError:
            return False
        return True

    def state(self) -> State:
        return load_state(self.settings.state_file)

    def save(self, state: State) -> None:
        save_state(self.settings.state_file, state)

    def applied(self, state: State) -> Rendered | None:
        return applied_deployment(self.settings, state)

    def deployed(self) -> Rendered | None:
        """The deployment applied now, as state.json names it."""
        return self.applied(self.state())

    def gpu_info(self) -> tuple[str, int] | None:
        """The first NVIDIA GPU: name and memory in bytes (asked once per process: nvidia-smi
        takes a while)."""
        if self._gpu_info is None:
            self._gpu_info = first_gpu() or ()
        return self._gpu_info or None

    def backup(self, *, kind: str, reason: str) -> Backup | None:
        """A backup of the applied deployment's data now (under the reconcile lock)."""
        with self.lock("backup"):
            return self.guard.backup(self.deployed(), kind=kind, reason=reason)

    # -- the loop -----------------------------------------------------------------

    def reconcile(self, *, trigger: str = "manual", retry: bool = False,
                  force: bool = False) -> Outcome:
        with self.lock():
            self._doing = (None, "fetching the state repo")
            try:
                return self._reconcile(trigger=trigger, retry=retry, force=force)
            except Exception as exc:  # any failure ends recorded, never lost
                return self._crashed(exc, trigger)
            finally:
                self._doing = None
                working.clear(working.file(self.settings.home))

    def _step(self, what: str, commit: str | None = None) -> None:
        """What this reconcile does now, named in the sentence if it fails unexpectedly."""
        if self._doing is not None:
            self._doing = (commit or self._doing[0], what)

    def _crashed(self, exc: Exception, trigger: str) -> Outcome:
        """An unexpected failure (a bug, or something lanai does not know yet) ends like any
        failed reconcile: one sentence in the state, the history and the notices; the
        traceback goes to the log. It is retried on the transient backoff."""
        log.error("reconcile (%s) failed unexpectedly", trigger, exc_info=exc)
        commit, what = self._doing or (None, "reconciling")
        state = self.state()  # what the failed reconcile had saved
        commit = commit or state.head_commit
        error = ApplyError(unexpected(what, exc), deterministic=False,
                           exit_code=exc.exit_code if isinstance(exc, LanaiError) else None)
        outcome = Outcome("failed", commit=commit, applied_commit=state.applied_commit)
        if commit is not None:
            state.head_commit = commit
            self.stack.fail(state, commit, None, error, outcome)
            assert state.failure is not None
            state.failure.phase = what
        else:
            outcome.error, outcome.exit_code = error.message, int(error.exit_code)
        state.last_check = now_iso()
        with contextlib.suppress(Exception):
            self.save(state)
        with contextlib.suppress(Exception):
            append_history(self.settings.history_file,
                           {"at": now_iso(), "trigger": trigger, **outcome.to_json(),
                            "subject": None})
        return outcome

    def _reconcile(self, *, trigger: str, retry: bool, force: bool) -> Outcome:
        timer = Timer()
        state = self.state()
        if self.suspended() is not None and not force:
            return Outcome("suspended", applied_commit=state.applied_commit,
                           exit_code=ExitCode.SUSPENDED,
                           error="reconciliation is suspended; run `lanai resume` to catch up.")
        head, source_error, mark = self._fetch(state, timer)
        before = Before(source_error=state.source_error, drift=state.drift)
        self.guard.follow(head)
        state.source_error = source_error.message if source_error else None
        run = Run(state, head, retry, trigger, timer, mark, applied=self.applied(state))
        self.preparer.choose(run)
        run.outcome = outcome = self.stack_for(run).sync(run)  # first: its outcome leads
        before.models, before.problems = self._models_summary(), dict(state.problems)
        # A commit with the same files as the applied one changes no model or setting; after
        # a clean last sync there is nothing to read (the polls' drift checks still do).
        # In swarm mode a server going down or coming back changes what the parts converge
        # (its models left out, its Open WebUI connection off or on again), with no push.
        servers_moved = servers_down(before.drift) != servers_down(state.drift)
        if outcome.status != "failed" and not (run.same_files and not state.problems
                                               and self._syncs_clean() and not servers_moved):
            # Read once, after the stack: it may just have deployed another commit.
            run.deployed = self.applied(state)
            for part in self._parts():  # then models, then Open WebUI
                self._converge(part, run)
        self._record(run, outcome, source_error, before)
        return outcome

    def _fetch(self, state: State, timer: Timer) -> tuple[str | None, SourceError | None, float]:
        """The head of the branch to follow, or why git could not be asked."""
        mark = time.monotonic()
        try:
            self.source.fetch()
            branch = self.preparer.branch()
            head = self.source.branch_head(branch)
            state.branch, state.head_commit = branch, head
            self._step(f"checking commit {head[:12]}", head)
        except SourceError as exc:
            return None, exc, timer.lap("fetch", mark)
        return head, None, timer.lap("fetch", mark)

    def _record(self, run: Run, outcome: Outcome, source_error: SourceError | None,
                before: Before) -> None:
        """The state, and the history when something happened."""
        state, head, timer = run.state, run.head, run.timer
        if source_error is not None:
            if outcome.status in ("no-op", "waiting"):
                outcome.status = "source-error"
                outcome.error = source_error.message
                outcome.exit_code = ExitCode.SOURCE
            else:
                outcome.notes.append(source_error.message)
        outcome.commit = head
        outcome.durations["total"] = timer.total()
        outcome.durations.update(timer.marks)
        state.last_check = now_iso()
        state.last_check_ms = round(outcome.durations["total"] * 1000, 1)
        self.save(state)
        # The history is for events, not polls: drift left alone is recorded when it changes.
        interesting = outcome.status not in ("no-op", "suspended", "waiting", "source-error",
                                             "drift") \
            or (outcome.status == "drift" and outcome.drift != before.drift) \
            or (outcome.status == "source-error" and before.source_error is None) \
            or (before.source_error is not None and source_error is None) \
            or bool(outcome.models.get("actions")) or _any_done(outcome.webui) \
            or self._models_summary() != before.models or state.problems != before.problems
        if interesting:
            append_history(self.settings.history_file,
                           {"at": now_iso(), "trigger": run.trigger, **outcome.to_json(),
                            "subject": self._subject(head)})

    def _parts(self) -> list[PartSyncer]:
        """The parts that follow the stack, in order (made per reconcile: the daemon sets
        self.pulls after the engine is made)."""
        # Swarm mode: each Ollama and Open WebUI through the relay on this host, who is down
        # from the swarm's facts (asked only for a commit in swarm mode).
        access = ServerAccess(urls=lambda r: relay.ollama_urls(self.client, r.project),
                              facts=lambda r: swarm_facts.gather(self.client, r.project))
        return [
            ModelsSyncer(self.settings, lambda: self.client, progress=self.progress,
                         gpu=self.gpu_info, pulls=self.pulls, save=self.save, servers=access),
            WebUISyncer(self.settings, lambda: self.client, progress=self.progress,
                        tokens=self._webui_tokens, list_documents=self.preparer.list_documents,
                        down=lambda r: list(unavailable(access.facts(r), r.config.servers)),
                        url=lambda r: relay.webui_url(self.client, r.project)),
        ]

    def _converge(self, part: PartSyncer, run: Run) -> None:
        """One part after the stack: never blocking it, its failure is its own error."""
        if not part.ready(run):
            return
        assert run.outcome is not None  # the stack synced first
        outcome, state = run.outcome, run.state
        mark = time.monotonic()
        self._step(part.doing)
        try:
            result = part.sync(run)
        except LanaiError as exc:  # foreseen (an unsafe secrets file): the outcome says it
            result = part.failed([exc.message])
        except Exception as exc:  # a part's failure is the part's error
            log.error("%s failed unexpectedly", part.doing, exc_info=exc)
            result = part.failed([unexpected(part.what, exc)])
        run.timer.lap(part.name, mark)
        setattr(outcome, part.name, result.to_json())  # Outcome has a field per part
        _part(state, part.problem, result.errors)
        if result.errors and outcome.exit_code == ExitCode.OK:
            outcome.exit_code = ExitCode.APPLY_FAILED
            outcome.error = part.summary(result.errors)

    def _models_summary(self) -> tuple[tuple[str, str | None, str | None], ...]:
        """Per model: error and drift, so the history records when either changes (in
        swarm mode each server's records, which its own file holds)."""
        applied = self.deployed()
        if applied is not None and applied.mode == "swarm" and applied.models is not None:
            return tuple((name, rec.error, rec.drift)
                         for name, rec in model_records(self.settings, applied))
        models = models_state.load(self.settings.models_file).models
        return tuple((name, rec.error, rec.drift) for name, rec in sorted(models.items()))

    def _syncs_clean(self) -> bool:
        """The last model and Open WebUI syncs left no error behind."""
        if any(error for _, error, _ in self._models_summary()):
            return False
        try:
            last = json.loads(WebUISync.state_path(self.settings).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return True
        except (OSError, ValueError):
            return False
        return not last.get("errors")

    def _subject(self, commit: str | None) -> str | None:
        if not commit:
            return None
        try:
            return self.source.info(commit).subject
        except Exception:
            return None


def unexpected(what: str, exc: Exception) -> str:
    """The sentence for a failure lanai did not foresee (its traceback goes to the log)."""
    detail = exc.message if isinstance(exc, LanaiError) else \
        f"{type(exc).__name__}: {str(exc).strip() or 'no message'}"
    return (f"lanai failed while {what} ({detail}); the full error is in the daemon's log "
            "(`journalctl -u lanai`); lanai tries again (or `lanai reconcile --retry`).")


def _any_done(part: dict[str, Any]) -> bool:
    """Whether a part changed something; a failure repeated each poll is recorded once, when
    the part's error (state.problems) changes."""
    return any(a.get("result") == "ok" for a in part.get("actions") or [])


def _part(state: State, part: str, errors: list[str]) -> None:
    """Keep a part's first error for `lanai status` (Degraded), until it converges."""
    if errors:
        state.problems[part] = errors[0] + (f" (and {len(errors) - 1} more)"
                                            if len(errors) > 1 else "")
    else:
        state.problems.pop(part, None)
