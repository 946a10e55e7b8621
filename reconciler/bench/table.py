"""The terminal tables of ``lanai bench``: one run, and a comparison of two.

Also the number formats they share with the chart (chart.py).
"""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from reconciler.bench.bandwidth import GpuInfo
from reconciler.bench.compare import METRIC_LABELS, CompareRow, limit_pct, settings_diff
from reconciler.bench.results import Stat
from reconciler.bench.store import BenchRun

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
