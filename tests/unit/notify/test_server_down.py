"""Swarm mode: a server whose node is down is one drift item naming its models, sent as a
drift notice; its return is a recovery notice. Model drift and errors are read from each
server's own models.<server>.json."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from reconciler.desired.lanai_yaml import LanaiConfig
from reconciler.desired.models_yaml import ModelsConfig
from reconciler.models import state as models_state
from reconciler.notify import drift_report
from reconciler.notify.notices import NotifyState, Policy, notices, observe
from reconciler.server.settings import ServerSettings
from reconciler.stack.render import Rendered

T0 = datetime(2026, 12, 3, 12, 3, tzinfo=UTC)
ALL = Policy(events=frozenset({"failure", "drift", "recovery"}), repeat_after=3600)
LLAMA = "llama3.1:8b-instruct-q4_K_M"
EMBED = "nomic-embed-text:v1.5"


def settings(tmp_path: Path) -> ServerSettings:
    return ServerSettings(home=tmp_path, repo=None, branch=None,
                          secrets_file=tmp_path / "secrets.env",
                          config_file=tmp_path / "server.yaml", deploy_key=tmp_path / "k")


def applied(tmp_path: Path, mode: str = "swarm") -> Rendered:
    servers = """
mode: swarm
servers:
  - {name: box-a, manager: true, gpu: none}
  - {name: box-b}
  - {name: box-c}
""" if mode == "swarm" else ""
    lanai = LanaiConfig.model_validate(yaml.safe_load(servers) or {})
    place = "\n    place: box-c" if mode == "swarm" else ""
    models = ModelsConfig.model_validate(yaml.safe_load(
        f"local:\n  - name: {LLAMA}{place}\n  - {EMBED}\n"))
    return Rendered(directory=tmp_path, commit="c" * 40, key="k", project="lanai",
                    compose_file="compose.yaml", services={},
                    settings=lanai.model_dump(mode="json"),
                    models_settings=models.model_dump(mode="json"), ollama_service="ollama")


def outcome() -> dict[str, object]:
    return {"status": "no-op", "error": None, "commit": "c" * 40, "actions": [], "drift": [],
            "models": {}, "webui": {}}


def test_a_down_server_is_one_item_naming_its_models(tmp_path: Path) -> None:
    stack = [{"service": "box-c", "kind": "server-down", "detail": "node s5-c: heartbeat"},
             {"service": "web", "kind": "stopped", "detail": "exited"}]
    items = drift_report.collect(settings(tmp_path), applied(tmp_path), stack,
                                 {"box-c": "2026-12-03T12:03:10.000Z"})
    assert items == [
        {"service": "web", "kind": "stopped", "detail": "exited"},
        {"service": "box-c", "kind": "server-down",
         "detail": f"box-c is down since 12:03 UTC: its models {LLAMA}, {EMBED} are "
                   "unavailable"}]
    assert drift_report.down_detail("box-b", None, []) == "box-b is down: it holds no model"


def test_compose_mode_has_no_servers_to_be_down(tmp_path: Path) -> None:
    assert drift_report.collect(settings(tmp_path), applied(tmp_path, "compose"), [],
                                {"box-c": None}) == []


def test_server_down_is_a_drift_notice_and_its_return_a_recovery(tmp_path: Path) -> None:
    down = drift_report.collect(settings(tmp_path), applied(tmp_path), [],
                                {"box-c": "2026-12-03T12:03:10.000Z"})
    sent, state = notices(observe(outcome(), down, {}), NotifyState(), ALL, T0)
    assert [(n.kind, n.body) for n in sent] == [
        ("drift", f"box-c is down since 12:03 UTC: its models {LLAMA}, {EMBED} are "
                  "unavailable (since 2026-12-03T12:03:00.000Z)")]
    again, state = notices(observe(outcome(), down, {}), state,
                           ALL, T0 + timedelta(minutes=5))
    assert again == []  # the same server still down: told once
    back, state = notices(observe(outcome(), [], {}), state, ALL, T0 + timedelta(minutes=9))
    assert [(n.kind, n.title, n.body) for n in back] == [
        ("recovery", "lanai: back in sync with git",
         "box-c is back: its models are available again (down since "
         "2026-12-03T12:03:00.000Z)")]


def test_model_drift_and_errors_are_read_per_server(tmp_path: Path) -> None:
    home = settings(tmp_path)
    for server, error in (("box-b", "pulling x failed"), ("box-c", None)):
        state = models_state.ModelsState()
        state.record(EMBED).error = error
        state.record(LLAMA).drift = f"{LLAMA} spills" if server == "box-c" else None
        models_state.save(models_state.server_file(home.models_file, server), state)
    target = applied(tmp_path)
    # box-b's record of LLAMA (not placed there) is not box-b's business.
    assert drift_report.model_errors(home, target) == {f"{EMBED} on box-b": "pulling x failed"}
    assert drift_report.model_drift(home, target) == [
        {"service": f"model {LLAMA} on box-c", "kind": "memory", "detail": f"{LLAMA} spills"}]
