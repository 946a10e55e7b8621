"""Running a bench: the requests to Ollama, timing their streams, one result per model.

A bench run sends the fixed, versioned prompt set (prompts.py) to each model through
Ollama's ``/api/generate`` (a warm-up first, whose load time is the model's load
time), reads ``/api/ps`` for the CPU/GPU split, and keeps per-prompt medians (with
min and max) of time to first token, prompt tokens/s and generation tokens/s
(results.py). The CLI stores the run (store.py) and compares it (compare.py).

Everything here is pure or takes its I/O as arguments (``generate``, ``ps``,
``clock``): the CLI supplies the Ollama client, the tests supply lists of dicts.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from reconciler.bench.bandwidth import BandwidthFacts
from reconciler.bench.prompts import PROMPTS, WARMUP_PROMPT, options_for, prompt_text
from reconciler.bench.results import ModelResult, PromptResult, Sample

Generate = Callable[[str, str, dict[str, Any]], Iterator[dict[str, Any]]]
Ps = Callable[[], list[dict[str, Any]]]


class BenchError(RuntimeError):
    """A generate stream that gave no measurement (an error event, a cut stream)."""


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
