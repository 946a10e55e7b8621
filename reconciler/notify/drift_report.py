"""The drift report: what differs from git on this server, and since when.

After every reconcile the daemon records, per drift item, when it was first and
last seen (`drift-since.json`); once a day it writes `drift-report.json` from
that, and `lanai drift --report` shows the latest one. Tracking and rendering
are pure; the few file reads and writes are at the bottom.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from reconciler.core.files import write_json_atomic
from reconciler.desired.servers import placement
from reconciler.models import state as models_state
from reconciler.server.record import iso
from reconciler.server.settings import ServerSettings
from reconciler.stack.render import Rendered

SINCE_FILE = "drift-since.json"
REPORT_FILE = "drift-report.json"


def item_key(item: dict[str, Any]) -> str:
    # What is "the same" drift: the thing and the way it differs, not the wording of the detail.
    return f"{item.get('service')}:{item.get('kind')}"


# -- collection (one place for `lanai drift`, the daemon and the report) ---------------

def collect(settings: ServerSettings, applied: Rendered,
            stack_drift: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """All drift of the applied commit: the stack's (given: live or as last recorded; in
    swarm mode a server that is down is one of them, naming its models), models whose
    loaded memory differs from the plan, and Open WebUI settings changed by hand in areas
    lanai does not manage."""
    return [*stack_drift, *model_drift(settings, applied), *webui_drift(settings, applied)]


def model_records(settings: ServerSettings, applied: Rendered
                  ) -> list[tuple[str, models_state.ModelRecord]]:
    """(how a line names the model, its record) for each model declared for its Ollama:
    compose mode's one models.json; in swarm mode each server's own, "model on box-b"."""
    assert applied.models is not None
    if applied.config.mode != "swarm":
        declared = {m.name for m in applied.models.local}
        models = models_state.load(settings.models_file).models
        return [(name, rec) for name, rec in sorted(models.items()) if name in declared]
    placed = placement([(m.name, m.place) for m in applied.models.local],
                       applied.config.servers)
    out = []
    for server, names in placed.items():
        path = models_state.server_file(settings.models_file, server)
        models = models_state.load(path).models
        out += [(f"{name} on {server}", rec) for name, rec in sorted(models.items())
                if name in names]
    return out


def model_drift(settings: ServerSettings, applied: Rendered) -> list[dict[str, Any]]:
    if applied.models is None:
        return []
    return [{"service": f"model {name}", "kind": "memory", "detail": rec.drift}
            for name, rec in model_records(settings, applied) if rec.drift]


def model_errors(settings: ServerSettings, applied: Rendered | None) -> dict[str, str]:
    """The declared models' last errors (a failed pull, a model that does not fit)."""
    if applied is None or applied.models is None:
        return {}
    return {name: rec.error for name, rec in model_records(settings, applied) if rec.error}


def webui_drift(settings: ServerSettings, applied: Rendered) -> list[dict[str, Any]]:
    if applied.webui is None:
        return []
    try:
        last = json.loads((settings.home / "webui.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        last = {}
    return [{"service": applied.webui.service, "kind": "setting",
             "detail": f"{d['area']}: {d['key']}: {d['current']!r} differs from git "
             f"({d['wanted']!r}); {d['area']} is not under managed, so it stays"}
            for d in last.get("drift") or [] if not d.get("healed")]


# -- since-tracking and the report (pure) -------------------------------------------------

def track(previous: dict[str, Any], items: list[dict[str, Any]], commit: str | None,
          now: datetime) -> dict[str, Any]:
    """drift-since.json after a reconcile that saw `items`: an item keeps its first-seen
    time while it lasts; an item that is gone is forgotten (it comes back as new)."""
    seen = previous.get("items") if isinstance(previous.get("items"), dict) else {}
    tracked: dict[str, Any] = {}
    for item in items:
        key = item_key(item)
        before = seen.get(key) or {}
        tracked[key] = {"service": item.get("service"), "kind": item.get("kind"),
                        "detail": item.get("detail"), "since": before.get("since") or iso(now)}
    return {"applied_commit": commit, "items": tracked}


def build(since: dict[str, Any], now: datetime, *,
          live: list[dict[str, Any]] | None = None, commit: str | None = None) -> dict[str, Any]:
    """The report: from the tracked items, or from `live` items (a report made on demand),
    which keep the first-seen times tracked for them."""
    if live is not None:
        since = track(since, live, commit, now)
    items = sorted((since.get("items") or {}).values(), key=lambda i: (i["since"], i["service"]))
    return {"written": iso(now), "applied_commit": since.get("applied_commit"),
            "in_sync": not items, "drift": items}


def render_lines(report: dict[str, Any]) -> list[str]:
    """The report as plain text lines (a table): a notice body, `lanai drift --report`."""
    commit = (report.get("applied_commit") or "?")[:12]
    head = f"drift report written {report['written']}"
    if report["in_sync"]:
        return [head, f"in sync: the server matches {commit}"]
    rows = [("SERVICE", "KIND", "SINCE", "DETAIL")] + [
        (i["service"], i["kind"], i["since"], i["detail"] or "") for i in report["drift"]]
    widths = [max(len(str(r[c])) for r in rows) for c in range(3)]
    lines = [head, f"{len(report['drift'])} difference(s) from {commit}:"]
    lines += ["  " + "  ".join(str(r[c]).ljust(widths[c]) for c in range(3)) + "  " + r[3]
              for r in rows]
    return lines


# -- files ------------------------------------------------------------------------------

def since_path(settings: ServerSettings) -> Path:
    return settings.home / SINCE_FILE


def report_path(settings: ServerSettings) -> Path:
    return settings.home / REPORT_FILE


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def record(settings: ServerSettings, items: list[dict[str, Any]], commit: str | None,
           now: datetime) -> None:
    """Update drift-since.json (root-only, atomic); an idle poll, which changes nothing in
    it, writes nothing."""
    path = since_path(settings)
    previous = read_json(path)
    current = track(previous, items, commit, now)
    if current != previous:
        write_json_atomic(path, current)


def write_report(settings: ServerSettings, now: datetime,
                 live: list[dict[str, Any]] | None = None,
                 commit: str | None = None) -> dict[str, Any]:
    report = build(read_json(since_path(settings)), now, live=live, commit=commit)
    write_json_atomic(report_path(settings), report)
    return report
