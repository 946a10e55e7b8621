"""The models part of the snapshot: each model of the applied models.yaml with its state
(`lanai status`'s rows, models.state.server_models), the last fit table the converge
recorded (models.plan's estimate against the VRAM budget: the same numbers as
`lanai models fit`) and what Ollama reports now (/api/ps, read through metrics.live).

Enough for a bar per model: the estimate and the loaded size against the budget, and the
share of the loaded model that is on the GPU."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from reconciler.bench.results import processor_label
from reconciler.bench.run import find_ps
from reconciler.desired.models_yaml import ModelsConfig
from reconciler.models.ollama import Loaded
from reconciler.models.state import ModelsState, server_models


def model_rows(config: ModelsConfig, state: ModelsState, pull: dict[str, Any] | None,
               loaded: list[Loaded] | None) -> dict[str, Any]:
    """`loaded`: /api/ps now, None when Ollama did not answer (then the sizes it reported
    after the last converge are shown, marked as not live)."""
    listed = server_models(config, state, pull)
    fits = {row.get("model"): row for row in state.fits}
    running = [asdict(m) for m in loaded or []]
    rows = []
    for row in listed["models"]:
        name = row["model"]
        fit = fits.get(name, {})
        now = find_ps(running, name) if loaded is not None else None
        observed = now if now is not None else (row.get("observed") if loaded is None
                                                else None)
        size = _int(observed.get("size")) if observed else None
        vram = _int(observed.get("size_vram")) if observed else None
        rows.append({
            "name": name,
            "default": bool(row.get("default")),
            "state": row["state"],  # ready, pulling, missing, failed
            "pulled": row["state"] == "ready",
            "loaded": None if loaded is None else now is not None,
            "context": row.get("context") or fit.get("context"),
            "verdict": row.get("verdict") or "unknown",  # fits, spills, cpu, unknown, ...
            "estimate": _int(fit.get("total")),  # GPU memory lanai plans for it
            "estimate_loaded": _int(fit.get("loaded_size")),  # what Ollama should report
            "planned_cpu_share": fit.get("cpu_share"),
            "budget": _int(fit.get("budget")),
            "size": size,  # Ollama: the loaded model in all
            "size_vram": vram,  # Ollama: the part of it on the GPU
            "gpu_share": round(min(1.0, vram / size), 4) if size and vram is not None else None,
            "processor": processor_label(size, vram) if observed else None,
            "live": now is not None,
            "note": row.get("note"),
        })
    budgets = [r["budget"] for r in rows if r["budget"] is not None]
    return {"declared": True, "sync": listed["sync"], "ollama": loaded is not None,
            "budget": max(budgets) if budgets else None, "gpu": listed.get("gpu"),
            "pull": _pull(listed.get("pull")), "items": rows}


def _pull(pull: dict[str, Any] | None) -> dict[str, Any] | None:
    """The pull in progress, without the process id pull.json keeps."""
    if not pull:
        return None
    return {key: pull.get(key) for key in ("model", "completed", "total", "percent", "rate",
                                           "eta")}


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else None
