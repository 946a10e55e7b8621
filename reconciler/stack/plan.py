"""The planner: desired state + facts -> ordered actions, each with its reason. Pure.

The same function serves the daemon, `lanai plan` on a pull request, and the
drift report: given facts, it needs no server.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from reconciler.stack.facts import ContainerFact, Facts
from reconciler.stack.render import Rendered, ServiceSpec

ActionKind = Literal["pull", "create", "update", "start", "restart", "remove"]
# The order actions run in: images first (nothing is touched if one is missing),
# then compose converges services, then unhealthy ones are restarted.
ORDER: dict[str, int] = {"pull": 0, "remove": 1, "create": 2, "update": 2, "start": 2,
                         "restart": 3}


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    service: str
    reason: str
    details: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "details": list(self.details)}


@dataclass(frozen=True)
class Drift:
    service: str
    kind: Literal["missing", "stopped", "unhealthy", "changed", "orphan", "held", "gpu-lost"]
    detail: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Plan:
    actions: list[Action] = field(default_factory=list)
    drift: list[Drift] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.actions

    def services(self, *kinds: str) -> list[str]:
        return sorted({a.service for a in self.actions if a.kind in kinds})


def plan(desired: Rendered, facts: Facts, *, applied: Rendered | None, prune: bool,
         held: Iterable[str] = ()) -> Plan:
    """Actions that take the server from `facts` to `desired`.

    `applied` is the deployment now considered live (for reasons and drift);
    `held` names services whose heals are paused by the restart limit.
    """
    held = set(held)
    result = Plan()
    live = facts.by_service()
    deploying = applied is None or applied.key != desired.key
    for name, spec in sorted(desired.services.items()):
        before = applied.services.get(name) if applied else None
        containers = live.get(name, [])
        _plan_service(result, spec, before, containers, facts, deploying, name in held)
    for name in sorted(set(live) - set(desired.services)):
        detail = f"{len(live[name])} container(s) of a service no longer in compose"
        off = desired.inactive.get(name)
        if off is not None:
            detail = (f"{len(live[name])} container(s) of a service whose profile "
                      f"({', '.join(off)}) is off")
        if deploying and applied and name in applied.services:
            reason = ("profile switched off in lanai.yaml" if off is not None
                      else "service removed from compose")
        else:
            reason = "not in the desired state"
            result.drift.append(Drift(name, "orphan", detail))
        if prune:
            result.actions.append(Action("remove", name, reason))
    result.actions.sort(key=lambda a: (ORDER[a.kind], a.service))
    return result


def _plan_service(result: Plan, spec: ServiceSpec, before: ServiceSpec | None,
                  containers: list[ContainerFact], facts: Facts, deploying: bool,
                  held: bool) -> None:
    name = spec.name
    image_id = facts.images.get(spec.image) if spec.image else None
    needs_image = spec.image is not None and "build" not in spec.config and image_id is None
    drifted: list[Drift] = []
    action: Action | None = None
    if not containers:
        if before is None:
            action = Action("create", name, "new service")
        else:
            drifted.append(Drift(name, "missing", "container not found (removed by hand?)"))
            action = Action("create", name, "container is missing")
    else:
        stale = [c for c in containers if c.config_hash != spec.hash]
        wrong_image = [c for c in containers if image_id and c.image_id != image_id]
        if stale:
            details = tuple(config_diff(before.config, spec.config)) if before else ()
            if before is not None and stale[0].config_hash == before.hash and deploying:
                action = Action("update", name, "configuration changed in git", details)
            elif stale[0].config_hash is None:
                action = Action("update", name, "container was not created by lanai")
            else:
                drifted.append(Drift(name, "changed",
                                     "running container's configuration differs from git"))
                action = Action("update", name, "configuration differs from git", details)
        elif wrong_image:
            drifted.append(Drift(name, "changed", f"runs image {wrong_image[0].image_id[:19]}, "
                                 f"but {spec.image} is {image_id[:19] if image_id else '?'}"))
            action = Action("update", name, f"image {spec.image} points to another image")
        else:
            down = [c for c in containers if c.status not in ("running", "restarting")]
            sick = [c for c in containers if c.running and c.health == "unhealthy"]
            looping = [c for c in containers if c.status == "restarting"]
            if looping:
                # Docker's restart policy is already on it; restarting it again helps nothing.
                drifted.append(Drift(name, "unhealthy", "container keeps crashing and "
                                     f"restarting (exit code {looping[0].exit_code})"))
            elif down:
                exit_note = f" (exit code {down[0].exit_code})" if down[0].exit_code else ""
                drifted.append(Drift(name, "stopped", f"container {down[0].status}{exit_note}"))
                action = Action("start", name, f"container is {down[0].status}{exit_note}")
            elif sick:
                probe = f": {sick[0].health_log}" if sick[0].health_log else ""
                drifted.append(Drift(name, "unhealthy", f"health check failing{probe}"))
                action = Action("restart", name, "container is unhealthy")
            elif name in facts.gpu_lost:
                # A restart hands the GPU back (the runtime sets the devices up again).
                drifted.append(Drift(name, "gpu-lost", facts.gpu_lost[name]))
                action = Action("restart", name, "the GPU disappeared inside the container")
    result.drift.extend(drifted)
    if held and drifted and not deploying:
        result.drift.append(Drift(name, "held", "heal limit reached; not restarting again "
                                  "until the window passes, a new commit, or --retry"))
        return
    if action is not None:
        if needs_image and action.kind in ("create", "update"):
            result.actions.append(Action("pull", name, f"image {spec.image} is not on this "
                                         "server"))
        result.actions.append(action)


def config_diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Human lines for what changed between two normalized service configs."""
    flat_old, flat_new = _flatten(old), _flatten(new)
    lines = []
    for key in sorted(set(flat_old) | set(flat_new)):
        a, b = flat_old.get(key, _MISSING), flat_new.get(key, _MISSING)
        if a == b:
            continue
        if a is _MISSING:
            lines.append(f"{key}: added {_short(b)}")
        elif b is _MISSING:
            lines.append(f"{key}: removed")
        else:
            lines.append(f"{key}: {_short(a)} -> {_short(b)}")
    return lines


_MISSING: Any = object()


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
