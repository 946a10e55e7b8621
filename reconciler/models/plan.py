"""Fit the declared models to the VRAM budget, and decide what to do to Ollama. Pure.

Sizing rules (documented in README, "Models"):
- The budget is the GPU's memory (or budget.vram) minus budget.keep_free.
- With max_loaded >= 2, embedding models stay loaded beside the chat model
  (RAG embeds while a model answers), so their memory comes off every chat
  model's budget. With max_loaded 1 each model has the whole budget to itself.
- context "max" is the largest context that keeps the model entirely on the GPU;
  a number is taken as asked and checked.
- Without a GPU there is no budget: models run on the CPU with "max" read as
  the trained context capped at CPU_CONTEXT (RAM is plentiful, speed is not).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from reconciler.core.sizes import human_bytes
from reconciler.desired.models_yaml import ModelEntry, ModelsConfig
from reconciler.models import memory
from reconciler.models.memory import Fit, ModelFacts, Runtime

CPU_CONTEXT = 8192
DEFAULT_CONTEXT = 4096  # when a model's facts are unknown (not pulled, not in models.lock)
DRIFT_TOLERANCE = 0.15  # estimate vs what Ollama reports after loading


@dataclass
class ModelFit:
    """One row of the fit table."""

    name: str
    entry: ModelEntry
    budget: int | None  # None: no GPU
    facts: ModelFacts | None = None
    fit: Fit | None = None
    context: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def known(self) -> bool:
        return self.facts is not None

    @property
    def spills(self) -> bool:
        return self.fit is not None and not self.fit.fits

    @property
    def ok(self) -> bool:
        return not self.spills or self.entry.allow_cpu

    @property
    def verdict(self) -> str:
        if self.facts is None:
            return "unknown"
        if self.budget is None:
            return "cpu"
        if self.fit is None:
            return "unknown"
        if self.fit.fits:
            return "fits"
        return "spills (allowed)" if self.entry.allow_cpu else "spills"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"model": self.name, "verdict": self.verdict,
                               "context": self.context, "budget": self.budget,
                               "notes": self.notes}
        if self.fit is not None:
            est = self.fit.estimate
            out.update(weights=est.weights, kv_cache=est.kv_cache, kv_cache_type=est.kv_cache_type,
                       compute=est.compute, overhead=est.overhead, total=est.total,
                       loaded_size=est.loaded_size, budget=self.fit.budget, fits=self.fit.fits,
                       over=self.fit.over, cpu_share=round(self.fit.cpu_share, 4))
        return out


def resolve_budget(config: ModelsConfig, gpu_memory: int | None) -> int | None:
    """The bytes models may use on the GPU; None when there is no GPU to fit."""
    vram = config.budget.vram
    if vram == "auto":
        if gpu_memory is None:
            return None
        vram = gpu_memory
    return max(0, int(vram) - config.budget.keep_free)


def runtime_of(config: ModelsConfig) -> Runtime:
    ollama = config.ollama
    return Runtime(flash_attention=ollama.flash_attention, kv_cache_type=ollama.kv_cache_type,
                   parallel=ollama.parallel)


def base_of(entry: ModelEntry, bases: dict[str, str]) -> str:
    """A custom model is sized as its FROM model (bases: custom name -> FROM)."""
    return bases.get(entry.name, entry.name)


def fit_models(config: ModelsConfig, facts: dict[str, ModelFacts], gpu_memory: int | None,
               *, bases: dict[str, str] | None = None,
               fixed_contexts: dict[str, int] | None = None) -> list[ModelFit]:
    """Size every declared model. `fixed_contexts` are num_ctx values a Modelfile sets."""
    bases = bases or {}
    fixed = fixed_contexts or {}
    budget = resolve_budget(config, gpu_memory)
    runtime = runtime_of(config)
    rows: list[ModelFit] = []
    embed_total = 0
    ordered = sorted(config.local, key=lambda e: (not _is_embedding(e, facts, bases),
                                                  e.name != config.default))
    for entry in ordered:
        base = base_of(entry, bases)
        model_facts = facts.get(base)
        row = ModelFit(entry.name, entry, budget, facts=model_facts)
        wanted: int | str = fixed.get(entry.name, entry.context)
        if model_facts is None:
            row.context = wanted if isinstance(wanted, int) else None
            row.notes.append(("not pulled yet" if base == entry.name else f"its base {base} is "
                              "not pulled yet") + " and not in models.lock: size unknown")
            rows.append(row)
            continue
        if budget is None:
            row.context = _cpu_context(model_facts, wanted)
            row.fit = None
            rows.append(row)
            continue
        own_budget = budget
        if config.budget.max_loaded >= 2 and not model_facts.embedding_only:
            own_budget = max(0, budget - embed_total)
            if embed_total:
                row.notes.append(f"budget less {memory_text(embed_total)} for the embedding "
                                 "model(s) kept loaded beside it")
        row.fit = memory.fit(model_facts, own_budget, runtime, wanted)
        if row.fit.note:
            row.notes.append(row.fit.note)
        row.context = row.fit.estimate.context
        if model_facts.embedding_only:
            # The runtime's own reserve is paid once per GPU, not once per loaded model.
            embed_total += row.fit.estimate.total - runtime.minimum_memory
        rows.append(row)
    order = {e.name: i for i, e in enumerate(config.local)}
    return sorted(rows, key=lambda r: order[r.name])


def _is_embedding(entry: ModelEntry, facts: dict[str, ModelFacts], bases: dict[str, str]) -> bool:
    found = facts.get(base_of(entry, bases))
    return bool(found and found.embedding_only)


def _cpu_context(facts: ModelFacts, wanted: int | str) -> int:
    if isinstance(wanted, int):
        return min(wanted, facts.context_length)
    return min(CPU_CONTEXT, facts.context_length)


def memory_text(n: int) -> str:
    return human_bytes(n)


def fit_problems(rows: list[ModelFit]) -> list[str]:
    """Why the models do not fit, one sentence each (empty: they all fit or may spill)."""
    out = []
    for row in rows:
        if row.fit is None or row.ok:
            continue
        est = row.fit.estimate
        out.append(
            f"{row.name} needs {memory_text(est.total)} at context {est.context} but the budget "
            f"is {memory_text(row.fit.budget)}: {memory_text(row.fit.over)} over, so about "
            f"{round(row.fit.cpu_share * 100)}% of it would run on the CPU; lower its context, "
            "pick a smaller quantization, or set allow_cpu: true")
    return out


@dataclass(frozen=True)
class LiveModel:
    """A model as Ollama has it now."""

    name: str
    digest: str
    num_ctx: int | None = None  # the num_ctx parameter baked into the model, if any
    size: int = 0


@dataclass(frozen=True)
class ModelAction:
    kind: str  # pull, create, tune, remove
    model: str
    reason: str
    context: int | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "model": self.model, "reason": self.reason}
        if self.context is not None:
            out["context"] = self.context
        return out


def plan_pulls(config: ModelsConfig, live: dict[str, LiveModel], *,
               follow_due: set[str]) -> list[ModelAction]:
    """Models to pull: declared and missing, or followed and due for an upstream check.

    A custom model's FROM is always declared too (validation requires it)."""
    actions = []
    for name in (e.name for e in config.pulled):
        if name not in live:
            actions.append(ModelAction("pull", name, "not on the server"))
        elif name in follow_due:
            actions.append(ModelAction("pull", name, "follow: checking upstream for a new "
                                       "version"))
    return actions


def plan_changes(config: ModelsConfig, live: dict[str, LiveModel], rows: list[ModelFit], *,
                 managed: set[str], custom_hashes: dict[str, str],
                 recorded_hashes: dict[str, str]) -> list[ModelAction]:
    """After the pulls: contexts to set, custom models to (re)create, models to prune."""
    actions: list[ModelAction] = []
    by_name = {r.name: r for r in rows}
    for entry in config.local:
        row = by_name.get(entry.name)
        context = row.context if row else None
        if entry.modelfile is not None:
            if entry.name not in live:
                actions.append(ModelAction("create", entry.name, "not on the server", context))
            elif recorded_hashes.get(entry.name) != custom_hashes.get(entry.name):
                actions.append(ModelAction("create", entry.name,
                                           f"{entry.modelfile} or its files changed", context))
            elif context is not None and live[entry.name].num_ctx != context:
                actions.append(ModelAction("create", entry.name,
                                           f"num_ctx {live[entry.name].num_ctx} -> {context}",
                                           context))
            continue
        current = live.get(entry.name)
        if current is None or context is None:
            continue
        if current.num_ctx != context:
            actions.append(ModelAction("tune", entry.name,
                                       f"num_ctx {current.num_ctx or 'unset'} -> {context}",
                                       context))
    if config.prune:
        declared = {e.name for e in config.local}
        for name in sorted(managed - declared):
            if name in live:
                actions.append(ModelAction("remove", name, "no longer in models.yaml"))
    return actions


def observed_drift(name: str, estimate_total: int | None, size: int, size_vram: int,
                   has_gpu: bool) -> str | None:
    """Why a loaded model differs from what was planned; None when it is as expected."""
    if has_gpu and size_vram < size:
        gpu = round(100 * size_vram / size) if size else 0
        return (f"{name} is loaded {100 - gpu}%/{gpu}% CPU/GPU: {memory_text(size - size_vram)} "
                "did not fit on the GPU (a client may have asked for a larger context, or "
                "another program holds GPU memory)")
    if estimate_total and abs(size - estimate_total) > DRIFT_TOLERANCE * estimate_total:
        return (f"{name} takes {memory_text(size)} loaded; lanai estimated "
                f"{memory_text(estimate_total)}")
    return None
