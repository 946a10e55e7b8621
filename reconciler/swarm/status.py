"""`lanai status` in swarm mode: each stack service's health by lanai's rule, and one line
per server (its role, its node's state, its services n/1). Pure: the CLI gathers the facts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from reconciler.desired.servers import Server
from reconciler.stack.health import HEALTH_RANK, ServiceStatus, StatusReport
from reconciler.stack.render import Rendered
from reconciler.swarm.facts import Facts
from reconciler.swarm.plan import SwarmPlan, match_nodes

HEALTH = {"up": "Healthy", "progressing": "Progressing", "down": "Degraded"}


def services(result: SwarmPlan, images: dict[str, str | None]) -> list[ServiceStatus]:
    """One row per stack service; a service waiting for its server that is down is
    Degraded (its models are unavailable), as any service that does not run."""
    rows = []
    for state in sorted(result.services, key=lambda s: s.name):
        running = f"{state.running}/{state.replicas if state.replicas is not None else '*'}"
        rows.append(ServiceStatus(state.name, HEALTH[state.health], running,
                                  images.get(state.name),
                                  None if state.health == "up" else state.reason))
    return rows


def servers(config_servers: Sequence[Server], facts: Facts, result: SwarmPlan,
            manager: str | None) -> list[dict[str, Any]]:
    """Per server of lanai.yaml: role, node state/availability, its services n/1. The
    manager's are the services placed on the manager (all but the per-server ones)."""
    nodes, _ = match_nodes(facts.nodes, config_servers)
    out = []
    for server in config_servers:
        node = nodes.get(server.name)
        mine = [s for s in result.services
                if s.server == server.name or (s.server is None and server.name == manager)]
        out.append({
            "server": server.name,
            "role": node.role if node is not None else "absent",
            "node": node.hostname if node is not None else None,
            "state": node.state if node is not None else "absent",
            "availability": node.availability if node is not None else None,
            "message": node.message if node is not None else None,
            "services": [{"service": s.name, "running": s.running,
                          "replicas": s.replicas, "health": s.health}
                         for s in sorted(mine, key=lambda s: s.name)],
        })
    return out


def images(rendered: Rendered) -> dict[str, str | None]:
    """Stack service -> image: a per-server Ollama runs compose's Ollama image."""
    out = {}
    for name, spec in rendered.stack_services.items():
        source = rendered.ollama_service if spec.get("server") else name
        found = rendered.services.get(source or name)
        out[name] = found.image if found is not None else None
    return out


def server_line(row: dict[str, Any]) -> str:
    """box-b  worker  ready/active  ollama-box-b 1/1"""
    state = row["state"] if row["availability"] in (None, "active") else \
        f"{row['state']}/{row['availability']}"
    if row["message"] and row["state"] != "ready":
        state += f" ({row['message']})"
    listed = ", ".join(f"{s['service']} {s['running']}/{s['replicas'] or 1}"
                       for s in row["services"]) or "no services"
    return f"{row['role']}, {state}: {listed}"


def apply(report: StatusReport, result: SwarmPlan, facts: Facts,
          config_servers: Sequence[Server], manager: str | None,
          images: dict[str, str | None]) -> StatusReport:
    """Swarm mode's rows and health on a report built without compose facts."""
    report.services = services(result, images)
    overall = max((s.health for s in report.services), key=HEALTH_RANK.__getitem__,
                  default="Unknown")
    if report.problems and overall != "Unknown":
        overall = max(overall, "Degraded", key=HEALTH_RANK.__getitem__)
    report.health = overall
    report.servers = servers(config_servers, facts, result, manager)
    return report
