"""The schema of `webui.yaml`: what the family sees in Open WebUI, kept in git.

Open WebUI stores its settings in its database after the first start, so environment
variables cannot manage them; lanai converges these through Open WebUI's admin API.
Secrets (API keys) are named here and read from the server's secrets file.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from reconciler.desired.lanai_yaml import SECRET_NAME, Strict

WEBUI_FILE = "webui.yaml"
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
AREAS = ("signup", "memories", "default_model", "connections", "voice", "rag")
Area = Literal["signup", "memories", "default_model", "connections", "voice", "rag"]


class OpenAIConnection(Strict):
    name: str = Field(description="A label for you; lanai matches connections by URL.")
    url: str = Field(description="The OpenAI-compatible base URL, e.g. "
                     "https://openrouter.ai/api/v1.")
    key: str = Field(description="The NAME of the secret holding the API key (lanai secrets "
                     "set NAME); never the key itself.")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("the URL must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        if not SECRET_NAME.match(value):
            raise ValueError("name the secret that holds the key (A-Z, 0-9, _), e.g. "
                             "OPENROUTER_API_KEY; the key itself goes in the server's secrets "
                             "file")
        return value


class Connections(Strict):
    ollama: list[str] = Field(
        default_factory=lambda: ["http://ollama:11434"],
        description="Ollama base URLs Open WebUI uses (the stack's own, internal one first).")
    openai: list[OpenAIConnection] = Field(
        default_factory=list, description="OpenAI-compatible cloud providers (OpenAI, "
        "OpenRouter, DeepSeek, Groq, ...). Empty: the OpenAI API is turned off.")


class SpeechToText(Strict):
    engine: Literal["local", "openai"] = Field(
        "local", description="local: Open WebUI's own Whisper; openai: an OpenAI-compatible "
        "endpoint.")
    model: str = Field("base", description="The Whisper model size (local), or the model name.")
    url: str | None = None
    key: str | None = Field(None, description="Secret name of the endpoint's key.")


class TextToSpeech(Strict):
    engine: Literal["browser", "openai"] = Field(
        "browser", description="browser: the device's own voices; openai: an OpenAI-compatible "
        "endpoint.")
    model: str | None = None
    voice: str | None = None
    url: str | None = None
    key: str | None = Field(None, description="Secret name of the endpoint's key.")


class Voice(Strict):
    stt: SpeechToText = Field(default_factory=SpeechToText)
    tts: TextToSpeech = Field(default_factory=TextToSpeech)

    @model_validator(mode="after")
    def _endpoints(self) -> Voice:
        for part, cfg in (("stt", self.stt), ("tts", self.tts)):
            if cfg.engine == "openai" and not (cfg.url and cfg.key):
                raise ValueError(f"{part}: the openai engine needs url and key (a secret name)")
        return self


class Rag(Strict):
    embedding_model: str = Field(
        "nomic-embed-text:v1.5", description="The Ollama embedding model (declare it in "
        "models.yaml): embeddings run on the GPU and nothing is downloaded at first start.")


class User(Strict):
    name: str
    email: str
    role: Literal["user", "admin"] = "user"

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        if not EMAIL.match(value):
            raise ValueError(f"{value!r} is not an email address")
        return value.lower()


class KnowledgeBase(Strict):
    name: str = Field(description="The knowledge base's name in Open WebUI (unique).")
    description: str = ""
    files: list[str] = Field(
        description="Documents in the state repo: paths or glob patterns relative to the repo "
        "(e.g. docs/recipes/*.md). Synced by content: new and changed files are uploaded, "
        "removed ones removed, unchanged ones left alone.")

    @field_validator("files")
    @classmethod
    def _relative(cls, value: list[str]) -> list[str]:
        for pattern in value:
            if pattern.startswith("/") or ".." in pattern.split("/"):
                raise ValueError(f"{pattern!r} must be a path inside the state repo")
        if not value:
            raise ValueError("list at least one file")
        return value


class Preset(Strict):
    id: str = Field(description="A stable id (lowercase, digits, '-'): renaming it makes a new "
                    "preset.")
    name: str = Field(description="What the family sees in the model list.")
    base_model: str = Field(description="The model that answers: local (from models.yaml) or a "
                            "cloud model id.")
    system: str | None = Field(None, description="The system prompt.")
    params: dict[str, float | int | str | bool] = Field(
        default_factory=dict, description="Model parameters, e.g. temperature: 0.3.")
    knowledge: list[str] = Field(
        default_factory=list, description="Names of knowledge bases (above) the preset uses.")
    description: str | None = None

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not re.match(r"^[a-z0-9][a-z0-9-]*$", value):
            raise ValueError("use lowercase letters, digits and '-', e.g. family-helper")
        return value


class WebUIConfig(Strict):
    service: str = Field("open-webui", description="The compose service running Open WebUI.")
    signup: Literal["closed", "pending", "open"] = Field(
        "closed", description="closed: only the admin adds accounts; pending: anyone on the "
        "LAN may sign up and waits for approval; open: sign-ups are users at once.")
    default_model: str | None = Field(
        None, description="The model a new chat starts with (local or cloud).")
    connections: Connections = Field(default_factory=Connections)
    voice: Voice = Field(default_factory=Voice)
    rag: Rag = Field(default_factory=Rag)
    knowledge: list[KnowledgeBase] = Field(
        default_factory=list, description="Knowledge bases with their documents, kept in git.")
    presets: list[Preset] = Field(
        default_factory=list, description="Model presets: a base model, a system prompt, "
        "parameters and knowledge, the same whichever model answers.")
    model_access: dict[str, Literal["everyone"] | list[str]] = Field(
        default_factory=dict, description="Who may use which model (local or cloud id): "
        "everyone, or a list of account emails. Admins may use every model; a family member "
        "sees only the models listed for them (and presets, with their base models).")
    users: list[User] = Field(
        default_factory=list, description="Family accounts, created with a one-time password "
        "that `lanai users` shows on the server.")
    memories: bool = Field(
        True, description="Open WebUI's memories: what a user told one model is known to the "
        "next, local or cloud.")
    managed: list[Area] = Field(
        default_factory=lambda: list(AREAS), description="Settings lanai overwrites when they "
        "were changed by hand in the admin UI; the others are only reported by `lanai drift`.")

    @model_validator(mode="after")
    def _references(self) -> WebUIConfig:
        names = [k.name for k in self.knowledge]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"knowledge base {', '.join(twice)} listed more than once")
        ids = [p.id for p in self.presets]
        if len(set(ids)) != len(ids):
            raise ValueError("a preset id is listed more than once")
        for preset in self.presets:
            unknown = sorted(set(preset.knowledge) - set(names))
            if unknown:
                raise ValueError(f"preset {preset.id} uses knowledge {', '.join(unknown)}, "
                                 "which is not declared under knowledge")
        return self

    @model_validator(mode="after")
    def _access_emails(self) -> WebUIConfig:
        for model, who in self.model_access.items():
            if isinstance(who, list):
                bad = [e for e in who if not EMAIL.match(e)]
                if bad:
                    raise ValueError(f"model_access of {model}: {', '.join(bad)} is not an "
                                     "email address (or write everyone)")
        return self

    @model_validator(mode="after")
    def _unique_users(self) -> WebUIConfig:
        emails = [u.email for u in self.users]
        twice = sorted({e for e in emails if emails.count(e) > 1})
        if twice:
            raise ValueError(f"{', '.join(twice)} listed more than once under users")
        return self

    def secret_names(self) -> set[str]:
        names = {c.key for c in self.connections.openai}
        names |= {k for k in (self.voice.stt.key, self.voice.tts.key) if k}
        return names
