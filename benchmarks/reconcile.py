"""How fast lanai converges, notices drift, and how little it costs when idle.

    python -m benchmarks.reconcile            # human table on stdout, progress on stderr
    python -m benchmarks.reconcile --json     # the same numbers as one JSON object

It sets up an isolated server exactly as the end-to-end tests do (a bare git
repo with the post-receive hook, LANAI_* in a temp dir, the "mini" stack under
its own compose project, the real `lanai run` daemon as a subprocess) and
measures:

1. push -> applied: a one-line change (web's GREETING) pushed with the daemon
   running; wall time from `git push` returning to state.json naming the new
   commit, beside compose's own time and the health wait from the history
   record; lanai's overhead is what is left.
2. idle reconcile: `Engine.reconcile(trigger="poll")` in-process on a converged
   stack, against `docker compose ps` on the same project as the baseline.
3. drift after `docker stop web`: until the daemon logs the Docker event, until
   the drift is on record in state.json (what `lanai status` shows), until the
   "healed" history record, until web runs (and is healthy) again.
4. the daemon's idle RSS and CPU over a window, with the mini state's 300 s
   poll interval and with a 5 s one.

Everything runs on 127.0.0.1 and in containers this script starts; all of
them, their network and volume, and the temp dir are removed at the end, also
on failure or Ctrl-C. Exit status: 0 when the benchmark ran (MISS included),
1 when it could not finish, 2 when its preconditions are missing, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import docker
import docker.errors

from reconciler.engine.reconcile import Engine
from reconciler.server.settings import load_settings
from reconciler.stack import compose
from tests.e2e.harness import MINI_STATE, REQUIRED_IMAGES, Server, StateRepo, free_port, git

T = TypeVar("T")
POLL_S = 0.02  # how finely files and containers are watched
PUSH_OVERHEAD_TARGET_S = 3.0
IDLE_RECONCILE_TARGET_S = 0.200
DRIFT_TARGET_S = 2.0
IDLE_RSS_TARGET_MB = 100.0


class BenchError(Exception):
    """The benchmark itself could not run (not a MISS)."""


class Precondition(BenchError):
    pass


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def poll(check: Callable[[], T], timeout: float, what: str, interval: float = POLL_S) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def median(values: list[float]) -> float:
    return statistics.median(values)


def p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]


# -- results --------------------------------------------------------------------------------


@dataclass
class Metric:
    name: str
    value: float
    unit: str
    target: str = "-"
    ok: bool | None = None  # None: informational, no target
    ratio: float | None = None
    baseline: str | None = None
    note: str | None = None

    @property
    def verdict(self) -> str:
        return "-" if self.ok is None else ("PASS" if self.ok else "MISS")

    def shown(self) -> str:
        if self.unit == "s":
            return f"{self.value:.3f} s"
        if self.unit == "ms":
            return f"{self.value:.1f} ms"
        if self.unit == "MB":
            return f"{self.value:.1f} MB"
        if self.unit == "%":
            return f"{self.value:.2f} %"
        return f"{self.value:g} {self.unit}"


@dataclass
class Results:
    metrics: list[Metric] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)

    def add(self, metric: Metric) -> None:
        self.metrics.append(metric)
        extra = f" (x{metric.ratio:.2f} {metric.baseline})" if metric.ratio is not None else ""
        say(f"  {metric.name}: {metric.shown()}{extra}  target {metric.target}  "
            f"{metric.verdict}")


# -- reading what lanai wrote -------------------------------------------------------------


def read_state(home: Path) -> dict[str, Any]:
    try:
        return json.loads((home / "state.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def read_history(home: Path) -> list[dict[str, Any]]:
    """Records, oldest first; a line being written is skipped."""
    try:
        lines = (home / "history.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


class LogTail:
    """New lines of the daemon's log since the last look."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0

    def new_lines(self) -> list[str]:
        try:
            with self.path.open("rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except FileNotFoundError:
            return []
        cut = data.rfind(b"\n") + 1
        self.offset += cut
        return data[:cut].decode(errors="replace").splitlines()


_DOCKER_TIME = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)")


def docker_time(text: str) -> float | None:
    """Epoch seconds of a Docker timestamp (RFC 3339 with nanoseconds)."""
    match = _DOCKER_TIME.match(text or "")
    if not match:
        return None
    base, fraction, zone = match.groups()
    zone = "+00:00" if zone == "Z" else zone
    stamp = datetime.fromisoformat(base + zone).timestamp()
    return stamp + (float(fraction) if fraction else 0.0)


def first_healthy_probe(attrs: dict[str, Any]) -> float | None:
    """When the first passing health probe of this container's current run ended (epoch s)."""
    state = attrs.get("State") or {}
    started = docker_time(state.get("StartedAt", "")) or 0.0
    for probe in (state.get("Health") or {}).get("Log") or []:
        end = docker_time(probe.get("End", ""))
        if probe.get("ExitCode") == 0 and end and end >= started:
            return end
    return None


def proc_sample(pid: int) -> tuple[float, int, int]:
    """(RSS in MB, own CPU ticks, CPU ticks of waited-for children) of a process."""
    rss_kb = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss_kb = int(line.split()[1])
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(fields[i]) for i in (11, 12, 13, 14))
    return rss_kb / 1024, utime + stime, cutime + cstime


def proc_peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


# -- the isolated server ----------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.results = Results()
        self.root: Path | None = None
        self.server: Server | None = None
        self.client: docker.DockerClient | None = None
        self.greeting = "hello"

    @property
    def home(self) -> Path:
        assert self.server is not None
        return self.server.home

    def setup(self) -> None:
        try:
            self.client = docker.from_env(timeout=120)
            self.client.ping()
        except Exception as exc:
            raise Precondition(f"no Docker engine ({exc}); start dockerd") from None
        for image in REQUIRED_IMAGES:
            try:
                self.client.images.get(image)
            except docker.errors.ImageNotFound:
                raise Precondition(f"test image {image} is missing; build it with "
                                   "tests/images/build.sh") from None
        if shutil.which("lanai") is None:
            raise Precondition("the `lanai` command is not on PATH (the post-receive hook runs "
                               "it); `pip install -e .` first")
        self.root = Path(tempfile.mkdtemp(prefix="lanai-bench-"))
        project = f"lanai-bench-{uuid.uuid4().hex[:6]}"
        port = free_port()
        # The mini state, with a heal limit high enough that every drift run is healed.
        repo = StateRepo(self.root, MINI_STATE, {"PROJECT": project, "18000": str(port),
                                                 "restarts: 2": "restarts: 100"})
        if "restarts: 100" not in repo.read("lanai.yaml"):
            raise BenchError("could not raise heal_limit.restarts in the mini lanai.yaml")
        self.server = Server(self.root, repo, project, self.client)
        installed = self.server.lanai("hook", "install", str(repo.bare))
        if installed.returncode != 0:
            raise BenchError(f"lanai hook install failed: {installed.stderr.strip()}")
        say(f"project {project} on 127.0.0.1:{port}, LANAI_HOME {self.home}")
        self.server.start_daemon()
        head = repo.head()
        started = time.monotonic()
        poll(lambda: read_state(self.home).get("applied_commit") == head, 240,
             "the first deploy", interval=0.1)
        self.wait_healthy(120)
        say(f"first deploy converged in {time.monotonic() - started:.1f}s")

    def healthy(self) -> bool:
        assert self.server is not None
        found = self.server.containers()
        return set(found) == {"ollama", "web"} and all(
            c.attrs["State"]["Status"] == "running"
            and (c.attrs["State"].get("Health") or {}).get("Status") == "healthy"
            for c in found.values())

    def wait_healthy(self, timeout: float) -> None:
        poll(self.healthy, timeout, "a running, healthy stack", interval=0.1)

    def daemon_pid(self) -> int:
        assert self.server is not None and self.server.daemon is not None
        return self.server.daemon.pid

    def cleanup(self) -> dict[str, Any]:
        """Stop the daemon, remove every container/network/volume of the project, the temp dir."""
        report: dict[str, Any] = {}
        if self.server is not None:
            if self.args.keep_log and self.server.daemon_log.exists():
                shutil.copy(self.server.daemon_log, self.args.keep_log)
            for attempt in (1, 2):
                try:
                    self.server.teardown()
                    break
                except Exception as exc:
                    say(f"cleanup attempt {attempt} failed: {exc}")
            label = f"com.docker.compose.project={self.server.project}"
            assert self.client is not None
            try:
                left = (len(self.client.containers.list(all=True, filters={"label": label}))
                        + len(self.client.networks.list(filters={"label": label}))
                        + len(self.client.volumes.list(filters={"label": label})))
            except Exception as exc:
                left = -1
                say(f"could not check what is left: {exc}")
            report = {"project": self.server.project, "left_behind": left}
            if left:
                say(f"WARNING: {left} object(s) labelled {label} are left; remove them by hand")
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
        return report

    def daemon_log_tail(self, lines: int = 30) -> str:
        if self.server is None or not self.server.daemon_log.exists():
            return ""
        return "\n".join(self.server.daemon_log.read_text(errors="replace").splitlines()[-lines:])

    # -- 1. push -> applied ---------------------------------------------------------------

    def push_to_applied(self) -> None:
        assert self.server is not None
        repo = self.server.repo
        runs = []
        say(f"1. push -> applied, {self.args.push_runs} runs")
        for i in range(self.args.push_runs):
            value = ("ping", "pong")[i % 2]
            repo.replace("compose.yaml", f'GREETING: "{self.greeting}"', f'GREETING: "{value}"')
            git(repo.work, "commit", "--quiet", "-am", f"Say {value}")
            commit = repo.head()
            push_start = time.monotonic()
            git(repo.work, "push", "--quiet", "origin", "HEAD:main")
            pushed = time.monotonic()
            poll(lambda c=commit: read_state(self.home).get("applied_commit") == c, 120,
                 f"commit {commit[:12]} to be applied")
            applied = time.monotonic()
            applied_wall = time.time()
            record = poll(lambda c=commit: next(
                (r for r in reversed(read_history(self.home))
                 if r.get("applied_commit") == c and r.get("status") == "applied"), None),
                10, "the history record of the push")
            self.greeting = value
            got = self.server.env_of("web").get("GREETING")
            if got != value:
                raise BenchError(f"web has GREETING={got!r} after applying {value!r}")
            d = record["durations"]
            wall = applied - pushed
            healthy_at = first_healthy_probe(self.server.containers()["web"].attrs)
            run = {"commit": commit, "trigger": record.get("trigger"),
                   "push_s": round(pushed - push_start, 4), "wall_s": round(wall, 4),
                   "durations": d,
                   "overhead_in_reconcile_s": round(d["total"] - d.get("compose", 0)
                                                    - d.get("health_wait", 0), 4),
                   "overhead_wall_s": round(wall - d.get("compose", 0)
                                            - d.get("health_wait", 0), 4),
                   "wall_from_push_start_s": round(applied - push_start, 4),
                   "overhead_from_push_start_s": round(applied - push_start - d.get("compose", 0)
                                                       - d.get("health_wait", 0), 4),
                   "applied_after_healthy_s": (round(applied_wall - healthy_at, 4)
                                               if healthy_at else None),
                   "actions": [(a["kind"], a["service"], a["result"])
                               for a in record.get("actions", [])]}
            runs.append(run)
            say(f"  run {i + 1}: push {run['push_s']:.2f}s, push->applied {wall:.2f}s, "
                f"compose {d.get('compose', 0):.2f}s, health {d.get('health_wait', 0):.2f}s, "
                f"total {d['total']:.2f}s (fetch {d.get('fetch', 0):.2f}, "
                f"load {d.get('load', 0):.2f}, observe_plan {d.get('observe_plan', 0):.2f}); "
                f"applied {run['applied_after_healthy_s']}s after Docker saw web healthy")
            self.wait_healthy(60)
        self.results.raw["push"] = runs
        wall = [r["wall_s"] for r in runs]
        compose_s = [r["durations"].get("compose", 0) for r in runs]
        health = [r["durations"].get("health_wait", 0) for r in runs]
        own = [c + h for c, h in zip(compose_s, health, strict=True)]
        inner = [r["overhead_in_reconcile_s"] for r in runs]
        outer = [r["overhead_wall_s"] for r in runs]
        add = self.results.add
        add(Metric("git push (incl. post-receive hook), median", median(
            [r["push_s"] for r in runs]), "s"))
        add(Metric("push->applied wall, median", median(wall), "s",
                   ratio=median(wall) / median(own), baseline="compose+health"))
        add(Metric("push->applied wall, max", max(wall), "s"))
        add(Metric("push start->applied wall, median",
                   median([r["wall_from_push_start_s"] for r in runs]), "s"))
        add(Metric("compose up, median (record)", median(compose_s), "s"))
        add(Metric("health wait, median (record)", median(health), "s"))
        lags = [r["applied_after_healthy_s"] for r in runs
                if r["applied_after_healthy_s"] is not None]
        if lags:
            add(Metric("applied after web's first passing health probe, median", median(lags),
                       "s"))
        target = f"< {PUSH_OVERHEAD_TARGET_S:.0f} s"
        add(Metric("overhead in reconcile (total-compose-health), median", median(inner), "s",
                   target, median(inner) < PUSH_OVERHEAD_TARGET_S))
        add(Metric("overhead in reconcile (total-compose-health), max", max(inner), "s",
                   target, max(inner) < PUSH_OVERHEAD_TARGET_S))
        add(Metric("overhead push->applied (wall-compose-health), median", median(outer), "s",
                   target, median(outer) < PUSH_OVERHEAD_TARGET_S))
        add(Metric("overhead push->applied (wall-compose-health), max", max(outer), "s",
                   target, max(outer) < PUSH_OVERHEAD_TARGET_S))
        start = [r["overhead_from_push_start_s"] for r in runs]
        add(Metric("overhead from push start (incl. hook), median", median(start), "s",
                   target, median(start) < PUSH_OVERHEAD_TARGET_S))
        add(Metric("overhead from push start (incl. hook), max", max(start), "s",
                   target, max(start) < PUSH_OVERHEAD_TARGET_S))

    # -- 3. drift after docker stop --------------------------------------------------------------

    def drift(self) -> None:
        assert self.server is not None and self.client is not None
        runs = []
        say(f"3. drift after `docker stop web`, {self.args.drift_runs} runs")
        for i in range(self.args.drift_runs):
            self.wait_healthy(60)
            seen = len(read_history(self.home))
            tail = LogTail(self.server.daemon_log)
            web = self.server.containers()["web"]
            stopped: dict[str, float] = {}

            def stop(container: Any = web, out: dict[str, float] = stopped) -> None:
                container.stop(timeout=5)
                out["at"] = time.monotonic()

            stopper = threading.Thread(target=stop, name="docker-stop", daemon=True)
            stop_start = time.monotonic()
            stopper.start()  # in a thread: the daemon may see the event before stop returns
            marks: dict[str, float] = {}
            record: dict[str, Any] | None = None
            deadline = stop_start + 90
            while not ("record" in marks and "healthy" in marks):
                now = time.monotonic()
                if now > deadline:
                    raise BenchError(f"drift run {i + 1}: no heal within 90s; seen {marks}")
                if "event" not in marks and any(
                    "docker event: web" in line for line in tail.new_lines()
                ):
                    marks["event"] = now
                if "state" not in marks and read_state(self.home).get("drift"):
                    marks["state"] = now  # what `lanai status` reports, before the heal
                if "record" not in marks:
                    new = [
                        r
                        for r in read_history(self.home)[seen:]
                        if r.get("status") in ("healed", "drift")
                    ]
                    if new:
                        marks["record"], record = now, new[0]
                if "at" in stopped:  # only after stop returned can "running" mean "again"
                    try:
                        state = self.client.api.inspect_container(web.id)["State"]
                    except docker.errors.NotFound:
                        state = {}
                    if state.get("Status") == "running":
                        marks.setdefault("running", now)
                        if (state.get("Health") or {}).get("Status") == "healthy":
                            marks.setdefault("healthy", now)
                time.sleep(POLL_S)
            stopper.join(30)
            t0 = stopped["at"]
            assert record is not None
            run = {"stop_call_s": round(t0 - stop_start, 4),
                   "event_from_stop_start_s": (round(marks["event"] - stop_start, 4)
                                               if "event" in marks else None),
                   **{f"{k}_s": round(v - t0, 4) for k, v in marks.items()},
                   "status": record.get("status"), "trigger": record.get("trigger"),
                   "durations": record.get("durations"),
                   "drift": [(d["service"], d["kind"]) for d in record.get("drift", [])],
                   "actions": [(a["kind"], a["service"], a["result"])
                               for a in record.get("actions", [])]}
            runs.append(run)
            d = record.get("durations") or {}
            say(
                f"  run {i + 1}: stop call {run['stop_call_s']:.2f}s; event logged "
                f"{run['event_from_stop_start_s']}s after stop began; after stop returned: "
                f"running {run['running_s']:.2f}s, healthy {run['healthy_s']:.2f}s, record "
                f"({run['status']}, {run['trigger']}) {run['record_s']:.2f}s [record: total "
                f"{d.get('total', 0):.2f}s, compose {d.get('compose', 0):.2f}s, health "
                f"{d.get('health_wait', 0):.2f}s]"
            )
        self.results.raw["drift"] = runs
        add = self.results.add
        record_s = [r["record_s"] for r in runs]
        target = f"< {DRIFT_TARGET_S:.0f} s"
        events = [r["event_from_stop_start_s"] for r in runs if r["event_from_stop_start_s"]]
        if events:
            add(Metric("drift: daemon logs the Docker event (from stop call), max",
                       max(events), "s", target, max(events) < DRIFT_TARGET_S))
        state_s = [r["state_s"] for r in runs if "state_s" in r]
        if state_s:
            add(Metric("drift: on record in state.json (lanai status), median", median(state_s),
                       "s", target, median(state_s) < DRIFT_TARGET_S))
            add(Metric("drift: on record in state.json (lanai status), max", max(state_s), "s",
                       target, max(state_s) < DRIFT_TARGET_S))
        # The history record is written when the heal is done, so it includes the heal.
        add(Metric("drift: healed record in history (heal included), median",
                   median(record_s), "s"))
        add(Metric("drift: web running again, median", median(
            [r["running_s"] for r in runs]), "s"))
        add(Metric("drift: web healthy again, median", median(
            [r["healthy_s"] for r in runs]), "s"))
        add(Metric("drift: record written after web healthy, median",
                   median([r["record_s"] - r["healthy_s"] for r in runs]), "s"))

    # -- 4. idle daemon -----------------------------------------------------------------------

    def idle_window(self, label: str) -> dict[str, Any]:
        pid = self.daemon_pid()
        tick = os.sysconf("SC_CLK_TCK")
        window = self.args.window
        checks: dict[str, float | None] = {}
        rss: list[float] = []
        assert self.server is not None
        ours = self.server.container_ids()
        tail = LogTail(self.server.daemon_log)
        _, own0, kids0 = proc_sample(pid)
        start = time.monotonic()
        end = start + window
        while True:
            now = time.monotonic()
            sample, own1, kids1 = proc_sample(pid)
            rss.append(sample)
            state = read_state(self.home)
            if state.get("last_check"):
                checks[state["last_check"]] = state.get("last_check_ms")
            if now >= end:
                break
            time.sleep(min(0.25, end - now))  # a sampling window, not a wait for something
        elapsed = time.monotonic() - start
        lines = tail.new_lines()
        events = [line for line in lines if "docker event:" in line]
        # Our stack did not change in the window, so any event the daemon acted on came from
        # another project's lanai-managed containers on the same Docker engine.
        foreign = len(events) if self.server.container_ids() == ours else None
        triggers = [line.split("lanai.daemon: ", 1)[1].split(":", 1)[0] for line in lines
                    if "lanai.daemon: " in line and ": commit " in line]
        out = {"window_s": round(elapsed, 2), "rss_mb_mean": round(statistics.mean(rss), 2),
               "rss_mb_max": round(max(rss), 2), "rss_mb_peak_ever": round(proc_peak_mb(pid), 2),
               "cpu_pct": round(100 * (own1 - own0) / tick / elapsed, 3),
               "cpu_pct_with_children": round(100 * (own1 - own0 + kids1 - kids0) / tick
                                              / elapsed, 3),
               "checks_seen": max(0, len(checks) - 1),
               "reconcile_triggers": triggers, "foreign_docker_events": foreign,
               "check_ms": [v for v in list(checks.values())[1:] if v is not None]}
        say(f"  {label}: RSS {out['rss_mb_mean']:.1f} MB (max {out['rss_mb_max']:.1f}, "
            f"peak since start {out['rss_mb_peak_ever']:.1f}), CPU {out['cpu_pct']:.2f}% "
            f"({out['cpu_pct_with_children']:.2f}% with children), "
            f"{out['checks_seen']} reconcile(s) in the window {out['check_ms']} "
            f"(triggers {triggers}; docker events of other projects: {foreign})")
        return out

    def idle_daemon(self) -> None:
        assert self.server is not None
        say(f"4. idle daemon over {self.args.window:.0f}s windows")
        self.wait_healthy(60)
        slow = self.idle_window("poll 300s")
        repo = self.server.repo
        repo.replace("lanai.yaml", "poll_interval: 300s", "poll_interval: 5s")
        commit = repo.commit_push("Poll every 5s")
        poll(lambda: read_state(self.home).get("applied_commit") == commit, 60,
             "the 5s poll interval to be applied")
        poll(lambda: "poll interval is now 5s" in self.server.daemon_log.read_text(), 10,
             "the daemon to take the 5s poll interval")
        fast = self.idle_window("poll 5s")
        self.results.raw["idle_daemon"] = {"poll_300s": slow, "poll_5s": fast}
        add = self.results.add
        target = f"< {IDLE_RSS_TARGET_MB:.0f} MB"
        add(Metric("daemon idle RSS, poll 300s", slow["rss_mb_mean"], "MB", target,
                   slow["rss_mb_max"] < IDLE_RSS_TARGET_MB))
        add(Metric("daemon idle CPU, poll 300s", slow["cpu_pct"], "%"))
        add(Metric("reconciles in the poll-300s window", slow["checks_seen"], "runs",
                   note=f"triggers {slow['reconcile_triggers']}; Docker events of other "
                   f"projects' lanai containers: {slow['foreign_docker_events']}"))
        add(Metric("daemon idle RSS, poll 5s", fast["rss_mb_mean"], "MB", target,
                   fast["rss_mb_max"] < IDLE_RSS_TARGET_MB))
        add(Metric("daemon idle CPU, poll 5s", fast["cpu_pct"], "%"))
        add(Metric("daemon idle CPU incl. git/compose children, poll 5s",
                   fast["cpu_pct_with_children"], "%"))
        add(Metric("daemon peak RSS since start (VmHWM)", fast["rss_mb_peak_ever"], "MB"))
        if fast["check_ms"]:
            add(Metric("daemon's own poll reconcile (state last_check_ms), median",
                       median(fast["check_ms"]), "ms"))

    # -- 2. idle reconcile in-process -------------------------------------------------------------

    def idle_reconcile(self) -> None:
        assert self.server is not None
        say("stopping the daemon for the in-process measurements")
        self.server.stop_daemon()
        n = self.args.idle_runs
        say(f"2. idle reconcile in-process, {n} runs (+1 warm-up), baseline `docker compose ps`")
        engine = Engine(load_settings({k: v for k, v in self.server.env.items()
                                       if k.startswith("LANAI_")}))
        cold_start = time.monotonic()
        first = engine.reconcile(trigger="poll")
        cold = time.monotonic() - cold_start
        totals, phases = [], {"fetch": [], "observe_plan": []}
        for _ in range(n):
            outcome = engine.reconcile(trigger="poll")
            if outcome.status != "no-op" or outcome.drift:
                raise BenchError(f"idle reconcile was not a no-op: {outcome.status} "
                                 f"{outcome.drift} {outcome.error}")
            totals.append(outcome.durations["total"])
            for phase, values in phases.items():
                values.append(outcome.durations.get(phase, 0.0))
        applied = engine.deployed()
        if applied is None:
            raise BenchError("no applied deployment to run `docker compose ps` on")
        project = applied.project_handle
        argv = [*project.base(), "ps", "--all"]
        baseline = []
        for _ in range(self.args.baseline_runs):
            started = time.monotonic()
            result = subprocess.run(argv, cwd=project.directory, env=compose.compose_env(),
                                    capture_output=True, text=True, check=False)
            baseline.append(time.monotonic() - started)
            if result.returncode != 0:
                raise BenchError(f"docker compose ps failed: {result.stderr.strip()}")
        cli = []
        for _ in range(3):
            started = time.monotonic()
            result = self.server.lanai("status", "--json")
            cli.append(time.monotonic() - started)
        self.results.raw["idle_reconcile"] = {
            "first_status": first.status, "cold_s": round(cold, 4), "totals_s": totals,
            "phases_s": phases, "compose_ps_s": [round(b, 4) for b in baseline],
            "lanai_status_cli_s": [round(c, 4) for c in cli]}
        base = median(baseline)
        say(f"  medians: fetch {median(phases['fetch']) * 1000:.0f} ms, observe+plan "
            f"{median(phases['observe_plan']) * 1000:.0f} ms, first (cold) {cold * 1000:.0f} ms")
        add = self.results.add
        target = f"< {IDLE_RECONCILE_TARGET_S * 1000:.0f} ms"
        add(Metric("idle reconcile, median", median(totals) * 1000, "ms", target,
                   median(totals) < IDLE_RECONCILE_TARGET_S, median(totals) / base,
                   "docker compose ps"))
        add(Metric("idle reconcile, p90", p90(totals) * 1000, "ms", target,
                   p90(totals) < IDLE_RECONCILE_TARGET_S, p90(totals) / base,
                   "docker compose ps"))
        add(Metric("  of which git fetch + branch lookup, median",
                   median(phases["fetch"]) * 1000, "ms"))
        add(Metric("  of which observe + plan, median", median(phases["observe_plan"]) * 1000,
                   "ms"))
        add(Metric("baseline: docker compose ps, median", base * 1000, "ms"))
        add(Metric("`lanai status --json` CLI, median", median(cli) * 1000, "ms"))


# -- output -------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {"cpus": os.cpu_count(), "python": platform.python_version(),
                            "kernel": platform.release()}
    try:
        info["compose"] = subprocess.run(["docker", "compose", "version", "--short"],
                                         capture_output=True, text=True, timeout=30
                                         ).stdout.strip()
        info["docker"] = subprocess.run(["docker", "version", "--format",
                                         "{{.Server.Version}}"], capture_output=True,
                                        text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        pass
    return info


def print_table(metrics: list[Metric]) -> None:
    rows = [("metric", "value", "ratio", "target", "result")]
    for m in metrics:
        ratio = f"x{m.ratio:.2f} {m.baseline}" if m.ratio is not None else ""
        rows.append((m.name, m.shown(), ratio, m.target, m.verdict))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for n, row in enumerate(rows):
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.reconcile",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    parser.add_argument("--push-runs", type=int, default=5)
    parser.add_argument("--drift-runs", type=int, default=3)
    parser.add_argument("--idle-runs", type=int, default=30)
    parser.add_argument("--baseline-runs", type=int, default=10)
    parser.add_argument("--window", type=float, default=20.0,
                        help="seconds of each idle RSS/CPU window")
    parser.add_argument("--keep-log", metavar="PATH",
                        help="copy the daemon's log here before cleaning up")
    return parser.parse_args(argv)


def run_bench(bench: Bench, steps: Callable[[], None], title: Callable[[dict[str, Any]], str],
              as_json: bool) -> int:
    """Run a benchmark's steps, always clean up (even on Ctrl-C or SIGTERM), then print the
    table (or one JSON object) and return the exit code: 0, 1 (could not run), 2 (a
    precondition is missing), 130 (interrupted)."""

    def terminated(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminated)
    started = time.monotonic()
    code, error = 0, None
    try:
        bench.setup()
        steps()
    except KeyboardInterrupt:
        say("interrupted; cleaning up")
        code, error = 130, "interrupted"
    except Precondition as exc:
        say(f"cannot run: {exc}")
        code, error = 2, str(exc)
    except Exception as exc:  # the benchmark could not run; say why, clean up, exit 1
        say(f"benchmark failed: {type(exc).__name__}: {exc}")
        log = bench.daemon_log_tail()
        if log:
            say("last lines of the daemon's log:\n" + log)
        code, error = 1, f"{type(exc).__name__}: {exc}"
    finally:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # let cleanup finish
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        say("cleaning up")
        cleanup = bench.cleanup()
        signal.signal(signal.SIGINT, previous)
    summary = {"date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "machine": machine(),
               "elapsed_s": round(time.monotonic() - started, 1), "exit_code": code,
               "error": error, "cleanup": cleanup,
               "metrics": [{**asdict(m), "result": m.verdict} for m in bench.results.metrics],
               "raw": bench.results.raw}
    if as_json:
        print(json.dumps(summary, indent=1))
    elif bench.results.metrics:
        print(f"\n{title(summary)}\n")
        print_table(bench.results.metrics)
    return code


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    bench = Bench(args)

    def steps() -> None:
        bench.push_to_applied()
        bench.drift()
        bench.idle_daemon()
        bench.idle_reconcile()

    return run_bench(bench, steps, lambda s: (
        f"lanai reconcile benchmark, {s['date']}, {s['machine']['cpus']} CPUs, docker "
        f"{s['machine'].get('docker', '?')}, compose {s['machine'].get('compose', '?')}, "
        f"{s['elapsed_s']:.0f}s"), args.json)

if __name__ == "__main__":
    sys.exit(main())
