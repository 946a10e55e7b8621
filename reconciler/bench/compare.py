"""The numbers of a recorded run, and what changed between two runs.

A metric is a model's (load time, VRAM) or a prompt's median (TTFT, prompt and
generation tokens/s, % of the bandwidth limit); a comparison pairs each metric of each
model in both runs and says which direction is better.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from reconciler.bench.bandwidth import bandwidth_pct, bytes_per_token
from reconciler.bench.results import ModelResult, PromptResult, Stat
from reconciler.bench.store import BenchRun

METRIC_LABELS: dict[str, str] = {
    "load_s": "load",
    "vram_bytes": "VRAM",
    "ttft_s": "TTFT",
    "prompt_tps": "prompt tok/s",
    "gen_tps": "gen tok/s",
    "pct_limit": "% of bandwidth limit",
}
MODEL_METRICS: tuple[str, ...] = ("load_s", "vram_bytes")
PROMPT_METRICS: tuple[str, ...] = ("ttft_s", "prompt_tps", "gen_tps")
HIGHER_IS_BETTER = frozenset({"prompt_tps", "gen_tps", "pct_limit"})
LOWER_IS_BETTER = frozenset({"load_s", "ttft_s"})


def limit_pct(run: BenchRun, model: ModelResult, prompt: PromptResult) -> tuple[float, bool] | None:
    """% of the bandwidth limit for one prompt's median gen tok/s, and "upper bound?"."""
    bandwidth = run.gpu.bandwidth_gbs if run.gpu else None
    estimate = bytes_per_token(model, prompt)
    tps = prompt.gen_tps.median
    if not bandwidth or estimate is None or tps is None:
        return None
    return bandwidth_pct(tps, estimate[0], bandwidth), estimate[1]


def metric_value(
    run: BenchRun, model: ModelResult, metric: str, prompt: str | None = None
) -> float | None:
    """One number of a run: a model metric, or a prompt metric's median."""
    if metric == "load_s":
        return None if model.was_loaded else model.load_s  # a warm "load" is no load time
    if metric == "vram_bytes":
        return None if model.size_vram is None else float(model.size_vram)
    result = model.prompts.get(prompt or "")
    if result is None:
        return None
    if metric == "pct_limit":
        pct = limit_pct(run, model, result)
        return None if pct is None else pct[0]
    if metric in PROMPT_METRICS:
        stat: Stat = getattr(result, metric)
        return stat.median
    raise ValueError(f"unknown metric {metric!r}; known: {', '.join(METRIC_LABELS)}")


def change_pct(before: float | None, after: float | None) -> float | None:
    if before is None or after is None or before == 0:
        return None
    return (after - before) / before * 100


@dataclass(frozen=True)
class CompareRow:
    """One metric of one model (and prompt) before and after; or a model added/removed."""

    model: str
    prompt: str | None  # None for model metrics and added/removed rows
    metric: str | None  # None for added/removed rows
    before: float | None
    after: float | None
    change_pct: float | None
    status: str = "both"  # "both", "added" (only in the current run), "removed"

    @property
    def better(self) -> bool | None:
        """Whether the change is an improvement (None: no change known or no direction)."""
        if not self.change_pct or self.metric is None:
            return None
        if self.metric in HIGHER_IS_BETTER:
            return self.change_pct > 0
        if self.metric in LOWER_IS_BETTER:
            return self.change_pct < 0
        return None


def compare(previous: BenchRun, current: BenchRun) -> list[CompareRow]:
    """Every metric of every model in both runs, then the models only in one of them."""
    before = {m.model: m for m in previous.results}
    after = {m.model: m for m in current.results}
    rows: list[CompareRow] = []
    for name, new in after.items():
        old = before.get(name)
        if old is None:
            rows.append(CompareRow(name, None, None, None, None, None, "added"))
            continue
        prompts = list(dict.fromkeys([*new.prompts, *old.prompts]))
        pairs = [(None, m) for m in MODEL_METRICS] + [
            (p, m) for p in prompts for m in PROMPT_METRICS
        ]
        for prompt, metric in pairs:
            b = metric_value(previous, old, metric, prompt)
            a = metric_value(current, new, metric, prompt)
            if a is not None or b is not None:
                rows.append(CompareRow(name, prompt, metric, b, a, change_pct(b, a)))
    rows += [
        CompareRow(name, None, None, None, None, None, "removed")
        for name in before
        if name not in after
    ]
    return rows


def previous_comparable(runs: Iterable[BenchRun], current: BenchRun) -> BenchRun | None:
    """The latest run before ``current`` measured with the same prompt set."""
    earlier = [
        r
        for r in runs
        if r.id != current.id
        and r.prompt_set_version == current.prompt_set_version
        and _moment(r.at) < _moment(current.at)
    ]
    return max(earlier, key=lambda r: _moment(r.at), default=None)


def _moment(at: str) -> datetime:
    return datetime.fromisoformat(at.replace("Z", "+00:00"))


def settings_diff(
    previous: BenchRun, current: BenchRun
) -> list[tuple[str, str | None, str | None]]:
    """(key, before, after) for every Ollama setting that differs between two runs."""
    keys = sorted(set(previous.settings) | set(current.settings))
    return [
        (k, previous.settings.get(k), current.settings.get(k))
        for k in keys
        if previous.settings.get(k) != current.settings.get(k)
    ]
