"""Swarm mode: the planner's server-down drift (naming the server's models) is sent as a
drift notice that says it alone; its return is a recovery notice saying the server is
back. Model drift and errors are read from each server's own models.<server>.json."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from reconciler.desired.lanai_yaml import LanaiConfig
from reconciler.desired.models_yaml import ModelsConfig
from reconciler.desired.servers import Server
from reconciler.models import state as models_state
from reconciler.notify import drift_report
from reconciler.notify.notices import NotifyState, Policy, notices, observe
from reconciler.server.settings import ServerSettings
from reconciler.stack.render import Rendered
from reconciler.swarm.facts import parse
from reconciler.swarm.plan import match_nodes, server_drift

API = Path(__file__).resolve().parents[2] / "fixtures" / "swarm" / "api"
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


def planned_down() -> list[dict[str, str]]:
    """The swarm planner's server-down drift on the real node-down facts, as a drift item
    (service = the server)."""
    found = parse(*(json.loads((API / "node-down" / f"{kind}.json").read_text())
                    for kind in ("nodes", "services", "tasks")), "lanai")
    servers = [Server(name="box-a", manager=True, gpu="none", address="172.31.251.11"),
               Server(name="box-b", address="172.31.251.12"),
               Server(name="box-c", address="172.31.251.13")]
    wanted = yaml.safe_load((API / "stacks" / "new.yaml").read_text())["services"]
    drift = server_drift(servers, match_nodes(found.nodes, servers)[0], wanted,
                         {"box-c": [LLAMA]})
    return [{"service": d.subject, "kind": d.kind, "detail": d.detail} for d in drift]


def test_server_down_is_a_drift_notice_and_its_return_a_recovery() -> None:
    down = planned_down()
    assert [(d["service"], d["kind"]) for d in down] == [("box-c", "server-down")]
    sent, state = notices(observe(outcome(), down, {}), NotifyState(), ALL, T0)
    assert [(n.kind, n.body) for n in sent] == [
        ("drift", "box-c (node s5-c) is down since 16:30 UTC (heartbeat failure): ollama-box-c "
                  f"and its models {LLAMA} are unavailable; Swarm starts them again when it is "
                  "back, lanai changes nothing (since 2026-12-03T12:03:00.000Z)")]
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
