"""A synchronous client for the parts of Open WebUI's admin API that lanai converges.

Open WebUI keeps its settings in its database after the first start, so lanai
changes them through the API an admin's browser uses. Every endpoint and form
below was read from the source of the pinned version (open_webui 0.12.4; the
prefixes are the ``app.include_router`` calls in main.py):

- ``POST /api/v1/auths/signin`` {email, password} -> {token, role, ...}
  (auths.signin; an MFA challenge or ``{"next_step": "pending"}`` has no token)
- ``GET  /health`` -> {"status": true} (main.healthcheck)
- ``GET/POST /api/v1/auths/admin/config``: AdminConfig, flat (sign-up, default
  role, ENABLE_MEMORIES, ...); POST answers the fresh config plus
  ``sessions_revoked``
- ``GET /openai/config``, ``POST /openai/config/update``: OpenAIConfigForm, flat
- ``GET /ollama/config``, ``POST /ollama/config/update``: OllamaConfigForm, flat
- ``GET /api/v1/audio/config``, ``POST /api/v1/audio/config/update``:
  AudioConfigUpdateForm, nested ``{"tts": {...}, "stt": {...}, "realtime": {...}}``
- ``GET /api/v1/retrieval/embedding``, ``POST /api/v1/retrieval/embedding/update``:
  EmbeddingModelUpdateForm; GET adds ``status`` (dropped here) and nests the
  engine URLs as ``openai_config``/``ollama_config``/``azure_openai_config``
- ``GET/POST /api/v1/configs/models``: ModelsConfigForm (DEFAULT_MODELS is one
  comma-separated string)
- ``GET/POST /api/v1/users/default/permissions``: UserPermissions, nested by
  section (``features.memories`` is the per-user permission for memories)
- ``GET /api/v1/users/all`` -> {users, total}; ``POST /api/v1/auths/add``
  AddUserForm; ``POST /api/v1/users/{id}/update`` UserUpdateForm

Documents, knowledge bases and model presets (files, knowledge and models routers):

- ``POST /api/v1/files/?process=true`` multipart ``file`` -> the file record with
  ``data.status`` "pending"; processing (extract, split, embed into ``file-{id}``)
  runs after the answer (files.upload_file, process_uploaded_file)
- ``GET /api/v1/files/{id}/process/status`` -> {"status"}: pending, processing,
  completed or failed; ``GET /api/v1/files/{id}`` has the error in ``data.error``;
  ``DELETE /api/v1/files/{id}`` also drops its vectors from every knowledge base
- ``GET /api/v1/knowledge/?page=n`` -> {items, total}, 30 a page, each with
  ``file_count`` but no files; ``GET /api/v1/knowledge/{id}`` (``files`` is null);
  ``GET /api/v1/knowledge/{id}/files?page=n&limit=`` -> {items, total}
- ``POST /api/v1/knowledge/create`` KnowledgeForm {name, description, access_grants};
  ``POST /api/v1/knowledge/{id}/update`` {name, description} (grants untouched);
  ``POST /api/v1/knowledge/{id}/access/update`` {access_grants};
  ``DELETE /api/v1/knowledge/{id}/delete`` -> bool
- ``POST /api/v1/knowledge/{id}/file/add`` {file_id}: embeds the file's chunks into
  the knowledge base's collection inside the request; ``.../file/remove?delete_file=``
  {file_id}: drops them, and by default deletes the file too
- ``GET /api/v1/models/all`` (admin) -> every model row; ``GET /api/v1/models/model?id=``;
  ``POST /api/v1/models/create`` ModelForm; ``POST /api/v1/models/model/update``
  ModelForm (grants untouched); ``POST /api/v1/models/model/access/update``
  {id, name, access_grants}; ``POST /api/v1/models/model/delete`` {id} -> bool
- ``GET /api/models`` -> {data}: the chat's model list, filtered for the caller
  (main.get_models, utils/models.get_filtered_models)

Who sees what (0.12.4 replaced ``access_control`` with access grants; a form's
``access_control`` is ignored, so None no longer means public): a knowledge base or a
model is visible to a ``user`` account when it has the grant ``{"principal_type":
"user", "principal_id": "*", "permission": "read"}`` (:data:`PUBLIC_READ`), a grant
for the user, or one for a group of theirs. A preset also answers a user only when
its base model has a model row that the user may read (has_base_model_access): an
Ollama model without one is admin-only, so :meth:`WebUI.set_model_access` must give
the base model the same grant. Retrieval from a preset's knowledge checks the
knowledge base's grants for the user asking.

Every setter is read-modify-write: it reads the area, changes only the keys it
is given and posts the whole form back, because several of these forms store
every field they receive (an omitted ``ENABLE_OPENAI_API`` is stored as null,
an omitted ``DEFAULT_MODEL_METADATA`` as null). The answer is then compared
with what was sent, because Open WebUI silently ignores some values (a
DEFAULT_USER_ROLE outside pending/user/admin, a malformed JWT_EXPIRES_IN,
connection configs not keyed by index, embedding URLs for another engine).
The forms, their fields and those checks are in reconciler.webui.forms.

Every failure is a :class:`WebUIError` whose message is one sentence;
:class:`WebUIUnreachable` is the transient kind (nothing answered);
:class:`WhisperUnavailable` says the voice settings were saved but the local
Whisper model could not be loaded (all three in reconciler.webui.errors).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from reconciler.webui.errors import WebUIError, WebUIUnreachable, WhisperUnavailable
from reconciler.webui.forms import (
    AUDIO_SECTIONS,
    AUTH_FIELDS,
    EMBEDDING_FIELDS,
    EMBEDDING_NESTED,
    MEMORIES_FIELDS,
    MFA_FIELDS,
    MODELS_FIELDS,
    OLLAMA_FIELDS,
    OPENAI_FIELDS,
    PERMISSION_SECTIONS,
    PUBLIC_READ,
    check_grants,
    check_kept,
    check_keys,
    check_role,
    merge_form,
)

# Loading a local model inside the request: the audio update loads faster-whisper
# when the STT engine is "" (downloading it when online), the embedding update loads
# a sentence-transformers model when the engine is "". Minutes, not seconds.
MODEL_LOAD_TIMEOUT = 600.0

# files.get_file_process_status: data.status as process_uploaded_file sets it.
FILE_STATUSES = ("pending", "processing", "completed", "failed")
# Adding a file to a knowledge base embeds its chunks inside the request (and a
# knowledge base's create/update embeds its name); a big document on a busy GPU
# takes minutes.
EMBED_TIMEOUT = 600.0
# ERROR_MESSAGES.NOT_FOUND: what the files, knowledge and models routers answer for a
# missing id, with 400, 401 or 404 depending on the route.
NOT_FOUND_DETAIL = "We could not find what you're looking for :/"
MODEL_ID_TAKEN_DETAIL = ("Uh-oh! This model id is already registered. Please choose another "
                         "model id string.")
ACCESS_PROHIBITED_DETAIL = ("You do not have permission to access this resource. Please "
                            "contact your administrator for assistance.")
PAGE_LIMIT = 100  # knowledge files per page; admins may choose it, users always get 30




class WebUI:
    """Open WebUI's admin API, signed in as one admin (``signin`` first)."""

    def __init__(self, base_url: str, *, timeout: float = 30,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._token: str | None = None
        self._client = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> WebUI:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- session -------------------------------------------------------------------------

    def signin(self, email: str, password: str, *, admin: bool = True) -> None:
        """Sign in with a password and keep the session token for the calls that follow.

        ``admin=False`` accepts a ``user`` account too, to see what a family member
        sees (`user_visible_models`, `knowledge_bases`); the admin calls then fail.
        """
        try:
            response = self._client.post("/api/v1/auths/signin",
                                         json={"email": email, "password": password})
        except httpx.TransportError as exc:
            raise self._unreachable(exc, f"sign in as {email}") from exc
        # Sign-in answers set a cookie too; the bearer header is the one credential we send.
        self._client.cookies.clear()
        status = response.status_code
        if status in (400, 401):  # auths.signin: 400 INVALID_CRED for a wrong email or password
            reason = ("the admin password in the server's secrets file does not match Open "
                      "WebUI's admin account" if admin else "wrong email or password")
            raise WebUIError(f"Open WebUI refused the sign-in of {email}: {reason}.",
                             status=status, detail=_detail(response))
        if status == 403:
            raise WebUIError(
                f"Open WebUI has password sign-in turned off (ENABLE_PASSWORD_AUTH=false), so "
                f"lanai cannot sign in as {email}.", status=status, detail=_detail(response))
        if status == 429:
            raise WebUIError(
                f"Open WebUI is refusing sign-ins for {email} after too many attempts (it "
                "allows 15 in 3 minutes, failed or not); wait a few minutes.",
                status=status, detail=_detail(response))
        if status >= 400:
            raise _http_error(response, f"sign in as {email}")
        body = _json(response, f"sign in as {email}")
        token = body.get("token") if isinstance(body, dict) else None
        if not token:
            step = body.get("next_step") if isinstance(body, dict) else None
            if step == "pending":
                reason = "the account is still pending approval"
            elif step:
                reason = f"Open WebUI asks for a second factor (MFA step {step!r})"
            else:
                reason = "Open WebUI answered without a session token"
            raise WebUIError(f"lanai cannot sign in to Open WebUI as {email}: {reason}.",
                             status=status)
        role = body.get("role")
        if admin and role != "admin":
            raise WebUIError(
                f"{email} signed in to Open WebUI but is a {role!r} account, not an admin, so "
                "lanai cannot change settings with it.", status=status)
        self._token = str(token)

    @property
    def token(self) -> str | None:
        """The session token, to reuse across polls (sign-ins are rate-limited and hash a
        password each time)."""
        return self._token

    def use_token(self, token: str) -> None:
        """Continue a session from an earlier `signin`; a 401 then means sign in again."""
        self._token = token

    def health(self) -> bool:
        """Whether Open WebUI answers its health check (main.healthcheck)."""
        try:
            response = self._client.get("/health")
            return response.status_code == 200 and response.json().get("status") is True
        except (httpx.HTTPError, ValueError, AttributeError):
            return False

    # --- admin settings (auths router) ---------------------------------------------------

    def get_auth_config(self) -> dict[str, Any]:
        """Sign-up, default role and the feature switches (auths.get_admin_config)."""
        return self._get_dict("/api/v1/auths/admin/config", "read the admin settings")

    def set_auth_config(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        check_keys(changes, AUTH_FIELDS, "admin settings")
        current = self.get_auth_config()
        form = {k: v for k, v in current.items() if k in AUTH_FIELDS} | dict(changes)
        # The MFA fields are kept when absent (update_admin_config pops unset ones), and
        # posting them takes a locking path that revokes sessions when they differ.
        for field in MFA_FIELDS:
            if field not in changes:
                form.pop(field, None)
        answer = self._post_dict("/api/v1/auths/admin/config", form, "save the admin settings")
        answer.pop("sessions_revoked", None)
        check_kept(changes, answer, "admin settings")
        return answer

    def get_memories_config(self) -> dict[str, Any]:
        """The global memories switches, which live in the admin settings in 0.12.4."""
        config = self.get_auth_config()
        return {k: config[k] for k in MEMORIES_FIELDS if k in config}

    def set_memories_config(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        check_keys(changes, MEMORIES_FIELDS, "memories settings")
        config = self.set_auth_config(changes)
        return {k: config[k] for k in MEMORIES_FIELDS if k in config}

    # --- connections (openai and ollama routers) -----------------------------------------

    def get_openai_config(self) -> dict[str, Any]:
        """OpenAI-compatible connections: parallel URL and key lists, configs by index."""
        return self._get_dict("/openai/config", "read the OpenAI connections")

    def set_openai_config(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        check_keys(changes, OPENAI_FIELDS, "OpenAI connections")
        form = merge_form(self.get_openai_config(), changes, OPENAI_FIELDS)
        answer = self._post_dict("/openai/config/update", form, "save the OpenAI connections")
        check_kept(changes, answer, "OpenAI connections")
        return answer

    def get_ollama_config(self) -> dict[str, Any]:
        return self._get_dict("/ollama/config", "read the Ollama connections")

    def set_ollama_config(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        """OLLAMA_API_CONFIGS merges connection by connection and key by key: turning one
        connection off (``{"2": {"enable": False}}``) keeps the others and its own key."""
        check_keys(changes, OLLAMA_FIELDS, "Ollama connections")
        current = self.get_ollama_config()
        configs = changes.get("OLLAMA_API_CONFIGS")
        if isinstance(configs, Mapping):
            have = current.get("OLLAMA_API_CONFIGS") or {}
            changes = {**changes, "OLLAMA_API_CONFIGS": {
                **have, **{i: {**(have.get(i) or {}), **c} for i, c in configs.items()}}}
        form = merge_form(current, changes, OLLAMA_FIELDS)
        answer = self._post_dict("/ollama/config/update", form, "save the Ollama connections")
        check_kept(changes, answer, "Ollama connections")
        return answer

    # --- voice (audio router) ------------------------------------------------------------

    def get_audio_config(self) -> dict[str, Any]:
        """``{"tts": {...}, "stt": {...}, "realtime": {...}}``, the shape the update takes.

        STT ENGINE "" is Open WebUI's local faster-whisper (WHISPER_MODEL), "openai" an
        OpenAI-compatible endpoint; TTS ENGINE "" is the browser's voices, "openai" an
        endpoint with OPENAI_API_BASE_URL, OPENAI_API_KEY, MODEL and VOICE.
        """
        return self._get_dict("/api/v1/audio/config", "read the voice settings")

    def set_audio_config(self, changes: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        """Change keys inside sections: ``{"stt": {"ENGINE": "", "WHISPER_MODEL": "base"}}``."""
        for section, values in changes.items():
            if section not in AUDIO_SECTIONS:
                raise ValueError(f"the voice settings have no section {section!r}; "
                                 f"use {', '.join(AUDIO_SECTIONS)}")
            check_keys(values, AUDIO_SECTIONS[section], f"voice settings ({section})")
        current = self.get_audio_config()
        form: dict[str, Any] = {}
        # tts and stt are required and stored field by field; realtime is optional and
        # kept when absent, so it is sent only when changed (its form validates lengths).
        for section in ("tts", "stt", "realtime"):
            if section == "realtime" and section not in changes:
                continue
            form[section] = merge_form(current.get(section) or {}, changes.get(section, {}),
                                       AUDIO_SECTIONS[section])
        try:
            answer = self._post_dict("/api/v1/audio/config/update", form,
                                     "save the voice settings",
                                     timeout=max(self.timeout, MODEL_LOAD_TIMEOUT))
        except WebUIError as exc:
            whisper = form["stt"].get("WHISPER_MODEL")
            if exc.status != 500 or form["stt"].get("ENGINE") != "" or not whisper:
                raise
            # update_audio_config stores the form before it loads faster-whisper, and a
            # failed load is an unhandled exception (500): see whether the form was kept.
            answer = self.get_audio_config()
            for section, values in changes.items():
                check_kept(values, answer.get(section) or {}, f"voice settings ({section})")
            raise WhisperUnavailable(
                f"Open WebUI saved the voice settings but could not load its local Whisper "
                f"model {whisper!r} (it fetches it from Hugging Face when not cached), so "
                "speech-to-text fails until the model can be downloaded.",
                config=answer, status=exc.status, detail=exc.detail) from exc
        for section, values in changes.items():
            check_kept(values, answer.get(section) or {}, f"voice settings ({section})")
        return answer

    # --- documents (retrieval router) ----------------------------------------------------

    def get_embedding_config(self) -> dict[str, Any]:
        """The embedding engine and model; the engine URLs nested as ``ollama_config`` etc."""
        config = self._get_dict("/api/v1/retrieval/embedding", "read the embedding settings")
        config.pop("status", None)  # GET-only; not a field of the update form
        return config

    def set_embedding_config(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        """E.g. ``{"RAG_EMBEDDING_ENGINE": "ollama", "RAG_EMBEDDING_MODEL": "nomic-embed-text",
        "ollama_config": {"url": "http://ollama:11434"}}``; nested configs merge key by key."""
        check_keys(changes, EMBEDDING_FIELDS, "embedding settings")
        changes = dict(changes)
        if isinstance(changes.get("RAG_EMBEDDING_MODEL"), str):
            # The server strips the name before storing it; send what it will keep.
            changes["RAG_EMBEDDING_MODEL"] = changes["RAG_EMBEDDING_MODEL"].strip()
        current = self.get_embedding_config()
        form = merge_form(current, changes, EMBEDDING_FIELDS, nested=EMBEDDING_NESTED)
        answer = self._post_dict("/api/v1/retrieval/embedding/update", form,
                                 "save the embedding settings",
                                 timeout=max(self.timeout, MODEL_LOAD_TIMEOUT))
        answer.pop("status", None)
        check_kept(changes, answer, "embedding settings")
        return answer

    # --- models (configs router) ---------------------------------------------------------

    def get_models_config(self) -> dict[str, Any]:
        """DEFAULT_MODELS (one comma-separated string of model ids), MODEL_ORDER_LIST, ..."""
        return self._get_dict("/api/v1/configs/models", "read the default models")

    def set_models_config(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        """DEFAULT_MODELS and DEFAULT_PINNED_MODELS may be given as a list of model ids."""
        check_keys(changes, MODELS_FIELDS, "default models")
        changes = dict(changes)
        for key in ("DEFAULT_MODELS", "DEFAULT_PINNED_MODELS"):
            if isinstance(changes.get(key), list | tuple):
                changes[key] = ",".join(changes[key])  # the form takes `str | None`
        form = merge_form(self.get_models_config(), changes, MODELS_FIELDS)
        answer = self._post_dict("/api/v1/configs/models", form, "save the default models")
        check_kept(changes, answer, "default models")
        return answer

    # --- default user permissions (users router) -----------------------------------------

    def get_default_permissions(self) -> dict[str, Any]:
        """What every user may do, by section (``features.memories`` among them)."""
        return self._get_dict("/api/v1/users/default/permissions",
                              "read the default user permissions")

    def set_default_permissions(self, changes: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        """E.g. ``{"features": {"memories": True}}``; other sections and keys are kept."""
        check_keys(changes, PERMISSION_SECTIONS, "default user permissions")
        form = merge_form(self.get_default_permissions(), changes, PERMISSION_SECTIONS,
                          nested=PERMISSION_SECTIONS)
        answer = self._post_dict("/api/v1/users/default/permissions", form,
                                 "save the default user permissions")
        for section, values in changes.items():
            check_kept(values, answer.get(section) or {}, f"default permissions ({section})")
        return answer

    # --- users ---------------------------------------------------------------------------

    def users(self) -> list[dict[str, Any]]:
        """Every account: id, name, email, role, ... (users.get_all_users)."""
        body = self._get_dict("/api/v1/users/all", "list the users")
        users = body.get("users")
        if not isinstance(users, list):
            raise WebUIError("Open WebUI answered the user list without a list of users.")
        return users

    def add_user(self, name: str, email: str, password: str, role: str) -> dict[str, Any]:
        """Create an account as the admin does in Admin > Users (auths.add_user)."""
        check_role(role)
        body = {"name": name, "email": email, "password": password, "role": role}
        user = self._post_dict("/api/v1/auths/add", body, f"add the user {email}",
                               idempotent=False)
        # add_user answers with a session token for the new account; lanai has no use for it.
        user.pop("token", None)
        user.pop("token_type", None)
        return user

    def update_role(self, user_id: str, role: str) -> dict[str, Any]:
        """Change one account's role (users.update_user_by_id with only ``role`` set)."""
        check_role(role)
        what = f"change the role of user {user_id} to {role}"
        try:
            return self._post_dict(f"/api/v1/users/{user_id}/update", {"role": role}, what)
        except WebUIError as exc:
            if exc.status == 403:
                raise WebUIError(
                    f"Open WebUI would not {what}: the primary admin (the first account) "
                    "stays an admin and only it may change itself.",
                    status=exc.status, detail=exc.detail) from exc
            raise

    # --- documents (files router) --------------------------------------------------------

    def upload_file(self, name: str, data: bytes, *, content_type: str = "text/plain",
                    process: bool = True,
                    metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Upload a document; the answer is its record (files.upload_file): ``id``,
        ``filename``, ``meta`` (name, content_type, size, ``file_hash``: the SHA-256 of
        the bytes sent; ``data``: the ``metadata`` sent), ``hash`` (of the extracted text;
        null until processed), ``data``.

        With ``process`` Open WebUI extracts, splits and embeds the text into the file's
        own collection after it has answered (``data.status`` "pending"): call
        `wait_processed` before adding the file to a knowledge base. Without it the file
        is only stored, and a knowledge base refuses it.
        """
        what = f"upload the file {name}"
        parts: dict[str, Any] = {"file": (name, data, content_type)}
        if metadata:  # kept as the file's meta.data (Open WebUI keeps only the base name)
            parts["metadata"] = (None, json.dumps(dict(metadata)))
        record = _as_dict(self._request(
            "POST", "/api/v1/files/", what, params={"process": _flag(process)},
            files=parts, idempotent=False), what)
        # upload_file answers {"status": true, **record}; the processing status is data.status.
        record.pop("status", None)
        if not isinstance(record.get("id"), str):
            raise WebUIError(f"Open WebUI answered the request to {what} without a file id.")
        return record

    def file(self, file_id: str) -> dict[str, Any]:
        """One file's record (files.get_file_by_id), with the extracted text in
        ``data.content`` and, after a failed processing, the reason in ``data.error``."""
        return _as_dict(self._request("GET", f"/api/v1/files/{file_id}",
                                      f"read file {file_id}", missing=f"file {file_id}"),
                        f"read file {file_id}")

    def file_status(self, file_id: str) -> str:
        """pending, processing, completed or failed (files.get_file_process_status).

        0.12.4 keeps it in the file's ``data.status``; a file uploaded without
        processing has none and reads "pending" for ever.
        """
        what = f"read the processing status of file {file_id}"
        body = _as_dict(self._request("GET", f"/api/v1/files/{file_id}/process/status", what,
                                      missing=f"file {file_id}"), what)
        status = body.get("status")
        if status not in FILE_STATUSES:
            raise WebUIError(f"Open WebUI answered the request to {what} with the unknown "
                             f"status {status!r}.")
        return str(status)

    def wait_processed(self, file_id: str, *, timeout: float = 120,
                       interval: float = 0.5) -> None:
        """Poll until the file is processed; a failure is a WebUIError with the server's
        reason (e.g. the embedding model could not be reached)."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.file_status(file_id)
            if status == "completed":
                return
            if status == "failed":
                record = self.file(file_id)
                error = str((record.get("data") or {}).get("error") or "no reason given")
                raise WebUIError(
                    f"Open WebUI could not process the file {record.get('filename') or file_id}: "
                    f"{error.strip().rstrip('.')}.", detail=error)
            if time.monotonic() >= deadline:
                raise WebUIError(f"Open WebUI had not processed file {file_id} after "
                                 f"{timeout:.0f} s (it is {status}).")
            time.sleep(interval)

    def delete_file(self, file_id: str) -> None:
        """Delete a file, its vectors, and its place in every knowledge base."""
        self._request("DELETE", f"/api/v1/files/{file_id}", f"delete file {file_id}",
                      missing=f"file {file_id}")

    # --- knowledge bases (knowledge router) ----------------------------------------------

    def knowledge_bases(self) -> list[dict[str, Any]]:
        """Every knowledge base this session may read (knowledge.get_knowledge_bases, all
        pages): id, name, description, meta, access_grants, file_count, write_access.

        The list has no files (`knowledge` has them). An admin sees every one; a ``user``
        session sees its own and those shared with it, as the workspace shows them.
        Names are not unique in Open WebUI: look one up here before creating it.
        """
        return self._pages("/api/v1/knowledge/", "list the knowledge bases")

    def knowledge(self, knowledge_id: str) -> dict[str, Any]:
        """One knowledge base with ``files``: id, filename, hash, meta (with file_hash)."""
        what = f"read knowledge base {knowledge_id}"
        record = _as_dict(self._request("GET", f"/api/v1/knowledge/{knowledge_id}", what,
                                        missing=f"knowledge base {knowledge_id}"), what)
        # get_knowledge_by_id leaves `files` null in 0.12.4; they have their own pages.
        record["files"] = self.knowledge_files(knowledge_id)
        return record

    def knowledge_files(self, knowledge_id: str) -> list[dict[str, Any]]:
        """The files of a knowledge base, all pages (knowledge.get_knowledge_files_by_id)."""
        return self._pages(f"/api/v1/knowledge/{knowledge_id}/files",
                           f"list the files of knowledge base {knowledge_id}",
                           params={"limit": PAGE_LIMIT},
                           missing=f"knowledge base {knowledge_id}")

    def create_knowledge(self, name: str, description: str, *,
                         public: bool = True) -> dict[str, Any]:
        """Create a knowledge base, readable by every user when ``public`` (without the
        grant only admins and its owner see it, and retrieval skips it for others)."""
        what = f"create the knowledge base {name}"
        form = {"name": name, "description": description,
                "access_grants": [dict(PUBLIC_READ)] if public else []}
        # create_new_knowledge embeds the name and description before answering.
        answer = self._post_dict("/api/v1/knowledge/create", form, what,
                                 timeout=max(self.timeout, EMBED_TIMEOUT), idempotent=False)
        check_grants(form["access_grants"], answer, f"knowledge base {name}")
        return answer

    def update_knowledge(self, knowledge_id: str, *, name: str,
                         description: str) -> dict[str, Any]:
        """Rename or redescribe; the answer lists the files (id, hash, meta: no filename).
        Access grants are not part of this form: see `set_knowledge_access`."""
        what = f"update knowledge base {knowledge_id}"
        return self._post_dict(f"/api/v1/knowledge/{knowledge_id}/update",
                               {"name": name, "description": description}, what,
                               timeout=max(self.timeout, EMBED_TIMEOUT),
                               missing=f"knowledge base {knowledge_id}")

    def set_knowledge_access(self, knowledge_id: str,
                             grants: Sequence[Mapping[str, str]]) -> dict[str, Any]:
        """Replace who may read or write a knowledge base (``[PUBLIC_READ]``: every user)."""
        what = f"change who sees knowledge base {knowledge_id}"
        sent = [dict(g) for g in grants]
        answer = self._post_dict(f"/api/v1/knowledge/{knowledge_id}/access/update",
                                 {"access_grants": sent}, what,
                                 missing=f"knowledge base {knowledge_id}")
        check_grants(sent, answer, f"knowledge base {knowledge_id}")
        return answer

    def add_file_to_knowledge(self, knowledge_id: str, file_id: str) -> dict[str, Any]:
        """Embed a processed file into the knowledge base's collection and link it.

        The chunks of the file's own collection are embedded again, inside the request.
        Adding a file twice embeds it twice (0.12.4 answers 200 and keeps both copies),
        and a second file with the same text is refused as duplicate content.
        """
        what = f"add file {file_id} to knowledge base {knowledge_id}"
        answer = self._post_dict(f"/api/v1/knowledge/{knowledge_id}/file/add",
                                 {"file_id": file_id}, what,
                                 timeout=max(self.timeout, EMBED_TIMEOUT), idempotent=False,
                                 missing=f"knowledge base {knowledge_id} or file {file_id}")
        if file_id not in {f.get("id") for f in answer.get("files") or [] if isinstance(f, dict)}:
            raise WebUIError(f"Open WebUI accepted but did not link file {file_id} to "
                             f"knowledge base {knowledge_id}.")
        return answer

    def remove_file_from_knowledge(self, knowledge_id: str, file_id: str, *,
                                   delete_file: bool = True) -> dict[str, Any]:
        """Unlink a file and drop its vectors from the knowledge base's collection.

        With ``delete_file`` (0.12.4's default unless ENABLE_KNOWLEDGE_FILE_RETENTION)
        the file itself goes too: record, stored bytes and its own collection.
        """
        what = f"remove file {file_id} from knowledge base {knowledge_id}"
        return _as_dict(self._request(
            "POST", f"/api/v1/knowledge/{knowledge_id}/file/remove", what,
            body={"file_id": file_id}, params={"delete_file": _flag(delete_file)},
            missing=f"file {file_id} in knowledge base {knowledge_id}"), what)

    def delete_knowledge(self, knowledge_id: str) -> None:
        """Delete a knowledge base and its collection; presets lose it from their
        meta.knowledge. Its files stay (as files without a knowledge base)."""
        what = f"delete knowledge base {knowledge_id}"
        if self._request("DELETE", f"/api/v1/knowledge/{knowledge_id}/delete", what,
                         missing=f"knowledge base {knowledge_id}") is not True:
            raise WebUIError(f"Open WebUI did not delete knowledge base {knowledge_id}.")

    # --- model presets (models router) ---------------------------------------------------

    def models(self) -> list[dict[str, Any]]:
        """The workspace models (presets: rows with a base model), every owner's: id, name,
        base_model_id, params, meta, access_grants, is_active (models.get_all_model_records).
        Rows without a base model are settings of a base model itself (e.g. its access)."""
        what = "list the workspace models"
        body = self._request("GET", "/api/v1/models/all", what)
        if not isinstance(body, list):
            raise WebUIError(f"Open WebUI answered the request to {what} with "
                             f"{type(body).__name__}, not a list.")
        return [m for m in body if isinstance(m, dict) and m.get("base_model_id")]

    def model(self, model_id: str) -> dict[str, Any] | None:
        """One model row (a preset or a base model's settings); None when there is none."""
        what = f"read model {model_id}"
        try:
            # the id is a query parameter so that it may hold '/' (models.get_model_by_id)
            return _as_dict(self._request("GET", "/api/v1/models/model", what,
                                          params={"id": model_id},
                                          missing=f"model {model_id}"), what)
        except WebUIError as exc:
            if exc.status == 404 and exc.detail == NOT_FOUND_DETAIL:
                return None
            raise

    def create_model(self, form: Mapping[str, Any]) -> dict[str, Any]:
        """Create a preset from a ModelForm (`preset_form` builds one)."""
        model_id = form.get("id")
        what = f"create the model {model_id}"
        try:
            answer = self._post_dict("/api/v1/models/create", dict(form), what,
                                     idempotent=False)
        except WebUIError as exc:
            if exc.detail == MODEL_ID_TAKEN_DETAIL:  # a 401, of all statuses
                raise WebUIError(f"Open WebUI already has a model {model_id}; update it "
                                 "instead.", status=exc.status, detail=exc.detail) from exc
            raise
        if form.get("access_grants") is not None:
            check_grants(form["access_grants"], answer, f"model {model_id}")
        return answer

    def update_model(self, model_id: str, form: Mapping[str, Any]) -> dict[str, Any]:
        """Replace a preset's name, base model, params and meta with the form's.

        models.update_model_by_id ignores ``access_grants``; when the form has them they
        are applied after, with `set_model_access`. Omitted meta keys are reset, except the
        images and voice avatar, which are kept.
        """
        body = {**form, "id": model_id}
        grants = body.pop("access_grants", None)
        answer = self._post_dict("/api/v1/models/model/update", body,
                                 f"update the model {model_id}", missing=f"model {model_id}")
        if grants is not None:
            answer = self.set_model_access(model_id, grants, name=str(body.get("name") or ""))
        return answer

    def set_model_access(self, model_id: str, grants: Sequence[Mapping[str, str]], *,
                         name: str | None = None) -> dict[str, Any]:
        """Replace who may use a model (``[PUBLIC_READ]``: every user).

        For a base model (e.g. an Ollama model) without a model row, Open WebUI creates
        one named ``name`` (models.update_model_access_by_id); a preset answers a user
        only when its base model is readable by them too.
        """
        what = f"change who may use the model {model_id}"
        sent = [dict(g) for g in grants]
        answer = self._post_dict("/api/v1/models/model/access/update",
                                 {"id": model_id, "name": name or model_id,
                                  "access_grants": sent}, what)
        check_grants(sent, answer, f"model {model_id}")
        return answer

    def delete_model(self, model_id: str) -> None:
        what = f"delete the model {model_id}"
        if self._request("POST", "/api/v1/models/model/delete", what, body={"id": model_id},
                         missing=f"model {model_id}") is not True:
            raise WebUIError(f"Open WebUI did not delete the model {model_id}.")

    # --- what a family member sees -------------------------------------------------------

    def user_visible_models(self) -> list[dict[str, Any]]:
        """The chat's model list for this session (main.get_models, ``GET /api/models``):
        base models and presets the account may read. For a ``user`` a preset's ``info``
        carries no system prompt (params are stripped for readers). Knowledge bases
        need no such call: `knowledge_bases` is what a user's workspace lists."""
        what = "list the models of the chat"
        data = _as_dict(self._request("GET", "/api/models", what), what).get("data")
        if not isinstance(data, list):
            raise WebUIError(f"Open WebUI answered the request to {what} without a list.")
        return data

    # --- plumbing ------------------------------------------------------------------------

    def _request(self, method: str, path: str, what: str, *, body: Any = None,
                 params: Mapping[str, Any] | None = None, files: Any = None,
                 timeout: float | None = None, idempotent: bool = True,
                 missing: str | None = None) -> Any:
        """``missing`` names what an id points at, for Open WebUI's not-found answer."""
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        for attempt in (1, 2):
            try:
                response = self._client.request(
                    method, path, json=body, params=params, files=files, headers=headers,
                    timeout=timeout if timeout is not None else self.timeout)
                break
            except httpx.RemoteProtocolError as exc:
                # Uvicorn closes a kept-alive connection after an unhandled error (a 500);
                # the next request on it meets "Server disconnected without sending a
                # response". Every request here but adding a user may be sent again.
                if attempt == 2 or not idempotent:
                    raise self._unreachable(exc, what) from exc
            except httpx.TransportError as exc:
                raise self._unreachable(exc, what) from exc
        if response.status_code >= 400:
            if response.status_code == 401 and not self._token:
                raise WebUIError(f"lanai must sign in to Open WebUI before it can {what}.",
                                 status=401, detail=_detail(response))
            detail = _detail(response)
            if missing and detail == NOT_FOUND_DETAIL:
                # The files, knowledge and models routers answer a missing id with 400,
                # 401 or 404; the detail is the same.
                raise WebUIError(f"Open WebUI has no {missing}.",
                                 status=response.status_code, detail=detail)
            if response.status_code == 401 and detail == ACCESS_PROHIBITED_DETAIL:
                # get_admin_user and the knowledge router's read checks: a valid session
                # of an account without the right, not an expired one.
                raise WebUIError(f"Open WebUI does not let this account {what}.",
                                 status=401, detail=detail)
            raise _http_error(response, what)
        return _json(response, what)

    def _get_dict(self, path: str, what: str) -> dict[str, Any]:
        return _as_dict(self._request("GET", path, what), what)

    def _post_dict(self, path: str, body: Any, what: str, *, timeout: float | None = None,
                   idempotent: bool = True, missing: str | None = None) -> dict[str, Any]:
        return _as_dict(self._request("POST", path, what, body=body, timeout=timeout,
                                      idempotent=idempotent, missing=missing), what)

    def _pages(self, path: str, what: str, *, params: Mapping[str, Any] | None = None,
               missing: str | None = None) -> list[dict[str, Any]]:
        """Every item of a paged list ({items, total}; ``page`` counts from 1)."""
        items: list[dict[str, Any]] = []
        page = 1
        while True:
            body = _as_dict(self._request("GET", path, what, params={**(params or {}),
                                                                     "page": page},
                                          missing=missing), what)
            batch, total = body.get("items"), body.get("total")
            if not isinstance(batch, list) or not isinstance(total, int):
                raise WebUIError(f"Open WebUI answered the request to {what} without a page "
                                 "of items.")
            items.extend(batch)
            if not batch or len(items) >= total:
                return items
            page += 1

    def _unreachable(self, exc: httpx.TransportError, what: str) -> WebUIUnreachable:
        if isinstance(exc, httpx.TimeoutException):
            return WebUIUnreachable(f"Open WebUI at {self.base_url} did not answer in time when "
                                    f"lanai tried to {what}.")
        reason = str(exc).rstrip(".") or "no reason given"
        return WebUIUnreachable(f"Open WebUI at {self.base_url} could not be reached to {what} "
                                f"({type(exc).__name__}: {reason}).")


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _json(response: httpx.Response, what: str) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise WebUIError(f"Open WebUI answered the request to {what} with something other than "
                         f"JSON (HTTP {response.status_code}).",
                         status=response.status_code) from exc


def _as_dict(body: Any, what: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise WebUIError(f"Open WebUI answered the request to {what} with "
                         f"{type(body).__name__}, not an object.")
    return body


def _detail(response: httpx.Response) -> str:
    """Open WebUI's error text: FastAPI's ``detail``, a string or a list of field errors."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:200] or response.reason_phrase
    detail = body.get("detail", body) if isinstance(body, dict) else body
    if isinstance(detail, list):
        # Validation errors: name the field and the problem, never `input` (it is the form,
        # which may hold API keys).
        parts = []
        for item in detail[:3]:
            if isinstance(item, dict):
                loc = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
                parts.append(f"{loc}: {item.get('msg', '')}" if loc else str(item.get("msg")))
        return "; ".join(parts) or "invalid form"
    return str(detail).strip()


def _http_error(response: httpx.Response, what: str) -> WebUIError:
    status = response.status_code
    detail = _detail(response)
    shown = detail.rstrip(".")
    if status == 401:
        message = (f"Open WebUI refused lanai's session when it tried to {what} ({shown}); "
                   "sign in again as an admin.")
    elif status == 403:
        message = f"Open WebUI forbade lanai to {what}: {shown}."
    elif status == 404:
        message = (f"Open WebUI has no {response.request.url.path} to {what} ({shown}); "
                   "is it version 0.12.4?")
    elif status == 422:
        message = f"Open WebUI rejected the form to {what}: {shown}."
    else:
        message = f"Open WebUI could not {what}: {shown} (HTTP {status})."
    return WebUIError(message, status=status, detail=detail)
