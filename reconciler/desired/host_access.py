"""What a compose file lets its containers do to the server, and what lanai.yaml allows.

Whoever can push to the state repo decides what runs as root on the server. These
rules make the ways out of a container's confinement that Compose offers visible: each
is refused unless `security.allow` in lanai.yaml names it for that service, so a
reviewer of a push reads the grant where it is made. Pure but for resolving links in
the checkout; the same rules run on the raw file (with lines, before anything happens)
and on compose's resolved config on the server (after interpolation, `extends` and
`include`, which the raw file hides).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Host namespaces and other grants, by the name lanai.yaml allows them with.
ACCESS_NAMES = {
    "privileged": "privileged: true (every capability, every host device: root on the server)",
    "host_network": "network_mode: host (the server's network stack and every port on it)",
    "host_pid": "pid: host (sees and signals every process on the server)",
    "host_ipc": "ipc: host (the server's shared memory)",
    "host_uts": "uts: host (may rename the server)",
    "host_userns": "userns_mode: host (no user-namespace remapping)",
    "host_cgroup": "cgroup: host (the server's cgroup namespace)",
    "cgroup_parent": "cgroup_parent (runs outside the stack's resource limits)",
    "devices": "devices / device_cgroup_rules (the server's device files)",
    "security_opt": "security_opt other than no-new-privileges (seccomp, AppArmor, SELinux)",
    "other_containers": "joining a container outside this compose file (container:NAME)",
    "docker_socket": "the Docker socket, or a directory above it (full root on the server)",
}

# Docker's default capability set: adding one of these changes nothing.
DEFAULT_CAPS = frozenset({
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
    "NET_BIND_SERVICE", "NET_RAW", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"})
LINUX_CAPS = DEFAULT_CAPS | frozenset({
    "AUDIT_CONTROL", "AUDIT_READ", "BLOCK_SUSPEND", "BPF", "CHECKPOINT_RESTORE",
    "DAC_READ_SEARCH", "IPC_LOCK", "IPC_OWNER", "LEASE", "LINUX_IMMUTABLE", "MAC_ADMIN",
    "MAC_OVERRIDE", "NET_ADMIN", "NET_BROADCAST", "PERFMON", "SYS_ADMIN", "SYS_BOOT",
    "SYS_MODULE", "SYS_NICE", "SYS_PACCT", "SYS_PTRACE", "SYS_RAWIO", "SYS_RESOURCE",
    "SYS_TIME", "SYS_TTY_CONFIG", "SYSLOG", "WAKE_ALARM", "ALL"})

# The Docker socket's paths (a bind of either, or of a directory above, exposes it).
DOCKER_SOCKETS = ("/var/run/docker.sock", "/run/docker.sock")
# Where the server keeps each service's secrets inside the rendered repo (render.SECRETS_DIR).
SECRETS_DIR = ".lanai-secrets"

# Compose key -> (allow name, what of the server's the container then shares).
_NAMESPACES = {
    "network_mode": ("host_network", "network stack, every port and interface on it"),
    "pid": ("host_pid", "processes, which the container can see, trace and signal"),
    "ipc": ("host_ipc", "shared memory"),
    "uts": ("host_uts", "host name"),
    "userns_mode": ("host_userns", "user IDs (no user-namespace remapping)"),
    "cgroup": ("host_cgroup", "cgroup namespace"),
}

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class Finding:
    """One grant: where it is written, the allow entry it needs (None: cannot be allowed)."""

    path: Path_
    need: str | None
    message: str

    @property
    def service(self) -> str:
        return str(self.path[1])


def cap_name(text: str) -> str:
    """SYS_ADMIN, sys_admin and CAP_SYS_ADMIN are one capability."""
    return text.strip().upper().removeprefix("CAP_")


def is_allow_entry(entry: str) -> bool:
    return entry in ACCESS_NAMES or cap_name(entry) in LINUX_CAPS or entry.startswith("/")


def refused(compose: dict[str, Any], root: Path, allow: dict[str, list[str]], *,
            resolved: bool = False) -> list[Finding]:
    """The findings in `compose` that `allow` (service -> entries) does not cover.

    `root` is the state repo's checkout: bind mounts inside it are the repo's own files.
    `resolved`: `compose` is `docker compose config` output, so `$` is literal."""
    return [f for f in findings(compose, root, resolved=resolved)
            if not _allowed(f, allow.get(f.service, []))]


def _allowed(finding: Finding, entries: list[str]) -> bool:
    need = finding.need
    if need is None:
        return False
    if need.startswith("/"):
        return any(entry.startswith("/") and _under(need, entry) for entry in entries)
    if need in ACCESS_NAMES:
        return need in entries
    return need in {cap_name(e) for e in entries} or "ALL" in {cap_name(e) for e in entries}


def _under(path: str, parent: str) -> bool:
    parent = posixpath.normpath(parent)
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def findings(compose: dict[str, Any], root: Path, *, resolved: bool = False) -> list[Finding]:
    out: list[Finding] = []
    for name, spec in (compose.get("services") or {}).items():
        if isinstance(spec, dict):
            out += _service(compose, str(name), spec, root, resolved)
    return out


def _service(compose: dict[str, Any], name: str, spec: dict[str, Any], root: Path,
             resolved: bool) -> Iterator[Finding]:
    base: Path_ = ("services", name)

    def at(*keys: str | int) -> Path_:
        return (*base, *keys)

    def interpolated(value: object, path: Path_, what: str) -> bool:
        # $$ is compose's escape for a literal $.
        if resolved or not isinstance(value, str) or "$" not in value.replace("$$", ""):
            return False
        found.append(Finding(path, None, f"{what} is interpolated ({value}) after lanai checks "
                             "it, so lanai cannot tell what it grants; write it literally"))
        return True

    found: list[Finding] = []
    privileged = spec.get("privileged")
    if not interpolated(privileged, at("privileged"), "privileged") and _true(privileged):
        found.append(Finding(at("privileged"), "privileged", "privileged: true gives the "
                             "container every capability and every host device, which is "
                             "root on the server"))
    build = spec.get("build")
    if isinstance(build, dict) and _true(build.get("privileged")):
        found.append(Finding(at("build", "privileged"), "privileged",
                             "build.privileged: true runs the image build as root on the server"))
    for key, (need, shared) in _NAMESPACES.items():
        value = spec.get(key)
        if value is None or interpolated(value, at(key), key):
            continue
        text = str(value)
        if text == "host":
            found.append(Finding(at(key), need, f"{key}: host gives the container the "
                                 f"server's {shared}"))
        elif text.startswith("container:"):
            found.append(Finding(at(key), "other_containers", f"{key}: {text} joins a "
                                 "container that this compose file does not define"))
    if spec.get("cgroup_parent") is not None \
            and not interpolated(spec["cgroup_parent"], at("cgroup_parent"), "cgroup_parent"):
        found.append(Finding(at("cgroup_parent"), "cgroup_parent", "cgroup_parent places the "
                             "container in a cgroup of the server's, outside the stack's limits"))
    for index, cap in enumerate(_items(spec.get("cap_add"))):
        if interpolated(cap, at("cap_add", index), "cap_add"):
            continue
        name_ = cap_name(str(cap))
        if name_ in DEFAULT_CAPS:
            continue
        what = "every capability" if name_ == "ALL" else f"{name_}, a capability Docker " \
            "withholds by default"
        found.append(Finding(at("cap_add", index), name_, f"cap_add gives the container {what}"
                             + (" (close to root on the server)" if name_ in
                                {"ALL", "SYS_ADMIN", "SYS_MODULE", "SYS_RAWIO", "SYS_PTRACE",
                                 "DAC_READ_SEARCH", "BPF"} else "")))
    for key in ("devices", "device_cgroup_rules"):
        for index, device in enumerate(_items(spec.get(key))):
            if interpolated(device, at(key, index), key):
                continue
            source = device.get("source") if isinstance(device, dict) else \
                str(device).split(":", 1)[0]
            found.append(Finding(at(key, index), "devices",
                                 f"{key} gives the container the server's device {source}"))
    for index, option in enumerate(_items(spec.get("security_opt"))):
        if interpolated(option, at("security_opt", index), "security_opt"):
            continue
        if not re.fullmatch(r"no-new-privileges([:=]true)?", str(option).strip()):
            found.append(Finding(at("security_opt", index), "security_opt",
                                 f"security_opt {option} loosens the container's confinement "
                                 "(seccomp, AppArmor or SELinux)"))
    for index, entry in enumerate(_items(spec.get("volumes_from"))):
        if not interpolated(entry, at("volumes_from", index), "volumes_from") \
                and str(entry).startswith("container:"):
            found.append(Finding(at("volumes_from", index), "other_containers",
                                 f"volumes_from {entry} mounts the volumes of a container that "
                                 "this compose file does not define"))
    for path, source, what in _host_sources(compose, spec, base):
        if not interpolated(source, path, what):
            found += _host_path(path, source, what, root, name)
    return iter(found)


def _host_sources(compose: dict[str, Any], spec: dict[str, Any], base: Path_
                  ) -> Iterator[tuple[Path_, str, str]]:
    """(key path, host path as written, what reads it) for every file the service gets."""
    volumes = compose.get("volumes") or {}
    for index, mount in enumerate(_items(spec.get("volumes"))):
        path = (*base, "volumes", index)
        if isinstance(mount, dict):
            kind, source = mount.get("type"), mount.get("source")
            if kind == "bind" and isinstance(source, str):
                yield path, source, "a bind mount"
                continue
            if kind != "volume" or not isinstance(source, str):
                continue
        elif isinstance(mount, str) and ":" in mount:
            source = mount.split(":", 1)[0]
            if source.startswith(("/", ".", "~", "$")):
                yield path, source, "a bind mount"
                continue
        else:
            continue  # an anonymous volume
        device = _volume_device(volumes.get(source))
        if device is not None:
            yield path, device, f"volume {source} (driver_opts.device)"
    for key in ("configs", "secrets"):
        top = compose.get(key) or {}
        for index, entry in enumerate(_items(spec.get(key))):
            ref = entry.get("source") if isinstance(entry, dict) else entry
            definition = top.get(ref) if isinstance(top, dict) else None
            if isinstance(definition, dict) and isinstance(definition.get("file"), str):
                yield (*base, key, index), definition["file"], f"{key[:-1]} {ref}"
    env_files = spec.get("env_file")
    for index, entry in enumerate(_items(env_files)):
        file = entry.get("path") if isinstance(entry, dict) else entry
        if isinstance(file, str):
            path = (*base, "env_file", index) if isinstance(env_files, list) \
                else (*base, "env_file")
            yield path, file, "env_file"
    build = spec.get("build")
    contexts = {"context": build} if isinstance(build, str) else \
        {"context": build.get("context", ".")} if isinstance(build, dict) else {}
    if isinstance(build, dict) and isinstance(build.get("additional_contexts"), dict):
        contexts.update(build["additional_contexts"])
    for key, context in contexts.items():
        if isinstance(context, str) and "://" not in context \
                and not context.startswith(("git@", "service:")):
            yield (*base, "build") if isinstance(build, str) else (*base, "build", key), \
                context, "the build context"


def _volume_device(definition: object) -> str | None:
    """The host path a named volume of the local driver mounts, if it mounts one."""
    if not isinstance(definition, dict) or definition.get("driver", "local") != "local":
        return None
    options = definition.get("driver_opts") or {}
    device = options.get("device") if isinstance(options, dict) else None
    return device if isinstance(device, str) and device.startswith(("/", "$")) else None


def _host_path(path: Path_, source: str, what: str, root: Path, service: str
               ) -> list[Finding]:
    """A host path a service reads: refused outside the state repo, and other services'
    secrets (the server writes each service's own secrets file into the repo's copy)."""
    if source.startswith("~"):
        return [Finding(path, None, f"{what} of {source} reads the server's home directory; "
                        "write an absolute path or one inside the state repo")]
    root = Path(posixpath.abspath(root))
    lexical = posixpath.normpath(posixpath.join(str(root), source))
    base = next((str(r) for r in (root, root.resolve()) if _under(lexical, str(r))), None)
    if base is not None:
        # Inside the repo as written; a link in the repo may still point out of it.
        real = posixpath.normpath(str(Path(lexical).resolve()))
        real_root = str(root.resolve())
        if _under(real, real_root):
            inner = real[len(real_root):].lstrip("/")
            # A build runs the pusher's own Dockerfile, who names each service's secrets in
            # lanai.yaml anyway; a running container must not see the other services'.
            own = what == "the build context" or (
                what == "env_file" and inner == f"{SECRETS_DIR}/{service}.env")
            if not own and (inner == "" or _under(inner, SECRETS_DIR)):
                return [Finding(path, None, f"{what} of {source} exposes the server's copy of "
                                f"the repo, where {SECRETS_DIR}/ holds every service's secrets; "
                                "mount a subdirectory instead")]
            return []
        lexical = real
    out = []
    if any(_under(socket, lexical) or _under(lexical, socket) for socket in DOCKER_SOCKETS):
        out.append(Finding(path, "docker_socket", f"{what} of {source} exposes the Docker "
                           "socket, which is full root on the server"))
    if lexical not in DOCKER_SOCKETS:
        out.append(Finding(path, lexical, f"{what} of {source} gives the container a path of "
                           "the server outside the state repo"))
    return out


def _items(value: object) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _true(value: object) -> bool:
    return value is True or str(value).strip().lower() in {"true", "yes", "on", "1"}
