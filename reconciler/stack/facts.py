"""Facts: read-only observations of the live server, through the Docker SDK.

Parsers take the SDK's plain dicts so they can be tested on recorded data;
`observe` is the only function here that talks to Docker.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import docker
import docker.errors
from requests.exceptions import RequestException

from reconciler.core.errors import DockerError
from reconciler.stack.render import LABEL_HASH

LABEL_PROJECT = "com.docker.compose.project"
LABEL_SERVICE = "com.docker.compose.service"
LABEL_ONEOFF = "com.docker.compose.oneoff"


@dataclass(frozen=True)
class ContainerFact:
    id: str
    name: str
    service: str
    status: str  # created, running, restarting, paused, exited, dead
    health: str | None  # starting, healthy, unhealthy; None without a healthcheck
    image_id: str
    image_ref: str
    config_hash: str | None  # our label; None if lanai did not create it
    exit_code: int | None = None
    started_at: str | None = None
    restart_count: int = 0
    health_log: str | None = None  # the last health probe's output
    ports: tuple[tuple[str, int], ...] = ()  # published (host address, host port)
    gpu: bool = False  # given an NVIDIA GPU (requests_gpu below)
    docker_probed: bool = False  # Docker ran a health probe since this start

    @property
    def running(self) -> bool:
        return self.status == "running"


@dataclass
class Facts:
    containers: list[ContainerFact] = field(default_factory=list)
    images: dict[str, str | None] = field(default_factory=dict)  # ref -> image id, None: absent
    # service -> why its GPU is gone (gpu_health.GpuProber; only the drift check fills it)
    gpu_lost: dict[str, str] = field(default_factory=dict)

    def by_service(self) -> dict[str, list[ContainerFact]]:
        out: dict[str, list[ContainerFact]] = {}
        for container in self.containers:
            out.setdefault(container.service, []).append(container)
        return out


def parse_container(attrs: dict[str, Any]) -> ContainerFact | None:
    """One container from `docker inspect` data; None for one-off `compose run` containers."""
    config = attrs.get("Config") or {}
    labels = config.get("Labels") or {}
    if labels.get(LABEL_ONEOFF) == "True":
        return None
    state = attrs.get("State") or {}
    health = state.get("Health") or None
    log = (health or {}).get("Log") or []
    return ContainerFact(
        id=attrs["Id"],
        name=attrs.get("Name", "").lstrip("/"),
        service=labels.get(LABEL_SERVICE, "?"),
        status=state.get("Status", "unknown"),
        health=health.get("Status") if health else None,
        image_id=attrs.get("Image", ""),
        image_ref=config.get("Image", ""),
        config_hash=labels.get(LABEL_HASH),
        exit_code=state.get("ExitCode"),
        started_at=state.get("StartedAt"),
        restart_count=attrs.get("RestartCount", 0),
        health_log=(log[-1].get("Output") or "").strip()[-300:] if log else None,
        ports=_published(attrs),
        gpu=requests_gpu(attrs),
        docker_probed=probed_since_start(health, state.get("StartedAt")),
    )


def probed_since_start(health: dict[str, Any] | None, started_at: str | None) -> bool:
    """Whether Docker's health log has a probe that started after the container's start
    (the log survives a restart of the same container)."""
    started = docker_time(started_at or "")
    for probe in (health or {}).get("Log") or []:
        at = docker_time(str(probe.get("Start") or ""))
        if at is None or started is None or at >= started:
            return True
    return False


def docker_time(text: str) -> float | None:
    """Epoch seconds of a Docker timestamp (RFC 3339, nanoseconds cut to microseconds)."""
    text = text.strip()
    if not text or text.startswith("0001-"):
        return None
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    zone_at = max(text.rfind("+"), text.rfind("-"))
    base, zone = (text[:zone_at], text[zone_at:]) if zone_at > 10 else (text, "")
    if "." in base:
        whole, fraction = base.split(".", 1)
        base = f"{whole}.{(fraction + '000000')[:6]}"
    try:
        return datetime.fromisoformat(base + zone).timestamp()
    except ValueError:
        return None


def _published(attrs: dict[str, Any]) -> tuple[tuple[str, int], ...]:
    """Host ports a container holds, from its HostConfig (also known while it is stopped)."""
    bindings = ((attrs.get("HostConfig") or {}).get("PortBindings") or {})
    out = set()
    for entries in bindings.values():
        for entry in entries or []:
            port = entry.get("HostPort")
            if port and port.isdigit():
                out.add((entry.get("HostIp") or "0.0.0.0", int(port)))
    return tuple(sorted(out))


def connect(timeout: float = 30) -> docker.DockerClient:
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except (docker.errors.DockerException, RequestException) as exc:
        raise DockerError(
            f"cannot reach the Docker engine ({_short(exc)}); start it with "
            "`systemctl start docker` and make sure this user may use it (root or the docker "
            "group).") from None
    return client


def engine_version(client: docker.DockerClient) -> tuple[str, str] | None:
    """The engine's (version, API version), e.g. ("26.1.5", "1.45"); None if it won't say."""
    try:
        info = client.version()
    except (docker.errors.DockerException, RequestException):
        return None
    return str(info.get("Version", "")), str(info.get("ApiVersion", ""))


def observe(client: docker.DockerClient, project: str, images: list[str]) -> Facts:
    try:
        listed = client.api.containers(all=True, filters={"label": f"{LABEL_PROJECT}={project}"})
        containers = []
        for summary in listed:
            try:
                attrs = client.api.inspect_container(summary["Id"])
            except docker.errors.NotFound:
                continue  # removed between list and inspect
            fact = parse_container(attrs)
            if fact is not None:
                containers.append(fact)
        present: dict[str, str | None] = {}
        for ref in images:
            try:
                present[ref] = client.api.inspect_image(ref)["Id"]
            except docker.errors.ImageNotFound:
                present[ref] = None
    except (docker.errors.APIError, RequestException) as exc:
        raise DockerError(f"the Docker engine did not answer ({_short(exc)}); check "
                          "`docker info`.") from None
    containers.sort(key=lambda c: (c.service, c.name))
    return Facts(containers=containers, images=present)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


# NVIDIA_VISIBLE_DEVICES values for which the NVIDIA runtime injects no GPU: unset or
# empty and "void" leave the container alone, "none" mounts the driver but no device.
_NO_DEVICES = {"", "void", "none"}


def requests_gpu(attrs: dict[str, Any]) -> bool:
    """Whether `docker inspect` data shows a container that was given an NVIDIA GPU.

    Either a device request (compose's `deploy.resources.reservations.devices` with
    driver nvidia or capability gpu, `docker run --gpus`), or NVIDIA_VISIBLE_DEVICES in
    its environment, which the NVIDIA runtime reads (ollama/ollama sets it to `all`).
    """
    host = attrs.get("HostConfig") or {}
    for request in host.get("DeviceRequests") or []:
        capabilities = {c for group in request.get("Capabilities") or [] for c in group or []}
        if request.get("Driver") == "nvidia" or "gpu" in capabilities:
            return True
    for entry in (attrs.get("Config") or {}).get("Env") or []:
        name, _, value = entry.partition("=")
        if name == "NVIDIA_VISIBLE_DEVICES":
            return value.strip().lower() not in _NO_DEVICES
    return False
