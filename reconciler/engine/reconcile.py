"""One reconcile: fetch -> load -> observe -> plan -> apply -> record.

A new commit is deployed; a commit that fails leaves (or puts back) the last
good deployment; with nothing new, the live stack is checked for drift and,
with self-heal on, healed within the restart limit.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import docker

from reconciler.backup import run as backup_run
from reconciler.backup.store import Backup, Store, backup_for, is_rollback
from reconciler.core.errors import (
    ApplyError,
    BackupError,
    DockerError,
    ExitCode,
    LanaiError,
    SourceError,
)
from reconciler.core.files import write_json_atomic
from reconciler.desired import load as desired_mod
from reconciler.desired.lanai_yaml import LanaiConfig
from reconciler.desired.source import GitSource
from reconciler.https.caddyfile import lan_ip
from reconciler.models import state as models_state
from reconciler.models.pulls import PullWorker
from reconciler.models.sync import ModelsOutcome, ModelSync, first_gpu
from reconciler.server import working
from reconciler.server.lock import Lock
from reconciler.server.record import (
    Failure,
    State,
    append_history,
    iso,
    load_state,
    now_iso,
    parse_iso,
    save_state,
)
from reconciler.server.secrets import read_secrets, require
from reconciler.server.settings import ServerSettings
from reconciler.stack import facts as facts_mod
from reconciler.stack import gpu_health, readiness, tool_versions
from reconciler.stack.apply import Applier, ApplyReport
from reconciler.stack.plan import Drift, Plan, plan
from reconciler.stack.render import (
    DESIRED_FILE,
    Rendered,
    discard,
    load_rendered,
    render,
    render_key,
)
from reconciler.webui.sync import WebUIOutcome, WebUISync

log = logging.getLogger("lanai")
KEEP_DEPLOYMENTS = 10


@dataclass
class Outcome:
    """What one reconcile did; rendered by the CLI and written to the history."""

    status: str  # no-op, applied, healed, drift, failed, waiting, suspended, source-error
    commit: str | None = None
    applied_commit: str | None = None
    actions: list[dict[str, Any]] = field(default_factory=list)
    drift: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    exit_code: int = ExitCode.OK
    rolled_back_to: str | None = None
    durations: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    models: dict[str, Any] = field(default_factory=dict)  # what models.yaml's converge did
    webui: dict[str, Any] = field(default_factory=dict)  # what webui.yaml's converge did
    backup: str | None = None  # the backup taken before this commit's upgrade, if any

    def to_json(self) -> dict[str, Any]:
        return dict(vars(self))


class Timer:
    def __init__(self) -> None:
        self.marks: dict[str, float] = {}
        self._start = time.monotonic()

    def lap(self, name: str, since: float) -> float:
        now = time.monotonic()
        self.marks[name] = round(self.marks.get(name, 0) + now - since, 4)
        return now

    def total(self) -> float:
        return round(time.monotonic() - self._start, 4)


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
        self._gpu_runtime: bool | None = None
        self._start_interval: bool | None = None
        self._gpu_info: tuple[str, int] | tuple[()] | None = None
        self._gpu_prober: gpu_health.GpuProber | None = None  # keeps its once-a-minute pace
        self._webui_tokens: dict[str, str] = {}  # Open WebUI session per URL: sign in once
        self._branch_for: tuple[str | None, str] = (None, "main")
        self.pulls: PullWorker | None = None  # the daemon's; None: pulls in the foreground

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
        if not state.applied_key:
            return None
        return load_rendered(self.settings.deployments_dir / state.applied_key)

    def hash_salt(self) -> bytes:
        """This server's random key for digests of secret values (made once, root-only)."""
        path = self.settings.home / "hash.salt"
        try:
            return path.read_bytes()
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            salt = os.urandom(32)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another process made it first
                return path.read_bytes()
            with os.fdopen(fd, "wb") as handle:
                handle.write(salt)
            return salt

    def server_inputs(self) -> str:
        """A digest of what the server adds to a commit (its secrets file), keyed with the
        server's salt: it is kept in state.json, and a plain one could be guessed from."""
        try:
            data = self.settings.secrets_file.read_bytes()
        except OSError:
            data = b""
        return hmac.new(self.hash_salt(), data, hashlib.sha256).hexdigest()[:16]

    def gpu_runtime(self) -> bool:
        """Whether Docker here can hand out NVIDIA GPUs (the NVIDIA Container Toolkit)."""
        if self._gpu_runtime is None:
            try:
                runtimes = self.client.info().get("Runtimes") or {}
            except Exception as exc:
                raise DockerError(f"cannot ask Docker for its runtimes ({exc}); check "
                                  "`docker info`.") from None
            self._gpu_runtime = "nvidia" in runtimes
        return self._gpu_runtime

    def start_interval(self) -> bool:
        """Whether the engine runs healthcheck start_interval (Docker API 1.44, Engine 25)."""
        if self._start_interval is None:
            found = facts_mod.engine_version(self.client)
            self._start_interval = found is not None and tool_versions.has_start_interval(
                found[1])
        return self._start_interval

    def branch(self) -> str:
        """The server's branch override, else lanai.yaml's source.branch on main, else main."""
        if self.settings.branch:
            return self.settings.branch
        try:
            head = self.source.branch_head("main")
        except SourceError:
            return "main"
        if self._branch_for[0] != head:  # read lanai.yaml once per commit of main, not per poll
            self._branch_for = (head, self._branch_named_in(head))
        return self._branch_for[1]

    def _branch_named_in(self, commit: str) -> str:
        text = self.source.read_file(commit, desired_mod.SETTINGS_FILE)
        if text:
            try:
                config = LanaiConfig.model_validate(desired_mod.yamlpos.load(text).data or {})
                return config.source.branch
            except Exception:  # an invalid lanai.yaml is reported when that commit loads
                return "main"
        return "main"

    # -- preparing a commit ---------------------------------------------------------

    def prepare(self, commit: str, *, private: Path | None = None) -> Rendered:
        """Load, validate and render `commit` (cached by commit + secret values).

        With `private` (a directory of the caller's own: `lanai plan`), a commit not
        rendered yet is rendered there and nothing under deployments/ is made or removed:
        the daemon may be writing that very directory."""
        deployments = self.settings.deployments_dir
        deployments.mkdir(parents=True, exist_ok=True, mode=0o700)
        scratch = (private or deployments) / f".export-{commit[:12]}-{uuid.uuid4().hex[:6]}"
        self.source.export(commit, scratch)
        try:
            state = desired_mod.load_state(scratch, commit)
            secrets = read_secrets(self.settings.secrets_file)
            require(secrets, state.config.secret_names(), self.settings.secrets_file)
            gpu_runtime = self.gpu_runtime()
            address = lan_ip() if state.config.https is not None else None
            fast = self.start_interval()
            key = render_key(commit, state.config, secrets, gpu_runtime=gpu_runtime,
                             salt=self.hash_salt(), lan_ip=address, start_interval=fast)
            final = deployments / key
            cached = load_rendered(final)
            if cached is not None:
                return cached
            if private is not None:
                final = private / key
            discard(final)
            scratch.rename(final)
            state.root = final
            try:
                return render(state, secrets, final, commit, key, gpu_runtime=gpu_runtime,
                              salt=self.hash_salt(), lan_ip=address, start_interval=fast)
            except BaseException:
                discard(final)
                raise
        finally:
            discard(scratch)

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
            self._fail(state, commit, None, error, outcome)
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
        mark = time.monotonic()
        source_error = None
        try:
            self.source.fetch()
            branch = self.branch()
            head = self.source.branch_head(branch)
            state.branch, state.head_commit = branch, head
            self._step(f"checking commit {head[:12]}", head)
        except SourceError as exc:
            source_error = exc
            head = None
        mark = timer.lap("fetch", mark)
        previous_source_error, previous_drift = state.source_error, state.drift
        pin = self.restore_pin()
        if pin and head is not None and head != pin.get("commit"):
            backup_run.clear_pin(self.settings)  # a new commit: git leads again
        state.source_error = source_error.message if source_error else None

        applied = self.applied(state)
        if state.failure is not None and state.failure.phase \
                and state.failure.commit == state.applied_commit:
            state.failure = None  # lanai failed checking the applied commit: this is the retry
        outcome: Outcome
        desired: Rendered | None = None
        failure_to_record: LanaiError | None = None
        same_files = self._same_files(state, head, applied)
        if head is not None and not same_files and (
                head != state.applied_commit or applied is None
                or self._inputs_changed(applied)):
            # A failed commit waits for a new commit, a change on the server (a secret
            # added), an explicit retry, or, if the failure was transient, its backoff.
            blocked = (state.failure is not None and state.failure.commit == head
                       and not retry and state.failure.inputs == self.server_inputs()
                       and (state.failure.deterministic
                            or not _due(state.failure.next_retry)))
            if not blocked:
                self._step(f"loading commit {head[:12]}")
                try:
                    desired = self.prepare(head)
                except LanaiError as exc:
                    failure_to_record = exc
                mark = timer.lap("load", mark)
                if desired is not None and state.failure and state.failure.key == desired.key \
                        and state.failure.deterministic and not retry:
                    desired = None  # same inputs failed before: wait for a change
        if desired is not None:
            self._step(f"deploying commit {desired.commit[:12]}")
            outcome = self._deploy(state, desired, applied, timer, mark, trigger)
        elif same_files and head is not None:
            outcome = self._same_files_commit(state, head, applied, timer, mark, retry, trigger)
        else:
            self._step("checking the stack for drift")
            outcome = self._check(state, applied, timer, mark, retry)
            if failure_to_record is not None and head is not None:
                self._fail(state, head, None, failure_to_record, outcome)
            elif head is not None and state.failure and state.failure.commit == head:
                outcome.status = "waiting" if outcome.status in ("no-op", "drift") \
                    else outcome.status
                outcome.error = state.failure.error
                outcome.exit_code = state.failure.exit_code
                outcome.notes.append(
                    "commit " + head[:12] + " failed before and is not retried until a new "
                    "commit or `lanai reconcile --retry`" if state.failure.deterministic
                    else f"commit {head[:12]} failed with a transient error; retrying")
        previous_models = self._models_summary()
        previous_problems = dict(state.problems)
        # A commit with the same files as the applied one changes no model or setting; after
        # a clean last sync there is nothing to read (the polls' drift checks still do).
        if outcome.status != "failed" and not (same_files and not state.problems
                                               and self._syncs_clean()):
            self._converge_models(state, outcome, retry, timer)
            self._converge_webui(state, outcome, timer)
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
            or (outcome.status == "drift" and outcome.drift != previous_drift) \
            or (outcome.status == "source-error" and previous_source_error is None) \
            or (previous_source_error is not None and source_error is None) \
            or bool(outcome.models.get("actions")) or _any_done(outcome.webui) \
            or self._models_summary() != previous_models or state.problems != previous_problems
        if interesting:
            append_history(self.settings.history_file,
                           {"at": now_iso(), "trigger": trigger, **outcome.to_json(),
                            "subject": self._subject(head)})
        return outcome

    def _converge_models(self, state: State, outcome: Outcome, retry: bool,
                         timer: Timer) -> None:
        """Models follow the stack: after a deploy or a drift check, never blocking it."""
        current = self.applied(state)
        if current is None or current.models is None:
            if self.pulls is not None:
                self.pulls.keep_only(set())  # models.yaml is gone: so are its pulls
            return
        if outcome.status == "applied":
            self.save(state)  # the stack is deployed: `lanai status` says so while models pull
        mark = time.monotonic()
        self._step("converging models")
        try:
            result = ModelSync(self.settings, self.client, progress=self.progress,
                               gpu=self.gpu_info, pulls=self.pulls).converge(current,
                                                                             retry=retry)
        except LanaiError as exc:  # foreseen (an unsafe secrets file): the outcome says it
            result = ModelsOutcome(errors=[exc.message])
        except Exception as exc:  # a part's failure is the part's error
            log.error("converging models failed unexpectedly", exc_info=exc)
            result = ModelsOutcome(errors=[unexpected("converging the models", exc)])
        timer.lap("models", mark)
        outcome.models = result.to_json()
        _part(state, "models", result.errors)
        if result.errors and outcome.exit_code == ExitCode.OK:
            outcome.exit_code = ExitCode.APPLY_FAILED
            outcome.error = result.errors[0] + (
                f" (and {len(result.errors) - 1} more model problem(s))"
                if len(result.errors) > 1 else "")

    def _converge_webui(self, state: State, outcome: Outcome, timer: Timer) -> None:
        """Open WebUI's settings and accounts follow the stack (and its models)."""
        current = self.applied(state)
        if current is None or current.webui is None:
            return
        mark = time.monotonic()
        self._step("converging Open WebUI's settings")
        try:
            if current.documents is None and current.webui.knowledge:
                current = self._list_documents(current)
            result = WebUISync(self.settings, self.client, progress=self.progress,
                               tokens=self._webui_tokens).converge(
                current, new_commit=outcome.status == "applied")
        except LanaiError as exc:  # foreseen (an unsafe secrets file): the outcome says it
            result = WebUIOutcome(errors=[exc.message])
        except Exception as exc:  # a part's failure is the part's error
            log.error("converging Open WebUI's settings failed unexpectedly", exc_info=exc)
            result = WebUIOutcome(errors=[unexpected("converging Open WebUI's settings", exc)])
        timer.lap("webui", mark)
        outcome.webui = result.to_json()
        _part(state, "open-webui settings", result.errors)
        if result.errors and outcome.exit_code == ExitCode.OK:
            outcome.exit_code = ExitCode.APPLY_FAILED
            outcome.error = result.errors[0]

    def _list_documents(self, rendered: Rendered) -> Rendered:
        """A deployment rendered by an older lanai has no list of the commit's documents:
        list them from a fresh export of the commit (never from the deployment, which holds
        lanai's own files too)."""
        scratch = self.settings.deployments_dir / f".list-{uuid.uuid4().hex[:12]}"
        try:
            self.source.export(rendered.commit, scratch)
            docs = desired_mod.load_state(scratch, rendered.commit).documents
        finally:
            discard(scratch)
        rendered.documents = {name: [[d.path, d.sha256] for d in found]
                              for name, found in docs.items()}
        write_json_atomic(rendered.directory / DESIRED_FILE, rendered.to_json())
        return rendered

    def _models_summary(self) -> tuple[tuple[str, str | None, str | None], ...]:
        """Per model: error and drift, so the history records when either changes."""
        models = models_state.load(self.settings.models_file).models
        return tuple((name, rec.error, rec.drift) for name, rec in sorted(models.items()))

    def gpu_info(self) -> tuple[str, int] | None:
        """The first NVIDIA GPU: name and memory in bytes (asked once per process: nvidia-smi
        takes a while)."""
        if self._gpu_info is None:
            self._gpu_info = first_gpu() or ()
        return self._gpu_info or None

    def _same_files(self, state: State, head: str | None, applied: Rendered | None) -> bool:
        """A new commit whose tree is the applied commit's (an empty commit, a revert of a
        revert): nothing to load, render or plan, as long as the server's inputs are the
        same and no failure is pending."""
        if head is None or applied is None or state.applied_commit in (None, head) \
                or state.failure is not None:
            return False
        tree = self.source.tree(head)
        return tree is not None and tree == self.source.tree(state.applied_commit) \
            and not self._inputs_changed(applied)

    def _same_files_commit(self, state: State, head: str, applied: Rendered | None,
                           timer: Timer, mark: float, retry: bool, trigger: str) -> Outcome:
        """Record `head` as applied on the applied deployment, after the usual drift check."""
        before = state.applied_commit or ""
        outcome = self._check(state, applied, timer, mark, retry)
        if outcome.status == "failed":
            return outcome
        state.applied_commit, state.applied_at = head, now_iso()
        outcome.applied_commit = head
        outcome.notes.append(f"commit {head[:12]} has the same files as {before[:12]}: "
                             "nothing to render or deploy")
        if outcome.status == "no-op" and trigger != "poll":
            outcome.status = "applied"  # a new commit is news, as in _deploy
        return outcome

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

    def _inputs_changed(self, applied: Rendered) -> bool:
        """Whether what the server adds to the commit (secret values, its LAN address for the
        https certificates) changed since it was rendered."""
        config = applied.config
        if not config.secret_names() and config.https is None:
            return False
        try:
            secrets = read_secrets(self.settings.secrets_file)
        except LanaiError:  # unreadable or unsafe: loading the commit says so, in one sentence
            return True
        address = lan_ip() if config.https is not None else None
        return render_key(applied.commit, config, secrets, gpu_runtime=self.gpu_runtime(),
                          salt=self.hash_salt(), lan_ip=address,
                          start_interval=self.start_interval()) != applied.key

    def _subject(self, commit: str | None) -> str | None:
        if not commit:
            return None
        try:
            return self.source.info(commit).subject
        except Exception:
            return None

    def _deploy(self, state: State, desired: Rendered, applied: Rendered | None, timer: Timer,
                mark: float, trigger: str) -> Outcome:
        config = desired.config
        facts = facts_mod.observe(self.client, desired.project, desired.images)
        the_plan = plan(desired, facts, applied=applied, prune=config.sync.prune)
        mark = timer.lap("observe_plan", mark)
        outcome = Outcome("applied", applied_commit=state.applied_commit,
                          drift=[d.to_json() for d in the_plan.drift])
        report = ApplyReport()
        self.progress(f"deploying {desired.commit[:12]}: {len(the_plan.actions)} action(s)")
        upgrade_backup: Backup | None = None
        try:
            upgrade_backup = self._protect_data(desired, facts, applied, outcome)
            self._apply(desired, the_plan, report)
        except LanaiError as exc:
            if upgrade_backup is not None and report.results:
                self._restore_after_failed_upgrade(desired, upgrade_backup, outcome)
            outcome.actions = report.results
            self._record_compose(timer, report)
            self._rollback(state, desired, applied, outcome)
            self._fail(state, desired.commit, desired.key, exc, outcome)
            return outcome
        self._record_compose(timer, report)
        outcome.actions = report.results
        self._record_data_image(desired)
        backup_run.clear_pin(self.settings)  # git's commit runs again
        if the_plan.empty:
            outcome.status = "no-op"
            outcome.notes.append(f"commit {desired.commit[:12]} changes nothing on the stack")
        state.applied_commit, state.applied_key = desired.commit, desired.key
        state.applied_at = now_iso()
        state.failure = None
        state.heals = {}
        state.drift = []
        outcome.applied_commit = desired.commit
        outcome.drift = []
        if outcome.status == "no-op" and trigger != "poll":
            outcome.status = "applied"  # a new commit that needed nothing is still news
        self._prune_deployments(state)
        return outcome

    def _apply(self, rendered: Rendered, the_plan: Plan, report: ApplyReport) -> None:
        # Without start_interval Docker's first probe comes one interval after the start:
        # lanai probes the starting containers itself meanwhile (reconciler.stack.readiness).
        ready = None if self.start_interval() else readiness.file(self.settings.home)
        Applier(self.client, health_timeout=rendered.config.sync.health_timeout,
                progress=self.progress, ready_file=ready).apply(rendered, the_plan, report)

    def _record_compose(self, timer: Timer, report: ApplyReport) -> None:
        timer.marks["compose"] = round(report.compose_s, 4)
        timer.marks["health_wait"] = round(report.health_s, 4)

    def _rollback(self, state: State, failed: Rendered, applied: Rendered | None,
                  outcome: Outcome) -> None:
        if applied is None or applied.key == failed.key or not outcome.actions:
            return
        touched_pull_only = all(a.get("kind") == "pull" for a in outcome.actions)
        if touched_pull_only:
            return  # nothing was changed on the stack
        self.progress(f"rolling back to {applied.commit[:12]}")
        facts = facts_mod.observe(self.client, applied.project, applied.images)
        back = plan(applied, facts, applied=None, prune=True)
        report = ApplyReport()
        try:
            self._apply(applied, back, report)
            outcome.rolled_back_to = applied.commit
            outcome.notes.append(f"rolled back to {applied.commit[:12]}, which is serving")
        except LanaiError as exc:
            outcome.notes.append(f"rollback to {applied.commit[:12]} failed too: {exc.message}")

    def _fail(self, state: State, commit: str, key: str | None, exc: LanaiError,
              outcome: Outcome) -> None:
        attempts = 1
        if state.failure and state.failure.commit == commit and state.failure.key == key:
            attempts = state.failure.attempts + 1
        state.failure = Failure(commit=commit, key=key, error=exc.message,
                                exit_code=int(exc.exit_code), deterministic=exc.deterministic,
                                attempts=attempts, inputs=self.server_inputs())
        if not exc.deterministic:
            config = self._config_for_retry(key)
            delay = min(config.sync.retry.max, config.sync.retry.initial * 2 ** (attempts - 1))
            state.failure.next_retry = iso(datetime.now(UTC) + timedelta(seconds=delay))
        outcome.status = "failed"
        outcome.error = exc.message
        outcome.exit_code = int(exc.exit_code)

    def _config_for_retry(self, key: str | None) -> LanaiConfig:
        if key:
            rendered = load_rendered(self.settings.deployments_dir / key)
            if rendered is not None:
                return rendered.config
        return LanaiConfig()

    def _check(self, state: State, applied: Rendered | None, timer: Timer, mark: float,
               retry: bool) -> Outcome:
        """Nothing new to deploy: look for drift on the applied deployment and heal it."""
        if applied is None:
            return Outcome("no-op", applied_commit=state.applied_commit)
        config = applied.config
        facts = facts_mod.observe(self.client, applied.project, applied.images)
        facts.gpu_lost = self.gpu_prober().lost(facts.containers)
        the_plan = self._plan_held(applied, facts, self._held(state, config, retry))
        mark = timer.lap("observe_plan", mark)
        outcome = Outcome("no-op", applied_commit=state.applied_commit,
                          drift=[d.to_json() for d in the_plan.drift])
        state.drift = outcome.drift
        if not the_plan.drift and the_plan.empty:
            return outcome
        if not config.sync.self_heal or the_plan.empty:
            outcome.status = "drift"
            if not config.sync.self_heal:
                outcome.notes.append("self-heal is off (sync.self_heal): drift is reported, "
                                     "not corrected")
            return outcome
        # Drift is on record (state.json, for `lanai status`) before the heal starts.
        self.save(state)
        report = ApplyReport()
        self.progress("healing: " + ", ".join(f"{a.kind} {a.service}"
                                              for a in the_plan.actions))
        now = time.time()
        for service in {a.service for a in the_plan.actions}:
            state.heals.setdefault(service, []).append(now)
        try:
            self._apply(applied, the_plan, report)
            outcome.status = "healed"
            state.drift = []
            self._gpu_recheck(applied, outcome, state)
        except LanaiError as exc:
            outcome.status = "failed"
            outcome.error = f"healing failed: {exc.message}"
            outcome.exit_code = int(exc.exit_code)
            if not self._docker_answers():
                # Docker itself is going or gone (a restart, an upgrade): this says nothing
                # about the services, so it must not use up their heal limit.
                for service in {a.service for a in the_plan.actions}:
                    state.heals[service] = [t for t in state.heals[service] if t != now]
                outcome.notes.append("the Docker engine stopped answering during the heal; "
                                     "this attempt does not count toward sync.heal_limit")
        self._record_compose(timer, report)
        outcome.actions = report.results
        return outcome

    def _docker_answers(self) -> bool:
        """Whether Docker takes new connections. A stopping dockerd closes its socket but
        keeps answering on open ones, so the cached client's ping would say yes."""
        try:
            fresh = self.client_factory()
            try:
                return bool(fresh.ping())
            finally:
                fresh.close()
        except Exception:  # any failure to reach the engine means no
            return False

    def gpu_prober(self) -> gpu_health.GpuProber:
        if self._gpu_prober is None:
            self._gpu_prober = gpu_health.prober(self.client)
        return self._gpu_prober

    def _gpu_recheck(self, applied: Rendered, outcome: Outcome, state: State) -> None:
        """A restart for a lost GPU is proven by nvidia-smi; a GPU still missing is the
        host's problem, reported as a failed heal and kept as drift."""
        lost = {d["service"] for d in outcome.drift if d["kind"] == "gpu-lost"}
        if not lost:
            return
        live = facts_mod.observe(self.client, applied.project, [])
        problems, notes = gpu_health.recheck(self.gpu_prober(), live.containers, lost)
        outcome.notes.extend(notes)
        if problems:
            state.drift = [d for d in outcome.drift if d["service"] in problems]
            outcome.status = "failed"
            outcome.error = "healing failed: " + " ".join(problems.values())
            outcome.exit_code = int(ExitCode.APPLY_FAILED)

    def live_plan(self, state: State, applied: Rendered, facts: facts_mod.Facts) -> Plan:
        """What differs now and what a heal would do, as the next drift check sees it
        (for `lanai status` and `lanai drift`)."""
        return self._plan_held(applied, facts, held_services(state, applied.config))

    def _plan_held(self, applied: Rendered, facts: facts_mod.Facts, held: set[str]) -> Plan:
        """The drift plan; a service restored onto another image than git's is held too."""
        pin = self.restore_pin()
        if pin:
            held = held | {pin["service"]}
        result = plan(applied, facts, applied=applied, prune=applied.config.sync.prune,
                      held=held)
        if pin:
            result.drift = pinned_drift(result.drift, pin, applied)
        return result

    def _held(self, state: State, config: LanaiConfig, retry: bool) -> set[str]:
        if retry:
            state.heals = {}
            return set()
        cutoff = time.time() - config.sync.heal_limit.window
        state.heals = {s: [t for t in times if t >= cutoff] for s, times in state.heals.items()}
        return held_services(state, config)


    # -- Open WebUI's data: backups around upgrades ---------------------------------------

    def restore_pin(self) -> dict[str, Any] | None:
        return backup_run.load_pin(self.settings)

    def data_decision(self, desired: Rendered, facts: facts_mod.Facts,
                      applied: Rendered | None) -> tuple[str, Any] | None:
        """What a deploy of `desired` does for the data service's data first: ("backup",
        running image), ("restore", backup), ("refuse", message), or None (nothing)."""
        config = desired.config.backups
        spec = desired.services.get(config.service)
        running = facts.by_service().get(config.service) or []
        if spec is None or spec.image is None or not running:
            return None  # no such service, or no data yet: nothing to protect
        current = running[0].image_ref
        if current == spec.image and not _database_settings_changed(applied, desired,
                                                                      config.service):
            return None
        lineage = backup_run.lineage(self.settings).load() or [
            {"image": current, "since": now_iso()}]
        if not is_rollback(lineage, current, spec.image):
            return ("backup", current)
        backup = backup_for(Store(self.settings.backups_dir).list(), lineage, spec.image,
                            config.service)
        if backup is None or not config.restore_on_rollback:
            return ("refuse", _rollback_refusal(config.service, current, spec.image, backup))
        return ("restore", backup)

    def _protect_data(self, desired: Rendered, facts: facts_mod.Facts, applied: Rendered | None,
                      outcome: Outcome) -> Backup | None:
        """Before a commit changes the data service's image: back its data up, or, for an
        image the data has outgrown (a rollback across a migration), refuse or restore."""
        decision = self.data_decision(desired, facts, applied)
        if decision is None:
            return None
        config = desired.config.backups
        spec_image = desired.services[config.service].image
        history = backup_run.lineage(self.settings)
        if not history.load():  # first upgrade seen: the data so far is the running image's
            running = facts.by_service()[config.service][0].image_ref
            history.record(running, commit=applied.commit if applied else None, how="found")
        kind, detail = decision
        if kind == "refuse":
            raise BackupError(detail, deterministic=True)
        if kind == "restore":
            self.progress(f"{spec_image} is older than the data: restoring backup {detail.id}")
            backup_run.restore(self.settings, self.client, desired, detail,
                               progress=self.progress, start=False)
            outcome.notes.append(f"restored backup {detail.id} ({spec_image}'s data) before "
                                 f"rolling {config.service} back (backups.restore_on_rollback)")
            return None
        taken = backup_run.take(self.settings, self.client, desired, kind="upgrade",
                                reason=f"before {config.service} {detail} -> {spec_image}",
                                progress=self.progress,
                                commit=applied.commit if applied else None)
        if taken is not None:
            outcome.notes.append(f"backup {taken.id} of {config.service}'s data was taken "
                                 f"before the upgrade ({taken.counts.get('users', 0)} users, "
                                 f"{taken.counts.get('chats', 0)} chats)")
            outcome.backup = taken.id
        return taken

    def _restore_after_failed_upgrade(self, desired: Rendered, backup: Backup,
                                      outcome: Outcome) -> None:
        """The new image may have migrated the data before it failed: the rollback
        gets the data from before the upgrade back with the old image."""
        try:
            backup_run.restore(self.settings, self.client, desired, backup,
                               progress=self.progress, start=False)
            outcome.notes.append(f"restored backup {backup.id}: the data is as it was before "
                                 "the failed upgrade")
        except LanaiError as exc:
            outcome.notes.append(f"could not restore backup {backup.id} after the failed "
                                 f"upgrade ({exc.message}); restore it with `lanai restore "
                                 f"{backup.id}`")

    def _record_data_image(self, desired: Rendered) -> None:
        """Which image now runs on the data (the lineage a later rollback is judged by)."""
        config = desired.config.backups
        spec = desired.services.get(config.service)
        if spec is not None and spec.image:
            backup_run.lineage(self.settings).record(spec.image, commit=desired.commit,
                                                     how="deploy")

    def backup(self, *, kind: str, reason: str) -> Backup | None:
        """A backup of the applied deployment's data now (under the reconcile lock)."""
        with self.lock("backup"):
            applied = self.applied(self.state())
            if applied is None:
                raise BackupError("nothing has been deployed yet, so there is no data to back "
                                  "up; run `lanai reconcile` first.", exit_code=ExitCode.NOT_SET_UP)
            taken = backup_run.take(self.settings, self.client, applied, kind=kind,
                                    reason=reason, progress=self.progress)
            if kind == "scheduled":
                for gone in backup_run.prune(self.settings, applied.config.backups.keep):
                    self.progress(f"deleted backup {gone} (backups.keep)")
            return taken

    def _prune_deployments(self, state: State) -> None:
        root = self.settings.deployments_dir
        dirs = sorted((d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")),
                      key=lambda d: d.stat().st_mtime, reverse=True)
        keep = {state.applied_key}
        for old in dirs[KEEP_DEPLOYMENTS:]:
            if old.name not in keep:
                shutil.rmtree(old, ignore_errors=True)



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


def held_services(state: State, config: LanaiConfig) -> set[str]:
    """Services healed heal_limit.restarts times within the window: not healed again for now."""
    limit = config.sync.heal_limit
    cutoff = time.time() - limit.window
    return {service for service, times in state.heals.items()
            if len([t for t in times if t >= cutoff]) >= limit.restarts}


def pinned_drift(drift: list[Drift], pin: dict[str, Any], applied: Rendered) -> list[Drift]:
    """A service restored from a backup onto another image than git's: one honest line."""
    service = pin["service"]
    spec = applied.services.get(service)
    wanted = spec.image if spec else "?"
    kept = [d for d in drift if d.service != service]
    return [*kept, Drift(service, "changed", f"restored from backup {pin['backup']}: runs "
                         f"{pin['image']}, git says {wanted}; revert the upgrade in git to "
                         "keep it, or push a commit to redeploy from git (a backup is taken "
                         "first)")]


def _database_settings_changed(applied: Rendered | None, desired: Rendered, service: str) -> bool:
    """Whether a commit changes where or how the service keeps its database."""
    if applied is None or service not in applied.services:
        return False

    def database_env(rendered: Rendered) -> dict[str, Any]:
        env = rendered.services[service].config.get("environment") or {}
        return {k: v for k, v in env.items() if k.startswith(("DATABASE_", "VECTOR_DB"))}

    return database_env(applied) != database_env(desired)


def _rollback_refusal(service: str, current: str, wanted: str, backup: Backup | None) -> str:
    base = (f"this commit takes {service} back from {current} to {wanted}, but {current} has "
            f"migrated its database, which {wanted} cannot read safely")
    if backup is None:
        return (f"{base}, and no backup made with {wanted} is on this server; keep {current} "
                f"(revert this change in git), or restore a backup by hand (`lanai backups`).")
    return (f"{base}; restore the backup taken before the upgrade with `lanai restore "
            f"{backup.id}` and then `lanai reconcile --retry`, or set "
            "backups.restore_on_rollback: true in lanai.yaml and push.")


def _due(when: str | None) -> bool:
    if not when:
        return True
    return datetime.now(UTC) >= parse_iso(when)
