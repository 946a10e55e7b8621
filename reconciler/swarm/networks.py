"""The stack's top-level networks, volumes, configs and secrets.

Swarm spans servers only on overlay networks (a bridge is one host's). Stack deploy
creates a network once and never updates it (options changed = re-create), so what
lanai writes here must be right the first time: overlay, encrypted per lanai.yaml.
"""

from __future__ import annotations

from typing import Any

from reconciler.swarm.notes import Note, mapped, refused

# The v3.9 schema's keys (definitions network, volume, secret/config).
NETWORK_KEYS = frozenset({"name", "driver", "driver_opts", "ipam", "external", "internal",
                          "attachable", "labels"})
VOLUME_KEYS = frozenset({"name", "driver", "driver_opts", "external", "labels"})
OBJECT_KEYS = frozenset({"name", "file", "external", "labels", "template_driver", "driver",
                         "driver_opts"})
# Swarm's own host network; a service on it uses the server's network stack.
HOST_NETWORK = "hostnet"


def networks(declared: dict[str, Any], *, encrypt: bool, attachable: set[str],
             host_network: bool) -> tuple[dict[str, Any], list[Note]]:
    """Each network as an overlay (encrypted when lanai.yaml says so), the ones named in
    `attachable` open to the relay's plain container, plus swarm's `host` network when a
    service asked for the host's network."""
    out: dict[str, Any] = {}
    notes: list[Note] = []
    for name, spec in declared.items():
        spec = dict(spec or {})
        unknown = sorted(set(spec) - NETWORK_KEYS)
        if unknown:
            notes.append(refused(None, f"networks.{name}", f"the stack format has no "
                                 f"{', '.join(unknown)} on a network; remove it in swarm mode"))
        if spec.get("external"):
            out[name] = {k: v for k, v in spec.items() if k in ("name", "external")}
            continue
        entry = {k: v for k, v in spec.items() if k in NETWORK_KEYS and v not in ({}, None)}
        if entry.get("driver") not in (None, "overlay"):
            notes.append(mapped(None, f"networks.{name}", f"driver {entry['driver']} reaches "
                                "one server only; lanai makes it an overlay network."))
        entry["driver"] = "overlay"
        if encrypt:
            # IPsec between servers: Ollama has no authentication and this crosses the LAN.
            entry["driver_opts"] = {**(entry.get("driver_opts") or {}), "encrypted": ""}
        if name in attachable:
            entry["attachable"] = True
        out[name] = entry
    if host_network:
        out[HOST_NETWORK] = {"external": True, "name": "host"}
    return out, notes


def volumes(declared: dict[str, Any]) -> tuple[dict[str, Any], list[Note]]:
    """Named volumes as they are: each server keeps its own (Ollama's models are per box);
    compose's `<project>_<name>` names stay, so a move from compose keeps the data."""
    out: dict[str, Any] = {}
    notes: list[Note] = []
    for name, spec in declared.items():
        spec = dict(spec or {})
        unknown = sorted(set(spec) - VOLUME_KEYS)
        if unknown:
            notes.append(refused(None, f"volumes.{name}", f"the stack format has no "
                                 f"{', '.join(unknown)} on a volume; remove it in swarm mode"))
        out[name] = {k: v for k, v in spec.items() if k in VOLUME_KEYS and v not in ({}, None)}
    return out, notes


def objects(kind: str, declared: dict[str, Any]) -> tuple[dict[str, Any], list[Note]]:
    """Top-level configs or secrets: Swarm stores them from a file the CLI reads; compose's
    `environment:` and `content:` sources have no v3 equivalent."""
    out: dict[str, Any] = {}
    notes: list[Note] = []
    for name, spec in declared.items():
        spec = dict(spec or {})
        inline = [k for k in ("environment", "content") if k in spec]
        if inline:
            place = "on the manager" if kind == "secrets" else "in the state repo"
            notes.append(refused(None, f"{kind}.{name}", f"Swarm takes {kind} from a file "
                                 f"only, not from {inline[0]}:; write it to a file {place} "
                                 "and name it with file:"))
            continue
        out[name] = {k: v for k, v in spec.items() if k in OBJECT_KEYS}
    return out, notes
