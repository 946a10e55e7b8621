"""One compose service, key by key, as the v3 stack format has it.

docker/cli's loader (`cli/compose/loader/loader.go Load`, 20.10 and 26.1 alike) checks
`ForbiddenProperties` (a hard error: mem_limit, cpu_*, volumes_from ...), then the v3
schema (`additionalProperties: false`), then warns about and drops
`UnsupportedProperties` (restart, devices, privileged, network_mode ...) and
`DeprecatedProperties` (container_name, expose). lanai emits none of these: each key
is kept, mapped to what Swarm has, dropped with a note, or refused.
"""

from __future__ import annotations

from typing import Any

from reconciler.swarm.notes import Note, mapped, refused
from reconciler.swarm.ports import stack_ports

# Service keys of the v3.9 schema (cli/compose/schema/data/config_schema_v3.9.json; 3.12
# has the same) that Swarm honours as compose means them.
KEPT = frozenset({
    "cap_add", "cap_drop", "command", "configs", "credential_spec", "dns", "dns_search",
    "entrypoint", "environment", "hostname", "image", "init", "isolation", "labels",
    "logging", "read_only", "secrets", "stdin_open", "stop_grace_period", "stop_signal",
    "sysctls", "tmpfs", "tty", "ulimits", "user", "working_dir",
})
# Keys handled by a rule below or by the stack file's assembly.
MAPPED = frozenset({
    "deploy", "depends_on", "container_name", "profiles", "restart", "ports", "volumes",
    "healthcheck", "network_mode", "networks", "mem_limit", "mem_reservation", "cpus",
    "expose", "extra_hosts", "pull_policy",
})
# Host access that Swarm ignores: a `security.allow` grant for it cannot be honoured.
HOST_ACCESS = ("devices", "privileged", "security_opt", "pid", "ipc", "userns_mode", "cgroup",
               "cgroup_parent", "cgroupns_mode")
HEALTH_KEYS = ("test", "interval", "timeout", "retries", "start_period", "disable")
# Restart policies in Swarm's words (docker/cli `convert/service.go convertRestartPolicy`).
RESTART = {"no": "none", "always": "any", "unless-stopped": "any", "on-failure": "on-failure"}


def convert(name: str, spec: dict[str, Any], *, where: str, start_interval: bool,
            ingress: list[str] | None = None) -> tuple[dict[str, Any], list[Note]]:
    """The service's keys in the v3 format (placement, labels, update policy and endpoint
    mode are the assembly's), with the notes. `where`: the server(s) that run it."""
    out: dict[str, Any] = {}
    notes: list[Note] = []
    for key, value in spec.items():
        if value is None or key in MAPPED:
            continue
        if key in HOST_ACCESS:
            if value not in (False, "", [], {}):
                notes.append(host_access(name, key))
        elif key in KEPT:
            out[key] = value
        else:
            notes.append(refused(name, key, f"docker stack deploy has no {key} (the v3 "
                                 "stack format lacks it); remove it in swarm mode"))
    deploy = dict(spec.get("deploy") or {})
    policy = restart_policy(spec.get("restart"))
    if policy and "restart_policy" not in deploy:
        deploy["restart_policy"] = policy
    if policy and deploy["restart_policy"] is policy:
        notes.append(mapped(name, "restart", f"{spec['restart']} becomes Swarm's "
                            f"deploy.restart_policy (condition {policy['condition']})."))
    elif policy:
        notes.append(mapped(name, "restart", "left out: Swarm follows the service's own "
                            "deploy.restart_policy."))
    limits, limit_notes = resource_limits(name, spec)
    notes += limit_notes
    if limits:
        resources = dict(deploy.get("resources") or {})
        resources["limits"] = {**limits, **(resources.get("limits") or {})}
        deploy["resources"] = resources
    if deploy:
        out["deploy"] = deploy
    if spec.get("container_name"):
        notes.append(mapped(name, "container_name", "Swarm names task containers itself "
                            f"({name}.1.<task id>); left out in swarm mode."))
    if spec.get("expose"):
        notes.append(mapped(name, "expose", "Swarm lets services on one network reach each "
                            "other on any port; left out in swarm mode."))
    if spec.get("pull_policy"):
        notes.append(mapped(name, "pull_policy", "docker stack deploy pulls per its "
                            "--resolve-image flag, which lanai sets; left out in swarm mode."))
    if spec.get("extra_hosts"):
        out["extra_hosts"] = extra_hosts(spec["extra_hosts"])
    check = healthcheck(spec.get("healthcheck"), start_interval)
    if check:
        out["healthcheck"] = check
    if (spec.get("healthcheck") or {}).get("start_interval") and not start_interval:
        notes.append(mapped(name, "healthcheck.start_interval", "needs the 3.12 stack format "
                            "(docker CLI 26 or newer on the manager); left out, so health is "
                            "first probed one interval after start."))
    volumes, volume_notes = mounts(name, spec.get("volumes") or [])
    notes += volume_notes
    if volumes:
        out["volumes"] = volumes
    ports, port_notes = stack_ports(name, spec.get("ports") or [], where, ingress)
    notes += port_notes
    if ports:
        out["ports"] = ports
    return out, notes


def host_access(name: str, key: str) -> Note:
    return refused(name, key, f"Swarm services cannot have {key} (docker stack deploy "
                   "ignores it), so lanai cannot grant this host access; remove it in swarm "
                   "mode, or run this stack in compose mode")


def restart_policy(restart: str | None) -> dict[str, Any] | None:
    """compose's `restart` as deploy.restart_policy: `on-failure:3` keeps its attempts."""
    if not restart:
        return None
    mode, _, attempts = str(restart).partition(":")
    policy: dict[str, Any] = {"condition": RESTART.get(mode, "any")}
    if attempts.isdigit():
        policy["max_attempts"] = int(attempts)
    return policy


def resource_limits(name: str, spec: dict[str, Any]) -> tuple[dict[str, str], list[Note]]:
    """mem_limit and cpus are ForbiddenProperties of the stack loader ("Set resource limits
    using deploy.resources"): the same limits, where Swarm reads them."""
    limits: dict[str, str] = {}
    notes: list[Note] = []
    if spec.get("mem_limit"):
        limits["memory"] = str(spec["mem_limit"])
        notes.append(mapped(name, "mem_limit", "becomes deploy.resources.limits.memory, where "
                            "Swarm reads it."))
    if spec.get("cpus"):
        limits["cpus"] = str(spec["cpus"])
        notes.append(mapped(name, "cpus", "becomes deploy.resources.limits.cpus, where Swarm "
                            "reads it."))
    if spec.get("mem_reservation"):
        notes.append(refused(name, "mem_reservation", "the stack format reserves memory only "
                             "under deploy.resources.reservations.memory; write it there"))
    return limits, notes


def extra_hosts(value: Any) -> list[str]:
    """Compose 2.40 writes `host=ip`; the stack loader splits on ':' (host:ip)."""
    items = [f"{k}={v}" for k, v in value.items()] if isinstance(value, dict) else list(value)
    return [item.replace("=", ":", 1) if "=" in item else item for item in items]


def healthcheck(check: dict[str, Any] | None, start_interval: bool) -> dict[str, Any] | None:
    """The check as it is; start_interval only in the 3.12 format (the 3.9 schema has no
    such key)."""
    if not check:
        return None
    keys = (*HEALTH_KEYS, "start_interval") if start_interval else HEALTH_KEYS
    return {k: check[k] for k in keys if check.get(k) is not None}


def mounts(name: str, volumes: list[Any]) -> tuple[list[Any], list[Note]]:
    """Long-syntax mounts in the v3 schema's shape: it knows bind.propagation,
    volume.nocopy and tmpfs.size (an integer) only."""
    out: list[Any] = []
    notes: list[Note] = []
    for mount in volumes:
        if not isinstance(mount, dict):
            out.append(mount)
            continue
        entry = {k: mount[k] for k in ("type", "source", "target", "read_only", "consistency")
                 if mount.get(k) not in (None, "")}
        bind = {k: v for k, v in (mount.get("bind") or {}).items() if k == "propagation"}
        volume = {k: v for k, v in (mount.get("volume") or {}).items() if k == "nocopy"}
        tmpfs = mount.get("tmpfs") or {}
        extra = set(mount.get("bind") or {}) - {"propagation", "create_host_path"} \
            | set(mount.get("volume") or {}) - {"nocopy"} | set(tmpfs) - {"size"}
        if extra:
            notes.append(refused(name, "volumes", f"{mount.get('target')}: the stack format "
                                 f"has no {', '.join(sorted(extra))} on a mount; remove it in "
                                 "swarm mode"))
            continue
        if bind:
            entry["bind"] = bind
        if volume:
            entry["volume"] = volume
        if tmpfs.get("size") is not None:
            entry["tmpfs"] = {"size": int(str(tmpfs["size"]))}
        out.append(entry)
    return out, notes
