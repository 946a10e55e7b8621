"""The forms lanai posts to Open WebUI 0.12.4's admin API, and the checks on its answers.

The field tables are copied from the pydantic forms of the pinned version (the
POST bodies); :func:`merge_form` lays changes over the current values so a setter
posts the whole form back, and :func:`check_kept` compares the answer with what
was sent, because Open WebUI silently ignores some values. :func:`preset_form`
shapes a model preset as the model editor sends it; :data:`PUBLIC_READ` and
:func:`is_public` are the access grant that lets every signed-in user read a
knowledge base or a model. No function here talks to Open WebUI
(reconciler.webui.api does).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from reconciler.webui.errors import WebUIError

ROLES = ("pending", "user", "admin")

# Form fields, copied from the pydantic forms of 0.12.4 (the POST bodies).
MFA_FIELDS = ("ENABLE_MFA", "MFA_ALLOW_OAUTH_BYPASS", "MFA_ALLOW_TRUSTED_HEADER_BYPASS")
AUTH_FIELDS = (  # routers/auths.py AdminConfig(MfaConfigForm)
    *MFA_FIELDS, "SHOW_ADMIN_DETAILS", "ADMIN_EMAIL", "WEBUI_URL", "ENABLE_LOGIN_FORM",
    "ENABLE_SIGNUP", "ENABLE_API_KEYS", "ENABLE_API_KEYS_ENDPOINT_RESTRICTIONS",
    "API_KEYS_ALLOWED_ENDPOINTS", "DEFAULT_USER_ROLE", "DEFAULT_GROUP_ID",
    "DEFAULT_INTERFACE_SETTINGS", "I18N", "JWT_EXPIRES_IN", "ENABLE_COMMUNITY_SHARING",
    "ENABLE_MESSAGE_RATING", "ENABLE_FOLDERS", "FOLDER_MAX_FILE_COUNT", "AUTOMATION_MAX_COUNT",
    "AUTOMATION_MIN_INTERVAL", "ENABLE_AUTOMATIONS", "ENABLE_CHANNELS",
    "ENABLE_ENCRYPTED_CHANNELS", "ENABLE_APPS", "CHANNEL_MODEL_RESPONSE_MODE", "ENABLE_CALENDAR",
    "ENABLE_MEMORIES", "ENABLE_MEMORY_SYSTEM_CONTEXT", "ENABLE_SKILL_LAZY_LOADING",
    "SKILL_CONTENT_MAX_CHARS", "SKILL_PREVIEW_MAX_CHARS", "ENABLE_NOTES", "ENABLE_USER_WEBHOOKS",
    "ENABLE_USER_STATUS", "PENDING_USER_OVERLAY_TITLE", "PENDING_USER_OVERLAY_CONTENT",
    "RESPONSE_WATERMARK",
)
MEMORIES_FIELDS = ("ENABLE_MEMORIES", "ENABLE_MEMORY_SYSTEM_CONTEXT")
OPENAI_FIELDS = (  # routers/openai.py OpenAIConfigForm
    "ENABLE_OPENAI_API", "OPENAI_API_BASE_URLS", "OPENAI_API_KEYS", "OPENAI_API_CONFIGS")
OLLAMA_FIELDS = ("ENABLE_OLLAMA_API", "OLLAMA_BASE_URLS", "OLLAMA_API_CONFIGS")  # OllamaConfigForm
TTS_FIELDS = (  # routers/audio/__init__.py TTSConfigForm
    "OPENAI_API_BASE_URL", "OPENAI_API_KEY", "OPENAI_PARAMS", "API_KEY", "ENGINE", "MODEL",
    "VOICE", "REALTIME_TTS_PROMPT_TEMPLATE", "SPLIT_ON", "AZURE_SPEECH_REGION",
    "AZURE_SPEECH_BASE_URL", "AZURE_SPEECH_OUTPUT_FORMAT", "MISTRAL_API_KEY",
    "MISTRAL_API_BASE_URL",
)
STT_FIELDS = (  # STTConfigForm
    "OPENAI_API_BASE_URL", "OPENAI_API_KEY", "OPENAI_API_REQUEST_FORMAT", "ENGINE", "MODEL",
    "SUPPORTED_CONTENT_TYPES", "ALLOWED_EXTENSIONS", "WHISPER_MODEL", "DEEPGRAM_API_KEY",
    "AZURE_API_KEY", "AZURE_REGION", "AZURE_LOCALES", "AZURE_BASE_URL", "AZURE_MAX_SPEAKERS",
    "MISTRAL_API_KEY", "MISTRAL_API_BASE_URL", "MISTRAL_USE_CHAT_COMPLETIONS",
)
REALTIME_FIELDS = (  # RealtimeConfigForm
    "ENABLED", "PROVIDER", "AUTH_TYPE", "OPENAI_API_BASE_URL", "OPENAI_API_KEY", "MODEL", "VOICE",
    "TRANSCRIPTION_MODEL", "INPUT_PARAMS", "REALTIME_CALL_PROMPT_TEMPLATE",
)
AUDIO_SECTIONS = {"tts": TTS_FIELDS, "stt": STT_FIELDS, "realtime": REALTIME_FIELDS}
EMBEDDING_FIELDS = (  # routers/retrieval.py EmbeddingModelUpdateForm
    "RAG_EMBEDDING_ENGINE", "RAG_EMBEDDING_MODEL", "RAG_EMBEDDING_BATCH_SIZE",
    "ENABLE_ASYNC_EMBEDDING", "RAG_EMBEDDING_CONCURRENT_REQUESTS",
    "openai_config", "ollama_config", "azure_openai_config",
)
EMBEDDING_NESTED = ("openai_config", "ollama_config", "azure_openai_config")
MODELS_FIELDS = (  # routers/configs.py ModelsConfigForm
    "DEFAULT_MODELS", "DEFAULT_PINNED_MODELS", "MODEL_ORDER_LIST", "DEFAULT_MODEL_METADATA",
    "DEFAULT_MODEL_PARAMS",
)
PERMISSION_SECTIONS = (  # routers/users.py UserPermissions
    "workspace", "sharing", "access_grants", "chat", "features", "settings")

# The grant that makes a knowledge base or a model readable by every signed-in user
# (models/access_grants.py: principal "user" with the wildcard id). "anyone" would
# be without sign-in, which 0.12.4 refuses for models and knowledge.
PUBLIC_READ: dict[str, str] = {"principal_type": "user", "principal_id": "*",
                               "permission": "read"}
# Keys of a knowledge reference in a model's meta.knowledge, as the model editor
# keeps them (ModelEditor.svelte toModelKnowledgeReference).
KNOWLEDGE_REF_KEYS = ("id", "name", "type", "description")

# Values never put in a message (no log prints a secret).
_SECRET_MARKERS = ("KEY", "PASSWORD", "TOKEN", "SECRET", "AUTH")


def preset_form(*, model_id: str, name: str, base_model_id: str, system: str | None,
                params: Mapping[str, Any], knowledge: Sequence[Mapping[str, Any]],
                description: str | None = None, public: bool = True) -> dict[str, Any]:
    """The ModelForm of a preset, shaped as the model editor sends it (createNewModel).

    ``system`` goes to ``params.system`` (a blank one is left out, as the editor does);
    ``knowledge`` are knowledge bases as `WebUI.knowledge_bases` returns them, attached
    as ``meta.knowledge`` references ``{"id", "name", "type": "collection",
    "description"}``. With knowledge, ``params.function_calling`` is "legacy" unless
    ``params`` says otherwise: 0.12.4's default ("native") reaches attached knowledge
    only through a tool the model must call, which models without tool calling (phi3)
    never do; legacy retrieves before every answer. ``public`` adds :data:`PUBLIC_READ`
    (an editor-made preset is private); the base model needs it too (see
    `WebUI.set_model_access`).
    """
    merged = {k: v for k, v in params.items() if v is not None and v != ""}
    if system is not None:
        if system.strip():
            merged["system"] = system
        else:
            merged.pop("system", None)
    refs = [_knowledge_ref(k) for k in knowledge]
    if refs:
        merged.setdefault("function_calling", "legacy")
    meta: dict[str, Any] = {"description": description or None}
    if refs:
        meta["knowledge"] = refs  # the editor drops the key when there is none
    return {"id": model_id, "base_model_id": base_model_id, "name": name, "meta": meta,
            "params": merged, "access_grants": [dict(PUBLIC_READ)] if public else [],
            "is_active": True}


def is_public(record: Mapping[str, Any]) -> bool:
    """Whether a knowledge base or model record grants every user read access."""
    return any(_grant_key(g) == _grant_key(PUBLIC_READ)
               for g in record.get("access_grants") or [] if isinstance(g, Mapping))


def _knowledge_ref(base: Mapping[str, Any]) -> dict[str, Any]:
    if not base.get("id") or not base.get("name"):
        raise ValueError("a knowledge base attached to a preset needs its id and name")
    ref = {k: base[k] for k in KNOWLEDGE_REF_KEYS if base.get(k) not in (None, "")}
    ref["type"] = "collection"  # a knowledge base; "file" and "note" are the other kinds
    return ref


def _grant_key(grant: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    return grant.get("principal_type"), grant.get("principal_id"), grant.get("permission")


def check_grants(sent: Iterable[Mapping[str, Any]], answer: Mapping[str, Any],
                 what: str) -> None:
    """Fail when the stored grants differ from those sent (filter_allowed_access_grants
    drops what the account may not share, and malformed grants are dropped silently)."""
    kept = {_grant_key(g) for g in answer.get("access_grants") or [] if isinstance(g, Mapping)}
    if {_grant_key(g) for g in sent} != kept:
        raise WebUIError(f"Open WebUI accepted but did not keep the access grants of {what}.")


def merge_form(current: Mapping[str, Any], changes: Mapping[str, Any], fields: Iterable[str],
               *, nested: Iterable[str] = ()) -> dict[str, Any]:
    """The full form: the current values of the form's fields with `changes` laid over.

    Keys of `nested` hold sub-forms that are merged key by key, so that changing one
    URL keeps the key beside it.
    """
    fields = tuple(fields)
    form = {k: v for k, v in current.items() if k in fields}
    for key, value in changes.items():
        if key in nested and isinstance(value, Mapping):
            form[key] = {**(form.get(key) or {}), **value}
        else:
            form[key] = value
    return form


def check_keys(changes: Mapping[str, Any], fields: Iterable[str], area: str) -> None:
    unknown = sorted(set(changes) - set(fields))
    if unknown:
        raise ValueError(f"Open WebUI 0.12.4 has no {', '.join(unknown)} in its {area}")


def check_kept(changes: Mapping[str, Any], answer: Mapping[str, Any], area: str) -> None:
    """Fail when Open WebUI answered 200 but did not keep a value it was sent."""
    for key, sent in changes.items():
        if key not in answer:  # e.g. a connection config not keyed by index, dropped
            raise WebUIError(f"Open WebUI accepted but dropped {key} from its {area}.")
        kept = answer[key]
        if isinstance(sent, Mapping) and isinstance(kept, Mapping):
            check_kept(sent, kept, f"{area} {key}")
        elif kept != sent:
            raise WebUIError(f"Open WebUI accepted but did not keep {key} in its {area} "
                             f"(sent {_shown(key, sent)}, it kept {_shown(key, kept)}).")


def check_role(role: str) -> None:
    # users.update_user_by_id stores any string as a role; only these three mean anything.
    if role not in ROLES:
        raise ValueError(f"{role!r} is not an Open WebUI role; use one of {', '.join(ROLES)}")


def _shown(key: str, value: Any) -> str:
    if any(marker in key.upper() for marker in _SECRET_MARKERS):
        return "(hidden)"
    return repr(value)
