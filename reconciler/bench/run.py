"""Measured model speed: the pure core of ``lanai bench``.

A bench run sends a fixed, versioned prompt set to each model through Ollama's
``/api/generate`` (a warm-up first, whose load time is the model's load time),
reads ``/api/ps`` for the CPU/GPU split, and keeps per-prompt medians (with
min and max) of time to first token, prompt tokens/s and generation tokens/s.
Runs are appended to a JSON-lines file on the server together with the commit
and the Ollama settings they were measured under, so a later run can be
compared with the previous comparable one.

Everything here is pure or takes its I/O as arguments (``generate``, ``ps``,
``clock``): the CLI supplies the Ollama client, the tests supply lists of dicts.

How close to the hardware? Generating one token reads (about) every weight once
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

import hashlib
import itertools
import json
import logging
import os
import re
import statistics
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from reconciler.server.record import iso

log = logging.getLogger(__name__)

Generate = Callable[[str, str, dict[str, Any]], Iterator[dict[str, Any]]]
Ps = Callable[[], list[dict[str, Any]]]

# ---------------------------------------------------------------- the prompt set

# Bump when a prompt, num_predict or an option changes: runs are compared only
# within one version (tests pin a digest of the set so a silent edit fails).
PROMPT_SET_VERSION = "1"

SHORT_CHAT = "Write a short story about a lighthouse keeper who repairs an old radio."

# Our own text (a run-of-river hydro plant's operating notes), cycled into a
# long prompt. Content barely matters for speed; length does.
_LONG_SECTIONS: tuple[tuple[str, str], ...] = (
    (
        "Intake and screens",
        "Water enters the plant through a concrete intake set a little upstream of the weir. "
        "A coarse trash rack of steel bars, spaced about ten centimetres apart, keeps out "
        "branches and debris carried by the river, and a finer screen behind it stops leaves "
        "and smaller floating material. Both racks are cleaned by a rake that runs on a timer "
        "and also whenever the level difference across the screen rises above a threshold, "
        "because a clogged screen starves the turbine and wastes head. In autumn the rake may "
        "run every hour. Operators record the differential level each shift, inspect the rake "
        "chain weekly and check that the fish bypass channel beside the intake is open.",
    ),
    (
        "Penstock",
        "From the intake a buried steel penstock carries the water down to the powerhouse, "
        "falling about forty metres over six hundred metres of length. The penstock must never "
        "be emptied or filled quickly: a sudden change in flow creates a pressure wave, water "
        "hammer, that can split a weld or lift a pipe from its supports. For this reason the "
        "inlet valve opens in two stages, first a small bypass valve that fills the pipe "
        "slowly and lets trapped air escape through the vents at the high points, then the "
        "main butterfly valve once the pressures on both sides are equal. Vent valves are "
        "tested every quarter, and the anchor blocks are inspected for cracks after a flood.",
    ),
    (
        "Turbine and governor",
        "The turbine is a horizontal Francis unit rated at about four hundred kilowatts. Its "
        "speed is held constant by a governor that moves the guide vanes: when the electrical "
        "load rises, the speed starts to fall, and the governor opens the vanes to admit more "
        "water. Because the water column in the penstock has inertia, the governor cannot "
        "react too fast without causing pressure swings, so its gains are a compromise between "
        "steady pressure and tight frequency control. The bearings are lubricated by an oil "
        "system with two pumps, one running and one in standby; the standby pump starts by "
        "itself if the oil pressure drops, and a trip stops the unit if both pumps fail.",
    ),
    (
        "Generator and grid",
        "The synchronous generator is connected to the regional grid through a step-up "
        "transformer and a circuit breaker. Before the breaker may close, the synchronizing "
        "relay checks that the voltage, frequency and phase angle of the generator match the "
        "grid within narrow limits; closing out of phase would put a violent torque on the "
        "shaft. Once connected, the grid holds the frequency and the governor controls power "
        "instead, following a set point from the control room or a level controller that keeps "
        "the headpond at its target height. Protection relays trip the breaker on overcurrent, "
        "earth fault, reverse power and loss of excitation, and every trip is logged.",
    ),
    (
        "Monitoring",
        "Every sensor in the plant reports to a small controller that writes one record per "
        "second: river level, headpond level, penstock pressure, guide vane position, speed, "
        "bearing temperatures, vibration, active and reactive power. The records are kept for "
        "a year at full resolution and as hourly averages for ten years. Alarms have two "
        "levels, a warning that asks for attention within the shift and a trip that stops the "
        "unit at once. A warning that repeats is a symptom, not noise: a bearing that runs two "
        "degrees warmer each week usually announces a failing oil cooler long before it trips, "
        "and the trend is visible only to someone who looks at it.",
    ),
    (
        "Floods and shutdown",
        "When the river rises above the flood threshold, the plant is shut down in a fixed "
        "order. The unit is unloaded gradually, the breaker opens at low power, the guide "
        "vanes close, and the main inlet valve closes last and slowly, so that the penstock "
        "stays full. The intake gates are then lowered to keep sediment out of the waterway, "
        "and the spillway gates are opened according to the table posted in the control room. "
        "After the flood nothing restarts until the intake has been inspected, the racks "
        "cleared, the sediment trap flushed and the vents checked; the restart is then the "
        "normal start sequence, with the penstock filled slowly.",
    ),
)

# About 1.3 Llama-3 tokens per English word: ~1250 words is ~1650 tokens, which
# with 128 generated tokens still fits a 2048-token context (older defaults).
LONG_PROMPT_WORDS = 1250


def _build_long_prompt(target_words: int = LONG_PROMPT_WORDS) -> str:
    head = (
        "Below are the operating notes of a small run-of-river hydroelectric plant, "
        "in numbered parts. Read them, then answer the question at the end."
    )
    question = (
        "Question: explain, step by step, how the operators should restart the plant after "
        "a flood, and why each step is done in that order."
    )
    parts = [head]
    words = len(head.split()) + len(question.split())
    for n, (title, body) in enumerate(itertools.cycle(_LONG_SECTIONS), 1):
        section = f"Part {n}: {title}.\n{body}"
        if words + len(section.split()) > target_words:
            break
        parts.append(section)
        words += len(section.split())
    parts.append(question)
    return "\n\n".join(parts)


PROMPTS: dict[str, str] = {
    "short-chat": SHORT_CHAT,
    "long-prompt": _build_long_prompt(),
}
# Both prompts ask for more than this, so every run generates the same count.
NUM_PREDICT: dict[str, int] = {"short-chat": 128, "long-prompt": 128}
# Greedy decoding and a fixed seed: the same tokens each run, comparable runs.
OPTIONS: dict[str, Any] = {"temperature": 0, "seed": 42}
WARMUP_PROMPT = "short-chat"


def options_for(prompt: str) -> dict[str, Any]:
    """The Ollama ``options`` for one prompt of the set."""
    return {**OPTIONS, "num_predict": NUM_PREDICT[prompt]}


def prompt_text(prompt: str, nonce: str) -> str:
    """The text sent for one request: the fixed prompt behind a per-request first line.

    Ollama reuses the KV cache of the longest common prompt prefix, so sending the
    same text twice would evaluate one token the second time and make prompt
    tokens/s meaningless. A different first line defeats the cache and costs a
    handful of tokens.
    """
    return f"Request {nonce}.\n{PROMPTS[prompt]}"


def prompt_set_digest() -> str:
    """A digest of everything that makes runs comparable (pinned by a test)."""
    blob = json.dumps([PROMPTS, NUM_PREDICT, OPTIONS, WARMUP_PROMPT], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


# ---------------------------------------------------------------- one sample


class BenchError(RuntimeError):
    """A generate stream that gave no measurement (an error event, a cut stream)."""


@dataclass(frozen=True)
class Sample:
    """One generate request, timed. Durations in seconds, rates in tokens/s."""

    ttft_s: float | None  # None when the model produced no token at all
    load_s: float
    prompt_tokens: int
    prompt_tps: float | None
    gen_tokens: int
    gen_tps: float | None
    total_s: float  # Ollama's total_duration
    wall_s: float  # as seen by the client, HTTP included
    done_reason: str | None = None


def _has_output(event: Mapping[str, Any]) -> bool:
    # /api/generate streams "response" (and "thinking" for reasoning models);
    # /api/chat nests the same in "message", accepted too so the client may use either.
    if event.get("response") or event.get("thinking"):
        return True
    message = event.get("message")
    return isinstance(message, dict) and bool(message.get("content") or message.get("thinking"))


def _seconds(event: Mapping[str, Any], key: str) -> float:
    return float(event.get(key) or 0) / 1e9


def _rate(count: int, seconds: float) -> float | None:
    return count / seconds if count > 0 and seconds > 0 else None


def sample_from_events(
    events: Iterable[Mapping[str, Any]], *, started: float, clock: Callable[[], float]
) -> Sample:
    """Time one NDJSON stream of /api/generate; ``started`` is clock() before the request."""
    ttft: float | None = None
    seen = 0
    for event in events:
        seen += 1
        if "error" in event:
            raise BenchError(f"Ollama error: {event['error']}")
        if ttft is None and _has_output(event):
            ttft = clock() - started
        if event.get("done"):
            prompt_tokens = int(event.get("prompt_eval_count") or 0)
            gen_tokens = int(event.get("eval_count") or 0)
            return Sample(
                ttft_s=ttft,
                load_s=_seconds(event, "load_duration"),
                prompt_tokens=prompt_tokens,
                prompt_tps=_rate(prompt_tokens, _seconds(event, "prompt_eval_duration")),
                gen_tokens=gen_tokens,
                gen_tps=_rate(gen_tokens, _seconds(event, "eval_duration")),
                total_s=_seconds(event, "total_duration"),
                wall_s=clock() - started,
                done_reason=event.get("done_reason"),
            )
    raise BenchError(f"the stream ended after {seen} events without a final (done) event")


# ---------------------------------------------------------------- results


@dataclass(frozen=True)
class Stat:
    """Median, min and max of the runs' values (None when no run gave one)."""

    median: float | None = None
    min: float | None = None
    max: float | None = None

    @classmethod
    def of(cls, values: Iterable[float | None]) -> Stat:
        known = [v for v in values if v is not None]
        if not known:
            return cls()
        return cls(statistics.median(known), min(known), max(known))


@dataclass
class PromptResult:
    """One prompt's runs on one model: the samples and their statistics."""

    prompt: str
    samples: list[Sample]
    ttft_s: Stat
    prompt_tps: Stat
    gen_tps: Stat
    total_s: Stat
    prompt_tokens: float | None  # medians
    gen_tokens: float | None

    @classmethod
    def summarize(cls, prompt: str, samples: list[Sample]) -> PromptResult:
        return cls(
            prompt=prompt,
            samples=samples,
            ttft_s=Stat.of(s.ttft_s for s in samples),
            prompt_tps=Stat.of(s.prompt_tps for s in samples),
            gen_tps=Stat.of(s.gen_tps for s in samples),
            total_s=Stat.of(s.total_s for s in samples),
            prompt_tokens=Stat.of(s.prompt_tokens for s in samples).median,
            gen_tokens=Stat.of(s.gen_tokens for s in samples).median,
        )


@dataclass(frozen=True)
class BandwidthFacts:
    """What lets us estimate bytes read per generated token (see the module doc).

    The CLI fills it from /api/tags and /api/show, e.g. with reconciler.models.memory:
    ``weights_bytes = facts.size``,
    ``kv_bytes_per_token = kv_bytes_per_token(facts, kv_type_for(facts, runtime))``.
    """

    weights_bytes: int | None = None  # /api/tags "size": the GGUF file
    kv_bytes_per_token: float | None = None  # per token of context, all layers, cache type


@dataclass
class ModelResult:
    """One model's bench: per-prompt results, its first load and /api/ps facts."""

    model: str
    prompts: dict[str, PromptResult] = field(default_factory=dict)
    load_s: float | None = None  # the warm-up's load_duration
    was_loaded: bool | None = None  # already in memory before the warm-up: no cold load
    size: int | None = None  # /api/ps, bytes
    size_vram: int | None = None
    context_length: int | None = None
    weights_bytes: int | None = None
    kv_bytes_per_token: float | None = None
    error: str | None = None

    @property
    def gpu_share(self) -> float | None:
        """Fraction of the loaded model in VRAM (1.0 = all on the GPU)."""
        if not self.size or self.size_vram is None or self.size_vram > self.size:
            return None
        return self.size_vram / self.size

    @property
    def processor(self) -> str:
        return processor_label(self.size, self.size_vram)


def processor_label(size: int | None, size_vram: int | None) -> str:
    """The PROCESSOR column of ``ollama ps``, computed the way Ollama does."""
    if size is None or size_vram is None:
        return "—"
    if size_vram == 0:
        return "100% CPU"
    if size_vram == size:
        return "100% GPU"
    if size_vram > size or size == 0:
        return "Unknown"
    cpu = round((size - size_vram) / size * 100)
    return f"{cpu}%/{100 - cpu}% CPU/GPU"


# ---------------------------------------------------------------- running


def _canonical(name: str) -> str:
    # Ollama lists "llama3.2:latest" for a model pulled as "llama3.2".
    name = name.strip()
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def find_ps(entries: Iterable[Mapping[str, Any]], model: str) -> Mapping[str, Any] | None:
    """The /api/ps entry of ``model`` (matched on name or model, ":latest" implied)."""
    wanted = _canonical(model)
    for entry in entries:
        if any(_canonical(str(entry.get(k) or "")) == wanted for k in ("name", "model")):
            return entry
    return None


def _int_or_none(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) else None


def _error_text(exc: Exception) -> str:
    return str(exc) if isinstance(exc, BenchError) else f"{type(exc).__name__}: {exc}"


def run_bench(
    models: list[str],
    *,
    generate: Generate,
    ps: Ps,
    runs: int = 3,
    warmup: int = 1,
    clock: Callable[[], float] = time.monotonic,
    on_progress: Callable[[str], None] | None = None,
    describe: Callable[[str], BandwidthFacts | None] | None = None,
    salt: str | None = None,
) -> list[ModelResult]:
    """Bench each model in turn; a model that fails gets ``error`` and the others still run.

    ``generate(model, prompt, options)`` streams /api/generate events; ``ps()``
    returns /api/ps "models"; ``describe(model)`` (optional) gives the facts
    for the bandwidth estimate. Nothing is unloaded: the warm-up loads the model
    (its load time is reported) unless it was already in memory, which
    ``was_loaded`` says. ``salt`` makes request nonces unique across bench runs
    (see :func:`prompt_text`); random by default.
    """
    if runs < 1 or warmup < 0:
        raise ValueError("runs must be at least 1 and warmup at least 0")
    say = on_progress or (lambda _message: None)
    salt = salt or uuid.uuid4().hex[:8]
    requests = itertools.count(1)
    nonces = (f"{salt}-{n}" for n in requests)  # one per request of the whole bench
    return [
        _bench_model(model, generate, ps, runs, warmup, clock, say, describe, nonces)
        for model in models
    ]


def _bench_model(
    model: str,
    generate: Generate,
    ps: Ps,
    runs: int,
    warmup: int,
    clock: Callable[[], float],
    say: Callable[[str], None],
    describe: Callable[[str], BandwidthFacts | None] | None,
    nonces: Iterator[str],
) -> ModelResult:
    result = ModelResult(model=model)

    def measure(prompt: str) -> Sample:
        text = prompt_text(prompt, next(nonces))
        started = clock()
        return sample_from_events(
            generate(model, text, options_for(prompt)), started=started, clock=clock
        )

    try:
        result.was_loaded = find_ps(ps(), model) is not None
        for n in range(warmup):
            note = "" if n else " (already loaded)" if result.was_loaded else " (loads the model)"
            say(f"{model}: warm-up {n + 1}/{warmup}{note}")
            sample = measure(WARMUP_PROMPT)
            if n == 0:
                result.load_s = sample.load_s
        for prompt in PROMPTS:
            samples = []
            for n in range(runs):
                say(f"{model}: {prompt} {n + 1}/{runs}")
                samples.append(measure(prompt))
            if result.load_s is None:  # no warm-up: the first run did the loading
                result.load_s = samples[0].load_s
            result.prompts[prompt] = PromptResult.summarize(prompt, samples)
        entry = find_ps(ps(), model) or {}
        result.size = _int_or_none(entry.get("size"))
        result.size_vram = _int_or_none(entry.get("size_vram"))
        result.context_length = _int_or_none(entry.get("context_length"))
    except Exception as exc:  # any client failure is this model's, not the bench's
        result.error = _error_text(exc)
        say(f"{model}: failed: {result.error}")
        return result
    if describe is not None:
        try:
            facts = describe(model)
        except Exception as exc:  # only the bandwidth estimate is lost
            say(f"{model}: no model facts for the bandwidth estimate: {_error_text(exc)}")
            facts = None
        if facts is not None:
            result.weights_bytes = facts.weights_bytes
            result.kv_bytes_per_token = facts.kv_bytes_per_token
    return result


# ---------------------------------------------------------------- bandwidth

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


# ---------------------------------------------------------------- a recorded run


@dataclass(frozen=True)
class GpuInfo:
    """The GPU a run was measured on (bandwidth from the table at the time)."""

    name: str
    memory_mib: int | None = None
    bandwidth_gbs: float | None = None

    @classmethod
    def for_card(cls, name: str, memory_mib: int | None = None) -> GpuInfo:
        return cls(name, memory_mib, bandwidth_for(name))


@dataclass
class BenchRun:
    """One ``lanai bench``: where and under what it ran, and each model's results."""

    id: str
    at: str  # ISO 8601 UTC
    commit: str | None  # the applied state commit
    settings: dict[str, str]  # the Ollama runtime settings (OLLAMA_* and the like)
    gpu: GpuInfo | None  # None: CPU only
    prompt_set_version: str
    results: list[ModelResult]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BenchRun:
        gpu = data.get("gpu")
        return cls(
            id=str(data["id"]),
            at=str(data["at"]),
            commit=data.get("commit"),
            settings=dict(data.get("settings") or {}),
            gpu=_build(GpuInfo, gpu) if isinstance(gpu, dict) else None,
            prompt_set_version=str(data["prompt_set_version"]),
            results=[_model_from_json(m) for m in data.get("results") or []],
        )


def _build(cls: Any, data: Mapping[str, Any], **nested: Any) -> Any:
    # Unknown keys are ignored so that older lanai reads newer lines.
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names}, **nested)


def _prompt_from_json(data: Mapping[str, Any]) -> PromptResult:
    stats = {k: _build(Stat, data.get(k) or {}) for k in ("ttft_s", "prompt_tps", "gen_tps")}
    stats["total_s"] = _build(Stat, data.get("total_s") or {})
    rest = {k: v for k, v in data.items() if k not in stats and k != "samples"}
    samples = [_build(Sample, s) for s in data.get("samples") or []]
    return _build(PromptResult, rest, samples=samples, **stats)


def _model_from_json(data: Mapping[str, Any]) -> ModelResult:
    prompts = {k: _prompt_from_json(v) for k, v in (data.get("prompts") or {}).items()}
    rest = {k: v for k, v in data.items() if k != "prompts"}
    return _build(ModelResult, rest, prompts=prompts)


def new_run(
    results: list[ModelResult],
    *,
    commit: str | None,
    settings: Mapping[str, str],
    gpu: GpuInfo | None,
    now: datetime | None = None,
) -> BenchRun:
    """A BenchRun stamped now (UTC); its id sorts by time."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    return BenchRun(
        id=now.strftime("%Y%m%dT%H%M%S") + f"{now.microsecond // 1000:03d}Z",
        at=iso(now),
        commit=commit,
        settings=dict(settings),
        gpu=gpu,
        prompt_set_version=PROMPT_SET_VERSION,
        results=results,
    )


def append_run(path: Path, run: BenchRun) -> None:
    """Append one JSON line with a single write, then fsync.

    No secrets in it, so 0644. If a crash left a torn last line, start on a new
    line so that only the torn one is lost.
    """
    data = (json.dumps(run.to_json(), separators=(",", ":")) + "\n").encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            data = b"\n" + data
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def load_runs(path: Path, *, warn: Callable[[str], None] | None = None) -> list[BenchRun]:
    """Runs in file order; unreadable lines are skipped and reported through ``warn``.

    A bad last line is the expected leftover of a crash during a write; ``warn``
    defaults to this module's logger.
    """
    warn = warn or log.warning
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return []
    numbered = [(n, line) for n, line in enumerate(lines, 1) if line.strip()]
    runs: list[BenchRun] = []
    for n, line in numbered:
        try:
            data = json.loads(line)
            if not isinstance(data, dict):
                raise TypeError("not an object")
            runs.append(BenchRun.from_json(data))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            where = "the last line (a write cut short?)" if n == numbered[-1][0] else f"line {n}"
            warn(f"{path}: skipped {where}: {type(exc).__name__}: {exc}")
    return runs


# ---------------------------------------------------------------- metrics and compare

METRIC_LABELS: dict[str, str] = {
    "load_s": "load",
    "vram_bytes": "VRAM",
    "ttft_s": "TTFT",
    "prompt_tps": "prompt tok/s",
    "gen_tps": "gen tok/s",
    "pct_limit": "% of bandwidth limit",
}
MODEL_METRICS: tuple[str, ...] = ("load_s", "vram_bytes")
PROMPT_METRICS: tuple[str, ...] = ("ttft_s", "prompt_tps", "gen_tps")
HIGHER_IS_BETTER = frozenset({"prompt_tps", "gen_tps", "pct_limit"})
LOWER_IS_BETTER = frozenset({"load_s", "ttft_s"})


def limit_pct(run: BenchRun, model: ModelResult, prompt: PromptResult) -> tuple[float, bool] | None:
    """% of the bandwidth limit for one prompt's median gen tok/s, and "upper bound?"."""
    bandwidth = run.gpu.bandwidth_gbs if run.gpu else None
    estimate = bytes_per_token(model, prompt)
    tps = prompt.gen_tps.median
    if not bandwidth or estimate is None or tps is None:
        return None
    return bandwidth_pct(tps, estimate[0], bandwidth), estimate[1]


def metric_value(
    run: BenchRun, model: ModelResult, metric: str, prompt: str | None = None
) -> float | None:
    """One number of a run: a model metric, or a prompt metric's median."""
    if metric == "load_s":
        return None if model.was_loaded else model.load_s  # a warm "load" is no load time
    if metric == "vram_bytes":
        return None if model.size_vram is None else float(model.size_vram)
    result = model.prompts.get(prompt or "")
    if result is None:
        return None
    if metric == "pct_limit":
        pct = limit_pct(run, model, result)
        return None if pct is None else pct[0]
    if metric in PROMPT_METRICS:
        stat: Stat = getattr(result, metric)
        return stat.median
    raise ValueError(f"unknown metric {metric!r}; known: {', '.join(METRIC_LABELS)}")


def change_pct(before: float | None, after: float | None) -> float | None:
    if before is None or after is None or before == 0:
        return None
    return (after - before) / before * 100


@dataclass(frozen=True)
class CompareRow:
    """One metric of one model (and prompt) before and after; or a model added/removed."""

    model: str
    prompt: str | None  # None for model metrics and added/removed rows
    metric: str | None  # None for added/removed rows
    before: float | None
    after: float | None
    change_pct: float | None
    status: str = "both"  # "both", "added" (only in the current run), "removed"

    @property
    def better(self) -> bool | None:
        """Whether the change is an improvement (None: no change known or no direction)."""
        if not self.change_pct or self.metric is None:
            return None
        if self.metric in HIGHER_IS_BETTER:
            return self.change_pct > 0
        if self.metric in LOWER_IS_BETTER:
            return self.change_pct < 0
        return None


def compare(previous: BenchRun, current: BenchRun) -> list[CompareRow]:
    """Every metric of every model in both runs, then the models only in one of them."""
    before = {m.model: m for m in previous.results}
    after = {m.model: m for m in current.results}
    rows: list[CompareRow] = []
    for name, new in after.items():
        old = before.get(name)
        if old is None:
            rows.append(CompareRow(name, None, None, None, None, None, "added"))
            continue
        prompts = list(dict.fromkeys([*new.prompts, *old.prompts]))
        pairs = [(None, m) for m in MODEL_METRICS] + [
            (p, m) for p in prompts for m in PROMPT_METRICS
        ]
        for prompt, metric in pairs:
            b = metric_value(previous, old, metric, prompt)
            a = metric_value(current, new, metric, prompt)
            if a is not None or b is not None:
                rows.append(CompareRow(name, prompt, metric, b, a, change_pct(b, a)))
    rows += [
        CompareRow(name, None, None, None, None, None, "removed")
        for name in before
        if name not in after
    ]
    return rows


def previous_comparable(runs: Iterable[BenchRun], current: BenchRun) -> BenchRun | None:
    """The latest run before ``current`` measured with the same prompt set."""
    earlier = [
        r
        for r in runs
        if r.id != current.id
        and r.prompt_set_version == current.prompt_set_version
        and _moment(r.at) < _moment(current.at)
    ]
    return max(earlier, key=lambda r: _moment(r.at), default=None)


def _moment(at: str) -> datetime:
    return datetime.fromisoformat(at.replace("Z", "+00:00"))


def settings_diff(
    previous: BenchRun, current: BenchRun
) -> list[tuple[str, str | None, str | None]]:
    """(key, before, after) for every Ollama setting that differs between two runs."""
    keys = sorted(set(previous.settings) | set(current.settings))
    return [
        (k, previous.settings.get(k), current.settings.get(k))
        for k in keys
        if previous.settings.get(k) != current.settings.get(k)
    ]


# ---------------------------------------------------------------- rendering

DASH = "—"


def fmt_seconds(value: float | None) -> str:
    if value is None:
        return DASH
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def fmt_rate(value: float | None) -> str:
    return DASH if value is None else f"{value:.1f}"


def fmt_bytes(value: float | None) -> str:
    # Decimal units, as `ollama ps` prints them.
    if value is None:
        return DASH
    return f"{value / 1e9:.1f} GB" if value >= 1e9 else f"{value / 1e6:.0f} MB"


def fmt_metric(metric: str | None, value: float | None) -> str:
    if metric in ("load_s", "ttft_s"):
        return fmt_seconds(value)
    if metric == "vram_bytes":
        return fmt_bytes(value)
    if metric == "pct_limit":
        return DASH if value is None else f"{value:.0f}%"
    return fmt_rate(value)


def short_commit(commit: str | None) -> str:
    return commit[:7] if commit else "no commit"


def _gpu_text(gpu: GpuInfo | None) -> str:
    if gpu is None:
        return "CPU only"
    bandwidth = f", {gpu.bandwidth_gbs:g} GB/s" if gpu.bandwidth_gbs else ", bandwidth unknown"
    return f"{gpu.name}{bandwidth}"


def _rate_cell(stat: Stat) -> Text:
    cell = Text(fmt_rate(stat.median))
    if stat.min is not None and stat.max is not None and stat.min != stat.max:
        cell.append(f" ({stat.min:.1f}–{stat.max:.1f})", style="dim")
    return cell


def _pct_cell(pct: tuple[float, bool] | None) -> str:
    if pct is None:
        return DASH
    return f"≤{pct[0]:.0f}%" if pct[1] else f"{pct[0]:.0f}%"


def run_table(run: BenchRun) -> Table:
    """One run: a row per model and prompt (medians; gen tok/s with its min–max)."""
    table = Table(
        title=f"lanai bench {run.id} · {short_commit(run.commit)} · {_gpu_text(run.gpu)}",
        caption="% of bandwidth limit = gen tok/s ÷ (bandwidth ÷ bytes read per token); "
        "≤: bytes from /api/ps size, an upper bound",
    )
    for name in ("model", "prompt", "load", "TTFT", "prompt tok/s", "gen tok/s",
                 "% of limit", "CPU/GPU", "VRAM"):  # fmt: skip
        table.add_column(name, justify="left" if name in ("model", "prompt") else "right")
    for model in run.results:
        load = fmt_seconds(model.load_s) + (" (warm)" if model.was_loaded else "")
        first = [model.model, load, model.processor, fmt_bytes(model.size_vram)]
        if model.error:
            table.add_row(first[0], Text(f"error: {model.error}", style="red"), first[1],
                          "", "", "", "", first[2], first[3])  # fmt: skip
            first = ["", "", "", ""]
        for prompt in model.prompts.values():
            table.add_row(
                first[0],
                prompt.prompt,
                first[1],
                fmt_seconds(prompt.ttft_s.median),
                fmt_rate(prompt.prompt_tps.median),
                _rate_cell(prompt.gen_tps),
                _pct_cell(limit_pct(run, model, prompt)),
                first[2],
                first[3],
            )
            first = ["", "", "", ""]
    return table


def _change_cell(row: CompareRow, threshold_pct: float) -> Text:
    if row.status != "both":
        return Text(row.status, style="bold")
    if row.change_pct is None:
        return Text(DASH)
    style = ""
    if abs(row.change_pct) >= threshold_pct and row.better is not None:
        style = "green" if row.better else "red"
    return Text(f"{row.change_pct:+.1f}%", style=style)


def compare_table(
    rows: list[CompareRow],
    *,
    previous: BenchRun,
    current: BenchRun,
    threshold_pct: float = 3.0,
) -> Table:
    """A comparison: green/red marks a change past ``threshold_pct`` (run-to-run noise)."""
    notes = [f"{k}: {b or DASH} → {a or DASH}" for k, b, a in settings_diff(previous, current)]
    if (previous.gpu and previous.gpu.name) != (current.gpu and current.gpu.name):
        notes.append(f"GPU: {_gpu_text(previous.gpu)} → {_gpu_text(current.gpu)}")
    table = Table(
        title=f"lanai bench {short_commit(previous.commit)} ({previous.at[:10]}) → "
        f"{short_commit(current.commit)} ({current.at[:10]})",
        caption="; ".join(notes) if notes else "same Ollama settings",
    )
    for name in ("model", "prompt", "metric", "before", "after", "change"):
        table.add_column(name, justify="left" if name in ("model", "prompt", "metric") else "right")
    for row in rows:
        table.add_row(
            row.model,
            row.prompt or "",
            METRIC_LABELS.get(row.metric or "", row.metric or ""),
            fmt_metric(row.metric, row.before),
            fmt_metric(row.metric, row.after),
            _change_cell(row, threshold_pct),
        )
    return table
