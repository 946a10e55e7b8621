"""The relay: how lanai's daemon, on the manager's host, reaches each Ollama and Open WebUI.

The services live on overlay networks, which the host cannot route to, and Swarm cannot
publish a port on 127.0.0.1 only (it would listen on every address). So lanai runs one
plain container on the manager, `<project>-relay`: Caddy, on a bridge of its own where
it publishes one 127.0.0.1 port per upstream (Docker picks the host ports; lanai reads
them back), and attached to the stack's attachable overlay network, where Docker's DNS
names `ollama-<server>` and Open WebUI. It is re-created when its Caddyfile, image or
network changes; its labels say which upstream each port is, so the model and Open WebUI
syncers find their URLs from the container alone (`ollama_urls`, `webui_url`).
"""

from __future__ import annotations

import hashlib
import io
import json
import socket
import tarfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import docker
import docker.errors
from requests.exceptions import RequestException

from reconciler.core.errors import DockerError, StateError
from reconciler.desired.lanai_yaml import LanaiConfig
from reconciler.swarm.deploy import LABEL_MANAGED
from reconciler.swarm.stackfile import OLLAMA_PORT, ollama_name

LABEL_RELAY = "io.lanai.relay"  # the project it serves
LABEL_HASH = "io.lanai.relay-hash"
LABEL_UPSTREAMS = "io.lanai.relay-upstreams"  # JSON: container port -> upstream
WEBUI = "open-webui"  # the upstream's key in LABEL_UPSTREAMS for Open WebUI
WEBUI_PORT = 10000  # the relay's own ports inside its container
FIRST_OLLAMA_PORT = 10001
CADDYFILE_DIR = "/etc/lanai-relay"  # written into the container before it starts
DEFAULT_WEBUI = "open-webui:8080"


@dataclass(frozen=True)
class Upstream:
    key: str  # the server's name for an Ollama, WEBUI for Open WebUI
    target: str  # host:port on the overlay network, as Docker's DNS names it
    port: int  # the relay's port inside its container
    stream: bool  # flush each chunk at once (Ollama streams pulls and chats)


def container_name(project: str) -> str:
    return f"{project}-relay"


def bridge_name(project: str) -> str:
    """Its own bridge: the stack's shared overlay may be internal (no route out), and a
    container on internal networks alone cannot publish ports."""
    return f"{project}-relay"


def image_for(config: LanaiConfig, compose: Mapping[str, Any]) -> str:
    """The https proxy's image (Caddy, already on the manager), else swarm.relay_image."""
    services = compose.get("services") or {}
    https = config.https
    if https is not None and https.proxy in services and services[https.proxy].get("image"):
        return str(services[https.proxy]["image"])
    if config.swarm.relay_image:
        return config.swarm.relay_image
    raise StateError("lanai.yaml: swarm.relay_image: swarm mode needs a Caddy image for the "
                     "relay through which lanai reaches each Ollama, and this state has no "
                     "https proxy to take it from; set swarm.relay_image (e.g. caddy:2.6.2) "
                     "and push again.")


def upstreams(servers: list[str], webui: str | None) -> list[Upstream]:
    """Open WebUI (its `service:port`) and one Ollama per server, ports in that order."""
    out = [Upstream(WEBUI, webui, WEBUI_PORT, stream=False)] if webui else []
    out += [Upstream(server, f"{ollama_name(server)}:{OLLAMA_PORT}", FIRST_OLLAMA_PORT + i,
                     stream=True) for i, server in enumerate(servers)]
    return out


def caddyfile(found: list[Upstream]) -> str:
    """Plain http on the relay's ports; no admin API, no certificates: only the daemon on
    this host talks to it, through 127.0.0.1."""
    lines = ["{", "\tadmin off", "\tauto_https off", "}"]
    for upstream in found:
        lines.append(f":{upstream.port} {{")
        if upstream.stream:  # streamed pulls and chats flow as Ollama writes them
            lines += [f"\treverse_proxy {upstream.target} {{", "\t\tflush_interval -1",
                      "\t}"]
        else:
            lines.append(f"\treverse_proxy {upstream.target}")
        lines.append("}")
    return "\n".join(lines) + "\n"


def attachable_network(stack: Mapping[str, Any], project: str) -> str | None:
    """The overlay the stack made attachable (the one Ollama and Open WebUI share), as
    Swarm names it: `<project>_<net>`."""
    for name, spec in (stack.get("networks") or {}).items():
        if isinstance(spec, dict) and spec.get("attachable") and not spec.get("external"):
            return spec.get("name") or f"{project}_{name}"
    return None


def relay_hash(image: str, text: str, network_id: str, ports: list[int]) -> str:
    material = json.dumps([image, text, network_id, ports])
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def host_ports(attrs: Mapping[str, Any]) -> dict[int, int]:
    """Container port -> the 127.0.0.1 port Docker picked, from `docker inspect`."""
    out: dict[int, int] = {}
    ports = ((attrs.get("NetworkSettings") or {}).get("Ports") or {})
    for key, bindings in ports.items():
        port, _, proto = key.partition("/")
        for binding in bindings or []:
            if proto == "tcp" and binding.get("HostIp") in ("127.0.0.1", "") \
                    and binding.get("HostPort"):
                out[int(port)] = int(binding["HostPort"])
                break
    return out


def urls(attrs: Mapping[str, Any]) -> dict[str, str]:
    """Upstream key -> http://127.0.0.1:PORT, from a relay container's inspect JSON."""
    labels = ((attrs.get("Config") or {}).get("Labels") or {})
    try:
        keys = json.loads(labels.get(LABEL_UPSTREAMS) or "{}")
    except ValueError:
        return {}
    ports = host_ports(attrs)
    return {key: f"http://127.0.0.1:{ports[int(port)]}" for port, key in keys.items()
            if int(port) in ports}


@dataclass(frozen=True)
class RelayPlan:
    """What the relay should be for a deployment."""

    project: str
    image: str
    network: str  # the overlay, <project>_<net>
    upstreams: tuple[Upstream, ...]

    @property
    def caddyfile(self) -> str:
        return caddyfile(list(self.upstreams))


def plan_for(project: str, image: str, stack: Mapping[str, Any], servers: list[str],
             webui: str | None) -> RelayPlan:
    network = attachable_network(stack, project)
    if network is None:
        raise StateError("compose.yaml: networks: in swarm mode Ollama and Open WebUI must "
                         "share a network (lanai makes it attachable for its relay); put "
                         "both on one network and push again.")
    return RelayPlan(project, image, network, tuple(upstreams(servers, webui)))


class Relay:
    """Ensures the relay container and reads its URLs (the Docker calls live here)."""

    def __init__(self, client: docker.DockerClient) -> None:
        self.client = client

    def ensure(self, wanted: RelayPlan) -> dict[str, str]:
        """Create, re-create or start the relay as needed; returns its URLs."""
        try:
            return self._ensure(wanted)
        except (docker.errors.APIError, RequestException) as exc:
            raise DockerError(f"could not start lanai's relay {container_name(wanted.project)}"
                              f" ({exc}); check `docker logs {container_name(wanted.project)}`"
                              " on the manager.", deterministic=False) from None

    def _ensure(self, wanted: RelayPlan) -> dict[str, str]:
        name = container_name(wanted.project)
        network = self.client.networks.get(wanted.network)
        text = wanted.caddyfile
        ports = [u.port for u in wanted.upstreams]
        digest = relay_hash(wanted.image, text, network.id, ports)
        current = self._find(name, wanted.project)
        if current is not None and current.labels.get(LABEL_HASH) == digest:
            if current.status != "running":
                current.start()
                current.reload()
            return urls(current.attrs)
        if current is not None:
            current.remove(force=True)
        bridge = self._bridge(wanted.project)
        labels = {LABEL_MANAGED: "true", LABEL_RELAY: wanted.project, LABEL_HASH: digest,
                  LABEL_UPSTREAMS: json.dumps({str(u.port): u.key for u in wanted.upstreams})}
        container = self.client.containers.create(
            wanted.image, name=name, labels=labels, network=bridge.name,
            command=["caddy", "run", "--config", f"{CADDYFILE_DIR}/Caddyfile", "--adapter",
                     "caddyfile"],
            ports={f"{port}/tcp": ("127.0.0.1",) for port in ports},
            restart_policy={"Name": "unless-stopped"})
        try:
            container.put_archive("/etc", _archive(text))
            network.connect(container)
            container.start()
            container.reload()
        except BaseException:
            container.remove(force=True)
            raise
        found = urls(container.attrs)
        listening(found.values())  # the syncers ask it at once
        return found

    def _find(self, name: str, project: str) -> Any:
        try:
            found = self.client.containers.get(name)
        except docker.errors.NotFound:
            return None
        if found.labels.get(LABEL_RELAY) != project:
            raise DockerError(f"a container named {name} that lanai did not make is in the "
                              "way of its relay; rename or remove it and reconcile again.")
        return found

    def _bridge(self, project: str) -> Any:
        name = bridge_name(project)
        found = self.client.networks.list(names=[name])
        exact = [n for n in found if n.name == name]
        if exact:
            return exact[0]
        return self.client.networks.create(name, driver="bridge",
                                           labels={LABEL_MANAGED: "true", LABEL_RELAY: project})

    def remove(self, project: str) -> bool:
        """Remove the relay and its bridge (back to one box: the relay holds the stack's
        overlay network, which `docker stack rm` cannot remove while it is attached).
        Whether there was one."""
        try:
            found = self._find(container_name(project), project)
            if found is not None:
                found.remove(force=True)
            for network in self.client.networks.list(names=[bridge_name(project)]):
                if network.name == bridge_name(project) and \
                        network.attrs.get("Labels", {}).get(LABEL_RELAY) == project:
                    network.remove()
        except (docker.errors.APIError, RequestException) as exc:
            raise DockerError(f"could not remove lanai's relay {container_name(project)} "
                              f"({exc}); remove it (`docker rm -f`) and lanai goes on at its "
                              "next poll.", deterministic=False) from None
        return found is not None

    def urls(self, project: str) -> dict[str, str]:
        """Upstream key -> URL of the running relay; {} when it is not there."""
        try:
            found = self.client.containers.get(container_name(project))
        except docker.errors.NotFound:
            return {}
        except (docker.errors.APIError, RequestException) as exc:
            raise DockerError(f"could not read lanai's relay ({exc}); check `docker ps` on "
                              "the manager.", deterministic=False) from None
        if found.labels.get(LABEL_RELAY) != project or found.status != "running":
            return {}
        return urls(found.attrs)


def ollama_urls(client: docker.DockerClient, project: str) -> dict[str, str]:
    """Server -> `http://127.0.0.1:PORT` of its Ollama, through the relay."""
    return {k: v for k, v in Relay(client).urls(project).items() if k != WEBUI}


def webui_url(client: docker.DockerClient, project: str) -> str | None:
    """Open WebUI through the relay, or None when the relay is not running."""
    return Relay(client).urls(project).get(WEBUI)


def listening(addresses: Iterable[str], timeout: float = 15.0) -> None:
    """Until Caddy accepts connections on every published port (or `timeout`: the caller's
    own request then says what is wrong)."""
    deadline = time.monotonic() + timeout
    for url in addresses:
        parts = urlsplit(url)
        while time.monotonic() < deadline:
            try:
                socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80),
                                         timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)


def _archive(text: str) -> bytes:
    """A tar of CADDYFILE_DIR/Caddyfile for put_archive at /etc."""
    data = text.encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        folder = tarfile.TarInfo(CADDYFILE_DIR.removeprefix("/etc/"))
        folder.type, folder.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(folder)
        info = tarfile.TarInfo(f"{folder.name}/Caddyfile")
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
