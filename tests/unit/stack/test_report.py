"""Status as Argo CD shows it: sync status and health are separate facts."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.server.record import Failure, State
from reconciler.stack.facts import ContainerFact, Facts
from reconciler.stack.health import ServiceStatus, build, service_health
from reconciler.stack.render import Rendered, ServiceSpec

A = "a" * 40
B = "b" * 40


def applied() -> Rendered:
    services = {
        "ollama": ServiceSpec("ollama", "h-ollama", "ollama/ollama:0.24.0", {}),
        "open-webui": ServiceSpec("open-webui", "h-webui", "ghcr.io/open-webui/open-webui:v0.12.4",
                                  {}),
    }
    return Rendered(directory=Path("/d"), commit=A, key="k", project="lanai",
                    compose_file="compose.yaml", services=services)


def box(service: str, *, status: str = "running", health: str | None = "healthy",
        config_hash: str | None = None, exit_code: int = 0,
        health_log: str | None = None) -> ContainerFact:
    return ContainerFact(id=service, name=f"lanai-{service}-1", service=service, status=status,
                         health=health, image_id="sha256:x", image_ref="x",
                         config_hash=config_hash or {"ollama": "h-ollama",
                                                     "open-webui": "h-webui"}[service],
                         exit_code=exit_code, health_log=health_log)


def healthy() -> Facts:
    return Facts(containers=[box("ollama"), box("open-webui")])


def report(state: State, facts: Facts | None = None, rendered: Rendered | None = None):
    return build(state, rendered or applied(), facts if facts is not None else healthy(),
                 repo="/srv/git/state.git", suspended=None, daemon=None)


# ---------------------------------------------------------------- sync


def test_synced() -> None:
    result = report(State(applied_commit=A, head_commit=A, branch="main"))
    assert (result.sync, result.health) == ("Synced", "Healthy")
    assert result.branch == "main"
    assert result.repo == "/srv/git/state.git"
    assert result.last_error is None


def test_synced_when_the_head_is_not_known() -> None:
    assert report(State(applied_commit=A, head_commit=None)).sync == "Synced"


def test_out_of_sync_by_a_newer_head() -> None:
    result = report(State(applied_commit=A, head_commit=B))
    assert result.sync == "OutOfSync"
    assert (result.head_commit, result.applied_commit) == (B, A)


def test_out_of_sync_by_drift() -> None:
    drift = [{"service": "ollama", "kind": "stopped", "detail": "container exited"}]
    result = report(State(applied_commit=A, head_commit=A, drift=drift))
    assert result.sync == "OutOfSync"
    assert result.drift == drift


def test_failed_head() -> None:
    failure = Failure(commit=B, key=None, error="image ollama/ollama:9 not found",
                      exit_code=3, deterministic=True)
    result = report(State(applied_commit=A, head_commit=B, failure=failure))
    assert result.sync == "Failed"
    assert result.last_error == "image ollama/ollama:9 not found"
    assert result.health == "Healthy"  # the last good state keeps running


def test_failure_of_an_older_commit_is_not_the_sync_status() -> None:
    failure = Failure(commit=B, key=None, error="old", exit_code=3, deterministic=True)
    result = report(State(applied_commit=A, head_commit="c" * 40, failure=failure))
    assert result.sync == "OutOfSync"
    assert result.last_error == "old"


def test_failed_first_deploy() -> None:
    failure = Failure(commit=B, key=None, error="bad", exit_code=2, deterministic=True)
    result = build(State(head_commit=B, failure=failure), None, None, repo=None,
                   suspended=None, daemon=None)
    assert (result.sync, result.health, result.services) == ("Failed", "Unknown", [])


def test_never_synced_is_unknown() -> None:
    result = build(State(head_commit=B), None, None, repo=None, suspended=None, daemon=None)
    assert (result.sync, result.health) == ("Unknown", "Unknown")


# ---------------------------------------------------------------- health


def test_per_service_health_and_worst_overall() -> None:
    facts = Facts(containers=[box("ollama", health="starting"), box("open-webui")])
    result = report(State(applied_commit=A, head_commit=A), facts)
    assert result.services == [
        ServiceStatus("ollama", "Progressing", "running", "ollama/ollama:0.24.0",
                      "health check starting"),
        ServiceStatus("open-webui", "Healthy", "running", "ghcr.io/open-webui/open-webui:v0.12.4",
                      None),
    ]
    assert result.health == "Progressing"


def test_missing_service() -> None:
    result = report(State(applied_commit=A, head_commit=A), Facts(containers=[box("ollama")]))
    assert result.services[1] == ServiceStatus(
        "open-webui", "Missing", "absent", "ghcr.io/open-webui/open-webui:v0.12.4", None)
    assert result.health == "Missing"


def test_degraded_beats_missing() -> None:
    facts = Facts(containers=[box("ollama", health="unhealthy", health_log="no answer")])
    result = report(State(applied_commit=A, head_commit=A), facts)
    assert [s.health for s in result.services] == ["Degraded", "Missing"]
    assert result.health == "Degraded"


@pytest.mark.parametrize(("container", "expected"), [
    (None, ("Missing", "absent", None)),
    (box("ollama"), ("Healthy", "running", None)),
    (box("ollama", health=None), ("Healthy", "running", None)),
    (box("ollama", health="starting"), ("Progressing", "running", "health check starting")),
    (box("ollama", health="unhealthy", health_log="connection refused"),
     ("Degraded", "running", "health check failing: connection refused")),
    (box("ollama", health="unhealthy"), ("Degraded", "running", "health check failing")),
    (box("ollama", status="exited", health=None, exit_code=137),
     ("Degraded", "exited", "exit code 137")),
    (box("ollama", status="restarting", health=None, exit_code=1),
     ("Degraded", "restarting", "crash-looping (exit code 1)")),
    (box("ollama", config_hash="by-hand"), ("Healthy", "running", "differs from git")),
])
def test_service_health(container: ContainerFact | None, expected: tuple) -> None:
    containers = [container] if container else []
    assert service_health("h-ollama", containers) == expected


def test_to_json() -> None:
    data = report(State(applied_commit=A, head_commit=A)).to_json()
    assert data["sync"] == "Synced"
    assert data["services"][0] == {"service": "ollama", "health": "Healthy", "state": "running",
                                   "image": "ollama/ollama:0.24.0", "detail": None}
