"""Where this server keeps lanai's files, and which repo it follows.

Read from /etc/lanai/server.yaml (written by bootstrap), overridden by
LANAI_* environment variables; no secrets live here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from reconciler.core.errors import NotSetUp

DEFAULT_CONFIG = Path("/etc/lanai/server.yaml")


STATUS_SOCKET = "status.sock"  # the status page's socket, in status_dir


@dataclass(frozen=True)
class ServerSettings:
    home: Path  # state, history, rendered deployments, the local clone
    repo: str | None  # the state repo: a path to a bare repo or a git URL
    branch: str | None  # overrides lanai.yaml's source.branch when set
    secrets_file: Path
    config_file: Path
    deploy_key: Path  # used for SSH remotes when the file exists (bootstrap makes it)
    ollama_url: str | None = None  # default: Ollama's container address on its network
    webhook_listen: str | None = None  # HOST:PORT of the push webhook; None: off
    metrics_listen: str | None = None  # [HOST:]PORT of /metrics (loopback unless named); None: off

    @property
    def state_file(self) -> Path:
        return self.home / "state.json"

    @property
    def history_file(self) -> Path:
        return self.home / "history.jsonl"

    @property
    def clone_dir(self) -> Path:
        return self.home / "repo.git"

    @property
    def deployments_dir(self) -> Path:
        return self.home / "deployments"

    @property
    def env_dir(self) -> Path:
        return self.home / "env"

    @property
    def lock_dir(self) -> Path:
        return self.home / "lock"

    @property
    def suspend_file(self) -> Path:
        return self.home / "suspended.json"

    @property
    def models_file(self) -> Path:
        return self.home / "models.json"

    @property
    def pull_file(self) -> Path:
        return self.home / "pull.json"  # the model pull in progress (reconciler.models.pulls)

    @property
    def models_lock_file(self) -> Path:
        return self.home / "models.lock"

    @property
    def bench_file(self) -> Path:
        return self.home / "bench.jsonl"

    @property
    def backups_dir(self) -> Path:
        return self.home / "backups"

    @property
    def socket_path(self) -> Path:
        return self.home / "daemon.sock"

    @property
    def status_dir(self) -> Path:
        # The status page's socket lives alone in this directory: the proxy mounts the
        # directory (a socket recreated by a restarted daemon shows through it).
        return self.home / "status"

    @property
    def status_socket(self) -> Path:
        return self.status_dir / STATUS_SOCKET

    def require_repo(self) -> str:
        if not self.repo:
            raise NotSetUp(
                f"no state repo is configured on this machine; run bootstrap.sh, or set "
                f"`repo:` in {self.config_file} (or LANAI_REPO).")
        return self.repo


def load_settings(environ: dict[str, str] | None = None) -> ServerSettings:
    env = dict(os.environ if environ is None else environ)
    config_file = Path(env.get("LANAI_CONFIG", str(DEFAULT_CONFIG)))
    data: dict[str, object] = {}
    if config_file.is_file():
        try:
            loaded = yaml.safe_load(config_file.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise NotSetUp(f"{config_file} is not valid YAML ({exc}); fix or re-run "
                           "bootstrap.sh.") from None
        if not isinstance(loaded, dict):
            raise NotSetUp(f"{config_file} must be a mapping; fix or re-run bootstrap.sh.")
        known = ("home", "repo", "branch", "secrets_file", "deploy_key", "ollama_url",
                 "webhook_listen", "metrics_listen")
        unknown = set(loaded) - set(known)
        if unknown:
            raise NotSetUp(f"{config_file} has unknown key(s) {', '.join(sorted(unknown))}; "
                           f"known keys are {', '.join(known)}.")
        data = loaded

    def pick(key: str, default: str | None) -> str | None:
        value = env.get(f"LANAI_{key.upper()}") or data.get(key) or default
        return str(value) if value is not None else None

    return ServerSettings(
        home=Path(pick("home", "/var/lib/lanai") or "/var/lib/lanai"),
        repo=pick("repo", None),
        branch=pick("branch", None),
        secrets_file=Path(pick("secrets_file", "/etc/lanai/secrets.env") or ""),
        config_file=config_file,
        deploy_key=Path(pick("deploy_key", str(config_file.with_name("deploy_key"))) or ""),
        ollama_url=pick("ollama_url", None),
        webhook_listen=pick("webhook_listen", None),
        metrics_listen=pick("metrics_listen", None),
    )


def parse_listen(value: str, key: str, *, default_host: str, example: str) -> tuple[str, int]:
    """"0.0.0.0:9095", "[::]:9095" or ":9095" -> (host, port); a missing host is
    `default_host`. `key` and `example` name the setting in the sentence of a bad value."""
    host, sep, port = value.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise NotSetUp(f"{key} {value!r} is not HOST:PORT; set it to an address and port "
                       f"such as {example} in server.yaml (or LANAI_{key.upper()}).")
    return host or default_host, int(port)
