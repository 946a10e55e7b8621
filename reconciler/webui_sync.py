"""Converge Open WebUI's settings and family accounts to webui.yaml, through its admin API.

After the stack is up: sign in as the admin (email from compose.yaml's
WEBUI_ADMIN_EMAIL, password from the secrets file), read each settings group, write
only what differs (read-modify-write, so settings lanai does not manage are kept),
create missing family accounts with a one-time password kept root-only for `lanai
users`. A setting changed by hand in the admin UI is drift: reported always,
overwritten only for areas listed under `managed` (every area, on a new commit).
"""

from __future__ import annotations

import json
import logging
import os
import secrets as secrets_mod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker

from . import webui_plan
from .record import now_iso, write_json_atomic
from .render import Rendered
from .secrets import read_secrets
from .settings import ServerSettings
from .webui_api import WebUI, WebUIError
from .webui_schema import WebUIConfig

log = logging.getLogger("lanai")
WEBUI_PORT = 8080
GROUPS = ("auth", "models", "ollama", "openai", "audio", "embedding")


@dataclass
class WebUIOutcome:
    actions: list[dict[str, Any]] = field(default_factory=list)
    drift: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"actions": self.actions, "drift": self.drift, "errors": self.errors}


class NotReady(Exception):
    pass


def service_url(client: docker.DockerClient, project: str, service: str, port: int) -> str:
    """http://<container address>:<port> of a running service of the project."""
    found = client.containers.list(filters={"label": [
        f"com.docker.compose.project={project}", f"com.docker.compose.service={service}"]})
    if not found:
        raise NotReady(f"{service} is not running; see `lanai status`")
    networks = found[0].attrs.get("NetworkSettings", {}).get("Networks") or {}
    address = next((n.get("IPAddress") for n in networks.values() if n.get("IPAddress")), None)
    if not address:
        raise NotReady(f"the {service} container has no IP address")
    return f"http://{address}:{port}"


def one_time_password() -> str:
    return secrets_mod.token_urlsafe(12)


class WebUISync:
    def __init__(self, settings: ServerSettings, client: docker.DockerClient, *,
                 progress: Callable[[str], None] | None = None,
                 password: Callable[[], str] = one_time_password,
                 tokens: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.docker = client
        self.progress = progress or (lambda msg: log.info(msg))
        self.password = password
        # Signing in costs Open WebUI a password hash each time: keep the session per URL
        # for as long as the daemon runs.
        self.tokens = tokens if tokens is not None else {}

    @property
    def state_file(self) -> Path:
        return self.settings.home / "webui.json"

    @property
    def passwords_file(self) -> Path:
        return self.settings.home / "webui-passwords.json"

    def converge(self, rendered: Rendered, *, new_commit: bool) -> WebUIOutcome:
        out = WebUIOutcome()
        config = rendered.webui
        if config is None:
            return out
        try:
            api = WebUI(service_url(self.docker, rendered.project, config.service, WEBUI_PORT))
        except NotReady as exc:
            out.errors.append(f"Open WebUI's settings wait: {exc}")
            return out
        with api:
            try:
                self._signin(api, rendered, config)
                self._settings(api, rendered, config, out, new_commit)
                self._users(api, config, out)
            except WebUIError as exc:
                out.errors.append(exc.message)
        write_json_atomic(self.state_file, {"commit": rendered.commit, "at": now_iso(),
                                            **out.to_json()})
        return out

    def _signin(self, api: WebUI, rendered: Rendered, config: WebUIConfig) -> None:
        env = (rendered.services[config.service].config.get("environment") or {})
        email = env.get("WEBUI_ADMIN_EMAIL")
        password = read_secrets(self.settings.secrets_file).get("WEBUI_ADMIN_PASSWORD")
        if not email or not password:
            raise WebUIError("webui.yaml needs Open WebUI's admin account: WEBUI_ADMIN_EMAIL in "
                             "compose.yaml and the WEBUI_ADMIN_PASSWORD secret (bootstrap makes "
                             "both)")
        token = self.tokens.get(api.base_url)
        if token:
            api.use_token(token)
            try:
                api.get_auth_config()
                return
            except WebUIError as exc:
                if exc.status != 401:
                    raise
        api.signin(email, password)
        if api.token:
            self.tokens[api.base_url] = api.token

    def _settings(self, api: WebUI, rendered: Rendered, config: WebUIConfig,
                  out: WebUIOutcome, new_commit: bool) -> None:
        ollama = (rendered.models.ollama.service if rendered.models else None) \
            or rendered.ollama_service or "ollama"
        want = webui_plan.desired(config, read_secrets(self.settings.secrets_file),
                                  f"http://{ollama}:11434")
        out.errors += want.problems
        current = {group: getattr(api, f"get_{group}_config")() for group in GROUPS}
        pending = webui_plan.changes(want, current)
        managed = set(config.managed)
        to_write = [c for c in pending if new_commit or c.area in managed]
        for change in pending:
            if not new_commit:
                out.drift.append({**change.to_json(), "healed": change.area in managed})
        for group, partial in webui_plan.updates(to_write).items():
            getattr(api, f"set_{group}_config")(partial)
            keys = [c.key for c in to_write if c.group == group]
            self.progress(f"Open WebUI {group} settings: {', '.join(keys)}")
            out.actions.append({"kind": "settings", "group": group, "keys": keys,
                                "result": "ok"})

    def _users(self, api: WebUI, config: WebUIConfig, out: WebUIOutcome) -> None:
        existing = {u["email"].lower(): u for u in api.users()}
        passwords = self._passwords()
        for user in config.users:
            have = existing.get(user.email)
            if have is None:
                password = self.password()
                api.add_user(user.name, user.email, password, user.role)
                passwords[user.email] = {"name": user.name, "password": password,
                                         "at": now_iso()}
                out.actions.append({"kind": "user", "email": user.email, "role": user.role,
                                    "result": "ok", "reason": "created; `lanai users` shows "
                                    "the one-time password"})
            elif have.get("role") != user.role:
                api.update_role(have["id"], user.role)
                out.actions.append({"kind": "user", "email": user.email, "role": user.role,
                                    "result": "ok", "reason": f"role {have.get('role')} -> "
                                    f"{user.role}"})
        self._save_passwords(passwords)

    def take_passwords(self) -> dict[str, Any]:
        """The one-time passwords not shown yet; forgotten once taken."""
        passwords = self._passwords()
        if passwords:
            self._save_passwords({})
        return passwords

    def _passwords(self) -> dict[str, Any]:
        try:
            return json.loads(self.passwords_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def _save_passwords(self, passwords: dict[str, Any]) -> None:
        path = self.passwords_file
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(passwords, handle, indent=1)
        tmp.replace(path)
