"""The Ollama API test double (tests/ollama_double) answers like Ollama.

The end-to-end tests deploy it as ``ollama/ollama:0.24.0``; these checks keep
its JSON shapes honest (docs/api.md of ollama/ollama) and fast to run.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from ..double import load, serving

DOUBLE_DIR = Path(__file__).resolve().parents[2] / "ollama_double"


double = load()

LLAMA = "llama3.1:8b-instruct-q4_K_M"
TINY = "lanai-test:tiny"


@pytest.fixture
def ollama(tmp_path, monkeypatch) -> Iterator[httpx.Client]:
    with serving(tmp_path / "models", monkeypatch) as url, \
            httpx.Client(base_url=url, timeout=5) as client:
        client.models_dir = tmp_path / "models"  # type: ignore[attr-defined]
        yield client


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


# -- KV cache, blobs, create, failure injection ---------------------------------


def test_q8_0_kv_cache_costs_34_bytes_per_32_elements(ollama, monkeypatch):
    assert double.kv_bytes_per_element() == 2.0
    monkeypatch.setenv("OLLAMA_FLASH_ATTENTION", "1")
    monkeypatch.setenv("OLLAMA_KV_CACHE_TYPE", "q8_0")
    assert double.kv_bytes_per_element() == 34 / 32  # 32 int8 + an f16 scale per block
    monkeypatch.setenv("OLLAMA_KV_CACHE_TYPE", "q4_0")
    assert double.kv_bytes_per_element() == 18 / 32  # 32 4-bit values + an f16 scale
    monkeypatch.delenv("OLLAMA_FLASH_ATTENTION")
    assert double.kv_bytes_per_element() == 2.0  # quantized KV needs flash attention

    monkeypatch.setenv("OLLAMA_FLASH_ATTENTION", "1")
    monkeypatch.setenv("OLLAMA_KV_CACHE_TYPE", "q8_0")
    pull(ollama, LLAMA)
    ollama.post("/api/generate", json={"model": LLAMA})
    [model] = ollama.get("/api/ps").json()["models"]
    elements = 2 * 32 * 8 * 128 * 4096  # K and V, layers, KV heads, head size, context
    # Ollama's full-offload graph for llama: a batch of 512, embedding 4096, 32 heads.
    graph = 4 * 512 * (1 + 4 * 4096 + 4096 * (1 + 32))
    assert model["size"] == 4_920_753_328 + elements * 34 // 32 + graph


def test_pull_keeps_the_small_blobs_like_ollama(ollama):
    pull(ollama, LLAMA)
    manifest = json.loads(double.Store(ollama.models_dir).manifest_path(LLAMA).read_text())
    blobs = ollama.models_dir / "blobs"
    for layer in [*manifest["layers"][1:], manifest["config"]]:
        path = blobs / layer["digest"].replace(":", "-")
        assert path.is_file() and path.stat().st_size == layer["size"]
    params = blobs / manifest["layers"][3]["digest"].replace(":", "-")
    assert json.loads(params.read_text()) == {
        "stop": ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    }
    shown = ollama.post("/api/show", json={"model": LLAMA}).json()
    assert shown["parameters"] == double.CATALOG[LLAMA]["parameters"]
    assert shown["license"] == double.CATALOG[LLAMA]["license"]


def blob(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_blobs_head_and_post(ollama):
    data = b"GGUF" + b"\x01" * 5000
    digest = blob(data)
    assert ollama.head(f"/api/blobs/{digest}").status_code == 404
    wrong = ollama.post(f"/api/blobs/{digest}", content=b"something else")
    assert wrong.status_code == 400
    assert wrong.json() == {
        "error": f'digest mismatch, expected "{digest}", got "{blob(b"something else")}"'
    }
    assert ollama.head(f"/api/blobs/{digest}").status_code == 404
    assert ollama.post(f"/api/blobs/{digest}", content=data).status_code == 201
    assert ollama.head(f"/api/blobs/{digest}").status_code == 200
    assert (ollama.models_dir / "blobs" / digest.replace(":", "-")).read_bytes() == data
    assert ollama.post(f"/api/blobs/{digest}", content=data).status_code == 200  # already there

    chunked = b"chunked upload " * 10_000
    sent = ollama.post(f"/api/blobs/{blob(chunked)}", content=iter([chunked[:7], chunked[7:]]))
    assert sent.status_code == 201
    assert ollama.head(f"/api/blobs/{blob(chunked)}").status_code == 200

    bad = ollama.post("/api/blobs/sha256:abc", content=b"x")
    assert bad.status_code == 400 and bad.json() == {"error": "invalid digest format"}
    assert ollama.head("/api/blobs/md5-abc").status_code == 400
    assert ollama.get(f"/api/blobs/{digest}").status_code == 405
    assert ollama.get("/api/version").status_code == 200  # the connection is still sound


def create(client: httpx.Client, body: dict) -> list[dict]:
    with client.stream("POST", "/api/create", json=body) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"] == "application/x-ndjson"
        return [json.loads(line) for line in response.iter_lines() if line]


def test_create_derives_a_model_and_keeps_it(ollama, monkeypatch):
    pull(ollama, LLAMA)
    adapter = b"GGUF" + b"\x02" * 2048
    assert ollama.post(f"/api/blobs/{blob(adapter)}", content=adapter).status_code == 201
    events = create(
        ollama,
        {
            "model": "mario",
            "from": LLAMA,
            "system": "You are Mario.",
            "parameters": {"num_ctx": 8192, "temperature": 0.2, "stop": ["<|eot_id|>"]},
            "messages": [{"role": "user", "content": "Who are you?"}],
            "adapters": {"mario.gguf": blob(adapter)},
            "license": ["MIT", "Apache-2.0"],
        },
    )
    statuses = [e["status"] for e in events]
    assert statuses[0] == "parsing GGUF"
    assert statuses[-2:] == ["writing manifest", "success"]
    base = double.layers_for(LLAMA)
    assert f"using existing layer {base[0]['digest']}" in statuses
    assert f"using existing layer {blob(adapter)}" in statuses
    assert f"creating new layer {blob(b'You are Mario.')}" in statuses

    tags = {m["name"]: m for m in ollama.get("/api/tags").json()["models"]}
    assert set(tags) == {LLAMA, "mario:latest"}
    assert tags["mario:latest"]["details"]["family"] == "llama"
    assert tags["mario:latest"]["size"] > tags[LLAMA]["size"]  # the adapter

    shown = ollama.post("/api/show", json={"model": "mario"}).json()
    assert shown["system"] == "You are Mario."
    assert shown["parameters"].splitlines() == [
        "num_ctx                        8192",
        'stop                           "<|eot_id|>"',
        "temperature                    0.2",
    ]
    assert shown["messages"] == [{"role": "user", "content": "Who are you?"}]
    assert shown["license"] == "\n".join([double.CATALOG[LLAMA]["license"], "MIT", "Apache-2.0"])
    assert shown["template"] == double.CATALOG[LLAMA]["template"]
    assert shown["model_info"] == double.CATALOG[LLAMA]["model_info"]
    assert shown["details"]["parent_model"] == LLAMA

    # Context: request option > the model's num_ctx > OLLAMA_CONTEXT_LENGTH.
    monkeypatch.setenv("OLLAMA_CONTEXT_LENGTH", "2048")
    ollama.post("/api/generate", json={"model": "mario"})
    ollama.post("/api/generate", json={"model": LLAMA})
    ctx = {m["name"]: m["context_length"] for m in ollama.get("/api/ps").json()["models"]}
    assert ctx == {"mario:latest": 8192, LLAMA: 2048}
    ollama.post("/api/generate", json={"model": "mario", "options": {"num_ctx": 16384}})
    ctx = {m["name"]: m["context_length"] for m in ollama.get("/api/ps").json()["models"]}
    assert ctx["mario:latest"] == 16384
    chat = ollama.post(
        "/api/chat",
        json={"model": "mario", "stream": False, "messages": [{"role": "user", "content": "hi"}]},
    )
    assert chat.json()["message"]["content"]

    # On disk: a restarted server knows it; a copy and a model derived from it too.
    restarted = double.Store(ollama.models_dir)
    assert restarted.entry("mario")["system"] == "You are Mario."
    assert (
        ollama.post("/api/copy", json={"source": "mario", "destination": "m2"}).status_code == 200
    )
    create(ollama, {"model": "luigi", "from": "mario", "parameters": {"temperature": 0.9}})
    luigi = ollama.post("/api/show", json={"model": "luigi"}).json()
    assert luigi["system"] == "You are Mario."
    assert "temperature                    0.9" in luigi["parameters"].splitlines()
    assert "num_ctx                        8192" in luigi["parameters"].splitlines()
    assert luigi["details"]["parent_model"] == "mario:latest"
    ids = {m["id"] for m in ollama.get("/v1/models").json()["data"]}
    assert ids == {LLAMA, "mario:latest", "m2:latest", "luigi:latest"}

    # Same request: same digest; different content: a new digest.
    before = tags["mario:latest"]["digest"]
    create(ollama, {"model": "mario", "from": "m2"})  # m2 has mario's layers
    after = {m["name"]: m["digest"] for m in ollama.get("/api/tags").json()["models"]}
    assert after["mario:latest"] != before  # the layers now say they come from m2
    create(ollama, {"model": "x", "from": LLAMA, "system": "one"})
    first = {m["name"]: m["digest"] for m in ollama.get("/api/tags").json()["models"]}["x:latest"]
    create(ollama, {"model": "x", "from": LLAMA, "system": "one"})
    again = {m["name"]: m["digest"] for m in ollama.get("/api/tags").json()["models"]}["x:latest"]
    create(ollama, {"model": "x", "from": LLAMA, "system": "two"})
    other = {m["name"]: m["digest"] for m in ollama.get("/api/tags").json()["models"]}["x:latest"]
    assert first == again != other


def test_create_pulls_a_missing_base_and_reports_errors_like_ollama(ollama):
    events = create(ollama, {"model": "t", "from": "lanai-test", "system": "hi"})
    statuses = [e["status"] for e in events]
    assert statuses[0] == "pulling manifest"
    assert statuses.count("success") == 2  # the pull's, then the create's
    assert {m["name"] for m in ollama.get("/api/tags").json()["models"]} == {
        "lanai-test:latest",
        "t:latest",
    }

    # Unknown base: Ollama tries to pull it, so the error comes inside the stream.
    assert create(ollama, {"model": "t2", "from": "no-such-model:1b"}) == [
        {"status": "pulling manifest"},
        {"error": "pull model manifest: file does not exist"},
    ]
    whole = ollama.post("/api/create", json={"model": "t2", "from": "nope", "stream": False})
    assert whole.status_code == 500
    assert whole.json() == {"error": "pull model manifest: file does not exist"}
    done = ollama.post("/api/create", json={"model": "t3", "from": "t", "stream": False})
    assert done.status_code == 200 and done.json() == {"status": "success"}

    # Errors before anything was streamed are HTTP errors.
    neither = ollama.post("/api/create", json={"model": "t4"})
    assert neither.status_code == 400
    assert neither.json() == {"error": "neither 'from' or 'files' was specified"}
    assert ollama.post("/api/create", json={"from": "t"}).status_code == 400
    empty = ollama.post("/api/create", json={"model": "t4", "from": "t", "adapters": {"a": ""}})
    assert empty.status_code == 400 and empty.json() == {"error": "invalid digest format"}
    two = {"a.gguf": "sha256:" + "a" * 64, "b.gguf": "sha256:" + "b" * 64}
    many = ollama.post("/api/create", json={"model": "t4", "from": "t", "adapters": two})
    assert many.status_code == 400
    assert many.json() == {"error": "only one adapter is currently supported"}
    quantize = ollama.post("/api/create", json={"model": "t4", "from": "t", "quantize": "q4_K_M"})
    assert quantize.status_code == 500 and "quantization" in quantize.json()["error"]

    # An adapter blob that was never uploaded, or is not GGUF.
    missing = "sha256:" + "c" * 64
    events = create(ollama, {"model": "t4", "from": "t", "adapters": {"l.gguf": missing}})
    assert events[0] == {"status": "parsing GGUF"}
    assert (
        events[1]["error"].startswith("open ") and "no such file or directory" in events[1]["error"]
    )
    text = b"not a gguf"
    ollama.post(f"/api/blobs/{blob(text)}", content=text)
    events = create(ollama, {"model": "t4", "from": "t", "adapters": {"l.gguf": blob(text)}})
    assert events[-1] == {"error": "supplied file was not in GGUF format"}
    unknown = ollama.post(
        "/api/create", json={"model": "t4", "from": "t", "adapters": {"l": missing}}
    )
    assert unknown.status_code == 400 and unknown.json() == {"error": "unknown type"}
    assert "t4:latest" not in {m["name"] for m in ollama.get("/api/tags").json()["models"]}


def test_pull_failure_injection_file(ollama):
    knob = ollama.models_dir / ".double-fail-pull"
    knob.parent.mkdir(parents=True, exist_ok=True)
    knob.write_text("# broken registry for these\n\nllama3.1:8b\nmyuser/private:v2\n")
    assert pull(ollama, "llama3.1:8b") == [
        {"status": "pulling manifest"},
        {
            "error": 'pull model manifest: Get "https://registry.ollama.ai/v2/library/llama3.1'
            '/manifests/8b": dial tcp: lookup registry.ollama.ai: no such host'
        },
    ]
    # the same model by another of its tags fails too
    assert "no such host" in pull(ollama, LLAMA)[-1]["error"]
    assert pull(ollama, "myuser/private:v2")[-1]["error"] == (
        'pull model manifest: Get "https://registry.ollama.ai/v2/myuser/private/manifests/v2": '
        "dial tcp: lookup registry.ollama.ai: no such host"
    )
    whole = ollama.post("/api/pull", json={"model": "llama3.1:8b", "stream": False})
    assert whole.status_code == 500 and "no such host" in whole.json()["error"]
    assert pull(ollama, TINY)[-1] == {"status": "success"}  # not listed

    knob.write_text("*\n")
    assert "no such host" in pull(ollama, TINY)[-1]["error"]
    knob.unlink()  # read at every pull: removing it heals the "registry"
    assert pull(ollama, "llama3.1:8b")[-1] == {"status": "success"}
    assert ollama.get("/api/tags").json()["models"]  # the knob is no model


# -- pulls go over the network, to the registry stand-in -------------------------------------

def test_pull_fetches_the_manifest_and_blobs_from_the_registry_and_keeps_its_digest(
        ollama, monkeypatch):
    registry_url = os.environ["OLLAMA_DOUBLE_REGISTRY"]
    raw = httpx.get(f"{registry_url}/v2/library/lanai-test/manifests/tiny",
                    headers={"Accept": double.MEDIA_MANIFEST})
    assert raw.status_code == 200
    assert raw.headers["content-type"] == double.MEDIA_MANIFEST
    served = raw.json()
    assert pull(ollama, TINY)[-1] == {"status": "success"}
    listed = ollama.get("/api/tags").json()["models"][0]
    # The manifest is kept as the registry sent it: the model's digest is its sha256.
    assert listed["digest"] == hashlib.sha256(raw.content).hexdigest()
    assert raw.headers["docker-content-digest"] == "sha256:" + listed["digest"]
    for layer in [served["config"], *served["layers"][1:]]:
        blob = ollama.models_dir / "blobs" / f"sha256-{layer['digest'][7:]}"
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == layer["digest"][7:]
    # The weights stand-in verifies against the digest the manifest names.
    weights = httpx.get(f"{registry_url}/v2/library/lanai-test/blobs/"
                        f"{served['layers'][0]['digest']}")
    assert "sha256:" + hashlib.sha256(weights.content).hexdigest() == \
        served["layers"][0]["digest"]
    assert httpx.get(f"{registry_url}/v2/library/nope/manifests/1").status_code == 404


def test_pull_with_no_registry_listening_fails_like_ollama(tmp_path, monkeypatch):
    with serving(tmp_path / "models", monkeypatch, registry=False) as url, \
            httpx.Client(base_url=url, timeout=30) as client:
        events = pull(client, TINY)
        assert events[0] == {"status": "pulling manifest"}
        error = events[-1]["error"]
        assert error.startswith('pull model manifest: Get "http://127.0.0.1:')
        assert error.endswith("/v2/library/lanai-test/manifests/tiny\": dial tcp "
                              f"{error.split('//')[1].split('/')[0]}: connect: "
                              "connection refused")
        assert client.get("/api/tags").json() == {"models": []}


def test_pull_resolves_the_registry_by_host_name(tmp_path, monkeypatch):
    with serving(tmp_path / "models", monkeypatch) as url, \
            httpx.Client(base_url=url, timeout=30) as client:
        monkeypatch.setenv("OLLAMA_DOUBLE_REGISTRY", "http://registry.invalid")
        error = pull(client, TINY)[-1]["error"]
    assert error == ('pull model manifest: Get "http://registry.invalid/v2/library/lanai-test/'
                     'manifests/tiny": dial tcp: lookup registry.invalid: no such host')
