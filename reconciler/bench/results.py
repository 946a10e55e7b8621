"""A bench's measurements: one request's Sample, per-prompt statistics, per-model results.

Plain data with no I/O: run.py fills it from Ollama, store.py writes and reads it as
JSON, compare.py and table.py read it.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field


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
