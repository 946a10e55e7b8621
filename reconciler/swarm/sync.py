"""The stack's part of a reconcile in swarm mode: `docker stack deploy`, then wait until
every service is up by lanai's rule; on later polls, drift and self-heal.

Same Syncer protocol and Outcome as reconciler.stack.sync.StackSync, whose bookkeeping
(same-files commits, failures and their backoff, the waiting commit) it inherits; only
deploy and the drift check differ. The rule (design 1.4): a service is up when one of its
tasks is desired running, is running, and sits on a node that is ready and active;
`docker service ls` counts a task on a dead node as running, so it is never asked.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import docker
import yaml

from reconciler.core.errors import ApplyError, ExitCode, LanaiError
from reconciler.desired import safe_tree
from reconciler.desired.servers import Server
from reconciler.server.record import Outcome, State, Timer, now_iso, save_state
from reconciler.stack.render import Rendered
from reconciler.stack.sync import StackSync, prune_deployments
from reconciler.swarm import cli, command, migrate
from reconciler.swarm import facts as facts_mod
from reconciler.swarm.facts import Facts, NodeFact
from reconciler.swarm.plan import Deploy, LabelNode, ServiceState, SwarmPlan, match_nodes, plan
from reconciler.swarm.relay import Relay, image_for, plan_for
from reconciler.swarm.stackfile import StackFile

POLL = 1.0  # seconds between looks at the swarm while a deploy converges
DEPLOY_TIMEOUT = 300.0  # `docker stack deploy` itself: spec updates, no image pulls
# Kinds that a stack deploy puts right; the others are reported (a person's drain, a
# dead box, swarm's own rollback) and never fought.
HEALABLE = ("missing", "changed", "replicas", "extra")


def waiting_for_server(state: ServiceState, nodes: Mapping[str, NodeFact]) -> bool:
    """A service pinned to a server whose node cannot run tasks (down, drained): it does
    not hold a deploy back; Swarm starts it when the node is back."""
    node = nodes.get(state.server or "")
    return node is not None and not node.schedulable


def not_up(result: SwarmPlan, facts: Facts, servers: Sequence[Server]) -> list[ServiceState]:
    """The services a deploy still waits for (pure)."""
    nodes, _ = match_nodes(facts.nodes, servers)
    return [s for s in result.services
            if s.health != "up" and not waiting_for_server(s, nodes)]


SEE_UPDATE = 5.0  # seconds after its deploy in which Swarm starts a service's update
ROLLING_BACK = ("rollback_started", "rollback_paused", "rollback_completed")


class Updates:
    """Whether Swarm's rolling update of each service a deploy changed is over. Right after
    `stack deploy` a changed service still runs its old task, healthy, under the new spec's
    labels (and may still show an earlier update's `completed`): by lanai's rule alone it
    would read as up before Swarm has even tried the new spec. It is done once its update
    was seen `updating` and is `completed`; one never seen updating (an update quicker than
    a poll) is taken as done SEE_UPDATE seconds after its deploy."""

    def __init__(self) -> None:
        self.deployed_at: dict[str, float] = {}
        self.seen: set[str] = set()

    def deployed(self, services: Sequence[str], facts: Facts, now: float) -> None:
        """`services` were just deployed; those that existed get a rolling update."""
        for name in services:
            if facts.service(name) is not None:
                self.deployed_at[name] = now

    def pending(self, facts: Facts, now: float) -> list[str]:
        """The reasons the changed services are not done yet; raises when Swarm rolled one
        back or paused it (the same commit would fail again: deterministic)."""
        out = []
        for name, since in sorted(self.deployed_at.items()):
            live = facts.service(name)
            state = live.update_state if live is not None else None
            if state == "updating":
                self.seen.add(name)
            if (state in ROLLING_BACK and name in self.seen) or state == "paused":
                what = "paused" if state == "paused" else "rolled back"
                detail = f" ({live.update_message})" if live and live.update_message else ""
                raise ApplyError(f"Swarm {what} the update of {name}{detail}: its new spec "
                                 "failed to start or turned unhealthy; the previous version "
                                 "keeps serving; fix the service in the state repo and push "
                                 "again.", deterministic=True)
            done = (state == "completed" and name in self.seen) or \
                (state in (None, "completed") and now - since >= SEE_UPDATE)
            if not done:
                out.append(f"{name}: Swarm's update is {state or 'not started'}")
        return out


def rolled_back_from(facts: Facts) -> dict[str, str]:
    """Service -> the hash of the spec Swarm rolled it back from (its PreviousSpec after a
    rollback, which swaps the two)."""
    return {s.name: s.previous_hash for s in facts.services
            if s.update_state in ROLLING_BACK and s.previous_hash}


def drift_json(result: SwarmPlan) -> list[dict[str, Any]]:
    """The plan's drift as the outcome and state.json keep it (`service`, `kind`,
    `detail`: what `lanai status`, notices and the history read in either mode)."""
    return [{"service": d.subject, "kind": d.kind, "detail": d.detail} for d in result.drift]


class SwarmSync(StackSync):
    """Converges the swarm stack; its outcome is the reconcile's."""

    def __init__(self, *args: Any, cli_version: Callable[[], tuple[int, int]],
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic,
                 relay: Callable[[docker.DockerClient], Relay] = Relay, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cli_version = cli_version
        self.sleep = sleep
        self.clock = clock  # the deadline's, with sleep: a deploy's wait is paced by them
        self.relay = relay  # the relay's Docker side (a container on the manager)

    def observe(self, rendered: Rendered, *, deployed: Mapping[str, str] | None = None
                ) -> tuple[Facts, SwarmPlan]:
        """The swarm and the plan that brings it to `rendered`'s stack file."""
        facts = facts_mod.gather(self.client, rendered.project)
        return facts, plan(read_stack(rendered), facts, rendered.config.servers,
                           deployed=deployed)

    # -- a new commit ---------------------------------------------------------------

    def deploy(self, state: State, desired: Rendered, applied: Rendered | None, timer: Timer,
               mark: float, trigger: str) -> Outcome:
        outcome = Outcome("applied", applied_commit=state.applied_commit)
        updates = Updates()
        try:
            # One box to several: Compose's containers hold the ports and network names.
            outcome.actions += migrate.leave_compose(self.client, desired.project,
                                                     self.progress)
            before = facts_mod.gather(self.client, desired.project)
            # A service Swarm rolled back fails this commit only when it rolled back from
            # this commit's own spec (a retry); another commit's spec for it is deployed.
            deployed = rolled_back_from(before)
            the_plan = plan(read_stack(desired), before, desired.config.servers,
                            deployed=deployed)
            mark = timer.lap("observe_plan", mark)
            self.progress(f"deploying {desired.commit[:12]}: {len(the_plan.actions)} "
                          "action(s)")
            for action in the_plan.actions:
                self._act(desired, action, outcome)
                mark = timer.lap("compose", mark)
                if isinstance(action, Deploy):  # a stage is up before the next begins
                    updates.deployed(action.services, before, self.clock())
                    deployed.update({n: desired.stack_services[n]["hash"]
                                     for n in action.stack.get("services") or {}
                                     if n in desired.stack_services})
                    self._wait(desired, set(action.services), updates, deployed)
                    mark = timer.lap("health_wait", mark)
            final = self._wait(desired, None, updates, deployed)
            timer.lap("health_wait", mark)
            outcome.drift = drift_json(final)
            self._relay(desired)
        except LanaiError as exc:
            self._rollback_swarm(desired, applied, outcome)
            self.fail(state, desired.commit, desired.key, exc, outcome)
            return outcome
        if not the_plan.actions:
            outcome.notes.append(f"commit {desired.commit[:12]} changes nothing in the swarm")
        state.applied_commit, state.applied_key = desired.commit, desired.key
        state.applied_at = now_iso()
        state.failure = None
        state.heals = {}
        state.drift = outcome.drift
        outcome.applied_commit = desired.commit
        prune_deployments(self.settings.deployments_dir, state.applied_key)
        return outcome

    def _wait(self, desired: Rendered, only: set[str] | None, updates: Updates,
              deployed: dict[str, str]) -> SwarmPlan:
        """Poll until every service (of `only`) is up or waits for its server and its
        update is over, a rollback, or sync.health_timeout; the failure names each service
        that is not up and why."""
        timeout = desired.config.sync.health_timeout
        deadline = self.clock() + timeout
        while True:
            facts, result = self.observe(desired, deployed=deployed)
            if result.rolled_back:  # deterministic: the same commit would roll back again
                raise ApplyError(
                    f"{'; '.join(d.detail for d in result.rolled_back)}; the previous version "
                    "keeps serving; fix the service in the state repo and push again.",
                    deterministic=True)
            waiting = [s.reason for s in not_up(result, facts, desired.config.servers)
                       if only is None or s.name in only]
            waiting += updates.pending(facts, self.clock())
            if not waiting:
                return result
            if self.clock() >= deadline:
                raise ApplyError(
                    f"not up within sync.health_timeout ({timeout:.0f}s): "
                    f"{'; '.join(waiting)}; see `docker service ps` of the stack's services "
                    "(`docker stack ps " + desired.project + " --no-trunc`) on the manager.",
                    deterministic=False)
            self.sleep(POLL)

    def _rollback_swarm(self, failed: Rendered, applied: Rendered | None,
                        outcome: Outcome) -> None:
        """Put the last good stack file back (no wait: Swarm converges it on its own)."""
        if applied is None or applied.key == failed.key or applied.stack_file is None \
                or not any(a["kind"] == "deploy" for a in outcome.actions):
            return
        self.progress(f"rolling back to {applied.commit[:12]}")
        try:
            self._stack_deploy(applied, applied.stack_file, True, outcome, "rollback",
                               f"commit {applied.commit[:12]}")
            outcome.rolled_back_to = applied.commit
            outcome.notes.append(f"rolled back to {applied.commit[:12]}, which Swarm brings "
                                 "back up")
        except LanaiError as exc:
            outcome.notes.append(f"rollback to {applied.commit[:12]} failed too: {exc.message}")

    # -- the docker commands -------------------------------------------------------

    def _act(self, rendered: Rendered, action: Deploy | LabelNode, outcome: Outcome) -> None:
        if isinstance(action, LabelNode):
            self._run(cli.node_labels(action.node, action.labels), None, outcome,
                      "label-node", action.server, action.reason)
            return
        assert rendered.stack_file is not None  # swarm mode's render wrote it
        name = rendered.stack_file
        if action.stages > 1 or set(action.stack.get("services") or {}) != \
                set(rendered.stack_services):
            # A stage, or a file without a service Swarm rolled back: its own file, as
            # root-only as the full one (the same secret values).
            name = f"lanai.stack.stage-{action.stage}.yaml"
            text = StackFile(dict(action.stack), str(action.stack.get("version"))).dump()
            safe_tree.write_generated(rendered.directory, name, text, 0o600)
        self._stack_deploy(rendered, name, action.prune, outcome, "deploy", action.reason)

    def _stack_deploy(self, rendered: Rendered, name: str, prune: bool, outcome: Outcome,
                      kind: str, reason: str) -> None:
        # Images are pinned and, on boxes without a registry, loaded by bootstrap --images:
        # `never` uses the tag each node has instead of asking a registry for a digest.
        # Swarm refuses a bind mount whose source is missing (compose makes it): the status
        # page's directory, which the proxy mounts, exists before its socket does.
        if rendered.config.https is not None and rendered.config.https.status_page:
            self.settings.status_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        argv = cli.stack_deploy(name, rendered.project, resolve_image="never",
                                cli_version=self.cli_version(), prune=prune)
        self._run(argv, rendered.directory, outcome, kind, rendered.project, reason)

    def _run(self, argv: list[str], cwd: Path | None, outcome: Outcome, kind: str,
             service: str, reason: str) -> None:
        started = time.monotonic()
        result = command.run(argv, cwd=cwd, timeout=DEPLOY_TIMEOUT)
        text = (result.stderr or result.stdout).strip()
        ok = result.returncode == 0
        outcome.actions.append({"kind": kind, "service": service, "reason": reason,
                                "result": "ok" if ok else "failed",
                                "error": None if ok else text[-2000:],
                                "duration_ms": round((time.monotonic() - started) * 1000)})
        if not ok:
            last = text.splitlines()[-1] if text else f"exit {result.returncode}"
            raise ApplyError(f"`{' '.join(argv[:3])}` failed: {last}; fix what it names (the "
                             "stack file is generated from the state repo) and push again.",
                             deterministic=False)

    def _relay(self, rendered: Rendered) -> dict[str, str]:
        """The relay through which the daemon reaches each Ollama and Open WebUI."""
        stack = read_stack(rendered)
        config = rendered.config
        servers = [s["server"] for s in rendered.stack_services.values() if s.get("server")]
        webui = config.https.upstream if config.https is not None else None
        wanted = plan_for(rendered.project, image_for(config, stack), stack,
                          sorted(set(servers), key=servers.index), webui)
        return self.relay(self.client).ensure(wanted)

    # -- nothing new: drift and heals -------------------------------------------------

    def check(self, state: State, applied: Rendered | None, timer: Timer, mark: float,
              retry: bool) -> Outcome:
        if applied is None:
            return Outcome("no-op", applied_commit=state.applied_commit)
        config = applied.config
        deployed = {n: s["hash"] for n, s in applied.stack_services.items()}
        _, the_plan = self.observe(applied, deployed=deployed)
        held = self._held(state, config, retry)
        mark = timer.lap("observe_plan", mark)
        outcome = Outcome("no-op", applied_commit=state.applied_commit,
                          drift=drift_json(the_plan))
        state.drift = outcome.drift
        try:
            self._relay(applied)  # cheap when it is as it should be
        except LanaiError as exc:
            outcome.notes.append(exc.message)
        actions = [a for a in the_plan.actions
                   if isinstance(a, LabelNode) or not set(a.services) & held]
        if not outcome.drift and not actions:
            return outcome
        if not config.sync.self_heal or not actions:
            outcome.status = "drift"
            if not config.sync.self_heal:
                outcome.notes.append("self-heal is off (sync.self_heal): drift is reported, "
                                     "not corrected")
            return outcome
        save_state(self.settings.state_file, state)  # drift on record before the heal
        healing = sorted({s for a in actions if isinstance(a, Deploy) for s in a.services})
        self.progress("healing: " + ", ".join(a.reason for a in actions))
        now = time.time()
        for service in healing:
            state.heals.setdefault(service, []).append(now)
        try:
            for action in actions:
                self._act(applied, action, outcome)
            outcome.status = "healed"
            state.drift = [d for d in outcome.drift if d["kind"] not in HEALABLE]
        except LanaiError as exc:
            outcome.status = "failed"
            outcome.error = f"healing failed: {exc.message}"
            outcome.exit_code = int(exc.exit_code or ExitCode.APPLY_FAILED)
        return outcome

    def live_plan_swarm(self, applied: Rendered) -> tuple[Facts, SwarmPlan]:
        """The swarm now, for `lanai status`."""
        deployed = {n: s["hash"] for n, s in applied.stack_services.items()}
        return self.observe(applied, deployed=deployed)


def read_stack(rendered: Rendered) -> dict[str, Any]:
    """The rendered stack file (root-only: it holds secret values; nothing here logs it)."""
    assert rendered.stack_file is not None
    text = (rendered.directory / rendered.stack_file).read_text(encoding="utf-8")
    return yaml.safe_load(text) or {}
