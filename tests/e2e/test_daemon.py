"""The daemon (`lanai run`) on a small stack: pushes deploy through the real
post-receive hook, Docker events start drift checks, heals are rate-limited,
suspend/resume, quick successive pushes, and a stale lock after a crash."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import docker
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from .harness import MINI_STATE, Server, StateRepo, free_port, new_project, wait_for

BOOT_ID = Path("/proc/sys/kernel/random/boot_id").read_text().strip()


@pytest.fixture
def mini(docker_client: docker.DockerClient, tmp_path) -> Iterator[Server]:
    project, port = new_project(), free_port()
    repo = StateRepo(tmp_path, MINI_STATE, {"PROJECT": project, "18000": str(port)})
    server = Server(tmp_path, repo, project, docker_client)
    server.port = port  # type: ignore[attr-defined]
    installed = server.lanai("hook", "install", str(repo.bare))
    assert installed.returncode == 0, installed.stderr
    yield server
    server.teardown()


def applied(server: Server) -> str | None:
    return server.status().get("applied_commit")


def test_push_deploys_through_the_post_receive_hook(mini: Server):
    mini.start_daemon()
    first = wait_for(lambda: applied(mini) == mini.repo.head(), 120, "the first deploy")
    assert first
    mini.repo.replace("compose.yaml", 'GREETING: "hello"', 'GREETING: "hej"')
    commit = mini.repo.commit_push("Say hej")  # the hook pokes the daemon; no poll for 300s
    wait_for(lambda: applied(mini) == commit, 60, "the pushed commit to be applied")
    assert mini.env_of("web")["GREETING"] == "hej"
    assert httpx.get(f"http://127.0.0.1:{mini.port}/", timeout=5).status_code == 200
    triggers = {r["trigger"] for r in mini.history()}
    assert "push" in triggers and "poll" not in triggers


def scrape(port: int) -> dict[str, float]:
    """/metrics of the daemon: series -> value (prometheus_client's own parser)."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return {f"{s.name}{sorted(s.labels.items())}": s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_docker_stop_is_seen_as_drift_and_healed(mini: Server):
    metrics_port = free_port()
    mini.env["LANAI_METRICS_LISTEN"] = str(metrics_port)  # a port alone: 127.0.0.1
    mini.start_daemon()
    wait_for(lambda: mini.status().get("health") == "Healthy", 120, "a healthy stack")
    mini.containers()["web"].stop(timeout=5)
    healed = wait_for(lambda: [r for r in mini.history() if r["status"] == "healed"], 30,
                      "a heal in the history")
    record = healed[0]
    assert record["trigger"] == "event"
    assert [(d["service"], d["kind"]) for d in record["drift"]] == [("web", "stopped")]
    assert record["drift"][0]["detail"].startswith("container exited")
    assert [(a["kind"], a["service"], a["result"]) for a in record["actions"]] == [
        ("start", "web", "ok")]
    wait_for(lambda: mini.containers()["web"].status == "running", 30, "web running again")
    # /metrics says so too: one heal of web counted, and the stack Synced again.
    wait_for(lambda: scrape(metrics_port)["lanai_service_heals_total[('service', 'web')]"]
             >= 1, 30, "the heal counted on /metrics")
    wait_for(lambda: scrape(metrics_port)["lanai_stack_synced[]"] == 1, 30,
             "lanai_stack_synced 1 after the heal")


def test_container_failing_its_health_check_is_not_restarted_in_a_tight_loop(mini: Server):
    mini.start_daemon()
    wait_for(lambda: mini.status().get("health") == "Healthy", 120, "a healthy stack")
    # /tmp/sick survives `docker restart`, so every heal finds it sick again.
    mini.containers()["web"].exec_run(["touch", "/tmp/sick"])
    wait_for(lambda: any(d["kind"] == "held" for d in
                         mini.lanai_json("drift")[1]["drift"]), 90, "the heal limit")
    heals = [r for r in mini.history() if r["actions"] and r["actions"][0]["service"] == "web"]
    # heal_limit.restarts is 2 in the mini state: two restarts, then hold.
    assert len(heals) == 2, heals
    time.sleep(3)  # let the daemon see more unhealthy events; it must not act on them
    assert len([r for r in mini.history() if r["actions"]]) == len(
        [r for r in heals if r["actions"]]) + 1  # + the first deploy
    status = mini.status()
    assert status["health"] == "Degraded"
    assert {s["service"]: s["health"] for s in status["services"]}["web"] == "Degraded"
    # An explicit retry resets the limit (and the heal fails again, as it should).
    mini.containers()["web"].exec_run(["rm", "/tmp/sick"])
    code, outcome = mini.reconcile("--retry")
    assert code == 0, outcome
    wait_for(lambda: mini.status()["health"] == "Healthy", 30, "web healthy again")


def test_suspend_stops_convergence_and_resume_catches_up(mini: Server):
    mini.start_daemon()
    wait_for(lambda: applied(mini) == mini.repo.head(), 120, "the first deploy")
    assert mini.lanai("suspend", "--reason", "upgrading the GPU driver").returncode == 0
    before = mini.container_ids()
    mini.repo.replace("compose.yaml", 'GREETING: "hello"', 'GREETING: "salut"')
    commit = mini.repo.commit_push("Say salut")
    mini.containers()["web"].stop(timeout=5)
    time.sleep(2)  # a poke and a Docker event arrive; nothing may change
    status = mini.status()
    assert status["suspended"]["reason"] == "upgrading the GPU driver"
    assert status["applied_commit"] != commit
    assert mini.containers()["web"].status == "exited"
    assert mini.container_ids() == before
    code, _ = mini.reconcile()
    assert code == 7

    assert mini.lanai("resume").returncode == 0
    wait_for(lambda: applied(mini) == commit, 60, "the catch-up deploy")
    wait_for(lambda: mini.status()["health"] == "Healthy", 30, "healthy after resume")
    assert mini.env_of("web")["GREETING"] == "salut"


def test_two_quick_pushes_converge_to_the_later_commit(mini: Server):
    mini.start_daemon()
    wait_for(lambda: applied(mini) == mini.repo.head(), 120, "the first deploy")
    mini.repo.replace("compose.yaml", 'GREETING: "hello"', 'GREETING: "one"')
    mini.repo.commit_push("One")
    mini.repo.replace("compose.yaml", 'GREETING: "one"', 'GREETING: "two"')
    later = mini.repo.commit_push("Two")
    wait_for(lambda: applied(mini) == later, 60, "the later commit")
    assert mini.env_of("web")["GREETING"] == "two"


def test_stale_lock_from_a_killed_reconciler_is_recovered(mini: Server):
    code, outcome = mini.reconcile()
    assert code == 0, outcome
    # A reconciler killed mid-apply leaves its lock behind with a pid that is gone.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock = mini.home / "lock"
    lock.mkdir()
    (lock / "owner.json").write_text(json.dumps({
        "pid": dead.pid, "host": os.uname().nodename,
        "boot_id": BOOT_ID}))
    mini.repo.replace("compose.yaml", 'GREETING: "hello"', 'GREETING: "back"')
    commit = mini.repo.commit_push("After the crash")
    code, outcome = mini.reconcile()
    assert code == 0, outcome
    assert applied(mini) == commit
    assert not lock.exists()


def test_a_live_lock_is_respected_with_a_clear_error(mini: Server):
    lock = mini.home / "lock"
    lock.mkdir(parents=True)
    (lock / "owner.json").write_text(json.dumps({
        "pid": os.getpid(), "host": os.uname().nodename,
        "boot_id": BOOT_ID}))
    result = mini.lanai("reconcile", "--wait", "1")
    assert result.returncode == 4
    assert f"pid {os.getpid()}" in result.stderr
    assert mini.container_ids() == {}


def test_removed_container_is_recreated(mini: Server):
    mini.start_daemon()
    wait_for(lambda: mini.status().get("health") == "Healthy", 120, "a healthy stack")
    mini.containers()["web"].remove(force=True)
    healed = wait_for(lambda: [r for r in mini.history() if r["status"] == "healed"], 30,
                      "a heal in the history")
    assert [(a["kind"], a["service"]) for a in healed[0]["actions"]] == [("create", "web")]
    assert [(d["service"], d["kind"]) for d in healed[0]["drift"]] == [("web", "missing")]
    wait_for(lambda: mini.status().get("health") == "Healthy", 30, "healthy again")


def test_transient_failure_is_retried_with_growing_backoff_then_recovers(mini: Server):
    mini.start_daemon()
    wait_for(lambda: applied(mini) == mini.repo.head(), 120, "the first deploy")
    good = mini.repo.head()
    # The registry cannot be reached from here: a transient failure, as when a
    # server's network is down. retry is 1s doubling up to 5s in the mini state.
    mini.repo.replace("compose.yaml", "image: lanai-test/debian:bookworm",
                      "image: lanai-test/not-here:1.0")
    bad = mini.repo.commit_push("Image behind a registry that is down")
    def attempts() -> list[dict] | None:
        found = [r for r in mini.history() if r["commit"] == bad and r["status"] == "failed"]
        return found[::-1] if len(found) >= 3 else None

    failures = wait_for(attempts, 60, "three attempts")
    stamps = [datetime.fromisoformat(r["at"].replace("Z", "+00:00")) for r in failures]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(stamps)]
    assert all(gap >= 0.9 for gap in gaps), gaps  # never a tight loop
    assert gaps[1] >= gaps[0], gaps  # the wait doubles (1s, 2s, ... at most 5s)
    assert "cannot pull" in failures[0]["error"] and "retries" in failures[0]["error"]
    assert applied(mini) == good and mini.status()["health"] == "Healthy"
    fixed = mini.repo.revert_push()
    wait_for(lambda: applied(mini) == fixed, 60, "the revert to be applied")
