"""Human output for the model commands: the fit table (one per server in swarm mode), the
models on the server, bench."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text

from reconciler.cli.views import ago, out
from reconciler.core.sizes import human_bytes

VERDICT_STYLE = {"fits": "green", "cpu": "cyan", "spills": "red", "spills (allowed)": "yellow",
                 "unknown": "dim"}


def _b(value: int | None) -> str:
    return human_bytes(int(value)) if value is not None else "-"


def fit_table(report: dict[str, Any]) -> None:
    """The table a pull request's reviewer reads: per model, where the memory goes."""
    budget = report.get("budget")
    if budget is None:
        head = "no GPU budget: models run on the CPU"
    else:
        source = report.get("budget_from") or "the GPU"
        head = (f"VRAM budget {_b(budget)} ({source} less what is kept free); sizes from "
                f"{report.get('facts_from')}")
    out.print(Text(head, style="bold"))
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column, justify in (("MODEL", "left"), ("CONTEXT", "right"), ("WEIGHTS", "right"),
                            ("KV CACHE", "right"), ("OVERHEAD", "right"), ("TOTAL", "right"),
                            ("BUDGET", "right"), ("FIT", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for row in report["models"]:
        verdict = row["verdict"]
        shown = verdict
        if verdict.startswith("spills") and row.get("cpu_share") is not None:
            shown += f" ({round(row['cpu_share'] * 100)}% CPU)"
        overhead = None
        if row.get("compute") is not None:
            overhead = row["compute"] + row["overhead"]
        table.add_row(row["model"], str(row.get("context") or "-"), _b(row.get("weights")),
                      _b(row.get("kv_cache")), _b(overhead), _b(row.get("total")),
                      _b(row.get("budget")), Text(shown, style=VERDICT_STYLE.get(verdict, "")))
    out.print(table)
    for row in report["models"]:
        for line in row.get("notes") or []:
            out.print(Text(f"  {row['model']}: {line}", style="dim"))
    for line in report.get("warnings") or []:
        out.print(Text(f"  note: {line}", style="yellow"))


def server_fit_tables(data: dict[str, Any], *, problems: bool = False) -> None:
    """Swarm mode: one fit table per server that runs Ollama, under a heading that names
    the server, its role and its GPU; with `problems`, each table's problems below it."""
    for index, (name, report) in enumerate(data["servers"].items()):
        if index:
            out.print()
        out.print(Text(f"{name}: {report.get('role')}, {gpu_text(report)}", style="bold"))
        if report["models"]:
            fit_table(report)
        else:
            out.print(Text("no models in models.yaml are placed here", style="dim"))
        for line in report["problems"] if problems else []:
            out.print(f"[red]✗[/red] {line}")
    for name in data.get("without_ollama") or []:
        out.print()
        out.print(Text(f"{name}: runs no Ollama (gpu: none or ollama: false), so no models",
                       style="dim"))


def gpu_text(report: dict[str, Any]) -> str:
    gpu = report.get("gpu") or {}
    status = report.get("gpu_status")
    if status == "none":
        return "no GPU: models on the CPU"
    if status != "known" or gpu.get("memory") is None:
        return "GPU not known"
    return " ".join(part for part in ("GPU", gpu.get("name"), _b(gpu["memory"])) if part)


def models_table(data: dict[str, Any]) -> None:
    """`lanai models`: what the server has, what it should have, and how it runs."""
    pull = data.get("pull")
    if pull:
        pct = 100 * pull["completed"] / pull["total"] if pull.get("total") else 0
        rate = f" at {_b(int(pull['rate']))}/s" if pull.get("rate") else ""
        eta = f", about {int(pull['eta'])}s left" if pull.get("eta") is not None else ""
        out.print(Text(f"pulling {pull['model']}: {_b(pull.get('completed'))} of "
                       f"{_b(pull.get('total'))} ({pct:.0f}%){rate}{eta}", style="bold cyan"))
    if data.get("sync"):
        out.print(Text(f"Models   {data['sync']}",
                       style={"Synced": "green", "Progressing": "yellow"}.get(data["sync"],
                                                                              "red")))
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("MODEL", "STATE", "CONTEXT", "ESTIMATE", "LOADED", "PROCESSOR", "NOTE"):
        table.add_column(column, overflow="fold")
    for row in data["models"]:
        state = row["state"]
        style = {"ready": "green", "failed": "red", "missing": "yellow",
                 "pulling": "cyan"}.get(state, "")
        observed = row.get("observed") or {}
        table.add_row(row["model"], Text(state, style=style), str(row.get("context") or "-"),
                      _b(row.get("estimate")), _b(observed.get("size")),
                      processor(observed.get("size"), observed.get("size_vram"))
                      if observed else "-",
                      row.get("note") or "")
    out.print(table)
    if data.get("updated"):
        out.print(Text(f"last change {ago(data['updated'])}", style="dim"))


def processor(size: int | None, vram: int | None) -> str:
    """Like `ollama ps`: 100% GPU, 100% CPU, or 48%/52% CPU/GPU."""
    if not size or not vram:
        return "100% CPU"
    if vram >= size:
        return "100% GPU"
    gpu = round(100 * vram / size)
    return f"{100 - gpu}%/{gpu}% CPU/GPU"
