"""The stack's part of a reconcile: deploy a commit (or roll back), or check for drift and heal."""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import docker

from reconciler.core.errors import ExitCode, LanaiError
from reconciler.desired.lanai_yaml import LanaiConfig
from reconciler.server.record import Failure, Outcome, State, Timer, iso, now_iso, save_state
from reconciler.server.settings import ServerSettings
from reconciler.stack import facts as facts_mod
from reconciler.stack import gpu_health, readiness
from reconciler.stack.apply import Applier, ApplyReport
from reconciler.stack.plan import Drift, Plan, plan
from reconciler.stack.render import Rendered, load_rendered

log = logging.getLogger("lanai")
KEEP_DEPLOYMENTS = 10


class DataHook(Protocol):
    """What a deploy does for the data service's data. The engine wires in
    reconciler.backup.guard: backup sits above the stack, so the stack only calls it."""

    def pin(self) -> dict[str, Any] | None:
        """The service restored from a backup onto another image than git's, if any."""
        ...

    def protect(self, desired: Rendered, facts: facts_mod.Facts, applied: Rendered | None,
                outcome: Outcome) -> Callable[[], None] | None:
        """Before the deploy; returns what puts the data back if the upgrade fails."""
        ...

    def deployed(self, desired: Rendered) -> None:
        """After a deploy that went through."""
        ...


@dataclass
class Run:
    """One reconcile as each part sees it: what the engine fetched and prepared."""

    state: State
    head: str | None
    retry: bool
    trigger: str
    timer: Timer
    mark: float  # when the last timed phase ended
    applied: Rendered | None = None  # the deployment applied when the reconcile began
    desired: Rendered | None = None  # a commit to deploy
    unloadable: LanaiError | None = None  # why the head commit could not be prepared
    same_files: bool = False  # the head has the applied commit's tree
    outcome: Outcome | None = None  # the stack's, once it has synced
    deployed: Rendered | None = None  # applied once the stack has synced: the parts' target


class StackSync:
    """Converges the Compose stack; its outcome is the reconcile's."""

    name = "stack"

    def __init__(self, settings: ServerSettings, *, client: Callable[[], docker.DockerClient],
                 client_factory: Callable[[], docker.DockerClient],
                 progress: Callable[[str], None], step: Callable[[str], None],
                 start_interval: Callable[[], bool], inputs: Callable[[], str],
                 data: DataHook,
                 leave: Callable[[Rendered], list[dict[str, Any]]] | None = None) -> None:
        self.settings = settings
        # What makes way before this mode deploys (the engine wires the other mode's
        # leftovers: a swarm stack of the same project); returns the actions it took.
        self.leave = leave
        self._client = client  # the engine's, made on first use
        self.client_factory = client_factory
        self.progress = progress
        self.step = step  # names what the reconcile does now, for `lanai status`
        self.start_interval = start_interval
        self.inputs = inputs  # the digest of the server's inputs, kept with a failure
        self.data = data
        self._gpu_prober: gpu_health.GpuProber | None = None  # keeps its once-a-minute pace

    @property
    def client(self) -> docker.DockerClient:
        return self._client()

    def sync(self, run: Run) -> Outcome:
        """Deploy the prepared commit, or record a same-files commit, or check for drift."""
        state, head, applied = run.state, run.head, run.applied
        if run.desired is not None:
            self.step(f"deploying commit {run.desired.commit[:12]}")
            return self.deploy(state, run.desired, applied, run.timer, run.mark, run.trigger)
        if run.same_files and head is not None:
            return self.same_files_commit(state, head, applied, run.timer, run.mark,
                                          run.retry, run.trigger)
        self.step("checking the stack for drift")
        outcome = self.check(state, applied, run.timer, run.mark, run.retry)
        if run.unloadable is not None and head is not None:
            self.fail(state, head, None, run.unloadable, outcome)
        elif head is not None and state.failure and state.failure.commit == head:
            outcome.status = "waiting" if outcome.status in ("no-op", "drift") \
                else outcome.status
            outcome.error = state.failure.error
            outcome.exit_code = state.failure.exit_code
            outcome.notes.append(
                "commit " + head[:12] + " failed before and is not retried until a new "
                "commit or `lanai reconcile --retry`" if state.failure.deterministic
                else f"commit {head[:12]} failed with a transient error; retrying")
        return outcome

    # -- a new commit ---------------------------------------------------------------

    def deploy(self, state: State, desired: Rendered, applied: Rendered | None, timer: Timer,
               mark: float, trigger: str) -> Outcome:
        config = desired.config
        moved: list[dict[str, Any]] = []
        if self.leave is not None:
            try:
                moved = self.leave(desired)
            except LanaiError as exc:
                outcome = Outcome("applied", applied_commit=state.applied_commit)
                self.fail(state, desired.commit, desired.key, exc, outcome)
                return outcome
        facts = facts_mod.observe(self.client, desired.project, desired.images)
        the_plan = plan(desired, facts, applied=applied, prune=config.sync.prune)
        mark = timer.lap("observe_plan", mark)
        outcome = Outcome("applied", applied_commit=state.applied_commit,
                          drift=[d.to_json() for d in the_plan.drift])
        report = ApplyReport()
        self.progress(f"deploying {desired.commit[:12]}: {len(the_plan.actions)} action(s)")
        put_data_back: Callable[[], None] | None = None
        try:
            put_data_back = self.data.protect(desired, facts, applied, outcome)
            self._apply(desired, the_plan, report)
        except LanaiError as exc:
            if put_data_back is not None and report.results:
                put_data_back()  # the new image may have migrated the data before it failed
            outcome.actions = report.results
            self._record_compose(timer, report)
            self._rollback(state, desired, applied, outcome)
            self.fail(state, desired.commit, desired.key, exc, outcome)
            return outcome
        self._record_compose(timer, report)
        outcome.actions = moved + report.results
        self.data.deployed(desired)
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
        prune_deployments(self.settings.deployments_dir, state.applied_key)
        return outcome

    def same_files_commit(self, state: State, head: str, applied: Rendered | None,
                          timer: Timer, mark: float, retry: bool, trigger: str) -> Outcome:
        """Record `head` as applied on the applied deployment, after the usual drift check."""
        before = state.applied_commit or ""
        outcome = self.check(state, applied, timer, mark, retry)
        if outcome.status == "failed":
            return outcome
        state.applied_commit, state.applied_at = head, now_iso()
        outcome.applied_commit = head
        outcome.notes.append(f"commit {head[:12]} has the same files as {before[:12]}: "
                             "nothing to render or deploy")
        if outcome.status == "no-op" and trigger != "poll":
            outcome.status = "applied"  # a new commit is news, as in deploy
        return outcome

    def _apply(self, rendered: Rendered, the_plan: Plan, report: ApplyReport) -> None:
        # Without start_interval Docker's first probe comes one interval after the start:
        # lanai probes the starting containers itself meanwhile (reconciler.stack.readiness).
        ready = None if self.start_interval() else readiness.file(self.settings.home)
        Applier(self.client, health_timeout=rendered.config.sync.health_timeout,
                progress=self.progress, ready_file=ready).apply(rendered, the_plan, report)

    @staticmethod
    def _record_compose(timer: Timer, report: ApplyReport) -> None:
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

    def fail(self, state: State, commit: str, key: str | None, exc: LanaiError,
             outcome: Outcome) -> None:
        """Record a failed commit; a transient failure is retried on the backoff."""
        attempts = 1
        if state.failure and state.failure.commit == commit and state.failure.key == key:
            attempts = state.failure.attempts + 1
        state.failure = Failure(commit=commit, key=key, error=exc.message,
                                exit_code=int(exc.exit_code), deterministic=exc.deterministic,
                                attempts=attempts, inputs=self.inputs())
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

    # -- nothing new: drift and heals -------------------------------------------------

    def check(self, state: State, applied: Rendered | None, timer: Timer, mark: float,
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
        save_state(self.settings.state_file, state)
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
        pin = self.data.pin()
        if pin:
            held = held | {pin["service"]}
        result = plan(applied, facts, applied=applied, prune=applied.config.sync.prune,
                      held=held)
        if pin:
            result.drift = pinned_drift(result.drift, pin, applied)
        return result

    @staticmethod
    def _held(state: State, config: LanaiConfig, retry: bool) -> set[str]:
        if retry:
            state.heals = {}
            return set()
        cutoff = time.time() - config.sync.heal_limit.window
        state.heals = {s: [t for t in times if t >= cutoff] for s, times in state.heals.items()}
        return held_services(state, config)


def applied_deployment(settings: ServerSettings, state: State) -> Rendered | None:
    """The deployment state.json names as applied, read from its directory."""
    if not state.applied_key:
        return None
    return load_rendered(settings.deployments_dir / state.applied_key)


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


def prune_deployments(root: Path, applied_key: str | None) -> None:
    """Keep the newest KEEP_DEPLOYMENTS renders, and always the applied one."""
    dirs = sorted((d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")),
                  key=lambda d: d.stat().st_mtime, reverse=True)
    keep = {applied_key}
    for old in dirs[KEEP_DEPLOYMENTS:]:
        if old.name not in keep:
            shutil.rmtree(old, ignore_errors=True)
