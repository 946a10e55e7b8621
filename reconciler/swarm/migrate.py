"""Moving a project between one box (Compose) and a swarm (`docker stack`), both ways.

A push of `mode: swarm` meets Compose's containers of the same project on the manager:
they hold the ports the swarm's proxy publishes and the network names its stack makes,
so they go first (`docker compose down`, volumes kept: the stack's volumes carry the same
names, so Open WebUI's data and the manager's models stay). A push back to `mode: compose`
(`git revert`) meets the stack: `docker stack rm`, then the wait until its containers and
networks are gone, since Compose would trip over a network name still held.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import docker
from docker.errors import APIError

from reconciler.core.errors import ApplyError, DockerError
from reconciler.swarm import cli, command
from reconciler.swarm.relay import Relay

COMPOSE_PROJECT = "com.docker.compose.project"
STACK_NAMESPACE = "com.docker.stack.namespace"
GONE_TIMEOUT = 180.0  # stack rm returns at once; its tasks stop within their grace period
COMMAND_TIMEOUT = 300.0


def compose_down(project: str) -> list[str]:
    """Compose finds a project's containers and networks by its labels: no file needed
    (checked on Compose 2.20.2, 2.26.1 and 2.40.3). Volumes are kept (no -v)."""
    return ["docker", "compose", "--project-name", project, "down", "--remove-orphans"]


def compose_leftovers(client: docker.DockerClient, project: str) -> list[str]:
    """Names of Compose's containers of `project` on this host, running or not."""
    found = client.containers.list(all=True, filters={"label": f"{COMPOSE_PROJECT}={project}"})
    return sorted(c.name for c in found)


def stack_leftovers(client: docker.DockerClient, project: str) -> list[str]:
    """Names of the swarm stack's services; none where this host is in no swarm."""
    try:
        if client.info().get("Swarm", {}).get("ControlAvailable") is not True:
            return []
        services = client.api.services(filters={"label": f"{STACK_NAMESPACE}={project}"})
    except APIError as exc:
        raise DockerError(f"Docker did not list the swarm's services: {exc.explanation}; "
                          "check `docker info` on this server.", deterministic=False) from None
    return sorted(s["Spec"]["Name"] for s in services)


def wait_stack_gone(client: docker.DockerClient, project: str, *,
                    timeout: float = GONE_TIMEOUT, sleep: Callable[[float], None] = time.sleep,
                    clock: Callable[[], float] = time.monotonic) -> None:
    """Until no container or network of the removed stack is left on this host."""
    label = {"label": f"{STACK_NAMESPACE}={project}"}
    deadline = clock() + timeout
    while True:
        left = [c.name for c in client.containers.list(all=True, filters=label)]
        left += [n.name for n in client.networks.list(filters=label)]
        if not left:
            return
        if clock() >= deadline:
            raise DockerError(f"the swarm stack {project} was removed but {', '.join(left)} "
                              f"still exist after {timeout:.0f}s; remove them (`docker rm -f`, "
                              "`docker network rm`) and lanai deploys on its next poll.",
                              deterministic=False)
        sleep(1.0)


def leave_compose(client: docker.DockerClient, project: str,
                  progress: Callable[[str], None]) -> list[dict[str, Any]]:
    """Before a swarm deploy: Compose's containers of the project make way (one box to
    several). Returns the action it took, as the outcome records actions."""
    left = compose_leftovers(client, project)
    if not left:
        return []
    progress(f"moving {project} from Compose to the swarm: docker compose down")
    return [_run(compose_down(project), "migrate", project,
                 f"one box to the swarm: Compose's {', '.join(left)} make way (volumes kept)")]


def leave_stack(client: docker.DockerClient, project: str,
                progress: Callable[[str], None]) -> list[dict[str, Any]]:
    """Before a Compose deploy: the swarm stack of the project goes (back to one box)."""
    services = stack_leftovers(client, project)
    if not services:
        return []
    progress(f"moving {project} from the swarm back to Compose: docker stack rm")
    Relay(client).remove(project)  # attached to the stack's overlay: stack rm would fail
    done = _run(cli.stack_rm(project), "migrate", project,
                f"back to one box: the swarm's {', '.join(services)} removed (volumes kept)")
    wait_stack_gone(client, project)
    return [done]


def _run(argv: list[str], kind: str, service: str, reason: str) -> dict[str, Any]:
    started = time.monotonic()
    result = command.run(argv, cwd="/", timeout=COMMAND_TIMEOUT)
    if result.returncode != 0:
        text = (result.stderr or result.stdout).strip()
        last = text.splitlines()[-1] if text else f"exit {result.returncode}"
        raise ApplyError(f"`{' '.join(argv[:4])}` failed: {last}; fix what it names and "
                         "lanai tries again on its next poll.", deterministic=False)
    return {"kind": kind, "service": service, "reason": reason, "result": "ok", "error": None,
            "duration_ms": round((time.monotonic() - started) * 1000)}
