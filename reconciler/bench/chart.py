"""``lanai bench --plot``: bench runs as a self-contained SVG grouped bar chart.

One group per model, one bar per run (coloured per run, labelled under the bar
with the commit's short hash, explained with the date in the legend), the value
above each bar, a y axis with round ticks. Plain SVG text, no dependency: it
opens in any browser and can be attached to a pull request. Every piece of text
that comes from data (model names, commits) is XML-escaped.

Hand-written because a chart library costs more than these lines: matplotlib brings
numpy and Pillow, and pygal's SVG loads its tooltip script from the web by default and
has no place for a label under each bar (the run's commit).
"""

from __future__ import annotations

import math
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from reconciler.bench.compare import METRIC_LABELS, metric_value
from reconciler.bench.store import BenchRun
from reconciler.bench.table import fmt_metric, short_commit
from reconciler.core.files import write_atomic

# metric -> the label of its y axis
CHART_METRICS: dict[str, str] = {
    "gen_tps": "generated tokens/s",
    "prompt_tps": "prompt tokens/s",
    "ttft_s": "time to first token (s)",
    "load_s": "load time (s)",
    "pct_limit": "% of bandwidth limit",
}
# Okabe-Ito: tells runs apart also for colour-blind readers.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")

BAR_W = 26
BAR_GAP = 4
GROUP_GAP = 28
LEFT = 64
TOP = 48
PLOT_H = 260
BELOW = 84  # commit labels under the bars, then the model names
LEGEND_ROW = 18
CHAR_W = 7  # rough width of one 12px sans-serif character, for layout only


def nice_ticks(top: float, count: int = 5) -> list[float]:
    """Round tick values from 0 to at least ``top`` (steps of 1, 2, 2.5 or 5 × 10^k)."""
    if top <= 0 or not math.isfinite(top):
        return [0.0, 1.0]
    raw = top / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    steps = math.ceil(top / step - 1e-9)
    return [round(i * step, 10) for i in range(steps + 1)]


def _tick_text(value: float) -> str:
    return f"{value:g}"


def run_label(run: BenchRun) -> str:
    """How a run is named in the legend: short commit and date."""
    return f"{short_commit(run.commit)} · {run.at[:10]}"


def render_svg(
    runs: list[BenchRun],
    *,
    metric: str = "gen_tps",
    prompt: str = "short-chat",
    title: str | None = None,
) -> str:
    """The chart as an SVG document; ``prompt`` picks the prompt for per-prompt metrics."""
    if metric not in CHART_METRICS:
        raise ValueError(f"cannot chart {metric!r}; one of: {', '.join(CHART_METRICS)}")
    models = list(dict.fromkeys(m.model for run in runs for m in run.results))
    values: dict[str, list[float | None]] = {}
    for model in models:
        row: list[float | None] = []
        for run in runs:
            result = next((m for m in run.results if m.model == model), None)
            row.append(None if result is None else metric_value(run, result, metric, prompt))
        values[model] = row
    known = [v for row in values.values() for v in row if v is not None]
    ticks = nice_ticks(max(known, default=0.0))
    top = ticks[-1]

    group_w = max(len(runs) * (BAR_W + BAR_GAP) - BAR_GAP, BAR_W)
    slot_w = [max(group_w, len(m) * CHAR_W) + GROUP_GAP for m in models]
    plot_w = max(sum(slot_w), 240)
    width = LEFT + plot_w + 24
    legend_y = TOP + PLOT_H + BELOW
    height = legend_y + LEGEND_ROW * max(len(runs), 1) + 16
    base = TOP + PLOT_H

    def y_of(value: float) -> float:
        return base - value / top * PLOT_H

    label = METRIC_LABELS[metric]
    axis_label = CHART_METRICS[metric]
    heading = title or f"{label}, median" + ("" if metric == "load_s" else f", {prompt}")
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f"<title>{escape(heading)}</title>",
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text x="{LEFT}" y="24" font-size="15" font-weight="bold">{escape(heading)}</text>',
    ]
    # Axis: gridlines with tick labels, then the baseline.
    for tick in ticks:
        y = y_of(tick)
        out.append(
            f'<line class="grid" x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + plot_w}" y2="{y:.1f}" '
            'stroke="#dddddd"/>'
        )
        out.append(
            f'<text class="tick" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{escape(_tick_text(tick))}</text>"
        )
    out.append(
        f'<line class="axis" x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{base}" stroke="#333333"/>'
    )
    out.append(
        f'<line class="axis" x1="{LEFT}" y1="{base}" x2="{LEFT + plot_w}" y2="{base}" '
        'stroke="#333333"/>'
    )
    out.append(
        f'<text x="16" y="{TOP + PLOT_H / 2:.1f}" text-anchor="middle" '
        f'transform="rotate(-90 16 {TOP + PLOT_H / 2:.1f})">{escape(axis_label)}</text>'
    )

    x0 = LEFT + GROUP_GAP / 2
    for model, slot in zip(models, slot_w, strict=True):
        bars_x = x0 + (slot - GROUP_GAP - group_w) / 2
        for i, (run, value) in enumerate(zip(runs, values[model], strict=True)):
            x = bars_x + i * (BAR_W + BAR_GAP)
            centre = x + BAR_W / 2
            if value is None:
                out.append(
                    f'<text class="missing" x="{centre:.1f}" y="{base - 4}" '
                    'text-anchor="middle" font-size="10" fill="#888888">n/a</text>'
                )
            else:
                y = y_of(value)
                tip = f"{model} · {run_label(run)}: {fmt_metric(metric, value)}"
                out.append(
                    f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{BAR_W}" '
                    f'height="{base - y:.1f}" fill="{PALETTE[i % len(PALETTE)]}">'
                    f"<title>{escape(tip)}</title></rect>"
                )
                out.append(
                    f'<text class="value" x="{centre:.1f}" y="{y - 4:.1f}" '
                    f'text-anchor="middle" font-size="10">{escape(fmt_metric(metric, value))}'
                    "</text>"
                )
            ly = base + 12
            out.append(
                f'<text class="commit" x="{centre:.1f}" y="{ly}" text-anchor="end" '
                f'font-size="9" fill="#555555" transform="rotate(-45 {centre:.1f} {ly})">'
                f"{escape(short_commit(run.commit))}</text>"
            )
        out.append(
            f'<text class="model" x="{x0 + (slot - GROUP_GAP) / 2:.1f}" y="{base + BELOW - 28}" '
            f'text-anchor="middle" font-weight="bold">{escape(model)}</text>'
        )
        x0 += slot
    if not models:
        out.append(
            f'<text x="{LEFT + plot_w / 2:.1f}" y="{base - PLOT_H / 2:.1f}" '
            'text-anchor="middle" fill="#888888">no data</text>'
        )

    for i, run in enumerate(runs):
        y = legend_y + i * LEGEND_ROW
        colour = quoteattr(PALETTE[i % len(PALETTE)])
        out.append(
            f'<rect class="legend-swatch" x="{LEFT}" y="{y - 10}" width="12" height="12" '
            f"fill={colour}/>"
        )
        out.append(f'<text class="legend" x="{LEFT + 18}" y="{y}">{escape(run_label(run))}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def write_svg(path: Path, svg: str) -> None:
    """Write the chart atomically (a reader never sees half a file)."""
    write_atomic(path, svg, mode=0o644)  # a chart is for sharing
