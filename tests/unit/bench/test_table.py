"""reconciler/bench/table.py: the run and comparison tables as a terminal shows them."""

from __future__ import annotations

import re
from typing import Any

from rich.console import Console

from reconciler.bench.compare import compare
from reconciler.bench.results import ModelResult
from reconciler.bench.table import compare_table, run_table

from .runs import T0, T1, make_run, model_result


def render(table: Any) -> str:
    console = Console(record=True, width=220, color_system=None)
    console.print(table)
    return console.export_text()


def test_run_table() -> None:
    full = model_result("llama3.1:8b", [60.0, 64.0, 62.0], weights_bytes=4_480_000_000)
    split = model_result("qwen3:14b", [9.0], size=10_000_000_000, size_vram=5_200_000_000)
    broken = ModelResult(model="ghost", error='Ollama error: model "ghost" not found')
    text = render(run_table(make_run([full, split, broken], at=T0)))
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
    rows = compare(before, after)
    table = compare_table(rows, previous=before, current=after)
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
