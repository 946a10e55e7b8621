"""Swarm facts: the nodes, lanai's stack services and their tasks, as the manager's
Engine API reports them.

The parsers take the plain JSON docker-py returns (`client.api.nodes()`,
`client.api.services(..., status=True)`, `client.api.tasks(...)`), so they are tested on
JSON captured from a real swarm (tests/fixtures/swarm/api/); `gather` is the only
function here that talks to Docker.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import docker
import docker.errors
from requests.exceptions import RequestException

from reconciler.core.errors import DockerError
from reconciler.swarm.deploy import LABEL_HASH, SERVER_LABEL

LABEL_NAMESPACE = "com.docker.stack.namespace"  # docker/cli convert.LabelNamespace
GPU_KINDS = ("gpu",)  # deploy.GPU_KIND: what bootstrap advertises (node-generic-resources)


@dataclass(frozen=True)
class NodeFact:
    id: str
    hostname: str
    server: str | None  # the io.lanai.server label bootstrap sets; None before it
    role: str  # manager, worker
    state: str  # ready, down, unknown, disconnected
    availability: str  # active, pause, drain: a person's choice
    message: str  # why, e.g. "heartbeat failure" when down
    address: str
    gpus: int  # GPUs the node advertises to Swarm as generic resources
    labels: Mapping[str, str] = field(default_factory=dict)
    updated_at: str = ""  # the last change of state or spec: when it went down, if it is

    @property
    def schedulable(self) -> bool:
        """Swarm runs tasks here: the node answers and nobody drained or paused it."""
        return self.state == "ready" and self.availability == "active"

    def describe(self) -> str:
        """node s5-c (box-c), for sentences."""
        same = self.server in (None, self.hostname)
        return f"node {self.hostname}" + ("" if same else f" ({self.server})")


@dataclass(frozen=True)
class TaskFact:
    id: str
    service: str  # the stack's name for it (ollama-box-b), as ServiceFact.name
    node_id: str | None  # None while the task waits for a node (Pending)
    slot: int | None
    desired_state: str  # running, ready, shutdown ...
    state: str  # new, pending, assigned, ..., starting, running, shutdown, failed ...
    message: str  # what swarm last did, e.g. "pending task scheduling"
    error: str  # why it cannot, e.g. "no suitable node (insufficient resources on 1 node)"
    timestamp: str  # when State was reached (RFC 3339, as the API writes it)

    @property
    def why(self) -> str:
        return self.error or self.message


@dataclass(frozen=True)
class ServiceFact:
    id: str
    name: str  # the stack's name (ollama-box-b); Swarm's is <project>_<name>
    full_name: str
    labels: Mapping[str, str]  # the service's labels: deploy.labels of the stack file
    replicas: int | None  # None for a global service
    image: str  # without the @digest the CLI may pin
    update_state: str | None  # updating, paused, completed, rollback_*; None before any update
    update_message: str
    # the labels of the spec before the last update (none after a rollback)
    previous_labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def config_hash(self) -> str | None:
        return self.labels.get(LABEL_HASH)

    @property
    def previous_hash(self) -> str | None:
        """After a rollback: the hash of the spec swarm rolled back from."""
        return self.previous_labels.get(LABEL_HASH)

    @property
    def server(self) -> str | None:
        return self.labels.get(SERVER_LABEL)


@dataclass(frozen=True)
class Facts:
    nodes: tuple[NodeFact, ...] = ()
    services: tuple[ServiceFact, ...] = ()
    tasks: tuple[TaskFact, ...] = ()
    by_id: Mapping[str, NodeFact] = field(default_factory=dict, init=False, compare=False,
                                          repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_id", {n.id: n for n in self.nodes})

    def node(self, node_id: str | None) -> NodeFact | None:
        return self.by_id.get(node_id) if node_id else None

    def service(self, name: str) -> ServiceFact | None:
        return next((s for s in self.services if s.name == name), None)

    def tasks_of(self, service: str) -> list[TaskFact]:
        return [t for t in self.tasks if t.service == service]


def parse_node(raw: dict[str, Any]) -> NodeFact:
    spec = raw.get("Spec") or {}
    description = raw.get("Description") or {}
    status = raw.get("Status") or {}
    labels = dict(spec.get("Labels") or {})
    return NodeFact(
        id=raw["ID"],
        hostname=description.get("Hostname", ""),
        server=labels.get(SERVER_LABEL),
        role=spec.get("Role", ""),
        state=status.get("State", "unknown"),
        availability=spec.get("Availability", "active"),
        message=status.get("Message", ""),
        address=status.get("Addr", ""),
        gpus=gpu_count((description.get("Resources") or {}).get("GenericResources") or []),
        labels=labels,
        updated_at=raw.get("UpdatedAt", ""),
    )


def gpu_count(resources: list[dict[str, Any]]) -> int:
    """A node advertises GPUs as one NamedResourceSpec per UUID (`gpu=GPU-45cb...`, what
    bootstrap writes) or as a DiscreteResourceSpec count (`gpu=2`)."""
    count = 0
    for resource in resources:
        named = resource.get("NamedResourceSpec") or {}
        discrete = resource.get("DiscreteResourceSpec") or {}
        if named.get("Kind") in GPU_KINDS:
            count += 1
        if discrete.get("Kind") in GPU_KINDS:
            count += int(discrete.get("Value") or 0)
    return count


def parse_service(raw: dict[str, Any], project: str) -> ServiceFact:
    spec = raw.get("Spec") or {}
    full = spec.get("Name", "")
    update = raw.get("UpdateStatus") or {}
    replicated = (spec.get("Mode") or {}).get("Replicated")
    image = (((spec.get("TaskTemplate") or {}).get("ContainerSpec") or {}).get("Image") or "")
    return ServiceFact(
        id=raw["ID"],
        name=full.removeprefix(f"{project}_"),
        full_name=full,
        labels=dict(spec.get("Labels") or {}),
        replicas=int(replicated.get("Replicas", 1)) if replicated is not None else None,
        image=image.split("@", 1)[0],
        update_state=update.get("State"),
        update_message=update.get("Message", ""),
        previous_labels=dict((raw.get("PreviousSpec") or {}).get("Labels") or {}),
    )


def parse_task(raw: dict[str, Any], names: Mapping[str, str]) -> TaskFact:
    """`names`: service ID -> the stack's name for it."""
    status = raw.get("Status") or {}
    return TaskFact(
        id=raw["ID"],
        service=names.get(raw.get("ServiceID", ""), raw.get("ServiceID", "")),
        node_id=raw.get("NodeID") or None,
        slot=raw.get("Slot"),
        desired_state=raw.get("DesiredState", ""),
        state=status.get("State", ""),
        message=status.get("Message", ""),
        error=status.get("Err", ""),
        timestamp=status.get("Timestamp", ""),
    )


def parse(nodes: list[dict[str, Any]], services: list[dict[str, Any]],
          tasks: list[dict[str, Any]], project: str) -> Facts:
    """Facts from the three API answers. Services outside `project`'s stack are left out
    (the API filter already does; a hand-made caller might not)."""
    mine = [s for s in services
            if ((s.get("Spec") or {}).get("Labels") or {}).get(LABEL_NAMESPACE) == project]
    parsed = tuple(parse_service(s, project) for s in mine)
    names = {s.id: s.name for s in parsed}
    return Facts(
        nodes=tuple(parse_node(n) for n in nodes),
        services=parsed,
        tasks=tuple(parse_task(t, names) for t in tasks if t.get("ServiceID") in names),
    )


def gather(client: docker.DockerClient, project: str) -> Facts:
    """The swarm as the manager sees it. Only a manager answers these calls."""
    stack = {"label": f"{LABEL_NAMESPACE}={project}"}
    try:
        nodes = client.api.nodes()
        services = client.api.services(filters=stack, status=True)
        tasks = client.api.tasks(filters=stack)
    except (docker.errors.APIError, RequestException) as exc:
        raise DockerError(f"the swarm manager did not answer ({exc}); lanai's daemon runs "
                          "on the manager: check `docker node ls` there") from exc
    return parse(nodes, services, tasks, project)
