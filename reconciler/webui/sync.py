"""Converge Open WebUI's settings and family accounts to webui.yaml, through its admin API.

After the stack is up: sign in as the admin (email from compose.yaml's
WEBUI_ADMIN_EMAIL, password from the secrets file), read each settings group, write
only what differs (read-modify-write, so settings lanai does not manage are kept),
create missing family accounts with a one-time password kept root-only for `lanai
users`. A setting changed by hand in the admin UI is drift: reported always,
overwritten only for areas listed under `managed` (every area, on a new commit).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import mimetypes
import secrets as secrets_mod
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker

from reconciler.core.files import write_json_atomic
from reconciler.desired.documents import Doc, read_document
from reconciler.desired.webui_yaml import WebUIConfig
from reconciler.server.record import now_iso
from reconciler.server.secrets import read_secrets
from reconciler.server.settings import ServerSettings
from reconciler.stack.containers import service_container
from reconciler.stack.render import Rendered
from reconciler.webui import plan as webui_plan
from reconciler.webui.api import NOT_FOUND_DETAIL, WebUI
from reconciler.webui.errors import WebUIError
from reconciler.webui.forms import PUBLIC_READ, is_public, preset_form
from reconciler.webui.knowledge import (
    PATH_KEY,
    DocAction,
    Held,
    KnowledgeRecord,
    plan_documents,
    preset_differs,
)

log = logging.getLogger("lanai")
WEBUI_PORT = 8080
GROUPS = ("auth", "models", "ollama", "openai", "audio", "embedding")
_VERB = {"upload": "uploading", "replace": "replacing", "remove": "removing"}


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
    found = service_container(client, project, service)
    if found is None:
        raise NotReady(f"{service} is not running; see `lanai status`")
    if not found.address:
        raise NotReady(f"the {service} container has no IP address")
    return f"http://{found.address}:{port}"


def one_time_password() -> str:
    return secrets_mod.token_urlsafe(12)


class WebUISync:
    def __init__(self, settings: ServerSettings, client: docker.DockerClient, *,
                 progress: Callable[[str], None] | None = None,
                 password: Callable[[], str] = one_time_password,
                 tokens: dict[str, str] | None = None,
                 down: Callable[[Rendered], Collection[str]] | None = None,
                 url: Callable[[Rendered], str | None] | None = None) -> None:
        self.settings = settings
        # Swarm mode: the servers whose node is down (their connection is turned off), and
        # Open WebUI's URL as the daemon reaches it (the relay; None: not there yet).
        self.down: Callable[[Rendered], Collection[str]] = down or (lambda _r: ())
        self._url = url
        self.docker = client
        self.progress = progress or (lambda msg: log.info(msg))
        self.password = password
        # Signing in costs Open WebUI a password hash each time: keep the session per URL
        # for as long as the daemon runs.
        self.tokens = tokens if tokens is not None else {}

    @property
    def state_file(self) -> Path:
        return self.state_path(self.settings)

    @staticmethod
    def state_path(settings: ServerSettings) -> Path:
        """The last sync's outcome (commit, actions, errors)."""
        return settings.home / "webui.json"

    @property
    def passwords_file(self) -> Path:
        return self.settings.home / "webui-passwords.json"

    def converge(self, rendered: Rendered, *, new_commit: bool) -> WebUIOutcome:
        out = WebUIOutcome()
        config = rendered.webui
        if config is None:
            return out
        try:
            api = WebUI(self.url(rendered, config))
        except NotReady as exc:
            out.errors.append(f"Open WebUI's settings wait: {exc}")
            return out
        with api:
            try:
                self._signin(api, rendered, config)
                self._settings(api, rendered, config, out, new_commit)
                self._users(api, config, out)
                kb_ids = self._knowledge(api, rendered, config, out)
                self._presets(api, config, kb_ids, out)
                self._model_access(api, config, out)
            except WebUIError as exc:
                out.errors.append(exc.message)
        write_json_atomic(self.state_file, {"commit": rendered.commit, "at": now_iso(),
                                            **out.to_json()})
        return out

    def url(self, rendered: Rendered, config: WebUIConfig) -> str:
        if rendered.config.mode != "swarm":
            return service_url(self.docker, rendered.project, config.service, WEBUI_PORT)
        found = self._url(rendered) if self._url is not None else None
        if not found:
            raise NotReady(f"lanai has no way to {config.service} in the swarm yet (the relay "
                           "on the manager does not list it)")
        return found.rstrip("/")

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
        lanai = rendered.config
        ollamas = webui_plan.swarm_ollamas(lanai.servers, rendered.models,
                                           config.rag.embedding_model, self.down(rendered)) \
            if lanai.mode == "swarm" else None
        want = webui_plan.desired(config, read_secrets(self.settings.secrets_file),
                                  f"http://{ollama}:11434", ollamas)
        out.errors += want.problems
        current = {group: getattr(api, f"get_{group}_config")() for group in GROUPS}
        pending = webui_plan.changes(want, current)
        managed = set(config.managed)

        def follows(change: webui_plan.Change) -> bool:
            return ollamas is not None and webui_plan.follows_servers(change)

        to_write = [c for c in pending if new_commit or c.area in managed or follows(c)]
        for change in pending:
            if not new_commit and not follows(change):
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
                # Kept at once: a failure with the next account must not lose this one.
                self._save_passwords(passwords)
                out.actions.append({"kind": "user", "email": user.email, "role": user.role,
                                    "result": "ok", "reason": "created; `lanai users` shows "
                                    "the one-time password"})
            elif have.get("role") != user.role:
                api.update_role(have["id"], user.role)
                out.actions.append({"kind": "user", "email": user.email, "role": user.role,
                                    "result": "ok", "reason": f"role {have.get('role')} -> "
                                    f"{user.role}"})

    # -- knowledge bases and presets ------------------------------------------------------

    @property
    def knowledge_file(self) -> Path:
        return self.settings.home / "webui-knowledge.json"

    def _records(self) -> dict[str, Any]:
        try:
            return json.loads(self.knowledge_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def _knowledge(self, api: WebUI, rendered: Rendered, config: WebUIConfig,
                   out: WebUIOutcome) -> dict[str, str]:
        """Sync every declared knowledge base; returns name -> Open WebUI id."""
        data = self._records()
        records = {n: KnowledgeRecord.from_json(r) for n, r in data.get("knowledge", {}).items()}
        existing = {kb["id"]: kb for kb in api.knowledge_bases()}
        by_name = {kb.get("name"): kb for kb in existing.values()}
        ids: dict[str, str] = {}
        listed = rendered.documents or {}

        def save() -> None:  # after every file: an interrupted sync resumes where it was
            write_json_atomic(self.knowledge_file, {
                **data, "knowledge": {n: r.to_json() for n, r in records.items()}})

        for base in config.knowledge:
            if base.name not in listed:
                out.errors.append(f"knowledge {base.name}: the deployment has no list of the "
                                  "commit's files for it; push a commit or run `lanai reconcile "
                                  "--retry` to render it again")
                continue
            docs = [Doc(path, sha) for path, sha in listed[base.name]]
            record = records.get(base.name) or KnowledgeRecord()
            kb = existing.get(record.id or "") or by_name.get(base.name)
            if kb is None:
                kb = api.create_knowledge(base.name, base.description)
                out.actions.append({"kind": "knowledge", "name": base.name, "result": "ok",
                                    "reason": "created"})
            elif (kb.get("description") or "") != base.description:
                api.update_knowledge(kb["id"], name=base.name, description=base.description)
            record.id = kb["id"]
            records[base.name] = record
            # Judged by what Open WebUI holds now (a restore or a hand edit may have changed
            # it), never by lanai's own record alone.
            recorded = {f["file_id"]: path for path, f in record.files.items()}
            held = [Held.from_api(f, recorded) for f in api.knowledge_files(kb["id"])]
            actions = plan_documents(base.name, docs, held, set(record.files))
            for number, action in enumerate(actions, 1):
                self.progress(f"open-webui settings: {_VERB[action.kind]} knowledge "
                              f"{base.name} {number}/{len(actions)}")
                self._document(api, rendered, record, action, docs, out)
                save()
            ids[base.name] = kb["id"]
        for name in sorted(set(records) - {b.name for b in config.knowledge}):
            gone = records.pop(name)
            if gone.id in existing:
                api.delete_knowledge(gone.id)
                out.actions.append({"kind": "knowledge", "name": name, "result": "ok",
                                    "reason": "removed from webui.yaml"})
        save()
        return ids

    def _document(self, api: WebUI, rendered: Rendered, record: KnowledgeRecord,
                  action: DocAction, docs: list[Doc], out: WebUIOutcome) -> None:
        assert record.id is not None
        result: dict[str, Any] = {**action.to_json(), "result": "ok"}
        try:
            if action.kind in ("upload", "replace"):
                wanted = next(d for d in docs if d.path == action.path)
                record.files[action.path] = {"sha256": wanted.sha256,
                                             "file_id": self._upload(api, rendered, record.id,
                                                                     wanted)}
            for file_id in action.stale:  # after the upload: a failed one keeps the old copy
                self._forget(api, record.id, file_id)
            if action.kind == "remove" and action.reason == "removed from git":
                record.files.pop(action.path, None)
        except WebUIError as exc:
            result.update(result="failed", error=exc.message)
            out.errors.append(f"knowledge {action.knowledge}: {action.path}: {exc.message}")
        out.actions.append(result)

    def _upload(self, api: WebUI, rendered: Rendered, knowledge_id: str, doc: Doc) -> str:
        """Upload one document and link it; a file that could not be linked is deleted
        again, so a failing document never piles up copies in Open WebUI's uploads."""
        try:
            data = read_document(rendered.directory, doc.path)
        except OSError as exc:
            raise WebUIError(f"cannot read it from the deployment ({exc.strerror or exc})") \
                from None
        if hashlib.sha256(data).hexdigest() != doc.sha256:
            raise WebUIError("it differs from the commit's file (a file lanai writes has "
                             "the same name); rename it in the state repo")
        kind = mimetypes.guess_type(doc.path)[0] or "text/plain"
        uploaded = api.upload_file(doc.path, data, content_type=kind,
                                   metadata={PATH_KEY: doc.path})
        try:
            api.wait_processed(uploaded["id"])
            api.add_file_to_knowledge(knowledge_id, uploaded["id"])
        except WebUIError:
            with contextlib.suppress(WebUIError):
                api.delete_file(uploaded["id"])
            raise
        return str(uploaded["id"])

    def _forget(self, api: WebUI, knowledge_id: str, file_id: str) -> None:
        """Take a file out of a knowledge base and delete it (it may be gone already)."""
        try:
            api.remove_file_from_knowledge(knowledge_id, file_id, delete_file=True)
        except WebUIError as exc:
            if exc.detail != NOT_FOUND_DETAIL:
                raise

    def _presets(self, api: WebUI, config: WebUIConfig, kb_ids: dict[str, str],
                 out: WebUIOutcome) -> None:
        data = self._records()
        made = set(data.get("presets") or [])
        current = {m["id"]: m for m in api.models()}
        for preset in config.presets:
            form = preset_form(model_id=preset.id, name=preset.name,
                               base_model_id=preset.base_model, system=preset.system,
                               params=dict(preset.params),
                               knowledge=[{"id": kb_ids[k], "name": k} for k in preset.knowledge
                                          if k in kb_ids],
                               description=preset.description)
            differs = preset_differs(current.get(preset.id), form)
            if differs == ["missing"]:
                api.create_model(form)
            elif differs:
                api.update_model(preset.id, form)
            if differs:
                out.actions.append({"kind": "preset", "id": preset.id, "result": "ok",
                                    "reason": ", ".join(differs)})
            made.add(preset.id)
            # A family member may use a preset only if they may read its base model too
            # (unless model_access says who may use that model).
            base = api.model(preset.base_model)
            if preset.base_model not in config.model_access and (
                    base is None or not is_public(base)):
                api.set_model_access(preset.base_model, [PUBLIC_READ])
                out.actions.append({"kind": "model access", "id": preset.base_model,
                                    "result": "ok", "reason": f"base of preset {preset.id}: "
                                    "readable by every user"})
        for gone in sorted(made - {p.id for p in config.presets}):
            if gone in current:
                api.delete_model(gone)
                out.actions.append({"kind": "preset", "id": gone, "result": "ok",
                                    "reason": "removed from webui.yaml"})
            made.discard(gone)
        write_json_atomic(self.knowledge_file, {**self._records(), "presets": sorted(made)})

    def _model_access(self, api: WebUI, config: WebUIConfig, out: WebUIOutcome) -> None:
        """Who may use which model: Open WebUI shows a family member only models they
        were granted (admins see all)."""
        if not config.model_access:
            return
        ids = {u["email"].lower(): u["id"] for u in api.users()}
        for model, who in config.model_access.items():
            if who == "everyone":
                grants = [dict(PUBLIC_READ)]
            else:
                unknown = [e for e in who if e.lower() not in ids]
                if unknown:
                    out.errors.append(f"model_access of {model}: no account {', '.join(unknown)} "
                                      "in Open WebUI (declare it under users)")
                grants = [{"principal_type": "user", "principal_id": ids[e.lower()],
                           "permission": "read"} for e in who if e.lower() in ids]
            current = api.model(model)
            have = sorted(_grant(g) for g in (current or {}).get("access_grants") or [])
            if have != sorted(_grant(g) for g in grants):
                api.set_model_access(model, grants)
                out.actions.append({"kind": "model access", "id": model, "result": "ok",
                                    "reason": "everyone" if who == "everyone"
                                    else ", ".join(who)})

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
        write_json_atomic(self.passwords_file, passwords)


def _grant(grant: dict[str, Any]) -> tuple[Any, Any, Any]:
    return (grant.get("principal_type"), grant.get("principal_id"), grant.get("permission"))
