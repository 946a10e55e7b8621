"""Everything the status page shows, as one JSON-ready dict: read from lanai's records
(state, history, models, drift tracking, bench runs, backups) and the live readings
(metrics.live.Live: Docker, Ollama's /api/ps, nvidia-smi, each at most once per
interval). Like the metrics scrape it never takes the reconcile lock, so the page never
waits for a reconcile. A server with no records yet gives a valid snapshot that says so.

Nothing secret: no environment values, no secrets file, no deploy key, no repo URL (it
may carry a token); redact.scrub blanks any secret value that reaches a string anyway.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from reconciler.backup.store import Store
from reconciler.bench.store import BenchRun
from reconciler.metrics.live import Live
from reconciler.models import state as models_state
from reconciler.models.pulls import load_progress
from reconciler.notify import drift_report
from reconciler.server import working
from reconciler.server.record import State, load_state, now_iso, parse_iso
from reconciler.server.settings import ServerSettings
from reconciler.stack import health as health_mod
from reconciler.stack import readiness
from reconciler.stack.facts import Facts
from reconciler.stack.render import Rendered
from reconciler.stack.sync import applied_deployment, held_services
from reconciler.statuspage import records, redact
from reconciler.statuspage.model_rows import model_rows

VERSION = 1  # of the snapshot's shape; page.js reads this one
HISTORY_SHOWN = 10
BACKUPS_SHOWN = 10
CHART_RUNS = 8  # the bench runs charted (as `lanai bench --plot`): one colour each
MiB = 1024 * 1024


def snapshot(settings: ServerSettings, live: Live) -> dict[str, Any]:
    state = load_state(settings.state_file)
    applied = applied_deployment(settings, state)
    now = now_iso()
    history = records.history(settings.history_file)
    facts = live.containers.get().facts if applied is not None else None
    report = health_mod.build(
        state, applied, facts, repo=None, suspended=_suspended(settings), daemon=None,
        working=working.read(working.file(settings.home), settings.lock_dir),
        passed=readiness.read(readiness.file(settings.home)))
    data = {
        "version": VERSION,
        "now": now,
        "overall": _overall(settings, state, applied, report, history, facts),
        "services": _services(state, applied, report, facts),
        "history": [_entry(r) for r in history[:HISTORY_SHOWN]],
        "drift": _drift(settings, state, applied),
        "models": _models(settings, applied, live),
        "gpus": _gpus(live),
        "bench": _bench(records.bench_runs(settings.bench_file)),
        "backups": _backups(settings, now),
    }
    scrubbed: dict[str, Any] = redact.scrub(data, redact.secret_values(settings.secrets_file))
    return scrubbed


# -- the stack ------------------------------------------------------------------------------

def _overall(settings: ServerSettings, state: State, applied: Rendered | None,
             report: health_mod.StatusReport, history: list[dict[str, Any]],
             facts: Facts | None) -> dict[str, Any]:
    commit = state.applied_commit
    head = state.head_commit
    subject = records.commit_subject(history, settings.clone_dir, commit) if commit else None
    return {
        "deployed": applied is not None,
        "sync": report.sync,  # Synced, OutOfSync, Failed, Progressing, Unknown
        "synced": report.sync == "Synced",
        "health": report.health if facts is not None or applied is None else "Unknown",
        "docker": facts is not None if applied is not None else None,
        "doing": report.doing,
        "suspended": report.suspended,
        "branch": state.branch,
        "applied": {"commit": commit, "short": commit[:12], "subject": subject,
                    "at": state.applied_at} if commit else None,
        "head": {"commit": head, "short": head[:12]} if head and head != commit else None,
        "last_check": state.last_check,
        "last_check_ms": state.last_check_ms,
        "last_error": report.last_error,
        "source_error": report.source_error,
        "problems": dict(sorted(report.problems.items())),
    }


def _suspended(settings: ServerSettings) -> dict[str, Any] | None:
    """`lanai suspend`'s record (since, reason), or None."""
    try:
        data = json.loads(settings.suspend_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {"since": None, "reason": None}  # there, but unreadable: still suspended
    if not isinstance(data, dict):
        return {"since": None, "reason": None}
    return {"since": data.get("since"), "reason": data.get("reason")}


def _services(state: State, applied: Rendered | None, report: health_mod.StatusReport,
              facts: Facts | None) -> list[dict[str, Any]]:
    """Per service of the applied commit: sync (matches git?) and health, as `lanai
    status` judges them; Unknown health while Docker does not answer."""
    if applied is None:
        return []
    judged = {s.service: s for s in report.services}
    drifted = {str(d.get("service")) for d in state.drift}
    window = applied.config.sync.heal_limit.window
    held = held_services(state, applied.config)
    cutoff = datetime.now(UTC).timestamp() - window
    out = []
    for name, spec in sorted(applied.services.items()):
        seen = judged.get(name)
        if facts is None or seen is None:
            health, status, detail = "Unknown", None, "Docker did not answer"
            sync = "OutOfSync" if name in drifted else "Unknown"
        else:
            health, status, detail = seen.health, seen.state, seen.detail
            matches = health != "Missing" and detail != "differs from git" \
                and name not in drifted
            sync = "Synced" if matches else "OutOfSync"
        out.append({"name": name, "sync": sync, "health": health, "state": status,
                    "detail": detail, "image": spec.image,
                    "heals": sum(1 for t in state.heals.get(name, []) if t >= cutoff),
                    "heal_window_s": window, "held": name in held})
    return out


def _entry(record: dict[str, Any]) -> dict[str, Any]:
    """One history record, short: what was done (the CLI's ACTIONS column) and why."""
    done = [*(record.get("actions") or []),
            *((record.get("models") or {}).get("actions") or [])]
    actions = [{"kind": str(a.get("kind")), "target": str(a.get("service") or
                                                             a.get("model") or ""),
                "ok": a.get("result") == "ok"} for a in done]
    commit = record.get("commit")
    return {"at": record.get("at"), "trigger": record.get("trigger"),
            "commit": commit, "short": commit[:12] if isinstance(commit, str) else None,
            "result": record.get("status"), "failed": bool(record.get("error")),
            "summary": ", ".join(f"{a['kind']} {a['target']}".strip()
                                 + ("" if a["ok"] else " (failed)") for a in actions),
            "error": record.get("error"), "subject": record.get("subject"),
            "drift": len(record.get("drift") or [])}


def _drift(settings: ServerSettings, state: State,
           applied: Rendered | None) -> dict[str, Any]:
    """As of the daemon's last check (the page does not plan): the stack's drift, models
    whose memory differs from the plan, Open WebUI settings changed by hand; each with
    the time it was first seen."""
    items = drift_report.collect(settings, applied, state.drift) if applied else state.drift
    tracked = drift_report.read_json(drift_report.since_path(settings)).get("items")
    since = tracked if isinstance(tracked, dict) else {}
    kinds: dict[str, int] = {}
    shown = []
    for item in items:
        kind = str(item.get("kind"))
        kinds[kind] = kinds.get(kind, 0) + 1
        first = since.get(drift_report.item_key(item))
        shown.append({"service": item.get("service"), "kind": kind,
                      "detail": item.get("detail"),
                      "since": first.get("since") if isinstance(first, dict) else None})
    return {"checked": state.last_check, "count": len(shown), "kinds": dict(sorted(kinds.items())),
            "items": shown}


# -- models, GPUs, bench, backups ----------------------------------------------------------

def _models(settings: ServerSettings, applied: Rendered | None, live: Live) -> dict[str, Any]:
    if applied is None or applied.models is None:
        return {"declared": False, "items": []}
    return model_rows(applied.models, models_state.load(settings.models_file),
                      load_progress(settings.pull_file), live.loaded.get())


def _gpus(live: Live) -> dict[str, Any]:
    found = live.gpus.get()
    return {"error": found.error, "items": [{
        "index": g.index, "name": g.name,
        "memory_used": g.memory_used_mib * MiB if g.memory_used_mib is not None else None,
        "memory_total": g.memory_total_mib * MiB if g.memory_total_mib is not None else None,
        "utilization": g.utilization_gpu_pct, "temperature": g.temperature_c,
    } for g in found.gpus]}


def chart_runs(runs: list[BenchRun]) -> list[BenchRun]:
    """The runs bench.svg charts: the newest ones with the newest run's prompts (as
    `lanai bench --plot`: runs of other prompts do not compare)."""
    if not runs:
        return []
    version = runs[-1].prompt_set_version
    return [r for r in runs if r.prompt_set_version == version][-CHART_RUNS:]


def _bench(runs: list[BenchRun]) -> dict[str, Any]:
    charted = chart_runs(runs)
    latest = runs[-1] if runs else None
    # The chart's address changes with the charted runs, so the page reloads it then only.
    key = f"{len(runs)}\n{latest.id}\n{latest.at}" if latest else ""
    tag = hashlib.sha256(key.encode()).hexdigest()[:12] if latest else "none"
    return {"runs": len(runs), "latest": latest.at if latest else None,
            "models": sorted({m.model for r in charted for m in r.results}),
            "chart": f"bench.svg?v={tag}"}


def _backups(settings: ServerSettings, now: str) -> dict[str, Any]:
    listed = Store(settings.backups_dir).list()  # newest first
    moment = parse_iso(now)
    items = []
    for backup in listed[:BACKUPS_SHOWN]:
        try:
            age: float | None = round((moment - parse_iso(backup.created)).total_seconds())
        except ValueError:
            age = None
        items.append({"id": backup.id, "kind": backup.kind, "created": backup.created,
                      "size": backup.size, "age_s": age, "commit": backup.commit})
    return {"count": len(listed), "items": items}
