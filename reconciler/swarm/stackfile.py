"""The stack file for `docker stack deploy`, from compose's normalized project (pure).

`docker stack deploy` reads the legacy v3 format, not the Compose Specification: the
20.10 CLI (Debian 12) knows schemas up to 3.9 and takes a file without `version:` for
1.0; 26.1 knows 3.12 (`cli/compose/schema/schema.go`). So lanai writes a complete v3
file of its own from what `docker compose config --format json` resolved (profiles,
interpolation, env files, lanai's override), the user's compose.yaml staying as it is.
Swarm lacks some Compose features; each becomes a `Note` (swarm/notes.py).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import yaml

from reconciler.desired.lanai_yaml import LanaiConfig
from reconciler.desired.models_yaml import ModelsConfig
from reconciler.desired.servers import Server
from reconciler.swarm import deploy as dep
from reconciler.swarm import networks as top
from reconciler.swarm import service as svc
from reconciler.swarm.notes import Note, mapped, refused
from reconciler.swarm.ports import explicit_ingress

SCHEMA = "3.9"  # the newest the 20.10 CLI knows
SCHEMA_START_INTERVAL = "3.12"  # healthcheck.start_interval: CLI 26.0 and newer
START_INTERVAL_CLI = (26, 0)
OLLAMA_PORT = 11434
REDACTED = "<secret>"


@dataclass(frozen=True)
class StackFile:
    """The stack, its format version and the notes. compose config inlines env files, so
    the stack holds the services' secret values: write it readable by root only."""

    stack: dict[str, Any]  # the file's content, `version` first
    version: str
    notes: list[Note] = field(default_factory=list)

    @property
    def refusals(self) -> list[Note]:
        return [n for n in self.notes if n.refused]

    def dump(self) -> str:
        """YAML for `docker stack deploy --compose-file` (keys in lanai's order)."""
        return yaml.dump(self.stack, Dumper=_Dumper, sort_keys=False,
                         default_flow_style=False)


class _Dumper(yaml.SafeDumper):
    """No &anchors: a reviewer reads each service whole (the Ollamas share values)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def ollama_name(server: str) -> str:
    return f"ollama-{server}"


def ollama_urls(servers: list[Server]) -> str:
    """OLLAMA_BASE_URLS as Open WebUI reads it (';'-separated, config.py), in lanai.yaml's
    order: the index of each connection is its position here."""
    return ";".join(f"http://{ollama_name(s.name)}:{OLLAMA_PORT}" for s in servers)


def stack_file(compose: dict[str, Any], config: LanaiConfig, models: ModelsConfig | None, *,
               ollama_service: str | None, gpu_servers: set[str],
               cli_version: tuple[int, int], raw_compose: dict[str, Any] | None = None,
               hash_material: Mapping[str, str] | None = None) -> StackFile:
    """The stack for `config.servers`: every service on the manager but Ollama, which runs
    once per server with Ollama (`ollama-<server>`).

    `gpu_servers`: the servers whose node advertises GPUs to Swarm (node facts; reserving
    one elsewhere leaves the task Pending for ever). `cli_version`: the manager's docker
    CLI (major, minor). `raw_compose`: the user's compose.yaml as loaded, to tell a port's
    explicit `mode: ingress` from compose's default. `hash_material`: per compose service,
    what else its config hash covers (a keyed digest of its secrets, mounted repo files).
    """
    start_interval = cli_version >= START_INTERVAL_CLI
    services_in = compose.get("services") or {}
    ollama_servers = [s for s in config.servers if s.runs_ollama] if ollama_service in \
        services_in else []
    renamed = {ollama_service: [ollama_name(s.name) for s in ollama_servers]} \
        if ollama_servers else {}
    clients = {name for name, spec in services_in.items()
               if name != ollama_service and points_at(spec, ollama_service)}
    manager = config.manager
    notes: list[Note] = []
    services: dict[str, Any] = {}
    for name, spec in services_in.items():
        raw = ((raw_compose or {}).get("services") or {}).get(name) or {}
        ingress = explicit_ingress(raw.get("ports")) if isinstance(raw, dict) else []
        material = (hash_material or {}).get(name, "")
        secrets = set(config.secrets.get(name, []))
        if name in renamed:
            out, found = ollama_services(name, spec, config, models, ollama_servers,
                                         gpu_servers, start_interval, ingress, material, secrets)
        else:
            where = manager.name if manager else "the manager"
            body, found = one_service(name, spec, config, where=where,
                                      constraint=dep.MANAGER, server=None,
                                      gpu=manager is not None and manager.name in gpu_servers,
                                      start_interval=start_interval, ingress=ingress)
            if name in clients:
                body, more = use_every_ollama(name, body, ollama_servers)
                found += more
            out = {name: finish(body, material, secrets, server=None)}
        notes += found
        notes += depends_on_note(name, spec, renamed)
        services.update(out)
    stack: dict[str, Any] = {"version": schema_version(services, start_interval),
                             "services": services}
    notes += top_level(stack, compose, config, services_in, ollama_service, clients)
    return StackFile(stack=stack, version=stack["version"], notes=notes)


def schema_version(services: dict[str, Any], start_interval: bool) -> str:
    """3.12 only when a kept start_interval needs it: 3.9 is read by every supported CLI."""
    uses = any("start_interval" in (s.get("healthcheck") or {}) for s in services.values())
    return SCHEMA_START_INTERVAL if start_interval and uses else SCHEMA


def one_service(name: str, spec: dict[str, Any], config: LanaiConfig, *, where: str,
                constraint: str, server: str | None, gpu: bool, start_interval: bool,
                ingress: list[str]) -> tuple[dict[str, Any], list[Note]]:
    """A compose service as one swarm service placed by `constraint`; `gpu`: whether the
    node it lands on advertises GPUs."""
    body, notes = svc.convert(name, spec, where=where, start_interval=start_interval,
                              ingress=ingress)
    nets, net_notes = service_networks(name, spec)
    notes += net_notes
    if nets:
        body["networks"] = nets
    if body.get("labels"):  # compose mode's hash label: swarm's is in deploy.labels
        body["labels"] = {k: v for k, v in body["labels"].items() if k != dep.LABEL_HASH}
    deploy = dict(body.get("deploy") or {})
    wanted = dep.gpu_request(deploy)
    deploy = dep.without_devices(deploy)
    reserves = wanted is not None and gpu and config.gpu != "off"
    if reserves:
        deploy = dep.with_gpus(deploy, dep.gpu_value(wanted or 0))
    if wanted is not None and not gpu and config.gpu == "required":
        notes.append(dep.gpu_missing(name, server or where))
    deploy = dep.placed(deploy, constraint)
    deploy, more = dep.dnsrr(name, deploy)
    notes += more
    stop_first = reserves or bool(body.get("ports")) or any(
        isinstance(m, dict) and m.get("type") == "volume" for m in body.get("volumes") or [])
    deploy = dep.update_config(deploy, stop_first=stop_first)
    body["deploy"] = {k: v for k, v in deploy.items() if v not in ({}, None)}
    if wanted is not None and server is None:
        notes.append(dep.gpu_note(name, {name: reserves}, wanted))
    return body, notes


def ollama_services(name: str, spec: dict[str, Any], config: LanaiConfig,
                    models: ModelsConfig | None, servers: list[Server], gpu_servers: set[str],
                    start_interval: bool, ingress: list[str], material: str,
                    secrets: set[str]) -> tuple[dict[str, Any], list[Note]]:
    """One Ollama per server with Ollama, pinned to it: its volume is that node's, so each
    box keeps its own models; its memory settings come from models.yaml."""
    out: dict[str, Any] = {}
    notes: list[Note] = []
    reserves: dict[str, bool] = {}
    for server in servers:
        service = ollama_name(server.name)
        body, found = one_service(name, copy.deepcopy(spec), config, where=server.name,
                                  constraint=dep.on_server(server.name), server=server.name,
                                  gpu=server.name in gpu_servers,
                                  start_interval=start_interval, ingress=ingress)
        if models is not None:
            body["environment"] = {**(body.get("environment") or {}),
                                   **models.ollama.environment(models.budget.max_loaded)}
        reserves[service] = "generic_resources" in (
            (body["deploy"].get("resources") or {}).get("reservations") or {})
        out[service] = finish(body, material, secrets, server=server.name)
        notes += [n for n in found if n not in notes]
    notes += bind_mounts(name, spec, list(out))
    notes.append(mapped(name, "services", "Swarm runs one Ollama per server that has one: "
                        f"{dep.listing(list(out))}, each pinned to its server and keeping its "
                        "own models."))
    wanted = dep.gpu_request(spec.get("deploy") or {})
    if wanted is not None:
        notes.append(dep.gpu_note(name, reserves, wanted))
    return out, notes


def bind_mounts(name: str, spec: dict[str, Any], services: list[str]) -> list[Note]:
    """Swarm copies no files: a host path an Ollama mounts must exist on every server."""
    sources = [m.get("source") for m in spec.get("volumes") or []
               if isinstance(m, dict) and m.get("type") == "bind"]
    return [mapped(name, "volumes", f"{source} is a path on the host: it must exist on each "
                   f"server that runs {dep.listing(services)} (Swarm copies no files).")
            for source in sources]


def finish(body: dict[str, Any], material: str, secrets: set[str], *,
           server: str | None) -> dict[str, Any]:
    """lanai's labels on the service (not its containers): managed, the server of a
    per-server service, and the hash of everything above them."""
    labels = {dep.LABEL_MANAGED: "true", **({dep.SERVER_LABEL: server} if server else {})}
    body = {**body, "deploy": dep.labelled(body["deploy"], labels)}
    digest = dep.config_hash(redacted(body, secrets), material)
    return {**body, "deploy": dep.labelled(body["deploy"], {dep.LABEL_HASH: digest})}


def redacted(body: dict[str, Any], secrets: set[str]) -> dict[str, Any]:
    """Secret values out of what is hashed: the label is readable by anyone who can inspect
    services, and must not let them test guesses offline (the caller's keyed digest in
    hash_material covers a change of value)."""
    env = body.get("environment")
    if not secrets or not isinstance(env, dict):
        return body
    return {**body, "environment": {k: REDACTED if k in secrets else v for k, v in env.items()}}


def service_networks(name: str, spec: dict[str, Any]) -> tuple[Any, list[Note]]:
    """The service's networks in v3 shape; `network_mode: host` as swarm's host network
    (the stack loader ignores network_mode)."""
    mode = spec.get("network_mode")
    if mode == "host":
        note = mapped(name, "network_mode", "host becomes Swarm's host network (external "
                      "network host), on the manager like the service.")
        return [top.HOST_NETWORK], [note]
    if mode:
        return None, [refused(name, "network_mode", f"{mode} has no Swarm equivalent; join "
                              "the service to a network instead")]
    out: dict[str, Any] = {}
    notes: list[Note] = []
    for network, options in (spec.get("networks") or {}).items():
        options = options or {}
        extra = sorted(set(options) - {"aliases", "ipv4_address", "ipv6_address"})
        if extra:
            notes.append(refused(name, f"networks.{network}", f"the stack format has no "
                                 f"{', '.join(extra)} on a service's network; remove it in "
                                 "swarm mode"))
        kept = {k: v for k, v in options.items() if k not in extra and v}
        out[network] = kept or None
    return out or None, notes


def points_at(spec: dict[str, Any], ollama: str | None) -> bool:
    """Whether the service reaches compose's Ollama through OLLAMA_BASE_URL(S)."""
    env = spec.get("environment") or {}
    if ollama is None or not isinstance(env, dict):
        return False
    urls = [env.get("OLLAMA_BASE_URL") or "", *(env.get("OLLAMA_BASE_URLS") or "").split(";")]
    return any(urlsplit(url.strip()).hostname == ollama for url in urls if url.strip())


def use_every_ollama(name: str, body: dict[str, Any], servers: list[Server]
                     ) -> tuple[dict[str, Any], list[Note]]:
    """Open WebUI seeds its connection list from OLLAMA_BASE_URLS (config.py), one per
    server; the single URL of compose's Ollama names a service swarm no longer has."""
    if not servers:
        return body, []
    env = {k: v for k, v in (body.get("environment") or {}).items()
           if k not in ("OLLAMA_BASE_URL", "OLLAMA_BASE_URLS")}
    env["OLLAMA_BASE_URLS"] = ollama_urls(servers)
    names = [ollama_name(s.name) for s in servers]
    note = mapped(name, "environment.OLLAMA_BASE_URL", "points at compose's single Ollama; "
                  f"lanai sets OLLAMA_BASE_URLS to {dep.listing(names)} instead, one "
                  "connection per server.")
    return {**body, "environment": env}, [note]


def depends_on_note(name: str, spec: dict[str, Any], renamed: dict[str | None, list[str]]
                    ) -> list[Note]:
    """Swarm has no start order; lanai's deploy waits for health instead (`restart`ed tasks
    of a service that starts too early are retried by swarm meanwhile)."""
    if not spec.get("depends_on"):
        return []
    deps = [new for old in spec["depends_on"] for new in renamed.get(old, [old])]
    verb = "is" if len(deps) == 1 else "are"
    return [mapped(name, "depends_on", "Swarm starts services together; lanai leaves it out "
                   f"of the stack and waits until {dep.listing(deps)} {verb} healthy.")]


def top_level(stack: dict[str, Any], compose: dict[str, Any], config: LanaiConfig,
              services_in: dict[str, Any], ollama: str | None, clients: set[str]
              ) -> list[Note]:
    """networks, volumes, configs and secrets into `stack`; the notes they give."""
    notes: list[Note] = []
    shared = set()
    if ollama in services_in:
        shared = set(services_in[ollama].get("networks") or {})
        reaching = [set(services_in[c].get("networks") or {}) for c in sorted(clients)]
        shared = shared.intersection(*reaching) if reaching else set()
    host = any(s.get("network_mode") == "host" for s in services_in.values())
    nets, found = top.networks(compose.get("networks") or {}, encrypt=config.swarm.encrypt,
                               attachable=shared, host_network=host)
    notes += found
    vols, found = top.volumes(compose.get("volumes") or {})
    notes += found
    configs, found = top.objects("configs", compose.get("configs") or {})
    notes += found
    secrets, found = top.objects("secrets", compose.get("secrets") or {})
    notes += found
    for key, value in (("networks", nets), ("volumes", vols), ("configs", configs),
                       ("secrets", secrets)):
        if value:
            stack[key] = value
    return notes
