"""What a `git push` costs when it ends with the server's result (issue 12.4 and 12.5).

    python -m benchmarks.push_result            # a table on stdout, progress on stderr
    python -m benchmarks.push_result --json     # the same numbers as one JSON object

It sets up an isolated server as tests/e2e/harness.py does (a bare repo with lanai's
post-receive hook, the real `lanai run` daemon, the "mini" stack under its own compose
project on 127.0.0.1) with web's health check interval raised to the example's 10 s, and
measures, in the same run:

1. no-op push: an empty commit (`git commit --allow-empty`); wall time from the start of
   `git push` until it returns, which is when the hook has printed "Synced" for it,
   against `docker compose ps` of the same project (the baseline). The push is over a
   local path, not SSH: a real server adds one SSH connection (the push itself).
2. changed push: web's GREETING changed, so web is recreated; the container's start
   (Docker's StartedAt), when web first answers HTTP (the service's own start, polled
   every 20 ms), and when `git push` returned with "Synced" (Healthy reported by lanai).
   Target: Synced within the service's own start + 1 s. Docker runs healthcheck
   start_interval only from Engine 25 (API 1.44); on an older engine Docker's first probe
   comes `interval` after the start, and lanai runs the service's health check test in the
   container itself meanwhile (reconciler.stack.readiness). Each run says whose probe made it
   Healthy: "lanai" when Docker had not yet probed the new container as the push returned.

Exit status: 0 when it ran (a MISS is a result), 1 when it could not finish, 2 when a
precondition is missing (Docker, an image).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import docker
import docker.errors
import httpx

from reconciler.stack import compose, facts, tool_versions
from tests.e2e.harness import MINI_STATE, Server, StateRepo, free_port, git, wait_for

from .reconcile import docker_time

NOOP_TARGET_S = 0.5
HEALTH_SLACK_TARGET_S = 1.0


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def timed_push(server: Server) -> tuple[float, float, str]:
    """(start, end) wall times of `git push` and what the hook printed."""
    start = time.time()
    pushed = subprocess.run(["git", "push", "--quiet", "origin", "HEAD:main"],
                            cwd=server.repo.work, capture_output=True, text=True, timeout=180,
                            check=False)
    end = time.time()
    if pushed.returncode != 0:
        raise RuntimeError(f"git push failed: {pushed.stderr.strip()}")
    lines = [line for line in pushed.stderr.splitlines() if "lanai:" in line]
    return start, end, (lines[-1].split("lanai:", 1)[1].strip() if lines else "")


def compose_ps(server: Server) -> float:
    started = time.perf_counter()
    subprocess.run(["docker", "compose", "--project-name", server.project, "ps"],
                   env=compose.compose_env(), capture_output=True, check=True, timeout=60)
    return time.perf_counter() - started


def noop_pushes(server: Server, runs: int) -> dict[str, Any]:
    pushes, printed = [], []
    for number in range(runs):
        git(server.repo.work, "commit", "--quiet", "--allow-empty", "-m", f"No-op {number}")
        start, end, said = timed_push(server)
        head = server.repo.head()
        if not said.startswith(f"Synced at {head[:12]}"):
            raise RuntimeError(f"the push of {head[:12]} printed {said!r}, not Synced")
        pushes.append(end - start)
        printed.append(said)
    heads = {git(server.repo.work, "rev-parse", f"HEAD~{n}") for n in range(runs)}
    laps: dict[str, list[float]] = {}
    for record in server.history():
        if record.get("commit") in heads:
            for name, seconds in (record.get("durations") or {}).items():
                laps.setdefault(name, []).append(seconds)
    baseline = [compose_ps(server) for _ in range(runs)]
    push_s, ps_s = statistics.median(pushes), statistics.median(baseline)
    return {"runs": runs, "push_to_synced_s": pushes, "compose_ps_s": baseline,
            "median_push_to_synced_s": push_s, "median_compose_ps_s": ps_s,
            "ratio": push_s / ps_s, "target_s": NOOP_TARGET_S,
            "verdict": "OK" if push_s <= NOOP_TARGET_S else "MISS", "printed": printed[-1],
            "server_median_s": {name: statistics.median(values)
                                for name, values in sorted(laps.items())}}


def first_answer(url: str, stop: threading.Event, out: list[float]) -> None:
    """The first time web answers after the old container went away."""
    seen_down = False
    while not stop.is_set():
        try:
            httpx.get(url, timeout=0.5)
            if seen_down:
                out.append(time.time())
                return
        except httpx.HTTPError:
            seen_down = True
        time.sleep(0.02)


def changed_push(server: Server, port: int, number: int) -> dict[str, Any]:
    server.repo.replace("compose.yaml", "GREETING: \"", f"GREETING: \"run{number} ")
    git(server.repo.work, "commit", "--quiet", "-am", f"Greeting {number}")
    stop, answered = threading.Event(), []
    watcher = threading.Thread(target=first_answer,
                               args=(f"http://127.0.0.1:{port}/", stop, answered))
    watcher.start()
    try:
        start, end, said = timed_push(server)
        # lanai's probe runs inside the container and can pass before the published port
        # answers the host: keep watching a while (Synced before the answer: a negative gap).
        watcher.join(timeout=10)
    finally:
        stop.set()
        watcher.join()
    web = server.containers()["web"]
    web.reload()
    started = docker_time(web.attrs["State"]["StartedAt"]) or 0.0
    ready = answered[0] if answered else None
    docker_probed = bool((web.attrs["State"].get("Health") or {}).get("Log"))
    return {"push_start": start, "container_started": started, "service_answered": ready,
            "synced": end, "printed": said,
            "healthy_by": "docker" if docker_probed else "lanai",
            "container_start_to_synced_s": end - started,
            "service_start_s": (ready - started) if ready else None,
            "synced_after_service_s": (end - ready) if ready else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="no-op pushes")
    parser.add_argument("--changed-runs", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        print(f"needs a Docker engine: {exc}", file=sys.stderr)
        return 2
    engine = facts.engine_version(client) or ("?", "?")
    with tempfile.TemporaryDirectory(prefix="lanai-bench-push-") as tmp:
        root = Path(tmp)
        port = free_port()
        project = f"lanai-bench-{root.name[-6:].lower()}"
        repo = StateRepo(root, MINI_STATE, {"PROJECT": project, "18000": str(port),
                                            "interval: 1s": "interval: 10s"})
        server = Server(root, repo, project, client)
        try:
            installed = server.lanai("hook", "install", str(repo.bare))
            if installed.returncode != 0:
                raise RuntimeError(installed.stderr)
            server.start_daemon()
            say("first deploy (web's health check interval: 10 s)")
            wait_for(lambda: server.status().get("applied_commit") == repo.head(), 300,
                     "the first deploy")
            wait_for(lambda: server.status().get("health") == "Healthy", 120, "healthy")
            say(f"{args.runs} no-op pushes")
            noop = noop_pushes(server, args.runs)
            say(f"{args.changed_runs} changed pushes")
            changed = [changed_push(server, port, n) for n in range(args.changed_runs)]
        except (RuntimeError, AssertionError) as exc:
            print(f"could not finish: {exc}", file=sys.stderr)
            return 1
        finally:
            server.teardown()
    slack = [c["synced_after_service_s"] for c in changed
             if c["synced_after_service_s"] is not None]
    result = {
        "engine": {"version": engine[0], "api": engine[1],
                   "start_interval": tool_versions.has_start_interval(engine[1])},
        "noop_push": noop,
        "changed_push": {"runs": changed,
                         "median_synced_after_service_s": statistics.median(slack)
                         if slack else None,
                         "target_s": HEALTH_SLACK_TARGET_S,
                         "verdict": "OK" if slack and statistics.median(slack)
                         <= HEALTH_SLACK_TARGET_S else "MISS"},
    }
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"engine {engine[0]} (API {engine[1]}; healthcheck start_interval: "
          f"{'yes' if result['engine']['start_interval'] else 'no, needs Engine 25'})")
    print(f"no-op push -> Synced   median {noop['median_push_to_synced_s'] * 1000:7.0f} ms "
          f"(target {NOOP_TARGET_S * 1000:.0f} ms: {noop['verdict']})")
    print(f"docker compose ps      median {noop['median_compose_ps_s'] * 1000:7.0f} ms "
          f"(baseline); ratio {noop['ratio']:.2f}")
    print("  of which on the server (median): " + ", ".join(
        f"{name} {seconds * 1000:.0f} ms" for name, seconds in noop["server_median_s"].items()))
    for run in changed:
        answered, after = run["service_start_s"], run["synced_after_service_s"]
        print(f"changed push: container start -> service answers "
              f"{'?' if answered is None else f'{answered:.2f}'} s, -> Synced "
              f"{run['container_start_to_synced_s']:.2f} s; Synced - service "
              f"{'?' if after is None else f'{after:.2f}'} s (healthy by "
              f"{run['healthy_by']}'s probe)")
    median = result["changed_push"]["median_synced_after_service_s"]
    print(f"changed push: Synced after the service answered, median "
          f"{'?' if median is None else f'{median:.2f}'} s "
          f"(target {HEALTH_SLACK_TARGET_S} s: {result['changed_push']['verdict']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
