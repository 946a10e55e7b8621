"""A test double of Ollama's HTTP API. It is not Ollama.

The end-to-end tests deploy the example state, whose compose stack runs
``ollama/ollama:0.24.0``. No Ollama binary (nor its image) can be had on the
test machine, so ``tests/images/build.sh`` builds that tag from this file: a
small standard-library server that answers the endpoints lanai and Open WebUI
use with the same JSON shapes as real Ollama (docs/api.md of ollama/ollama):

    GET  /  /api/version  /api/tags  /api/ps  /v1/models
    POST /api/pull  /api/show  /api/generate  /api/chat  /api/embed
         /api/embeddings  /api/copy  /api/create
    HEAD/POST /api/blobs/sha256:<hex>
    DELETE /api/delete

"Models" come from a built-in catalog with real architecture numbers and
sizes. A pull goes over the network as Ollama's does: the manifest from the
registry (GET /v2/<namespace>/<model>/manifests/<tag> at registry.ollama.ai,
resolved by host name; the stand-in is registry.py beside this file), then
each blob by digest, verified; it streams realistic progress paced by the
declared sizes (the registry serves a few-byte stand-in for the weights) and
writes the manifest as sent and the small blobs (config, template, license,
params) under $OLLAMA_MODELS, so pulled models survive a restart of the
container.
/api/create derives a model from a pulled (or created) one, with its own
system prompt, template, parameters, messages and LoRA adapter (a blob
uploaded first), stored the same way. Loading a model (generate/chat/embed)
puts it in /api/ps with a size computed from its weights plus a KV cache
that follows Ollama's memory knobs (OLLAMA_CONTEXT_LENGTH,
OLLAMA_NUM_PARALLEL, OLLAMA_FLASH_ATTENTION, OLLAMA_KV_CACHE_TYPE,
OLLAMA_MAX_LOADED_MODELS, OLLAMA_KEEP_ALIVE) and the model's num_ctx.

Test-only knobs:
    OLLAMA_DOUBLE_REGISTRY            where the default registry is reached (default
                                      http://registry.ollama.ai: plain HTTP, where
                                      Ollama uses HTTPS)
    OLLAMA_DOUBLE_PULL_BYTES_PER_SEC  simulated download speed (default 1e11:
                                      a 5 GB pull takes about 50 ms)
    OLLAMA_DOUBLE_VRAM_BYTES          simulated GPU memory (default 0: no GPU,
                                      every model has size_vram 0)
    <models>/.double-fail-pull        a file in the models directory
                                      ($OLLAMA_MODELS, else ~/.ollama/models;
                                      /root/.ollama/models in the image), read
                                      at every pull so a test can toggle it
                                      with `docker exec`: pulls of the model
                                      names listed in it, one per line (`*`
                                      for all, `#` comments; other tags of the
                                      same model match too), fail after
                                      "pulling manifest" with the error Ollama
                                      gives when the registry cannot be
                                      resolved. Pulls that /api/create makes
                                      for a missing base fail the same way.
    OLLAMA_DOUBLE_PULL_WRITES         set (to anything): a pull writes the bytes it
                                      "downloads" (zeros) to blobs/sha256-<hex>-partial
                                      as Ollama does, so a disk that fills up fails the
                                      pull half way with Ollama's error (off by default:
                                      the example's models weigh GBs)

Product code never knows about this double: it talks to "Ollama".
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import re
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
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
MEDIA_SYSTEM = "application/vnd.ollama.image.system"
MEDIA_MESSAGES = "application/vnd.ollama.image.messages"
MEDIA_ADAPTER = "application/vnd.ollama.image.adapter"
TEXT_MEDIA = (MEDIA_TEMPLATE, MEDIA_LICENSE, MEDIA_PARAMS, MEDIA_SYSTEM, MEDIA_MESSAGES)
MEDIA_CONFIG = "application/vnd.docker.container.image.v1+json"
MEDIA_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
FAIL_PULL_FILE = ".double-fail-pull"
BLOB_DIGEST = re.compile(r"^sha256[:-]([0-9a-fA-F]{64})$")


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

# The larger models the 12/16/24 GB templates of desired-state/templates name. Sizes
# are the GGUF files' on ollama.com/library; architectures from the models' configs.
def _variant(base: str, size: int, quant: str, file_type: int, **arch: Any) -> dict[str, Any]:
    entry = dict(CATALOG[base])
    entry["size"], entry["quantization_level"] = size, quant
    info = dict(entry["model_info"])
    info["general.file_type"] = file_type
    name = info["general.architecture"]
    for key, value in arch.items():
        info[f"{name}.{key}"] = value
    entry["model_info"] = info
    return entry


def _qwen2(size: int, *, blocks: int, ff: int, params: int, ctx: int, parameter_size: str,
           template_from: str) -> dict[str, Any]:
    entry = dict(CATALOG[template_from])
    entry.update(size=size, parameter_size=parameter_size, quantization_level="Q4_K_M")
    entry["model_info"] = _arch("qwen2", blocks=blocks, heads=40, kv_heads=8, head_dim=128,
                                ctx=ctx, embedding=5120, ff=ff, vocab=152064, params=params,
                                file_type=15)
    return entry


CATALOG["llama3.1:8b-instruct-q8_0"] = _variant(
    "llama3.1:8b-instruct-q4_K_M", 8_540_775_840, "Q8_0", 7)
CATALOG["deepseek-r1:14b-qwen-distill-q4_K_M"] = _qwen2(
    8_988_110_976, blocks=48, ff=13824, params=14_770_033_664, ctx=131072,
    parameter_size="14.8B", template_from="deepseek-r1:7b-qwen-distill-q4_K_M")
CATALOG["deepseek-r1:32b-qwen-distill-q4_K_M"] = _qwen2(
    19_851_336_256, blocks=64, ff=27648, params=32_763_876_352, ctx=131072,
    parameter_size="32.8B", template_from="deepseek-r1:7b-qwen-distill-q4_K_M")
CATALOG["qwen2.5:14b-instruct-q4_K_M"] = _qwen2(
    8_988_110_976, blocks=48, ff=13824, params=14_770_033_664, ctx=32768,
    parameter_size="14.8B", template_from="deepseek-r1:7b-qwen-distill-q4_K_M")
CATALOG["qwen2.5:32b-instruct-q4_K_M"] = _qwen2(
    19_851_336_256, blocks=64, ff=27648, params=32_763_876_352, ctx=32768,
    parameter_size="32.8B", template_from="deepseek-r1:7b-qwen-distill-q4_K_M")
for _name in ("qwen2.5:14b-instruct-q4_K_M", "qwen2.5:32b-instruct-q4_K_M"):
    CATALOG[_name] = {**CATALOG[_name], "capabilities": ["completion", "tools"],
                      "license": "Apache License Version 2.0"}


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


def go_json(value: Any) -> str:
    """JSON as Go's json.Encoder writes it: sorted keys, HTML-escaped, newline."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
    for char, escape in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e")):
        text = text.replace(char, escape)
    return text + "\n"


def catalog_params(entry: dict[str, Any]) -> dict[str, Any]:
    """A catalog entry's parameters text ("key  value" lines) as the params JSON."""
    out: dict[str, Any] = {}
    for line in entry["parameters"].splitlines():
        key, _, raw = line.strip().partition(" ")
        raw = raw.strip()
        value: Any = json.loads(raw) if raw.startswith('"') else float(raw)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if key == "stop":
            out.setdefault(key, []).append(value)
        else:
            out[key] = value
    return out


def format_param(value: Any) -> str:
    """A parameter value as Ollama's /api/show prints it (Go's %#v)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def format_params(params: dict[str, Any]) -> str:
    lines = []
    for key in sorted(params):
        values = params[key] if isinstance(params[key], list) else [params[key]]
        lines += [f"{key:<30} {format_param(v)}" for v in values]
    return "\n".join(lines)


def layers_for(name: str) -> list[dict[str, Any]]:
    """The blobs of a catalog model: the GGUF weights and three small files."""
    return [{k: v for k, v in layer.items() if k != "body"} for layer in catalog_layers(name)]


def catalog_layers(name: str) -> list[dict[str, Any]]:
    """layers_for, with the "body" of the small layers (written as blobs by a pull)."""
    entry = catalog_entry(name)
    assert entry is not None
    canonical = ALIASES.get(normalize(name), normalize(name))
    small = [
        (MEDIA_TEMPLATE, entry["template"]),
        (MEDIA_LICENSE, entry["license"]),
        (MEDIA_PARAMS, go_json(catalog_params(entry))),
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
        {
            "mediaType": media,
            "digest": "sha256:" + sha(body),
            "size": len(body.encode()),
            "body": body,
        }
        for media, body in small
    ]
    return out


_WEIGHTS: dict[str, str] = {}


def weights_owner(digest: str) -> str | None:
    """The catalog model whose weights blob has this digest (created models share it)."""
    if not _WEIGHTS:
        _WEIGHTS.update({layers_for(name)[0]["digest"]: name for name in CATALOG})
    return _WEIGHTS.get(digest)


def registry_location(name: str) -> tuple[str, str, str]:
    """(base URL, repository, tag) Ollama pulls a model from.

    The default registry is reached at $OLLAMA_DOUBLE_REGISTRY (default
    http://registry.ollama.ai: by its host name, over plain HTTP where real
    Ollama speaks HTTPS); a name with its own host is pulled from http://<host>.
    """
    repo, tag = normalize(name).rsplit(":", 1)
    parts = repo.split("/")
    default = (os.environ.get("OLLAMA_DOUBLE_REGISTRY") or f"http://{REGISTRY}").rstrip("/")
    if len(parts) == 1:
        return default, f"{NAMESPACE}/{repo}", tag
    if len(parts) == 2:
        return default, repo, tag
    return f"http://{parts[0]}", "/".join(parts[1:]), tag


def registry_url(name: str) -> str:
    """Where Ollama fetches a model's manifest from."""
    base, repo, tag = registry_location(name)
    return f"{base}/v2/{repo}/manifests/{tag}"


def manifest_config(entry: dict[str, Any], layers: list[dict[str, Any]]) -> bytes:
    """The config blob of a model's manifest."""
    return json.dumps(
        {
            "model_format": "gguf",
            "model_family": entry["family"],
            "model_families": [entry["family"]],
            "model_type": entry["parameter_size"],
            "file_type": entry["quantization_level"],
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [layer["digest"] for layer in layers]},
        }
    ).encode()


def manifest_bytes(config: bytes, layers: list[dict[str, Any]]) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": {
                "mediaType": MEDIA_CONFIG,
                "digest": "sha256:" + hashlib.sha256(config).hexdigest(),
                "size": len(config),
            },
            "layers": layers,
        }
    ).encode()


def weights_stand_in(name: str) -> bytes:
    """What the registry serves for a catalog model's weights blob.

    Its sha256 is the weights digest the manifest names, so a pull verifies it; the
    manifest still declares the real model's size (GBs), which lanai's disk and VRAM
    checks read, while only these few bytes travel.
    """
    return ("weights:" + ALIASES.get(normalize(name), normalize(name))).encode()


def catalog_manifest(name: str) -> tuple[bytes, dict[str, bytes]]:
    """What a registry holds for a catalog model: its manifest and blobs by digest."""
    entry = catalog_entry(name)
    assert entry is not None
    layers = catalog_layers(name)
    blobs = {layers[0]["digest"]: weights_stand_in(name)}
    for layer in layers[1:]:
        blobs[layer["digest"]] = layer.pop("body").encode()
    config = manifest_config(entry, layers)
    blobs["sha256:" + hashlib.sha256(config).hexdigest()] = config
    return manifest_bytes(config, layers), blobs


class RegistryError(Exception):
    """A pull could not get something from the registry; the text is Ollama's (Go's)."""


def registry_get(url: str, accept: str | None = None) -> bytes:
    """GET from the registry, failing with the words Go's net/http would use."""
    request = urllib.request.Request(url, headers={"User-Agent": f"ollama/{VERSION}"})
    if accept:
        request.add_header("Accept", accept)
    host = urllib.parse.urlsplit(url).netloc
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.read()
    except urllib.error.HTTPError as exc:
        raise RegistryError(f"{exc.code}" if exc.code != 404 else "file does not exist") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, socket.gaierror):
            cause = f"dial tcp: lookup {host.split(':')[0]}: no such host"
        elif isinstance(reason, TimeoutError):
            cause = f"dial tcp {host}: i/o timeout"
        elif isinstance(reason, OSError) and reason.errno in (errno.ENETUNREACH,
                                                               errno.EHOSTUNREACH):
            cause = f"dial tcp {host}: connect: network is unreachable"
        elif isinstance(reason, OSError) and reason.errno == errno.ECONNREFUSED:
            cause = f"dial tcp {host}: connect: connection refused"
        else:
            cause = str(reason)
        raise RegistryError(f'Get "{url}": {cause}') from exc


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
        return 34 / 32  # blocks of 32 int8 plus an f16 scale
    if flash and kind == "q4_0":
        return 0.5625  # 4.5 bits per element with the block scales
    return 2.0


def write_zeros(path: Path, size: int) -> None:
    """Append `size` zero bytes to `path`, a MiB at a time (the disk sees every write)."""
    block = bytes(min(size, 1 << 20))
    with path.open("ab", buffering=0) as out:
        left = size
        while left > 0:
            left -= out.write(block[:left])


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

    def write_manifest(
        self, name: str, entry: dict[str, Any], layers: list[dict[str, Any]]
    ) -> None:
        config = manifest_config(entry, layers)
        self.write_blob(config)
        self.write_raw_manifest(name, manifest_bytes(config, layers))

    def write_raw_manifest(self, name: str, raw: bytes) -> None:
        """A manifest as the registry sent it: its sha256 is the model's digest."""
        path = self.manifest_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{threading.get_ident()}.tmp")
        tmp.write_bytes(raw)
        tmp.replace(path)

    # -- blobs ------------------------------------------------------------
    def blob_path(self, digest: str) -> Path | None:
        """blobs/sha256-<hex>, as Ollama names them; None for a malformed digest."""
        match = BLOB_DIGEST.match(digest or "")
        if match is None:
            return None
        return self.root / "blobs" / f"sha256-{match.group(1).lower()}"

    def write_blob(self, data: bytes) -> tuple[str, bool]:
        """Store bytes as a blob; returns its digest and whether it was already there."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        path = self.blob_path(digest)
        assert path is not None
        if path.is_file():
            return digest, True
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{threading.get_ident()}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
        return digest, False

    def blob_text(self, digest: str) -> str | None:
        path = self.blob_path(digest)
        try:
            if path is None or path.stat().st_size > 4 * 1024 * 1024:
                return None
            return path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None

    # -- what a manifest amounts to ----------------------------------------
    def entry(self, name: str) -> dict[str, Any] | None:
        """The model behind a local name: its catalog entry with its own layers applied."""
        found = self.read(name)
        return None if found is None else self.entry_for(found["manifest"])

    def entry_for(self, manifest: dict[str, Any]) -> dict[str, Any] | None:
        layers = manifest.get("layers") or []
        weights = next((layer for layer in layers if layer.get("mediaType") == MEDIA_MODEL), None)
        base = weights_owner(weights["digest"]) if weights else None
        if base is None:
            return None
        catalog = CATALOG[base]
        entry = dict(catalog)
        entry.update(
            base=base,
            parent=weights.get("from", "") if weights else "",
            params=catalog_params(catalog),
            system="",
            messages=[],
            adapters=[],
            size=sum(layer["size"] for layer in layers),
        )
        licenses = []
        for layer in layers:
            media, digest = layer.get("mediaType"), layer.get("digest", "")
            if media == MEDIA_ADAPTER:
                entry["adapters"].append(digest)
            if media not in TEXT_MEDIA:
                continue
            text = self.blob_text(digest)
            if text is None:  # a manifest written before blobs were kept
                if media == MEDIA_LICENSE:
                    licenses.append(catalog["license"])
                continue
            try:
                if media == MEDIA_TEMPLATE:
                    entry["template"] = text
                elif media == MEDIA_SYSTEM:
                    entry["system"] = text
                elif media == MEDIA_LICENSE:
                    licenses.append(text)
                elif media == MEDIA_PARAMS:
                    entry["params"] = dict(json.loads(text))
                elif media == MEDIA_MESSAGES:
                    entry["messages"] = list(json.loads(text))
            except (ValueError, TypeError):
                continue
        entry["license"] = "\n".join(licenses)
        entry["parameters"] = format_params(entry["params"])
        return entry

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
        entry = self.entry(name)
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
            # Request options beat the model's own parameters, which beat the
            # server default, as in Ollama (api.DefaultOptions, then the params
            # layer, then the request).
            ctx = int(
                options.get("num_ctx")
                or entry["params"].get("num_ctx")
                or env_int("OLLAMA_CONTEXT_LENGTH", 4096)
            )
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
            # Compute graph: Ollama's full-offload formula for llama-like models
            # (fs/ggml GraphSize): f32 activations and attention scores for a batch.
            tokens = ctx * parallel
            batch = min(512, tokens)
            embedding = info[f"{arch}.embedding_length"]
            heads = info[f"{arch}.attention.head_count"]
            graph = max(4 * batch * (1 + 4 * embedding + tokens * (1 + heads)),
                        4 * batch * (embedding + info[f"{arch}.vocab_size"]))
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


def details(entry: dict[str, Any], parent: str = "") -> dict[str, Any]:
    return {
        "parent_model": parent,
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

    def progress(self, events: Iterator[dict[str, Any]], streaming: bool) -> None:
        """Answer with progress events as Ollama's streamResponse/waitForStream do.

        An error before anything was streamed is an HTTP error with a JSON
        body (status from the event's "_status", else 500); a later one is an
        {"error": ...} line that ends a 200 stream. Without streaming, the
        last event (or the error) is the whole answer.
        """
        events = iter(events)
        first = next(events, None)
        if first is not None and "error" in first:
            self.send_json(first.get("_status", 500), {"error": first["error"]})
            return
        if not streaming:
            last = first or {}
            for event in events:
                if "error" in event:
                    self.send_json(event.get("_status", 500), {"error": event["error"]})
                    return
                last = event
            self.send_json(200, last)
            return

        def until_error() -> Iterator[dict[str, Any]]:
            if first is None:
                return
            yield first
            for event in events:
                if "error" in event:
                    yield {"error": event["error"]}
                    return
                yield event

        self.stream(until_error())

    def iter_body(self) -> Iterator[bytes]:
        """The raw request body, by Content-Length or chunked transfer encoding."""
        self.body_consumed = True
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            while True:
                size_line = self.rfile.readline(1024)
                size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return
                left = size
                while left:
                    data = self.rfile.read(min(left, 1 << 20))
                    if not data:
                        raise ConnectionResetError
                    left -= len(data)
                    yield data
                self.rfile.readline(1024)  # CRLF after the chunk
        left = int(self.headers.get("Content-Length") or 0)
        while left > 0:
            data = self.rfile.read(min(left, 1 << 20))
            if not data:
                raise ConnectionResetError
            left -= len(data)
            yield data

    def send_empty(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def body(self) -> dict[str, Any]:
        self.body_consumed = True
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
        if path.startswith("/api/blobs/") and path.count("/") == 3:
            route = BLOB_ROUTES.get(self.command) or Handler.wrong_method
        self.body_consumed = False
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
            self.close_connection = True
            return
        if not self.body_consumed:
            # A body left unread would be taken for the next request on this
            # keep-alive connection.
            try:
                for _ in self.iter_body():
                    pass
            except (OSError, ValueError):
                self.close_connection = True

    do_GET = do_POST = do_DELETE = do_HEAD = dispatch

    def wrong_method(self) -> None:
        raise ApiError(405, "405 method not allowed")

    # -- endpoints ----------------------------------------------------------
    def root(self) -> None:
        self.send_text(200, "Ollama is running")

    def version(self) -> None:
        self.send_json(200, {"version": VERSION})

    def tags(self) -> None:
        models = []
        for name in self.store.names():
            found = self.store.read(name)
            entry = None if found is None else self.store.entry_for(found["manifest"])
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
        entry = None if found is None else self.store.entry_for(found["manifest"])
        if found is None or entry is None:
            raise ApiError(404, f"model '{name}' not found")
        return found, entry

    def show(self) -> None:
        body = self.body()
        name = self.model_name(body)
        found, entry = self.require_local(name)
        blob = found["manifest"]["layers"][0]["digest"].replace(":", "-")
        modelfile = (
            f'# Modelfile generated by "ollama show"\n'
            f"# To build a new Modelfile based on this one, replace the FROM line with:\n"
            f"# FROM {name}\n\n"
            f"FROM {self.store.root / 'blobs' / blob}\n"
        )
        for digest in entry["adapters"]:
            modelfile += f"ADAPTER {self.store.root / 'blobs' / digest.replace(':', '-')}\n"
        modelfile += f'TEMPLATE """{entry["template"]}"""\n'
        if entry["system"]:
            modelfile += f'SYSTEM """{entry["system"]}"""\n'
        for line in entry["parameters"].splitlines():
            modelfile += f"PARAMETER {line}\n"
        for message in entry["messages"]:
            modelfile += f'MESSAGE {message.get("role")} """{message.get("content")}"""\n'
        if entry["license"]:
            modelfile += f'LICENSE """{entry["license"]}"""\n'
        shown: dict[str, Any] = {
            "license": entry["license"],
            "modelfile": modelfile,
            "parameters": entry["parameters"],
            "template": entry["template"],
        }
        if entry["system"]:
            shown["system"] = entry["system"]
        shown.update(
            {
                "details": details(entry, entry["parent"]),
                "model_info": dict(entry["model_info"]),
                "tensors": [],
                "capabilities": list(entry["capabilities"]),
                "modified_at": found["modified_at"],
            }
        )
        if entry["messages"]:
            shown["messages"] = entry["messages"]
        self.send_json(200, shown)

    def ps(self) -> None:
        self.store.expire()
        models = []
        with self.store.lock:
            loaded = sorted(self.store.loaded.values(), key=lambda m: -m["since"])
        for rec in loaded:
            found = self.store.read(rec["name"])
            entry = None if found is None else self.store.entry_for(found["manifest"])
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

    def partial_path(self, digest: str) -> Path:
        """blobs/sha256-<hex>-partial, emptied: where a pull writes what it downloads."""
        blob = self.store.blob_path(digest)
        assert blob is not None
        blob.parent.mkdir(parents=True, exist_ok=True)
        partial = blob.with_name(blob.name + "-partial")
        partial.write_bytes(b"")
        return partial

    def pull_should_fail(self, name: str) -> bool:
        """Whether $OLLAMA_MODELS/.double-fail-pull lists this model (or `*`)."""
        try:
            text = (self.store.root / FAIL_PULL_FILE).read_text()
        except OSError:
            return False
        listed = {
            line.strip()
            for line in text.splitlines()
            if line.strip() and not line.strip().startswith("#")
        }
        if "*" in listed:
            return True
        wanted = normalize(name)
        for item in listed:
            item = normalize(item)
            if item == wanted or ALIASES.get(item, item) == ALIASES.get(wanted, wanted):
                return True
        return False

    def pull_events(self, name: str) -> Iterator[dict[str, Any]]:
        """Ollama's PullModel: the manifest from the registry, then each blob by digest
        (verified), then the manifest written as the registry sent it."""
        yield {"status": "pulling manifest"}
        if self.pull_should_fail(name):
            # What Ollama says when the registry's name does not resolve.
            _, repo, tag = registry_location(name)
            host = REGISTRY if normalize(name).count("/") < 2 else normalize(name).split("/")[0]
            url = f"https://{host}/v2/{repo}/manifests/{tag}"
            yield {"error": f'pull model manifest: Get "{url}": dial tcp: lookup {host}: '
                   "no such host"}
            return
        base, repo, _ = registry_location(name)
        try:
            raw = registry_get(registry_url(name), MEDIA_MANIFEST)
            manifest = json.loads(raw)
            config = str(manifest["config"]["digest"])
            layers = list(manifest["layers"])
        except RegistryError as exc:
            yield {"error": f"pull model manifest: {exc}"}
            return
        except (ValueError, KeyError, TypeError):
            yield {"error": "pull model manifest: invalid manifest"}
            return
        rate = float(os.environ.get("OLLAMA_DOUBLE_PULL_BYTES_PER_SEC") or 1e11)
        writes = bool(os.environ.get("OLLAMA_DOUBLE_PULL_WRITES"))
        fetched: dict[str, bytes] = {}
        for layer in layers:
            digest, total = layer["digest"], int(layer["size"])
            status = f"pulling {digest[7:19]}"
            blob = self.store.blob_path(digest)
            weights = layer.get("mediaType") == MEDIA_MODEL
            # The weights blob is only written with OLLAMA_DOUBLE_PULL_WRITES (GBs of
            # zeros); otherwise a model pulled before stands for it.
            have = (blob is not None and blob.is_file()) or (
                weights and not writes and self.store.read(name) is not None)
            if have:
                yield {"status": status, "digest": digest, "total": total, "completed": total}
                continue
            yield {"status": status, "digest": digest, "total": total}
            try:
                data = registry_get(f"{base}/v2/{repo}/blobs/{digest}")
            except RegistryError as exc:
                yield {"error": f"download blob {digest}: {exc}"}
                return
            if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
                yield {"error": f"digest mismatch, file must be downloaded again: want {digest}"}
                return
            if not weights:
                fetched[digest] = data
            partial = self.partial_path(digest) if writes and weights else None
            # about ten progress events per layer, paced by the simulated rate
            step = max(1, math.ceil(total / 10))
            done = 0
            while done < total:
                chunk = min(step, total - done)
                time.sleep(chunk / rate)
                if partial is not None:
                    try:
                        write_zeros(partial, chunk)
                    except OSError as exc:  # Ollama keeps the partial file to resume from
                        yield {"error": f"write {partial}: {os.strerror(exc.errno or 0).lower()}"}
                        return
                done += chunk
                yield {"status": status, "digest": digest, "total": total, "completed": done}
            if partial is not None:
                partial.replace(partial.with_name(partial.name.removesuffix("-partial")))
        try:
            fetched[config] = registry_get(f"{base}/v2/{repo}/blobs/{config}")
        except RegistryError as exc:
            yield {"error": f"download blob {config}: {exc}"}
            return
        yield {"status": "verifying sha256 digest"}
        if "sha256:" + hashlib.sha256(fetched[config]).hexdigest() != config:
            yield {"error": f"digest mismatch, file must be downloaded again: want {config}"}
            return
        for data in fetched.values():
            self.store.write_blob(data)
        yield {"status": "writing manifest"}
        self.store.write_raw_manifest(name, raw)
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

    # -- create ---------------------------------------------------------------
    def create(self) -> None:
        body = self.body()
        name = self.model_name(body)
        for key in ("files", "adapters"):
            value = body.get(key)
            if value is None:
                continue
            if not isinstance(value, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()
            ):
                raise ApiError(
                    400,
                    f"json: cannot unmarshal {key} into Go struct field "
                    f"CreateRequest.{key} of type map[string]string",
                )
            for file_name, digest in value.items():
                if not digest:
                    raise ApiError(400, "invalid digest format")
                if file_name.startswith("/") or ".." in file_name.split("/"):
                    raise ApiError(400, "file path must be relative")
        self.progress(self.create_events(name, body), body.get("stream", True) is not False)

    def blob_kind(self, files: dict[str, str]) -> str:
        """Ollama's detectModelTypeFromFiles: by extension, else by GGUF magic."""
        for file_name, digest in files.items():
            if file_name.endswith(".safetensors"):
                return "safetensors"
            if file_name.endswith(".gguf"):
                return "gguf"
            path = self.store.blob_path(digest)
            try:
                with open(path or "", "rb") as fh:
                    if fh.read(4) == b"GGUF":
                        return "gguf"
            except OSError:
                return ""
        return ""

    def gguf_blob(self, digest: str) -> dict[str, Any] | None:
        """An error event unless the blob is on disk and starts like a GGUF file."""
        path = self.store.blob_path(digest)
        if path is None:
            return {"error": "invalid digest format", "_status": 400}
        try:
            with path.open("rb") as fh:
                magic = fh.read(4)
        except OSError:
            return {"error": f"open {path}: no such file or directory", "_status": 400}
        if magic != b"GGUF":
            return {"error": "supplied file was not in GGUF format", "_status": 400}
        return None

    def create_events(self, name: str, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Ollama's CreateHandler for a model derived from a local (or pullable) one."""
        store = self.store
        source = str(body.get("from") or "")
        files = body.get("files") or {}
        adapters = body.get("adapters") or {}
        if source:
            source = normalize(source)
            if store.read(source) is None:
                # Ollama pulls a missing base first (parseFromModel -> PullModel).
                for event in self.pull_events(source):
                    yield event
                    if "error" in event:
                        return
            found = store.read(source)
            base = None if found is None else store.entry_for(found["manifest"])
            if found is None or base is None:
                yield {"error": f"model '{source}' not found", "_status": 404}
                return
            layers = [dict(layer, **{"from": source}) for layer in found["manifest"]["layers"]]
        elif files:
            yield {"status": "parsing GGUF"}
            for digest in files.values():
                problem = self.gguf_blob(digest)
                if problem:
                    yield problem
                    return
            yield {
                "error": "the Ollama API double cannot import GGUF weights; "
                "create from a catalog model instead",
                "_status": 400,
            }
            return
        else:
            yield {"error": "neither 'from' or 'files' was specified", "_status": 400}
            return

        if adapters:
            kind = self.blob_kind(adapters)
            if kind != "gguf":
                error = "supplied file was not in GGUF format" if kind else "unknown type"
                yield {"error": error, "_status": 400}
                return
            if len(adapters) > 1:
                yield {"error": "only one adapter is currently supported", "_status": 400}
                return
            for file_name, digest in adapters.items():
                yield {"status": "parsing GGUF"}
                problem = self.gguf_blob(digest)
                if problem:
                    yield problem
                    return
                path = store.blob_path(digest)
                assert path is not None
                layers.append(
                    {
                        "mediaType": MEDIA_ADAPTER,
                        "digest": "sha256:" + path.name[7:],
                        "size": path.stat().st_size,
                        "from": file_name,
                    }
                )
        if body.get("quantize") or body.get("quantization"):
            yield {
                "error": "create-time quantization is only supported for safetensors imports; "
                "quantize GGUF models with llama.cpp tools before importing"
            }
            return

        statuses: dict[str, str] = {}

        def put(media: str, data: str, replace: bool = True) -> None:
            nonlocal layers
            if replace:
                layers = [layer for layer in layers if layer["mediaType"] != media]
            digest, existed = store.write_blob(data.encode())
            verb = "using existing" if existed else "creating new"
            statuses[digest] = f"{verb} layer {digest}"
            layers.append({"mediaType": media, "digest": digest, "size": len(data.encode())})

        if body.get("template"):
            put(MEDIA_TEMPLATE, str(body["template"]))
        if body.get("system"):
            put(MEDIA_SYSTEM, str(body["system"]))
        licenses = body.get("license")
        for text in [licenses] if isinstance(licenses, str) else licenses or []:
            if text:
                put(MEDIA_LICENSE, str(text), replace=False)
        params = dict(body.get("parameters") or {})
        for key, value in base["params"].items():
            params.setdefault(key, value)  # the request's keys win, as in setParameters
        if params:
            put(MEDIA_PARAMS, go_json(params))
        messages = body.get("messages") or []
        if messages:
            put(
                MEDIA_MESSAGES,
                go_json([{"role": m.get("role"), "content": m.get("content")} for m in messages]),
            )
        for layer in layers:
            digest = layer["digest"]
            yield {"status": statuses.get(digest, f"using existing layer {digest}")}
        yield {"status": "writing manifest"}
        store.write_manifest(name, base, layers)
        yield {"status": "success"}

    # -- blobs ----------------------------------------------------------------
    def blob_digest(self) -> tuple[str, Path]:
        raw = self.path.split("?", 1)[0].rstrip("/").rsplit("/", 1)[1]
        path = self.store.blob_path(raw)
        if path is None:
            raise ApiError(400, "invalid digest format")
        return raw, path

    def head_blob(self) -> None:
        raw, path = self.blob_digest()
        if not path.is_file():
            raise ApiError(404, f'blob "{raw}" not found')
        self.send_empty(200)

    def create_blob(self) -> None:
        raw, path = self.blob_digest()
        if path.is_file():
            for _ in self.iter_body():
                pass  # keep the connection usable
            self.send_empty(200)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{threading.get_ident()}.tmp")
        digest = hashlib.sha256()
        try:
            with tmp.open("wb") as fh:
                for chunk in self.iter_body():
                    digest.update(chunk)
                    fh.write(chunk)
            got = "sha256:" + digest.hexdigest()
            if got != "sha256:" + path.name[7:]:
                raise ApiError(400, f'digest mismatch, expected "{raw}", got "{got}"')
            tmp.replace(path)
        finally:
            tmp.unlink(missing_ok=True)
        self.send_empty(201)

    def runnable(self, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        name = self.model_name(body)
        entry = self.store.entry(name)
        if entry is None:
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
    ("POST", "/api/create"): Handler.create,
    ("POST", "/api/generate"): Handler.generate,
    ("POST", "/api/chat"): Handler.chat,
    ("POST", "/api/embed"): Handler.embed,
    ("POST", "/api/embeddings"): Handler.embeddings,
    ("GET", "/v1/models"): Handler.openai_models,
}
BLOB_ROUTES: dict[str, Any] = {"HEAD": Handler.head_blob, "POST": Handler.create_blob}


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
