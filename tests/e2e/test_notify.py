"""Telling the owner, end to end: the daemon on the mini stack sends notices through
Apprise to a real HTTP receiver on 127.0.0.1 whose URL (with a token) is a secret on the
server; a repeated failure is suppressed, the recovery is sent, and the drift report says
since when the server differs from git. The token never reaches a log or lanai's files."""

from __future__ import annotations

import json
from collections.abc import Iterator

import docker
import pytest

from ..http_receiver import Receiver
from .harness import MINI_STATE, Server, StateRepo, free_port, new_project, wait_for

TOKEN = "tok-9f3a1c77e2"  # stands for an ntfy topic or a webhook secret


@pytest.fixture
def told(docker_client: docker.DockerClient, tmp_path) -> Iterator[tuple[Server, Receiver]]:
    receiver = Receiver()
    project, port = new_project(), free_port()
    repo = StateRepo(tmp_path, MINI_STATE, {"PROJECT": project, "18000": str(port)})
    server = Server(tmp_path, repo, project, docker_client, secrets={
        "NOTIFY_URL": f"json://127.0.0.1:{receiver.port}/notify/{TOKEN}"})
    assert server.lanai("hook", "install", str(repo.bare)).returncode == 0
    # Drift stays (self-heal off) so it can be reported; a failing deploy fails in 20s.
    repo.replace("lanai.yaml", "self_heal: true", "self_heal: false")
    repo.replace("lanai.yaml", "health_timeout: 60s", "health_timeout: 20s")
    repo.write("lanai.yaml", repo.read("lanai.yaml")
               + "notify:\n  urls: [NOTIFY_URL]\n  repeat_after: 1h\n")
    repo.commit_push("Tell the owner")
    yield server, receiver
    server.teardown()
    receiver.close()


def failed_attempts(server: Server, commit: str) -> int:
    return len([r for r in server.history() if r["commit"] == commit
                and r["status"] == "failed"])


def test_failure_once_repeat_suppressed_recovery_then_drift_with_its_since_time(told):
    server, receiver = told
    server.start_daemon()
    wait_for(lambda: server.status().get("applied_commit") == server.repo.head(), 120,
             "the first deploy")
    assert receiver.posts == []  # a deploy that works is not news

    # A commit whose health check fails: the deploy rolls back and the owner hears once.
    server.repo.replace("compose.yaml", 'test: ["CMD-SHELL", "test ! -f /tmp/sick',
                        'test: ["CMD-SHELL", "false && test ! -f /tmp/sick')
    bad = server.repo.commit_push("A health check that never passes")
    wait_for(lambda: receiver.titles("failure"), 90, "the failure notice")
    [(path, body)] = receiver.posts
    assert path == f"/notify/{TOKEN}"  # the secret URL was used as it is
    assert "web: health check failing" in body["message"]

    # The same failure again (an explicit retry, within repeat_after): not sent again.
    assert server.lanai("reconcile", "--now", "--retry").returncode == 0
    wait_for(lambda: failed_attempts(server, bad) >= 2, 90, "the retried deploy to fail")

    # The fix: one recovery; a failure notice from the retry would have come before it,
    # since the daemon reconciles and notifies on one worker.
    fixed = server.repo.revert_push()
    wait_for(lambda: receiver.titles("success"), 90, "the recovery notice")
    assert server.status()["applied_commit"] == fixed
    assert receiver.titles("failure") == [receiver.titles("failure")[0]]
    assert receiver.titles("success") == ["lanai: recovered"]

    # Drift that stays: web stopped by hand, with self-heal off.
    server.containers()["web"].stop(timeout=5)
    wait_for(lambda: receiver.titles("warning"), 30, "the drift notice")
    drift_posts = [b for _, b in receiver.posts if b["type"] == "warning"]
    assert len(drift_posts) == 1 and "web stopped" in drift_posts[0]["message"]

    since_file = json.loads((server.home / "drift-since.json").read_text())
    first_seen = since_file["items"]["web:stopped"]["since"]
    code, report = server.lanai_json("drift", "--report", "--now")
    assert code == 1, report
    assert report["applied_commit"] == fixed and report["in_sync"] is False
    [item] = report["drift"]
    assert (item["service"], item["kind"], item["since"]) == ("web", "stopped", first_seen)
    assert item["since"] < report["written"]
    code, kept = server.lanai_json("drift", "--report")
    assert (code, kept) == (1, report)
    text = server.lanai("drift", "--report")
    assert f"web      stopped  {first_seen}" in text.stdout

    # The token is in the secrets file only: not in the daemon's log, the history, or any
    # file lanai keeps (state, notify.json, the drift files, rendered deployments).
    server.stop_daemon()
    log = server.daemon_log.read_text()
    assert "notice sent to json://127.0.0.1" in log
    assert TOKEN not in log
    assert TOKEN not in json.dumps(server.history())
    leaks = [p for p in server.home.rglob("*") if p.is_file() and TOKEN.encode() in p.read_bytes()]
    assert leaks == []
