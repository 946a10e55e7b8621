"""reconciler/bench/run.py: generate streams in, timed samples and per-model results out.

The generate streams are shaped like the examples in Ollama's docs/api.md
(/api/generate, streaming): partial events with "response", then a final event
with done: true and the durations in nanoseconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from reconciler.bench.bandwidth import BandwidthFacts
from reconciler.bench.compare import metric_value
from reconciler.bench.prompts import PROMPTS
from reconciler.bench.results import Stat
from reconciler.bench.run import BenchError, find_ps, run_bench, sample_from_events

from .runs import T0, make_run


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
        first_load = find_ps([{"name": m} for m in self.loaded], model) is None
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


def test_sample_from_the_docs_stream() -> None:
    clock = Clock()
    events = timed(docs_stream(), clock, [100.5, 100.8, 100.9, 111.0])
    got = sample_from_events(events, started=100.0, clock=clock)
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
    got = sample_from_events(timed(events, clock, [100.3, 100.9, 102.0]), started=100.0,
                                   clock=clock)  # fmt: skip
    assert got.ttft_s == pytest.approx(0.3)


def test_no_token_and_no_durations_give_none_not_a_division_by_zero() -> None:
    event = {"model": "m", "response": "", "done": True, "done_reason": "load"}
    got = sample_from_events([event], started=0.0, clock=Clock(1.0))
    assert (got.ttft_s, got.prompt_tps, got.gen_tps, got.gen_tokens) == (None, None, None, 0)


def test_error_event_is_a_clear_error() -> None:
    events = [{"error": 'model "nope" not found, try pulling it first'}]
    with pytest.raises(BenchError, match='Ollama error: model "nope" not found'):
        sample_from_events(events, started=0.0, clock=Clock())


def test_stream_without_done_is_an_error() -> None:
    with pytest.raises(BenchError, match="ended after 3 events without a final"):
        sample_from_events(docs_stream()[:3], started=0.0, clock=Clock())


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
    [result] = run_bench(
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
    run_bench(["a", "b"], generate=ollama.generate, ps=ollama.ps, runs=2, clock=Ticking(),
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
    results = run_bench(
        ["ghost", "llama3.2", "flaky"], generate=ollama.generate, ps=ollama.ps,
        clock=Ticking(), on_progress=progress.append, salt="s",
    )  # fmt: skip
    assert [r.model for r in results] == ["ghost", "llama3.2", "flaky"]
    assert results[0].error == 'Ollama error: model "ghost" not found, try pulling it first'
    assert results[0].prompts == {}
    assert results[1].error is None and set(results[1].prompts) == set(PROMPTS)
    assert results[2].error == "ConnectionError: connection refused"
    assert 'ghost: failed: Ollama error: model "ghost" not found' in progress[1]


def test_an_already_loaded_model_has_no_cold_load_time() -> None:
    ollama = FakeOllama(loaded=["llama3.2"])
    [result] = run_bench(["llama3.2:latest"], generate=ollama.generate, ps=ollama.ps,
                               clock=Ticking(), salt="s")  # fmt: skip
    assert result.was_loaded is True
    assert result.load_s == pytest.approx(0.004)
    run = make_run([result], at=T0)
    assert metric_value(run, result, "load_s") is None


def test_without_warmup_the_first_run_does_the_loading() -> None:
    ollama = FakeOllama()
    [result] = run_bench(["m"], generate=ollama.generate, ps=ollama.ps, warmup=0,
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

    a, b = run_bench(["a", "b"], generate=ollama.generate, ps=ollama.ps, clock=Ticking(),
                           describe=describe, salt="s")  # fmt: skip
    assert (a.weights_bytes, a.kv_bytes_per_token) == (4_900_000_000, 131_072.0)
    assert b.error is None and b.weights_bytes is None


def test_run_bench_rejects_nonsense_counts() -> None:
    ollama = FakeOllama()
    with pytest.raises(ValueError):
        run_bench(["m"], generate=ollama.generate, ps=ollama.ps, runs=0)


def test_find_ps_implies_latest() -> None:
    entries = [ps_entry("llama3.2:latest", 1, 1), ps_entry("qwen3:8b", 2, 2)]
    assert find_ps(entries, "llama3.2")["name"] == "llama3.2:latest"  # type: ignore[index]
    assert find_ps(entries, "qwen3:8b")["size"] == 2  # type: ignore[index]
    assert find_ps(entries, "qwen3") is None
