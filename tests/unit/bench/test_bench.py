"""Tests for reconciler.bench.run and reconciler.bench.chart: streams in, numbers and records out.

The generate streams are shaped like the examples in Ollama's docs/api.md
(/api/generate, streaming): partial events with "response", then a final event
with done: true and the durations in nanoseconds.
"""

from __future__ import annotations

import json
import re
import stat
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from reconciler.bench import chart as benchchart
from reconciler.bench import run as bench
from reconciler.bench.run import (
    BandwidthFacts,
    BenchError,
    BenchRun,
    CompareRow,
    GpuInfo,
    ModelResult,
    PromptResult,
    Sample,
    Stat,
)

SVG = "{http://www.w3.org/2000/svg}"

# ---------------------------------------------------------------- fixtures


def docs_stream() -> list[dict[str, Any]]:
    """The /api/generate streaming example of Ollama's docs/api.md (tokens shortened)."""
    return [
        {"model": "llama3.2", "created_at": "2023-08-04T08:52:19.385406455-07:00",
         "response": "", "done": False},
        {"model": "llama3.2", "created_at": "2023-08-04T08:52:19.385406455-07:00",
         "response": "The", "done": False},
        {"model": "llama3.2", "created_at": "2023-08-04T08:52:19.412532Z",
         "response": " sky", "done": False},
        {"model": "llama3.2", "created_at": "2023-08-04T19:22:45.499127Z", "response": "",
         "done": True, "done_reason": "stop", "context": [1, 2, 3],
         "total_duration": 10706818083, "load_duration": 6338219291,
         "prompt_eval_count": 26, "prompt_eval_duration": 130079000,
         "eval_count": 259, "eval_duration": 4232710000},
    ]  # fmt: skip


class Clock:
    """A clock the test moves; every read is recorded."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def timed(events: list[dict[str, Any]], clock: Clock, times: list[float]) -> Iterator[dict]:
    """Yield each event with the clock set to its arrival time, as a real stream would."""
    for event, at in zip(events, times, strict=True):
        clock.now = at
        yield event


def final(
    *,
    load_ns: int = 1_000_000,
    prompt_count: int = 40,
    prompt_ns: int = 200_000_000,
    eval_count: int = 128,
    eval_ns: int = 2_000_000_000,
) -> dict[str, Any]:
    return {
        "model": "m", "created_at": "2026-11-25T14:10:13Z", "response": "", "done": True,
        "done_reason": "length", "total_duration": load_ns + prompt_ns + eval_ns + 5_000_000,
        "load_duration": load_ns, "prompt_eval_count": prompt_count,
        "prompt_eval_duration": prompt_ns, "eval_count": eval_count, "eval_duration": eval_ns,
    }  # fmt: skip


class FakeOllama:
    """generate/ps doubles. Each model has a script of eval durations (ns) per prompt."""

    def __init__(self, loaded: list[str] | None = None) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        self.loaded = list(loaded or [])
        self.eval_ns: dict[str, list[int]] = {}
        self.failing: dict[str, Exception | str] = {}
        self.ps_entries: dict[str, dict[str, Any]] = {}

    def generate(self, model: str, prompt: str, options: dict[str, Any]) -> Iterator[dict]:
        self.calls.append((model, prompt, options))
        failure = self.failing.get(model)
        if isinstance(failure, Exception):
            raise failure
        if isinstance(failure, str):
            return iter([{"error": failure}])
        first_load = bench.find_ps([{"name": m} for m in self.loaded], model) is None
        self.loaded.append(model)
        script = self.eval_ns.setdefault(model, [])
        eval_ns = script.pop(0) if script else 2_000_000_000
        long = "hydroelectric" in prompt
        return iter(
            [
                {"model": model, "response": "Once", "done": False},
                final(
                    load_ns=2_500_000_000 if first_load else 4_000_000,
                    prompt_count=1700 if long else 30,
                    prompt_ns=1_000_000_000 if long else 50_000_000,
                    eval_ns=eval_ns,
                ),
            ]
        )

    def ps(self) -> list[dict[str, Any]]:
        return [self.ps_entries.get(m, {"name": m}) for m in dict.fromkeys(self.loaded)]


def ps_entry(name: str, size: int, size_vram: int, context: int = 4096) -> dict[str, Any]:
    return {
        "name": name, "model": name, "size": size, "digest": "a80c4f17acd5", "size_vram": size_vram,
        "expires_at": "2026-11-25T14:15:13Z", "context_length": context,
        "details": {"format": "gguf", "family": "llama", "parameter_size": "8.0B",
                    "quantization_level": "Q4_K_M"},
    }  # fmt: skip


class Ticking:
    """Each read is 50 ms after the previous one."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 0.05
        return self.now


def nvidia_smi_name() -> str:
    """The GPU name in the real H100 nvidia-smi output (tests/fixtures/nvidia-smi)."""
    path = Path(__file__).resolve().parents[2] / "fixtures" / "nvidia-smi" / "h100-driver580" \
        / "query-gpu.csv"
    return path.read_text().splitlines()[0].split(", ")[2]


def sample(gen_tps: float, *, ttft: float = 0.2, load: float = 0.004) -> Sample:
    return Sample(
        ttft_s=ttft, load_s=load, prompt_tokens=1700, prompt_tps=1700.0, gen_tokens=128,
        gen_tps=gen_tps, total_s=3.0, wall_s=3.1, done_reason="length",
    )  # fmt: skip


def model_result(name: str, gen: list[float], **kw: Any) -> ModelResult:
    prompts = {p: PromptResult.summarize(p, [sample(v) for v in gen]) for p in bench.PROMPTS}
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
    return bench.new_run(
        results,
        commit=commit,
        settings=settings or {"OLLAMA_FLASH_ATTENTION": "1", "OLLAMA_KV_CACHE_TYPE": "q8_0"},
        gpu=gpu if gpu is not None else GpuInfo.for_card("NVIDIA GeForce RTX 3070", 8192),
        now=at,
    )


T0 = datetime(2026, 11, 25, 14, 10, 13, 123000, tzinfo=UTC)
T1 = datetime(2026, 11, 26, 9, 0, 0, tzinfo=UTC)
T2 = datetime(2026, 11, 27, 9, 0, 0, tzinfo=UTC)


# ---------------------------------------------------------------- the prompt set


def test_prompt_set_is_pinned() -> None:
    # Changing a prompt, num_predict or an option makes old runs incomparable:
    # bump PROMPT_SET_VERSION and update this digest together.
    assert (bench.PROMPT_SET_VERSION, bench.prompt_set_digest()) == (
        "1",
        "330318f493cb17bff72ae50eda917bd728f155c29127ac022911ecd9a31ab333",
    )


def test_prompts_have_the_promised_shape() -> None:
    assert list(bench.PROMPTS) == ["short-chat", "long-prompt"]
    assert "\n" not in bench.PROMPTS["short-chat"]
    words = len(bench.PROMPTS["long-prompt"].split())
    # ~1.3 tokens per word: 1100-1400 words is 1450-1850 tokens.
    assert 1100 <= words <= 1400
    assert bench.PROMPTS["long-prompt"].endswith("done in that order.")
    assert bench.options_for("long-prompt") == {"temperature": 0, "seed": 42, "num_predict": 128}


def test_prompt_text_defeats_the_prefix_cache_but_keeps_the_prompt() -> None:
    a, b = bench.prompt_text("long-prompt", "x-1"), bench.prompt_text("long-prompt", "x-2")
    assert a.split("\n")[0] != b.split("\n")[0]  # they differ from the first line on
    assert a.endswith(bench.PROMPTS["long-prompt"]) and b.endswith(bench.PROMPTS["long-prompt"])


# ---------------------------------------------------------------- one sample


def test_sample_from_the_docs_stream() -> None:
    clock = Clock()
    events = timed(docs_stream(), clock, [100.5, 100.8, 100.9, 111.0])
    got = bench.sample_from_events(events, started=100.0, clock=clock)
    # TTFT: the first event with text, not the empty first one.
    assert got.ttft_s == pytest.approx(0.8)
    assert got.wall_s == pytest.approx(11.0)
    assert got.load_s == pytest.approx(6.338219291)
    assert got.prompt_tokens == 26
    assert got.prompt_tps == pytest.approx(26 / 0.130079)
    assert got.gen_tokens == 259
    assert got.gen_tps == pytest.approx(259 / 4.23271)
    assert got.total_s == pytest.approx(10.706818083)
    assert got.done_reason == "stop"


def test_thinking_is_the_first_token_too() -> None:
    clock = Clock()
    events = [
        {"model": "qwen3", "response": "", "thinking": "Okay", "done": False},
        {"model": "qwen3", "response": "Hi", "done": False},
        final(),
    ]
    got = bench.sample_from_events(timed(events, clock, [100.3, 100.9, 102.0]), started=100.0,
                                   clock=clock)  # fmt: skip
    assert got.ttft_s == pytest.approx(0.3)


def test_no_token_and_no_durations_give_none_not_a_division_by_zero() -> None:
    event = {"model": "m", "response": "", "done": True, "done_reason": "load"}
    got = bench.sample_from_events([event], started=0.0, clock=Clock(1.0))
    assert (got.ttft_s, got.prompt_tps, got.gen_tps, got.gen_tokens) == (None, None, None, 0)


def test_error_event_is_a_clear_error() -> None:
    events = [{"error": 'model "nope" not found, try pulling it first'}]
    with pytest.raises(BenchError, match='Ollama error: model "nope" not found'):
        bench.sample_from_events(events, started=0.0, clock=Clock())


def test_stream_without_done_is_an_error() -> None:
    with pytest.raises(BenchError, match="ended after 3 events without a final"):
        bench.sample_from_events(docs_stream()[:3], started=0.0, clock=Clock())


# ---------------------------------------------------------------- run_bench


def test_run_bench_warms_up_then_takes_medians() -> None:
    ollama = FakeOllama()
    # warm-up, then short-chat x3, then long-prompt x3 (eval_count 128 each).
    ollama.eval_ns["llama3.1:8b"] = [
        9_000_000_000,
        *(2_000_000_000, 4_000_000_000, 1_000_000_000),
        *(3_200_000_000, 3_200_000_000, 1_600_000_000),
    ]
    ollama.ps_entries["llama3.1:8b"] = ps_entry("llama3.1:8b", 6_000_000_000, 6_000_000_000)
    progress: list[str] = []
    [result] = bench.run_bench(
        ["llama3.1:8b"], generate=ollama.generate, ps=ollama.ps, runs=3, warmup=1,
        clock=Ticking(), on_progress=progress.append, salt="s",
    )  # fmt: skip
    assert result.error is None
    assert len(ollama.calls) == 1 + 3 * 2
    assert result.load_s == pytest.approx(2.5)  # the warm-up's, the first load
    assert result.was_loaded is False
    short = result.prompts["short-chat"]
    assert short.gen_tps == Stat(64.0, 32.0, 128.0)  # 128 tokens in 2 s, 4 s, 1 s
    assert short.gen_tokens == 128 and short.prompt_tokens == 30
    assert short.ttft_s.median == pytest.approx(0.05)
    assert result.prompts["long-prompt"].gen_tps == Stat(40.0, 40.0, 80.0)
    assert result.prompts["long-prompt"].prompt_tps.median == pytest.approx(1700.0)
    assert len(short.samples) == 3
    assert (result.size, result.size_vram, result.context_length) == (6e9, 6e9, 4096)
    assert result.processor == "100% GPU"
    assert progress[0] == "llama3.1:8b: warm-up 1/1 (loads the model)"
    assert "llama3.1:8b: long-prompt 3/3" in progress


def test_run_bench_sends_fixed_options_and_a_fresh_prompt_each_time() -> None:
    ollama = FakeOllama()
    bench.run_bench(["a", "b"], generate=ollama.generate, ps=ollama.ps, runs=2, clock=Ticking(),
                    salt="s")  # fmt: skip
    prompts = [p for _, p, _ in ollama.calls]
    assert len(set(prompts)) == len(prompts)  # no prompt-cache hit between requests
    assert [o["num_predict"] for _, _, o in ollama.calls] == [128] * len(ollama.calls)
    assert all(o["temperature"] == 0 and o["seed"] == 42 for _, _, o in ollama.calls)
    assert [m for m, _, _ in ollama.calls] == ["a"] * 5 + ["b"] * 5


def test_a_failing_model_does_not_stop_the_others() -> None:
    ollama = FakeOllama()
    ollama.failing["ghost"] = 'model "ghost" not found, try pulling it first'
    ollama.failing["flaky"] = ConnectionError("connection refused")
    progress: list[str] = []
    results = bench.run_bench(
        ["ghost", "llama3.2", "flaky"], generate=ollama.generate, ps=ollama.ps,
        clock=Ticking(), on_progress=progress.append, salt="s",
    )  # fmt: skip
    assert [r.model for r in results] == ["ghost", "llama3.2", "flaky"]
    assert results[0].error == 'Ollama error: model "ghost" not found, try pulling it first'
    assert results[0].prompts == {}
    assert results[1].error is None and set(results[1].prompts) == set(bench.PROMPTS)
    assert results[2].error == "ConnectionError: connection refused"
    assert 'ghost: failed: Ollama error: model "ghost" not found' in progress[1]


def test_an_already_loaded_model_has_no_cold_load_time() -> None:
    ollama = FakeOllama(loaded=["llama3.2"])
    [result] = bench.run_bench(["llama3.2:latest"], generate=ollama.generate, ps=ollama.ps,
                               clock=Ticking(), salt="s")  # fmt: skip
    assert result.was_loaded is True
    assert result.load_s == pytest.approx(0.004)
    run = make_run([result], at=T0)
    assert bench.metric_value(run, result, "load_s") is None


def test_without_warmup_the_first_run_does_the_loading() -> None:
    ollama = FakeOllama()
    [result] = bench.run_bench(["m"], generate=ollama.generate, ps=ollama.ps, warmup=0,
                               clock=Ticking(), salt="s")  # fmt: skip
    assert len(ollama.calls) == 6
    assert result.load_s == pytest.approx(2.5)


def test_describe_feeds_the_estimate_and_its_failure_is_not_the_models() -> None:
    ollama = FakeOllama()
    facts = {"a": BandwidthFacts(4_900_000_000, 131_072.0)}

    def describe(model: str) -> BandwidthFacts | None:
        if model == "b":
            raise RuntimeError("show failed")
        return facts.get(model)

    a, b = bench.run_bench(["a", "b"], generate=ollama.generate, ps=ollama.ps, clock=Ticking(),
                           describe=describe, salt="s")  # fmt: skip
    assert (a.weights_bytes, a.kv_bytes_per_token) == (4_900_000_000, 131_072.0)
    assert b.error is None and b.weights_bytes is None


def test_run_bench_rejects_nonsense_counts() -> None:
    ollama = FakeOllama()
    with pytest.raises(ValueError):
        bench.run_bench(["m"], generate=ollama.generate, ps=ollama.ps, runs=0)


# ---------------------------------------------------------------- ps and bandwidth


def test_find_ps_implies_latest() -> None:
    entries = [ps_entry("llama3.2:latest", 1, 1), ps_entry("qwen3:8b", 2, 2)]
    assert bench.find_ps(entries, "llama3.2")["name"] == "llama3.2:latest"  # type: ignore[index]
    assert bench.find_ps(entries, "qwen3:8b")["size"] == 2  # type: ignore[index]
    assert bench.find_ps(entries, "qwen3") is None


@pytest.mark.parametrize(
    ("size", "size_vram", "label"),
    [
        (6_000, 6_000, "100% GPU"),
        (6_000, 0, "100% CPU"),
        (10_000, 5_200, "48%/52% CPU/GPU"),
        (5_000, 6_000, "Unknown"),
        (None, None, "—"),
    ],
)
def test_processor_label_as_ollama_ps(size: int | None, size_vram: int | None, label: str) -> None:
    assert bench.processor_label(size, size_vram) == label


@pytest.mark.parametrize(
    ("name", "bandwidth"),
    [
        ("NVIDIA GeForce RTX 3070", 448),
        ("NVIDIA GeForce RTX 3070 Ti", 608),
        ("GeForce RTX 3070Ti", 608),
        ("nvidia geforce rtx 3060 ti", 448),
        ("NVIDIA GeForce RTX 4070 Ti SUPER", 672),
        ("NVIDIA GeForce RTX 4090", 1008),
        ("NVIDIA GeForce RTX 5090", 1792),
        ("Tesla T4", 320),
        ("NVIDIA A10", 600),
        ("NVIDIA A100-PCIE-40GB", 1555),
        ("NVIDIA A100 80GB PCIe", 1935),
        ("NVIDIA A100-SXM4-80GB", 2039),
        ("NVIDIA H100 PCIe", 2000),
        ("NVIDIA H100 NVL", 3900),
        ("NVIDIA H200", 4800),
        ("NVIDIA RTX A4000", 448),
    ],
)
def test_bandwidth_for_known_cards(name: str, bandwidth: float) -> None:
    assert bench.bandwidth_for(name) == bandwidth


def test_the_longest_matching_entry_wins() -> None:
    assert bench.gpu_table_key("NVIDIA GeForce RTX 4090 D") == "NVIDIA GeForce RTX 4090 D"
    assert bench.gpu_table_key("NVIDIA GeForce RTX 4090") == "NVIDIA GeForce RTX 4090"
    assert bench.gpu_table_key("NVIDIA GeForce RTX 3070 Ti") == "NVIDIA GeForce RTX 3070 Ti"
    assert bench.gpu_table_key("GeForce RTX 2080") is None


def test_bandwidth_for_the_h100_in_the_real_nvidia_smi_output() -> None:
    name = nvidia_smi_name()
    assert name == "NVIDIA H100 80GB HBM3"  # the SXM5 part
    assert bench.bandwidth_for(name) == 3350
    assert GpuInfo.for_card(name, 81559) == GpuInfo(name, 81559, 3350)


@pytest.mark.parametrize(
    "name",
    [
        "NVIDIA GeForce RTX 4090 Laptop GPU",  # not the desktop card
        "NVIDIA GeForce RTX 2080",
        "NVIDIA A100-SXM4-64GB",  # an A100 the table does not know: not the 40 GB row
        "NVIDIA A1",
        "",
    ],
)
def test_bandwidth_for_unknown_cards_is_none(name: str) -> None:
    assert bench.bandwidth_for(name) is None


def test_bandwidth_pct_arithmetic() -> None:
    # 448 GB/s over 4.48 GB per token: at most 100 tok/s; 70 tok/s is 70 %.
    assert bench.bandwidth_pct(70.0, 4.48e9, 448) == pytest.approx(70.0)
    assert bench.bandwidth_pct(50.0, 5e9, 500) == pytest.approx(50.0)
    with pytest.raises(ValueError):
        bench.bandwidth_pct(50.0, 0, 500)


def test_bytes_per_token_adds_the_kv_cache_at_the_mean_position() -> None:
    result = model_result("m", [50.0], weights_bytes=4_000_000_000, kv_bytes_per_token=100_000.0)
    prompt = result.prompts["long-prompt"]  # 1700 prompt tokens, 128 generated
    got = bench.bytes_per_token(result, prompt)
    assert got == (4_000_000_000 + 100_000 * (1700 + 64), False)
    # Only /api/ps size known: an upper bound, flagged.
    fallback = model_result("m", [50.0])
    assert bench.bytes_per_token(fallback, prompt) == (5_600_000_000, True)
    assert bench.bytes_per_token(model_result("m", [50.0], size=None), prompt) is None


def test_limit_pct_uses_the_runs_gpu() -> None:
    result = model_result("m", [50.0], weights_bytes=4_480_000_000)
    prompt = result.prompts["short-chat"]
    pct = bench.limit_pct(make_run([result], at=T0), result, prompt)
    assert pct is not None and pct[0] == pytest.approx(50.0) and pct[1] is False  # 448 GB/s
    cpu_run = make_run([result], at=T0)
    cpu_run.gpu = None
    assert bench.limit_pct(cpu_run, result, prompt) is None


# ---------------------------------------------------------------- records


def test_new_run_is_stamped_and_versioned() -> None:
    run = make_run([], at=T0)
    assert run.id == "20261125T141013123Z"
    assert run.at == "2026-11-25T14:10:13.123Z"
    assert run.prompt_set_version == bench.PROMPT_SET_VERSION


def test_jsonl_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "bench" / "runs.jsonl"
    first = make_run([model_result("llama3.2", [60.0, 62.0, 61.0])], at=T0)
    second = make_run(
        [model_result("qwen3:8b", [40.0], error="boom", was_loaded=True)],
        at=T1, commit=None, gpu=None, settings={"OLLAMA_NUM_PARALLEL": "1"},
    )  # fmt: skip
    second.gpu = None
    bench.append_run(path, first)
    bench.append_run(path, second)
    assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0o044  # world-readable, no secrets
    assert len(path.read_text().splitlines()) == 2
    warnings: list[str] = []
    assert bench.load_runs(path, warn=warnings.append) == [first, second]
    assert warnings == []
    # The JSON is plain data a person can read.
    line = json.loads(path.read_text().splitlines()[0])
    assert line["results"][0]["prompts"]["short-chat"]["gen_tps"]["median"] == 61.0
    assert line["gpu"] == {"name": "NVIDIA GeForce RTX 3070", "memory_mib": 8192,
                           "bandwidth_gbs": 448}  # fmt: skip


def test_a_torn_last_line_is_skipped_and_the_next_append_survives(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    first = make_run([model_result("llama3.2", [60.0])], at=T0)
    bench.append_run(path, first)
    with path.open("a") as handle:  # a crash in the middle of the next write
        handle.write(json.dumps(first.to_json())[:57])
    warnings: list[str] = []
    assert bench.load_runs(path, warn=warnings.append) == [first]
    assert len(warnings) == 1 and "skipped the last line" in warnings[0]
    second = make_run([model_result("llama3.2", [70.0])], at=T1)
    bench.append_run(path, second)
    warnings.clear()
    assert bench.load_runs(path, warn=warnings.append) == [first, second]
    assert len(warnings) == 1 and "line 2" in warnings[0]


def test_load_runs_of_a_missing_file_is_empty(tmp_path: Path) -> None:
    assert bench.load_runs(tmp_path / "none.jsonl") == []


def test_load_runs_ignores_unknown_keys(tmp_path: Path) -> None:
    data = make_run([model_result("m", [1.0])], at=T0).to_json()
    data["from_the_future"] = 1
    data["results"][0]["new_fact"] = "x"
    path = tmp_path / "runs.jsonl"
    path.write_text(json.dumps(data) + "\n")
    [run] = bench.load_runs(path)
    assert run.results[0].prompts["short-chat"].gen_tps.median == 1.0


# ---------------------------------------------------------------- compare


def test_compare_rows_changes_and_added_removed_models() -> None:
    before = make_run(
        [model_result("llama3.2", [50.0], load_s=2.0), model_result("old", [10.0])], at=T0
    )
    after = make_run(
        [model_result("llama3.2", [55.0], load_s=1.5), model_result("new", [20.0])], at=T1
    )
    rows = bench.compare(before, after)
    by_key = {(r.model, r.prompt, r.metric): r for r in rows}
    gen = by_key[("llama3.2", "short-chat", "gen_tps")]
    assert (gen.before, gen.after, gen.status) == (50.0, 55.0, "both")
    assert gen.change_pct == pytest.approx(10.0) and gen.better is True
    load = by_key[("llama3.2", None, "load_s")]
    assert load.change_pct == pytest.approx(-25.0) and load.better is True
    vram = by_key[("llama3.2", None, "vram_bytes")]
    assert vram.change_pct == 0 and vram.better is None
    assert CompareRow("new", None, None, None, None, None, "added") in rows
    assert rows[-1] == CompareRow("old", None, None, None, None, None, "removed")
    metrics = [(r.prompt, r.metric) for r in rows if r.model == "llama3.2"]
    assert metrics == [(None, "load_s"), (None, "vram_bytes")] + [
        (p, m) for p in bench.PROMPTS for m in ("ttft_s", "prompt_tps", "gen_tps")
    ]


def test_compare_a_model_that_failed_this_time() -> None:
    before = make_run([model_result("m", [50.0])], at=T0)
    failed = ModelResult(model="m", error="Ollama error: out of memory", load_s=None)
    rows = bench.compare(before, make_run([failed], at=T1))
    gen = next(r for r in rows if r.metric == "gen_tps")
    assert (gen.before, gen.after, gen.change_pct, gen.better) == (50.0, None, None, None)


def test_previous_comparable_is_the_latest_earlier_run_of_the_same_prompt_set() -> None:
    a = make_run([], at=T0)
    b = make_run([], at=T1)
    b.prompt_set_version = "0"
    current = make_run([], at=T2)
    later = make_run([], at=datetime(2027, 1, 1, tzinfo=UTC))
    assert bench.previous_comparable([a, b, current, later], current) is a
    assert bench.previous_comparable([current], current) is None


def test_settings_diff() -> None:
    a = make_run([], at=T0, settings={"OLLAMA_KV_CACHE_TYPE": "f16", "OLLAMA_NUM_PARALLEL": "1"})
    b = make_run([], at=T1, settings={"OLLAMA_KV_CACHE_TYPE": "q8_0", "OLLAMA_NUM_PARALLEL": "1",
                                      "OLLAMA_FLASH_ATTENTION": "1"})  # fmt: skip
    assert bench.settings_diff(a, b) == [
        ("OLLAMA_FLASH_ATTENTION", None, "1"),
        ("OLLAMA_KV_CACHE_TYPE", "f16", "q8_0"),
    ]


# ---------------------------------------------------------------- tables


def render(table: Any) -> str:
    console = Console(record=True, width=220, color_system=None)
    console.print(table)
    return console.export_text()


def test_run_table() -> None:
    full = model_result("llama3.1:8b", [60.0, 64.0, 62.0], weights_bytes=4_480_000_000)
    split = model_result("qwen3:14b", [9.0], size=10_000_000_000, size_vram=5_200_000_000)
    broken = ModelResult(model="ghost", error='Ollama error: model "ghost" not found')
    text = render(bench.run_table(make_run([full, split, broken], at=T0)))
    assert "20261125T141013123Z" in text and "0123456" in text and "448 GB/s" in text
    lines = {line.split("│")[1].strip(): line for line in text.splitlines() if "│" in line}
    row = lines["llama3.1:8b"]
    assert "100% GPU" in row and "5.6 GB" in row and "2.50 s" in row and "200 ms" in row
    assert "62.0 (60.0–64.0)" in row and "1700.0" in row
    assert "62%" in row  # 62 tok/s × 4.48 GB ÷ 448 GB/s
    assert "48%/52% CPU/GPU" in lines["qwen3:14b"] and "5.2 GB" in lines["qwen3:14b"]
    assert "≤" in lines["qwen3:14b"]  # from /api/ps size: an upper bound
    assert 'error: Ollama error: model "ghost" not found' in lines["ghost"]


def test_compare_table() -> None:
    before = make_run([model_result("m", [50.0]), model_result("old", [1.0])], at=T0,
                      settings={"OLLAMA_KV_CACHE_TYPE": "f16"})  # fmt: skip
    after = make_run([model_result("m", [40.0])], at=T1, commit="fedcba9876543210",
                     settings={"OLLAMA_KV_CACHE_TYPE": "q8_0"})  # fmt: skip
    rows = bench.compare(before, after)
    table = bench.compare_table(rows, previous=before, current=after)
    text = render(table)
    assert "0123456 (2026-11-25) → fedcba9 (2026-11-26)" in text
    assert "OLLAMA_KV_CACHE_TYPE: f16 → q8_0" in text
    gen = next(line for line in text.splitlines() if "gen tok/s" in line and "short" in line)
    assert "50.0" in gen and "40.0" in gen and "-20.0%" in gen
    assert any("old" in line and "removed" in line for line in text.splitlines())
    # Colour says worse (red) or better (green) past the noise threshold.
    console = Console(record=True, width=220, color_system="standard", force_terminal=True)
    console.print(table)
    styled = console.export_text(styles=True)
    assert re.search(r"\x1b\[31m\s*-20\.0%", styled)
    assert "\x1b[32m" not in styled


# ---------------------------------------------------------------- chart


def chart_runs() -> list[BenchRun]:
    tricky = 'evil<&>"model'
    return [
        make_run([model_result("llama3.2", [60.0]), model_result(tricky, [30.0])], at=T0),
        make_run([model_result("llama3.2", [66.5])], at=T1, commit="c0ffee1d"),
    ]


def texts(root: ET.Element, cls: str) -> list[str]:
    return [t.text or "" for t in root.iter(f"{SVG}text") if t.get("class") == cls]


def test_svg_parses_and_has_a_bar_per_value() -> None:
    svg = benchchart.render_svg(chart_runs())
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    bars = [r for r in root.iter(f"{SVG}rect") if r.get("class") == "bar"]
    assert len(bars) == 3  # llama3.2 in both runs, the other model only in the first
    heights = sorted(float(b.get("height", "0")) for b in bars)
    assert heights[0] < heights[1] < heights[2]  # 30 < 60 < 66.5
    assert texts(root, "value") == ["60.0", "66.5", "30.0"]
    assert texts(root, "missing") == ["n/a"]
    assert texts(root, "model") == ["llama3.2", 'evil<&>"model']  # escaped, read back intact
    assert texts(root, "legend") == ["0123456 · 2026-11-25", "c0ffee1 · 2026-11-26"]
    assert texts(root, "commit") == ["0123456", "c0ffee1", "0123456", "c0ffee1"]
    ticks = [float(t) for t in texts(root, "tick")]
    assert ticks[0] == 0 and ticks[-1] >= 66.5
    assert "&lt;&amp;&gt;" in svg


def test_svg_escapes_a_commit_label() -> None:
    runs = chart_runs()
    runs[1].commit = "<b>&"
    root = ET.fromstring(benchchart.render_svg(runs))
    assert texts(root, "legend")[1] == "<b>& · 2026-11-26"


def test_svg_of_other_metrics_and_of_nothing() -> None:
    runs = chart_runs()
    root = ET.fromstring(benchchart.render_svg(runs, metric="ttft_s", prompt="long-prompt"))
    assert texts(root, "value")[0] == "200 ms"
    empty = ET.fromstring(benchchart.render_svg([]))
    assert not [r for r in empty.iter(f"{SVG}rect") if r.get("class") == "bar"]
    with pytest.raises(ValueError, match="cannot chart"):
        benchchart.render_svg(runs, metric="vram_bytes")


def test_nice_ticks() -> None:
    assert benchchart.nice_ticks(66.5) == [0, 20, 40, 60, 80]
    assert benchchart.nice_ticks(1.0) == [0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert benchchart.nice_ticks(0) == [0.0, 1.0]


def test_write_svg(tmp_path: Path) -> None:
    path = tmp_path / "out" / "bench.svg"
    svg = benchchart.render_svg(chart_runs())
    benchchart.write_svg(path, svg)
    assert path.read_text(encoding="utf-8") == svg
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
