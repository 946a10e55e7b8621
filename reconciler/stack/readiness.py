"""lanai's own readiness probe, for engines without healthcheck start_interval.

Before Engine 25 (Docker API 1.44) Docker runs a container's first health probe one
`interval` after its start: with the common 10 s, a service up in a second is seen
healthy 10 s later. While a deploy waits and Docker still says "starting", lanai runs the
service's own health check test inside the container (Docker's exec, never a host shell)
every PROBE_EVERY_S, and counts a passing one as healthy for that container's current
start. A failing one counts for nothing: only Docker's verdict fails a deploy. Once Docker
has probed the container since its start, Docker's verdict wins.

The containers lanai saw pass are kept in a small file under lanai's home, so that
`lanai status` agrees with the deploy that waited on them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
from requests.exceptions import RequestException

from reconciler.core.durations import parse_duration
from reconciler.core.files import write_json_atomic
from reconciler.stack.facts import ContainerFact

PROBE_EVERY_S = 0.5  # a probe start per container at most this often
DEFAULT_TIMEOUT_S = 30.0  # Docker's default healthcheck timeout
KEEP = 50  # passed containers remembered (the newest)
FILE_NAME = "ready.json"

Passed = frozenset[tuple[str, str]]  # (container id, its StartedAt)


def file(home: Path) -> Path:
    return home / FILE_NAME


def probe_argv(healthcheck: Any) -> list[str] | None:
    """What to exec for a compose healthcheck (normalized config); None: no test of its own.

    Docker's forms: ["CMD", arg...] runs the arguments; ["CMD-SHELL", cmd] and a plain
    string run `cmd` with the container's shell; ["NONE"], `disable: true`, an empty test
    (the image's own check, which compose does not show) mean lanai has nothing to run.
    """
    if not isinstance(healthcheck, dict) or healthcheck.get("disable"):
        return None
    test = healthcheck.get("test")
    if isinstance(test, str):
        return ["/bin/sh", "-c", test] if test.strip() else None
    if not isinstance(test, list) or not test or not all(isinstance(t, str) for t in test):
        return None
    form, args = test[0], test[1:]
    if form == "CMD" and args:
        return list(args)
    if form == "CMD-SHELL" and args and " ".join(args).strip():
        return ["/bin/sh", "-c", " ".join(args)]
    return None


def probe_timeout(healthcheck: Any) -> float:
    """The healthcheck's own timeout in seconds (Docker's 30 s when it sets none)."""
    value = healthcheck.get("timeout") if isinstance(healthcheck, dict) else None
    try:
        seconds = parse_duration(value) if value not in (None, "", 0, "0s") else 0.0
    except ValueError:
        seconds = 0.0
    return seconds or DEFAULT_TIMEOUT_S


def key(fact: ContainerFact) -> tuple[str, str]:
    return (fact.id, fact.started_at or "")


def wanted(fact: ContainerFact) -> bool:
    """Whether lanai's probe can tell more than Docker now: running, Docker says "starting"
    and has not probed it since this start."""
    return fact.status == "running" and fact.health == "starting" and not fact.docker_probed


def seen_ready(fact: ContainerFact, passed: Iterable[tuple[str, str]]) -> bool:
    """Healthy by lanai's probe: passed since the container's current start, and Docker has
    not given a verdict of its own since (Docker's wins, unhealthy stays unhealthy)."""
    return wanted(fact) and bool(fact.started_at) and key(fact) in set(passed)


def read(path: Path) -> Passed:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return frozenset((str(e["id"]), str(e["started_at"])) for e in data["passed"])
    except (OSError, ValueError, KeyError, TypeError):
        return frozenset()  # none recorded (or unreadable): Docker's view alone


def remember(path: Path, fact: ContainerFact) -> None:
    """Add a container that passed, keeping the newest KEEP (atomic write, mode 0600)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        entries = [e for e in data["passed"] if isinstance(e, dict)]
    except (OSError, ValueError, KeyError, TypeError):
        entries = []
    entry = {"id": fact.id, "started_at": fact.started_at or "", "service": fact.service}
    entries = [e for e in entries if e.get("id") != fact.id] + [entry]
    write_json_atomic(path, {"passed": entries[-KEEP:]})


@dataclass
class _Running:
    exec_id: str
    since: float
    timeout: float


class Prober:
    """Runs health check tests in starting containers without blocking the health wait:
    each `poll` starts at most one exec per container and collects finished ones."""

    def __init__(self, client: docker.DockerClient, path: Path) -> None:
        self.client = client
        self.path = path
        self.passed: set[tuple[str, str]] = set(read(path))
        self.running: dict[tuple[str, str], _Running] = {}
        self.last_start: dict[tuple[str, str], float] = {}

    def poll(self, fact: ContainerFact, healthcheck: Any) -> bool:
        """Whether `fact` passed lanai's probe since its start (starts or reaps one probe)."""
        if not wanted(fact) or not fact.started_at:
            return False
        k = key(fact)
        if k in self.passed:
            return True
        argv = probe_argv(healthcheck)
        if argv is None:
            return False
        now = time.monotonic()
        running = self.running.get(k)
        if running is not None:
            code = self._exit_code(running.exec_id)
            if code is None and now - running.since <= running.timeout:
                return False
            del self.running[k]  # done, or past its timeout: left to end on its own
            if code == 0:
                self.passed.add(k)
                remember(self.path, fact)
                return True
        if now - self.last_start.get(k, 0.0) >= PROBE_EVERY_S:
            self.last_start[k] = now
            exec_id = self._start(fact.id, argv)
            if exec_id is not None:
                self.running[k] = _Running(exec_id, now, probe_timeout(healthcheck))
        return False

    def _start(self, container: str, argv: list[str]) -> str | None:
        try:
            created = self.client.api.exec_create(container, argv, stdout=False, stderr=False)
            self.client.api.exec_start(created["Id"], detach=True)
            return str(created["Id"])
        except (docker.errors.APIError, RequestException):
            return None  # gone or not running yet: Docker's own probe still decides

    def _exit_code(self, exec_id: str) -> int | None:
        """The exec's exit code once it ended; None while it runs; -1 when unknown."""
        try:
            info = self.client.api.exec_inspect(exec_id)
        except (docker.errors.APIError, RequestException):
            return -1
        if info.get("Running"):
            return None
        code = info.get("ExitCode")
        return code if isinstance(code, int) else -1
