"""The example state (desired-state/) deployed for real: Open WebUI from the pinned
wheel, the Ollama API double, a bare git repo, the lanai CLI.

One stack is deployed for the module and the tests walk through a user's week
in order: deploy, a push that changes nothing, a push that changes the stack,
a broken push, a push whose health check fails, a `git revert`, and the monitoring
profile switched on (a real Prometheus scraping the daemon's /metrics) and off again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import docker
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from .harness import (
    ExamplePorts,
    ModelRegistry,
    Server,
    StateRepo,
    example_repo,
    new_project,
    wait_for,
)

SECRET = "e2e-webui-secret-9f8a7b"
ADMIN_EMAIL = "admin@lanai.home.arpa"  # WEBUI_ADMIN_EMAIL in desired-state/compose.yaml
ADMIN_PASSWORD = "e2e-admin-password-3c1d"


class Example:
    def __init__(self, server: Server, repo: StateRepo, ports: ExamplePorts) -> None:
        self.server, self.repo, self.ports, self.port = server, repo, ports, ports.webui
        self.url = f"http://127.0.0.1:{self.port}"
        self.commits: dict[str, str] = {}


@pytest.fixture(scope="module")
def example(docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[Example]:
    root = tmp_path_factory.mktemp("example")
    project = new_project()
    # The https proxy on free loopback ports too (tests/e2e/test_https.py exercises it).
    repo, ports = example_repo(root, project)
    server = Server(root, repo, project, docker_client, {"WEBUI_SECRET_KEY": SECRET,
                                                         "WEBUI_ADMIN_PASSWORD": ADMIN_PASSWORD})
    yield Example(server, repo, ports)
    server.teardown()


def webui_healthy(url: str) -> bool:
    return httpx.get(f"{url}/health", timeout=5).json().get("status") is True


def signin(url: str, email: str, password: str) -> httpx.Response:
    return httpx.post(f"{url}/api/v1/auths/signin", timeout=30,
                      json={"email": email, "password": password})


def test_example_state_deploys_and_open_webui_answers_health_and_signup(example: Example):
    code, outcome = example.server.reconcile()
    assert code == 0, outcome
    assert outcome["status"] == "applied"
    assert sorted((a["kind"], a["service"], a["result"]) for a in outcome["actions"]) == [
        ("create", "ollama", "ok"), ("create", "open-webui", "ok"), ("create", "proxy", "ok")]
    assert webui_healthy(example.url)
    # models.yaml's four models are pulled; with no GPU here they run on the CPU, each
    # with its trained context capped at 8192.
    pulled = sorted(a["model"] for a in outcome["models"]["actions"] if a["kind"] == "pull")
    assert pulled == ["deepseek-r1:7b-qwen-distill-q4_K_M", "llama3.1:8b-instruct-q4_K_M",
                      "nomic-embed-text:v1.5", "phi3:3.8b-mini-4k-instruct-q4_K_M"]
    # ... over the network: Ollama asked the registry (registry.ollama.ai, reached on the
    # stack's egress network) for each manifest and its blobs.
    assert ModelRegistry.current is not None
    ollama = example.server.containers()["ollama"]
    egress = ollama.attrs["NetworkSettings"]["Networks"][f"{example.server.project}_egress"]
    asked = ModelRegistry.current.requests_from(egress["IPAddress"])
    for name in pulled:
        repo, tag = name.split(":")
        assert f"GET /v2/library/{repo}/manifests/{tag} HTTP/1.1" in asked, asked
    assert sum("/blobs/sha256:" in line for line in asked) >= len(pulled) * 2
    code, listed = example.server.lanai_json("models")
    assert code == 0, listed
    assert {r["model"]: (r["state"], r["context"]) for r in listed["models"]} == {
        "llama3.1:8b-instruct-q4_K_M": ("ready", 8192),
        "phi3:3.8b-mini-4k-instruct-q4_K_M": ("ready", 4096),
        "deepseek-r1:7b-qwen-distill-q4_K_M": ("ready", 8192),
        "nomic-embed-text:v1.5": ("ready", 2048)}
    # The admin exists from the first start, with the password from the secrets file;
    # nobody on the LAN can sign up first and become admin.
    family = {"name": "Kid", "email": "kid@example.invalid", "password": "correct horse 1"}
    closed = httpx.post(f"{example.url}/api/v1/auths/signup", timeout=30, json=family)
    assert closed.status_code == 403, closed.text
    login = signin(example.url, ADMIN_EMAIL, ADMIN_PASSWORD)
    assert login.status_code == 200, login.text
    assert login.json()["role"] == "admin"
    headers = {"Authorization": f"Bearer {login.json()['token']}"}
    # The admin opens sign-ups through the API; a family member signs up and waits.
    config = httpx.get(f"{example.url}/api/v1/auths/admin/config", headers=headers,
                       timeout=30).json()
    opened = httpx.post(f"{example.url}/api/v1/auths/admin/config", headers=headers,
                        timeout=30, json={**config, "ENABLE_SIGNUP": True})
    assert opened.status_code == 200, opened.text
    signup = httpx.post(f"{example.url}/api/v1/auths/signup", timeout=30, json=family)
    assert signup.status_code == 200, signup.text
    assert signup.json()["role"] == "pending"  # DEFAULT_USER_ROLE in compose.yaml

    status = example.server.status()
    assert status["sync"] == "Synced" and status["health"] == "Healthy"
    assert {s["service"]: s["health"] for s in status["services"]} == {
        "ollama": "Healthy", "open-webui": "Healthy", "proxy": "Healthy"}
    # The GPU reservation is dropped on a server without the NVIDIA runtime, not failed on.
    ollama = example.server.containers()["ollama"]
    assert not ollama.attrs["HostConfig"].get("DeviceRequests")
    # Ollama is not published: only Open WebUI has a host port.
    assert not ollama.attrs["HostConfig"].get("PortBindings")


def test_secret_reaches_the_container_and_nowhere_else(example: Example):
    assert example.server.env_of("open-webui")["WEBUI_SECRET_KEY"] == SECRET
    for path in example.server.home.rglob("*"):
        if path.is_file() and ".lanai-secrets" not in path.parts:
            text = path.read_text(errors="replace")
            assert SECRET not in text and ADMIN_PASSWORD not in text, path
    env_files = list(example.server.home.rglob(".lanai-secrets/*.env"))
    assert env_files and all(f.stat().st_mode & 0o077 == 0 for f in env_files)


def test_push_without_stack_change_makes_zero_docker_writes(example: Example):
    before = example.server.container_ids()
    example.repo.write("NOTES.md", "Family server. Ask Dad for an account.\n")
    commit = example.repo.commit_push("Add notes")
    since = time.time() - 0.01
    code, outcome = example.server.reconcile()
    until = time.time() + 0.5
    assert code == 0, outcome
    assert outcome["actions"] == []
    assert example.server.status()["applied_commit"] == commit
    assert example.server.container_ids() == before
    assert example.server.docker_writes(since, until) == []


def test_push_that_changes_the_stack_converges_only_what_changed(example: Example):
    before = example.server.container_ids()
    example.repo.replace("models.yaml", "keep_alive: 30m", "keep_alive: 1h")
    example.commits["keep-alive"] = example.repo.commit_push("Keep models loaded for an hour")
    code, outcome = example.server.reconcile()
    assert code == 0, outcome
    assert [(a["kind"], a["service"]) for a in outcome["actions"]] == [("update", "ollama")]
    assert "environment.OLLAMA_KEEP_ALIVE: 30m -> 1h" in outcome["actions"][0]["details"]
    after = example.server.container_ids()
    assert after["ollama"] != before["ollama"]
    assert after["open-webui"] == before["open-webui"]
    assert example.server.env_of("ollama")["OLLAMA_KEEP_ALIVE"] == "1h"
    newest = example.server.history()[0]
    assert newest["commit"] == example.commits["keep-alive"]
    assert newest["subject"] == "Keep models loaded for an hour"


def test_broken_commit_is_reported_previous_stack_keeps_serving_next_good_commit_recovers(
        example: Example):
    before = example.server.container_ids()
    good = example.repo.read("compose.yaml")
    example.repo.write("compose.yaml", good.replace("    restart: unless-stopped\n",
                                                    "    restart: [unless-stopped\n", 1))
    broken = example.repo.commit_push("Typo")
    code, outcome = example.server.reconcile()
    assert code == 2, outcome
    assert outcome["status"] == "failed"
    assert outcome["error"].startswith("compose.yaml:")
    assert "push again" in outcome["error"]
    status = example.server.status()
    assert status["sync"] == "Failed" and status["head_commit"] == broken
    assert status["health"] == "Healthy"
    assert webui_healthy(example.url)
    assert example.server.container_ids() == before
    # A deterministic failure is not retried in a loop: the next reconcile waits.
    code, outcome = example.server.reconcile()
    assert outcome["status"] == "waiting" and code == 2
    assert len([r for r in example.server.history() if r["commit"] == broken]) == 1

    example.repo.write("compose.yaml", good)
    fixed = example.repo.commit_push("Fix typo")
    code, outcome = example.server.reconcile()
    assert code == 0, outcome
    status = example.server.status()
    assert status["sync"] == "Synced" and status["applied_commit"] == fixed
    assert example.server.container_ids() == before


def test_failing_health_check_rolls_back_to_the_last_good_commit(example: Example):
    good_ids = example.server.container_ids()
    example.repo.replace("compose.yaml", 'test: ["CMD", "ollama", "list"]',
                         'test: ["CMD", "false"]')
    example.repo.replace("compose.yaml", "retries: 5\n      start_period: 20s",
                         "retries: 2\n      start_period: 0s")
    example.repo.replace("compose.yaml", "interval: 10s", "interval: 1s")
    bad = example.repo.commit_push("Break ollama's health check")
    code, outcome = example.server.reconcile()
    assert code == 3, outcome
    assert "ollama: health check failing" in outcome["error"]
    assert outcome["rolled_back_to"] == example.commits["keep-alive"] or \
        outcome["rolled_back_to"] is not None
    status = example.server.status()
    assert status["sync"] == "Failed" and status["head_commit"] == bad
    assert status["health"] == "Healthy", status
    assert webui_healthy(example.url)
    assert example.server.containers()["open-webui"].id == good_ids["open-webui"]
    # Not retried by itself; --retry tries once more (and fails the same way).
    assert example.server.reconcile()[1]["status"] == "waiting"
    code, outcome = example.server.reconcile("--retry")
    assert code == 3 and outcome["status"] == "failed"


def test_git_revert_rolls_back(example: Example):
    example.repo.revert_push()  # the broken health check
    code, outcome = example.server.reconcile()
    assert code == 0, outcome
    assert example.server.env_of("ollama")["OLLAMA_KEEP_ALIVE"] == "1h"
    example.repo.revert_push(example.commits["keep-alive"])
    code, outcome = example.server.reconcile()
    assert code == 0, outcome
    assert [(a["kind"], a["service"]) for a in outcome["actions"]] == [("update", "ollama")]
    assert example.server.env_of("ollama")["OLLAMA_KEEP_ALIVE"] == "30m"
    status = example.server.status()
    assert status["sync"] == "Synced" and status["health"] == "Healthy"
    # The family member's account made at the start survived every redeploy (volume).
    login = signin(example.url, "kid@example.invalid", "correct horse 1")
    assert login.status_code == 200, login.text


def test_history_reads_newest_first_with_commit_actions_and_result(example: Example):
    records = example.server.history()
    assert records[0]["commit"] == example.repo.head()
    assert [r["status"] for r in records][-1] == "applied"
    assert any(r["status"] == "failed" and r["error"] for r in records)
    human = example.server.lanai("history")
    assert human.returncode == 0
    assert example.repo.head()[:12] in human.stdout



def promql(port: int, query: str) -> dict[str, float]:
    """An instant query through Prometheus' HTTP API: {model label or "": value}."""
    reply = httpx.get(f"http://127.0.0.1:{port}/api/v1/query", params={"query": query},
                      timeout=10).json()
    assert reply["status"] == "success", reply
    return {r["metric"].get("model", ""): float(r["value"][1]) for r in reply["data"]["result"]}


def test_monitoring_profile_scrapes_the_daemon_and_switching_it_off_removes_prometheus(
        example: Example):
    """The user's two steps: metrics_listen on the server (a port alone: loopback), the
    profile in lanai.yaml. Prometheus is the stand-in image (Debian's 2.42.0 binary tagged as
    the pinned prom/prometheus:v3.5.0, tests/images/prometheus); here it listens on a free
    port instead of 9090 and scrapes /metrics on another instead of 9469."""
    server, ports = example.server, example.ports
    # A model in memory, so /api/ps has a VRAM figure for it (0 here: no GPU).
    ollama = server.containers()["ollama"]
    model = "phi3:3.8b-mini-4k-instruct-q4_K_M"
    code, out = ollama.exec_run(["curl", "-fsS", "http://127.0.0.1:11434/api/generate", "-d",
                                 json.dumps({"model": model, "prompt": "hi", "stream": False})])
    assert code == 0, out
    code, out = ollama.exec_run(["curl", "-fsS", "http://127.0.0.1:11434/api/ps"])
    assert code == 0, out
    size_vram = {m["name"]: m["size_vram"] for m in json.loads(out)["models"]}[model]
    server.env["LANAI_METRICS_LISTEN"] = str(ports.metrics)
    server.start_daemon()
    try:
        example.repo.replace("lanai.yaml", "# profiles: [monitoring]", "profiles: [monitoring]")
        example.commits["monitoring"] = example.repo.commit_push("Switch monitoring on")
        before = server.container_ids()
        code, outcome = server.reconcile()
        assert code == 0, outcome
        assert [(a["kind"], a["service"], a["result"]) for a in outcome["actions"]] == [
            ("create", "prometheus", "ok")]
        assert server.container_ids().items() >= before.items()  # nothing else touched
        prometheus = server.containers()["prometheus"]
        assert prometheus.attrs["HostConfig"]["NetworkMode"] == "host"
        assert prometheus.attrs["Config"]["User"] == "65534"
        assert {s["service"]: s["health"] for s in server.status()["services"]}[
            "prometheus"] == "Healthy"
        # Through Prometheus' own storage and query engine: the sync status, and the loaded
        # model's VRAM figure as Ollama's /api/ps gave it to lanai.
        synced = wait_for(lambda: promql(ports.prometheus, "lanai_stack_synced") == {"": 1.0},
                          90, "Prometheus to scrape lanai_stack_synced 1")
        assert synced
        query = f'lanai_model_vram_bytes{{model="{model}"}}'
        vram = wait_for(lambda: promql(ports.prometheus, query), 30,
                        "a model's VRAM figure in Prometheus")
        assert vram == {model: float(size_vram)}
        text = httpx.get(f"http://127.0.0.1:{ports.metrics}/metrics", timeout=10).text
        daemon = {s.labels["model"]: s.value for family in text_string_to_metric_families(text)
                  for s in family.samples if s.name == "lanai_model_vram_bytes"}
        assert vram[model] == daemon[model]  # the daemon's figure, stored and queried
        assert promql(ports.prometheus, "lanai_model_loaded == 1")[model] == 1.0
        # The rules in monitoring/ are loaded, and none fires on this healthy stack.
        rules = httpx.get(f"http://127.0.0.1:{ports.prometheus}/api/v1/rules", timeout=10)
        names = [r["name"] for g in rules.json()["data"]["groups"] for r in g["rules"]]
        assert "LanaiStackOutOfSync" in names and len(names) == 7
        states = {r["name"]: r["state"] for g in rules.json()["data"]["groups"]
                  for r in g["rules"]}
        assert states["LanaiMetricsDown"] == "inactive", states  # the daemon is scraped

        # Switched off in git: the container goes, its data volume stays.
        example.repo.revert_push()
        code, outcome = server.reconcile()
        assert code == 0, outcome
        assert [(a["kind"], a["service"], a["result"], a["reason"])
                for a in outcome["actions"]] == [
            ("remove", "prometheus", "ok", "profile switched off in lanai.yaml")]
        assert "prometheus" not in server.containers()
        assert server.containers().keys() == before.keys()
        volume = f"{server.project}_prometheus-data"
        assert server.client.volumes.get(volume).name == volume
        status = server.status()
        assert status["sync"] == "Synced" and status["health"] == "Healthy"
        assert "prometheus" not in {s["service"] for s in status["services"]}
    finally:
        server.stop_daemon()
        server.env.pop("LANAI_METRICS_LISTEN")
