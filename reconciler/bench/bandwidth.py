"""How close to the hardware: GPU memory bandwidth and the bytes one token reads.

Generating one token reads (about) every weight once
plus the KV cache up to the current position, so memory bandwidth bounds the
speed: ``limit tok/s = bandwidth / bytes read per token``. We report
``gen tok/s / limit`` as "% of bandwidth limit", with bytes per token taken as:

* the model's weight bytes (the GGUF size that ``/api/tags`` lists), plus
* the KV cache read at the mean generation position (prompt tokens + half the
  generated tokens), when its size per token is known (architecture from
  ``/api/show``, the cache type Ollama really uses).

This is an approximation. It overstates the bytes somewhat (the token embedding
matrix is looked up, not read whole; sliding-window layers read only their
window), and it is meaningless for mixture-of-experts models, which read only
the active experts: there the figure can pass 100 %. When only ``/api/ps`` size
is known (weights + KV cache allocated for the whole context + compute buffers)
the bytes are an upper bound, so the percentage is too: it is shown as "≤ N%".
A partly CPU-offloaded model is bound by system RAM, not the GPU: read its
percentage together with the CPU/GPU column.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from reconciler.bench.results import ModelResult, PromptResult

# Vendor memory-bandwidth specs in GB/s (NVIDIA product pages and datasheets),
# keyed by the name nvidia-smi prints. Where one name covers two memory
# configurations (RTX 3060 8/12 GB, 3060 Ti GDDR6/6X, 3080 10/12 GB) the
# common one is listed.
GPU_BANDWIDTH_GBS: dict[str, float] = {
    "NVIDIA GeForce RTX 3060": 360,
    "NVIDIA GeForce RTX 3060 Ti": 448,
    "NVIDIA GeForce RTX 3070": 448,
    "NVIDIA GeForce RTX 3070 Ti": 608,
    "NVIDIA GeForce RTX 3080": 760,
    "NVIDIA GeForce RTX 3080 Ti": 912,
    "NVIDIA GeForce RTX 3090": 936,
    "NVIDIA GeForce RTX 3090 Ti": 1008,
    "NVIDIA GeForce RTX 4060": 272,
    "NVIDIA GeForce RTX 4060 Ti": 288,
    "NVIDIA GeForce RTX 4070": 504,
    "NVIDIA GeForce RTX 4070 SUPER": 504,
    "NVIDIA GeForce RTX 4070 Ti": 504,
    "NVIDIA GeForce RTX 4070 Ti SUPER": 672,
    "NVIDIA GeForce RTX 4080": 717,
    "NVIDIA GeForce RTX 4080 SUPER": 736,
    "NVIDIA GeForce RTX 4090": 1008,
    "NVIDIA GeForce RTX 4090 D": 1008,
    "NVIDIA GeForce RTX 5060 Ti": 448,
    "NVIDIA GeForce RTX 5070": 672,
    "NVIDIA GeForce RTX 5070 Ti": 896,
    "NVIDIA GeForce RTX 5080": 960,
    "NVIDIA GeForce RTX 5090": 1792,
    "NVIDIA RTX A4000": 448,
    "NVIDIA RTX A4500": 640,
    "NVIDIA RTX A5000": 768,
    "NVIDIA RTX A6000": 768,
    "NVIDIA RTX 6000 Ada Generation": 960,
    "Tesla T4": 320,
    "NVIDIA A10": 600,
    "NVIDIA A10G": 600,
    "NVIDIA L4": 300,
    "NVIDIA L40": 864,
    "NVIDIA L40S": 864,
    "NVIDIA A100-PCIE-40GB": 1555,
    "NVIDIA A100-SXM4-40GB": 1555,
    "NVIDIA A100 80GB PCIe": 1935,
    "NVIDIA A100-SXM4-80GB": 2039,
    "NVIDIA H100 PCIe": 2000,
    "NVIDIA H100 80GB HBM3": 3350,  # the SXM5 part
    "NVIDIA H100 NVL": 3900,
    "NVIDIA H200": 4800,
    "NVIDIA H200 NVL": 4800,
}

# Words that say nothing about the chip.
_NOISE_TOKENS = frozenset({"nvidia", "geforce", "tesla", "gpu"})
# Words that name a different chip or memory system when the table entry lacks
# them: "RTX 3070 Ti" is not an "RTX 3070", a laptop 4090 is not a desktop one,
# an "A100 80GB" is not the 40 GB table row.
_VARIANT_TOKENS = frozenset(
    {"ti", "super", "laptop", "mobile", "max", "q", "ada", "pro", "nvl", "pcie",
     "sxm", "sxm2", "sxm4", "sxm5", "hbm3", "hbm3e", "hbm2e"}
)  # fmt: skip
_MEMORY_TOKEN = re.compile(r"\d+gb")


def _tokens(name: str) -> frozenset[str]:
    # "RTX 3070Ti" and "RTX 3070 Ti" are the same card.
    text = re.sub(r"(\d)(ti|super)\b", r"\1 \2", name.lower())
    return frozenset(re.findall(r"[a-z0-9]+", text)) - _NOISE_TOKENS


def _is_variant(token: str) -> bool:
    return token in _VARIANT_TOKENS or bool(_MEMORY_TOKEN.fullmatch(token))


_TABLE_TOKENS = [(_tokens(key), key) for key in GPU_BANDWIDTH_GBS]


def gpu_table_key(gpu_name: str) -> str | None:
    """The GPU_BANDWIDTH_GBS entry a GPU name matches, or None.

    An entry matches when all its words are in the name (case, spacing and
    "NVIDIA"/"GeForce" aside) and the name has no variant word (Ti, SUPER,
    Laptop, a memory size, ...) that the entry lacks; of several matches the
    longest entry wins ("RTX 4090 D" over "RTX 4090").
    """
    name = _tokens(gpu_name)
    matches = [
        (len(tokens), len(key), key)
        for tokens, key in _TABLE_TOKENS
        if tokens and tokens <= name and not any(_is_variant(t) for t in name - tokens)
    ]
    return max(matches)[2] if matches else None


def bandwidth_for(gpu_name: str) -> float | None:
    """Memory bandwidth (GB/s) of a GPU by name, or None for an unknown card."""
    key = gpu_table_key(gpu_name)
    return None if key is None else GPU_BANDWIDTH_GBS[key]


def bandwidth_pct(gen_tps: float, bytes_per_token: float, bandwidth_gbs: float) -> float:
    """Generation speed as a percentage of what the memory bandwidth allows."""
    if bytes_per_token <= 0 or bandwidth_gbs <= 0:
        raise ValueError("bytes_per_token and bandwidth_gbs must be positive")
    limit_tps = bandwidth_gbs * 1e9 / bytes_per_token
    return gen_tps / limit_tps * 100


def bytes_per_token(model: ModelResult, prompt: PromptResult) -> tuple[float, bool] | None:
    """Estimated bytes read per generated token, and whether it is only an upper bound.

    Weights plus the KV cache at the mean generation position when known;
    otherwise /api/ps size (an upper bound); None when neither is known.
    """
    if model.weights_bytes:
        kv = 0.0
        if model.kv_bytes_per_token and prompt.prompt_tokens is not None:
            position = prompt.prompt_tokens + (prompt.gen_tokens or 0) / 2
            kv = model.kv_bytes_per_token * position
        return model.weights_bytes + kv, False
    if model.size:
        return float(model.size), True
    return None


@dataclass(frozen=True)
class BandwidthFacts:
    """What lets us estimate bytes read per generated token (see this module's doc).

    The CLI fills it from /api/tags and /api/show, e.g. with reconciler.models.memory:
    ``weights_bytes = facts.size``,
    ``kv_bytes_per_token = kv_bytes_per_token(facts, kv_type_for(facts, runtime))``.
    """

    weights_bytes: int | None = None  # /api/tags "size": the GGUF file
    kv_bytes_per_token: float | None = None  # per token of context, all layers, cache type


@dataclass(frozen=True)
class GpuInfo:
    """The GPU a run was measured on (bandwidth from the table at the time)."""

    name: str
    memory_mib: int | None = None
    bandwidth_gbs: float | None = None

    @classmethod
    def for_card(cls, name: str, memory_mib: int | None = None) -> GpuInfo:
        return cls(name, memory_mib, bandwidth_for(name))
