"""How much GPU memory an Ollama model needs at a given context, and the largest context that
keeps it entirely on the GPU. Pure: no I/O, facts in, numbers out.

The estimate follows what Ollama's scheduler reserves when it decides how many layers go to
the GPU. A model that needs more than that spills layers to the CPU (`ollama ps` then shows
e.g. "48%/52% CPU/GPU") and runs several times slower; the point of this module is to choose
a context that never lets that happen.

    total = weights + kv_cache + compute + overhead

weights    the model as /api/tags lists it: every repeating layer plus the output layer is
           offloaded, so all of it is on the GPU.
kv_cache   kv_bytes_per_token(cache type) * context * parallel: Ollama allocates the cache for
           num_ctx tokens in each of OLLAMA_NUM_PARALLEL slots.
compute    the compute graph: max(partial, full offload) of GraphSize in Ollama's
           fs/ggml/ggml.go, at context * parallel and the batch size. llm/server.go
           (llamaServer.Load) and older llm/memory.go (EstimateGPULayers) both reserve the
           larger of the two while laying out layers. Formulas exist for llama, qwen2 and the
           gemma family; other architectures get the llama one, the common decoder shape
           (attention scores, hidden states, logits), which is larger than Ollama's own
           fallback (GQA * KV / 6) for usual models.
overhead   457 MiB CUDA minimum (ml.DeviceInfo.MinimumMemory; discover's cudaMinimumMemory
           before it), one layer kept free as a buffer (llm/server.go: "Use the size of one
           layer as a buffer"), and OLLAMA_GPU_OVERHEAD (envconfig.GpuOverhead, default 0).

Deliberate differences from Ollama, each erring on the side of more memory:

- Quantized KV caches use the real ggml block sizes (q8_0 stores 32 values in 34 bytes,
  q4_0 in 18), which is what llama.cpp allocates; Ollama's estimate rounds them to 1 and 0.5.
- The buffer layer is size / (block_count + 1): /api/show does not list tensor sizes, so
  the size of blk.0 that Ollama reads from the GGUF is not known here.
- Flash attention only changes the KV cache type. The real compute buffer is smaller with it
  (the attention score matrix is never materialised), but Ollama's llama.cpp runner, which
  serves llama, qwen2, phi3 and most GGUF models, reserves the formula regardless, and that
  reservation is what decides whether layers spill. Architectures on Ollama's own engine
  (qwen3, gemma3, gpt-oss, ...) are measured by Ollama instead; for them this errs high, as it
  does for sliding-window caches (gemma2/3), which are counted at full context.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, asdict, dataclass, fields
from typing import Any

MIB = 1024**2
# ml.DeviceInfo.MinimumMemory (discover/gpu.go cudaMinimumMemory in older Ollama): VRAM the
# CUDA context and runtime take outside any model allocation.
CUDA_MINIMUM_MEMORY = 457 * MIB
# Used in the logits term when a model's vocabulary size is unknown: Qwen2's, among the
# largest common ones, so an unknown vocabulary errs high.
DEFAULT_VOCAB = 152_064

# Bytes per cached element. q8_0 and q4_0 are ggml blocks of 32 values: 32 quants plus one f16
# scale, i.e. 32 + 2 = 34 bytes and 16 + 2 = 18 bytes.
KV_BYTES_PER_ELEMENT: dict[str, float] = {"f16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}


# --------------------------------------------------------------------------------------------
# Facts about a model
# --------------------------------------------------------------------------------------------

_POSITIVE = ("block_count", "head_count", "head_count_kv", "key_length", "value_length",
             "embedding_length", "context_length")
_OPTIONAL_INT = ("vocab_size", "parameter_count")
_OPTIONAL_STR = ("quantization", "digest")


@dataclass(frozen=True)
class ModelFacts:
    """What the estimate needs to know about one model (from /api/show and /api/tags)."""

    name: str
    size: int  # bytes of the model as Ollama lists it (/api/tags "size")
    architecture: str  # general.architecture: "llama", "qwen2", "phi3", ...
    block_count: int
    head_count: int  # the largest, when the GGUF gives one per layer
    head_count_kv: int  # the largest, when the GGUF gives one per layer
    key_length: int
    value_length: int
    embedding_length: int
    context_length: int  # the trained context
    vocab_size: int | None = None
    parameter_count: int | None = None
    quantization: str | None = None  # details.quantization_level, e.g. "Q4_K_M"
    digest: str | None = None
    embedding_only: bool = False  # an embedding model: no completion capability

    def __post_init__(self) -> None:
        for name in ("name", "architecture"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"{name}: expected a non-empty string")
        _check_int("size", self.size, minimum=0)
        for name in _POSITIVE:
            _check_int(name, getattr(self, name), minimum=1)
        for name in _OPTIONAL_INT:
            if getattr(self, name) is not None:
                _check_int(name, getattr(self, name), minimum=1)
        for name in _OPTIONAL_STR:
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{name}: expected a string, got {value!r}")
        if not isinstance(self.embedding_only, bool):
            raise ValueError(f"embedding_only: expected true or false, got {self.embedding_only!r}")

    @property
    def supports_flash_attention(self) -> bool:
        """Ollama's SupportsFlashAttention: equal K and V head sizes, not an embedding model,
        not gemma2. Without it a quantized KV cache type is ignored and f16 is used."""
        return (self.key_length == self.value_length and not self.embedding_only
                and self.architecture != "gemma2")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelFacts:
        """The inverse of to_json; a missing, unknown or mistyped field is a ValueError."""
        if not isinstance(data, dict):
            raise ValueError(f"model facts must be a mapping, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown field(s): {', '.join(map(str, unknown))}")
        missing = [f.name for f in fields(cls) if f.default is MISSING and f.name not in data]
        if missing:
            raise ValueError(f"missing field(s): {', '.join(missing)}")
        return cls(**data)

    @classmethod
    def from_show(cls, name: str, show: dict[str, Any], *, size: int,
                  digest: str | None) -> ModelFacts:
        """Facts from Ollama's /api/show response; `size` and `digest` come from /api/tags."""
        info = show.get("model_info") if isinstance(show, dict) else None
        if not isinstance(info, dict):
            raise ValueError(f"{name}: /api/show gave no model_info")
        arch = info.get("general.architecture")
        if not isinstance(arch, str) or not arch:
            raise ValueError(f"{name}: model_info has no general.architecture")

        def key(suffix: str) -> str:
            return f"{arch}.{suffix}"

        heads = _counts(name, info, key("attention.head_count"))
        # GGUF convention (llama.cpp): no head_count_kv means no grouped-query attention.
        kv_heads = (_counts(name, info, key("attention.head_count_kv"))
                    if info.get(key("attention.head_count_kv")) is not None else heads)
        embedding = _info_int(name, info, key("embedding_length"))
        # Ollama's EmbeddingHeadCount: embedding split over the fewest (non-zero) heads.
        head_dim = embedding // min(h for h in heads if h > 0)
        key_length = _info_int(name, info, key("attention.key_length"), default=head_dim)
        value_length = _info_int(name, info, key("attention.value_length"), default=head_dim)
        vocab = _info_int(name, info, key("vocab_size"), default=None)
        tokens = info.get("tokenizer.ggml.tokens")
        if vocab is None and isinstance(tokens, list) and tokens:
            vocab = len(tokens)  # /api/show?verbose lists the tokens themselves
        details = show.get("details") or {}
        capabilities = show.get("capabilities") or []
        return cls(
            name=name,
            size=size,
            architecture=arch,
            block_count=_info_int(name, info, key("block_count")),
            head_count=max(heads),
            head_count_kv=max(kv_heads),
            key_length=key_length,
            value_length=value_length,
            embedding_length=embedding,
            context_length=_info_int(name, info, key("context_length")),
            vocab_size=vocab,
            parameter_count=_info_int(name, info, "general.parameter_count", default=None),
            quantization=details.get("quantization_level") or None,
            digest=digest,
            # Ollama loads models without the completion capability as embedding models.
            embedding_only="embedding" in capabilities and "completion" not in capabilities,
        )


def _check_int(name: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name}: expected a whole number, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name}: expected at least {minimum}, got {value}")


_REQUIRED = object()


def _info_int(model: str, info: dict[str, Any], key: str, default: Any = _REQUIRED) -> Any:
    value = info.get(key)
    if value is None:
        if default is _REQUIRED:
            raise ValueError(f"{model}: model_info has no {key}")
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{model}: model_info {key} is {value!r}, not a whole number")
    return value


def _counts(model: str, info: dict[str, Any], key: str) -> list[int]:
    """A head count, given as one number or one per layer (e.g. 0 for recurrent layers)."""
    value = info.get(key)
    values = value if isinstance(value, list) else [value]
    if value is None or not values or any(
            isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in values):
        raise ValueError(f"{model}: model_info {key} is {value!r}, not a head count")
    if max(values) == 0:
        raise ValueError(f"{model}: model_info {key} has no attention heads")
    return values


# --------------------------------------------------------------------------------------------
# Ollama's settings
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Runtime:
    """Ollama server settings that change memory use."""

    flash_attention: bool = True  # OLLAMA_FLASH_ATTENTION
    kv_cache_type: str = "q8_0"  # OLLAMA_KV_CACHE_TYPE: f16 | q8_0 | q4_0
    parallel: int = 1  # OLLAMA_NUM_PARALLEL: the KV cache holds context * parallel tokens
    batch: int = 512  # num_batch
    gpu_overhead: int = 0  # OLLAMA_GPU_OVERHEAD: bytes Ollama leaves unused on each GPU
    minimum_memory: int = CUDA_MINIMUM_MEMORY  # per-GPU runtime reserve (CUDA: 457 MiB)

    def __post_init__(self) -> None:
        kind = str(self.kv_cache_type).lower()
        if kind not in KV_BYTES_PER_ELEMENT:
            raise ValueError(f"kv_cache_type {self.kv_cache_type!r} is not one of "
                             f"{', '.join(KV_BYTES_PER_ELEMENT)}")
        object.__setattr__(self, "kv_cache_type", kind)
        _check_int("parallel", self.parallel, minimum=1)
        _check_int("batch", self.batch, minimum=1)
        _check_int("gpu_overhead", self.gpu_overhead, minimum=0)
        _check_int("minimum_memory", self.minimum_memory, minimum=0)

    @property
    def effective_kv_type(self) -> str:
        """Ollama uses a quantized cache only with flash attention on; f16 otherwise."""
        return self.kv_cache_type if self.flash_attention else "f16"


def kv_type_for(facts: ModelFacts, runtime: Runtime) -> str:
    """The cache type Ollama uses for this model: f16 unless flash attention works for it."""
    return runtime.effective_kv_type if facts.supports_flash_attention else "f16"


# --------------------------------------------------------------------------------------------
# The estimate
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    """GPU memory one model needs, all of it on the GPU, in bytes."""

    model: str
    context: int  # tokens per parallel slot, as Ollama would allocate them
    weights: int
    kv_cache: int
    compute: int  # compute graph buffers
    overhead: int  # CUDA runtime minimum, one buffer layer, OLLAMA_GPU_OVERHEAD
    kv_cache_type: str = "f16"
    parallel: int = 1

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.compute + self.overhead

    @property
    def loaded_size(self) -> int:
        """About what /api/ps reports as `size` once loaded: Ollama counts weights, cache and
        graph there, not the runtime reserve or the buffer layer."""
        return self.weights + self.kv_cache + self.compute

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "total": self.total}


def kv_bytes_per_token(facts: ModelFacts, cache_type: str = "f16") -> float:
    """KV cache bytes for one token: K and V, every layer, every KV head."""
    if cache_type not in KV_BYTES_PER_ELEMENT:
        raise ValueError(f"cache type {cache_type!r} is not one of "
                         f"{', '.join(KV_BYTES_PER_ELEMENT)}")
    elements = facts.block_count * facts.head_count_kv * (facts.key_length + facts.value_length)
    return elements * KV_BYTES_PER_ELEMENT[cache_type]


def graph_size(facts: ModelFacts, context: int, batch: int) -> tuple[int, int]:
    """(partial, full) offload compute-graph bytes, after GraphSize in Ollama's fs/ggml/ggml.go.

    `context` is the total cached tokens (num_ctx * parallel), as GraphSize multiplies it.
    The terms are f32 activations: 4 * batch * (hidden states + attention scores
    context * heads), or the logits 4 * batch * (embedding + vocab); the partial-offload graph
    also holds dequantised weights of the layer on the CPU (the 9/16 and 105/128 terms).
    """
    e, heads, kv_heads = facts.embedding_length, facts.head_count, facts.head_count_kv
    vocab = facts.vocab_size or DEFAULT_VOCAB
    logits = 4 * batch * (e + vocab)
    output_weights = e * vocab * 105 // 128
    arch = facts.architecture
    if arch == "qwen2":
        full = max(logits, 4 * batch * (1 + 2 * e + context + context * heads))
        partial = max(logits + output_weights,
                      4 * (batch * (1 + 2 * e + context * (1 + heads)) + e * (1 + context)))
    elif arch in ("gemma", "gemma2", "gemma3"):
        k = facts.key_length
        full = max(logits, 4 * batch * (2 + context + context * heads + 2 * e + 2 * k * heads))
        partial = max(4 * e * batch + output_weights + 4 * vocab * batch,
                      4 * batch * (2 * e + 1 + 2 * k * heads + context + context * heads)
                      + 4 * k * context * 8 + e * k * heads * 9 // 16)
    else:  # "llama", and the fallback for every other decoder
        head_dim = e // heads
        full = max(4 * batch * (1 + 4 * e + context * (1 + heads)), logits)
        partial = 4 * batch * e + max(
            4 * batch * (1 + e + max(context, e)) + e * e * 9 // 16
            + 4 * context * (batch * heads + head_dim * kv_heads),
            logits + output_weights,
        )
    return partial, full


def estimate(facts: ModelFacts, context: int, runtime: Runtime = Runtime()) -> Estimate:
    """Memory to hold `facts` entirely on the GPU at `context` tokens per slot.

    The context is clamped to the trained context, as Ollama clamps num_ctx.
    """
    _check_int("context", context, minimum=1)
    ctx = min(context, facts.context_length)
    # Ollama loads embedding models with one slot, and a batch as large as the context.
    parallel = 1 if facts.embedding_only else runtime.parallel
    tokens = ctx * parallel
    batch = max(runtime.batch, tokens) if facts.embedding_only else min(runtime.batch, tokens)
    kv_type = kv_type_for(facts, runtime)
    kv = math.ceil(kv_bytes_per_token(facts, kv_type) * tokens)
    compute = max(graph_size(facts, tokens, batch))
    buffer_layer = facts.size // (facts.block_count + 1) + math.ceil(kv / facts.block_count)
    return Estimate(
        model=facts.name,
        context=ctx,
        weights=facts.size,
        kv_cache=kv,
        compute=compute,
        overhead=runtime.minimum_memory + runtime.gpu_overhead + buffer_layer,
        kv_cache_type=kv_type,
        parallel=parallel,
    )


def max_context(facts: ModelFacts, budget: int, runtime: Runtime = Runtime(), *,
                step: int = 256, minimum: int = 2048) -> int | None:
    """The largest context, a multiple of `step` up to the trained context, whose estimate
    fits in `budget`; None when not even `minimum` (or the trained context, if smaller) fits.
    """
    _check_int("step", step, minimum=1)
    _check_int("minimum", minimum, minimum=1)
    trained = facts.context_length
    top = trained - trained % step if trained >= step else trained
    floor = min(minimum, top)

    def fits(context: int) -> bool:
        return estimate(facts, context, runtime).total <= budget

    if not fits(floor):
        return None
    # The estimate grows with the context, so bisect over the multiples of step above floor.
    lo, hi, best = floor // step + 1, top // step, floor
    while lo <= hi:
        mid = (lo + hi) // 2
        if fits(mid * step):
            best, lo = mid * step, mid + 1
        else:
            hi = mid - 1
    return best


# --------------------------------------------------------------------------------------------
# Fit against a budget
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fit:
    """A model's estimate against the GPU memory it may use."""

    estimate: Estimate
    budget: int
    fits: bool
    over: int  # bytes over budget (0 when it fits)
    gpu_share: float  # of the model's memory on the GPU, like `ollama ps` "48%/52% CPU/GPU"
    requested_context: int | str = "max"
    note: str | None = None  # e.g. that the context was clamped to the trained one

    @property
    def cpu_share(self) -> float:
        return 1.0 - self.gpu_share

    def to_json(self) -> dict[str, Any]:
        return {
            "estimate": self.estimate.to_json(),
            "total": self.estimate.total,  # flat too, for tables that merge this into a row
            "budget": self.budget,
            "fits": self.fits,
            "over": self.over,
            "gpu_share": round(self.gpu_share, 4),
            "cpu_share": round(self.cpu_share, 4),
            "requested_context": self.requested_context,
            "note": self.note,
        }


def gpu_share(est: Estimate, budget: int) -> float:
    """Fraction of the model's memory Ollama would put on the GPU within `budget`.

    Ollama's size for a loaded model is weights + KV cache + graph; the runtime reserve and
    buffer are not part of it. Layers go to the GPU while they fit beside the graph; when
    none fit, the whole model runs on the CPU. Layer granularity is ignored.
    """
    if est.total <= budget:
        return 1.0
    model = est.loaded_size
    room = budget - est.overhead - est.compute
    if room <= 0 or model <= 0:
        return 0.0
    return (min(room, est.weights + est.kv_cache) + est.compute) / model


def fit(facts: ModelFacts, budget: int, runtime: Runtime = Runtime(),
        context: int | str = "max", *, step: int = 256, minimum: int = 2048) -> Fit:
    """Fit `facts` into `budget` at `context`: "max" for the largest context that fits (or,
    when none does, the smallest one tried, to say how far it spills), or a number of tokens,
    clamped to the trained context.
    """
    note = None
    if context == "max":
        best = max_context(facts, budget, runtime, step=step, minimum=minimum)
        if best is None:
            best = min(minimum, facts.context_length)
            note = f"does not fit even at a context of {best}"
        est = estimate(facts, best, runtime)
    elif isinstance(context, int) and not isinstance(context, bool):
        est = estimate(facts, context, runtime)
        if context > facts.context_length:
            note = (f"context {context} is more than the {facts.context_length} "
                    f"{facts.name} was trained for; using {facts.context_length}")
    else:
        raise ValueError(f"context must be a number of tokens or 'max', not {context!r}")
    fits = est.total <= budget
    return Fit(estimate=est, budget=budget, fits=fits, over=max(0, est.total - budget),
               gpu_share=gpu_share(est, budget), requested_context=context, note=note)
