"""Human output for the CLI, with Rich. Results go to stdout, progress and errors to stderr."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from reconciler.core.durations import format_duration
from reconciler.server.record import Outcome
from reconciler.stack.health import StatusReport
from reconciler.swarm import status as swarm_status

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

STYLE = {"Synced": "green", "OutOfSync": "yellow", "Failed": "red", "Unknown": "dim",
         "Healthy": "green", "Progressing": "yellow", "Degraded": "red", "Missing": "red",
         "ok": "green", "failed": "red"}


def error(message: str) -> None:
    err.print(Text("error: ", style="bold red") + Text(message))


def note(message: str) -> None:
    err.print(Text(message))


def progress(message: str) -> None:
    err.print(Text("… " + message, style="dim"))


def problems(lines: list[str]) -> None:
    for line in lines:
        error(line)


def ago(stamp: str | None) -> str:
    if not stamp:
        return "never"
    try:
        when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return stamp
    return format_duration((datetime.now(UTC) - when).total_seconds()) + " ago"


def short(commit: str | None) -> str:
    return commit[:12] if commit else "-"


def _styled(value: str) -> Text:
    return Text(value, style=STYLE.get(value, ""))


def outcome(result: Outcome) -> None:
    headline = {
        "applied": f"deployed {short(result.commit)}",
        "no-op": f"in sync at {short(result.applied_commit)}, nothing to do",
        "healed": f"healed drift at {short(result.applied_commit)}",
        "drift": f"drift found at {short(result.applied_commit)} (not healed)",
        "failed": f"commit {short(result.commit)} failed",
        "waiting": f"commit {short(result.commit)} is waiting for a fix",
        "suspended": "suspended",
        "source-error": "cannot fetch the state repo",
    }.get(result.status, result.status)
    out.print(Text(headline, style="bold " + ("red" if result.error else "green")))
    for action in result.actions:
        mark = "✓" if action.get("result") == "ok" else "✗"
        out.print(f"  {mark} {action['kind']} {action['service']}: {action['reason']}")
        for detail in action.get("details") or []:
            out.print(Text(f"      {detail}", style="dim"))
    for item in result.drift:
        out.print(Text(f"  drift: {item['service']} {item['kind']}: {item['detail']}",
                       style="yellow"))
    for action in (result.models or {}).get("actions") or []:
        mark = "✓" if action.get("result") == "ok" else "✗"
        why = action.get("reason") or action.get("error") or ""
        out.print(f"  {mark} {action['kind']} model {action['model']}" + (f": {why}" if why
                                                                          else ""))
    for name in (result.models or {}).get("pulling") or []:
        out.print(Text(f"  … pulling model {name} in the background (`lanai status` shows "
                       "its progress)", style="yellow"))
    for line in (result.models or {}).get("drift") or []:
        out.print(Text(f"  drift: {line}", style="yellow"))
    for line in result.notes:
        out.print(Text(f"  {line}", style="dim"))
    if result.error:
        error(result.error)
    total = result.durations.get("total")
    if total is not None and result.actions:
        compose_s = result.durations.get("compose", 0) + result.durations.get("health_wait", 0)
        out.print(Text(f"  took {format_duration(total)} ({format_duration(compose_s)} in "
                       "compose and health checks)", style="dim"))


def plan(data: dict[str, Any]) -> None:
    actions = data["actions"]
    base = f"from {short(data.get('applied_commit'))} to {short(data.get('commit'))}"
    if not actions and data.get("model_actions"):
        out.print(Text(f"no stack changes {base}; models:", style="bold"))
    elif not actions:
        out.print(Text(f"no changes ({base})", style="green"))
    else:
        out.print(Text(f"{len(actions)} change(s) {base}:", style="bold"))
        for action in actions:
            out.print(f"  {action['kind']:<8} {action['service']}: {action['reason']}")
            for detail in action.get("details") or []:
                out.print(Text(f"           {detail}", style="dim"))
    for item in data.get("drift") or []:
        out.print(Text(f"  drift: {item['service']} {item['kind']}: {item['detail']}",
                       style="yellow"))
    for action in data.get("model_actions") or []:
        out.print(f"  {action['kind']:<8} model {action['model']}: {action['reason']}")
    for line in data.get("notes") or []:
        out.print(Text(f"  note: {line}", style="dim"))


def status(report: StatusReport) -> None:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("Repo", f"{report.repo or '-'} (branch {report.branch or '?'})")
    applied = f"{short(report.applied_commit)}, applied {ago(report.applied_at)}"
    grid.add_row("Applied", applied if report.applied_commit else "nothing yet")
    sync = _styled(report.sync)
    if report.sync == "OutOfSync" and report.head_commit != report.applied_commit:
        sync.append(f" (branch is at {short(report.head_commit)})")
    elif report.sync == "OutOfSync":
        sync.append(" (drift; `lanai drift`)")
    elif report.sync == "Progressing" and report.doing:
        sync.append(f" ({report.doing})")
    grid.add_row("Sync", sync)
    grid.add_row("Health", _styled(report.health))
    for part, problem in sorted(report.problems.items()):
        grid.add_row("Problem", Text(f"{part}: {problem}", style="red"))
    if report.last_error:
        grid.add_row("Last error", Text(report.last_error, style="red"))
    if report.source_error:
        grid.add_row("Git", Text(report.source_error, style="red"))
    if report.last_heal:
        what = "; ".join(f"{d['service']} {d['kind']}" for d in report.last_heal["drift"])
        done = ", ".join(f"{a['kind']} {a['service']}: {a['result']}"
                         for a in report.last_heal["actions"])
        grid.add_row("Last heal", f"{ago(report.last_heal['at'])}: {what or 'drift'}"
                     f" ({done or 'no action'})")
    if report.backups:
        newest = report.backups.get("newest")
        line = (f"{newest['id']} ({newest['kind']}, {ago(newest['created'])}), "
                f"{report.backups['count']} kept" if newest else "none yet (`lanai backup`)")
        grid.add_row("Backups", line)
        pin = report.backups.get("restore_pin")
        if pin:
            grid.add_row("Restored", Text(f"{pin['service']} runs {pin['image']} from backup "
                                          f"{pin['backup']}; drift from git until the next "
                                          "commit", style="yellow"))
    if report.suspended is not None:
        why = f": {report.suspended.get('reason')}" if report.suspended.get("reason") else ""
        grid.add_row("Suspended", Text(f"since {report.suspended.get('since')}{why}",
                                       style="yellow"))
    daemon = (f"running (pid {report.daemon.get('pid')})" if report.daemon
              else "not running (`systemctl start lanai`)")
    last = ""
    if report.last_check:
        took = f", {report.last_check_ms:.0f} ms" if report.last_check_ms is not None else ""
        last = f"; last check {ago(report.last_check)}{took}"
    grid.add_row("Daemon", daemon + last)
    if report.gpu:
        grid.add_row("GPU", report.gpu.get("summary") or Text(str(report.gpu.get("error")),
                                                               style="red"))
    out.print(grid)
    if report.servers is not None:  # swarm mode: one line per server
        servers = Table(box=None, pad_edge=False, header_style="bold")
        servers.add_column("SERVER")
        servers.add_column("ROLE, NODE: SERVICES")
        for row in report.servers:
            style = "" if row["state"] == "ready" else "red"
            servers.add_row(row["server"], Text(swarm_status.server_line(row), style=style))
        out.print()
        out.print(servers)
    if report.services:
        table = Table(box=None, pad_edge=False, header_style="bold")
        for column in ("SERVICE", "HEALTH", "STATE", "IMAGE", "NOTE"):
            table.add_column(column)
        for service in report.services:
            table.add_row(service.service, _styled(service.health), service.state,
                          service.image or "-", service.detail or "")
        out.print()
        out.print(table)


def drift(data: dict[str, Any]) -> None:
    if not data["drift"]:
        out.print(Text(f"no drift: the server matches {short(data['applied_commit'])}",
                       style="green"))
        return
    out.print(Text(f"drift from {short(data['applied_commit'])}:", style="bold yellow"))
    for item in data["drift"]:
        out.print(f"  {item['service']:<14} {item['kind']:<10} {item['detail']}")
    if data["heal"]:
        verb = "will" if data["self_heal"] else "would (self-heal is off)"
        out.print(Text(f"the next reconcile {verb}: " + ", ".join(
            f"{a['kind']} {a['service']}" for a in data["heal"]), style="dim"))


def history(records: list[dict[str, Any]]) -> None:
    if not records:
        out.print(Text("no reconciles recorded yet", style="dim"))
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("WHEN", "TRIGGER", "COMMIT", "RESULT", "ACTIONS", "MESSAGE"):
        table.add_column(column, overflow="fold")
    for record in records:
        done = [*(record.get("actions") or []),
                *((record.get("models") or {}).get("actions") or [])]
        actions = ", ".join(f"{a['kind']} {a.get('service') or a.get('model')}"
                            + ("" if a.get("result") == "ok" else " ✗") for a in done) or "-"
        message = record.get("error") or record.get("subject") or ""
        result = record.get("status", "?")
        table.add_row(ago(record.get("at")), record.get("trigger", ""),
                      short(record.get("commit")),
                      Text(result, style="red" if record.get("error") else "green"),
                      actions, message)
    out.print(table)
