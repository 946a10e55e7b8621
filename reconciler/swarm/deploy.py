"""The `deploy` section lanai writes for every service: where it runs, how it is reached,
how it is updated, what it reserves, and lanai's labels.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from reconciler.swarm.notes import Note, mapped, refused

MANAGER = "node.role == manager"
SERVER_LABEL = "io.lanai.server"
LABEL_MANAGED = "io.lanai.managed"  # the same labels as compose mode (stack/render.py)
LABEL_HASH = "io.lanai.config-hash"
GPU_KIND = "gpu"  # swarmkit exports it as DOCKER_RESOURCE_GPU, the toolkit's swarm-resource


def on_server(server: str) -> str:
    """The constraint of a per-server service: bootstrap labels each node with its name."""
    return f"node.labels.{SERVER_LABEL} == {server}"


def placed(deploy: dict[str, Any], constraint: str) -> dict[str, Any]:
    placement = dict(deploy.get("placement") or {})
    constraints = list(placement.get("constraints") or [])
    placement["constraints"] = [*constraints, *([] if constraint in constraints
                                                 else [constraint])]
    return {**deploy, "placement": placement}


def gpu_request(deploy: dict[str, Any]) -> int | None:
    """How many GPUs compose.yaml reserves (0: `count: all`), None when it reserves none."""
    devices = (((deploy.get("resources") or {}).get("reservations") or {}).get("devices")
               or [])
    for device in devices:
        if device.get("driver") == "nvidia" or GPU_KIND in (device.get("capabilities") or []):
            count = device.get("count")
            return count if isinstance(count, int) and count > 0 else 0
    return None


def without_devices(deploy: dict[str, Any]) -> dict[str, Any]:
    """Swarm's ContainerSpec has no DeviceRequests (moby api/types/swarm/container.go), and
    the v3 schema refuses reservations.devices."""
    resources = dict(deploy.get("resources") or {})
    reservations = {k: v for k, v in (resources.get("reservations") or {}).items()
                    if k != "devices"}
    resources = {**resources, "reservations": reservations} if reservations else \
        {k: v for k, v in resources.items() if k != "reservations"}
    out = {k: v for k, v in deploy.items() if k != "resources"}
    return {**out, "resources": resources} if resources else out


def with_gpus(deploy: dict[str, Any], count: int) -> dict[str, Any]:
    """A discrete generic resource: the node advertises its GPUs (node-generic-resources),
    swarm hands `count` of them to the task as DOCKER_RESOURCE_GPU."""
    resources = dict(deploy.get("resources") or {})
    reservations = dict(resources.get("reservations") or {})
    reservations["generic_resources"] = [
        {"discrete_resource_spec": {"kind": GPU_KIND, "value": count}}]
    return {**deploy, "resources": {**resources, "reservations": reservations}}


def gpu_value(count: int) -> int:
    """Swarm reserves a number of GPUs; compose's `count: all` becomes one (lanai does not
    read how many GPUs a node advertises)."""
    return count if count > 0 else 1


def gpu_note(service: str, placed_on: dict[str, bool], count: int) -> Note:
    """One sentence for a GPU reservation: which services reserve, which run on the CPU."""
    with_gpu = [name for name, has in placed_on.items() if has]
    without = [name for name, has in placed_on.items() if not has]
    parts = []
    if with_gpu:
        value = gpu_value(count)
        parts.append(f"{listing(with_gpu)} reserve{plural_s(with_gpu)} {value} gpu generic "
                     f"resource{'s' if value > 1 else ''}"
                     f"{' (count: all becomes one GPU)' if count == 0 else ''}")
    if without:
        parts.append(f"{listing(without)} run{plural_s(without)} on the CPU (no GPU "
                     "advertised to Swarm there)")
    return mapped(service, "deploy.resources.reservations.devices", "Swarm has no device "
                  f"requests: {' and '.join(parts)}.")


def gpu_missing(service: str, server: str) -> Note:
    return refused(service, "deploy.resources.reservations.devices", f"lanai.yaml says gpu: "
                   f"required, but server {server} advertises no GPU to Swarm; run bootstrap "
                   "on it with its NVIDIA driver installed, or set gpu: auto")


def update_config(deploy: dict[str, Any], *, stop_first: bool) -> dict[str, Any]:
    """stop-first where the old task holds what the new one needs (all GPUs, a host port:
    the new task would stay Pending) or a volume a second writer could corrupt (SQLite);
    start-first elsewhere. One task at a time, rolled back if it fails within 10 s of
    starting. A user's own update_config keys win."""
    defaults = {"parallelism": 1, "order": "stop-first" if stop_first else "start-first",
                "failure_action": "rollback", "monitor": "10s"}
    return {**deploy, "update_config": {**defaults, **(deploy.get("update_config") or {})}}


def dnsrr(service: str, deploy: dict[str, Any]) -> tuple[dict[str, Any], list[Note]]:
    """DNS round robin: a service VIP is an IPVS address, and the kernels lanai is tested on
    have no IPVS (moby/moby#24005)."""
    notes = []
    if deploy.get("endpoint_mode") not in (None, "dnsrr"):
        notes.append(mapped(service, "deploy.endpoint_mode", f"{deploy['endpoint_mode']} needs "
                            "IPVS in the kernel; lanai uses dnsrr (DNS round robin)."))
    return {**deploy, "endpoint_mode": "dnsrr"}, notes


def config_hash(spec: dict[str, Any], material: str = "") -> str:
    """lanai's hash of a service's stack spec (secret values redacted by the caller, their
    keyed digest and the content of mounted repo files in `material`): drift is a label
    compare, as in compose mode."""
    digest = hashlib.sha256(material.encode())
    digest.update(json.dumps(spec, sort_keys=True).encode())
    return digest.hexdigest()[:16]


def labelled(deploy: dict[str, Any], labels: dict[str, str]) -> dict[str, Any]:
    return {**deploy, "labels": {**(deploy.get("labels") or {}), **labels}}


def plural_s(names: list[str]) -> str:
    """The verb's -s for one subject."""
    return "s" if len(names) == 1 else ""


def listing(names: list[str]) -> str:
    """a, b and c"""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
