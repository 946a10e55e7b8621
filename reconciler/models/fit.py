"""The fit table of a state directory, offline: models.yaml + models.lock (+ --vram).

What `lanai validate`, `lanai plan --dir` and `lanai models fit` run in a pull
request's CI, where the server cannot be reached.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconciler.core.sizes import human_bytes
from reconciler.desired import modelfile
from reconciler.desired.models_yaml import ModelsConfig
from reconciler.models import lock as lock_mod
from reconciler.models.plan import ModelFit, fit_models, fit_problems, resolve_budget


@dataclass
class FitReport:
    rows: list[ModelFit]
    gpu_name: str | None
    gpu_memory: int | None
    budget: int | None
    facts_from: str  # where sizes and architectures came from
    budget_from: str | None = None  # where the GPU memory came from
    problems: list[str] = field(default_factory=list)  # fail the check
    warnings: list[str] = field(default_factory=list)  # could not be checked
    # Swarm mode: the server these models are placed on, its role (manager, worker) and
    # whether its GPU is known, none (models on the CPU) or unknown (not checked).
    server: str | None = None
    role: str | None = None
    gpu_status: str | None = None

    def to_json(self) -> dict[str, Any]:
        # Compose mode's JSON keeps its keys: scripts read it.
        where = ({"server": self.server, "role": self.role, "gpu_status": self.gpu_status}
                 if self.server is not None else {})
        return {**where, "gpu": {"name": self.gpu_name, "memory": self.gpu_memory},
                "budget": self.budget, "budget_from": self.budget_from,
                "facts_from": self.facts_from,
                "models": [r.to_json() for r in self.rows], "problems": self.problems,
                "warnings": self.warnings}


def custom_sources(root: Path, config: ModelsConfig) -> tuple[dict[str, str], dict[str, int]]:
    """Custom model -> its FROM, and the num_ctx its Modelfile fixes (if any)."""
    bases: dict[str, str] = {}
    fixed: dict[str, int] = {}
    for entry in config.custom:
        assert entry.modelfile is not None
        parsed = modelfile.parse((root / entry.modelfile).read_text(encoding="utf-8"))
        bases[entry.name] = parsed.from_
        context = num_ctx_of(parsed.parameters)
        if context:
            fixed[entry.name] = context
    return bases, fixed


def num_ctx_of(params: dict[str, Any]) -> int | None:
    """The num_ctx among a model's parameters (the last one, as Ollama reads them)."""
    value = params.get("num_ctx")
    if isinstance(value, list):
        value = value[-1] if value else None
    return int(value) if value is not None else None


def fit_directory(root: Path, config: ModelsConfig, *, vram: int | None = None,
                  lock: lock_mod.ModelsLock | None = None) -> FitReport:
    """Fit `config` with facts from `lock` (default: root/models.lock)."""
    if lock is None:
        try:
            lock = lock_mod.read(root / lock_mod.LOCK_FILE)
        except lock_mod.LockError as exc:
            lock = None
            lock_problem: str | None = f"{lock_mod.LOCK_FILE}: {exc}"
        else:
            lock_problem = None
    else:
        lock_problem = None
    facts = dict(lock.models) if lock else {}
    gpu_memory = vram if vram is not None else (lock.gpu_memory if lock else None)
    gpu_name = lock.gpu_name if lock else None
    bases, fixed = custom_sources(root, config)
    rows = fit_models(config, facts, gpu_memory, bases=bases, fixed_contexts=fixed)
    if config.budget.vram != "auto":
        budget_from = f"budget.vram {human_bytes(int(config.budget.vram))}"
    elif vram is not None:
        budget_from = f"--vram {human_bytes(vram)}"
    elif gpu_memory is not None:
        budget_from = f"{gpu_name or 'the GPU'} {human_bytes(gpu_memory)}"
    else:
        budget_from = None
    report = FitReport(rows=rows, gpu_name=gpu_name, gpu_memory=gpu_memory,
                       budget=resolve_budget(config, gpu_memory),
                       facts_from=lock_mod.LOCK_FILE if lock and lock.models else "nowhere",
                       budget_from=budget_from)
    if lock_problem:
        report.problems.append(lock_problem)
    report.problems += fit_problems(rows)
    unknown = [r.name for r in rows if not r.known]
    if unknown:
        report.warnings.append(
            f"not checked: {', '.join(unknown)} (not in {lock_mod.LOCK_FILE}); after the server "
            f"has pulled them, run `lanai models lock > {lock_mod.LOCK_FILE}` there and commit "
            "it")
    if config.budget.vram == "auto" and gpu_memory is None and lock is not None \
            and lock.gpu_memory is None and vram is None:
        report.warnings.append("the server has no NVIDIA GPU (per models.lock): models run on "
                               "the CPU, no VRAM budget applies")
    elif config.budget.vram == "auto" and gpu_memory is None and vram is None:
        report.warnings.append("budget.vram is auto and there is no models.lock to read the "
                               "GPU from: pass --vram (e.g. --vram 8GiB) to check the budget")
    return report
