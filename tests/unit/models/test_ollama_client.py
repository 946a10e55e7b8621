"""reconciler.models.ollama against the Ollama API double, run in-process.

The double (tests/ollama_double) answers with Ollama's shapes, streams and
errors; httpx.MockTransport stands in only where the double cannot produce a
case (exact timing, dropped connections, unresolvable hosts).
"""

from __future__ import annotations

import hashlib
import json
import math
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from reconciler.desired.modelfile import local_files, parse, to_create_request
from reconciler.models.ollama import (
    RATE_TAU_S,
    LocalModel,
    Ollama,
    OllamaError,
    OllamaUnreachable,
    PullAborted,
    PullProgress,
)

from ..double import load, serving

DOUBLE = Path(__file__).resolve().parents[2] / "ollama_double" / "server.py"
TINY = "lanai-test:tiny"
LLAMA = "llama3.1:8b-instruct-q4_K_M"
TINY_SIZE = 26_214_400


double = load()


class Served:
    def __init__(self, url: str, models_dir: Path) -> None:
        self.url = url
        self.models_dir = models_dir


@pytest.fixture
def served(tmp_path, monkeypatch) -> Iterator[Served]:
    models = tmp_path / "models"
    with serving(models, monkeypatch) as url:
        yield Served(url, models)


@pytest.fixture
def ollama(served) -> Iterator[Ollama]:
    with Ollama(served.url, timeout=5) as client:
        yield client


def mock(handler, **kwargs) -> Ollama:
    return Ollama("http://ollama.test:11434", transport=httpx.MockTransport(handler), **kwargs)


def ndjson(*events: dict) -> bytes:
    return b"".join(json.dumps(e).encode() + b"\n" for e in events)


# -- queries -------------------------------------------------------------------


def test_version_tags_and_host_port_urls(served, ollama):
    assert ollama.version() == "0.24.0"
    assert ollama.tags() == []
    with Ollama(served.url.removeprefix("http://")) as bare:  # OLLAMA_HOST style
        assert bare.base_url == served.url
        assert bare.version() == "0.24.0"


# -- pull ----------------------------------------------------------------------


def test_pull_reports_progress_with_rate_and_eta(ollama, monkeypatch):
    rate = 50e6  # bytes/s: the tiny model takes about half a second
    monkeypatch.setenv("OLLAMA_DOUBLE_PULL_BYTES_PER_SEC", str(rate))
    seen: list[PullProgress] = []
    ollama.pull(TINY, on_progress=seen.append)

    assert seen[0].status == "pulling manifest" and seen[0].total == 0
    assert seen[-1].status == "success"
    assert seen[-1].completed == seen[-1].total == TINY_SIZE  # summed over the 4 layers
    assert seen[-1].eta == 0.0 and seen[-1].fraction == 1.0
    completed = [p.completed for p in seen]
    assert completed == sorted(completed)
    rates = [p.rate for p in seen if p.rate is not None]
    assert rates, "a rate is measured during the download"
    assert rate / 3 < rates[-1] < rate * 3
    midway = [p for p in seen if p.eta is not None and 0 < p.completed < p.total]
    assert midway and all(0 < p.eta < 5 for p in midway)

    [model] = ollama.tags()
    assert isinstance(model, LocalModel)
    assert model.name == TINY and model.size > TINY_SIZE and len(model.digest) == 64
    assert model.details["quantization_level"] == "Q8_0"


def test_rate_and_eta_are_smoothed_from_the_clock():
    mib = 1024 * 1024
    events = [{"status": "pulling manifest"}]
    events += [
        {"status": "pulling aaa", "digest": "sha256:aaa", "total": 100 * mib, "completed": c * mib}
        for c in (0, 10, 20, 30, 40)
    ]
    events += [{"status": "pulling bbb", "digest": "sha256:bbb", "total": 50 * mib}]
    events += [{"status": "success"}]
    ticks = iter(range(100))  # one second per clock reading

    def handler(request: httpx.Request) -> httpx.Response:
        assert json.loads(request.content) == {"model": "m"}
        return httpx.Response(200, content=ndjson(*events))

    seen: list[PullProgress] = []
    with mock(handler, clock=lambda: float(next(ticks))) as client:
        client.pull("m", on_progress=seen.append)
    layer = [p for p in seen if p.status == "pulling aaa"]
    assert [p.rate for p in layer] == [None, 10 * mib, 10 * mib, 10 * mib, 10 * mib]
    assert layer[-1].eta == pytest.approx(6.0)  # 60 MiB left at 10 MiB/s
    # A new layer raises the total; a second without bytes lowers the rate
    # smoothly (time constant RATE_TAU_S), not to zero.
    second = next(p for p in seen if p.status == "pulling bbb")
    slower = 10 * mib * math.exp(-1 / RATE_TAU_S)
    assert second.total == 150 * mib and second.rate == pytest.approx(slower)
    assert second.eta == pytest.approx(110 * mib / slower)


def test_pull_can_be_aborted_mid_stream(ollama, monkeypatch):
    monkeypatch.setenv("OLLAMA_DOUBLE_PULL_BYTES_PER_SEC", "20e6")
    seen: list[PullProgress] = []

    def too_big(progress: PullProgress) -> str | None:
        seen.append(progress)
        if progress.completed > progress.total / 4 > 0:
            return "the model needs 26 MB and the disk has 10 MB free"
        return None

    with pytest.raises(PullAborted) as caught:
        ollama.pull(TINY, should_abort=too_big)
    assert caught.value.reason == "the model needs 26 MB and the disk has 10 MB free"
    assert str(caught.value) == (
        "The pull of 'lanai-test:tiny' was stopped: "
        "the model needs 26 MB and the disk has 10 MB free."
    )
    assert seen[-1].completed < TINY_SIZE
    assert ollama.tags() == []  # the download did not finish
    # the client and the server are fine afterwards
    monkeypatch.setenv("OLLAMA_DOUBLE_PULL_BYTES_PER_SEC", "1e11")
    ollama.pull(TINY)
    assert [m.name for m in ollama.tags()] == [TINY]


def test_pull_failure_injected_by_file(served, ollama):
    fail = served.models_dir / ".double-fail-pull"
    fail.parent.mkdir(parents=True, exist_ok=True)
    fail.write_text("llama3.1:8b\n")
    statuses: list[str] = []
    with pytest.raises(OllamaError) as caught:
        ollama.pull("llama3.1:8b", on_progress=lambda p: statuses.append(p.status))
    assert statuses == ["pulling manifest"]
    assert caught.value.status is None
    assert str(caught.value) == (
        "Ollama could not pull 'llama3.1:8b': pull model manifest: Get "
        '"https://registry.ollama.ai/v2/library/llama3.1/manifests/8b": '
        "dial tcp: lookup registry.ollama.ai: no such host."
    )
    assert not isinstance(caught.value, OllamaUnreachable)  # Ollama answered
    ollama.pull(TINY)  # not listed: pulls

    fail.write_text("*\n")
    with pytest.raises(OllamaError, match="no such host"):
        ollama.pull(TINY)
    fail.unlink()
    ollama.pull(LLAMA)
    assert {m.name for m in ollama.tags()} == {TINY, LLAMA}


def test_pull_of_an_unknown_model(ollama):
    with pytest.raises(OllamaError) as caught:
        ollama.pull("no-such-model:1b")
    assert caught.value.detail == "pull model manifest: file does not exist"
    assert "'no-such-model:1b'" in str(caught.value)


def test_a_stream_that_ends_without_success_is_an_error():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=ndjson({"status": "pulling manifest"}))

    with mock(handler) as client, pytest.raises(OllamaError, match="without reporting success"):
        client.pull("m")


# -- load, ps, show, generate, delete -------------------------------------------


def test_load_ps_show_generate_and_unload(ollama):
    ollama.pull(TINY)
    assert ollama.ps() == []
    answer = ollama.load(TINY, keep_alive="10m")
    assert answer["done"] is True and answer["done_reason"] == "load"

    [loaded] = ollama.ps()
    assert loaded.name == TINY
    assert loaded.size > TINY_SIZE and loaded.size_vram == 0
    assert loaded.context_length == 2048  # the tiny model's own limit
    assert loaded.expires_at and loaded.digest == ollama.tags()[0].digest

    shown = ollama.show(TINY)
    assert shown["model_info"]["llama.block_count"] == 4
    assert shown["details"]["family"] == "llama"

    events = list(ollama.generate(TINY, "Why?", options={"temperature": 0}))
    assert all(e["done"] is False for e in events[:-1])
    final = events[-1]
    assert final["done"] is True and final["done_reason"] == "stop"
    for key in (
        "total_duration",
        "load_duration",
        "prompt_eval_count",
        "prompt_eval_duration",
        "eval_count",
        "eval_duration",
    ):
        assert isinstance(final[key], int) and final[key] > 0
    [whole] = list(ollama.generate(TINY, "Why?", stream=False))
    assert whole["response"] == "".join(e["response"] for e in events)

    assert ollama.load(TINY, keep_alive=0)["done_reason"] == "unload"
    assert ollama.ps() == []


def test_delete_and_http_errors(ollama):
    ollama.pull(TINY)
    ollama.delete(TINY)
    assert ollama.tags() == []
    with pytest.raises(OllamaError) as caught:
        ollama.delete(TINY)
    assert caught.value.status == 404
    assert str(caught.value) == (
        "Ollama could not delete model 'lanai-test:tiny': "
        "model 'lanai-test:tiny' not found (HTTP 404)."
    )
    with pytest.raises(OllamaError) as caught:
        ollama.show(TINY)
    assert caught.value.status == 404
    with pytest.raises(OllamaError) as caught:
        list(ollama.generate(TINY, "hi"))
    assert caught.value.status == 404
    assert caught.value.detail == 'model "lanai-test:tiny" not found, try pulling it first'
    with pytest.raises(OllamaError) as caught:
        ollama.load("nomic-embed-text")
    assert caught.value.status == 404


def test_http_errors_without_json_and_answers_that_are_not_json():
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/tags":
            return httpx.Response(200, text="<html>a proxy page</html>")
        return httpx.Response(502, text="Bad Gateway")

    with mock(handler) as client:
        with pytest.raises(OllamaError) as caught:
            client.version()
        assert str(caught.value) == "Ollama could not report its version: Bad Gateway (HTTP 502)."
        with pytest.raises(OllamaError, match="not a JSON object"):
            client.tags()


def test_generate_error_mid_stream():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            content=ndjson(
                {"model": "m", "response": "Hel", "done": False},
                {"error": "an error was encountered while running the model: CUDA error"},
            ),
        )

    with mock(handler) as client:
        events = client.generate("m", "hi")
        assert next(events)["response"] == "Hel"
        with pytest.raises(OllamaError, match="CUDA error") as caught:
            next(events)
    assert caught.value.status is None


# -- unreachable -----------------------------------------------------------------


def test_connection_refused_names_the_url():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with Ollama(f"http://127.0.0.1:{port}", timeout=2) as client:
        with pytest.raises(OllamaUnreachable) as caught:
            client.version()
        assert str(caught.value) == (
            f"Ollama at http://127.0.0.1:{port} is not answering (connection refused)."
        )
        with pytest.raises(OllamaUnreachable, match="connection refused"):
            client.pull(TINY)


def test_unknown_host_timeouts_and_dropped_streams():
    def unknown_host(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("lookup failed") from socket.gaierror(
            -2, "Name or service not known"
        )

    with mock(unknown_host) as client, pytest.raises(OllamaUnreachable) as caught:
        client.tags()
    assert str(caught.value) == (
        "Ollama at http://ollama.test:11434 is not answering (cannot resolve host 'ollama.test')."
    )

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    with mock(slow, timeout=3) as client:
        with pytest.raises(OllamaUnreachable) as caught:
            client.ps()
        assert str(caught.value) == (
            "Ollama at http://ollama.test:11434 is not answering (no answer within 3 s)."
        )
        with pytest.raises(OllamaUnreachable, match="went silent for 900 s"):
            client.pull("m")

    class Dropping(httpx.SyncByteStream):
        def __iter__(self):
            yield b'{"status":"pulling manifest"}\n'
            raise httpx.RemoteProtocolError("peer closed connection")

    def dropped(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=Dropping())

    with mock(dropped) as client, pytest.raises(OllamaUnreachable) as caught:
        client.pull("llama3.1:8b")
    assert str(caught.value) == (
        "Ollama at http://ollama.test:11434 dropped the connection while asked to "
        "pull 'llama3.1:8b' (peer closed connection)."
    )


# -- blobs and create -------------------------------------------------------------


MODELFILE = '''\
# A family assistant on the tiny test model
FROM lanai-test:tiny
PARAMETER temperature 0.2
PARAMETER num_ctx 1024
PARAMETER stop "<|end|>"
SYSTEM """You are Mario.
Answer briefly."""
MESSAGE user Who are you?
MESSAGE assistant It's a me, Mario!
ADAPTER ./adapters/mario-lora.gguf
'''


def write_modelfile(directory: Path, text: str = MODELFILE) -> Path:
    (directory / "adapters").mkdir(parents=True, exist_ok=True)
    (directory / "adapters" / "mario-lora.gguf").write_bytes(b"GGUF" + bytes(range(256)) * 64)
    path = directory / "Modelfile"
    path.write_text(text)
    return path


def create_from(ollama: Ollama, name: str, modelfile: Path, statuses: list[str]) -> None:
    mf = parse(modelfile.read_text(), source=str(modelfile))
    digests = {f: ollama.push_blob(modelfile.parent / f) for f in local_files(mf)}
    ollama.create(to_create_request(name, mf, adapter_digests=digests), on_status=statuses.append)


def test_push_blob_uploads_once(ollama, tmp_path):
    blob = tmp_path / "weights.bin"
    blob.write_bytes(b"GGUF" + b"\0" * 100_000)
    expected = "sha256:" + hashlib.sha256(blob.read_bytes()).hexdigest()
    assert not ollama.has_blob(expected)
    assert ollama.push_blob(blob) == expected
    assert ollama.has_blob(expected)
    assert ollama.push_blob(blob) == expected  # HEAD answers 200: nothing sent again
    with pytest.raises(OllamaError, match="Cannot read"):
        ollama.push_blob(tmp_path / "missing.gguf")
    with pytest.raises(OllamaError) as caught:
        ollama.has_blob("sha256:nothex")
    assert caught.value.status == 400


def test_create_from_a_modelfile_with_an_adapter(ollama, tmp_path, monkeypatch):
    monkeypatch.setenv("OLLAMA_CONTEXT_LENGTH", "512")
    ollama.pull(TINY)
    statuses: list[str] = []
    create_from(ollama, "mario", write_modelfile(tmp_path), statuses)

    assert statuses[-2:] == ["writing manifest", "success"]
    assert any(s.startswith("using existing layer sha256:") for s in statuses)
    assert any(s.startswith("creating new layer sha256:") for s in statuses)
    assert "parsing GGUF" in statuses

    models = {m.name: m for m in ollama.tags()}
    assert set(models) == {TINY, "mario:latest"}
    assert models["mario:latest"].details["family"] == "llama"

    shown = ollama.show("mario")
    assert shown["system"] == "You are Mario.\nAnswer briefly."
    assert shown["messages"] == [
        {"role": "user", "content": "Who are you?"},
        {"role": "assistant", "content": "It's a me, Mario!"},
    ]
    params = shown["parameters"].splitlines()
    assert "num_ctx                        1024" in params
    assert "temperature                    0.2" in params
    assert params.count('stop                           "<|end|>"') == 1
    assert not any("</s>" in line for line in params)  # the new stop list replaced the base's
    assert shown["model_info"] == ollama.show(TINY)["model_info"]
    assert shown["details"]["parent_model"] == TINY
    assert "ADAPTER " in shown["modelfile"]

    # The model's num_ctx beats OLLAMA_CONTEXT_LENGTH; the request's beats both.
    ollama.load("mario")
    assert {m.name: m.context_length for m in ollama.ps()}["mario:latest"] == 1024
    list(ollama.generate("mario", "hi", options={"num_ctx": 2000}))
    assert {m.name: m.context_length for m in ollama.ps()}["mario:latest"] == 2000

    # Same Modelfile again: same digest. A different one: a new digest.
    before = models["mario:latest"].digest
    create_from(ollama, "mario", write_modelfile(tmp_path), [])
    assert {m.name: m.digest for m in ollama.tags()}["mario:latest"] == before
    create_from(ollama, "mario", write_modelfile(tmp_path, MODELFILE.replace("Mario", "Luigi")), [])
    assert {m.name: m.digest for m in ollama.tags()}["mario:latest"] != before


def test_create_errors(ollama, tmp_path):
    with pytest.raises(OllamaError) as caught:
        ollama.create({"model": "x", "from": "no-such-model:1b"})
    assert caught.value.detail == "pull model manifest: file does not exist"
    assert str(caught.value).startswith("Ollama could not create model 'x': ")

    ollama.pull(TINY)
    missing = "sha256:" + "ab" * 32
    with pytest.raises(OllamaError) as caught:
        ollama.create({"model": "x", "from": TINY, "adapters": {"lora.gguf": missing}})
    assert "no such file or directory" in str(caught.value)

    with pytest.raises(OllamaError) as caught:
        ollama.create({"model": "x"})
    assert caught.value.status == 400
    assert caught.value.detail == "neither 'from' or 'files' was specified"
    assert "x:latest" not in {m.name for m in ollama.tags()}


def test_a_malformed_url_is_a_clear_error():
    with pytest.raises(OllamaError, match=r"The Ollama URL 'http://\[::1' is not valid"):
        Ollama("http://[::1")
