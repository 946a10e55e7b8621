"""Swarm mode's models step against two Ollama doubles in-process (one per server, no
Docker): each server gets the models placed on it, fitted to its own GPU, recorded in its
own models.<server>.json; a down server is left out with a sentence, not an error."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from reconciler.desired.lanai_yaml import LanaiConfig
from reconciler.desired.models_yaml import ModelsConfig
from reconciler.desired.servers import Server
from reconciler.engine.syncer import ModelsSyncer
from reconciler.models import lock as lock_mod
from reconciler.models import state as models_state
from reconciler.models.fleet import (
    ServerAccess,
    combine,
    converge_servers,
    down_sentence,
    fleet_models,
    gpu_from_labels,
    ollama_started,
    server_gpus,
    unavailable,
)
from reconciler.models.ollama import Ollama
from reconciler.models.pulls import PullResult, PullWorker, server_pull_file
from reconciler.models.sync import ModelsOutcome
from reconciler.server.record import Outcome, State, Timer
from reconciler.server.settings import ServerSettings
from reconciler.stack.render import Rendered
from reconciler.stack.sync import Run
from reconciler.swarm.facts import Facts, NodeFact, parse

from ..double import serving

PHI3 = "phi3:3.8b-mini-4k-instruct-q4_K_M"
LLAMA = "llama3.1:8b-instruct-q4_K_M"
EMBED = "nomic-embed-text:v1.5"
GiB = 1024**3
API = Path(__file__).resolve().parents[2] / "fixtures" / "swarm" / "api"
FLEET = [Server(name="box-a", manager=True, gpu="none", address="172.31.251.11"),
         Server(name="box-b", address="172.31.251.12"),
         Server(name="box-c", address="172.31.251.13")]
SERVERS = """
mode: swarm
servers:
  - {name: box-a, manager: true, gpu: none}
  - {name: box-b}
  - {name: box-c, gpu: 8GiB}
"""
MODELS = f"""
default: {LLAMA}
local:
  - name: {PHI3}
    place: box-b
  - name: {LLAMA}
    place: box-c
  - {EMBED}
"""


@pytest.fixture
def doubles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """box-b's and box-c's Ollama: server -> URL."""
    with serving(tmp_path / "b", monkeypatch) as b, serving(tmp_path / "c", monkeypatch) as c:
        yield {"box-b": b, "box-c": c}


def settings(tmp_path: Path) -> ServerSettings:
    return ServerSettings(home=tmp_path / "home", repo=None, branch=None,
                          secrets_file=tmp_path / "secrets.env",
                          config_file=tmp_path / "server.yaml", deploy_key=tmp_path / "key")


def rendered(tmp_path: Path, models: str = MODELS) -> Rendered:
    lanai = LanaiConfig.model_validate(yaml.safe_load(SERVERS))
    config = ModelsConfig.model_validate(yaml.safe_load(models))
    return Rendered(directory=tmp_path, commit="c" * 40, key="k", project="lanai",
                    compose_file="compose.yaml", services={},
                    settings=lanai.model_dump(mode="json"),
                    models_settings=config.model_dump(mode="json"), ollama_service="ollama")


def facts(state: str) -> Facts:
    """Facts of a real three-node swarm (tests/fixtures/swarm/api)."""
    return parse(*(json.loads((API / state / f"{name}.json").read_text())
                   for name in ("nodes", "services", "tasks")), "lanai")


def with_gpus(found: Facts, gpus: dict[str, tuple[str, int]]) -> Facts:
    """The facts with GPU labels as bootstrap sets them on GPU servers (CI has no GPU)."""
    def labelled(node: NodeFact) -> NodeFact:
        gpu = gpus.get(node.server or "")
        return replace(node, labels={**node.labels, "io.lanai.gpu.name": gpu[0],
                                     "io.lanai.gpu.memory": str(gpu[1])}) if gpu else node
    return Facts(nodes=tuple(labelled(n) for n in found.nodes), services=found.services,
                 tasks=found.tasks)


def access(urls: dict[str, str], state: str = "all-up",
           gpus: dict[str, tuple[str, int]] | None = None) -> ServerAccess:
    return ServerAccess(urls=lambda _r: urls,
                        facts=lambda _r: with_gpus(facts(state), gpus or {}))


def converge(tmp_path: Path, target: Rendered, how: ServerAccess,
             pulls: PullWorker | None = None) -> ModelsOutcome:
    return converge_servers(settings(tmp_path), None, target, how,  # type: ignore[arg-type]
                            progress=lambda _m: None, pulls=pulls)


def names(url: str) -> set[str]:
    with Ollama(url) as api:
        return {m.name for m in api.tags()}


def state_of(tmp_path: Path, server: str) -> models_state.ModelsState:
    return models_state.load(models_state.server_file(settings(tmp_path).models_file, server))


def test_each_server_gets_the_models_placed_on_it(tmp_path: Path,
                                                  doubles: dict[str, str]) -> None:
    out = converge(tmp_path, rendered(tmp_path),
                   access(doubles, gpus={"box-b": ("NVIDIA GeForce RTX 4090", 24 * GiB)}))
    assert out.errors == []
    assert names(doubles["box-b"]) == {PHI3, EMBED}
    assert names(doubles["box-c"]) == {LLAMA, EMBED}
    assert list(out.servers) == ["box-b", "box-c"]  # lanai.yaml's order; box-a runs no Ollama
    pulled = {(a["server"], a["model"]) for a in out.actions if a["kind"] == "pull"}
    assert pulled == {("box-b", PHI3), ("box-b", EMBED), ("box-c", LLAMA), ("box-c", EMBED)}
    # The default is warmed where it is placed only.
    assert [(a["server"], a["model"]) for a in out.actions if a["kind"] == "warm"] == \
        [("box-c", LLAMA)]
    # Each server's own record: pruning on one never reads what lanai pulled on another.
    assert set(state_of(tmp_path, "box-b").models) == {PHI3, EMBED}
    assert set(state_of(tmp_path, "box-c").models) == {LLAMA, EMBED}
    assert not settings(tmp_path).models_file.exists()  # compose mode's file is left alone
    # box-b's GPU from its node labels; box-c's labels say nothing, so lanai.yaml's 8GiB.
    assert state_of(tmp_path, "box-b").gpu == {"name": "NVIDIA GeForce RTX 4090",
                                               "memory": 24 * GiB}
    assert state_of(tmp_path, "box-c").gpu is None
    budgets = {s: {r["model"]: r["budget"] for r in state_of(tmp_path, s).fits}
               for s in ("box-b", "box-c")}
    assert budgets["box-c"][LLAMA] < 8 * GiB < budgets["box-b"][PHI3] < 24 * GiB
    lock = lock_mod.read(settings(tmp_path).models_lock_file)
    assert lock is not None and set(lock.models) == {PHI3, LLAMA, EMBED}
    assert lock.servers == {"box-b": lock_mod.GpuFact("NVIDIA GeForce RTX 4090", 24 * GiB)}
    assert (lock.gpu_name, lock.gpu_memory) == (None, None)  # no box of its own in swarm mode
    data = out.to_json()
    assert data["servers"]["box-c"] == out.servers["box-c"].to_json()
    assert data["down"] == {} and data["sync"] == "Synced"


def test_a_down_server_is_left_out_with_its_models_named_not_failed(
        tmp_path: Path, doubles: dict[str, str]) -> None:
    out = converge(tmp_path, rendered(tmp_path), access(doubles, "node-down"))
    assert out.errors == [] and out.sync == "Synced"
    assert names(doubles["box-c"]) == set()
    assert names(doubles["box-b"]) == {PHI3, EMBED}
    assert out.down == {"box-c": down_sentence("box-c", "down", [LLAMA, EMBED])}
    assert out.down["box-c"] == (
        f"box-c is down: its models {LLAMA}, {EMBED} are unavailable until it is back; lanai "
        "converges them then, with no push")
    assert down_sentence("box-d", "absent", []) == \
        "box-d is not in the swarm (no node is it): it holds no model"
    # What `lanai status` shows meanwhile: box-b as usual, box-c unavailable and why.
    status = fleet_models(settings(tmp_path), rendered(tmp_path), {"box-c": "down"})
    assert [(r["model"], r["state"]) for r in status["servers"]["box-b"]["models"]] == [
        (PHI3, "ready"), (EMBED, "ready")]
    assert status["servers"]["box-b"]["sync"] == "Synced"
    assert [(r["model"], r["state"]) for r in status["servers"]["box-c"]["models"]] == [
        (LLAMA, "unavailable"), (EMBED, "unavailable")]
    assert (status["servers"]["box-c"]["sync"], status["servers"]["box-c"]["down"]) == (
        "Unavailable", out.down["box-c"])
    # Back up: the next step converges it.
    again = converge(tmp_path, rendered(tmp_path), access(doubles, "node-back"))
    assert again.down == {} and names(doubles["box-c"]) == {LLAMA, EMBED}
    after = fleet_models(settings(tmp_path), rendered(tmp_path), {})["servers"]["box-c"]
    assert (after["sync"], after["down"]) == ("Synced", None)
    assert [r["default"] for r in after["models"]] == [True, False]


def test_a_model_moved_to_another_server_is_pruned_where_it_was(
        tmp_path: Path, doubles: dict[str, str]) -> None:
    converge(tmp_path, rendered(tmp_path, MODELS + "prune: true\n"), access(doubles))
    moved = MODELS.replace("place: box-b", "place: box-c") + "prune: true\n"
    out = converge(tmp_path, rendered(tmp_path, moved), access(doubles))
    assert out.errors == []
    assert names(doubles["box-b"]) == {EMBED}
    assert names(doubles["box-c"]) == {PHI3, LLAMA, EMBED}
    assert {(a["server"], a["kind"], a["model"]) for a in out.actions
            if a["kind"] in ("remove", "pull")} == {("box-b", "remove", PHI3),
                                                    ("box-c", "pull", PHI3)}


def test_a_server_lanai_cannot_reach_yet_fails_alone(tmp_path: Path,
                                                     doubles: dict[str, str]) -> None:
    out = converge(tmp_path, rendered(tmp_path), access({"box-b": doubles["box-b"]}))
    assert out.errors == [
        "box-c: lanai has no way to ollama-box-c yet (the relay on the manager does not list "
        "it), so its models wait; see `lanai status`"]
    assert names(doubles["box-b"]) == {PHI3, EMBED}
    assert out.sync == "Failed"


def test_background_pulls_run_on_a_worker_per_server(tmp_path: Path,
                                                     doubles: dict[str, str]) -> None:
    finished: list[PullResult] = []
    # The daemon's own worker; the servers' are made from it, each with an Ollama puller.
    daemon = PullWorker(lambda job, _c: PullResult(job.model, job.reason, None, False, 0.0),
                        finished.append)
    try:
        first = converge(tmp_path, rendered(tmp_path), access(doubles), pulls=daemon)
        assert first.sync == "Progressing"
        assert sorted(first.pulling) == sorted([f"box-b: {EMBED}", f"box-b: {PHI3}",
                                                f"box-c: {EMBED}", f"box-c: {LLAMA}"])
        workers = daemon.servers()
        assert set(workers) == {"box-b", "box-c"}
        assert daemon.for_server("box-b", daemon._puller) is workers["box-b"]
        deadline = time.monotonic() + 10
        while len(finished) < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sorted(r.model for r in finished) == sorted([EMBED, PHI3, EMBED, LLAMA])
        assert all(r.error is None for r in finished)
        assert not server_pull_file(settings(tmp_path).pull_file, "box-b").exists()
        second = converge(tmp_path, rendered(tmp_path), access(doubles), pulls=daemon)
        assert second.errors == [] and second.pulling == []
        assert {(a["server"], a["model"]) for a in second.actions if a["kind"] == "pull"} == \
            {("box-b", PHI3), ("box-b", EMBED), ("box-c", LLAMA), ("box-c", EMBED)}
    finally:
        daemon.stop()
    assert all(w._stopping for w in workers.values())


def test_compose_modes_outcome_json_is_as_it_was() -> None:
    assert list(ModelsOutcome().to_json()) == ["actions", "errors", "drift", "next_retry",
                                               "pulling", "sync"]


def test_the_outcomes_are_combined_line_by_line_named_by_server() -> None:
    out = combine({"box-b": ModelsOutcome(errors=["x failed"], drift=["y spills"],
                                          next_retry="2026-12-03T10:00:00.000Z"),
                   "box-c": ModelsOutcome(actions=[{"kind": "pull", "model": "m"}],
                                          next_retry="2026-12-03T09:00:00.000Z")},
                  {"box-d": "box-d is down"})
    assert out.errors == ["box-b: x failed"] and out.drift == ["box-b: y spills"]
    assert out.actions == [{"kind": "pull", "model": "m", "server": "box-c"}]
    assert out.next_retry == "2026-12-03T09:00:00.000Z"
    assert out.to_json()["down"] == {"box-d": "box-d is down"}


@pytest.mark.parametrize(("labels", "gpu"), [
    ({"io.lanai.gpu.name": "NVIDIA H100 80GB HBM3", "io.lanai.gpu.memory": "85520809984"},
     ("NVIDIA H100 80GB HBM3", 85520809984)),
    ({"io.lanai.gpu.name": "NVIDIA H100 80GB HBM3"}, None),
    ({"io.lanai.gpu.name": "x", "io.lanai.gpu.memory": "80GiB"}, None),
    ({}, None),
])
def test_a_servers_gpu_comes_from_its_node_labels(labels: dict[str, str], gpu) -> None:
    assert gpu_from_labels(labels) == gpu


def test_the_models_syncer_says_when_the_engine_gave_it_no_way_to_the_servers(
        tmp_path: Path) -> None:
    syncer = ModelsSyncer(settings(tmp_path), lambda: None,  # type: ignore[arg-type,return-value]
                          progress=lambda _m: None, gpu=lambda: None, pulls=None,
                          save=lambda _s: None)
    run = Run(State(), "c" * 40, False, "poll", Timer(), 0.0,
              outcome=Outcome("applied", applied_commit="c" * 40),
              applied=None)
    run.deployed = rendered(tmp_path)
    assert syncer.sync(run).errors == [
        "this commit is in swarm mode but the engine gave the models step no way to the "
        "servers' Ollamas (no relay); install a lanai that deploys swarm mode, or keep mode: "
        "compose"]
    assert json.dumps(syncer.sync(run).to_json())


@pytest.mark.parametrize(("state", "expected"), [
    ("all-up", {}),
    ("node-down", {"box-c": "down"}),
    ("node-back", {}),
    ("drained", {"box-b": "drained"}),
    ("manager-restarted", {}),  # workers `unknown` for seconds: not down
])
def test_which_servers_are_unavailable_from_real_swarm_facts(state: str, expected) -> None:
    assert unavailable(facts(state), FLEET) == expected


def test_a_server_without_a_node_is_absent() -> None:
    assert unavailable(facts("all-up"), [*FLEET, Server(name="box-d")]) == {"box-d": "absent"}


def test_the_gpus_come_from_the_matched_nodes_labels() -> None:
    found = facts("all-up")
    assert server_gpus(found, FLEET) == {"box-a": None, "box-b": None, "box-c": None}
    labelled = with_gpus(found, {"box-b": ("NVIDIA L4", 24 * GiB)})
    assert server_gpus(labelled, FLEET)["box-b"] == ("NVIDIA L4", 24 * GiB)


def test_the_models_syncer_converges_every_server_in_swarm_mode(
        tmp_path: Path, doubles: dict[str, str]) -> None:
    syncer = ModelsSyncer(settings(tmp_path), lambda: None,  # type: ignore[arg-type,return-value]
                          progress=lambda _m: None, gpu=lambda: None, pulls=None,
                          save=lambda _s: None, servers=access(doubles, "node-down"))
    run = Run(State(), "c" * 40, False, "poll", Timer(), 0.0,
              outcome=Outcome("applied", applied_commit="c" * 40), applied=None)
    run.deployed = rendered(tmp_path)
    assert syncer.ready(run)
    out = syncer.sync(run)
    assert (list(out.servers), list(out.down)) == (["box-b"], ["box-c"])
    assert names(doubles["box-b"]) == {PHI3, EMBED}


def test_a_restarted_ollama_task_gets_its_default_warmed_again(
        tmp_path: Path, doubles: dict[str, str]) -> None:
    converge(tmp_path, rendered(tmp_path), access(doubles, "all-up"))
    same = converge(tmp_path, rendered(tmp_path), access(doubles, "all-up"))
    assert [a for a in same.actions if a["kind"] == "warm"] == []
    # node-back: box-c's task started again (a new timestamp); box-b holds no default.
    back = converge(tmp_path, rendered(tmp_path), access(doubles, "node-back"))
    assert [(a["server"], a["model"]) for a in back.actions if a["kind"] == "warm"] == \
        [("box-c", LLAMA)]
    assert ollama_started(facts("node-down"), "box-c") is None  # its task is not running
