"""Apply a plan: the only place with side effects on the stack.

Images are pulled (or found missing) before any container is touched; then
`docker compose up` converges the services that need it; then lanai waits
until they are running and healthy, or reports why not.
"""

from __future__ import annotations

import errno
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker

from reconciler.core.errors import ApplyError, DockerError
from reconciler.stack import compose, facts, readiness
from reconciler.stack.plan import Action, Plan
from reconciler.stack.render import Rendered

Progress = Callable[[str], None]
POLL_S = 0.1  # health is seen within 0.1 s of Docker's probe passing


@dataclass
class ApplyReport:
    results: list[dict[str, Any]] = field(default_factory=list)
    compose_s: float = 0.0  # time spent inside docker compose
    health_s: float = 0.0  # time spent waiting for containers to turn healthy


class Applier:
    def __init__(self, client: docker.DockerClient, *, health_timeout: float,
                 progress: Progress | None = None, compose_timeout: float = 900,
                 ready_file: Path | None = None) -> None:
        """`ready_file`: where the engine has no healthcheck start_interval, lanai probes
        starting containers itself and records those that passed there (readiness)."""
        self.client = client
        self.health_timeout = health_timeout
        self.progress = progress or (lambda _msg: None)
        self.compose_timeout = compose_timeout
        self.ready_file = ready_file

    def apply(self, rendered: Rendered, plan: Plan, report: ApplyReport) -> None:
        project = rendered.project_handle
        pulls = plan.services("pull")
        if pulls:
            self._pull(project, rendered, pulls, plan, report)
        up = plan.services("create", "update", "start")
        # A service whose profile is off is still in the file, so no orphan to Compose.
        switched_off = [s for s in plan.services("remove") if s in rendered.inactive]
        if switched_off:
            self._step(project.remove_cmd(switched_off), project, report,
                       [a for a in plan.actions if a.kind == "remove"
                        and a.service in switched_off],
                       f"docker compose rm --stop --force {' '.join(switched_off)}")
        removes = [s for s in plan.services("remove") if s not in switched_off]
        if up or removes:
            self._check_ports(rendered, up)
            self._step(project.up_cmd(up, remove_orphans=bool(removes)), project, report,
                       [a for a in plan.actions if a.kind in ("create", "update", "start")
                        or (a.kind == "remove" and a.service in removes)],
                       f"docker compose up {' '.join(up) or '(remove orphans)'}")
        restarts = plan.services("restart")
        if restarts:
            self._step(project.restart_cmd(restarts), project, report,
                       [a for a in plan.actions if a.kind == "restart"],
                       f"docker compose restart {' '.join(restarts)}")
        touched = sorted(set(up) | set(restarts))
        if touched:
            self.wait_healthy(rendered, touched, report)

    def _pull(self, project: compose.Project, rendered: Rendered, services: list[str],
              plan: Plan, report: ApplyReport) -> None:
        images = ", ".join(sorted({rendered.services[s].image or s for s in services}))
        self.progress(f"pulling {images}")
        started = time.monotonic()
        result = self._run(project.pull_cmd(services), project, report,
                           on_line=PullProgress(self.progress))
        ok = result.returncode == 0
        text = "" if ok else compose.error_text(result)
        for action in plan.actions:
            if action.kind == "pull":
                report.results.append(_result(action, ok, text, started))
        if not ok:
            transient = compose.pull_failure_is_transient(text)
            fix = ("the registry could not be reached; lanai retries with backoff"
                   if transient else "check the image name and tag in compose.yaml and push a "
                   "fix")
            raise ApplyError(f"cannot pull {images} ({text}); {fix}. Nothing was changed.",
                             deterministic=not transient)

    def _step(self, argv: list[str], project: compose.Project, report: ApplyReport,
              actions: list[Action], label: str) -> None:
        self.progress(label)
        started = time.monotonic()
        result = self._run(argv, project, report)
        ok = result.returncode == 0
        text = "" if ok else compose.error_text(result)
        report.results.extend(_result(a, ok, text, started) for a in actions)
        if not ok:
            if compose.port_in_use(text):
                raise ApplyError(f"a port this stack publishes is already in use ({text}); "
                                 "free it or change the port in compose.yaml.")
            raise ApplyError(f"`{label}` failed: {text}.")

    def _run(self, argv: list[str], project: compose.Project, report: ApplyReport,
             on_line: Callable[[str], None] | None = None) -> subprocess.CompletedProcess[str]:
        started = time.monotonic()
        try:
            return compose.run(argv, cwd=project.directory, timeout=self.compose_timeout,
                               on_line=on_line)
        finally:
            report.compose_s += time.monotonic() - started

    def _check_ports(self, rendered: Rendered, services: list[str]) -> None:
        """Refuse before touching anything if another program holds a port we publish."""
        ours = {port for c in facts.observe(self.client, rendered.project, []).containers
                for port in c.ports}
        held_by_us = {port for _, port in ours}
        for service in services:
            for entry in rendered.services[service].ports:
                published = str(entry.get("published") or "")
                if not published.isdigit() or entry.get("protocol", "tcp") != "tcp":
                    continue
                port = int(published)
                if port in held_by_us:
                    continue
                host = entry.get("host_ip") or "0.0.0.0"
                if port_taken(host, port):
                    raise ApplyError(
                        f"port {port} on {host}, published by service {service!r}, is already "
                        f"in use by another program (see `ss -ltnp 'sport = :{port}'`); stop it "
                        "or change the port in compose.yaml. Nothing was changed.")

    def wait_healthy(self, rendered: Rendered, services: list[str], report: ApplyReport) -> None:
        self.progress(f"waiting for {', '.join(services)} to be healthy")
        started = time.monotonic()
        deadline = started + self.health_timeout
        prober = (readiness.Prober(self.client, self.ready_file)
                  if self.ready_file is not None else None)
        try:
            while True:
                live = facts.observe(self.client, rendered.project, []).by_service()
                passed = self._probe(prober, rendered, services, live)
                problems = {s: _health_problem(rendered, s, live.get(s, []), passed)
                            for s in services}
                waiting = {s: p for s, p in problems.items() if p is not None}
                failed = {s: p[1] for s, p in waiting.items() if p[0] == "failed"}
                if failed:
                    raise ApplyError(_health_message(failed, self._last_logs(rendered, failed)))
                if not waiting:
                    return
                if time.monotonic() > deadline:
                    slow = {s: p[1] for s, p in waiting.items()}
                    raise ApplyError(
                        f"{_health_message(slow, {})} after {self.health_timeout:.0f}s "
                        "(sync.health_timeout)")
                time.sleep(POLL_S)
        finally:
            report.health_s += time.monotonic() - started

    @staticmethod
    def _probe(prober: readiness.Prober | None, rendered: Rendered, services: list[str],
               live: dict[str, list[facts.ContainerFact]]) -> set[tuple[str, str]]:
        """The starting containers that passed lanai's own probe (none without a prober)."""
        if prober is None:
            return set()
        return {readiness.key(c) for s in services for c in live.get(s, [])
                if prober.poll(c, rendered.services[s].config.get("healthcheck"))}

    def _last_logs(self, rendered: Rendered, services: dict[str, str]) -> dict[str, str]:
        out = {}
        for service in services:
            project = rendered.project_handle
            try:
                result = compose.run(project.logs_cmd([service], tail=3, follow=False),
                                     cwd=project.directory, timeout=30)
            except DockerError:
                continue
            lines = [line.split("|", 1)[-1].strip() for line in result.stdout.splitlines()]
            if lines:
                out[service] = " / ".join(lines)[-300:]
        return out


class PullProgress:
    """Passes compose's pull output on, a line per layer event but at most one
    "Downloading" line every few seconds, so a 4 GB pull shows it is alive."""

    EVERY_S = 3.0

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.last = 0.0

    def __call__(self, line: str) -> None:
        text = line.strip()
        if not text:
            return
        if "Downloading" in text or "Extracting" in text or "Waiting" in text:
            now = time.monotonic()
            if now - self.last < self.EVERY_S:
                return
            self.last = now
        self.progress(text)


def _health_problem(rendered: Rendered, service: str, containers: list[facts.ContainerFact],
                    passed: set[tuple[str, str]] | None = None) -> tuple[str, str] | None:
    """None when healthy; ("waiting", why) while starting; ("failed", why) when it won't.
    `passed`: containers seen ready by lanai's own probe (readiness.seen_ready)."""
    spec = rendered.services[service]
    current = [c for c in containers if c.config_hash == spec.hash] or containers
    if not current:
        return ("waiting", "no container yet")
    for c in current:
        if c.status in ("exited", "dead"):
            return ("failed", f"container exited with code {c.exit_code}")
        if c.status == "restarting":
            return ("failed", f"container keeps restarting (exit code {c.exit_code})")
        if c.status != "running":
            return ("waiting", f"container is {c.status}")
        if c.health == "unhealthy":
            probe = f": {c.health_log}" if c.health_log else ""
            return ("failed", f"health check failing{probe}")
        if c.health == "starting" and not readiness.seen_ready(c, passed or ()):
            return ("waiting", "health check starting")
    return None


def _health_message(problems: dict[str, str], logs: dict[str, str]) -> str:
    parts = []
    for service, why in sorted(problems.items()):
        tail = f" (last log lines: {logs[service]})" if service in logs else ""
        parts.append(f"{service}: {why}{tail}")
    return "not healthy: " + "; ".join(parts)


def _result(action: Action, ok: bool, error: str, started: float) -> dict[str, Any]:
    return {**action.to_json(), "result": "ok" if ok else "failed",
            "error": error or None, "duration_ms": round((time.monotonic() - started) * 1000)}


def port_taken(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False
