"""`git push` ends with the server's result: the post-receive hook waits for the reconcile
its poke queued and prints it; a commit with the same files as the applied one is recorded
as applied without rendering or touching a container."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import docker
import pytest

from reconciler.stack import facts, readiness, tool_versions

from .harness import MINI_STATE, Server, StateRepo, free_port, git, new_project, wait_for


@pytest.fixture
def mini(docker_client: docker.DockerClient, tmp_path) -> Iterator[Server]:
    project, port = new_project(), free_port()
    repo = StateRepo(tmp_path, MINI_STATE, {"PROJECT": project, "18000": str(port)})
    server = Server(tmp_path, repo, project, docker_client)
    installed = server.lanai("hook", "install", str(repo.bare))
    assert installed.returncode == 0, installed.stderr
    yield server
    server.teardown()


def push(server: Server) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "push", "origin", "HEAD:main"], cwd=server.repo.work,
                          capture_output=True, text=True, timeout=120, check=False)


def test_a_push_prints_the_deploy_result_of_its_commit(mini: Server):
    mini.start_daemon()
    wait_for(lambda: mini.status().get("applied_commit") == mini.repo.head(), 120,
             "the first deploy")
    mini.repo.replace("compose.yaml", 'GREETING: "hello"', 'GREETING: "hej"')
    git(mini.repo.work, "commit", "--quiet", "-am", "Say hej")
    pushed = push(mini)
    assert pushed.returncode == 0, pushed.stderr
    head = mini.repo.head()
    assert f"lanai: Synced at {head[:12]} (applied)" in pushed.stderr, pushed.stderr
    # When the push returned, the server had applied it (no waiting on the test's side).
    assert mini.status()["applied_commit"] == head
    assert mini.env_of("web")["GREETING"] == "hej"


def test_a_push_with_the_same_files_is_applied_without_touching_the_stack(mini: Server):
    mini.start_daemon()
    wait_for(lambda: mini.status().get("health") == "Healthy", 120, "a healthy stack")
    before = {name: (c.id, c.attrs["State"]["StartedAt"]) for name, c in
              mini.containers().items()}
    git(mini.repo.work, "commit", "--quiet", "--allow-empty", "-m", "Nothing changes")
    pushed = push(mini)
    assert pushed.returncode == 0, pushed.stderr
    head = mini.repo.head()
    assert f"lanai: Synced at {head[:12]} (applied)" in pushed.stderr, pushed.stderr
    status = mini.status()
    assert status["applied_commit"] == head and status["sync"] == "Synced"
    record = next(r for r in mini.history() if r.get("commit") == head)
    assert record["status"] == "applied" and record["actions"] == []
    assert any("has the same files as" in note for note in record["notes"]), record
    assert "render" not in record["durations"] and "load" not in record["durations"]
    after = {name: (c.id, c.attrs["State"]["StartedAt"]) for name, c in
             mini.containers().items()}
    assert after == before

    # The next real change still renders and deploys (from the same-files commit).
    mini.repo.replace("compose.yaml", 'GREETING: "hello"', 'GREETING: "after"')
    git(mini.repo.work, "commit", "--quiet", "-am", "Greet after")
    pushed = push(mini)
    assert f"lanai: Synced at {mini.repo.head()[:12]} (applied)" in pushed.stderr
    assert mini.env_of("web")["GREETING"] == "after"


@pytest.fixture
def slow_probe(docker_client: docker.DockerClient, tmp_path) -> Iterator[Server]:
    """The mini stack with Docker's health probe every 60 s: the order below does not depend
    on the value (10 s in the example); a long one leaves room for a loaded test machine."""
    project, port = new_project(), free_port()
    repo = StateRepo(tmp_path, MINI_STATE, {"PROJECT": project, "18000": str(port),
                                            "interval: 1s": "interval: 60s"})
    server = Server(tmp_path, repo, project, docker_client)
    installed = server.lanai("hook", "install", str(repo.bare))
    assert installed.returncode == 0, installed.stderr
    yield server
    server.teardown()


def test_a_changed_push_is_healthy_before_dockers_first_probe(
        slow_probe: Server, docker_client: docker.DockerClient):
    server = slow_probe
    server.start_daemon()
    wait_for(lambda: server.status().get("applied_commit") == server.repo.head(), 180,
             "the first deploy")
    server.repo.replace("compose.yaml", 'GREETING: "hello"', 'GREETING: "soon"')
    git(server.repo.work, "commit", "--quiet", "-am", "Greet soon")
    pushed = push(server)
    assert pushed.returncode == 0, pushed.stderr
    head = server.repo.head()
    assert f"lanai: Synced at {head[:12]} (applied)" in pushed.stderr, pushed.stderr
    status = server.status()  # first lanai's verdict, then Docker's state
    web = server.containers()["web"]
    web.reload()
    health = web.attrs["State"]["Health"]
    web_status = next(s for s in status["services"] if s["service"] == "web")
    assert status["applied_commit"] == head and web_status["health"] == "Healthy", status
    assert server.env_of("web")["GREETING"] == "soon"
    api = facts.engine_version(docker_client) or ("", "")
    if tool_versions.has_start_interval(api[1]):
        # Engine 25+: Docker probes every start_interval itself; lanai runs no probe.
        assert health["Status"] == "healthy" and health["Log"], health
        assert not readiness.read(readiness.file(server.home))
    else:
        # Older engines: the push was Synced and status said Healthy while Docker had not
        # yet run its first probe of the new container; lanai's own probe had passed.
        assert health["Status"] == "starting" and not health.get("Log"), health
        assert (web.id, web.attrs["State"]["StartedAt"]) in readiness.read(
            readiness.file(server.home))
