"""Status, as Argo CD shows it: sync status and health are two separate facts.

Sync: Synced (the applied commit is the branch head and nothing drifted),
OutOfSync (a newer commit or drift), Failed (the head commit failed to
converge; the last good state keeps running), Progressing (a reconcile is
applying a commit or healing now: Synced only once every part is done), Unknown
(never synced). Health per service: Healthy, Progressing (starting), Degraded
(unhealthy, stopped, crash-looping), Missing; and Degraded when a part of the
commit (models, Open WebUI's settings) did not converge.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from reconciler.server.record import State
from reconciler.stack.facts import ContainerFact, Facts
from reconciler.stack.readiness import seen_ready
from reconciler.stack.render import Rendered

HEALTH_RANK = {"Healthy": 0, "Progressing": 1, "Missing": 2, "Degraded": 3}


@dataclass
class ServiceStatus:
    service: str
    health: str
    state: str
    image: str | None
    detail: str | None = None


@dataclass
class StatusReport:
    sync: str
    health: str
    branch: str | None
    repo: str | None
    head_commit: str | None
    applied_commit: str | None
    applied_at: str | None
    services: list[ServiceStatus] = field(default_factory=list)
    last_error: str | None = None
    source_error: str | None = None
    drift: list[dict[str, Any]] = field(default_factory=list)
    suspended: dict[str, Any] | None = None
    daemon: dict[str, Any] | None = None
    last_check: str | None = None
    last_check_ms: float | None = None
    gpu: dict[str, Any] | None = None
    last_heal: dict[str, Any] | None = None
    backups: dict[str, Any] | None = None  # the newest backup, how many, a restore pin
    doing: str | None = None  # while Progressing: what the running reconcile does now
    problems: dict[str, str] = field(default_factory=dict)  # part -> why it is Degraded
    # Swarm mode: one entry per server (reconciler.swarm.status); None on one box.
    servers: list[dict[str, Any]] | None = None

    def to_json(self) -> dict[str, Any]:
        data = dict(vars(self))
        data["services"] = [vars(s) for s in self.services]
        if self.servers is None:  # compose mode's JSON stays as it was
            del data["servers"]
        return data


def service_health(spec_hash: str | None, containers: list[ContainerFact],
                   passed: Iterable[tuple[str, str]] = ()) -> tuple[str, str, str | None]:
    """(health, state, detail) of one service from its containers. `passed`: containers
    lanai's own probe saw ready (readiness), Healthy while Docker has not probed them yet."""
    if not containers:
        return "Missing", "absent", None
    c = containers[0]
    if c.status == "restarting":
        return "Degraded", c.status, f"crash-looping (exit code {c.exit_code})"
    if c.status != "running":
        return "Degraded", c.status, f"exit code {c.exit_code}"
    if c.health == "unhealthy":
        return "Degraded", c.status, f"health check failing: {c.health_log or ''}".strip(": ")
    if c.health == "starting" and not seen_ready(c, passed):
        return "Progressing", c.status, "health check starting"
    if spec_hash and c.config_hash != spec_hash:
        return "Healthy", c.status, "differs from git"
    return "Healthy", c.status, None


def sync_status(state: State) -> str:
    failure = state.failure
    if failure is not None and failure.commit == state.head_commit:
        return "Failed"
    if state.applied_commit is None:
        return "Unknown"
    if state.head_commit not in (None, state.applied_commit) or state.drift:
        return "OutOfSync"
    return "Synced"


def build(state: State, applied: Rendered | None, facts: Facts | None, *, repo: str | None,
          suspended: dict[str, Any] | None, daemon: dict[str, Any] | None,
          working: dict[str, Any] | None = None,
          passed: Iterable[tuple[str, str]] = ()) -> StatusReport:
    """`working`: the running reconcile's record (reconciler.server.working), if one runs;
    `passed`: containers lanai's own probe saw ready (readiness.read)."""
    services: list[ServiceStatus] = []
    if applied is not None and facts is not None:
        live = facts.by_service()
        for name, spec in sorted(applied.services.items()):
            health, status, detail = service_health(spec.hash, live.get(name, []), passed)
            services.append(ServiceStatus(name, health, status, spec.image, detail))
    overall = max((s.health for s in services), key=HEALTH_RANK.__getitem__, default="Unknown")
    if state.problems and overall != "Unknown":
        overall = max(overall, "Degraded", key=HEALTH_RANK.__getitem__)
    failure = state.failure
    sync = "Progressing" if working is not None else sync_status(state)
    return StatusReport(
        sync=sync, health=overall, branch=state.branch, repo=repo,
        head_commit=state.head_commit, applied_commit=state.applied_commit,
        applied_at=state.applied_at, services=services,
        last_error=failure.error if failure else None, source_error=state.source_error,
        drift=state.drift, suspended=suspended, daemon=daemon, last_check=state.last_check,
        last_check_ms=state.last_check_ms,
        doing=working.get("doing") if working is not None else None,
        problems=dict(state.problems))


def last_heal(history: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The newest heal in the history (newest first): when, what drifted, what was done."""
    record = next((r for r in history if r.get("status") == "healed"), None)
    if record is None:
        return None
    return {"at": record.get("at"), "trigger": record.get("trigger"),
            "drift": record.get("drift") or [], "actions": record.get("actions") or []}
