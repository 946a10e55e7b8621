"""reconciler/bench/compare.py: a run's metrics and the changes between two runs."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from reconciler.bench.compare import (
    CompareRow,
    compare,
    limit_pct,
    previous_comparable,
    settings_diff,
)
from reconciler.bench.prompts import PROMPTS
from reconciler.bench.results import ModelResult

from .runs import T0, T1, T2, make_run, model_result


def test_limit_pct_uses_the_runs_gpu() -> None:
    result = model_result("m", [50.0], weights_bytes=4_480_000_000)
    prompt = result.prompts["short-chat"]
    pct = limit_pct(make_run([result], at=T0), result, prompt)
    assert pct is not None and pct[0] == pytest.approx(50.0) and pct[1] is False  # 448 GB/s
    cpu_run = make_run([result], at=T0)
    cpu_run.gpu = None
    assert limit_pct(cpu_run, result, prompt) is None


def test_compare_rows_changes_and_added_removed_models() -> None:
    before = make_run(
        [model_result("llama3.2", [50.0], load_s=2.0), model_result("old", [10.0])], at=T0
    )
    after = make_run(
        [model_result("llama3.2", [55.0], load_s=1.5), model_result("new", [20.0])], at=T1
    )
    rows = compare(before, after)
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
        (p, m) for p in PROMPTS for m in ("ttft_s", "prompt_tps", "gen_tps")
    ]


def test_compare_a_model_that_failed_this_time() -> None:
    before = make_run([model_result("m", [50.0])], at=T0)
    failed = ModelResult(model="m", error="Ollama error: out of memory", load_s=None)
    rows = compare(before, make_run([failed], at=T1))
    gen = next(r for r in rows if r.metric == "gen_tps")
    assert (gen.before, gen.after, gen.change_pct, gen.better) == (50.0, None, None, None)


def test_previous_comparable_is_the_latest_earlier_run_of_the_same_prompt_set() -> None:
    a = make_run([], at=T0)
    b = make_run([], at=T1)
    b.prompt_set_version = "0"
    current = make_run([], at=T2)
    later = make_run([], at=datetime(2027, 1, 1, tzinfo=UTC))
    assert previous_comparable([a, b, current, later], current) is a
    assert previous_comparable([current], current) is None


def test_settings_diff() -> None:
    a = make_run([], at=T0, settings={"OLLAMA_KV_CACHE_TYPE": "f16", "OLLAMA_NUM_PARALLEL": "1"})
    b = make_run([], at=T1, settings={"OLLAMA_KV_CACHE_TYPE": "q8_0", "OLLAMA_NUM_PARALLEL": "1",
                                      "OLLAMA_FLASH_ATTENTION": "1"})  # fmt: skip
    assert settings_diff(a, b) == [
        ("OLLAMA_FLASH_ATTENTION", None, "1"),
        ("OLLAMA_KV_CACHE_TYPE", "f16", "q8_0"),
    ]
