"""Whether containers that were given an NVIDIA GPU still see it.

A running container can lose its GPU without exiting: with Docker's systemd cgroup
driver, a `systemctl daemon-reload` on the host drops the GPU device nodes from the
container's cgroup, and from then on nvidia-smi inside it says "Failed to initialize
NVML: Unknown Error" while Ollama quietly falls back to the CPU (NVIDIA's notice:
https://github.com/NVIDIA/nvidia-docker/issues/1730). Restarting the container gives
the GPU back; bootstrap.sh applies NVIDIA's prevention (packaging/apt-repos.sh).

Pure parts: which containers asked for a GPU (:func:`requests_gpu`, from `docker
inspect` data) and what `nvidia-smi -L` inside one means (:func:`classify`). The I/O
edge is :class:`GpuProber`, which runs `nvidia-smi -L` through the Docker exec API with
a deadline, at most once a minute per container.
"""

from __future__ import annotations

import concurrent.futures
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from reconciler.server.gpu import parse_list

if TYPE_CHECKING:
    import docker

    from reconciler.stack.facts import ContainerFact

log = logging.getLogger("lanai.gpu_health")

PROBE_ARGV = ("nvidia-smi", "-L")
PROBE_TIMEOUT_S = 10.0
MIN_INTERVAL_S = 60.0  # the drift check's cadence; Docker events never probe more often

Status = Literal["ok", "lost", "no-tool", "unknown"]


@dataclass(frozen=True)
class GpuCheck:
    """What `nvidia-smi -L` inside one container said, in one sentence."""

    status: Status
    detail: str
    gpus: int = 0


# -- which containers have a GPU ------------------------------------------------------





# -- what nvidia-smi -L said ----------------------------------------------------------

# The messages that mean "this container had a GPU and lost it", each with why. Kept
# explicit: anything else nvidia-smi says is reported, never acted on.
LOST_MESSAGES: tuple[tuple[str, str], ...] = (
    ("Failed to initialize NVML: Unknown Error",
     "the GPU's device nodes were cut off from the container, typically by a "
     "`systemctl daemon-reload` with Docker's systemd cgroup driver"),
    ("No devices were found",
     "nvidia-smi finds no GPU in the container"),
    ("Driver/library version mismatch",
     "the NVIDIA driver changed on the host under the running container"),
)

# A shell's "cannot execute" (126) and "not found" (127), also what Docker's exec
# reports when the runtime cannot start the binary: the image has no nvidia-smi.
_NO_TOOL_CODES = {126, 127}
_NO_TOOL_TEXT = ("executable file not found",)


def classify(exit_code: int | None, stdout: str, stderr: str) -> GpuCheck:
    """Turn one `nvidia-smi -L` run inside a container into ok, lost, no-tool or unknown."""
    output = f"{stdout}\n{stderr}"
    first = next((line.strip() for line in output.splitlines() if line.strip()), "")
    for needle, why in LOST_MESSAGES:
        if needle.lower() in output.lower():
            return GpuCheck("lost", f"nvidia-smi in the container says \"{first}\": {why}")
    if exit_code in _NO_TOOL_CODES or any(t in output.lower() for t in _NO_TOOL_TEXT):
        return GpuCheck("no-tool", "the image has no nvidia-smi, so its GPU cannot be checked")
    if exit_code == 0:
        listed = parse_list(stdout)
        if listed:
            names = ", ".join(sorted({gpu.name for gpu in listed}))
            return GpuCheck("ok", f"{len(listed)} GPU(s): {names}", gpus=len(listed))
        return GpuCheck("lost", "nvidia-smi in the container lists no GPU")
    if exit_code is None:  # no answer, or the engine refused the exec
        return GpuCheck("unknown", f"nvidia-smi could not be run in the container: {first}")
    detail = f": {first}" if first else ""
    return GpuCheck("unknown", f"nvidia-smi in the container failed with exit code "
                    f"{exit_code}{detail}")


def host_problem(service: str, check: GpuCheck) -> str:
    """The sentence for a GPU still missing after the restart that should have fixed it."""
    return (f"the GPU is still missing inside {service} after a restart ({check.detail}), so "
            "the problem is on the host: run `nvidia-smi` there and check the NVIDIA driver "
            "(after a driver update, reboot the server).")


# -- the exec edge --------------------------------------------------------------------


@dataclass(frozen=True)
class Execution:
    exit_code: int | None
    stdout: str
    stderr: str


Exec = Callable[[str], Execution]


def docker_exec(client: docker.DockerClient, timeout: float = PROBE_TIMEOUT_S) -> Exec:
    """Run PROBE_ARGV in a container through the Docker API, giving up after `timeout`."""
    import docker.errors  # the SDK is only needed here, at the edge

    def run(container_id: str) -> Execution:
        api = client.api
        try:
            exec_id = api.exec_create(container_id, list(PROBE_ARGV), stdout=True,
                                      stderr=True)["Id"]
            out, err = api.exec_start(exec_id, demux=True)
            code = api.exec_inspect(exec_id).get("ExitCode")
        except docker.errors.APIError as exc:
            # Some engines refuse to start a missing binary at the API instead of
            # reporting exit code 126/127.
            return Execution(None, "", str(exc.explanation or exc))
        return Execution(code, (out or b"").decode(errors="replace"),
                         (err or b"").decode(errors="replace"))

    def bounded(container_id: str) -> Execution:
        # A hung driver hangs nvidia-smi; the reconcile must not hang with it.
        pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="gpu-probe")
        try:
            return pool.submit(run, container_id).result(timeout=timeout)
        except concurrent.futures.TimeoutError:
            return Execution(None, "", f"nvidia-smi did not answer within {timeout:g} s")
        finally:
            pool.shutdown(wait=False)

    return bounded


class GpuProber:
    """Checks running GPU containers, each at most once per `min_interval` seconds.

    Results are kept per container *start* (id and StartedAt), so a restarted
    container is checked again at once: that is how a repair is confirmed.
    """

    def __init__(self, run: Exec, *, min_interval: float = MIN_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.run = run
        self.min_interval = min_interval
        self.clock = clock
        self._last: dict[tuple[str, str | None], tuple[float, GpuCheck]] = {}

    def check(self, container: ContainerFact) -> GpuCheck | None:
        """The GPU check of one container; None when it has no GPU or is not running."""
        if not container.gpu or not container.running:
            return None
        key = (container.id, container.started_at)
        now = self.clock()
        cached = self._last.get(key)
        if cached is not None and now - cached[0] < self.min_interval:
            return cached[1]
        done = self.run(container.id)
        result = classify(done.exit_code, done.stdout, done.stderr)
        if result.status == "unknown":
            log.warning("%s: %s", container.name, result.detail)
        self._last[key] = (now, result)
        return result

    def lost(self, containers: Iterable[ContainerFact]) -> dict[str, str]:
        """Service -> why, for services with a running container whose GPU is gone."""
        seen = list(containers)
        live = {(c.id, c.started_at) for c in seen}
        self._last = {k: v for k, v in self._last.items() if k in live}
        out: dict[str, str] = {}
        for container in seen:
            result = self.check(container)
            if result is not None and result.status == "lost":
                out.setdefault(container.service, result.detail)
        return out


def prober(client: docker.DockerClient) -> GpuProber:
    return GpuProber(docker_exec(client))


def recheck(prober: GpuProber, containers: Iterable[ContainerFact],
            services: Iterable[str]) -> tuple[dict[str, str], list[str]]:
    """After restarting `services` for a lost GPU: (service -> host problem) for those
    still without it, and a note for each that has it back."""
    wanted = set(services)
    problems: dict[str, str] = {}
    notes: list[str] = []
    for container in containers:
        if container.service not in wanted:
            continue
        result = prober.check(container)
        if result is None:
            continue
        if result.status == "lost":
            problems.setdefault(container.service, host_problem(container.service, result))
        elif result.status == "ok":
            notes.append(f"{container.service} sees its GPU again after the restart "
                         f"({result.detail})")
    return problems, notes
