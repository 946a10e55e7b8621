"""What Open WebUI's settings should be, and how they differ from what it has. Pure.

webui.yaml is turned into the admin API's own forms, per settings group:
    auth       /api/v1/auths/admin/config   ENABLE_SIGNUP, DEFAULT_USER_ROLE, ENABLE_MEMORIES
    models     /api/v1/configs/models       DEFAULT_MODELS
    ollama     /ollama/config               ENABLE_OLLAMA_API, OLLAMA_BASE_URLS (swarm mode:
                                            one per server, OLLAMA_API_CONFIGS.<i>.enable)
    openai     /openai/config               ENABLE_OPENAI_API, OPENAI_API_BASE_URLS/_KEYS
    audio      /api/v1/audio/config         stt.{ENGINE, WHISPER_MODEL, ...}, tts.{...}
    embedding  /api/v1/retrieval/embedding  RAG_EMBEDDING_ENGINE, RAG_EMBEDDING_MODEL, ...
A difference is a (group, key path) with the current and wanted value; values of
secret keys never leave this module in clear (they are compared, then shown as <secret>).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from reconciler.desired.models_yaml import ModelsConfig
from reconciler.desired.servers import Server, placement
from reconciler.desired.webui_yaml import WebUIConfig
from reconciler.swarm.stackfile import OLLAMA_PORT, ollama_name

SECRET_KEYS = {"OPENAI_API_KEYS", "OPENAI_API_KEY", "API_KEY", "key"}
REDACTED = "<secret>"


@dataclass(frozen=True)
class Desired:
    """Per area (signup, memories, ...), the groups and nested keys it sets."""

    areas: dict[str, dict[str, dict[str, Any]]]
    problems: list[str]  # what could not be set (a missing secret), one sentence each

    def groups(self, areas: set[str] | None = None) -> dict[str, dict[str, Any]]:
        """The wanted keys per group, for the given areas (all by default)."""
        out: dict[str, dict[str, Any]] = {}
        for area, groups in self.areas.items():
            if areas is not None and area not in areas:
                continue
            for group, keys in groups.items():
                out[group] = _merge(out.get(group, {}), keys)
        return out


@dataclass(frozen=True)
class Change:
    area: str
    group: str
    path: tuple[str, ...]
    current: Any
    wanted: Any

    @property
    def secret(self) -> bool:
        return any(part in SECRET_KEYS for part in self.path)

    @property
    def key(self) -> str:
        return ".".join(self.path)

    def to_json(self) -> dict[str, Any]:
        show = (lambda v: REDACTED if v not in (None, "", []) else v) if self.secret \
            else (lambda v: v)
        return {"area": self.area, "group": self.group, "key": self.key,
                "current": show(self.current), "wanted": show(self.wanted)}

    def __str__(self) -> str:
        data = self.to_json()
        return f"{self.area}: {self.key}: {data['current']!r} -> {data['wanted']!r}"


@dataclass(frozen=True)
class Ollamas:
    """Open WebUI's Ollama connections as lanai generates them in swarm mode: one per
    server, in lanai.yaml's order (the order of OLLAMA_BASE_URLS in the stack file, so a
    connection's index is its server's), each enabled unless its server is down."""

    urls: list[str]
    enabled: list[bool]
    embedding_url: str  # the Ollama that embeds for knowledge bases (rag.embedding_model)


def swarm_ollamas(servers: list[Server], models: ModelsConfig | None, embedding_model: str,
                  down: Collection[str]) -> Ollamas:
    """A down server's connection is disabled: Open WebUI asks every enabled one for its
    models and waits up to 10 s (AIOHTTP_CLIENT_TIMEOUT_MODEL_LIST) for a dead one on every
    model-list refresh. The embedding URL: a server up that holds the embedding model
    (lanai.yaml's order), else one that holds it, else the first Ollama server up."""
    ollama = [s for s in servers if s.runs_ollama]
    urls = [f"http://{ollama_name(s.name)}:{OLLAMA_PORT}" for s in ollama]
    placed = placement([(m.name, m.place) for m in models.local] if models else [], servers)
    holders = [s.name for s in ollama if embedding_model in placed.get(s.name, [])]
    up = [s.name for s in ollama if s.name not in down]
    chosen = next((h for h in holders if h not in down), None) or \
        (holders[0] if holders else None) or (up[0] if up else None) or \
        (ollama[0].name if ollama else None)  # none: lanai validate refused the commit
    return Ollamas(urls=urls, enabled=[s.name not in down for s in ollama],
                   embedding_url=f"http://{ollama_name(chosen)}:{OLLAMA_PORT}" if chosen else "")


def desired(config: WebUIConfig, secrets: dict[str, str], ollama_url: str,
            ollamas: Ollamas | None = None) -> Desired:
    """`ollama_url`: the Ollama that embeds (compose mode); `ollamas`: swarm mode's
    generated connections, which replace webui.yaml's connections.ollama and that URL."""
    problems: list[str] = []
    areas: dict[str, dict[str, dict[str, Any]]] = {}
    areas["signup"] = {"auth": {
        "ENABLE_SIGNUP": config.signup != "closed",
        "DEFAULT_USER_ROLE": "user" if config.signup == "open" else "pending"}}
    areas["memories"] = {"auth": {"ENABLE_MEMORIES": config.memories}}
    if config.default_model:
        areas["default_model"] = {"models": {"DEFAULT_MODELS": config.default_model}}
    urls, keys = [], []
    for connection in config.connections.openai:
        value = secrets.get(connection.key)
        if not value:
            # Not half-configured: a provider without its key is left out, and said so.
            problems.append(f"connection {connection.name} ({connection.url}) needs the secret "
                            f"{connection.key}, which the server does not have; run `lanai "
                            f"secrets set {connection.key}` on the server")
            continue
        urls.append(connection.url)
        keys.append(value)
    connections: dict[str, Any] = {
        "ENABLE_OLLAMA_API": bool(config.connections.ollama),
        "OLLAMA_BASE_URLS": list(config.connections.ollama)}
    if ollamas is not None:
        # Keyed by index as a string: Open WebUI drops other keys (routers/ollama.py).
        connections = {"ENABLE_OLLAMA_API": bool(ollamas.urls),
                       "OLLAMA_BASE_URLS": ollamas.urls,
                       "OLLAMA_API_CONFIGS": {str(i): {"enable": on}
                                              for i, on in enumerate(ollamas.enabled)}}
        ollama_url = ollamas.embedding_url
    areas["connections"] = {
        "ollama": connections,
        "openai": {"ENABLE_OPENAI_API": bool(urls), "OPENAI_API_BASE_URLS": urls,
                   "OPENAI_API_KEYS": keys}}
    stt, tts = config.voice.stt, config.voice.tts
    stt_keys: dict[str, Any] = ({"ENGINE": "", "WHISPER_MODEL": stt.model} if stt.engine == "local"
                                else {"ENGINE": "openai", "MODEL": stt.model,
                                      "OPENAI_API_BASE_URL": stt.url,
                                      "OPENAI_API_KEY": _secret(stt.key, secrets, "stt",
                                                                problems)})
    tts_keys: dict[str, Any] = ({"ENGINE": ""} if tts.engine == "browser"
                                else {"ENGINE": "openai", "MODEL": tts.model or "tts-1",
                                      "VOICE": tts.voice or "alloy",
                                      "OPENAI_API_BASE_URL": tts.url,
                                      "OPENAI_API_KEY": _secret(tts.key, secrets, "tts",
                                                                problems)})
    areas["voice"] = {"audio": {"stt": stt_keys, "tts": tts_keys}}
    areas["rag"] = {"embedding": {
        "RAG_EMBEDDING_ENGINE": "ollama", "RAG_EMBEDDING_MODEL": config.rag.embedding_model,
        "ollama_config": {"url": ollama_url}}}
    return Desired(areas=areas, problems=problems)


def follows_servers(change: Change) -> bool:
    """In swarm mode, whether a change only follows a server going down or coming back (a
    connection's enable, the embedding URL): lanai writes it at once, whatever `managed`
    says, and it is no drift (nobody changed it by hand)."""
    return (change.group == "ollama" and change.path[0] == "OLLAMA_API_CONFIGS"
            and change.path[-1] == "enable") or \
        (change.group == "embedding" and change.path == ("ollama_config", "url"))


def _secret(name: str | None, secrets: dict[str, str], part: str, problems: list[str]) -> str:
    value = secrets.get(name or "", "")
    if not value:
        problems.append(f"voice {part} needs the secret {name}, which the server does not have; "
                        f"run `lanai secrets set {name}` on the server")
    return value


def changes(want: Desired, current: dict[str, dict[str, Any]]) -> list[Change]:
    """Every wanted key whose current value differs, area by area."""
    out: list[Change] = []
    for area, groups in want.areas.items():
        for group, keys in groups.items():
            for path, wanted in _leaves(keys):
                have = _get(current.get(group, {}), path)
                if _normal(have) != _normal(wanted):
                    out.append(Change(area, group, path, have, wanted))
    return out


def _leaves(tree: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...],
                                                                             Any]]:
    out = []
    for key, value in tree.items():
        if isinstance(value, dict):
            out += _leaves(value, (*prefix, key))
        else:
            out.append(((*prefix, key), value))
    return out


def _get(tree: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        if not isinstance(tree, dict):
            return None
        tree = tree.get(part)
    return tree


def _normal(value: Any) -> Any:
    """Open WebUI stores some strings with trailing slashes or as None for empty."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value.rstrip("/")
    if isinstance(value, list):
        return [_normal(v) for v in value]
    return value


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(
            out.get(key), dict) else value
    return out


def updates(pending: list[Change]) -> dict[str, dict[str, Any]]:
    """The changes as nested partial forms per group, for the client's setters."""
    out: dict[str, dict[str, Any]] = {}
    for change in pending:
        node = out.setdefault(change.group, {})
        for part in change.path[:-1]:
            node = node.setdefault(part, {})
        node[change.path[-1]] = change.wanted
    return out
