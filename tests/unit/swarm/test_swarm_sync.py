"""SwarmSync (reconciler.swarm.sync): deploy with the real argv through a stand-in `docker`
CLI on PATH, convergence read through docker-py's API answers captured on a real 3-node
swarm (tests/fixtures/swarm-deploy/), the relay as a recording stand-in."""

from __future__ import annotations

import copy
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from reconciler.core.errors import ExitCode
from reconciler.server.record import State, Timer
from reconciler.server.settings import ServerSettings
from reconciler.stack.render import STACK_FILE, Rendered
from reconciler.stack.sync import Run
from reconciler.swarm.sync import SwarmSync

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "swarm-deploy"
COMMIT = "c0ffee0123456789abcdef0123456789abcdef01"


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


class API:
    """docker-py's APIClient as far as swarm facts go: each call returns the next frame."""

    def __init__(self, frames: list[tuple[list, list, list]]) -> None:
        self.frames = frames
        self.seen = 0

    def _frame(self) -> tuple[list, list, list]:
        return self.frames[min(self.seen, len(self.frames) - 1)]

    def nodes(self) -> list:
        return self._frame()[0]

    def services(self, filters: dict, status: bool) -> list:
        return self._frame()[1]

    def tasks(self, filters: dict) -> list:
        frame = self._frame()
        self.seen += 1
        return frame[2]


class NoContainers:
    """The manager's containers: none of Compose's (a swarm from the start)."""

    def list(self, all: bool = False, filters: dict[str, str] | None = None) -> list[Any]:
        return []


class Client:
    def __init__(self, frames: list[tuple[list, list, list]]) -> None:
        self.api = API(frames)
        self.containers = NoContainers()


class Clock:
    """Time that passes only when the sync sleeps between looks at the swarm."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class RelayStandIn:
    def __init__(self, calls: list[Any]) -> None:
        self.calls = calls

    def ensure(self, wanted: Any) -> dict[str, str]:
        self.calls.append(wanted)
        return {"box-b": "http://127.0.0.1:1"}


def up() -> tuple[list, list, list]:
    return load("nodes.json"), load("services.json"), load("tasks.json")


def pending(frame: tuple[list, list, list], service: str, error: str
            ) -> tuple[list, list, list]:
    """The frame with `service`'s task waiting to be placed, as Swarm reports it."""
    nodes, services, tasks = copy.deepcopy(frame)
    ids = {s["ID"] for s in services if s["Spec"]["Name"] == f"lanai_{service}"}
    for task in tasks:
        if task["ServiceID"] in ids:
            task["NodeID"] = ""
            task["Status"] = {**task["Status"], "State": "pending", "Err": error,
                              "Message": "pending task scheduling"}
    return nodes, services, tasks


def rolled_back(frame: tuple[list, list, list], service: str) -> tuple[list, list, list]:
    nodes, services, tasks = copy.deepcopy(frame)
    for found in services:
        if found["Spec"]["Name"] == f"lanai_{service}":
            found["Spec"]["Labels"]["io.lanai.config-hash"] = "the-old-hash"
            found["UpdateStatus"] = {"State": "rollback_completed",
                                     "Message": "rollback completed"}
    return nodes, services, tasks


def desired(tmp_path: Path) -> Rendered:
    directory = tmp_path / "deployments" / "k1"
    directory.mkdir(parents=True)
    (directory / STACK_FILE).write_text((FIXTURES / "lanai.stack.yaml").read_text())
    data = load("desired.json")
    return Rendered.from_json(directory, data)


def docker_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rc: int = 0,
               message: str = "") -> Path:
    """A `docker` on PATH that records its argv and working directory."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "docker.log"
    log.touch()
    script = bin_dir / "docker"
    script.write_text(f"#!/bin/sh\necho \"$PWD $*\" >> {log}\n"
                      f"[ -n '{message}' ] && echo '{message}' >&2\nexit {rc}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return log


def swarm_sync(tmp_path: Path, frames: list, relay_calls: list) -> SwarmSync:
    settings = ServerSettings(home=tmp_path, repo=None, branch=None,
                              secrets_file=tmp_path / "secrets.env",
                              config_file=tmp_path / "server.yaml", deploy_key=tmp_path / "k")
    settings.deployments_dir.mkdir(parents=True, exist_ok=True)
    client = Client(frames)
    clock = Clock()
    return SwarmSync(settings, client=lambda: client, client_factory=lambda: client,
                     progress=lambda _m: None, step=lambda _m: None,
                     start_interval=lambda: True, inputs=lambda: "inputs", data=None,
                     cli_version=lambda: (26, 1), sleep=clock.sleep, clock=clock,
                     relay=lambda _c: RelayStandIn(relay_calls))  # type: ignore[arg-type]


def deploy(sync: SwarmSync, state: State, rendered: Rendered) -> Any:
    run = Run(state, rendered.commit, False, "cli", Timer(), 0.0, desired=rendered)
    return sync.sync(run)


def test_a_converged_deploy_is_applied_and_starts_the_relay(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = docker_cli(tmp_path, monkeypatch)
    rendered = desired(tmp_path)
    relays: list[Any] = []
    state = State()
    outcome = deploy(swarm_sync(tmp_path, [up()], relays), state, rendered)
    assert outcome.status == "applied", outcome.error
    assert state.applied_commit == rendered.commit and state.failure is None
    assert log.read_text() == ""  # the swarm already runs this commit: nothing to run
    assert [w.network for w in relays] == ["lanai_internal"]
    assert [u.key for u in relays[0].upstreams] == ["open-webui", "box-b", "box-c"]


def test_a_missing_service_is_deployed_with_the_stack_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = docker_cli(tmp_path, monkeypatch)
    rendered = desired(tmp_path)
    nodes, services, tasks = up()
    gone = [s for s in services if s["Spec"]["Name"] != "lanai_proxy"]
    frames = [(nodes, gone, tasks), up()]
    outcome = deploy(swarm_sync(tmp_path, frames, []), State(), rendered)
    assert outcome.status == "applied", outcome.error
    assert log.read_text().splitlines() == [
        f"{rendered.directory} stack deploy --compose-file {STACK_FILE} --prune "
        "--resolve-image never --detach=true lanai"]
    assert [a["kind"] for a in outcome.actions] == ["deploy"]


def test_a_service_that_never_comes_up_fails_naming_it_and_the_task_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    docker_cli(tmp_path, monkeypatch)
    rendered = desired(tmp_path)
    rendered.settings = {**rendered.settings, "sync": {"health_timeout": "5s"}}
    stuck = pending(up(), "ollama-box-c", "no suitable node (insufficient resources on 3 "
                    "nodes)")
    state = State()
    outcome = deploy(swarm_sync(tmp_path, [stuck], []), state, rendered)
    assert outcome.status == "failed"
    assert "ollama-box-c" in outcome.error
    assert "no suitable node (insufficient resources on 3 nodes)" in outcome.error
    assert outcome.exit_code == ExitCode.APPLY_FAILED
    assert state.failure is not None and not state.failure.deterministic
    assert state.applied_commit is None


def test_a_swarm_rollback_from_this_commits_spec_fails_it_for_good(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    docker_cli(tmp_path, monkeypatch)
    rendered = desired(tmp_path)
    state = State()
    outcome = deploy(swarm_sync(tmp_path, [rolled_back(up(), "open-webui")], []), state,
                     rendered)
    assert outcome.status == "failed"
    assert "rolled open-webui back" in outcome.error
    assert state.failure is not None and state.failure.deterministic


def test_a_service_waiting_for_its_down_server_does_not_hold_the_deploy(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    docker_cli(tmp_path, monkeypatch)
    rendered = desired(tmp_path)
    nodes, services, tasks = pending(up(), "ollama-box-c", "no suitable node")
    for node in nodes:
        if node["Description"]["Hostname"] == "box-c":
            node["Status"] = {**node["Status"], "State": "down",
                              "Message": "heartbeat failure"}
    outcome = deploy(swarm_sync(tmp_path, [(nodes, services, tasks)], []), State(), rendered)
    assert outcome.status == "applied", outcome.error
    assert {(d["service"], d["kind"]) for d in outcome.drift} >= {("box-c", "server-down")}


def test_a_failed_stack_deploy_is_one_sentence_and_retried(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    docker_cli(tmp_path, monkeypatch, rc=1, message="network lanai_lan not found")
    rendered = desired(tmp_path)
    nodes, services, tasks = up()
    frames = [(nodes, [s for s in services if s["Spec"]["Name"] != "lanai_proxy"], tasks)]
    state = State()
    outcome = deploy(swarm_sync(tmp_path, frames, []), state, rendered)
    assert outcome.status == "failed"
    assert outcome.error.startswith("`docker stack deploy` failed: network lanai_lan not found;")
    assert state.failure is not None and not state.failure.deterministic


def test_drift_heals_with_stack_deploy_and_self_heal_off_only_reports(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = docker_cli(tmp_path, monkeypatch)
    rendered = desired(tmp_path)
    nodes, services, tasks = up()
    frames = [(nodes, [s for s in services if s["Spec"]["Name"] != "lanai_open-webui"],
               tasks)]
    state = State(applied_commit=rendered.commit, applied_key=rendered.key)
    sync = swarm_sync(tmp_path, frames, [])
    outcome = sync.check(state, rendered, Timer(), 0.0, False)
    assert outcome.status == "healed"
    assert ("open-webui", "missing") in {(d["service"], d["kind"]) for d in outcome.drift}
    assert "stack deploy" in log.read_text()
    rendered.settings = {**rendered.settings, "sync": {"self_heal": False}}
    log.write_text("")
    outcome = swarm_sync(tmp_path, frames, []).check(state, rendered, Timer(), 0.0, False)
    assert outcome.status == "drift" and log.read_text() == ""


def updated(frame: tuple[list, list, list], service: str, state: str, label: str | None
            ) -> tuple[list, list, list]:
    """The frame with `service` under an update in `state`, its labels' hash `label`."""
    nodes, services, tasks = copy.deepcopy(frame)
    for found in services:
        if found["Spec"]["Name"] == f"lanai_{service}":
            if label is not None:
                found["Spec"]["Labels"]["io.lanai.config-hash"] = label
            found["UpdateStatus"] = {"State": state, "Message": f"update {state}"}
    return nodes, services, tasks


def test_a_changed_service_is_not_up_before_swarms_update_is_over(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Right after the deploy the old task still runs under the new labels; then Swarm's
    update runs and rolls back: the commit fails for good, it is never applied."""
    log = docker_cli(tmp_path, monkeypatch)
    rendered = desired(tmp_path)
    new = rendered.stack_services["proxy"]["hash"]
    frames = [updated(up(), "proxy", "completed", "the-old-hash"),  # the plan: changed
              updated(up(), "proxy", "completed", new),  # old task, new labels
              updated(up(), "proxy", "updating", new),
              updated(up(), "proxy", "rollback_started", "the-old-hash")]
    state = State()
    outcome = deploy(swarm_sync(tmp_path, frames, []), state, rendered)
    assert "stack deploy" in log.read_text()
    assert outcome.status == "failed"
    assert "proxy" in outcome.error and "rollback_started" in outcome.error
    assert state.failure is not None and state.failure.deterministic
    assert state.applied_commit is None


def test_a_changed_service_whose_update_completes_is_applied(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    docker_cli(tmp_path, monkeypatch)
    rendered = desired(tmp_path)
    new = rendered.stack_services["proxy"]["hash"]
    frames = [updated(up(), "proxy", "completed", "the-old-hash"),
              updated(up(), "proxy", "updating", new),
              updated(up(), "proxy", "completed", new)]
    outcome = deploy(swarm_sync(tmp_path, frames, []), State(), rendered)
    assert outcome.status == "applied", outcome.error


def test_a_new_commit_after_a_swarm_rollback_is_deployed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Swarm rolled the last commit's proxy back; the next commit has another hash for it:
    deployed, not failed as that old rollback."""
    log = docker_cli(tmp_path, monkeypatch)
    rendered = desired(tmp_path)
    new = rendered.stack_services["proxy"]["hash"]
    nodes, services, tasks = updated(up(), "proxy", "rollback_completed", "the-old-hash")
    for found in services:  # a rollback swaps Spec and PreviousSpec
        if found["Spec"]["Name"] == "lanai_proxy":
            found["PreviousSpec"]["Labels"]["io.lanai.config-hash"] = "the-failed-hash"
    frames = [(nodes, services, tasks),
              updated(up(), "proxy", "updating", new),
              updated(up(), "proxy", "completed", new)]
    outcome = deploy(swarm_sync(tmp_path, frames, []), State(), rendered)
    assert outcome.status == "applied", outcome.error
    assert "stack deploy" in log.read_text()
