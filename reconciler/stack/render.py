"""Render one commit into a compose project directory on the server.

The directory holds the commit's files as they are, plus `lanai.override.yaml`
(generated: labels and secret env files, so a reviewer sees the user's file
and lanai's additions side by side) and `lanai.desired.json`, the per-service
hashes that make an idle reconcile cheap: no compose call, just a label compare.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from reconciler.core.errors import DockerError, LanaiError, StateError
from reconciler.desired import host_access, safe_tree
from reconciler.desired.lanai_yaml import LanaiConfig
from reconciler.desired.load import (
    DesiredState,
    format_path,
    host_access_sentence,
    inside,
    ollama_service,
)
from reconciler.desired.models_yaml import ModelsConfig
from reconciler.desired.webui_yaml import WebUIConfig
from reconciler.https.caddyfile import (
    CADDYFILE,
    CADDYFILE_IN_PROXY,
    STATUS_DIR_IN_PROXY,
    render_caddyfile,
)
from reconciler.server.secrets import write_compose_env_file
from reconciler.stack import compose, tool_versions

DESIRED_FILE = "lanai.desired.json"
SECRETS_DIR = host_access.SECRETS_DIR  # each service's secrets file, in the copy of the repo
LABEL_MANAGED = "io.lanai.managed"
LABEL_HASH = "io.lanai.config-hash"
REDACTED = "<secret>"
RESTORE_FILE = "lanai.restore.yaml"  # written by a restore (backup_run) beside the others
# Swarm mode's stack file, for `docker stack deploy` (reconciler.swarm.render writes it).
STACK_FILE = "lanai.stack.yaml"
# What lanai writes beside the commit's files: a commit holding one of these names is
# refused, so lanai never writes over, or through, a file or link of the commit.
GENERATED = (DESIRED_FILE, compose.OVERRIDE_FILE, SECRETS_DIR, CADDYFILE, RESTORE_FILE,
             STACK_FILE)


@dataclass
class ServiceSpec:
    """What a service should be, as far as drift and reasons are concerned."""

    name: str
    hash: str
    image: str | None
    config: dict[str, Any]  # compose's normalized config, secrets redacted
    ports: list[dict[str, Any]] = field(default_factory=list)
    has_healthcheck: bool = False


@dataclass
class Rendered:
    directory: Path
    commit: str
    key: str
    project: str
    compose_file: str
    services: dict[str, ServiceSpec]
    settings: dict[str, Any] = field(default_factory=dict)  # lanai.yaml of this commit
    cpu_only: list[str] = field(default_factory=list)  # services whose GPU request was dropped
    models_settings: dict[str, Any] | None = None  # models.yaml of this commit, if any
    ollama_service: str | None = None
    webui_settings: dict[str, Any] | None = None  # webui.yaml of this commit, if any
    # Knowledge base -> [[path, sha256], ...]: the commit's own files it names, listed before
    # lanai wrote its files here (None: rendered by a lanai that did not list them).
    documents: dict[str, list[list[str]]] | None = None
    # Services of the compose file left out because their profiles are off -> those profiles.
    inactive: dict[str, list[str]] = field(default_factory=dict)
    # compose: one box (`docker compose up`); swarm: `docker stack deploy` of stack_file,
    # whose services (ollama-<server> for the Ollama) are in stack_services: name ->
    # {"hash": its io.lanai.config-hash, "server": the server it is pinned to or None}.
    mode: str = "compose"
    stack_file: str | None = None
    stack_services: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def config(self) -> LanaiConfig:
        return LanaiConfig.model_validate(self.settings)

    @property
    def webui(self) -> WebUIConfig | None:
        if self.webui_settings is None:
            return None
        return WebUIConfig.model_validate(self.webui_settings)

    @property
    def models(self) -> ModelsConfig | None:
        if self.models_settings is None:
            return None
        return ModelsConfig.model_validate(self.models_settings)

    @property
    def images(self) -> list[str]:
        """The image references the services run, each once."""
        return sorted({s.image for s in self.services.values() if s.image})

    @property
    def profiles(self) -> tuple[str, ...]:
        return tuple(self.settings.get("profiles") or ())

    @property
    def project_handle(self) -> compose.Project:
        return compose.Project(self.project, self.directory, self.compose_file, self.profiles)

    def to_json(self) -> dict[str, Any]:
        return {"commit": self.commit, "key": self.key, "project": self.project,
                "compose_file": self.compose_file, "settings": self.settings,
                "cpu_only": self.cpu_only, "models": self.models_settings,
                "ollama_service": self.ollama_service, "webui": self.webui_settings,
                "documents": self.documents, "inactive": self.inactive,
                "mode": self.mode, "stack_file": self.stack_file,
                "stack_services": self.stack_services,
                "services": {name: vars(spec) for name, spec in self.services.items()}}

    @classmethod
    def from_json(cls, directory: Path, data: dict[str, Any]) -> Rendered:
        return cls(directory=directory, commit=data["commit"], key=data["key"],
                   project=data["project"], compose_file=data["compose_file"],
                   settings=data.get("settings", {}), cpu_only=data.get("cpu_only", []),
                   models_settings=data.get("models"),
                   ollama_service=data.get("ollama_service"),
                   webui_settings=data.get("webui"), documents=data.get("documents"),
                   inactive=data.get("inactive") or {},
                   mode=data.get("mode") or "compose", stack_file=data.get("stack_file"),
                   stack_services=data.get("stack_services") or {},
                   services={name: ServiceSpec(**spec)
                             for name, spec in data["services"].items()})


def status_mount(config: LanaiConfig, status_dir: Path | None) -> Path | None:
    """The daemon's status page directory, when the proxy serves the page."""
    https = config.https
    return status_dir if https is not None and https.status_page else None


def render_key(commit: str, config: LanaiConfig, secrets: dict[str, str], *,
               gpu_runtime: bool, salt: bytes, lan_ip: str | None = None,
               start_interval: bool = False, status_dir: Path | None = None,
               swarm: str = "") -> str:
    """Changes when the commit, any secret value the state uses, the GPU runtime, the
    engine's health start_interval, (with https) the server's LAN address or where the
    status page's socket is changes; in swarm mode when `swarm` (what the swarm adds to
    the render: GPU servers, the docker CLI's version) changes.
    Keyed with the server's salt: the key names a directory, and a plain digest of a
    weak secret could be guessed from it."""
    digest = hmac.new(salt or b"lanai", f"{commit}\0gpu={gpu_runtime}".encode(),
                      hashlib.sha256)
    if start_interval:  # absent before lanai used it: older engines keep their keys
        digest.update(b"\0start_interval")
    mount = status_mount(config, status_dir)
    if mount is not None:  # absent before the status page: an upgrade renders again
        digest.update(f"\0status={mount}".encode())
    if config.https is not None and config.https.lan_ip:
        digest.update(f"\0lan_ip={lan_ip}".encode())
    if swarm:  # absent in compose mode: its keys stay as they were
        digest.update(f"\0swarm={swarm}".encode())
    for name in sorted(config.secret_names()):
        digest.update(f"\0{name}={secrets.get(name, '')}".encode())
    return f"{commit[:12]}-{digest.hexdigest()[:8]}"


def load_rendered(directory: Path) -> Rendered | None:
    try:
        data = json.loads((directory / DESIRED_FILE).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return Rendered.from_json(directory, data)


def gpu_services(compose_data: dict[str, Any]) -> list[str]:
    """Services that reserve an NVIDIA GPU in compose.yaml."""
    out = []
    for name, spec in (compose_data.get("services") or {}).items():
        devices = (((spec or {}).get("deploy") or {}).get("resources") or {}).get(
            "reservations", {}) or {}
        for device in devices.get("devices") or []:
            if device.get("driver") == "nvidia" or "gpu" in (device.get("capabilities") or []):
                out.append(name)
                break
    return out


def cpu_only_services(state: DesiredState, gpu_runtime: bool) -> list[str]:
    wanted = gpu_services({"services": state.services})  # a profile that is off needs no GPU
    if state.config.gpu == "required" and wanted and not gpu_runtime:
        raise StateError(
            f"{', '.join(wanted)} need(s) an NVIDIA GPU (gpu: required in lanai.yaml) but "
            "Docker on this server has no NVIDIA runtime; install the NVIDIA Container Toolkit "
            "(bootstrap.sh does) or set gpu: auto.", deterministic=False)
    if state.config.gpu == "off" or not gpu_runtime:
        return wanted
    return []


def render(state: DesiredState, secrets: dict[str, str], directory: Path, commit: str,
           key: str, *, gpu_runtime: bool, salt: bytes = b"", timeout: float = 60,
           lan_ip: str | None = None, start_interval: bool = False,
           status_dir: Path | None = None,
           finish: Callable[[dict[str, Any], Rendered], None] | None = None) -> Rendered:
    """Fill `directory` (already holding the commit's files) and validate it with compose.

    `status_dir`: the daemon's status page directory, mounted in the https proxy.
    `finish`: called with compose's normalized project and the Rendered before the
    render is marked complete (swarm mode writes its stack file there; the engine picks
    it, as the stack sits below swarm)."""
    config = state.config
    safe_tree.refuse_generated(directory, GENERATED)
    directory.chmod(0o700)  # it will hold resolved environment, secrets included
    env_files = _write_secret_env(state, secrets, directory)
    status = status_mount(config, status_dir)
    if config.https is not None:
        caddyfile = render_caddyfile(config.https, lan_ip, status_page=status is not None)
        safe_tree.write_generated(directory, CADDYFILE, caddyfile, 0o644)
    cpu_only = cpu_only_services(state, gpu_runtime)
    fast_start = fast_start_services(state.compose) if start_interval else []
    _write_override(directory, commit, state, env_files, hashes={}, cpu_only=cpu_only,
                    fast_start=fast_start, status_dir=status)
    project = compose.Project(config.project, directory, config.compose_file,
                              tuple(config.profiles))
    result = compose.run(project.config_cmd(), cwd=directory, timeout=timeout)
    if result.returncode != 0:
        raise config_error(project, result, timeout)
    normalized = json.loads(result.stdout)
    # Again on what compose resolved: interpolation from a .env file, extends and include
    # can grant what the raw file did not show.
    refused = host_access.refused(normalized, directory, _allow(config, status),
                                  resolved=True)
    if refused:
        found = refused[0]
        raise StateError(f"{config.compose_file} as docker compose resolves it: "
                         f"{format_path(found.path)}: {host_access_sentence(found)}; fix it "
                         "in the state repo and push again.")
    services: dict[str, ServiceSpec] = {}
    for name, spec in (normalized.get("services") or {}).items():
        names = config.secrets.get(name, [])
        redacted = _redact(spec, set(names))
        services[name] = ServiceSpec(
            name=name,
            hash=service_hash(redacted, directory, _secrets_digest(names, secrets, salt)),
            image=spec.get("image"),
            config=_relative(redacted, directory),
            ports=spec.get("ports") or [],
            has_healthcheck=bool(spec.get("healthcheck"))
            and not spec["healthcheck"].get("disable"),
        )
    _write_override(directory, commit, state, env_files,
                    hashes={name: spec.hash for name, spec in services.items()},
                    cpu_only=cpu_only, fast_start=fast_start, status_dir=status)
    models = state.models
    rendered = Rendered(directory=directory, commit=commit, key=key, project=config.project,
                        compose_file=config.compose_file, services=services,
                        settings=config.model_dump(mode="json"), cpu_only=cpu_only,
                        models_settings=models.model_dump(mode="json") if models else None,
                        ollama_service=ollama_service(state.compose, models) if models else None,
                        webui_settings=state.webui.model_dump(mode="json") if state.webui
                        else None,
                        documents={name: [[d.path, d.sha256] for d in docs]
                                   for name, docs in state.documents.items()},
                        inactive=state.inactive)
    if finish is not None:
        finish(normalized, rendered)
    # Written last: a directory without it is an interrupted render and is redone.
    safe_tree.write_generated(directory, DESIRED_FILE, json.dumps(rendered.to_json(), indent=1),
                              0o644)
    return rendered


def config_error(project: compose.Project, result: subprocess.CompletedProcess[str],
                 timeout: float) -> LanaiError:
    """Whose file compose rejected: the user's compose file (checked alone), or the
    override lanai generated, which is never the state repo's to fix."""
    alone = compose.run(project.config_cmd(override=False), cwd=project.directory,
                        timeout=timeout)
    if alone.returncode != 0:
        return StateError(f"{project.compose_file} is rejected by docker compose: "
                          f"{compose.error_text(alone)}; fix it in the state repo and push "
                          "again.")
    return override_rejected(compose.error_text(result), _compose_version())


def override_rejected(error: str, version: str | None) -> DockerError:
    found = f"Docker Compose {version}" if version else "Docker Compose"
    if version and not tool_versions.at_least(version, tool_versions.MIN_COMPOSE):
        return DockerError(f"{found} rejects the file lanai generated ({error}) because lanai "
                           f"needs Compose {tool_versions.MIN_COMPOSE} or newer; "
                           f"{tool_versions.upgrade_hint()}.")
    return DockerError(f"{found} rejects the file lanai generated ({error}), which is a bug "
                       "in lanai, not in your state repo; report it with this message, and "
                       "try a newer Compose meanwhile.")


def _compose_version() -> str | None:
    try:
        return tool_versions.compose_version()
    except DockerError:
        return None


def _secrets_digest(names: list[str], secrets: dict[str, str], salt: bytes) -> str:
    """A keyed digest of a service's secret values: the hash label, which anyone allowed to
    inspect containers can read, must not let them test guesses of a secret offline."""
    message = "\0".join(f"{name}={secrets.get(name, '')}" for name in sorted(names))
    return hmac.new(salt or b"lanai", message.encode(), hashlib.sha256).hexdigest()


def service_hash(spec: dict[str, Any], directory: Path, secrets_digest: str = "") -> str:
    """Our hash of a service: its normalized config (secret values redacted, their keyed
    digest added) plus the content of the repo files it mounts."""
    digest = hashlib.sha256(secrets_digest.encode())
    digest.update(json.dumps(_relative(spec, directory), sort_keys=True).encode())
    for mount in spec.get("volumes") or []:
        source = mount.get("source") if isinstance(mount, dict) else None
        if mount.get("type") == "bind" and source and inside(Path(source), directory):
            digest.update(_content_hash(Path(source)).encode())
    return digest.hexdigest()[:16]


def _content_hash(path: Path) -> str:
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if file.is_file():
            digest.update(str(file.relative_to(path.parent)).encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()


def _relative(value: Any, directory: Path) -> Any:
    """Replace the per-commit directory with '.' so the same config hashes the same."""
    text = json.dumps(value).replace(json.dumps(str(directory))[1:-1], ".")
    return json.loads(text)


def _redact(spec: dict[str, Any], secret_names: set[str]) -> dict[str, Any]:
    env = spec.get("environment")
    if not secret_names or not isinstance(env, dict):
        return spec
    return {**spec, "environment": {k: (REDACTED if k in secret_names else v)
                                    for k, v in env.items()}}


def _write_secret_env(state: DesiredState, secrets: dict[str, str],
                      directory: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for service, names in sorted(state.config.secrets.items()):
        path = directory / SECRETS_DIR / f"{service}.env"
        write_compose_env_file(path, {name: secrets[name] for name in names})
        out[service] = path
    return out


# Docker probes every `interval` (10 s in many files), so a service up in a second is first
# seen healthy 10 s later; during start_period an engine with API 1.44 (Engine 25) probes
# every start_interval instead. Compose refuses the key against older engines.
START_INTERVAL = "1s"


def fast_start_services(compose_doc: dict[str, Any]) -> list[str]:
    """Services with a health check of their own that sets no start_interval."""
    out = []
    for name, spec in sorted((compose_doc.get("services") or {}).items()):
        check = (spec or {}).get("healthcheck") if isinstance(spec, dict) else None
        if isinstance(check, dict) and not check.get("disable") \
                and check.get("test") not in (None, ["NONE"]) and "start_interval" not in check:
            out.append(name)
    return out


def fast_start_healthcheck(spec: dict[str, Any]) -> dict[str, str]:
    """start_interval, and a start_period of one interval where the file has none (start_
    interval only applies within it; a failing check is then seen at most one interval
    later than without)."""
    check = spec["healthcheck"]
    out = {"start_interval": START_INTERVAL}
    if not check.get("start_period"):
        out["start_period"] = str(check.get("interval") or "30s")
    return out


class _Reset(list):  # type: ignore[type-arg]
    """Emitted as compose's `!reset []`: drops a value from the user's file in the override."""


class _OverrideDumper(yaml.SafeDumper):
    pass


_OverrideDumper.add_representer(
    _Reset, lambda dumper, data: dumper.represent_sequence("!reset", list(data)))


def _allow(config: LanaiConfig, status_dir: Path | None) -> dict[str, list[str]]:
    """lanai.yaml's grants, and lanai's own: the proxy reads the status page's directory."""
    allow = dict(config.security.allow)
    if status_dir is not None and config.https is not None:
        proxy = config.https.proxy
        allow[proxy] = [*allow.get(proxy, []), str(status_dir)]
    return allow


def _write_override(directory: Path, commit: str, state: DesiredState,
                    env_files: dict[str, Path], hashes: dict[str, str],
                    cpu_only: list[str], fast_start: list[str],
                    status_dir: Path | None = None) -> None:
    services: dict[str, Any] = {}
    models = state.models
    ollama = ollama_service(state.compose, models) if models else None
    for name in state.services:
        entry: dict[str, Any] = {"labels": {LABEL_MANAGED: "true"}}
        https = state.config.https
        if https is not None and name == https.proxy:
            # The proxy's configuration, generated from lanai.yaml (hashed with the service).
            entry["volumes"] = [f"./{CADDYFILE}:{CADDYFILE_IN_PROXY}:ro"]
            if status_dir is not None:  # the daemon's socket (a file in it, made later)
                entry["volumes"].append(f"{status_dir}:{STATUS_DIR_IN_PROXY}:ro")
        if models is not None and name == ollama:
            # Ollama's memory settings, from models.yaml (check_models keeps them out of
            # compose.yaml, so there is one place to change them).
            entry["environment"] = models.ollama.environment(models.budget.max_loaded)
        if name in cpu_only:
            # No NVIDIA runtime on this server: run on the CPU instead of failing to start.
            entry["deploy"] = {"resources": {"reservations": {"devices": _Reset()}}}
        if name in fast_start:
            entry["healthcheck"] = fast_start_healthcheck(state.compose["services"][name])
        if name in hashes:
            entry["labels"][LABEL_HASH] = hashes[name]
        if name in env_files:
            # The short syntax every supported Compose reads; the values in the file are
            # quoted so that none is interpolated ($) or cut at '#' (secrets.py).
            entry["env_file"] = [str(env_files[name])]
        services[name] = entry
    header = (f"# Generated by lanai for commit {commit[:12]}. Do not edit: change "
              f"{state.config.compose_file} in the state repo instead.\n"
              "# Secrets reach services through env files readable by root only.\n")
    body = yaml.dump({"services": services}, Dumper=_OverrideDumper, sort_keys=True)
    safe_tree.write_generated(directory, compose.OVERRIDE_FILE, header + body, 0o644)


def discard(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)
