"""A long model pull does not hold the server back (issue 13): the example state under the
real daemon, a model pulled slowly in the background, and meanwhile a stopped Open WebUI
is healed and a pushed change deploys; a commit that drops the model stops its pull, and
a pull that ends is recorded and the models step finishes (num_ctx set).

Ollama is the API double (tests/ollama_double): OLLAMA_DOUBLE_PULL_BYTES_PER_SEC makes
its pulls as slow as a home line. Everything else is real: git, the daemon, Docker,
Open WebUI, Caddy. The tests share one deployment and run in the order of the file.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import docker
import pytest

from .harness import Server, StateRepo, example_repo, new_project, wait_for

SECRETS = {"WEBUI_SECRET_KEY": "e2e-pulls-secret-3f1a",
           "WEBUI_ADMIN_PASSWORD": "e2e-pulls-admin-90b4"}
TINY = "lanai-test:tiny"  # 26 MB in the double's catalog: at 50 kB/s, about 9 minutes
SLOW = 'OLLAMA_HOST: "0.0.0.0:11434"\n      OLLAMA_DOUBLE_PULL_BYTES_PER_SEC: "50000"'
FIRST_DEPLOY_S = 1500  # Open WebUI's first start plus the example's model pulls, on a busy machine


class Deployment:
    def __init__(self, server: Server, repo: StateRepo) -> None:
        self.server, self.repo = server, repo

    def status(self) -> dict[str, Any]:
        return self.server.status()

    def pull(self) -> dict[str, Any] | None:
        """The pull `lanai status --json` shows, if any."""
        return (self.status().get("models") or {}).get("pull")

    def wait(self, check: Any, timeout: float, what: str) -> Any:
        """wait_for, failing with the status and the daemon's log at the deadline."""
        try:
            return wait_for(check, timeout, what)
        except AssertionError as exc:
            log = self.server.daemon_log.read_text(errors="replace").splitlines()[-60:]
            raise AssertionError(f"{exc}\nstatus: {json.dumps(self.status())[:4000]}\n"
                                 "daemon log:\n" + "\n".join(log)) from None

    def applied(self, commit: str) -> dict[str, Any] | None:
        status = self.status()
        return status if status.get("applied_commit") == commit else None

    def running(self, service: str) -> bool:
        container = self.server.containers().get(service)
        return container is not None and container.status == "running"


@pytest.fixture(scope="module")
def deployed(docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("pulls")
    project = new_project()
    # Open WebUI's first start can take longer than the example allows on a test machine
    # shared by many runs: more time for its health check and for lanai's wait.
    repo, _ports = example_repo(root, project, {"start_period: 180s": "start_period: 900s",
                                                "health_timeout: 5m": "health_timeout: 15m"})
    server = Server(root, repo, project, docker_client, SECRETS)
    deployment = Deployment(server, repo)
    try:
        installed = server.lanai("hook", "install", str(repo.bare))
        assert installed.returncode == 0, installed.stderr
        server.start_daemon()
        head = repo.head()

        def settled() -> dict[str, Any] | None:
            status = deployment.status()
            done = status.get("applied_commit") == head and status.get("sync") == "Synced" \
                and status.get("health") == "Healthy" \
                and (status.get("models") or {}).get("sync") == "Synced"
            return status if done else None

        deployment.wait(settled, FIRST_DEPLOY_S, "the first deploy with its models")
        yield deployment
    finally:
        server.teardown()


def test_a_slow_pull_runs_in_the_background_and_status_shows_its_progress(
        deployed: Deployment) -> None:
    repo = deployed.repo
    repo.replace("compose.yaml", 'OLLAMA_HOST: "0.0.0.0:11434"', SLOW)
    repo.replace("models.yaml", "local:\n", f"local:\n  - name: {TINY}\n    context: 1024\n")
    commit = repo.commit_push("A tiny model, over a slow line")
    deployed.wait(lambda: deployed.applied(commit), 600, "the commit to be applied")

    def progressing() -> dict[str, Any] | None:
        models = deployed.status().get("models") or {}
        pull = models.get("pull") or {}
        return models if pull.get("model") == TINY and pull.get("completed") else None

    models = deployed.wait(progressing, 300, f"{TINY}'s pull to show progress")
    pull = models["pull"]
    assert models["sync"] == "Progressing"
    assert 0 < pull["completed"] < pull["total"] and 0 < pull["percent"] < 100, pull
    assert {r["model"]: r["state"] for r in models["models"]}[TINY] == "pulling"
    # The deploy's outcome says the models are still on their way, not Synced.
    record = next(r for r in deployed.server.history() if r.get("commit") == commit)
    assert record["models"]["sync"] == "Progressing" and record["models"]["pulling"] == [TINY]
    human = deployed.server.lanai("status")
    assert f"pulling {TINY}:" in human.stdout and "Progressing" in human.stdout, human.stdout


def test_a_stopped_open_webui_is_healed_while_the_pull_runs(deployed: Deployment) -> None:
    container = deployed.server.containers()["open-webui"]
    container.stop(timeout=30)
    stopped = time.monotonic()
    deployed.wait(lambda: deployed.running("open-webui"), 300, "Open WebUI to run again")
    healed_s = time.monotonic() - stopped
    print(f"\nOpen WebUI running again {healed_s:.2f}s after `docker stop` returned, "
          "with a pull in flight")
    pull = deployed.pull()
    assert pull is not None and pull["model"] == TINY, "the pull ended before the heal"

    def heal_recorded() -> bool:  # once Open WebUI is healthy again: the heal waits for it
        return any(r.get("status") == "healed" and any(
            a.get("service") == "open-webui" for a in r.get("actions") or [])
            for r in deployed.server.history())

    deployed.wait(heal_recorded, 300, "the heal in the history")


def test_a_pushed_change_deploys_while_the_pull_runs(deployed: Deployment) -> None:
    repo, server = deployed.repo, deployed.server
    repo.replace("compose.yaml", "    image: caddy:2.6.2\n",
                 '    image: caddy:2.6.2\n    environment:\n      LANAI_E2E_MARK: "mid-pull"\n')
    commit = repo.commit_push("Proxy: a new setting while a model pulls")
    deployed.wait(lambda: server.env_of("proxy").get("LANAI_E2E_MARK") == "mid-pull", 600,
                  "the proxy's change to deploy")
    deployed.wait(lambda: deployed.applied(commit), 120, "the commit to be recorded")
    pull = deployed.pull()
    assert pull is not None and pull["model"] == TINY, "the pull ended before the deploy"


def test_a_commit_that_drops_the_model_stops_its_pull(deployed: Deployment) -> None:
    repo, server = deployed.repo, deployed.server
    repo.replace("models.yaml", f"  - name: {TINY}\n    context: 1024\n", "")
    commit = repo.commit_push("No tiny model after all")

    def stopped() -> dict[str, Any] | None:
        status = deployed.applied(commit)
        models = (status or {}).get("models") or {}
        return models if models.get("pull") is None and models.get("sync") == "Synced" \
            else None

    # Status no longer counts a pull the applied commit does not want ...
    deployed.wait(stopped, 300, "the models to be Synced without the pull")
    # ... and the worker stops it at its next progress report (the double reports every 10%).
    deployed.wait(lambda: f"pull of {TINY} stopped: no longer wanted by the applied commit"
                  in server.daemon_log.read_text(), 300, "the worker to stop the pull")
    listed = server.containers()["ollama"].exec_run(["ollama", "list"]).output.decode()
    assert TINY not in listed, listed


def test_a_pull_that_ends_is_recorded_and_the_models_step_finishes(
        deployed: Deployment) -> None:
    repo, server = deployed.repo, deployed.server
    repo.replace("compose.yaml", SLOW, 'OLLAMA_HOST: "0.0.0.0:11434"')
    repo.replace("models.yaml", "local:\n", f"local:\n  - name: {TINY}\n    context: 1024\n")
    commit = repo.commit_push("The tiny model again, on a fast line")

    def ready() -> dict[str, Any] | None:
        status = deployed.applied(commit)
        models = (status or {}).get("models") or {}
        rows = {r["model"]: r for r in models.get("models") or []}
        return rows if models.get("sync") == "Synced" and rows.get(TINY, {}).get(
            "state") == "ready" else None

    rows = deployed.wait(ready, 600, f"{TINY} to be pulled and tuned")
    assert rows[TINY]["context"] == 1024
    done = [a for r in server.history() for a in (r.get("models") or {}).get("actions") or []
            if a.get("model") == TINY]
    assert {(a["kind"], a["result"]) for a in done} >= {("pull", "ok"), ("tune", "ok")}, done
