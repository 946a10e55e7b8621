"""status.json: what the page shows, read from records written by the product's own
writers and from the live readings; a fresh server; the applied commit's subject; drift
with its first-seen time; nothing secret."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reconciler.backup.store import Backup, Store
from reconciler.notify import drift_report
from reconciler.server.record import Outcome, append_history, load_state, now_iso, save_state
from reconciler.statuspage.app import StatusApp
from reconciler.statuspage.redact import HIDDEN, scrub

from ..metrics.conftest import COMMIT, PHI3
from .conftest import MARKER, PageServer


def status(app: StatusApp) -> dict[str, Any]:
    answer = app.respond("GET", "/lanai/status.json")
    assert answer.status == 200, answer.body
    assert answer.content_type == "application/json"
    data: dict[str, Any] = json.loads(answer.body)
    return data


def webui(server: PageServer) -> str:
    return next(name for name in server.rendered.services if "webui" in name)


def test_the_snapshot_reads_the_records_and_the_live_readings(page_server: PageServer):
    data = status(page_server.app)
    assert data["version"] == 1
    overall = data["overall"]
    assert overall["deployed"] and overall["synced"] and overall["sync"] == "Synced"
    assert overall["health"] == "Healthy"
    assert overall["applied"]["commit"] == COMMIT
    assert overall["applied"]["short"] == COMMIT[:12]
    assert overall["suspended"] is None
    services = {s["name"]: s for s in data["services"]}
    assert set(services) == set(page_server.rendered.services)
    for name, service in services.items():
        assert (service["sync"], service["health"]) == ("Synced", "Healthy")
        assert service["image"] == page_server.rendered.services[name].image
    [entry] = data["history"]
    assert entry["result"] == "healed" and entry["summary"] == f"restart {webui(page_server)}"
    assert data["drift"] == {"checked": overall["last_check"], "count": 0, "kinds": {},
                             "items": []}
    models = data["models"]
    assert models["declared"] and models["ollama"]
    rows = {m["name"]: m for m in models["items"]}
    phi3 = rows[PHI3]
    assert phi3["pulled"] and phi3["loaded"] and phi3["live"]
    assert phi3["estimate"] == 3_500_000_000 and phi3["verdict"] == "fits"
    assert phi3["size"] > 0 and phi3["processor"].endswith(("CPU", "GPU"))
    others = [m for name, m in rows.items() if name != PHI3]
    assert others and all(not m["pulled"] and m["loaded"] is False for m in others)
    [gpu] = data["gpus"]["items"]
    assert gpu["memory_total"] == 81559 * 1024 * 1024
    assert data["bench"]["runs"] == 1 and data["bench"]["models"] == [PHI3]
    assert data["bench"]["chart"].startswith("bench.svg?v=")
    assert data["backups"]["count"] == 1
    [backup] = data["backups"]["items"]
    assert (backup["id"], backup["size"]) == ("20261203T100000Z-manual", 12345)
    assert backup["age_s"] >= 0


def test_a_fresh_server_gives_a_valid_snapshot_that_says_so(fresh: StatusApp):
    data = status(fresh)
    overall = data["overall"]
    assert not overall["deployed"] and overall["sync"] == "Unknown"
    assert overall["applied"] is None and overall["docker"] is None
    assert data["services"] == [] and data["history"] == []
    assert data["drift"]["count"] == 0
    assert data["models"] == {"declared": False, "items": []}
    assert data["gpus"] == {"error": None, "items": []}
    assert data["bench"]["runs"] == 0 and data["bench"]["latest"] is None
    assert data["backups"] == {"count": 0, "items": []}
    assert not fresh.settings.home.exists()  # reading created nothing


def test_a_stopped_service_and_its_drift_with_the_time_first_seen(page_server: PageServer):
    service = webui(page_server)
    page_server.docker.stopped.add(service)
    page_server.clock[0] += 15  # the next live reading
    state = load_state(page_server.settings.state_file)
    state.drift = [{"service": service, "kind": "stopped", "detail": "exit code 0"}]
    save_state(page_server.settings.state_file, state)
    first = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    drift_report.record(page_server.settings, state.drift, COMMIT, first)
    data = status(page_server.app)
    assert data["overall"]["sync"] == "OutOfSync" and not data["overall"]["synced"]
    assert data["overall"]["health"] == "Degraded"
    services = {s["name"]: s for s in data["services"]}
    assert (services[service]["sync"], services[service]["health"]) == ("OutOfSync",
                                                                         "Degraded")
    assert services[service]["detail"] == "exit code 0"
    assert data["drift"]["count"] == 1 and data["drift"]["kinds"] == {"stopped": 1}
    [item] = data["drift"]["items"]
    assert item == {"service": service, "kind": "stopped", "detail": "exit code 0",
                    "since": "2026-12-01T08:00:00.000Z"}


def test_docker_not_answering_reads_unknown_not_healthy(page_server: PageServer):
    def down() -> object:
        raise ConnectionError("Docker is restarting")

    page_server.app.live._docker_client = down  # type: ignore[assignment]
    page_server.app.live._client = None
    page_server.clock[0] += 15
    data = status(page_server.app)
    assert data["overall"]["docker"] is False and data["overall"]["health"] == "Unknown"
    assert {s["health"] for s in data["services"]} == {"Unknown"}


def test_history_is_newest_first_and_read_again_when_it_grows(page_server: PageServer):
    assert len(status(page_server.app)["history"]) == 1
    for n in range(12):
        append_history(page_server.settings.history_file, {
            "at": now_iso(), "trigger": "push", "subject": f"change {n}", **Outcome(
                "failed" if n == 11 else "applied", commit=f"{n:040x}",
                error="ollama: health check failing" if n == 11 else None,
                actions=[{"kind": "update", "service": "ollama", "result":
                          "failed" if n == 11 else "ok"}],
                models={"actions": [{"kind": "pull", "model": PHI3, "result": "ok"}]},
            ).to_json()})
    history = status(page_server.app)["history"]
    assert len(history) == 10
    newest = history[0]
    assert newest["failed"] and newest["error"] == "ollama: health check failing"
    assert newest["summary"] == f"update ollama (failed), pull {PHI3}"
    assert newest["short"] == f"{11:040x}"[:12] and newest["subject"] == "change 11"
    assert history[1]["subject"] == "change 10" and not history[1]["failed"]


def test_the_applied_commit_subject_from_the_history_or_the_mirror(page_server: PageServer,
                                                                    tmp_path: Path):
    settings = page_server.settings
    append_history(settings.history_file, {"at": now_iso(), "trigger": "push",
                                           "subject": "models: add phi3",
                                           **Outcome("applied", commit=COMMIT).to_json()})
    assert status(page_server.app)["overall"]["applied"]["subject"] == "models: add phi3"
    # A commit the history no longer names: its subject is read from the local mirror.
    work = tmp_path / "work"
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example", "-C", str(work)]
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "webui: voice on"],
                   check=True)
    sha = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True,
                         check=True).stdout.strip()
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(settings.clone_dir)],
                   check=True)
    state = load_state(settings.state_file)
    state.applied_commit = state.head_commit = sha
    save_state(settings.state_file, state)
    assert status(page_server.app)["overall"]["applied"]["subject"] == "webui: voice on"


def test_suspended_and_a_failed_head_are_shown(page_server: PageServer):
    settings = page_server.settings
    settings.suspend_file.write_text(json.dumps({"since": now_iso(), "reason": "disk swap"}))
    state = load_state(settings.state_file)
    state.head_commit = "f" * 40
    save_state(settings.state_file, state)
    overall = status(page_server.app)["overall"]
    assert overall["suspended"]["reason"] == "disk swap"
    assert overall["sync"] == "OutOfSync"
    assert overall["head"] == {"commit": "f" * 40, "short": "f" * 12}


def test_backups_newest_first(page_server: PageServer):
    store = Store(page_server.settings.backups_dir)
    for n, created in enumerate(("2026-11-01T00:00:00.000Z", "2099-01-01T00:00:00.000Z")):
        backup = Backup(id=f"b{n}", kind="scheduled", created=created, service="open-webui",
                        image=None, commit=None, size=n + 1)
        store.archive(backup.id).write_bytes(b"x")
        store.save(backup)
    items = status(page_server.app)["backups"]["items"]
    assert [b["id"] for b in items] == ["b1", "20261203T100000Z-manual", "b0"]
    assert items[-1]["age_s"] > 86400


def test_no_secret_reaches_the_snapshot_not_even_through_an_error(page_server: PageServer):
    # A container's own words (a health check's output, an error) are not lanai's to vouch
    # for: a secret value in them is blanked.
    append_history(page_server.settings.history_file, {
        "at": now_iso(), "trigger": "poll", **Outcome(
            "failed", commit=COMMIT, error=f"health check said password={MARKER}").to_json()})
    body = page_server.app.respond("GET", "/lanai/status.json").body.decode()
    assert MARKER not in body
    assert f"password={HIDDEN}" in body
    assert "token-" not in body  # the repo URL is not shown: it may carry a token


def test_scrub_blanks_values_in_keys_and_nested_strings():
    data = {"a": ["x secret-1 y", {"secret-1": 3}], "b": 4, "c": None}
    assert scrub(data, ("secret-1",)) == {"a": [f"x {HIDDEN} y", {HIDDEN: 3}], "b": 4,
                                          "c": None}
    assert scrub(data, ()) is data
