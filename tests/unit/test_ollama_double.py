"""The Ollama API test double (tests/ollama_double) answers like Ollama.

The end-to-end tests deploy it as ``ollama/ollama:0.24.0``; these checks keep
its JSON shapes honest (docs/api.md of ollama/ollama) and fast to run.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest

DOUBLE_DIR = Path(__file__).resolve().parents[1] / "ollama_double"


def _load_server_module():
    spec = importlib.util.spec_from_file_location("ollama_double_server", DOUBLE_DIR / "server.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


double = _load_server_module()

LLAMA = "llama3.1:8b-instruct-q4_K_M"
TINY = "lanai-test:tiny"


@pytest.fixture
def ollama(tmp_path, monkeypatch) -> Iterator[httpx.Client]:
    for var in (
        "OLLAMA_CONTEXT_LENGTH",
        "OLLAMA_NUM_PARALLEL",
        "OLLAMA_FLASH_ATTENTION",
        "OLLAMA_KV_CACHE_TYPE",
        "OLLAMA_MAX_LOADED_MODELS",
        "OLLAMA_KEEP_ALIVE",
        "OLLAMA_DOUBLE_VRAM_BYTES",
        "OLLAMA_DOUBLE_PULL_BYTES_PER_SEC",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("OLLAMA_DOUBLE_LOG", "0")
    server = double.make_server("127.0.0.1", 0, tmp_path / "models")
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    with httpx.Client(base_url=f"http://{host}:{port}", timeout=5) as client:
        client.models_dir = tmp_path / "models"  # type: ignore[attr-defined]
        yield client
    server.shutdown()
    server.server_close()


def pull(client: httpx.Client, name: str) -> list[dict]:
    with client.stream("POST", "/api/pull", json={"model": name}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/x-ndjson"
        return [json.loads(line) for line in response.iter_lines() if line]


def test_root_and_version(ollama):
    assert ollama.get("/").text == "Ollama is running"
    assert ollama.head("/").status_code == 200
    assert ollama.get("/api/version").json() == {"version": "0.24.0"}
    assert ollama.get("/api/nope").status_code == 404


def test_pull_streams_progress_then_lists_the_model(ollama):
    assert ollama.get("/api/tags").json() == {"models": []}
    events = pull(ollama, LLAMA)
    statuses = [e["status"] for e in events]
    assert statuses[0] == "pulling manifest"
    assert statuses[-3:] == ["verifying sha256 digest", "writing manifest", "success"]
    layer_events = [e for e in events if "digest" in e]
    first = layer_events[0]
    assert first["digest"].startswith("sha256:") and len(first["digest"]) == 71
    assert first["status"] == f"pulling {first['digest'][7:19]}"
    assert first["total"] > 4_000_000_000
    assert "completed" not in first  # as Ollama: nothing downloaded yet
    done = [e for e in layer_events if e["digest"] == first["digest"] and "completed" in e]
    assert [e["completed"] for e in done] == sorted(e["completed"] for e in done)
    assert done[-1]["completed"] == first["total"]

    models = ollama.get("/api/tags").json()["models"]
    assert [m["name"] for m in models] == [LLAMA]
    model = models[0]
    assert model["model"] == LLAMA
    assert 4_900_000_000 < model["size"] < 5_000_000_000
    assert len(model["digest"]) == 64
    datetime.fromisoformat(model["modified_at"])
    assert model["details"] == {
        "parent_model": "",
        "format": "gguf",
        "family": "llama",
        "families": ["llama"],
        "parameter_size": "8.0B",
        "quantization_level": "Q4_K_M",
    }
    # The manifest is on disk where Ollama keeps it: survives a restart.
    manifest = (
        ollama.models_dir
        / "manifests"
        / "registry.ollama.ai"
        / "library"
        / "llama3.1"
        / "8b-instruct-q4_K_M"
    )
    assert json.loads(manifest.read_text())["layers"][0]["mediaType"] == (
        "application/vnd.ollama.image.model"
    )
    restarted = double.Store(ollama.models_dir)
    assert restarted.names() == [LLAMA]

    # OpenAI-compatible list
    data = ollama.get("/v1/models").json()
    assert data["object"] == "list" and data["data"][0]["id"] == LLAMA


def test_pull_again_reports_layers_complete(ollama):
    pull(ollama, TINY)
    events = pull(ollama, TINY)
    layer_events = [e for e in events if "digest" in e]
    assert layer_events and all(e["completed"] == e["total"] for e in layer_events)
    assert events[-1] == {"status": "success"}


def test_pull_without_stream_and_unknown_models(ollama):
    response = ollama.post("/api/pull", json={"model": "lanai-test", "stream": False})
    assert response.status_code == 200 and response.json() == {"status": "success"}
    assert ollama.get("/api/tags").json()["models"][0]["name"] == "lanai-test:latest"

    events = pull(ollama, "no-such-model:1b")
    assert events == [
        {"status": "pulling manifest"},
        {"error": "pull model manifest: file does not exist"},
    ]
    response = ollama.post("/api/pull", json={"model": "no-such-model", "stream": False})
    assert response.status_code == 500
    assert response.json() == {"error": "pull model manifest: file does not exist"}
    assert ollama.post("/api/pull", json={}).status_code == 400


def test_show_gives_architecture(ollama):
    assert ollama.post("/api/show", json={"model": LLAMA}).status_code == 404
    pull(ollama, LLAMA)
    pull(ollama, "deepseek-r1:7b-qwen-distill-q4_K_M")
    shown = ollama.post("/api/show", json={"model": LLAMA}).json()
    info = shown["model_info"]
    assert info["general.architecture"] == "llama"
    assert info["general.parameter_count"] > 8_000_000_000
    assert (
        info["llama.block_count"],
        info["llama.attention.head_count_kv"],
        info["llama.attention.key_length"],
        info["llama.attention.value_length"],
        info["llama.context_length"],
        info["llama.embedding_length"],
    ) == (32, 8, 128, 128, 131072, 4096)
    assert shown["details"]["quantization_level"] == "Q4_K_M"
    assert "completion" in shown["capabilities"]
    assert {"modelfile", "parameters", "template", "license"} <= shown.keys()

    qwen = ollama.post("/api/show", json={"model": "deepseek-r1:7b-qwen-distill-q4_K_M"}).json()
    assert qwen["details"]["family"] == "qwen2"
    assert qwen["model_info"]["qwen2.block_count"] == 28
    assert qwen["model_info"]["qwen2.attention.head_count_kv"] == 4


def test_generate_loads_into_ps_and_follows_memory_knobs(ollama, monkeypatch):
    response = ollama.post("/api/generate", json={"model": TINY, "prompt": "hi"})
    assert response.status_code == 404
    assert "not found" in response.json()["error"]

    pull(ollama, LLAMA)
    assert ollama.get("/api/ps").json() == {"models": []}
    loaded = ollama.post("/api/generate", json={"model": LLAMA}).json()
    assert loaded["done"] is True and loaded["done_reason"] == "load"
    assert loaded["response"] == ""

    ps = ollama.get("/api/ps").json()["models"]
    assert [m["name"] for m in ps] == [LLAMA]
    model = ps[0]
    assert model["size_vram"] == 0  # no GPU by default
    assert model["context_length"] == 4096
    # weights + f16 KV cache: 2 * 32 layers * 8 heads * 128 * 4096 ctx * 2 bytes
    kv = 2 * 32 * 8 * 128 * 4096 * 2
    assert model["size"] >= 4_920_753_328 + kv
    datetime.fromisoformat(model["expires_at"])

    # A quantized KV cache (with flash attention) and a GPU change what ps says.
    monkeypatch.setenv("OLLAMA_FLASH_ATTENTION", "1")
    monkeypatch.setenv("OLLAMA_KV_CACHE_TYPE", "q8_0")
    monkeypatch.setenv("OLLAMA_DOUBLE_VRAM_BYTES", str(4 * 1024**3))
    ollama.post("/api/generate", json={"model": LLAMA, "keep_alive": "10m"})
    smaller = ollama.get("/api/ps").json()["models"][0]
    assert smaller["size"] < model["size"]
    assert smaller["size_vram"] == 4 * 1024**3 < smaller["size"]  # partly on the CPU

    unloaded = ollama.post("/api/generate", json={"model": LLAMA, "keep_alive": 0}).json()
    assert unloaded["done_reason"] == "unload"
    assert ollama.get("/api/ps").json() == {"models": []}


def test_generate_and_chat_stream_and_not(ollama):
    pull(ollama, TINY)
    whole = ollama.post(
        "/api/generate", json={"model": TINY, "prompt": "Why?", "stream": False}
    ).json()
    assert whole["done"] is True and whole["done_reason"] == "stop" and whole["response"]
    assert whole["eval_count"] > 0 and whole["total_duration"] > 0

    with ollama.stream("POST", "/api/generate", json={"model": TINY, "prompt": "Why?"}) as r:
        frames = [json.loads(line) for line in r.iter_lines() if line]
    assert all(f["done"] is False for f in frames[:-1]) and frames[-1]["done"] is True
    assert "".join(f["response"] for f in frames) == whole["response"]

    chat = ollama.post(
        "/api/chat",
        json={
            "model": TINY,
            "stream": False,
            "messages": [{"role": "user", "content": "hello"}],
        },
    ).json()
    assert chat["message"]["role"] == "assistant" and chat["message"]["content"]
    with ollama.stream(
        "POST",
        "/api/chat",
        json={
            "model": TINY,
            "messages": [{"role": "user", "content": "hello"}],
        },
    ) as r:
        frames = [json.loads(line) for line in r.iter_lines() if line]
    assert "".join(f["message"]["content"] for f in frames) == chat["message"]["content"]


def test_embed(ollama):
    pull(ollama, "nomic-embed-text:v1.5")
    out = ollama.post(
        "/api/embed", json={"model": "nomic-embed-text:v1.5", "input": ["a", "b"]}
    ).json()
    assert len(out["embeddings"]) == 2 and len(out["embeddings"][0]) == 768
    again = ollama.post("/api/embed", json={"model": "nomic-embed-text:v1.5", "input": "a"})
    assert again.json()["embeddings"][0] == out["embeddings"][0]
    refused = ollama.post("/api/generate", json={"model": "nomic-embed-text:v1.5", "prompt": "x"})
    assert refused.status_code == 400


def test_delete(ollama):
    pull(ollama, TINY)
    ollama.post("/api/generate", json={"model": TINY})
    assert ollama.request("DELETE", "/api/delete", json={"model": TINY}).status_code == 200
    assert ollama.get("/api/tags").json() == {"models": []}
    assert ollama.get("/api/ps").json() == {"models": []}
    missing = ollama.request("DELETE", "/api/delete", json={"model": TINY})
    assert missing.status_code == 404
    assert missing.json() == {"error": f"model '{TINY}' not found"}


def test_keep_alive_durations():
    assert double.parse_duration("5m", 0) == 300
    assert double.parse_duration("1h30m", 0) == 5400
    assert double.parse_duration(-1, 0) == -1
    assert double.parse_duration("-1m", 0) == -60
    assert double.parse_duration(None, 300) == 300
    with pytest.raises(ValueError):
        double.parse_duration("soon", 0)


def test_ollama_host_forms():
    assert double.parse_host(None) == ("127.0.0.1", 11434)
    assert double.parse_host("0.0.0.0") == ("0.0.0.0", 11434)
    assert double.parse_host("0.0.0.0:11434") == ("0.0.0.0", 11434)
    assert double.parse_host(":8080") == ("127.0.0.1", 8080)
    assert double.parse_host("http://ollama:11434/") == ("ollama", 11434)
    assert double.parse_host("[::1]:9000") == ("::1", 9000)


def test_cli_list_version_and_no_server(ollama):
    pull(ollama, TINY)
    port = str(ollama.base_url.port)
    env = {"OLLAMA_HOST": f"127.0.0.1:{port}", "PATH": "/usr/bin:/bin"}
    cli = [sys.executable, str(DOUBLE_DIR / "ollama")]
    listed = subprocess.run([*cli, "list"], env=env, capture_output=True, text=True, check=True)
    header, row = listed.stdout.splitlines()
    assert header.split() == ["NAME", "ID", "SIZE", "MODIFIED"]
    assert row.startswith(TINY) and "26 MB" in row

    version = subprocess.run([*cli, "-v"], env=env, capture_output=True, text=True, check=True)
    assert version.stdout == "ollama version is 0.24.0\n"

    down = {"OLLAMA_HOST": "127.0.0.1:9", "PATH": "/usr/bin:/bin"}
    failed = subprocess.run([*cli, "list"], env=down, capture_output=True, text=True)
    assert failed.returncode == 1
    assert failed.stderr.startswith("Error: could not connect to ollama server")
