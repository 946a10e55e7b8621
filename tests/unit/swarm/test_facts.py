"""Swarm facts parsed from the Engine API JSON of a real 3-node swarm (docker 26.1.5 in
Debian 13 servers; tests/fixtures/swarm/api/README.md says how each state was made)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.core.errors import DockerError
from reconciler.swarm.facts import Facts, gather, gpu_count, parse

API = Path(__file__).resolve().parents[2] / "fixtures" / "swarm" / "api"
STATES = sorted(p.name for p in API.iterdir() if (p / "nodes.json").exists())


def raw(state: str) -> tuple[list[Any], list[Any], list[Any]]:
    return tuple(json.loads((API / state / f"{name}.json").read_text())  # type: ignore[return-value]
                 for name in ("nodes", "services", "tasks"))


def facts(state: str) -> Facts:
    return parse(*raw(state), "lanai")


def stack_hash(stack: str, service: str) -> str:
    spec = yaml.safe_load((API / "stacks" / f"{stack}.yaml").read_text())
    return spec["services"][service]["deploy"]["labels"]["io.lanai.config-hash"]


def test_every_state_was_captured() -> None:
    assert STATES == ["all-up", "drained", "gpu-reserved", "image-missing", "manager-restarted",
                      "node-back", "node-down", "pending", "rolled-back", "rolling-back",
                      "unlabelled", "update-completed", "updating"]


@pytest.mark.parametrize("state", STATES)
def test_every_state_parses(state: str) -> None:
    found = facts(state)
    assert [n.hostname for n in found.nodes] == ["s5-a", "s5-b", "s5-c"]
    assert all(t.service in {s.name for s in found.services} for t in found.tasks)


def test_nodes_all_up() -> None:
    a, b, c = facts("all-up").nodes
    assert (a.hostname, a.server, a.role, a.state, a.availability, a.address) == (
        "s5-a", "box-a", "manager", "ready", "active", "172.31.251.11")
    assert (b.server, b.role, b.address) == ("box-b", "worker", "172.31.251.12")
    assert (c.server, c.role, c.address) == ("box-c", "worker", "172.31.251.13")
    assert a.id == "kdhy0n1yc7bya3n6zdg4w847t"
    assert all(n.schedulable and n.gpus == 0 and n.message == "" for n in (a, b, c))
    assert dict(c.labels) == {"io.lanai.server": "box-c"}
    assert c.describe() == "node s5-c (box-c)"


def test_nodes_before_bootstrap_labels_them() -> None:
    nodes = facts("unlabelled").nodes
    assert [n.server for n in nodes] == [None, None, None]
    assert nodes[1].describe() == "node s5-b"
    assert facts("unlabelled").services == ()


def test_a_stopped_server_is_down_by_heartbeat() -> None:
    c = facts("node-down").nodes[2]
    assert (c.state, c.message, c.availability, c.address) == (
        "down", "heartbeat failure", "active", "172.31.251.13")
    assert not c.schedulable
    assert c.updated_at.startswith("2026-12-03T16:30:32")  # docker stop at 16:30:20


def test_a_drained_node_is_ready_but_not_schedulable() -> None:
    b = facts("drained").nodes[1]
    assert (b.state, b.availability, b.schedulable) == ("ready", "drain", False)


def test_gpus_a_node_advertises() -> None:
    # daemon.json node-generic-resources: ["gpu=GPU-45cbf7b3-..."], as bootstrap writes it
    assert [n.gpus for n in facts("gpu-reserved").nodes] == [0, 0, 1]


def test_gpu_count_of_a_discrete_resource() -> None:
    # the shape of a count (`gpu=2`), as the task's reservation in the fixture has it
    nodes, _, tasks = raw("gpu-reserved")
    task = next(t for t in tasks if t["Spec"].get("Resources", {}).get("Reservations"))
    resources = task["Spec"]["Resources"]["Reservations"]["GenericResources"]
    assert resources == [{"DiscreteResourceSpec": {"Kind": "gpu", "Value": 1}}]
    assert gpu_count(resources) == 1
    assert gpu_count(resources * 2 + nodes[2]["Description"]["Resources"]["GenericResources"]) \
        == 3


def test_services_of_the_stack() -> None:
    found = facts("all-up")
    assert sorted(s.name for s in found.services) == ["ollama-box-b", "ollama-box-c", "proxy"]
    b = found.service("ollama-box-b")
    assert b is not None
    assert (b.full_name, b.replicas, b.image, b.server, b.update_state) == (
        "lanai_ollama-box-b", 1, "ollama/ollama:0.24.0", "box-b", None)
    assert b.config_hash == stack_hash("base", "ollama-box-b")
    assert b.labels["io.lanai.managed"] == "true"
    assert b.labels["com.docker.stack.namespace"] == "lanai"
    proxy = found.service("proxy")
    assert proxy is not None and proxy.server is None and proxy.image == "caddy:2.6.2"


def test_a_service_during_its_update() -> None:
    b = facts("updating").service("ollama-box-b")
    assert b is not None
    assert (b.update_state, b.update_message) == ("updating", "update in progress")
    assert b.config_hash == stack_hash("stage1", "ollama-box-b")
    assert b.previous_hash == stack_hash("base", "ollama-box-b")


def test_a_completed_update() -> None:
    b = facts("update-completed").service("ollama-box-b")
    assert b is not None and b.update_state == "completed"


def test_a_rolled_back_service_has_its_old_spec_and_no_previous_one() -> None:
    c = facts("rolled-back").service("ollama-box-c")
    assert c is not None
    assert (c.update_state, c.update_message) == ("rollback_completed", "rollback completed")
    assert c.config_hash == stack_hash("new", "ollama-box-c")
    assert c.config_hash != stack_hash("bad", "ollama-box-c")
    assert c.previous_hash is None


def test_a_rollback_in_progress_says_why() -> None:
    c = facts("rolling-back").service("ollama-box-c")
    assert c is not None and c.update_state == "rollback_started"
    assert c.update_message.startswith("update rolled back due to failure or early "
                                       "termination of task ")


def test_tasks_of_a_dead_server() -> None:
    found = facts("node-down")
    c_node = found.nodes[2].id
    tasks = sorted(found.tasks_of("ollama-box-c"), key=lambda t: t.timestamp)
    ghost, pending = tasks[-2:]
    # the old task: Swarm wants it shut down, it still reads running, on the dead node
    assert (ghost.node_id, ghost.desired_state, ghost.state, ghost.message) == (
        c_node, "shutdown", "running", "started")
    assert (pending.node_id, pending.desired_state, pending.state, pending.message,
            pending.error) == (None, "ready", "pending", "pending task scheduling",
                               "no suitable node (scheduling constraints not satisfied on 2 "
                               "nodes; 1 node not available for new tasks)")
    assert pending.why == pending.error and pending.slot == 1
    assert pending.timestamp.startswith("2026-12-03T16:30:32")


def test_a_task_swarm_cannot_place() -> None:
    waiting = [t for t in facts("pending").tasks if t.state == "pending"]
    assert [(t.service, t.error) for t in waiting] == [
        ("ollama-box-c", "no suitable node (insufficient resources on 3 nodes)")]


def test_only_the_projects_stack_counts() -> None:
    other = parse(*raw("all-up"), "other")
    assert other.services == () and other.tasks == ()
    assert len(other.nodes) == 3


class Api:
    """Stands in for docker-py's APIClient: answers with a captured state and records
    what it was asked."""

    def __init__(self, state: str, fail: Exception | None = None) -> None:
        self.nodes_json, self.services_json, self.tasks_json = raw(state)
        self.fail = fail
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def nodes(self) -> list[Any]:
        self.calls.append(("nodes", {}))
        if self.fail:
            raise self.fail
        return self.nodes_json

    def services(self, filters: dict[str, Any], status: bool) -> list[Any]:
        self.calls.append(("services", {"filters": filters, "status": status}))
        return self.services_json

    def tasks(self, filters: dict[str, Any]) -> list[Any]:
        self.calls.append(("tasks", {"filters": filters}))
        return self.tasks_json


class Client:
    def __init__(self, api: Api) -> None:
        self.api = api


def test_gather_asks_for_the_stacks_services_with_status() -> None:
    api = Api("node-down")
    found = gather(Client(api), "lanai")  # type: ignore[arg-type]
    stack = {"label": "com.docker.stack.namespace=lanai"}
    assert api.calls == [("nodes", {}), ("services", {"filters": stack, "status": True}),
                         ("tasks", {"filters": stack})]
    assert found == facts("node-down")


def test_gather_on_a_worker_says_where_the_daemon_runs() -> None:
    import docker.errors
    from requests.models import Response

    response = Response()
    response.status_code = 503
    # what a worker's (or a non-swarm) engine answers to GET /nodes
    error = docker.errors.APIError("503 Server Error", response=response, explanation=(
        "This node is not a swarm manager. Worker nodes can't be used to view or modify "
        "cluster state. Please run this command on a manager node or promote the current "
        "node to a manager."))
    with pytest.raises(DockerError, match="lanai's daemon runs on the manager"):
        gather(Client(Api("all-up", fail=error)), "lanai")  # type: ignore[arg-type]


def test_a_task_rejected_for_an_image_no_node_has() -> None:
    found = facts("image-missing")
    tasks = found.tasks_of("open-webui")
    assert {(t.desired_state, t.state, t.error) for t in tasks} == {
        ("ready", "rejected", "No such image: ghcr.io/open-webui/open-webui:v0.12.4"),
        ("shutdown", "rejected", "No such image: ghcr.io/open-webui/open-webui:v0.12.4")}
    assert {t.node_id for t in tasks} == {found.nodes[0].id}


def test_workers_read_unknown_right_after_the_manager_restarts() -> None:
    a, b, c = facts("manager-restarted").nodes
    assert (a.state, b.state) == ("ready", "ready")
    assert (c.state, c.message) == (
        "unknown", 'Node moved to "unknown" state due to leadership change in cluster')
