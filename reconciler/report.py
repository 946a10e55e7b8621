"""Status, as Argo CD shows it: sync status and health are two separate facts.

Sync: Synced (the applied commit is the branch head and nothing drifted),
OutOfSync (a newer commit or drift), Failed (the head commit failed to
converge; the last good state keeps running), Unknown (never synced).
Health per service: Healthy, Progressing (starting), Degraded (unhealthy,
stopped, crash-looping), Missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .facts import ContainerFact, Facts
from .record import State
from .render import Rendered

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

    def to_json(self) -> dict[str, Any]:
        data = dict(vars(self))
        data["services"] = [vars(s) for s in self.services]
        return data


def service_health(spec_hash: str | None, containers: list[ContainerFact]) -> tuple[str, str,
                                                                                     str | None]:
    """(health, state, detail) of one service from its containers."""
    if not containers:
        return "Missing", "absent", None
    c = containers[0]
    if c.status == "restarting":
        return "Degraded", c.status, f"crash-looping (exit code {c.exit_code})"
    if c.status != "running":
        return "Degraded", c.status, f"exit code {c.exit_code}"
    if c.health == "unhealthy":
        return "Degraded", c.status, f"health check failing: {c.health_log or ''}".strip(": ")
    if c.health == "starting":
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
          suspended: dict[str, Any] | None, daemon: dict[str, Any] | None) -> StatusReport:
    services: list[ServiceStatus] = []
    if applied is not None and facts is not None:
        live = facts.by_service()
        for name, spec in sorted(applied.services.items()):
            health, status, detail = service_health(spec.hash, live.get(name, []))
            services.append(ServiceStatus(name, health, status, spec.image, detail))
    overall = max((s.health for s in services), key=HEALTH_RANK.__getitem__, default="Unknown")
    failure = state.failure
    return StatusReport(
        sync=sync_status(state), health=overall, branch=state.branch, repo=repo,
        head_commit=state.head_commit, applied_commit=state.applied_commit,
        applied_at=state.applied_at, services=services,
        last_error=failure.error if failure else None, source_error=state.source_error,
        drift=state.drift, suspended=suspended, daemon=daemon, last_check=state.last_check,
        last_check_ms=state.last_check_ms)


def last_heal(history: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The newest heal in the history (newest first): when, what drifted, what was done."""
    record = next((r for r in history if r.get("status") == "healed"), None)
    if record is None:
        return None
    return {"at": record.get("at"), "trigger": record.get("trigger"),
            "drift": record.get("drift") or [], "actions": record.get("actions") or []}
