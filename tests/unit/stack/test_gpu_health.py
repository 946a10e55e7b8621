"""GPU health inside containers: which containers have a GPU, what `nvidia-smi -L` in one
means, the once-a-minute prober, and the gpu-lost drift the planner turns into a restart.

Outputs are real: the H100 `nvidia-smi -L` fixture for a healthy GPU, nvidia-smi's exact
error lines for a lost one, Docker 20.10's OCI error for an image without nvidia-smi,
and DeviceRequests as Docker 20.10.24 records them for `--gpus all` and compose's
`driver: nvidia, count: all, capabilities: [gpu]`.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import docker.errors
import pytest

from reconciler.stack import gpu_health
from reconciler.stack.facts import ContainerFact, requests_gpu
from reconciler.stack.gpu_health import Execution, GpuCheck, GpuProber, classify
from reconciler.stack.plan import Action, Drift, plan

from ..conftest import FIXTURES
from ..server.test_gpu import fixture
from ..stack.test_plan import container, facts, in_sync

NVML_LOST = "Failed to initialize NVML: Unknown Error"
OCI_NOT_FOUND = (
    'OCI runtime exec failed: exec failed: container_linux.go:380: starting container '
    'process caused: exec: "nvidia-smi": executable file not found in $PATH: unknown')


# ---------------------------------------------------------------- which containers


def inspect(name: str) -> dict:
    data = json.loads((FIXTURES / "docker-inspect" / name).read_text())
    return data[0] if isinstance(data, list) else data


def with_gpu(attrs: dict, requests: list | None = None, env: list[str] | None = None) -> dict:
    out = json.loads(json.dumps(attrs))
    if requests is not None:
        out["HostConfig"]["DeviceRequests"] = requests
    if env is not None:
        out["Config"]["Env"] = out["Config"]["Env"] + env
    return out


def test_the_recorded_cpu_stack_ollama_has_no_gpu() -> None:
    assert requests_gpu(inspect("ollama-healthy.json")) is False


@pytest.mark.parametrize("request_", [
    {"Driver": "", "Count": -1, "DeviceIDs": None, "Capabilities": [["gpu"]], "Options": {}},
    {"Driver": "nvidia", "Count": -1, "DeviceIDs": None, "Capabilities": [["gpu"]],
     "Options": {}},
], ids=["docker-run-gpus-all", "compose-driver-nvidia"])
def test_a_gpu_device_request_means_a_gpu(request_: dict) -> None:
    assert requests_gpu(with_gpu(inspect("ollama-healthy.json"), [request_])) is True


@pytest.mark.parametrize(("value", "expected"), [
    ("all", True), ("0,1", True), ("GPU-bfa079fa-07d9-d56a-3116-ace20916db13", True),
    ("void", False), ("none", False), ("", False),
])
def test_nvidia_visible_devices_as_the_runtime_reads_it(value: str, expected: bool) -> None:
    attrs = with_gpu(inspect("ollama-healthy.json"), env=[f"NVIDIA_VISIBLE_DEVICES={value}"])
    assert requests_gpu(attrs) is expected


# ---------------------------------------------------------------- what nvidia-smi said


def test_the_h100_listing_is_ok() -> None:
    check = classify(0, fixture("nvidia-smi-L.txt"), "")
    assert check == GpuCheck("ok", "1 GPU(s): NVIDIA H100 80GB HBM3", gpus=1)


@pytest.mark.parametrize(("code", "stdout", "stderr", "cause"), [
    # 255: nvidia-smi's "other error" exit status, what NVML_ERROR_UNKNOWN ends in.
    (255, "", NVML_LOST + "\n", "systemctl daemon-reload"),
    (18, "Failed to initialize NVML: Driver/library version mismatch\n"
         "NVML library version: 535.161\n", "", "driver changed on the host"),
    (6, "No devices were found\n", "", "finds no GPU"),
    (0, "", "", "lists no GPU"),
], ids=["nvml-unknown-error", "driver-library-mismatch", "no-devices", "empty-listing"])
def test_known_messages_mean_the_gpu_is_lost(code: int, stdout: str, stderr: str,
                                             cause: str) -> None:
    check = classify(code, stdout, stderr)
    assert check.status == "lost"
    assert cause in check.detail
    first = (stdout + stderr).splitlines()[0] if stdout + stderr else ""
    assert first in check.detail


@pytest.mark.parametrize(("code", "stdout", "stderr"), [
    (126, OCI_NOT_FOUND + "\r\n", ""),
    (127, "", "sh: 1: nvidia-smi: not found\n"),
    (None, "", "Cannot exec: " + OCI_NOT_FOUND),
], ids=["docker-exec-126", "shell-127", "refused-by-the-api"])
def test_an_image_without_nvidia_smi_is_skipped(code: int | None, stdout: str,
                                                stderr: str) -> None:
    assert classify(code, stdout, stderr).status == "no-tool"


def test_other_failures_are_reported_not_acted_on() -> None:
    check = classify(4, "Failed to initialize NVML: Insufficient Permissions\n", "")
    assert check == GpuCheck("unknown", "nvidia-smi in the container failed with exit code 4: "
                             "Failed to initialize NVML: Insufficient Permissions")
    hung = classify(None, "", "nvidia-smi did not answer within 10 s")
    assert hung.status == "unknown" and "did not answer" in hung.detail


def test_a_gpu_still_lost_after_a_restart_is_a_host_problem() -> None:
    text = gpu_health.host_problem("ollama", classify(255, "", NVML_LOST))
    assert text.startswith("the GPU is still missing inside ollama after a restart")
    assert NVML_LOST in text and "run `nvidia-smi` there" in text


# ---------------------------------------------------------------- the prober


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Smi:
    """Answers for `nvidia-smi -L` per container id, counting the calls."""

    def __init__(self, answer: Execution) -> None:
        self.answer = answer
        self.calls: list[str] = []

    def __call__(self, container_id: str) -> Execution:
        self.calls.append(container_id)
        return self.answer


def gpu_container(service: str = "ollama", *, started: str = "2025-01-01T00:00:00Z",
                  status: str = "running", gpu: bool = True) -> ContainerFact:
    return ContainerFact(id=f"{service}-id", name=f"lanai-{service}-1", service=service,
                         status=status, health="healthy", image_id="sha256:x", image_ref="x",
                         config_hash="h", started_at=started, gpu=gpu)


LOST = Execution(255, "", NVML_LOST + "\n")


def test_a_lost_gpu_is_found_and_probed_at_most_once_a_minute() -> None:
    clock, smi = Clock(), Smi(LOST)
    prober = GpuProber(smi, clock=clock)
    first = prober.lost([gpu_container()])
    assert list(first) == ["ollama"] and NVML_LOST in first["ollama"]
    clock.now += 59
    assert prober.lost([gpu_container()]) == first  # the cached answer
    assert smi.calls == ["ollama-id"]
    clock.now += 2
    prober.lost([gpu_container()])
    assert smi.calls == ["ollama-id", "ollama-id"]


def test_a_restarted_container_is_probed_again_at_once() -> None:
    clock, smi = Clock(), Smi(LOST)
    prober = GpuProber(smi, clock=clock)
    prober.lost([gpu_container()])
    smi.answer = Execution(0, fixture("nvidia-smi-L.txt"), "")
    assert prober.lost([gpu_container(started="2025-01-01T00:05:00Z")]) == {}
    assert len(smi.calls) == 2


def test_containers_without_a_gpu_or_not_running_are_not_probed() -> None:
    smi = Smi(LOST)
    prober = GpuProber(smi, clock=Clock())
    assert prober.lost([gpu_container("open-webui", gpu=False),
                        gpu_container(status="exited")]) == {}
    assert smi.calls == []


def test_no_tool_and_unknown_are_not_lost() -> None:
    for answer in (Execution(126, OCI_NOT_FOUND, ""), Execution(4, "Insufficient", "")):
        assert GpuProber(Smi(answer), clock=Clock()).lost([gpu_container()]) == {}


def test_recheck_after_the_restart() -> None:
    still, notes = gpu_health.recheck(GpuProber(Smi(LOST), clock=Clock()),
                                      [gpu_container()], ["ollama"])
    assert list(still) == ["ollama"] and "on the host" in still["ollama"] and notes == []
    ok = Smi(Execution(0, fixture("nvidia-smi-L.txt"), ""))
    still, notes = gpu_health.recheck(GpuProber(ok, clock=Clock()), [gpu_container()],
                                      ["ollama"])
    assert still == {} and notes == [
        "ollama sees its GPU again after the restart (1 GPU(s): NVIDIA H100 80GB HBM3)"]


# ---------------------------------------------------------------- drift and plan


def test_a_lost_gpu_is_drift_healed_by_a_restart() -> None:
    desired, live = in_sync()
    live.gpu_lost = {"ollama": "nvidia-smi in the container says \"" + NVML_LOST + "\": ..."}
    result = plan(desired, live, applied=desired, prune=True)
    assert result.drift == [Drift("ollama", "gpu-lost", live.gpu_lost["ollama"])]
    assert result.actions == [
        Action("restart", "ollama", "the GPU disappeared inside the container")]


def test_a_lost_gpu_within_the_heal_limit_is_held() -> None:
    desired, live = in_sync()
    live.gpu_lost = {"ollama": "lost"}
    result = plan(desired, live, applied=desired, prune=True, held=["ollama"])
    assert [d.kind for d in result.drift] == ["gpu-lost", "held"]
    assert result.actions == []


def test_a_stopped_container_is_started_not_gpu_checked() -> None:
    desired, _ = in_sync()
    live = facts(container("ollama", "ollama-h1", status="exited", exit_code=1),
                 container("open-webui", "webui-h1"))
    live.gpu_lost = {"ollama": "stale"}
    result = plan(desired, live, applied=desired, prune=True)
    assert [d.kind for d in result.drift] == ["stopped"]
    assert [a.kind for a in result.actions] == ["start"]


def test_the_double_prints_the_real_listing() -> None:
    """tests/ollama_double carries a copy of the fixture for its nvidia-smi double."""
    copy = Path(__file__).resolve().parents[2] / "ollama_double" / "nvidia-smi-L.txt"
    assert copy.read_text() == fixture("nvidia-smi-L.txt")


# ---------------------------------------------------------------- the exec edge


class Api:
    """The three Docker API calls docker_exec makes; exec_start blocks while `hang` is set."""

    def __init__(self, *, hang: bool = False, refuse: str | None = None) -> None:
        self.released = threading.Event()
        self.hang, self.refuse = hang, refuse
        self.argv: list[str] = []

    def exec_create(self, container_id: str, argv: list[str], **_: object) -> dict:
        if self.refuse:
            raise docker.errors.APIError("500 Server Error", explanation=self.refuse)
        self.argv = argv
        return {"Id": "exec-1"}

    def exec_start(self, exec_id: str, demux: bool) -> tuple[bytes | None, bytes | None]:
        if self.hang:
            self.released.wait(30)
        return None, NVML_LOST.encode() + b"\n"

    def exec_inspect(self, exec_id: str) -> dict:
        return {"ExitCode": 255}


class Client:
    def __init__(self, api: Api) -> None:
        self.api = api


def test_docker_exec_runs_nvidia_smi_l_and_reads_both_streams() -> None:
    api = Api()
    done = gpu_health.docker_exec(Client(api))("ollama-id")  # type: ignore[arg-type]
    assert api.argv == ["nvidia-smi", "-L"]
    assert done == Execution(255, "", NVML_LOST + "\n")


def test_docker_exec_gives_up_on_a_hung_nvidia_smi() -> None:
    api = Api(hang=True)
    try:
        done = gpu_health.docker_exec(Client(api), timeout=0.2)("ollama-id")  # type: ignore[arg-type]
    finally:
        api.released.set()
    assert done == Execution(None, "", "nvidia-smi did not answer within 0.2 s")
    assert classify(done.exit_code, done.stdout, done.stderr).status == "unknown"


def test_docker_exec_refused_for_a_missing_binary_is_no_tool() -> None:
    done = gpu_health.docker_exec(Client(Api(refuse=OCI_NOT_FOUND)))("ollama-id")  # type: ignore[arg-type]
    assert classify(done.exit_code, done.stdout, done.stderr).status == "no-tool"
