"""Builders of bench results and runs that several of the bench tests share."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from reconciler.bench.bandwidth import GpuInfo
from reconciler.bench.prompts import PROMPTS
from reconciler.bench.results import ModelResult, PromptResult, Sample
from reconciler.bench.store import BenchRun, new_run


def sample(gen_tps: float, *, ttft: float = 0.2, load: float = 0.004) -> Sample:
    return Sample(
        ttft_s=ttft, load_s=load, prompt_tokens=1700, prompt_tps=1700.0, gen_tokens=128,
        gen_tps=gen_tps, total_s=3.0, wall_s=3.1, done_reason="length",
    )  # fmt: skip


def model_result(name: str, gen: list[float], **kw: Any) -> ModelResult:
    prompts = {p: PromptResult.summarize(p, [sample(v) for v in gen]) for p in PROMPTS}
    defaults: dict[str, Any] = {"load_s": 2.5, "size": 5_600_000_000, "size_vram": 5_600_000_000}
    return ModelResult(model=name, prompts=prompts, **{**defaults, **kw})


def make_run(
    results: list[ModelResult],
    *,
    at: datetime,
    commit: str | None = "0123456789abcdef",
    settings: dict[str, str] | None = None,
    gpu: GpuInfo | None = None,
) -> BenchRun:
    return new_run(
        results,
        commit=commit,
        settings=settings or {"OLLAMA_FLASH_ATTENTION": "1", "OLLAMA_KV_CACHE_TYPE": "q8_0"},
        gpu=gpu if gpu is not None else GpuInfo.for_card("NVIDIA GeForce RTX 3070", 8192),
        now=at,
    )


T0 = datetime(2026, 11, 25, 14, 10, 13, 123000, tzinfo=UTC)


T1 = datetime(2026, 11, 26, 9, 0, 0, tzinfo=UTC)


T2 = datetime(2026, 11, 27, 9, 0, 0, tzinfo=UTC)
