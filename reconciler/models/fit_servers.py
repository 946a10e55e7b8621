"""The fit tables of a swarm: one per server that runs Ollama, offline.

Each server holds the models models.yaml places on it and has its own GPU, so each
gets its own budget: `--vram NAME=SIZE` first, then the gpu lanai.yaml writes for it (a
size or a card), then the GPU models.lock recorded for it (`servers:`). Model facts are
shared: a tag is the same file on every server. budget.vram, when a size, caps every
server with a GPU (a card with more memory still gets no more than that).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler.core.sizes import human_bytes
from reconciler.desired.lanai_yaml import LanaiConfig
from reconciler.desired.models_yaml import ModelsConfig
from reconciler.desired.servers import Server, placement
from reconciler.models import lock as lock_mod
from reconciler.models.fit import FitReport, custom_sources
from reconciler.models.plan import ModelFit, fit_models, fit_problems, resolve_budget


@dataclass(frozen=True)
class ServerGpu:
    """A server's GPU memory for the fit, and where that number came from."""

    memory: int | None  # bytes; None: no GPU, or not known
    name: str | None = None  # the card, where known
    source: str | None = None  # for the table's heading, e.g. "lanai.yaml gpu rtx-3070 8 GiB"
    no_gpu: str | None = None  # who says the server has no GPU: models run on its CPU

    @property
    def known(self) -> bool:
        return self.memory is not None or self.no_gpu is not None

    @property
    def status(self) -> str:
        if self.memory is not None:
            return "known"
        return "none" if self.no_gpu is not None else "unknown"


def server_gpu(server: Server, lock: lock_mod.ModelsLock | None, vram: int | None) -> ServerGpu:
    """The GPU memory `server`'s models are fitted to (in the module's order)."""
    if vram is not None:
        return ServerGpu(vram, source=f"--vram {server.name}={human_bytes(vram)}")
    if server.gpu == "none":
        return ServerGpu(None, no_gpu="gpu: none in lanai.yaml")
    if server.vram is not None:
        card = server.gpu if isinstance(server.gpu, str) else None
        return ServerGpu(server.vram, card, f"lanai.yaml gpu {server.describe_gpu()}")
    fact = lock.servers.get(server.name) if lock else None
    if fact is None:
        return ServerGpu(None)
    if fact.memory is None:
        return ServerGpu(None, no_gpu=f"per {lock_mod.LOCK_FILE}")
    return ServerGpu(fact.memory, fact.name, f"{lock_mod.LOCK_FILE} {fact.name or 'GPU'} "
                     f"{human_bytes(fact.memory)}")


def capped(gpu: ServerGpu, vram: int | str) -> tuple[int | None, str | None]:
    """The memory to fit to and its source, once budget.vram (a size, or auto) caps it.
    A server without a GPU stays without: its models run on the CPU whatever the cap."""
    if vram == "auto" or gpu.no_gpu is not None:
        return gpu.memory, gpu.source
    cap = int(vram)
    if gpu.memory is not None and gpu.memory <= cap:
        return gpu.memory, gpu.source
    below = f", below {gpu.source}" if gpu.source else ""
    return cap, f"budget.vram {human_bytes(cap)}{below}"


def server_models(config: ModelsConfig, placed: list[str]) -> ModelsConfig:
    """models.yaml as one server sees it: only the models placed there, the default only
    where it is placed (it is warmed on each server that holds it), and budget.vram
    already resolved into the memory fit_models is given."""
    local = [m for m in config.local if m.name in placed]
    default = config.default if config.default in placed else None
    budget = config.budget.model_copy(update={"vram": "auto"})
    return config.model_copy(update={"local": local, "default": default, "budget": budget})


def fit_servers(root: Path, models_config: ModelsConfig, lanai_config: LanaiConfig, *,
                vram: dict[str, int] | None = None, lock: lock_mod.ModelsLock | None = None
                ) -> dict[str, FitReport]:
    """Server name -> the fit of the models placed on it, for each server that runs Ollama,
    in lanai.yaml's order. `vram`: --vram overrides by server; `lock` defaults to
    root/models.lock."""
    lock_problem: str | None = None
    if lock is None:
        try:
            lock = lock_mod.read(root / lock_mod.LOCK_FILE)
        except lock_mod.LockError as exc:
            lock_problem = f"{lock_mod.LOCK_FILE}: {exc}"
    placed = placement([(m.name, m.place) for m in models_config.local], lanai_config.servers)
    bases, fixed = custom_sources(root, models_config)
    facts = dict(lock.models) if lock else {}
    manager = lanai_config.manager
    reports: dict[str, FitReport] = {}
    for server in lanai_config.servers:
        if server.name not in placed:
            continue  # no Ollama there, so no models to fit
        gpu = server_gpu(server, lock, (vram or {}).get(server.name))
        memory, budget_from = capped(gpu, models_config.budget.vram)
        config = server_models(models_config, placed[server.name])
        rows = fit_models(config, facts, memory, bases=bases, fixed_contexts=fixed)
        report = FitReport(
            rows=rows, gpu_name=gpu.name, gpu_memory=gpu.memory,
            budget=resolve_budget(config, memory),
            facts_from=lock_mod.LOCK_FILE if lock and lock.models else "nowhere",
            budget_from=budget_from, server=server.name,
            role="manager" if manager is not None and manager.name == server.name else "worker",
            gpu_status=gpu.status)
        if lock_problem:
            report.problems.append(lock_problem)
        report.problems += fit_problems(rows)
        if rows:
            report.warnings += server_warnings(server.name, gpu, rows, memory)
        reports[server.name] = report
    return reports


def server_warnings(name: str, gpu: ServerGpu, rows: list[ModelFit],
                    memory: int | None) -> list[str]:
    """What could not be checked on this server, and how to check it."""
    out: list[str] = []
    unknown = [r.name for r in rows if not r.known]
    if unknown:
        out.append(f"not checked: {', '.join(unknown)} (not in {lock_mod.LOCK_FILE}); after "
                   f"the servers have pulled them, run `lanai models lock > "
                   f"{lock_mod.LOCK_FILE}` on the manager and commit it")
    if gpu.no_gpu is not None:
        out.append(f"{name} has no NVIDIA GPU ({gpu.no_gpu}): its models run on the CPU, no "
                   "VRAM budget applies")
    elif not gpu.known:
        checked = ("checked against budget.vram only" if memory is not None
                   else "its budget is not checked")
        out.append(f"{name}'s GPU is not known (gpu: auto in lanai.yaml, and "
                   f"{lock_mod.LOCK_FILE} has no servers.{name}), so {checked}; write its gpu "
                   f"in lanai.yaml (e.g. gpu: rtx-3070), or pass --vram {name}=8GiB")
    return out


def flat_problems(reports: dict[str, FitReport]) -> list[str]:
    """Every server's problems in one list, each named by its server; a problem that every
    server has (an unreadable models.lock) is said once."""
    lists = [r.problems for r in reports.values()]
    shared = [p for p in lists[0] if all(p in other for other in lists[1:])] \
        if len(lists) > 1 else []
    out = list(shared)
    for name, report in reports.items():
        out += [f"{name}: {p}" for p in report.problems if p not in shared]
    return out


def servers_json(reports: dict[str, FitReport], config: LanaiConfig) -> dict[str, Any]:
    """What `--json` prints in swarm mode: each server's fit, the servers without Ollama
    (no table), and every problem in one list, as compose mode's report has it."""
    return {"servers": {name: report.to_json() for name, report in reports.items()},
            "without_ollama": [s.name for s in config.servers if not s.runs_ollama],
            "problems": flat_problems(reports)}
