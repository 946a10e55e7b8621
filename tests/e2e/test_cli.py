"""The read commands a user and a pull request's CI run: plan (no side effects),
validate, status, drift, logs, history, as text and as JSON."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import docker
import pytest

from .harness import MINI_STATE, Server, StateRepo, free_port, new_project


@pytest.fixture(scope="module")
def server(docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("cli")
    project = new_project()
    repo = StateRepo(root, MINI_STATE, {"PROJECT": project, "18000": str(free_port())})
    server = Server(root, repo, project, docker_client)
    code, outcome = server.reconcile()
    assert code == 0, outcome
    yield server
    server.teardown()


def test_plan_with_nothing_to_do_exits_0(server: Server):
    result = server.lanai("plan")
    assert result.returncode == 0, result.stderr
    assert "no changes" in result.stdout


def test_plan_shows_what_a_push_would_change_and_why_without_side_effects(server: Server):
    before = server.container_ids()
    server.repo.replace("compose.yaml", 'GREETING: "hello"', 'GREETING: "hi"')
    commit = server.repo.commit_push("Say hi")
    since = time.time()
    code, plan = server.lanai_json("plan")
    until = time.time() + 0.5
    assert code == 1
    assert plan["commit"] == commit
    assert [(a["kind"], a["service"], a["reason"]) for a in plan["actions"]] == [
        ("update", "web", "configuration changed in git")]
    assert plan["actions"][0]["details"] == ["environment.GREETING: hello -> hi"]
    human = server.lanai("plan")
    assert human.returncode == 1
    assert "update   web: configuration changed in git" in human.stdout
    assert "environment.GREETING: hello -> hi" in human.stdout
    assert server.container_ids() == before
    assert server.docker_writes(since, until) == []
    assert server.status()["applied_commit"] != commit
    # --ref plans any commit: the one already applied changes nothing.
    code, plan = server.lanai_json("plan", "--ref", "HEAD~1")
    assert code == 0 and plan["actions"] == []
    assert server.reconcile()[0] == 0


def test_plan_dir_plans_a_checkout_that_is_not_pushed(server: Server):
    server.repo.replace("compose.yaml", 'GREETING: "hi"', 'GREETING: "hey"')
    code, plan = server.lanai_json("plan", "--dir", str(server.repo.work))
    assert code == 1
    assert [(a["kind"], a["service"]) for a in plan["actions"]] == [("update", "web")]
    server.repo.replace("compose.yaml", 'GREETING: "hey"', 'GREETING: "hi"')
    code, plan = server.lanai_json("plan", "--dir", str(server.repo.work))
    assert code == 0, plan


def test_plan_of_an_invalid_commit_exits_2_with_the_reason(server: Server):
    server.repo.replace("lanai.yaml", "  prune: true", "  prune: maybe")
    code, data = server.lanai_json("plan", "--dir", str(server.repo.work))
    assert code == 2
    assert "lanai.yaml:" in data["error"] and "sync.prune" in data["error"]
    server.repo.replace("lanai.yaml", "  prune: maybe", "  prune: true")


def test_validate_needs_no_server(server: Server, tmp_path):
    ok = server.lanai("validate", str(server.repo.work))
    assert ok.returncode == 0 and "valid" in ok.stderr
    broken = tmp_path / "state"
    broken.mkdir()
    (broken / "compose.yaml").write_text("services:\n  web:\n    image: nginx\n"
                                         "    depends_on: [db]\n")
    code, data = server.lanai_json("validate", str(broken))
    assert code == 2 and not data["valid"]
    assert data["problems"][0].startswith("compose.yaml:3: services.web.image: image 'nginx'")
    (broken / "compose.yaml").write_text("services:\n  web:\n    image: nginx:1.27\n"
                                         "    depends_on: [db]\n")
    code, data = server.lanai_json("validate", str(broken))
    assert code == 2
    assert data["problems"][0].startswith("compose.yaml: rejected by docker compose")
    assert "db" in data["problems"][0]


def test_status_drift_and_history_read_as_text_and_json(server: Server):
    human = server.lanai("status")
    assert human.returncode == 0
    for word in ("Synced", "Healthy", "web", "ollama", server.repo.head()[:12]):
        assert word in human.stdout, human.stdout
    code, drift = server.lanai_json("drift")
    assert code == 0 and drift["drift"] == []
    assert "no drift" in server.lanai("drift").stdout
    history = server.history()
    assert [r["status"] for r in history][:2] == ["applied", "applied"]


def test_logs_of_one_service_as_text_and_json_lines(server: Server):
    server.containers()["web"].exec_run(["curl", "-fsS", "http://localhost:8000/from-test"])
    text = server.lanai("logs", "web", "--tail", "50")
    assert text.returncode == 0, text.stderr
    assert "GET /from-test" in text.stdout
    lines = server.lanai("logs", "web", "--tail", "50", "--json").stdout.splitlines()
    records = [json.loads(line) for line in lines]
    assert any("GET /from-test" in r["message"] and r["service"] == "web" for r in records)
    missing = server.lanai("logs", "nope")
    assert missing.returncode == 2
    assert "no service named nope" in missing.stderr


def test_secrets_list_shows_names_never_values(server: Server):
    assert server.lanai("secrets", "set", "API_TOKEN", stdin="tok-123\n").returncode == 0
    listed = server.lanai("secrets", "list")
    assert listed.stdout.split() == ["API_TOKEN"]
    assert "tok-123" not in listed.stdout
    assert server.secrets_file.stat().st_mode & 0o077 == 0
