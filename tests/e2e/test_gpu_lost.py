"""The GPU disappearing inside the Ollama container, with an nvidia-smi DOUBLE (no GPU here).

The Ollama double's image carries an nvidia-smi double (tests/ollama_double/nvidia-smi)
that prints the real H100 `nvidia-smi -L` listing, and "Failed to initialize NVML:
Unknown Error" with exit status 255 while /run/lanai-test/nvml-lost exists; the
double's entrypoint removes that flag at start, as a real restart hands the GPU back.
Everything else is real: Docker's exec API runs the probe, `docker compose restart`
repairs, and lanai's drift, status and history report it.
"""

from __future__ import annotations

from collections.abc import Iterator

import docker
import pytest

from .harness import MINI_STATE, Server, StateRepo, free_port, new_project, wait_for

NVML_LOST = "Failed to initialize NVML: Unknown Error"
LISTING = "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-bfa079fa-07d9-d56a-3116-ace20916db13)"


@pytest.fixture
def mini(docker_client: docker.DockerClient, tmp_path) -> Iterator[Server]:
    project, port = new_project(), free_port()
    repo = StateRepo(tmp_path, MINI_STATE, {"PROJECT": project, "18000": str(port)})
    server = Server(tmp_path, repo, project, docker_client)
    code, outcome = server.reconcile()
    assert code == 0, outcome
    wait_for(lambda: server.status().get("health") == "Healthy", 60, "a healthy stack")
    yield server
    server.teardown()


def ollama_started(server: Server) -> str:
    return server.containers()["ollama"].attrs["State"]["StartedAt"]


def nvidia_smi(server: Server) -> tuple[int, str]:
    code, output = server.containers()["ollama"].exec_run(["nvidia-smi", "-L"])
    return code, output.decode()


def test_lost_gpu_with_an_nvidia_smi_double_is_reported_and_repaired_by_a_restart(
        mini: Server) -> None:
    assert nvidia_smi(mini) == (0, LISTING + "\n")
    code, drift = mini.lanai_json("drift")
    assert code == 0 and drift["drift"] == [], drift  # a GPU that answers is no drift
    before = ollama_started(mini)

    mini.containers()["ollama"].exec_run(
        ["sh", "-c", "mkdir -p /run/lanai-test && touch /run/lanai-test/nvml-lost"])
    assert nvidia_smi(mini)[0] == 255

    code, drift = mini.lanai_json("drift")
    assert code == 1, drift
    assert [(d["service"], d["kind"]) for d in drift["drift"]] == [("ollama", "gpu-lost")]
    assert NVML_LOST in drift["drift"][0]["detail"]
    assert [(a["kind"], a["service"]) for a in drift["heal"]] == [("restart", "ollama")]
    status = mini.status()
    assert status["sync"] == "OutOfSync", status
    assert [d["kind"] for d in status["drift"]] == ["gpu-lost"]

    code, outcome = mini.reconcile()
    assert code == 0, outcome
    assert outcome["status"] == "healed"
    assert [(d["service"], d["kind"]) for d in outcome["drift"]] == [("ollama", "gpu-lost")]
    assert [(a["kind"], a["service"], a["result"]) for a in outcome["actions"]] == [
        ("restart", "ollama", "ok")]
    assert "ollama sees its GPU again after the restart (1 GPU(s): NVIDIA H100 80GB HBM3)" \
        in outcome["notes"]

    assert ollama_started(mini) != before  # restarted, not left alone
    assert nvidia_smi(mini) == (0, LISTING + "\n")
    (record,) = [r for r in mini.history() if r["status"] == "healed"]
    assert record["drift"][0]["kind"] == "gpu-lost"
    status = mini.status()
    assert status["drift"] == [] and status["health"] == "Healthy", status


def test_gpu_still_lost_after_a_restart_with_an_nvidia_smi_double_is_a_host_problem(
        mini: Server) -> None:
    # The double's stand-in for a broken host driver: it survives the restart.
    mini.containers()["ollama"].exec_run(
        ["sh", "-c", "mkdir -p /var/lib/lanai-test && touch /var/lib/lanai-test/host-gpu-broken"])
    before = ollama_started(mini)

    code, outcome = mini.reconcile()
    assert code == 3, outcome  # APPLY_FAILED: the heal did not heal
    assert outcome["status"] == "failed"
    assert outcome["error"].startswith(
        "healing failed: the GPU is still missing inside ollama after a restart")
    assert "the problem is on the host: run `nvidia-smi` there" in outcome["error"]
    assert ollama_started(mini) != before
    assert [d["kind"] for d in mini.status()["drift"]] == ["gpu-lost"]

    # heal_limit.restarts is 2 in the mini state: one more restart, then hold.
    code, outcome = mini.reconcile()
    assert code == 3 and [a["kind"] for a in outcome["actions"]] == ["restart"], outcome
    held_since = ollama_started(mini)
    code, outcome = mini.reconcile()
    assert outcome["actions"] == [], outcome
    assert [d["kind"] for d in outcome["drift"]] == ["gpu-lost", "held"]
    assert ollama_started(mini) == held_since  # no restart in a loop
