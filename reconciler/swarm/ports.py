"""Published ports in swarm mode: host mode, never the routing mesh, never loopback-only.

docker/cli `opts/port.go ConvertPortToPortConfig` drops a short port's IP with a
warning ("service will listen on '0.0.0.0'") and the v3 schema has no `host_ip`: a
port that compose.yaml keeps on 127.0.0.1 would reach the LAN. The routing mesh
(`mode: ingress`) needs IPVS, which the kernels lanai is tested on lack
(moby/moby#24005), and swarm rejects it beside `endpoint_mode: dnsrr` anyway.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from reconciler.swarm.notes import Note, mapped, refused

EVERY_ADDRESS = ("", "0.0.0.0", "::")


def shown(port: dict[str, Any]) -> str:
    """A port as compose.yaml's short syntax writes it, e.g. 127.0.0.1:3000:8080."""
    host_ip = str(port.get("host_ip") or "")
    parts = [f"[{host_ip}]" if ":" in host_ip else host_ip] if host_ip else []
    if port.get("published") not in (None, ""):
        parts.append(str(port["published"]))
    parts.append(str(port.get("target")))
    protocol = port.get("protocol") or "tcp"
    return ":".join(parts) + ("" if protocol == "tcp" else f"/{protocol}")


def is_loopback(host_ip: str) -> bool:
    try:
        return ipaddress.ip_address(host_ip).is_loopback
    except ValueError:
        return host_ip == "localhost"


def explicit_ingress(raw_ports: Any) -> list[str]:
    """Ports compose.yaml itself writes with `mode: ingress` (compose's normalized output
    writes that mode on every port, so only the user's file tells a choice from a default)."""
    return [shown(p) for p in raw_ports or [] if isinstance(p, dict) and p.get("mode") == "ingress"]


def stack_ports(service: str, ports: list[dict[str, Any]], where: str,
                ingress: list[str] | None = None) -> tuple[list[dict[str, Any]], list[Note]]:
    """The v3 long syntax of each port Swarm can publish (mode host), and a note for each
    one left out or refused. `where` names the server(s) that run the service."""
    out: list[dict[str, Any]] = []
    notes: list[Note] = []
    for text in ingress or []:
        notes.append(refused(service, "ports", f'"{text}" asks for mode: ingress, Swarm\'s '
                             "routing mesh, which needs IPVS (missing on many kernels) and "
                             "cannot serve dnsrr services; remove the mode and lanai publishes "
                             "it in host mode"))
    for port in ports:
        host_ip = str(port.get("host_ip") or "")
        published = port.get("published")
        if is_loopback(host_ip):
            notes.append(mapped(service, "ports", f'"{shown(port)}": Swarm cannot publish on '
                                f"{host_ip} only (it would listen on every address); left out "
                                "in swarm mode: use the https proxy, or ssh -L to the relay."))
        elif host_ip not in EVERY_ADDRESS:
            notes.append(refused(service, "ports", f'"{shown(port)}": Swarm cannot publish on '
                                 f"one address only ({host_ip}), it would listen on every "
                                 "address of the server; remove the address or the port in "
                                 "swarm mode"))
        elif published not in (None, "") and not str(published).isdigit():
            notes.append(refused(service, "ports", f'"{shown(port)}": the stack format '
                                 "publishes one port per entry, not a range; list each port"))
        else:
            entry: dict[str, Any] = {"mode": "host", "target": int(port["target"]),
                                     "protocol": port.get("protocol") or "tcp"}
            if published not in (None, ""):
                entry["published"] = int(str(published))
            out.append(entry)
    if out:
        listed = ", ".join(shown(p) for p in out)
        notes.append(mapped(service, "ports", f"{listed}: published in host mode on {where} "
                            "(Swarm's routing mesh needs IPVS, which lanai does not rely on)."))
    return out, notes
