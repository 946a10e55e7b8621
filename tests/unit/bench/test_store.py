"""reconciler/bench/store.py: runs stamped, appended as JSON lines and read back."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from reconciler.bench.prompts import PROMPT_SET_VERSION
from reconciler.bench.store import append_run, load_runs

from .runs import T0, T1, make_run, model_result


def test_new_run_is_stamped_and_versioned() -> None:
    run = make_run([], at=T0)
    assert run.id == "20261125T141013123Z"
    assert run.at == "2026-11-25T14:10:13.123Z"
    assert run.prompt_set_version == PROMPT_SET_VERSION


def test_jsonl_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "bench" / "runs.jsonl"
    first = make_run([model_result("llama3.2", [60.0, 62.0, 61.0])], at=T0)
    second = make_run(
        [model_result("qwen3:8b", [40.0], error="boom", was_loaded=True)],
        at=T1, commit=None, gpu=None, settings={"OLLAMA_NUM_PARALLEL": "1"},
    )  # fmt: skip
    second.gpu = None
    append_run(path, first)
    append_run(path, second)
    assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0o044  # world-readable, no secrets
    assert len(path.read_text().splitlines()) == 2
    warnings: list[str] = []
    assert load_runs(path, warn=warnings.append) == [first, second]
    assert warnings == []
    # The JSON is plain data a person can read.
    line = json.loads(path.read_text().splitlines()[0])
    assert line["results"][0]["prompts"]["short-chat"]["gen_tps"]["median"] == 61.0
    assert line["gpu"] == {"name": "NVIDIA GeForce RTX 3070", "memory_mib": 8192,
                           "bandwidth_gbs": 448}  # fmt: skip


def test_a_torn_last_line_is_skipped_and_the_next_append_survives(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    first = make_run([model_result("llama3.2", [60.0])], at=T0)
    append_run(path, first)
    with path.open("a") as handle:  # a crash in the middle of the next write
        handle.write(json.dumps(first.to_json())[:57])
    warnings: list[str] = []
    assert load_runs(path, warn=warnings.append) == [first]
    assert len(warnings) == 1 and "skipped the last line" in warnings[0]
    second = make_run([model_result("llama3.2", [70.0])], at=T1)
    append_run(path, second)
    warnings.clear()
    assert load_runs(path, warn=warnings.append) == [first, second]
    assert len(warnings) == 1 and "line 2" in warnings[0]


def test_load_runs_of_a_missing_file_is_empty(tmp_path: Path) -> None:
    assert load_runs(tmp_path / "none.jsonl") == []


def test_load_runs_ignores_unknown_keys(tmp_path: Path) -> None:
    data = make_run([model_result("m", [1.0])], at=T0).to_json()
    data["from_the_future"] = 1
    data["results"][0]["new_fact"] = "x"
    path = tmp_path / "runs.jsonl"
    path.write_text(json.dumps(data) + "\n")
    [run] = load_runs(path)
    assert run.results[0].prompts["short-chat"].gen_tps.median == 1.0
