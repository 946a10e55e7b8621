"""The cloud provider stand-in (tests/ollama_double/cloud.py) answers like an OpenAI-compatible
API: the e2e tests declare it as Open WebUI's cloud connection."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ..double import background

CLOUD = Path(__file__).resolve().parents[2] / "ollama_double" / "cloud.py"
KEY = "sk-unit-1"


@pytest.fixture
def cloud() -> Iterator[str]:
    spec = importlib.util.spec_from_file_location("cloud_double", CLOUD)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.Handler.log_message = lambda *_a, **_k: None
    with background(module.make_cloud(KEY, ("cloud-large", "cloud-mini"), "127.0.0.1", 0)
                    ) as url:
        yield url


def test_models_need_the_key(cloud: str):
    refused = httpx.get(f"{cloud}/v1/models", headers={"Authorization": "Bearer wrong"})
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "invalid_api_key"
    listed = httpx.get(f"{cloud}/v1/models", headers={"Authorization": f"Bearer {KEY}"})
    assert [m["id"] for m in listed.json()["data"]] == ["cloud-large", "cloud-mini"]


def test_chat_completions_whole_and_streamed(cloud: str):
    auth = {"Authorization": f"Bearer {KEY}"}
    body = {"model": "cloud-mini", "messages": [{"role": "user", "content": "hi"}]}
    whole = httpx.post(f"{cloud}/v1/chat/completions", headers=auth, json=body).json()
    assert whole["choices"][0]["message"]["role"] == "assistant"
    assert "stand-in cloud provider" in whole["choices"][0]["message"]["content"]
    with httpx.stream("POST", f"{cloud}/v1/chat/completions", headers=auth,
                      json={**body, "stream": True}) as response:
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    missing = httpx.post(f"{cloud}/v1/chat/completions", headers=auth,
                         json={**body, "model": "gpt-nope"})
    assert missing.status_code == 404
