"""A test double of Ollama's HTTP API. It is not Ollama.

The end-to-end tests deploy the example state, whose compose stack runs
``ollama/ollama:0.24.0``. No Ollama binary (nor its image) can be had on the
test machine, so ``tests/images/build.sh`` builds that tag from this file: a
small standard-library server that answers the endpoints lanai and Open WebUI
use with the same JSON shapes as real Ollama (docs/api.md of ollama/ollama):

    GET  /  /api/version  /api/tags  /api/ps  /v1/models
    POST /api/pull  /api/show  /api/generate  /api/chat  /api/embed
         /api/embeddings  /api/copy
    DELETE /api/delete

"Models" come from a built-in catalog with real architecture numbers and
sizes; a pull streams realistic progress (no bytes move) and writes a small
manifest under $OLLAMA_MODELS, so pulled models survive a restart of the
container. Loading a model (generate/chat/embed) puts it in /api/ps with a
size computed from its weights plus a KV cache that follows Ollama's memory
knobs (OLLAMA_CONTEXT_LENGTH, OLLAMA_NUM_PARALLEL, OLLAMA_FLASH_ATTENTION,
OLLAMA_KV_CACHE_TYPE, OLLAMA_MAX_LOADED_MODELS, OLLAMA_KEEP_ALIVE).

Test-only knobs:
    OLLAMA_DOUBLE_PULL_BYTES_PER_SEC  simulated download speed (default 1e11:
                                      a 5 GB pull takes about 50 ms)
    OLLAMA_DOUBLE_VRAM_BYTES          simulated GPU memory (default 0: no GPU,
                                      every model has size_vram 0)

Product code never knows about this double: it talks to "Ollama".
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

VERSION = "0.24.0"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 11434
REGISTRY = "registry.ollama.ai"
NAMESPACE = "library"
GiB = 1024**3

MEDIA_MODEL = "application/vnd.ollama.image.model"
MEDIA_TEMPLATE = "application/vnd.ollama.image.template"
MEDIA_LICENSE = "application/vnd.ollama.image.license"
MEDIA_PARAMS = "application/vnd.ollama.image.params"
MEDIA_CONFIG = "application/vnd.docker.container.image.v1+json"
MEDIA_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


# --------------------------------------------------------------------------
# Catalog
# --------------------------------------------------------------------------


def _arch(
    arch: str,
    *,
    blocks: int,
    heads: int,
    kv_heads: int,
    head_dim: int,
    ctx: int,
    embedding: int,
    ff: int,
    vocab: int,
    params: int,
    file_type: int,
) -> dict[str, Any]:
    return {
        "general.architecture": arch,
        "general.file_type": file_type,
        "general.parameter_count": params,
        "general.quantization_version": 2,
        f"{arch}.attention.head_count": heads,
        f"{arch}.attention.head_count_kv": kv_heads,
        f"{arch}.attention.key_length": head_dim,
        f"{arch}.attention.value_length": head_dim,
        f"{arch}.attention.layer_norm_rms_epsilon": 1e-05,
        f"{arch}.block_count": blocks,
        f"{arch}.context_length": ctx,
        f"{arch}.embedding_length": embedding,
        f"{arch}.feed_forward_length": ff,
        f"{arch}.vocab_size": vocab,
    }


CATALOG: dict[str, dict[str, Any]] = {
    "llama3.1:8b-instruct-q4_K_M": {
        "size": 4_920_753_328,
        "family": "llama",
        "parameter_size": "8.0B",
        "quantization_level": "Q4_K_M",
        "capabilities": ["completion", "tools"],
        "model_info": _arch(
            "llama",
            blocks=32,
            heads=32,
            kv_heads=8,
            head_dim=128,
            ctx=131072,
            embedding=4096,
            ff=14336,
            vocab=128256,
            params=8_030_261_312,
            file_type=15,
        ),
        "license": "LLAMA 3.1 COMMUNITY LICENSE AGREEMENT",
        "template": "{{ if .System }}<|start_header_id|>system<|end_header_id|>\n\n"
        "{{ .System }}<|eot_id|>{{ end }}<|start_header_id|>user<|end_header_id|>\n\n"
        "{{ .Prompt }}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
        "parameters": 'stop                           "<|start_header_id|>"\n'
        'stop                           "<|end_header_id|>"\n'
        'stop                           "<|eot_id|>"',
    },
    "phi3:3.8b-mini-4k-instruct-q4_K_M": {
        "size": 2_393_232_672,
        "family": "phi3",
        "parameter_size": "3.8B",
        "quantization_level": "Q4_K_M",
        "capabilities": ["completion"],
        "model_info": _arch(
            "phi3",
            blocks=32,
            heads=32,
            kv_heads=32,
            head_dim=96,
            ctx=4096,
            embedding=3072,
            ff=8192,
            vocab=32064,
            params=3_821_079_552,
            file_type=15,
        ),
        "license": "Microsoft. MIT License",
        "template": "{{ if .System }}<|system|>\n{{ .System }}<|end|>\n{{ end }}"
        "<|user|>\n{{ .Prompt }}<|end|>\n<|assistant|>\n",
        "parameters": 'stop                           "<|end|>"\n'
        'stop                           "<|user|>"\n'
        'stop                           "<|assistant|>"',
    },
    "deepseek-r1:7b-qwen-distill-q4_K_M": {
        "size": 4_683_073_184,
        "family": "qwen2",
        "parameter_size": "7.6B",
        "quantization_level": "Q4_K_M",
        "capabilities": ["completion", "thinking"],
        "model_info": _arch(
            "qwen2",
            blocks=28,
            heads=28,
            kv_heads=4,
            head_dim=128,
            ctx=131072,
            embedding=3584,
            ff=18944,
            vocab=152064,
            params=7_615_616_512,
            file_type=15,
        ),
        "license": "MIT License",
        "template": "{{ .System }}<｜User｜>{{ .Prompt }}<｜Assistant｜>",
        "parameters": 'stop                           "<｜begin▁of▁sentence｜>"\n'
        'stop                           "<｜end▁of▁sentence｜>"',
    },
    "nomic-embed-text:v1.5": {
        "size": 274_302_450,
        "family": "nomic-bert",
        "parameter_size": "137M",
        "quantization_level": "F16",
        "capabilities": ["embedding"],
        "model_info": _arch(
            "nomic-bert",
            blocks=12,
            heads=12,
            kv_heads=12,
            head_dim=64,
            ctx=2048,
            embedding=768,
            ff=3072,
            vocab=30522,
            params=136_727_040,
            file_type=1,
        ),
        "license": "Apache License Version 2.0",
        "template": "{{ .Prompt }}",
        "parameters": "num_ctx                        8192",
    },
    "lanai-test:tiny": {
        "size": 26_214_400,
        "family": "llama",
        "parameter_size": "15M",
        "quantization_level": "Q8_0",
        "capabilities": ["completion"],
        "model_info": _arch(
            "llama",
            blocks=4,
            heads=4,
            kv_heads=2,
            head_dim=64,
            ctx=2048,
            embedding=256,
            ff=768,
            vocab=32000,
            params=15_191_712,
            file_type=7,
        ),
        "license": "Test model of the Ollama API double; no weights.",
        "template": "{{ .Prompt }}",
        "parameters": 'stop                           "</s>"',
    },
}

# Other tags that name the same model, as on ollama.com/library.
ALIASES: dict[str, str] = {
    "llama3.1:latest": "llama3.1:8b-instruct-q4_K_M",
    "llama3.1:8b": "llama3.1:8b-instruct-q4_K_M",
    "llama3.1:8b-instruct": "llama3.1:8b-instruct-q4_K_M",
    "phi3:latest": "phi3:3.8b-mini-4k-instruct-q4_K_M",
    "phi3:mini": "phi3:3.8b-mini-4k-instruct-q4_K_M",
    "phi3:3.8b": "phi3:3.8b-mini-4k-instruct-q4_K_M",
    "deepseek-r1:latest": "deepseek-r1:7b-qwen-distill-q4_K_M",
    "deepseek-r1:7b": "deepseek-r1:7b-qwen-distill-q4_K_M",
    "nomic-embed-text:latest": "nomic-embed-text:v1.5",
    "lanai-test:latest": "lanai-test:tiny",
}


def normalize(name: str) -> str:
    """'llama3.1' -> 'llama3.1:latest'; strips the default registry/namespace."""
    name = name.strip()
    for prefix in (f"{REGISTRY}/{NAMESPACE}/", f"{NAMESPACE}/"):
        if name.startswith(prefix):
            name = name[len(prefix) :]
    if ":" not in name.rsplit("/", 1)[-1]:
        name += ":latest"
    return name


def catalog_entry(name: str) -> dict[str, Any] | None:
    name = normalize(name)
    return CATALOG.get(ALIASES.get(name, name))


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def layers_for(name: str) -> list[dict[str, Any]]:
    """The blobs of a catalog model: the GGUF weights and three small files."""
    entry = catalog_entry(name)
    assert entry is not None
    canonical = ALIASES.get(normalize(name), normalize(name))
    small = [
        (MEDIA_TEMPLATE, entry["template"]),
        (MEDIA_LICENSE, entry["license"]),
        (MEDIA_PARAMS, json.dumps({"stop": []})),
    ]
    weights = entry["size"] - sum(len(body.encode()) for _, body in small)
    out = [
        {
            "mediaType": MEDIA_MODEL,
            "digest": "sha256:" + sha("weights:" + canonical),
            "size": weights,
        }
    ]
    out += [
        {"mediaType": media, "digest": "sha256:" + sha(body), "size": len(body.encode())}
        for media, body in small
    ]
    return out


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def now() -> datetime:
    return datetime.now(UTC).astimezone()


def iso(ts: datetime) -> str:
    return ts.isoformat(timespec="microseconds")


def parse_duration(value: Any, default: float) -> float:
    """keep_alive: seconds (number) or Go duration ("5m", "1h30m", "-1").

    Returns seconds; a negative value means "forever".
    """
    if value is None or value == "":
        return default
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        pass
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    sign = -1 if text.startswith("-") else 1
    parts = re.findall(r"([0-9.]+)(ns|us|µs|ms|s|m|h)", text.lstrip("+-"))
    if not parts:
        raise ValueError(f"time: invalid duration {text!r}")
    return sign * sum(float(n) * units[u] for n, u in parts)


def env_int(name: str, default: int) -> int:
    try:
        return int(float(os.environ.get(name, "") or default))
    except ValueError:
        return default


def kv_bytes_per_element() -> float:
    """f16 cache unless flash attention is on and a quantized type is asked for."""
    flash = os.environ.get("OLLAMA_FLASH_ATTENTION", "").lower() in ("1", "true")
    kind = os.environ.get("OLLAMA_KV_CACHE_TYPE", "f16").lower()
    if flash and kind == "q8_0":
        return 1.0
    if flash and kind == "q4_0":
        return 0.5625  # 4.5 bits per element with the block scales
    return 2.0


def human_size(n: int) -> str:
    for unit, div in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= div:
            return f"{n / div:.1f} {unit}" if n / div < 10 else f"{round(n / div)} {unit}"
    return f"{n} B"


# --------------------------------------------------------------------------
# State
# --------------------------------------------------------------------------


class Store:
    """Pulled models on disk (manifests) and loaded models in memory."""

    def __init__(self, models_dir: str | os.PathLike[str] | None = None) -> None:
        default = Path.home() / ".ollama" / "models"
        self.root = Path(models_dir or os.environ.get("OLLAMA_MODELS") or default)
        self.lock = threading.RLock()
        self.loaded: dict[str, dict[str, Any]] = {}

    # -- manifests --------------------------------------------------------
    def manifest_path(self, name: str) -> Path:
        name = normalize(name)
        repo, tag = name.rsplit(":", 1)
        parts = repo.split("/")
        if len(parts) == 1:
            host_repo = f"{REGISTRY}/{NAMESPACE}/{repo}"
        elif len(parts) == 2:
            host_repo = f"{REGISTRY}/{repo}"
        else:
            host_repo = repo  # host/namespace/model
        return self.root / "manifests" / host_repo / tag

    def names(self) -> list[str]:
        base = self.root / "manifests"
        if not base.is_dir():
            return []
        out = []
        for path in base.rglob("*"):
            if path.is_file() and not path.name.startswith("."):
                host, *rest = path.relative_to(base).parts
                repo = "/".join(rest[:-1])
                if host == REGISTRY and repo.startswith(NAMESPACE + "/"):
                    repo = repo[len(NAMESPACE) + 1 :]
                elif host != REGISTRY:
                    repo = f"{host}/{repo}"
                out.append(f"{repo}:{rest[-1]}")
        return sorted(out)

    def read(self, name: str) -> dict[str, Any] | None:
        path = self.manifest_path(name)
        try:
            manifest = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        raw = path.read_bytes()
        return {
            "name": normalize(name),
            "manifest": manifest,
            "digest": hashlib.sha256(raw).hexdigest(),
            "size": sum(layer["size"] for layer in manifest["layers"]) + manifest["config"]["size"],
            "modified_at": iso(datetime.fromtimestamp(path.stat().st_mtime, UTC).astimezone()),
        }

    def write(self, name: str) -> None:
        entry = catalog_entry(name)
        assert entry is not None
        config = json.dumps(
            {
                "model_format": "gguf",
                "model_family": entry["family"],
                "model_families": [entry["family"]],
                "model_type": entry["parameter_size"],
                "file_type": entry["quantization_level"],
                "architecture": "amd64",
                "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": []},
            }
        )
        manifest = {
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": {
                "mediaType": MEDIA_CONFIG,
                "digest": "sha256:" + sha(config),
                "size": len(config),
            },
            "layers": layers_for(name),
        }
        path = self.manifest_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(manifest))
        tmp.replace(path)

    def delete(self, name: str) -> bool:
        path = self.manifest_path(name)
        with self.lock:
            self.loaded.pop(normalize(name), None)
            try:
                path.unlink()
            except FileNotFoundError:
                return False
        parent = path.parent
        while parent != self.root and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent
        return True

    def copy(self, source: str, destination: str) -> bool:
        src = self.manifest_path(source)
        if not src.is_file():
            return False
        dst = self.manifest_path(destination)
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(src.read_bytes())
        return True

    # -- loaded models ----------------------------------------------------
    def expire(self) -> None:
        t = time.time()
        with self.lock:
            for name in [
                n for n, m in self.loaded.items() if m["expires"] is not None and m["expires"] <= t
            ]:
                del self.loaded[name]

    def load(self, name: str, keep_alive: Any, options: dict[str, Any]) -> dict[str, Any]:
        """Put a model in memory (as /api/ps reports it); keep_alive 0 unloads."""
        name = normalize(name)
        entry = catalog_entry(name)
        assert entry is not None
        default_keep = parse_duration(os.environ.get("OLLAMA_KEEP_ALIVE"), 300)
        seconds = parse_duration(keep_alive, default_keep)
        with self.lock:
            self.expire()
            if seconds == 0:
                self.loaded.pop(name, None)
                return {}
            info = entry["model_info"]
            arch = info["general.architecture"]
            ctx = int(options.get("num_ctx") or env_int("OLLAMA_CONTEXT_LENGTH", 4096))
            ctx = min(ctx, info[f"{arch}.context_length"])
            parallel = max(1, env_int("OLLAMA_NUM_PARALLEL", 1))
            kv = (
                2
                * info[f"{arch}.block_count"]
                * info[f"{arch}.attention.head_count_kv"]
                * info[f"{arch}.attention.key_length"]
                * ctx
                * parallel
                * kv_bytes_per_element()
            )
            # compute graph: a few hundred MiB on real hardware
            graph = min(512 * 1024**2, info[f"{arch}.embedding_length"] * ctx * 4)
            size = int(entry["size"] + kv + graph)
            max_loaded = env_int("OLLAMA_MAX_LOADED_MODELS", 3)
            self.loaded.pop(name, None)
            while max_loaded > 0 and len(self.loaded) >= max_loaded:
                oldest = min(self.loaded, key=lambda n: self.loaded[n]["since"])
                del self.loaded[oldest]
            vram_total = env_int("OLLAMA_DOUBLE_VRAM_BYTES", 0)
            vram_used = sum(m["size_vram"] for m in self.loaded.values())
            size_vram = max(0, min(size, vram_total - vram_used)) if vram_total > 0 else 0
            record = {
                "name": name,
                "size": size,
                "size_vram": size_vram,
                "context_length": ctx,
                "since": time.time(),
                "expires": None if seconds < 0 else time.time() + seconds,
            }
            self.loaded[name] = record
            return record


# --------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def details(entry: dict[str, Any]) -> dict[str, Any]:
    return {
        "parent_model": "",
        "format": "gguf",
        "family": entry["family"],
        "families": [entry["family"]],
        "parameter_size": entry["parameter_size"],
        "quantization_level": entry["quantization_level"],
    }


REPLY = (
    "This is a reply from the Ollama API test double used by lanai's tests; "
    "no language model ran to produce it."
)


class Handler(BaseHTTPRequestHandler):
    server_version = "ollama-api-double/" + VERSION
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # small NDJSON writes must not wait for ACKs
    store: Store  # set by make_server

    # -- plumbing -----------------------------------------------------------
    def log_message(self, format: str, *args: Any) -> None:
        if os.environ.get("OLLAMA_DEBUG") or os.environ.get("OLLAMA_DOUBLE_LOG", "1") == "1":
            sys.stderr.write(f"[ollama-double] {self.address_string()} {format % args}\n")

    def send_json(self, status: int, body: Any) -> None:
        data = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def send_text(self, status: int, text: str) -> None:
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def stream(self, items: Iterator[dict[str, Any]]) -> None:
        """NDJSON with chunked transfer encoding, like Ollama's streams."""
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for item in items:
            line = json.dumps(item, separators=(",", ":")).encode() + b"\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")

    def body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw.strip():
            if self.command in ("POST", "DELETE"):
                raise ApiError(400, "missing request body")
            return {}
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise ApiError(400, f"invalid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ApiError(400, "request body must be a JSON object")
        return data

    def model_name(self, body: dict[str, Any]) -> str:
        name = body.get("model") or body.get("name")
        if not name or not isinstance(name, str):
            raise ApiError(400, "model is required")
        return normalize(name)

    def dispatch(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/") or "/"
        route = ROUTES.get((self.command if self.command != "HEAD" else "GET", path))
        try:
            if route is None:
                if any(p == path for _, p in ROUTES):
                    raise ApiError(405, "405 method not allowed")
                raise ApiError(404, "404 page not found")
            route(self)
        except ApiError as exc:
            if exc.status in (404, 405) and exc.message.startswith(str(exc.status)):
                self.send_text(exc.status, exc.message)
            else:
                self.send_json(exc.status, {"error": exc.message})
        except (BrokenPipeError, ConnectionResetError):
            pass

    do_GET = do_POST = do_DELETE = do_HEAD = dispatch

    # -- endpoints ----------------------------------------------------------
    def root(self) -> None:
        self.send_text(200, "Ollama is running")

    def version(self) -> None:
        self.send_json(200, {"version": VERSION})

    def tags(self) -> None:
        models = []
        for name in self.store.names():
            found = self.store.read(name)
            entry = catalog_entry(name)
            if found is None or entry is None:
                continue
            models.append(
                {
                    "name": name,
                    "model": name,
                    "modified_at": found["modified_at"],
                    "size": found["size"],
                    "digest": found["digest"],
                    "details": details(entry),
                }
            )
        models.sort(key=lambda m: m["modified_at"], reverse=True)
        self.send_json(200, {"models": models})

    def require_local(self, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
        found = self.store.read(name)
        entry = catalog_entry(name)
        if found is None or entry is None:
            raise ApiError(404, f"model '{name}' not found")
        return found, entry

    def show(self) -> None:
        body = self.body()
        name = self.model_name(body)
        found, entry = self.require_local(name)
        blob = found["manifest"]["layers"][0]["digest"].replace(":", "-")
        self.send_json(
            200,
            {
                "license": entry["license"],
                "modelfile": (
                    f'# Modelfile generated by "ollama show"\n'
                    f"# To build a new Modelfile based on this one, replace the FROM line with:\n"
                    f"# FROM {name}\n\n"
                    f"FROM {self.store.root / 'blobs' / blob}\n"
                    f'TEMPLATE """{entry["template"]}"""\n'
                ),
                "parameters": entry["parameters"],
                "template": entry["template"],
                "details": details(entry),
                "model_info": dict(entry["model_info"]),
                "tensors": [],
                "capabilities": list(entry["capabilities"]),
                "modified_at": found["modified_at"],
            },
        )

    def ps(self) -> None:
        self.store.expire()
        models = []
        with self.store.lock:
            loaded = sorted(self.store.loaded.values(), key=lambda m: -m["since"])
        for rec in loaded:
            found = self.store.read(rec["name"])
            entry = catalog_entry(rec["name"])
            if found is None or entry is None:
                continue
            expires = (
                datetime(2318, 1, 1, tzinfo=UTC)
                if rec["expires"] is None
                else datetime.fromtimestamp(rec["expires"], UTC)
            )
            models.append(
                {
                    "name": rec["name"],
                    "model": rec["name"],
                    "size": rec["size"],
                    "digest": found["digest"],
                    "details": details(entry),
                    "expires_at": iso(expires.astimezone()),
                    "size_vram": rec["size_vram"],
                    "context_length": rec["context_length"],
                }
            )
        self.send_json(200, {"models": models})

    def pull(self) -> None:
        body = self.body()
        name = self.model_name(body)
        streaming = body.get("stream", True) is not False
        events = self.pull_events(name)
        if streaming:
            self.stream(events)
            return
        last: dict[str, Any] = {}
        for event in events:
            if "error" in event:
                raise ApiError(500, event["error"])
            last = event
        self.send_json(200, last)

    def pull_events(self, name: str) -> Iterator[dict[str, Any]]:
        yield {"status": "pulling manifest"}
        if catalog_entry(name) is None:
            yield {"error": "pull model manifest: file does not exist"}
            return
        rate = float(os.environ.get("OLLAMA_DOUBLE_PULL_BYTES_PER_SEC") or 1e11)
        have = self.store.read(name) is not None
        for layer in layers_for(name):
            total = layer["size"]
            status = f"pulling {layer['digest'][7:19]}"
            if have:
                yield {
                    "status": status,
                    "digest": layer["digest"],
                    "total": total,
                    "completed": total,
                }
                continue
            yield {"status": status, "digest": layer["digest"], "total": total}
            # about ten progress events per layer, paced by the simulated rate
            step = max(1, math.ceil(total / 10))
            done = 0
            while done < total:
                chunk = min(step, total - done)
                time.sleep(chunk / rate)
                done += chunk
                yield {
                    "status": status,
                    "digest": layer["digest"],
                    "total": total,
                    "completed": done,
                }
        yield {"status": "verifying sha256 digest"}
        yield {"status": "writing manifest"}
        self.store.write(name)
        yield {"status": "success"}

    def delete(self) -> None:
        name = self.model_name(self.body())
        if not self.store.delete(name):
            raise ApiError(404, f"model '{name}' not found")
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def copy(self) -> None:
        body = self.body()
        source, destination = body.get("source"), body.get("destination")
        if not source or not destination:
            raise ApiError(400, "source and destination are required")
        if not self.store.copy(source, destination):
            raise ApiError(404, f"model '{normalize(source)}' not found")
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def runnable(self, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        name = self.model_name(body)
        entry = catalog_entry(name)
        if self.store.read(name) is None or entry is None:
            raise ApiError(404, f'model "{name}" not found, try pulling it first')
        return name, entry

    def generate_like(self, chat: bool) -> None:
        body = self.body()
        name, entry = self.runnable(body)
        if chat:
            prompt = "".join(str(m.get("content", "")) for m in body.get("messages") or [])
            empty = not body.get("messages")
        else:
            prompt = str(body.get("prompt") or "")
            empty = not prompt
        if "embedding" in entry["capabilities"] and "completion" not in entry["capabilities"]:
            raise ApiError(400, f'"{name}" does not support {"chat" if chat else "generate"}')
        try:
            loaded = self.store.load(name, body.get("keep_alive"), body.get("options") or {})
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        start = time.monotonic_ns()

        def frame(text: str, done: bool, reason: str | None = None) -> dict[str, Any]:
            out: dict[str, Any] = {"model": name, "created_at": iso(now())}
            if chat:
                out["message"] = {"role": "assistant", "content": text}
            else:
                out["response"] = text
            out["done"] = done
            if reason:
                out["done_reason"] = reason
            return out

        if empty:
            self.send_json(200, frame("", True, "load" if loaded else "unload"))
            return
        words = REPLY.split(" ")
        pieces = [w + (" " if i < len(words) - 1 else "") for i, w in enumerate(words)]

        def final(text: str) -> dict[str, Any]:
            out = frame(text, True, "stop")
            elapsed = max(1, time.monotonic_ns() - start)
            out.update(
                {
                    "total_duration": elapsed + 1_000_000,
                    "load_duration": 1_000_000,
                    "prompt_eval_count": max(1, len(prompt.split())),
                    "prompt_eval_duration": elapsed // 2 + 1,
                    "eval_count": len(pieces),
                    "eval_duration": elapsed // 2 + 1,
                }
            )
            if not chat:
                out["context"] = [1, 2, 3]
            return out

        if body.get("stream", True) is False:
            self.send_json(200, final(REPLY))
            return
        self.stream(iter([frame(p, False) for p in pieces] + [final("")]))

    def generate(self) -> None:
        self.generate_like(chat=False)

    def chat(self) -> None:
        self.generate_like(chat=True)

    def vector(self, name: str, text: str, dim: int) -> list[float]:
        seed = hashlib.sha256(f"{name}\0{text}".encode()).digest()
        raw = []
        while len(raw) < dim:
            seed = hashlib.sha256(seed).digest()
            raw.extend((b - 127.5) / 127.5 for b in seed)
        raw = raw[:dim]
        norm = math.sqrt(sum(x * x for x in raw)) or 1.0
        return [round(x / norm, 8) for x in raw]

    def embed(self) -> None:
        body = self.body()
        name, entry = self.runnable(body)
        inputs = body.get("input", "")
        texts = [inputs] if isinstance(inputs, str) else [str(t) for t in inputs]
        self.store.load(name, body.get("keep_alive"), body.get("options") or {})
        info = entry["model_info"]
        dim = info[f"{info['general.architecture']}.embedding_length"]
        self.send_json(
            200,
            {
                "model": name,
                "embeddings": [self.vector(name, t, dim) for t in texts],
                "total_duration": 14_143_917,
                "load_duration": 1_019_500,
                "prompt_eval_count": sum(max(1, len(t.split())) for t in texts),
            },
        )

    def embeddings(self) -> None:
        body = self.body()
        name, entry = self.runnable(body)
        self.store.load(name, body.get("keep_alive"), body.get("options") or {})
        info = entry["model_info"]
        dim = info[f"{info['general.architecture']}.embedding_length"]
        self.send_json(200, {"embedding": self.vector(name, str(body.get("prompt", "")), dim)})

    def openai_models(self) -> None:
        data = []
        for name in self.store.names():
            path = self.store.manifest_path(name)
            data.append(
                {
                    "id": name,
                    "object": "model",
                    "created": int(path.stat().st_mtime),
                    "owned_by": NAMESPACE if "/" not in name else name.split("/")[0],
                }
            )
        self.send_json(200, {"object": "list", "data": data})


ROUTES: dict[tuple[str, str], Any] = {
    ("GET", "/"): Handler.root,
    ("GET", "/api/version"): Handler.version,
    ("GET", "/api/tags"): Handler.tags,
    ("GET", "/api/ps"): Handler.ps,
    ("POST", "/api/show"): Handler.show,
    ("POST", "/api/pull"): Handler.pull,
    ("DELETE", "/api/delete"): Handler.delete,
    ("POST", "/api/copy"): Handler.copy,
    ("POST", "/api/generate"): Handler.generate,
    ("POST", "/api/chat"): Handler.chat,
    ("POST", "/api/embed"): Handler.embed,
    ("POST", "/api/embeddings"): Handler.embeddings,
    ("GET", "/v1/models"): Handler.openai_models,
}


def parse_host(value: str | None) -> tuple[str, int]:
    """OLLAMA_HOST forms: '', 'host', 'host:port', ':port', 'http://host:port'."""
    value = (value or "").strip()
    value = re.sub(r"^[a-z]+://", "", value).rstrip("/")
    if not value:
        return DEFAULT_HOST, DEFAULT_PORT
    if value.startswith("["):  # [::1]:11434
        host, _, rest = value[1:].partition("]")
        port = rest.lstrip(":")
        return host, int(port) if port else DEFAULT_PORT
    if value.count(":") == 1:
        host, port = value.split(":")
        return host or DEFAULT_HOST, int(port) if port else DEFAULT_PORT
    return value, DEFAULT_PORT


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def make_server(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    models_dir: str | os.PathLike[str] | None = None,
) -> Server:
    store = Store(models_dir)
    handler = type("BoundHandler", (Handler,), {"store": store})
    server = Server((host, port), handler)
    server.store = store  # type: ignore[attr-defined]
    return server


def serve() -> None:
    host, port = parse_host(os.environ.get("OLLAMA_HOST"))
    server = make_server(host, port)
    sys.stderr.write(
        f"ollama-api-double {VERSION}: Listening on {host}:{port} "
        f"(models in {server.store.root}; a test double, not Ollama)\n"  # type: ignore[attr-defined]
    )
    # PID 1 in a container: SIGTERM is ignored unless handled.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    serve()
