"""reconciler.webui.api against an in-process imitation of Open WebUI 0.12.4's admin routes.

FakeWebUI answers through httpx.MockTransport with the shapes the 0.12.4 router
functions build (each handler names the function it follows, under
open_webui/routers/), including what they silently drop or store as null, so
the tests show that the client posts full forms and notices ignored values.
The end-to-end test (tests/e2e/test_webui_api.py) runs the same client against
the real server.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from reconciler.webui.api import EMBED_TIMEOUT, MODEL_LOAD_TIMEOUT, WebUI
from reconciler.webui.errors import WebUIError, WebUIUnreachable, WhisperUnavailable
from reconciler.webui.forms import AUTH_FIELDS, PUBLIC_READ, is_public, preset_form

BASE = "http://webui.test"
ADMIN = ("admin@lanai.home.arpa", "right-password")
TOKEN = "eyJ.session.token"
SIGNIN_SENTENCE = ("the admin password in the server's secrets file does not match Open WebUI's "
                   "admin account")

# auths.ADMIN_CONFIG_KEYS with the defaults config.py seeds (abridged values, every key).
AUTH_DEFAULTS: dict[str, Any] = {
    "ENABLE_MFA": False, "MFA_ALLOW_OAUTH_BYPASS": False, "MFA_ALLOW_TRUSTED_HEADER_BYPASS": False,
    "SHOW_ADMIN_DETAILS": True, "ADMIN_EMAIL": None, "WEBUI_URL": "", "ENABLE_LOGIN_FORM": True,
    "ENABLE_SIGNUP": False, "ENABLE_API_KEYS": False,
    "ENABLE_API_KEYS_ENDPOINT_RESTRICTIONS": False, "API_KEYS_ALLOWED_ENDPOINTS": "",
    "DEFAULT_USER_ROLE": "pending", "DEFAULT_GROUP_ID": "", "DEFAULT_INTERFACE_SETTINGS": {},
    "I18N": {}, "JWT_EXPIRES_IN": "4w", "ENABLE_COMMUNITY_SHARING": True,
    "ENABLE_MESSAGE_RATING": True, "ENABLE_FOLDERS": True, "FOLDER_MAX_FILE_COUNT": "",
    "AUTOMATION_MAX_COUNT": "", "AUTOMATION_MIN_INTERVAL": "", "ENABLE_AUTOMATIONS": False,
    "ENABLE_CHANNELS": False, "ENABLE_ENCRYPTED_CHANNELS": False, "ENABLE_APPS": False,
    "CHANNEL_MODEL_RESPONSE_MODE": "thread", "ENABLE_CALENDAR": True, "ENABLE_MEMORIES": True,
    "ENABLE_MEMORY_SYSTEM_CONTEXT": True, "ENABLE_SKILL_LAZY_LOADING": False,
    "SKILL_CONTENT_MAX_CHARS": None, "SKILL_PREVIEW_MAX_CHARS": None, "ENABLE_NOTES": True,
    "ENABLE_USER_WEBHOOKS": False, "ENABLE_USER_STATUS": True, "PENDING_USER_OVERLAY_TITLE": "",
    "PENDING_USER_OVERLAY_CONTENT": "", "RESPONSE_WATERMARK": "",
}
# AdminConfig fields without a default: a form lacking one is a 422.
AUTH_REQUIRED = {
    "SHOW_ADMIN_DETAILS", "WEBUI_URL", "ENABLE_SIGNUP", "ENABLE_API_KEYS",
    "ENABLE_API_KEYS_ENDPOINT_RESTRICTIONS", "API_KEYS_ALLOWED_ENDPOINTS", "DEFAULT_USER_ROLE",
    "DEFAULT_GROUP_ID", "JWT_EXPIRES_IN", "ENABLE_COMMUNITY_SHARING", "ENABLE_MESSAGE_RATING",
    "ENABLE_FOLDERS", "ENABLE_AUTOMATIONS", "ENABLE_CHANNELS", "ENABLE_CALENDAR",
    "ENABLE_MEMORIES", "ENABLE_MEMORY_SYSTEM_CONTEXT", "ENABLE_NOTES", "ENABLE_USER_WEBHOOKS",
    "ENABLE_USER_STATUS",
}
TTS = {"OPENAI_API_BASE_URL": "https://api.openai.com/v1", "OPENAI_API_KEY": "",
       "OPENAI_PARAMS": {}, "API_KEY": "", "ENGINE": "", "MODEL": "tts-1", "VOICE": "alloy",
       "REALTIME_TTS_PROMPT_TEMPLATE": "", "SPLIT_ON": "punctuation", "AZURE_SPEECH_REGION": "",
       "AZURE_SPEECH_BASE_URL": "",
       "AZURE_SPEECH_OUTPUT_FORMAT": "audio-24khz-160kbitrate-mono-mp3",
       "MISTRAL_API_KEY": "", "MISTRAL_API_BASE_URL": "https://api.mistral.ai/v1"}
STT = {"OPENAI_API_BASE_URL": "https://api.openai.com/v1", "OPENAI_API_KEY": "",
       "OPENAI_API_REQUEST_FORMAT": "multipart", "ENGINE": "", "MODEL": "whisper-1",
       "SUPPORTED_CONTENT_TYPES": [], "ALLOWED_EXTENSIONS": [], "WHISPER_MODEL": "base",
       "DEEPGRAM_API_KEY": "", "AZURE_API_KEY": "", "AZURE_REGION": "", "AZURE_LOCALES": "",
       "AZURE_BASE_URL": "", "AZURE_MAX_SPEAKERS": "", "MISTRAL_API_KEY": "",
       "MISTRAL_API_BASE_URL": "https://api.mistral.ai/v1", "MISTRAL_USE_CHAT_COMPLETIONS": False}
REALTIME = {"ENABLED": False, "PROVIDER": "openai", "AUTH_TYPE": "api_key",
            "OPENAI_API_BASE_URL": "https://api.openai.com/v1", "OPENAI_API_KEY": "",
            "MODEL": "gpt-realtime-2.1-mini", "VOICE": "marin",
            "TRANSCRIPTION_MODEL": "gpt-transcribe",
            "INPUT_PARAMS": None, "REALTIME_CALL_PROMPT_TEMPLATE": None}
PERMISSIONS = {
    "workspace": {"models": False, "knowledge": False, "prompts": False, "tools": False},
    "sharing": {"models": False, "public_models": False},
    "access_grants": {"allow_users": True, "allow_groups": True},
    "chat": {"controls": True, "import": True, "stt": True, "tts": True},
    "features": {"notes": True, "memories": True, "web_search": True},
    "settings": {"interface": True},
}


def detail(status: int, text: Any) -> httpx.Response:
    return httpx.Response(status, json={"detail": text})


def missing(fields: set[str], form: dict[str, Any], prefix: tuple[str, ...] = ()) -> httpx.Response:
    """FastAPI's 422 for absent required fields; `input` echoes the whole form."""
    return httpx.Response(422, json={"detail": [
        {"type": "missing", "loc": ["body", *prefix, f], "msg": "Field required", "input": form}
        for f in sorted(fields)]})


NOT_FOUND = "We could not find what you're looking for :/"
PUBLIC = {"principal_type": "user", "principal_id": "*", "permission": "read"}
PHI3 = "phi3:3.8b-mini-4k-instruct-q4_K_M"


class FakeWorkspace:
    """The files, knowledge and models routes of 0.12.4, storage as dicts and vectors as a
    list of file ids per collection (enough to see what is embedded where)."""

    def __init__(self) -> None:
        self.files: dict[str, dict[str, Any]] = {}
        self.polls: dict[str, list[str]] = {}  # file id -> statuses the next polls read
        self.knowledge: dict[str, dict[str, Any]] = {}
        self.links: dict[str, list[str]] = {}  # knowledge id -> file ids
        self.vectors: dict[str, list[str]] = {}  # collection -> file id of each chunk
        self.models: dict[str, dict[str, Any]] = {}
        self.ollama_models = [PHI3, "nomic-embed-text:v1.5"]
        self.count = 0

    def new_id(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}-{self.count}"

    @staticmethod
    def grants(resource: str, rid: str, sent: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
        # normalize_access_grants: malformed grants are dropped without a word
        return [{"id": f"g-{i}", "resource_type": resource, "resource_id": rid, **g,
                 "created_at": 1700000000}
                for i, g in enumerate(sent or [])
                if g.get("principal_type") in ("user", "group") and g.get("principal_id")
                and g.get("permission") in ("read", "write")]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path, method, query = request.url.path, request.method, request.url.params
        body = json.loads(request.content) if request.headers.get(
            "content-type") == "application/json" else None
        if path == "/api/v1/files/" and method == "POST":
            return self.upload_file(request)
        if match := re.fullmatch(r"/api/v1/files/([^/]+)/process/status", path):
            return self.get_file_process_status(match.group(1))
        if match := re.fullmatch(r"/api/v1/files/([^/]+)", path):
            file = self.files.get(match.group(1))
            if file is None:
                return detail(404, NOT_FOUND)
            if method == "DELETE":  # files.delete_file_by_id
                return self.delete_file(file["id"])
            return httpx.Response(200, json=file)  # files.get_file_by_id
        if path == "/api/v1/knowledge/":  # knowledge.get_knowledge_bases: 30 a page
            items = sorted(self.knowledge.values(), key=lambda k: k["name"])
            page = int(query.get("page", 1))
            return httpx.Response(200, json={"items": [
                {**k, "user": None, "file_count": len(self.links[k["id"]]), "write_access": True}
                for k in items[(page - 1) * 30:page * 30]], "total": len(items)})
        if path == "/api/v1/knowledge/create":
            return self.create_new_knowledge(body)
        if match := re.fullmatch(r"/api/v1/knowledge/([^/]+)(/.*)?", path):
            return self.knowledge_route(match.group(1), match.group(2) or "", request, body)
        if path == "/api/v1/models/all":  # models.get_all_model_records
            return httpx.Response(200, json=list(self.models.values()))
        if path == "/api/v1/models/model" and method == "GET":  # models.get_model_by_id
            model = self.models.get(query["id"])
            return detail(404, NOT_FOUND) if model is None else httpx.Response(
                200, json={**model, "write_access": True, "user": None})
        if path == "/api/v1/models/create":
            return self.create_new_model(body)
        if path == "/api/v1/models/model/update":
            return self.update_model_by_id(body)
        if path == "/api/v1/models/model/access/update":
            return self.update_model_access_by_id(body)
        if path == "/api/v1/models/model/delete":  # models.delete_model_by_id
            if body["id"] not in self.models:
                return detail(401, NOT_FOUND)
            del self.models[body["id"]]
            return httpx.Response(200, json=True)
        if path == "/api/models":
            return self.get_models()
        return detail(404, "Not Found")

    # files.upload_file -> upload_file_handler: processing is a background task
    def upload_file(self, request: httpx.Request) -> httpx.Response:
        part = re.search(rb'filename="([^"]+)"\r\nContent-Type: ([^\r]+)\r\n\r\n(.*?)\r\n--',
                         request.content, re.S)
        assert part, "a multipart body with one file"
        name, content_type, data = part.group(1).decode(), part.group(2).decode(), part.group(3)
        process = request.url.params.get("process", "true") == "true"
        fid = self.new_id("file")
        self.files[fid] = {
            "id": fid, "user_id": "u-admin", "hash": None, "filename": name,
            "path": f"/app/backend/data/uploads/{fid}_{name}",
            "data": {"status": "pending"} if process else {},
            "meta": {"name": name, "content_type": content_type, "size": len(data),
                     "file_hash": hashlib.sha256(data).hexdigest(), "data": {}},
            "created_at": 1700000000, "updated_at": 1700000000}
        if process:
            self.polls[fid] = ["processing", "completed"]
            if content_type.startswith("image/"):
                self.polls[fid] = ["processing", "failed"]
        return httpx.Response(200, json={"status": True, **self.files[fid]})

    # files.get_file_process_status (not streamed): data.status, "pending" when absent
    def get_file_process_status(self, fid: str) -> httpx.Response:
        file = self.files.get(fid)
        if file is None:
            return detail(404, NOT_FOUND)
        if self.polls.get(fid):
            status = self.polls[fid].pop(0)
            file["data"]["status"] = status
            if status == "completed":  # process_uploaded_file -> index_file
                file["hash"] = file["meta"]["file_hash"]
                self.vectors[f"file-{fid}"] = [fid]
            if status == "failed":
                file["data"]["error"] = ("File type image/png is not supported for "
                                         "processing")
        return httpx.Response(200, json={"status": file["data"].get("status", "pending")})

    def delete_file(self, fid: str) -> httpx.Response:
        for kid, fids in self.links.items():  # KB associations and embeddings go first
            if fid in fids:
                fids.remove(fid)
                self.vectors[kid] = [v for v in self.vectors.get(kid, []) if v != fid]
        del self.files[fid]
        self.vectors.pop(f"file-{fid}", None)
        return httpx.Response(200, json={"message": "File deleted successfully"})

    # knowledge.create_new_knowledge: KnowledgeForm {name, description, access_grants}
    def create_new_knowledge(self, form: dict[str, Any]) -> httpx.Response:
        if {"name", "description"} - set(form):
            return missing({"name", "description"} - set(form), form)
        kid = self.new_id("kb")
        self.knowledge[kid] = {
            "id": kid, "user_id": "u-admin", "name": form["name"],
            "description": form["description"], "meta": None,
            "access_grants": self.grants("knowledge", kid, form.get("access_grants")),
            "created_at": 1700000000, "updated_at": 1700000000}
        self.links[kid] = []
        return httpx.Response(200, json={**self.knowledge[kid], "files": None})

    def file_metadatas(self, kid: str) -> list[dict[str, Any]]:
        # Knowledges.get_file_metadatas_by_id: no filename (it is in meta.name)
        return [{k: self.files[f][k] for k in ("id", "hash", "meta")}
                | {"created_at": 1700000000, "updated_at": 1700000000}
                for f in self.links[kid]]

    def knowledge_route(self, kid: str, rest: str, request: httpx.Request,
                        body: Any) -> httpx.Response:
        kb = self.knowledge.get(kid)
        if kb is None:  # 404 for GET /{id}, 400 for the others
            return detail(404 if rest == "" else 400, NOT_FOUND)
        if rest == "":  # knowledge.get_knowledge_by_id: files left null
            return httpx.Response(200, json={**kb, "files": None, "write_access": True})
        if rest == "/files":  # knowledge.get_knowledge_files_by_id (admins choose limit)
            limit = int(request.url.params.get("limit", 30))
            page = int(request.url.params.get("page", 1))
            fids = self.links[kid]
            items = [{**{k: v for k, v in self.files[f].items() if k != "path"},
                      "data": None, "directory_id": None, "directory_path": "",
                      "has_original": True, "user": None}
                     for f in fids[(page - 1) * limit:page * limit]]
            return httpx.Response(200, json={"items": items, "directories": [],
                                             "breadcrumbs": [], "total": len(fids)})
        if rest == "/update":  # knowledge.update_knowledge_by_id: grants untouched
            kb.update(name=body["name"], description=body["description"])
            return httpx.Response(200, json={**kb, "files": self.file_metadatas(kid),
                                             "write_access": False})
        if rest == "/access/update":  # knowledge.update_knowledge_access_by_id
            kb["access_grants"] = self.grants("knowledge", kid, body["access_grants"])
            return httpx.Response(200, json={**kb, "files": self.file_metadatas(kid)})
        if rest == "/file/add":  # knowledge.add_file_to_knowledge_by_id
            file = self.files.get(body["file_id"])
            if file is None:
                return detail(400, NOT_FOUND)
            if not self.vectors.get(f"file-{file['id']}"):
                return detail(400, "The content provided is empty. Please ensure that there "
                                   "is text or data present before proceeding.")
            # process_file(collection_name=id): the file's chunks embedded again, even twice
            self.vectors.setdefault(kid, []).append(file["id"])
            if file["id"] not in self.links[kid]:  # the unique link fails silently
                self.links[kid].append(file["id"])
            return httpx.Response(200, json={**kb, "files": self.file_metadatas(kid)})
        if rest == "/file/remove":  # knowledge.remove_file_from_knowledge_by_id
            fid = body["file_id"]
            if fid not in self.links[kid]:
                return detail(400, NOT_FOUND)
            self.links[kid].remove(fid)
            self.vectors[kid] = [v for v in self.vectors.get(kid, []) if v != fid]
            if request.url.params.get("delete_file", "true") == "true":
                del self.files[fid]  # delete_file_resource
                self.vectors.pop(f"file-{fid}", None)
            return httpx.Response(200, json={**kb, "files": self.file_metadatas(kid)})
        if rest == "/delete" and request.method == "DELETE":  # knowledge.delete_knowledge_by_id
            for model in self.models.values():
                model["meta"]["knowledge"] = [k for k in model["meta"].get("knowledge") or []
                                              if k.get("id") != kid]
            del self.knowledge[kid], self.links[kid]
            self.vectors.pop(kid, None)
            return httpx.Response(200, json=True)
        return detail(404, "Not Found")

    def model_row(self, form: dict[str, Any], grants: list[dict[str, Any]]) -> dict[str, Any]:
        meta = {"profile_image_url": None, "background_image_url": None, "description": None,
                "i18n": None, "capabilities": None, "knowledge": None, "voice": None,
                "voice_avatar": None, **form.get("meta", {})}
        return {"version_id": self.new_id("v"), "id": form["id"], "user_id": "u-admin",
                "base_model_id": form.get("base_model_id"), "name": form["name"],
                "params": form.get("params", {}), "meta": meta, "access_grants": grants,
                "is_active": form.get("is_active", True), "updated_at": 1700000000,
                "created_at": 1700000000}

    # models.create_new_model (ModelForm, extra keys ignored: access_control is not a field)
    def create_new_model(self, form: dict[str, Any]) -> httpx.Response:
        if {"id", "name", "meta", "params"} - set(form):
            return missing({"id", "name", "meta", "params"} - set(form), form)
        if form["id"] in self.models:
            return detail(401, "Uh-oh! This model id is already registered. Please choose "
                               "another model id string.")
        self.models[form["id"]] = self.model_row(
            form, self.grants("model", form["id"], form.get("access_grants")))
        return httpx.Response(200, json=self.models[form["id"]])

    # models.update_model_by_id: access_grants are not written
    def update_model_by_id(self, form: dict[str, Any]) -> httpx.Response:
        current = self.models.get(form["id"])
        if current is None:
            return detail(401, NOT_FOUND)
        self.models[form["id"]] = self.model_row(form, current["access_grants"])
        return httpx.Response(200, json=self.models[form["id"]])

    # models.update_model_access_by_id: a base model without a row gets a minimal one
    def update_model_access_by_id(self, form: dict[str, Any]) -> httpx.Response:
        if form["id"] not in self.models:
            self.models[form["id"]] = self.model_row(
                {"id": form["id"], "name": form.get("name") or form["id"]}, [])
        self.models[form["id"]]["access_grants"] = self.grants("model", form["id"],
                                                               form["access_grants"])
        return httpx.Response(200, json=self.models[form["id"]])

    # main.get_models: Ollama's models plus active presets, filtered for the caller (admin)
    def get_models(self) -> httpx.Response:
        data = [{"id": m, "name": m, "object": "model", "owned_by": "ollama"}
                for m in self.ollama_models]
        data += [{"id": m["id"], "name": m["name"], "object": "model", "owned_by": "ollama",
                  "preset": True, "info": m} for m in self.models.values()
                 if m["base_model_id"] and m["is_active"]]
        return httpx.Response(200, json={"data": data})


class FakeWebUI:
    """The admin routes of Open WebUI 0.12.4, with their storage as plain dicts."""

    def __init__(self) -> None:
        self.auth = dict(AUTH_DEFAULTS)
        self.openai = {"ENABLE_OPENAI_API": True,
                       "OPENAI_API_BASE_URLS": ["https://api.openai.com/v1"],
                       "OPENAI_API_KEYS": [""], "OPENAI_API_CONFIGS": {}}
        self.ollama = {"ENABLE_OLLAMA_API": True, "OLLAMA_BASE_URLS": ["http://ollama:11434"],
                       "OLLAMA_API_CONFIGS": {}}
        self.audio = {"realtime": dict(REALTIME), "tts": dict(TTS), "stt": dict(STT)}
        self.rag = {"RAG_EMBEDDING_ENGINE": "", "RAG_EMBEDDING_MODEL":
                    "sentence-transformers/all-MiniLM-L6-v2", "RAG_EMBEDDING_BATCH_SIZE": 1,
                    "ENABLE_ASYNC_EMBEDDING": True, "RAG_EMBEDDING_CONCURRENT_REQUESTS": 0,
                    "openai_config": {"url": "https://api.openai.com/v1", "key": ""},
                    "ollama_config": {"url": "http://ollama:11434", "key": ""},
                    "azure_openai_config": {"url": "", "key": "", "version": ""}}
        self.models = {"DEFAULT_MODELS": None, "DEFAULT_PINNED_MODELS": None,
                       "MODEL_ORDER_LIST": [], "DEFAULT_MODEL_METADATA": {"capabilities": {}},
                       "DEFAULT_MODEL_PARAMS": {}}
        self.permissions = copy.deepcopy(PERMISSIONS)
        self.users = [{"id": "u-admin", "name": "Admin", "email": ADMIN[0], "role": "admin"}]
        self.requests: list[httpx.Request] = []
        self.next_signin: httpx.Response | None = None
        self.fail: dict[str, httpx.Response] = {}  # path -> canned answer
        self.whisper_cached = True  # False: like the offline test image (HF_HUB_OFFLINE=1)
        self.workspace = FakeWorkspace()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path, method = request.url.path, request.method
        if path in self.fail:
            return self.fail[path]
        if path == "/health":  # main.healthcheck
            return httpx.Response(200, json={"status": True})
        if path == "/api/v1/auths/signin":
            return self.signin(json.loads(request.content))
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            # utils/auth.get_current_user: no credential at all
            return detail(401, "Not authenticated")
        if path.startswith(("/api/v1/files", "/api/v1/knowledge", "/api/v1/models",
                            "/api/models")):
            return self.workspace(request)
        if method == "GET":
            route = {
                "/api/v1/auths/admin/config": self.auth, "/openai/config": self.openai,
                "/ollama/config": self.ollama, "/api/v1/audio/config": self.audio,
                "/api/v1/retrieval/embedding": {"status": True, **self.rag},
                "/api/v1/configs/models": self.models,
                "/api/v1/users/default/permissions": self.permissions,
            }.get(path)
            if path == "/api/v1/users/all":
                return self.get_users_all()
            return detail(404, "Not Found") if route is None else httpx.Response(200, json=route)
        body = json.loads(request.content)
        user = re.fullmatch(r"/api/v1/users/([^/]+)/update", path)
        if user:
            return self.post_users_update(user.group(1), body)
        post = {
            "/api/v1/auths/admin/config": self.post_auth_config,
            "/openai/config/update": self.post_openai_config_update,
            "/ollama/config/update": self.post_ollama_config_update,
            "/api/v1/audio/config/update": self.post_audio_config_update,
            "/api/v1/retrieval/embedding/update": self.post_retrieval_embedding_update,
            "/api/v1/configs/models": self.post_configs_models,
            "/api/v1/users/default/permissions": self.post_users_default_permissions,
            "/api/v1/auths/add": self.post_auths_add,
        }.get(path)
        return detail(404, "Not Found") if post is None else post(body)

    # auths.signin -> utils/auth.create_session_response
    def signin(self, form: dict[str, str]) -> httpx.Response:
        if self.next_signin is not None:
            return self.next_signin
        if (form["email"], form["password"]) != ADMIN:
            return detail(400, "The email or password provided is incorrect. Please check for "
                               "typos and try logging in again.")
        return httpx.Response(200, json={
            "token": TOKEN, "token_type": "Bearer", "expires_at": None, "id": "u-admin",
            "email": ADMIN[0], "name": "Admin", "role": "admin",
            "profile_image_url": "/api/v1/users/u-admin/profile/image", "permissions": {}},
            headers={"set-cookie": f"token={TOKEN}; HttpOnly; Path=/"})

    # auths.get_admin_config / update_admin_config
    def post_auth_config(self, form: dict[str, Any]) -> httpx.Response:
        if AUTH_REQUIRED - set(form):
            # the auths router's MfaRoute replaces FastAPI's 422 body with this one
            return detail(422, "Invalid authentication request.")
        updates = {k: v for k, v in form.items() if k in AUTH_FIELDS}
        if form["DEFAULT_USER_ROLE"] not in ("pending", "user", "admin"):
            updates.pop("DEFAULT_USER_ROLE")
        if not re.match(r"^(-1|0|(-?\d+(\.\d+)?)(ms|s|m|h|d|w))$", form["JWT_EXPIRES_IN"]):
            updates.pop("JWT_EXPIRES_IN")
        self.auth.update(updates)
        return httpx.Response(200, json={**self.auth, "sessions_revoked": False})

    # openai.get_config / openai.update_config
    def post_openai_config_update(self, form: dict[str, Any]) -> httpx.Response:
        urls, keys = form["OPENAI_API_BASE_URLS"], form["OPENAI_API_KEYS"]
        keys = (keys + [""] * len(urls))[: len(urls)]
        valid = {str(i) for i in range(len(urls))}
        self.openai = {
            "ENABLE_OPENAI_API": form.get("ENABLE_OPENAI_API"),  # `bool | None = None`
            "OPENAI_API_BASE_URLS": urls, "OPENAI_API_KEYS": keys,
            "OPENAI_API_CONFIGS": {k: v for k, v in form["OPENAI_API_CONFIGS"].items()
                                   if k in valid}}
        return httpx.Response(200, json=self.openai)

    # ollama.get_config / ollama.update_config
    def post_ollama_config_update(self, form: dict[str, Any]) -> httpx.Response:
        valid = {str(i) for i in range(len(form["OLLAMA_BASE_URLS"]))}
        self.ollama = {
            "ENABLE_OLLAMA_API": form.get("ENABLE_OLLAMA_API"),
            "OLLAMA_BASE_URLS": form["OLLAMA_BASE_URLS"],
            "OLLAMA_API_CONFIGS": {k: v for k, v in form["OLLAMA_API_CONFIGS"].items()
                                   if k in valid}}
        return httpx.Response(200, json=self.ollama)

    # audio.get_audio_config / audio.update_audio_config
    def post_audio_config_update(self, form: dict[str, Any]) -> httpx.Response:
        for section, required in (("tts", set(TTS) - {"OPENAI_PARAMS",
                                                       "REALTIME_TTS_PROMPT_TEMPLATE"}),
                                  ("stt", set(STT) - {"OPENAI_API_REQUEST_FORMAT",
                                                      "SUPPORTED_CONTENT_TYPES",
                                                      "ALLOWED_EXTENSIONS"})):
            if section not in form:
                return missing({section}, form)
            if required - set(form[section]):
                return missing(required - set(form[section]), form, (section,))
        for section in ("realtime", "tts", "stt"):
            self.audio[section].update(form.get(section) or {})
        if form["stt"]["ENGINE"] == "" and form["stt"]["WHISPER_MODEL"] \
                and not self.whisper_cached:
            # set_faster_whisper_model raises LocalEntryNotFoundError/OfflineModeIsEnabled
            # after the upsert: Starlette's plain-text 500
            return httpx.Response(500, text="Internal Server Error")
        return httpx.Response(200, json=self.audio)

    # retrieval.get_embedding_config / retrieval.update_embedding_config
    def post_retrieval_embedding_update(self, form: dict[str, Any]) -> httpx.Response:
        engine = form["RAG_EMBEDDING_ENGINE"]
        self.rag.update({"RAG_EMBEDDING_ENGINE": engine,
                         "RAG_EMBEDDING_MODEL": form["RAG_EMBEDDING_MODEL"].strip(),
                         "RAG_EMBEDDING_BATCH_SIZE": form.get("RAG_EMBEDDING_BATCH_SIZE", 1),
                         "ENABLE_ASYNC_EMBEDDING": form.get("ENABLE_ASYNC_EMBEDDING", True),
                         "RAG_EMBEDDING_CONCURRENT_REQUESTS":
                             form.get("RAG_EMBEDDING_CONCURRENT_REQUESTS", 0)})
        # only the chosen engine's URL and key are stored
        for name, key in (("openai", "openai_config"), ("ollama", "ollama_config"),
                          ("azure_openai", "azure_openai_config")):
            if engine == name and form.get(key) is not None:
                self.rag[key] = {k: v or "" for k, v in form[key].items()}
        return httpx.Response(200, json={"status": True, **self.rag})

    # configs.get_models_config / configs.set_models_config (model_dump: absent -> None)
    def post_configs_models(self, form: dict[str, Any]) -> httpx.Response:
        required = {"DEFAULT_MODELS", "DEFAULT_PINNED_MODELS", "MODEL_ORDER_LIST"}
        if required - set(form):
            return missing(required - set(form), form)
        self.models = {k: form.get(k) for k in self.models}
        return httpx.Response(200, json=self.models)

    # users.get_default_user_permissions / update_default_user_permissions
    def post_users_default_permissions(self, form: dict[str, Any]) -> httpx.Response:
        if set(PERMISSIONS) - set(form):
            return missing(set(PERMISSIONS) - set(form), form)
        self.permissions = form
        return httpx.Response(200, json=form)

    # users.get_all_users (UserInfoListResponse)
    def get_users_all(self) -> httpx.Response:
        users = [{**u, "bio": None, "last_active_at": 1700000000, "timezone": None,
                  "groups": [], "is_active": False, "status_emoji": None,
                  "status_message": None, "status_expires_at": None} for u in self.users]
        return httpx.Response(200, json={"users": users, "total": len(users)})

    # auths.add_user (AddUserResponse: with a token for the new account)
    def post_auths_add(self, form: dict[str, Any]) -> httpx.Response:
        if any(u["email"] == form["email"].lower() for u in self.users):
            return detail(400, "Uh-oh! This email is already registered. Sign in with your "
                               "existing account or choose another email to start anew.")
        user = {"id": f"u-{len(self.users)}", "name": form["name"],
                "email": form["email"].lower(), "role": form.get("role", "pending")}
        self.users.append(user)
        return httpx.Response(200, json={
            "token": "eyJ.new.user", "token_type": "Bearer", **user,
            "profile_image_url": f"/api/v1/users/{user['id']}/profile/image"})

    # users.update_user_by_id (UserModel)
    def post_users_update(self, user_id: str, form: dict[str, Any]) -> httpx.Response:
        if user_id == self.users[0]["id"] and form.get("role") not in (None, "admin"):
            return detail(403, "The requested action has been restricted as a security measure.")
        for user in self.users:
            if user["id"] == user_id:
                user.update({k: v for k, v in form.items() if v is not None and k != "password"})
                return httpx.Response(200, json={**user, "username": None, "info": None,
                                                 "settings": None})
        return detail(400, "We could not find what you're looking for :/")


@pytest.fixture
def fake() -> FakeWebUI:
    return FakeWebUI()


@pytest.fixture
def webui(fake: FakeWebUI) -> Iterator[WebUI]:
    with WebUI(BASE, timeout=5, transport=httpx.MockTransport(fake)) as client:
        client.signin(*ADMIN)
        yield client


def posted(fake: FakeWebUI, path: str) -> dict[str, Any]:
    bodies = [json.loads(r.content) for r in fake.requests
              if r.method == "POST" and r.url.path == path]
    assert len(bodies) == 1, f"{len(bodies)} POSTs to {path}"
    return bodies[0]


# --- session --------------------------------------------------------------------------------


def test_signin_stores_the_token_and_sends_it_as_bearer(fake: FakeWebUI) -> None:
    with WebUI(BASE + "/", transport=httpx.MockTransport(fake)) as client:
        client.signin(*ADMIN)
        assert client.get_auth_config()["DEFAULT_USER_ROLE"] == "pending"
    signin, read = fake.requests
    assert json.loads(signin.content) == {"email": ADMIN[0], "password": ADMIN[1]}
    assert read.headers["authorization"] == f"Bearer {TOKEN}"
    assert "cookie" not in read.headers  # the bearer token is the one credential sent


def test_wrong_password_names_the_secrets_file(fake: FakeWebUI) -> None:
    with WebUI(BASE, transport=httpx.MockTransport(fake)) as client, \
            pytest.raises(WebUIError) as caught:
        client.signin(ADMIN[0], "stale-password")
    assert caught.value.status == 400
    assert str(caught.value) == (f"Open WebUI refused the sign-in of {ADMIN[0]}: "
                                 f"{SIGNIN_SENTENCE}.")
    assert "stale-password" not in str(caught.value)


@pytest.mark.parametrize(("answer", "expected"), [
    (detail(429, "Too many requests"), "too many attempts"),
    (detail(403, "The requested action has been restricted as a security measure."),
     "ENABLE_PASSWORD_AUTH=false"),
    (httpx.Response(200, json={"next_step": "verify", "challenge_token": "c", "expires_in": 300}),
     "second factor"),
    (httpx.Response(200, json={"next_step": "pending"}), "pending approval"),
    (httpx.Response(200, json={"token": "t", "token_type": "Bearer", "role": "user"}),
     "not an admin"),
])
def test_signin_refusals_are_one_sentence(fake: FakeWebUI, answer: httpx.Response,
                                          expected: str) -> None:
    fake.next_signin = answer
    with WebUI(BASE, transport=httpx.MockTransport(fake)) as client, \
            pytest.raises(WebUIError, match=expected) as caught:
        client.signin(*ADMIN)
    assert str(caught.value).endswith(".")


def test_calls_before_signin_say_so(fake: FakeWebUI) -> None:
    with WebUI(BASE, transport=httpx.MockTransport(fake)) as client, \
            pytest.raises(WebUIError, match="must sign in to Open WebUI before it can read"):
        client.get_openai_config()


def test_an_expired_session_asks_to_sign_in_again(fake: FakeWebUI, webui: WebUI) -> None:
    fake.fail["/api/v1/configs/models"] = detail(
        401, "Your session has expired or the token is invalid. Please sign in again.")
    with pytest.raises(WebUIError) as caught:
        webui.get_models_config()
    assert caught.value.status == 401
    assert str(caught.value) == (
        "Open WebUI refused lanai's session when it tried to read the default models (Your "
        "session has expired or the token is invalid. Please sign in again); sign in again as "
        "an admin.")


def test_health(fake: FakeWebUI) -> None:
    with WebUI(BASE, transport=httpx.MockTransport(fake)) as client:
        assert client.health() is True
        fake.fail["/health"] = httpx.Response(503, text="starting")
        assert client.health() is False

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with WebUI(BASE, transport=httpx.MockTransport(refuse)) as client:
        assert client.health() is False


# --- read-modify-write ----------------------------------------------------------------------


def test_auth_setter_posts_the_full_form_with_only_the_given_keys_changed(
        fake: FakeWebUI, webui: WebUI) -> None:
    fake.auth["ENABLE_CHANNELS"] = True  # set by hand in the admin UI; lanai leaves it
    fake.auth["RESPONSE_WATERMARK"] = "family server"
    result = webui.set_auth_config({"ENABLE_SIGNUP": True, "DEFAULT_USER_ROLE": "user"})

    form = posted(fake, "/api/v1/auths/admin/config")
    expected = {k: v for k, v in AUTH_DEFAULTS.items() if not k.startswith(("ENABLE_MFA", "MFA_"))}
    expected |= {"ENABLE_CHANNELS": True, "RESPONSE_WATERMARK": "family server",
                 "ENABLE_SIGNUP": True, "DEFAULT_USER_ROLE": "user"}
    assert form == expected  # MFA fields left out: the server keeps them when absent
    assert result == fake.auth  # no sessions_revoked: the same keys the getter returns
    assert webui.get_auth_config() == result


def test_a_value_the_server_silently_ignores_is_an_error(fake: FakeWebUI, webui: WebUI) -> None:
    with pytest.raises(WebUIError) as caught:
        webui.set_auth_config({"JWT_EXPIRES_IN": "four weeks"})
    assert str(caught.value) == ("Open WebUI accepted but did not keep JWT_EXPIRES_IN in its "
                                 "admin settings (sent 'four weeks', it kept '4w').")


def test_unknown_keys_are_refused_before_any_request(fake: FakeWebUI, webui: WebUI) -> None:
    count = len(fake.requests)
    with pytest.raises(ValueError, match="has no ENABLE_SIGNUPS in its admin settings"):
        webui.set_auth_config({"ENABLE_SIGNUPS": True})
    with pytest.raises(ValueError, match="no section 'speech'"):
        webui.set_audio_config({"speech": {"ENGINE": ""}})
    assert len(fake.requests) == count


def test_memories_live_in_the_admin_settings(fake: FakeWebUI, webui: WebUI) -> None:
    assert webui.get_memories_config() == {"ENABLE_MEMORIES": True,
                                           "ENABLE_MEMORY_SYSTEM_CONTEXT": True}
    assert webui.set_memories_config({"ENABLE_MEMORIES": False}) == {
        "ENABLE_MEMORIES": False, "ENABLE_MEMORY_SYSTEM_CONTEXT": True}
    assert posted(fake, "/api/v1/auths/admin/config")["ENABLE_SIGNUP"] is False  # kept
    with pytest.raises(ValueError):
        webui.set_memories_config({"ENABLE_SIGNUP": True})


def test_openai_connection(fake: FakeWebUI, webui: WebUI) -> None:
    result = webui.set_openai_config({
        "OPENAI_API_BASE_URLS": ["http://127.0.0.1:9/v1"], "OPENAI_API_KEYS": ["sk-test"],
        "OPENAI_API_CONFIGS": {"0": {"enable": True, "prefix_id": "", "tags": []}}})
    form = posted(fake, "/openai/config/update")
    # ENABLE_OPENAI_API is sent although unchanged: an absent one is stored as null.
    assert form["ENABLE_OPENAI_API"] is True
    assert result == webui.get_openai_config() == {
        "ENABLE_OPENAI_API": True, "OPENAI_API_BASE_URLS": ["http://127.0.0.1:9/v1"],
        "OPENAI_API_KEYS": ["sk-test"],
        "OPENAI_API_CONFIGS": {"0": {"enable": True, "prefix_id": "", "tags": []}}}


def test_a_connection_config_keyed_by_url_is_dropped_loudly(fake: FakeWebUI,
                                                            webui: WebUI) -> None:
    with pytest.raises(WebUIError, match=r"dropped http://127\.0\.0\.1:9/v1 from its OpenAI"):
        webui.set_openai_config({"OPENAI_API_BASE_URLS": ["http://127.0.0.1:9/v1"],
                                 "OPENAI_API_CONFIGS": {"http://127.0.0.1:9/v1": {}}})


def test_keys_never_appear_in_messages(fake: FakeWebUI, webui: WebUI) -> None:
    # Two URLs and three keys: update_config truncates the keys to the URLs.
    with pytest.raises(WebUIError) as caught:
        webui.set_openai_config({"OPENAI_API_BASE_URLS": ["http://a/v1", "http://b/v1"],
                                 "OPENAI_API_KEYS": ["sk-a", "sk-b", "sk-c"]})
    assert "OPENAI_API_KEYS" in str(caught.value)
    assert "sk-" not in str(caught.value)


def test_ollama_connection(fake: FakeWebUI, webui: WebUI) -> None:
    result = webui.set_ollama_config({"OLLAMA_BASE_URLS": ["http://ollama:11434",
                                                          "http://gpu2:11434"]})
    assert posted(fake, "/ollama/config/update") == {
        "ENABLE_OLLAMA_API": True, "OLLAMA_API_CONFIGS": {},
        "OLLAMA_BASE_URLS": ["http://ollama:11434", "http://gpu2:11434"]}
    assert result["OLLAMA_BASE_URLS"][1] == "http://gpu2:11434"


def test_audio_merges_inside_sections_and_leaves_realtime_alone(fake: FakeWebUI,
                                                                 webui: WebUI) -> None:
    fake.audio["tts"]["VOICE"] = "nova"  # chosen by hand; kept
    result = webui.set_audio_config({"stt": {"ENGINE": "", "WHISPER_MODEL": "small"},
                                     "tts": {"ENGINE": ""}})
    form = posted(fake, "/api/v1/audio/config/update")
    assert set(form) == {"tts", "stt"}  # realtime is optional and kept when absent
    assert form["stt"] == {**STT, "WHISPER_MODEL": "small"}
    assert form["tts"] == {**TTS, "VOICE": "nova"}
    assert result == webui.get_audio_config()
    post = next(r for r in fake.requests if r.url.path == "/api/v1/audio/config/update")
    # engine "" makes the server load (or download) faster-whisper inside the request
    assert post.extensions["timeout"]["read"] == MODEL_LOAD_TIMEOUT


def test_a_whisper_model_that_cannot_load_is_saved_settings_and_a_clear_error(
        fake: FakeWebUI, webui: WebUI) -> None:
    fake.whisper_cached = False
    with pytest.raises(WhisperUnavailable) as caught:
        webui.set_audio_config({"tts": {"ENGINE": ""}})  # any update loads the local Whisper
    assert str(caught.value) == (
        "Open WebUI saved the voice settings but could not load its local Whisper model 'base' "
        "(it fetches it from Hugging Face when not cached), so speech-to-text fails until the "
        "model can be downloaded.")
    assert caught.value.status == 500
    assert caught.value.config == webui.get_audio_config()
    # with STT through an endpoint nothing is loaded
    webui.set_audio_config({"stt": {"ENGINE": "openai"}})


def test_a_500_without_local_whisper_stays_a_plain_error(fake: FakeWebUI, webui: WebUI) -> None:
    fake.fail["/api/v1/audio/config/update"] = httpx.Response(500, text="Internal Server Error")
    fake.audio["stt"]["ENGINE"] = "openai"
    with pytest.raises(WebUIError) as caught:
        webui.set_audio_config({"tts": {"VOICE": "nova"}})
    assert type(caught.value) is WebUIError
    assert str(caught.value) == ("Open WebUI could not save the voice settings: Internal Server "
                                 "Error (HTTP 500).")


def test_tts_through_an_openai_compatible_endpoint(fake: FakeWebUI, webui: WebUI) -> None:
    webui.set_audio_config({"tts": {"ENGINE": "openai", "OPENAI_API_BASE_URL": "http://tts:8000/v1",
                                    "OPENAI_API_KEY": "sk-tts", "MODEL": "kokoro",
                                    "VOICE": "af_heart"}})
    assert fake.audio["tts"]["ENGINE"] == "openai"
    assert fake.audio["tts"]["OPENAI_API_KEY"] == "sk-tts"
    assert fake.audio["stt"] == STT


def test_embedding_normalises_the_get_shape(fake: FakeWebUI, webui: WebUI) -> None:
    current = webui.get_embedding_config()
    assert "status" not in current
    result = webui.set_embedding_config({
        "RAG_EMBEDDING_ENGINE": "ollama", "RAG_EMBEDDING_MODEL": " nomic-embed-text:v1.5 ",
        "ollama_config": {"url": "http://ollama:11434/"}})
    form = posted(fake, "/api/v1/retrieval/embedding/update")
    assert form["RAG_EMBEDDING_MODEL"] == "nomic-embed-text:v1.5"
    assert form["ollama_config"] == {"url": "http://ollama:11434/", "key": ""}  # key kept
    assert form["openai_config"] == current["openai_config"]
    assert "status" not in result
    assert result == webui.get_embedding_config()


def test_an_embedding_url_for_another_engine_is_not_kept(fake: FakeWebUI, webui: WebUI) -> None:
    # update_embedding_config stores ollama_config only when the engine is ollama
    with pytest.raises(WebUIError, match="did not keep url in its embedding settings "
                                         "ollama_config"):
        webui.set_embedding_config({"ollama_config": {"url": "http://elsewhere:11434"}})


def test_default_models_accept_a_list_and_keep_the_metadata(fake: FakeWebUI,
                                                            webui: WebUI) -> None:
    fake.models["DEFAULT_MODEL_PARAMS"] = {"temperature": 0.4}
    result = webui.set_models_config({"DEFAULT_MODELS": ["phi3:3.8b-mini-4k-instruct-q4_K_M",
                                                          "llama3.1:8b"]})
    form = posted(fake, "/api/v1/configs/models")
    assert form["DEFAULT_MODELS"] == "phi3:3.8b-mini-4k-instruct-q4_K_M,llama3.1:8b"
    # set_models_config stores model_dump(): an absent field would become null
    assert form["DEFAULT_MODEL_METADATA"] == {"capabilities": {}}
    assert form["DEFAULT_MODEL_PARAMS"] == {"temperature": 0.4}
    assert result == webui.get_models_config()


def test_default_permissions_merge_by_section(fake: FakeWebUI, webui: WebUI) -> None:
    result = webui.set_default_permissions({"features": {"memories": False}})
    form = posted(fake, "/api/v1/users/default/permissions")
    assert form["features"] == {"notes": True, "memories": False, "web_search": True}
    assert form["chat"] == PERMISSIONS["chat"]  # "import", the alias, round-trips
    assert result == webui.get_default_permissions()


# --- users ----------------------------------------------------------------------------------


def test_users_add_and_role(fake: FakeWebUI, webui: WebUI) -> None:
    added = webui.add_user("Kai", "Kai@Lanai.home.arpa", "one-time-pw-1", "pending")
    assert posted(fake, "/api/v1/auths/add") == {
        "name": "Kai", "email": "Kai@Lanai.home.arpa", "password": "one-time-pw-1",
        "role": "pending"}
    assert added["email"] == "kai@lanai.home.arpa"
    assert "token" not in added  # the new account's session token is not kept
    updated = webui.update_role(added["id"], "user")
    assert posted(fake, f"/api/v1/users/{added['id']}/update") == {"role": "user"}
    assert updated["role"] == "user"
    assert {u["email"]: u["role"] for u in webui.users()} == {
        ADMIN[0]: "admin", "kai@lanai.home.arpa": "user"}


def test_user_errors(fake: FakeWebUI, webui: WebUI) -> None:
    with pytest.raises(ValueError, match="'owner' is not an Open WebUI role"):
        webui.add_user("Kai", "kai@lanai.home.arpa", "pw", "owner")
    with pytest.raises(WebUIError, match="primary admin"):
        webui.update_role("u-admin", "user")
    with pytest.raises(WebUIError) as caught:
        webui.add_user("Admin", ADMIN[0], "pw", "user")
    assert str(caught.value).startswith(f"Open WebUI could not add the user {ADMIN[0]}: Uh-oh! "
                                        "This email is already registered.")
    assert caught.value.status == 400


# --- errors ---------------------------------------------------------------------------------


def test_a_422_names_the_fields_and_never_echoes_the_form(fake: FakeWebUI, webui: WebUI) -> None:
    fake.fail["/openai/config/update"] = missing({"OPENAI_API_KEYS"}, {"OPENAI_API_KEYS":
                                                                      ["sk-secret"]})
    with pytest.raises(WebUIError) as caught:
        webui.set_openai_config({"ENABLE_OPENAI_API": False})
    assert str(caught.value) == ("Open WebUI rejected the form to save the OpenAI connections: "
                                 "OPENAI_API_KEYS: Field required.")
    assert "sk-secret" not in str(caught.value)


def test_server_errors_and_odd_answers(fake: FakeWebUI, webui: WebUI) -> None:
    fake.fail["/api/v1/retrieval/embedding/update"] = detail(
        500, "[ERROR: Error updating embedding configuration]")
    with pytest.raises(WebUIError) as caught:
        webui.set_embedding_config({"RAG_EMBEDDING_ENGINE": "ollama"})
    assert str(caught.value) == ("Open WebUI could not save the embedding settings: [ERROR: "
                                 "Error updating embedding configuration] (HTTP 500).")
    fake.fail["/ollama/config"] = httpx.Response(200, text="<html>proxy login</html>")
    with pytest.raises(WebUIError, match="with something other than JSON"):
        webui.get_ollama_config()
    fake.fail["/api/v1/configs/models"] = httpx.Response(404, json={"detail": "Not Found"})
    with pytest.raises(WebUIError, match=r"has no /api/v1/configs/models .*version 0\.12\.4"):
        webui.get_models_config()


class DropsOnce:
    """The first request meets a connection Uvicorn closed after a 500 (a stale keep-alive)."""

    def __init__(self, fake: FakeWebUI) -> None:
        self.fake, self.dropped = fake, 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path != "/api/v1/auths/signin" and not self.dropped:
            self.dropped += 1
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.",
                                            request=request)
        return self.fake(request)


def test_a_dropped_keep_alive_connection_is_retried_once(fake: FakeWebUI) -> None:
    drops = DropsOnce(fake)
    with WebUI(BASE, transport=httpx.MockTransport(drops)) as client:
        client.signin(*ADMIN)
        assert client.get_models_config()["DEFAULT_MODELS"] is None
    assert drops.dropped == 1


def test_adding_a_user_is_never_sent_twice(fake: FakeWebUI) -> None:
    drops = DropsOnce(fake)
    with WebUI(BASE, transport=httpx.MockTransport(drops)) as client:
        client.signin(*ADMIN)
        with pytest.raises(WebUIUnreachable) as caught:
            client.add_user("Kai", "kai@lanai.home.arpa", "pw-1", "user")
    assert str(caught.value) == (
        f"Open WebUI at {BASE} could not be reached to add the user kai@lanai.home.arpa "
        "(RemoteProtocolError: Server disconnected without sending a response).")
    assert [u["email"] for u in fake.users] == [ADMIN[0]]


@pytest.mark.parametrize(("error", "expected"), [
    (httpx.ConnectError("[Errno 111] Connection refused"), "could not be reached to sign in"),
    (httpx.ReadTimeout("timed out"), "did not answer in time when lanai tried to sign in"),
])
def test_nothing_answering_is_the_transient_kind(error: Exception, expected: str) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise error

    with WebUI(BASE, transport=httpx.MockTransport(fail)) as client, \
            pytest.raises(WebUIUnreachable, match=expected):
        client.signin(*ADMIN)


# --- documents and knowledge bases ----------------------------------------------------------


def requests_to(fake: FakeWebUI, path: str) -> list[httpx.Request]:
    return [r for r in fake.requests if r.url.path == path]


def processed(webui: WebUI, name: str, text: bytes = b"# Pasta\n\nBoil water.\n") -> str:
    file_id = webui.upload_file(name, text, content_type="text/markdown")["id"]
    webui.wait_processed(file_id, interval=0)
    return file_id


def test_upload_is_multipart_and_processing_is_polled(fake: FakeWebUI, webui: WebUI) -> None:
    record = webui.upload_file("pasta.md", b"# Pasta\n", content_type="text/markdown")
    (upload,) = requests_to(fake, "/api/v1/files/")
    # files.upload_file: UploadFile `file`, `process` a query parameter
    assert upload.url.params["process"] == "true"
    assert upload.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert b'name="file"; filename="pasta.md"\r\nContent-Type: text/markdown' in upload.content
    assert "status" not in record  # the bare `status: true` beside the record is dropped
    assert record["data"] == {"status": "pending"}
    assert record["meta"]["file_hash"] == hashlib.sha256(b"# Pasta\n").hexdigest()

    assert webui.file_status(record["id"]) == "processing"
    webui.wait_processed(record["id"], interval=0)
    assert webui.file_status(record["id"]) == "completed"
    assert webui.file(record["id"])["hash"] == record["meta"]["file_hash"]


def test_a_failed_processing_is_the_servers_reason(fake: FakeWebUI, webui: WebUI) -> None:
    record = webui.upload_file("photo.png", b"\x89PNG", content_type="image/png")
    with pytest.raises(WebUIError) as caught:
        webui.wait_processed(record["id"], interval=0)
    assert str(caught.value) == ("Open WebUI could not process the file photo.png: File type "
                                 "image/png is not supported for processing.")


def test_an_unprocessed_upload_stays_pending(fake: FakeWebUI, webui: WebUI) -> None:
    record = webui.upload_file("notes.txt", b"notes", process=False)
    assert requests_to(fake, "/api/v1/files/")[0].url.params["process"] == "false"
    assert record["data"] == {}
    assert webui.file_status(record["id"]) == "pending"  # no data.status: "pending" for ever
    with pytest.raises(WebUIError, match=r"had not processed file file-1 after 0 s \(it is "
                                         r"pending\)"):
        webui.wait_processed(record["id"], timeout=0, interval=0)


def test_missing_ids_are_named_whatever_the_status(fake: FakeWebUI, webui: WebUI) -> None:
    # the same NOT_FOUND detail comes with 404 (files), 400 (knowledge), 401 (models)
    with pytest.raises(WebUIError, match=r"^Open WebUI has no file f-gone\.$") as caught:
        webui.delete_file("f-gone")
    assert caught.value.status == 404
    with pytest.raises(WebUIError, match=r"^Open WebUI has no knowledge base kb-gone\.$"):
        webui.update_knowledge("kb-gone", name="x", description="")
    with pytest.raises(WebUIError, match=r"^Open WebUI has no model gone\.$") as caught:
        webui.delete_model("gone")
    assert caught.value.status == 401  # not a session problem
    assert webui.model("gone") is None


def test_knowledge_base_lifecycle(fake: FakeWebUI, webui: WebUI) -> None:
    kb = webui.create_knowledge("Recipes", "Family recipes")
    # knowledge.create_new_knowledge: KnowledgeForm; the grant makes it readable by users
    assert posted(fake, "/api/v1/knowledge/create") == {
        "name": "Recipes", "description": "Family recipes", "access_grants": [PUBLIC_READ]}
    assert is_public(kb)
    create = requests_to(fake, "/api/v1/knowledge/create")[0]
    assert create.extensions["timeout"]["read"] == EMBED_TIMEOUT  # it embeds the name

    pasta, soup = processed(webui, "pasta.md"), processed(webui, "soup.md", b"Simmer.")
    answer = webui.add_file_to_knowledge(kb["id"], pasta)
    assert posted(fake, f"/api/v1/knowledge/{kb['id']}/file/add") == {"file_id": pasta}
    assert [f["id"] for f in answer["files"]] == [pasta]
    webui.add_file_to_knowledge(kb["id"], soup)
    assert fake.workspace.vectors[kb["id"]] == [pasta, soup]

    listed = webui.knowledge_bases()
    assert [(k["name"], k["file_count"]) for k in listed] == [("Recipes", 2)]
    full = webui.knowledge(kb["id"])
    assert [(f["id"], f["filename"]) for f in full["files"]] == [(pasta, "pasta.md"),
                                                                 (soup, "soup.md")]
    (files,) = requests_to(fake, f"/api/v1/knowledge/{kb['id']}/files")
    assert files.url.params["limit"] == "100"

    answer = webui.remove_file_from_knowledge(kb["id"], soup)
    remove = requests_to(fake, f"/api/v1/knowledge/{kb['id']}/file/remove")[0]
    assert json.loads(remove.content) == {"file_id": soup}
    assert remove.url.params["delete_file"] == "true"
    assert [f["id"] for f in answer["files"]] == [pasta]
    assert fake.workspace.vectors[kb["id"]] == [pasta]  # its vectors left the collection
    assert soup not in fake.workspace.files  # and the file itself went (the default)

    renamed = webui.update_knowledge(kb["id"], name="Cooking", description="What we cook")
    assert posted(fake, f"/api/v1/knowledge/{kb['id']}/update") == {
        "name": "Cooking", "description": "What we cook"}
    assert renamed["name"] == "Cooking" and is_public(renamed)  # grants untouched

    webui.delete_knowledge(kb["id"])
    assert requests_to(fake, f"/api/v1/knowledge/{kb['id']}/delete")[0].method == "DELETE"
    assert webui.knowledge_bases() == []
    assert pasta in fake.workspace.files  # files outlive their knowledge base


def test_a_file_can_be_removed_from_a_knowledge_base_and_kept(fake: FakeWebUI,
                                                              webui: WebUI) -> None:
    kb = webui.create_knowledge("Recipes", "", public=False)
    assert posted(fake, "/api/v1/knowledge/create")["access_grants"] == []
    assert not is_public(kb)
    pasta = processed(webui, "pasta.md")
    webui.add_file_to_knowledge(kb["id"], pasta)
    webui.remove_file_from_knowledge(kb["id"], pasta, delete_file=False)
    assert pasta in fake.workspace.files
    assert fake.workspace.vectors[f"file-{pasta}"] == [pasta]
    assert fake.workspace.vectors[kb["id"]] == []
    webui.set_knowledge_access(kb["id"], [PUBLIC_READ])
    assert posted(fake, f"/api/v1/knowledge/{kb['id']}/access/update") == {
        "access_grants": [PUBLIC_READ]}
    assert is_public(webui.knowledge(kb["id"]))


def test_knowledge_lists_are_read_page_by_page(fake: FakeWebUI, webui: WebUI) -> None:
    for i in range(65):  # get_knowledge_bases: 30 a page whatever is asked
        fake.workspace.create_new_knowledge({"name": f"kb{i:02}", "description": ""})
    names = [k["name"] for k in webui.knowledge_bases()]
    assert names == [f"kb{i:02}" for i in range(65)]
    assert [r.url.params["page"] for r in requests_to(fake, "/api/v1/knowledge/")] == [
        "1", "2", "3"]


def test_adding_a_file_not_processed_yet_is_refused(fake: FakeWebUI, webui: WebUI) -> None:
    kb = webui.create_knowledge("Recipes", "")
    pending = webui.upload_file("pasta.md", b"# Pasta")["id"]
    with pytest.raises(WebUIError) as caught:
        webui.add_file_to_knowledge(kb["id"], pending)
    assert str(caught.value).startswith(f"Open WebUI could not add file {pending} to knowledge "
                                        f"base {kb['id']}: The content provided is empty.")
    with pytest.raises(WebUIError, match=f"has no knowledge base {kb['id']} or file nope"):
        webui.add_file_to_knowledge(kb["id"], "nope")


def test_adding_a_file_is_never_sent_twice(fake: FakeWebUI) -> None:
    drops = DropsOnce(fake)
    with WebUI(BASE, transport=httpx.MockTransport(drops)) as client:
        client.signin(*ADMIN)
        drops.dropped = 1  # let the setup through
        kb = client.create_knowledge("Recipes", "")
        pasta = processed(client, "pasta.md")
        drops.dropped = 0
        with pytest.raises(WebUIUnreachable):
            client.add_file_to_knowledge(kb["id"], pasta)  # embedding twice duplicates chunks
    assert fake.workspace.vectors.get(kb["id"]) is None


def test_dropped_access_grants_are_reported(fake: FakeWebUI, webui: WebUI) -> None:
    kb = webui.create_knowledge("Recipes", "")
    with pytest.raises(WebUIError, match="did not keep the access grants of knowledge base"):
        webui.set_knowledge_access(kb["id"], [{"principal_type": "anyone",
                                               "principal_id": "*", "permission": "read"}])


# --- model presets --------------------------------------------------------------------------


def test_preset_lifecycle(fake: FakeWebUI, webui: WebUI) -> None:
    kb = webui.create_knowledge("Recipes", "Family recipes")
    form = preset_form(model_id="family-cook", name="Family cook", base_model_id=PHI3,
                       system="You cook.", params={}, knowledge=[kb])
    created = webui.create_model(form)
    assert posted(fake, "/api/v1/models/create") == form  # models.create_new_model: ModelForm
    assert is_public(created)
    with pytest.raises(WebUIError) as caught:
        webui.create_model(form)
    assert str(caught.value) == ("Open WebUI already has a model family-cook; update it "
                                 "instead.")
    assert caught.value.status == 401

    # the base model gets a row of its own, readable by users, so the preset answers them
    base = webui.set_model_access(PHI3, [PUBLIC_READ])
    assert posted(fake, "/api/v1/models/model/access/update") == {
        "id": PHI3, "name": PHI3, "access_grants": [PUBLIC_READ]}
    assert base["base_model_id"] is None and is_public(base)
    assert [m["id"] for m in webui.models()] == ["family-cook"]  # presets only

    private = preset_form(model_id="family-cook", name="Cook", base_model_id=PHI3,
                          system="You cook well.", params={}, knowledge=[], public=False)
    updated = webui.update_model("family-cook", private)
    update_body = posted(fake, "/api/v1/models/model/update")
    assert "access_grants" not in update_body  # update_model_by_id would ignore them
    assert update_body["params"] == {"system": "You cook well."}
    assert not is_public(updated)  # applied through the access route instead
    assert webui.model("family-cook")["name"] == "Cook"

    names = [m["id"] for m in webui.user_visible_models()]
    assert names == [PHI3, "nomic-embed-text:v1.5", "family-cook"]
    webui.delete_model("family-cook")
    assert posted(fake, "/api/v1/models/model/delete") == {"id": "family-cook"}
    assert webui.models() == []


def test_a_user_session_is_allowed_when_asked_for(fake: FakeWebUI) -> None:
    fake.next_signin = httpx.Response(200, json={"token": TOKEN, "token_type": "Bearer",
                                                 "role": "user"})
    with WebUI(BASE, transport=httpx.MockTransport(fake)) as client:
        client.signin("kai@lanai.home.arpa", "pw", admin=False)
        assert client.user_visible_models()
    fake.next_signin = detail(400, "The email or password provided is incorrect.")
    with WebUI(BASE, transport=httpx.MockTransport(fake)) as client, \
            pytest.raises(WebUIError) as caught:
        client.signin("kai@lanai.home.arpa", "stale", admin=False)
    assert str(caught.value) == ("Open WebUI refused the sign-in of kai@lanai.home.arpa: wrong "
                                 "email or password.")


def test_an_admin_only_route_refused_to_a_user_says_so(fake: FakeWebUI, webui: WebUI) -> None:
    # utils/auth.get_admin_user: 401 with ACCESS_PROHIBITED, for a session that is valid
    fake.fail["/api/v1/models/all"] = detail(401, "You do not have permission to access this "
                                                  "resource. Please contact your administrator "
                                                  "for assistance.")
    with pytest.raises(WebUIError) as caught:
        webui.models()
    assert str(caught.value) == ("Open WebUI does not let this account list the workspace "
                                 "models.")
