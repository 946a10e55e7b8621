"""The schema of `lanai.yaml`, lanai's own settings in the state repo.

Every model forbids unknown keys: a typo must be an error, not a silently
ignored setting. Field descriptions double as the configuration reference.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from reconciler.core.durations import parse_duration
from reconciler.desired.host_access import ACCESS_NAMES, is_allow_entry
from reconciler.desired.profiles import PROFILE_NAME
from reconciler.desired.servers import Mode, Server, SwarmSettings, manager_of

Seconds = Annotated[float, BeforeValidator(parse_duration)]

SECRET_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
PROJECT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Source(Strict):
    branch: str = Field("main", description="The branch of the state repo the server follows.")
    poll_interval: Seconds = Field(
        60.0, ge=5, description="How often the server fetches the repo (a push also pokes it).")


class HealLimit(Strict):
    restarts: int = Field(3, ge=1, description="At most this many heals of one service ...")
    window: Seconds = Field(600.0, ge=10, description="... within this window.")


class Retry(Strict):
    initial: Seconds = Field(10.0, ge=1, description="First wait after a transient failure.")
    max: Seconds = Field(300.0, ge=1, description="Longest wait between retries.")


class Sync(Strict):
    self_heal: bool = Field(
        True, description="Restore containers that were stopped, removed or turned unhealthy.")
    prune: bool = Field(
        True, description="Remove containers of services that were deleted from compose.yaml.")
    health_timeout: Seconds = Field(
        300.0, ge=5, description="How long a deploy waits for services to turn healthy.")
    heal_limit: HealLimit = Field(default_factory=HealLimit)
    retry: Retry = Field(default_factory=Retry)


class Security(Strict):
    allow_ollama_on_lan: bool = Field(
        False, description="Allow compose.yaml to publish Ollama's port beyond 127.0.0.1; "
        "Ollama has no authentication.")
    require_pinned_images: bool = Field(
        True, description="Refuse images without a version tag (or with :latest).")
    allow: dict[str, list[str]] = Field(
        default_factory=dict, description="Per service, the host access its containers may "
        "have; everything else that reaches past a container's confinement is refused. "
        "Entries: privileged, host_network, host_pid, host_ipc, host_uts, host_userns, "
        "host_cgroup, cgroup_parent, devices, security_opt, other_containers, docker_socket; "
        "a capability beyond Docker's defaults (NET_ADMIN, SYS_ADMIN, ... or ALL); an "
        "absolute host path the service may mount or read (it and everything below it).")

    @field_validator("allow")
    @classmethod
    def _allow(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for service, entries in value.items():
            for entry in entries:
                if not is_allow_entry(entry):
                    raise ValueError(
                        f"{entry!r} (service {service!r}) is not something lanai can allow; "
                        f"use one of {', '.join(ACCESS_NAMES)}, a capability name such as "
                        "NET_ADMIN, or an absolute host path")
        return value


LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
HOST_NAME = re.compile(rf"^(?=.{{1,253}}$){LABEL}(\.{LABEL})*$")
# Names no public certificate authority can issue for: the local CA serves them.
PRIVATE_SUFFIXES = (".home.arpa", ".local", ".lan", ".internal", ".localdomain", ".home")


class Https(Strict):
    names: list[str] = Field(
        default_factory=list, description="The names Open WebUI is served under on the LAN, "
        "e.g. ai.home.arpa (point them at the server in your router's DNS). Empty: no HTTPS "
        "proxy is configured.")
    lan_ip: bool = Field(
        True, description="Also serve (and certify) the server's LAN IP address, so phones "
        "work without a DNS name.")
    proxy: str = Field("proxy", description="The compose service that runs Caddy.")
    upstream: str = Field("open-webui:8080", description="Where the proxy sends requests: "
                          "service:port on a shared compose network.")
    hold: Seconds = Field(
        120.0, ge=1, le=600, description="While the upstream restarts (an update), the proxy "
        "holds requests up to this long instead of answering errors.")
    status_page: bool = Field(
        True, description="Serve lanai's status page at https://<name>/lanai/ to Open "
        "WebUI's admin (signed in to Open WebUI; anyone else gets 401).")
    acme_email: str | None = Field(
        None, description="Use public certificates (Let's Encrypt, by ACME) for names that are "
        "real domains whose DNS you control; this address gets expiry notices. Unset: every "
        "name gets a certificate from the server's own CA.")

    @field_validator("names")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not HOST_NAME.match(name):
                raise ValueError(f"{name!r} is not a host name (lowercase letters, digits, '-' "
                                 "and dots, e.g. ai.home.arpa)")
        if len(set(value)) != len(value):
            raise ValueError("a name is listed twice")
        return value

    @field_validator("upstream")
    @classmethod
    def _upstream(cls, value: str) -> str:
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError("write the upstream as service:port, e.g. open-webui:8080")
        return value

    @model_validator(mode="after")
    def _acme(self) -> Https:
        if not self.names and not self.lan_ip:
            raise ValueError("name at least one host name under names, or keep lan_ip: true")
        if self.acme_email:
            private = [n for n in self.names if n.endswith(PRIVATE_SUFFIXES)]
            if private:
                raise ValueError(f"{', '.join(private)} cannot get a public certificate; "
                                 "list only real domains with acme_email, or remove acme_email "
                                 "to use the server's own CA")
            if self.lan_ip:
                raise ValueError("a public certificate cannot name a LAN IP address; set "
                                 "lan_ip: false with acme_email")
        return self


DAILY_AT = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")


class Backups(Strict):
    service: str = Field(
        "open-webui", description="The compose service whose data is backed up (Open WebUI).")
    data_path: str = Field(
        "/app/backend/data", description="Where that service keeps its data, inside the "
        "container: its SQLite databases, uploads/ and vector_db/ are backed up.")
    schedule: str | None = Field(
        "03:30", description="A daily backup at this time (HH:MM, UTC); null: only before "
        "upgrades and on demand (`lanai backup`).")
    keep: int = Field(
        7, ge=1, le=365, description="Scheduled backups kept; older ones are deleted after a "
        "new one is verified. Backups taken before an upgrade or a restore, and on demand, "
        "are kept until you delete them (`lanai backups --delete ID`).")
    restore_on_rollback: bool = Field(
        False, description="When a push rolls the service's image back across an upgrade "
        "(its data was migrated by the newer image), restore the backup taken before that "
        "upgrade and deploy. Off: the deploy is refused and names the backup to restore.")

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str | None) -> str | None:
        if value is not None and not DAILY_AT.match(value):
            raise ValueError("write the daily time as HH:MM (24 h, UTC), e.g. 03:30")
        return value


NOTICE_KINDS = ("failure", "drift", "recovery", "report")


class Notify(Strict):
    urls: list[str] = Field(
        default_factory=list, description="Where notices go. Each entry is the NAME of a secret "
        "in the server's secrets file whose value is an Apprise URL (ntfy://, mailtos://, "
        "matrixs://, discord://, json:// ...: such URLs carry tokens, so they live with the "
        "secrets), or a literal Apprise URL that holds nothing secret. Empty: nothing is sent.")
    events: list[Literal["failure", "drift", "recovery", "report"]] = Field(
        default_factory=lambda: list(NOTICE_KINDS), description="Which notices are sent: "
        "failure (a commit, heal, model or Open WebUI setting failed, or the repo cannot be "
        "fetched), drift (the server differs from git and stays so), recovery (a failure or "
        "drift that was notified is over, or a heal put something back), report (the daily "
        "drift report, when something differs).")
    repeat_after: Seconds = Field(
        21600.0, ge=60, description="The same failure or drift is not sent again within this "
        "interval; while it lasts, it is sent again after it.")

    @field_validator("urls")
    @classmethod
    def _urls(cls, value: list[str]) -> list[str]:
        for entry in value:
            if SECRET_NAME.match(entry):
                continue
            scheme, sep, rest = entry.partition("://")
            if not sep or not scheme:
                raise ValueError(f"{entry!r} is neither a secret name (A-Z, 0-9, _) nor an "
                                 "Apprise URL (scheme://...)")
            if "@" in rest.split("/", 1)[0] and ":" in rest.split("@", 1)[0]:
                raise ValueError(f"the URL for {scheme}:// carries a password, and lanai.yaml "
                                 "is in git: store it with `lanai secrets set NOTIFY_URL` and "
                                 "list NOTIFY_URL here instead")
        return value

    def secret_names(self) -> set[str]:
        return {entry for entry in self.urls if SECRET_NAME.match(entry)}


class DriftReport(Strict):
    at: str = Field(
        "07:00", description="Daily at this time (HH:MM, UTC) the server writes its drift "
        "report (what differs from git, since when; `lanai drift --report`) and, when "
        "something differs and notify.urls is set, sends it.")

    @field_validator("at")
    @classmethod
    def _at(cls, value: str) -> str:
        if not DAILY_AT.match(value):
            raise ValueError("write the daily time as HH:MM (24 h, UTC), e.g. 07:00")
        return value


class LanaiConfig(Strict):
    mode: Mode = Field(
        "compose", description="compose: one box, plain Docker Compose (the default). swarm: "
        "the servers listed under servers form a Docker Swarm; each model lives on the "
        "server models.yaml places it on (README, Several servers).")
    servers: list[Server] = Field(
        default_factory=list, description="The servers, in swarm mode: name, ssh, gpu, "
        "labels, and which one is the manager. One box needs none.")
    swarm: SwarmSettings = Field(
        default_factory=SwarmSettings, description="Swarm mode's network settings.")
    gpu: Literal["auto", "required", "off"] = Field(
        "auto", description="auto: keep compose.yaml's NVIDIA GPU reservations where the server "
        "has the NVIDIA container runtime, drop them (the stack runs on the CPU) where it does "
        "not; required: fail without it; off: always run on the CPU.")
    project: str = Field("lanai", description="The compose project name on the server.")
    compose_file: str = Field("compose.yaml", description="The compose file, relative to the repo.")
    profiles: list[str] = Field(
        default_factory=list, description="The Compose profiles switched on, e.g. [monitoring]. "
        "A service with `profiles:` in compose.yaml is deployed only when one of them is listed "
        "here; switching it off removes its container (its volumes stay).")
    source: Source = Field(default_factory=Source)
    sync: Sync = Field(default_factory=Sync)
    secrets: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Per service, the names of the secrets it receives as environment "
        "variables. Values live only in the server's secrets file.")
    security: Security = Field(default_factory=Security)
    https: Https | None = Field(
        None, description="Serve Open WebUI over HTTPS on the LAN through a Caddy proxy with "
        "certificates from a CA on the server (browsers allow the microphone, for voice, only "
        "on https).")
    backups: Backups = Field(
        default_factory=Backups, description="Backups of Open WebUI's data: before every "
        "upgrade of its image, daily, and on demand.")
    notify: Notify = Field(
        default_factory=Notify, description="Tell the owner about failures, drift and "
        "recoveries without logging in, through Apprise.")
    drift_report: DriftReport = Field(
        default_factory=DriftReport, description="The daily drift report kept on the server.")

    @field_validator("project")
    @classmethod
    def _project_name(cls, value: str) -> str:
        if not PROJECT_NAME.match(value):
            raise ValueError("use lowercase letters, digits, '-' and '_', starting with a "
                             "letter or digit")
        return value

    @field_validator("profiles")
    @classmethod
    def _profiles(cls, value: list[str]) -> list[str]:
        for name in value:
            if not PROFILE_NAME.match(name):
                raise ValueError(f"{name!r} is not a profile name (letters, digits, '_', '.' "
                                 "and '-', at least two characters, e.g. monitoring)")
        if len(set(value)) != len(value):
            raise ValueError("a profile is listed twice")
        return value

    @field_validator("secrets")
    @classmethod
    def _secret_names(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for service, names in value.items():
            for name in names:
                if not SECRET_NAME.match(name):
                    raise ValueError(
                        f"secret name {name!r} of service {service!r} must look like an "
                        "environment variable (A-Z, 0-9, _)")
        return value

    @property
    def manager(self) -> Server | None:
        """The swarm manager (swarm mode), or the one server listed (compose mode)."""
        return manager_of(self.servers)

    def server(self, name: str) -> Server | None:
        return next((s for s in self.servers if s.name == name), None)

    def secret_names(self) -> set[str]:
        return {name for names in self.secrets.values() for name in names} \
            | self.notify.secret_names()
