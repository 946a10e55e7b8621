"""Finding the running container of a deployed compose service, and its address.

lanai talks to the services of the stack over Docker's network, by container
address, rather than through published ports (which a compose.yaml may not have):
the models step to Ollama, the Open WebUI step to its admin API, `lanai trust` to
the proxy's certificate store. Each caller words its own error when the service is
not running or has no address.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import docker

from reconciler.stack.facts import LABEL_PROJECT, LABEL_SERVICE


@dataclass(frozen=True)
class ServiceContainer:
    container: Any  # docker.models.containers.Container
    address: str | None  # its IP address on the first network that gave it one


# What Swarm labels a task's container with: the stack's service is <project>_<service>.
LABEL_SWARM_SERVICE = "com.docker.swarm.service.name"


def service_container(client: docker.DockerClient, project: str,
                       service: str) -> ServiceContainer | None:
    """The running container of `service` in the compose project, or (swarm mode) the task
    of the stack's service running on this host; None when none runs here.

    With several (a scaled service), the first Docker lists.
    """
    found = client.containers.list(filters={"label": [
        f"{LABEL_PROJECT}={project}", f"{LABEL_SERVICE}={service}"]})
    if not found:
        found = client.containers.list(filters={"label": [
            f"{LABEL_SWARM_SERVICE}={project}_{service}"]})
    if not found:
        return None
    container = found[0]
    networks = (container.attrs.get("NetworkSettings") or {}).get("Networks") or {}
    address = next((n.get("IPAddress") for n in networks.values() if n.get("IPAddress")), None)
    return ServiceContainer(container, address)
