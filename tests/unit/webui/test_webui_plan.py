"""webui.yaml -> Open WebUI's admin forms, and the settings diff (pure)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from reconciler.desired.webui_yaml import WebUIConfig
from reconciler.webui.plan import REDACTED, changes, desired, updates

OLLAMA = "http://ollama:11434"
FAMILY = """
signup: pending
default_model: llama3.1:8b-instruct-q4_K_M
connections:
  openai:
    - {name: openrouter, url: "https://openrouter.ai/api/v1/", key: OPENROUTER_API_KEY}
voice:
  stt: {engine: local, model: small}
users:
  - {name: Kid, email: Kid@Example.org}
"""


def config(text: str = FAMILY) -> WebUIConfig:
    return WebUIConfig.model_validate(yaml.safe_load(text) or {})


def current_matching(want: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """What Open WebUI would answer once converged, plus settings lanai does not manage."""
    out = {group: {**keys, "UNMANAGED": 1} for group, keys in want.items()}
    return out


def test_webui_yaml_turns_into_the_admin_apis_forms() -> None:
    want = desired(config(), {"OPENROUTER_API_KEY": "sk-or-1"}, OLLAMA)
    assert want.problems == []
    groups = want.groups()
    assert groups["auth"] == {"ENABLE_SIGNUP": True, "DEFAULT_USER_ROLE": "pending",
                              "ENABLE_MEMORIES": True}
    assert groups["models"] == {"DEFAULT_MODELS": "llama3.1:8b-instruct-q4_K_M"}
    assert groups["openai"] == {"ENABLE_OPENAI_API": True,
                                "OPENAI_API_BASE_URLS": ["https://openrouter.ai/api/v1"],
                                "OPENAI_API_KEYS": ["sk-or-1"]}
    assert groups["ollama"] == {"ENABLE_OLLAMA_API": True, "OLLAMA_BASE_URLS": [OLLAMA]}
    assert groups["audio"] == {"stt": {"ENGINE": "", "WHISPER_MODEL": "small"},
                               "tts": {"ENGINE": ""}}
    assert groups["embedding"]["RAG_EMBEDDING_ENGINE"] == "ollama"
    assert groups["embedding"]["RAG_EMBEDDING_MODEL"] == "nomic-embed-text:v1.5"


@pytest.mark.parametrize(("signup", "enabled", "role"), [
    ("closed", False, "pending"), ("pending", True, "pending"), ("open", True, "user")])
def test_the_signup_policy(signup: str, enabled: bool, role: str) -> None:
    auth = desired(config(f"signup: {signup}\n"), {}, OLLAMA).groups()["auth"]
    assert (auth["ENABLE_SIGNUP"], auth["DEFAULT_USER_ROLE"]) == (enabled, role)


def test_a_provider_without_its_key_is_left_out_and_reported() -> None:
    want = desired(config(), {}, OLLAMA)
    assert want.groups()["openai"] == {"ENABLE_OPENAI_API": False, "OPENAI_API_BASE_URLS": [],
                                       "OPENAI_API_KEYS": []}
    assert want.problems == [
        "connection openrouter (https://openrouter.ai/api/v1) needs the secret "
        "OPENROUTER_API_KEY, which the server does not have; run `lanai secrets set "
        "OPENROUTER_API_KEY` on the server"]


def test_converged_settings_make_no_change_and_unmanaged_keys_are_ignored() -> None:
    want = desired(config(), {"OPENROUTER_API_KEY": "sk-or-1"}, OLLAMA)
    assert changes(want, current_matching(want.groups())) == []


def test_a_hand_changed_setting_is_a_change_of_its_area_with_secrets_redacted() -> None:
    want = desired(config(), {"OPENROUTER_API_KEY": "sk-or-1"}, OLLAMA)
    now = current_matching(want.groups())
    now["auth"]["ENABLE_SIGNUP"] = False
    now["openai"]["OPENAI_API_KEYS"] = ["sk-typed-by-hand"]
    found = {c.key: c for c in changes(want, now)}
    assert set(found) == {"ENABLE_SIGNUP", "OPENAI_API_KEYS"}
    assert found["ENABLE_SIGNUP"].area == "signup"
    shown = found["OPENAI_API_KEYS"].to_json()
    assert shown["current"] == shown["wanted"] == REDACTED
    assert "sk-" not in str(found["OPENAI_API_KEYS"])
    assert updates(list(found.values())) == {"auth": {"ENABLE_SIGNUP": True},
                                             "openai": {"OPENAI_API_KEYS": ["sk-or-1"]}}


def test_nested_audio_keys_diff_and_update_by_path() -> None:
    want = desired(config(), {"OPENROUTER_API_KEY": "k"}, OLLAMA)
    now = current_matching(want.groups())
    now["audio"] = {"stt": {"ENGINE": "", "WHISPER_MODEL": "base", "MODEL": "x"},
                    "tts": {"ENGINE": ""}}
    [change] = changes(want, now)
    assert (change.area, change.key) == ("voice", "stt.WHISPER_MODEL")
    assert updates([change]) == {"audio": {"stt": {"WHISPER_MODEL": "small"}}}


@pytest.mark.parametrize(("text", "words"), [
    ("signup: maybe\n", "closed"),
    ("connections:\n  openai:\n    - {name: x, url: ftp://x, key: K}\n", "http"),
    ("connections:\n  openai:\n    - {name: x, url: https://x, key: sk-123}\n", "secret"),
    ("voice:\n  tts: {engine: openai}\n", "url and key"),
    ("users:\n  - {name: A, email: a@x.org}\n  - {name: B, email: A@x.org}\n", "more than once"),
    ("managed: [everything]\n", "signup"),
    ("model_access:\n  llama3.1:8b: [not-an-email]\n", "not an email"),
    ("model_access:\n  llama3.1:8b: some\n", "everyone"),
])
def test_bad_webui_yaml_says_why(text: str, words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        config(text)
