"""How fast a stopped service is healed while a long model pull runs (issue 13).

    python -m benchmarks.pulls            # a table on stdout, progress on stderr
    python -m benchmarks.pulls --json     # the same numbers as one JSON object

It sets up an isolated server as the end-to-end tests do (a bare git repo with the
post-receive hook, LANAI_* in a temp dir, the "mini" stack under its own compose
project, the real `lanai run` daemon) and measures, from `docker stop web` returning
to web running again (the daemon sees the Docker event and heals it):

1. baseline: with no pull running, `--runs` times;
2. during a pull: after a push that adds a model to models.yaml and makes the Ollama
   double download at 50 kB/s (a 26 MB model: about nine minutes), `--runs` times,
   each checked to end while the pull is still in flight.

The target is 2 s (issue 13); the ratio during/baseline shows what the pull costs a
heal (before the pull worker, a heal waited for the whole pull). Exit status: 0 when
it ran (a MISS is a result), 1 when it could not finish, 2 when a precondition is
missing. Everything it starts is removed at the end, also on failure.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import docker

from tests.e2e.harness import MINI_STATE, Server, StateRepo, free_port

T = TypeVar("T")
TINY = "lanai-test:tiny"
TARGET_S = 2.0
MODELS = f"local:\n  - name: {TINY}\n    context: 1024\n"


class Precondition(Exception):
    pass


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def poll(check: Callable[[], T], timeout: float, what: str, interval: float = 0.02) -> T:
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = check()
        except Exception:  # the container may be gone for a moment
            found = None
        if found:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


class Bench:
    def __init__(self, runs: int) -> None:
        self.runs = runs
        self.root: Path | None = None
        self.server: Server | None = None

    def setup(self) -> None:
        try:
            client = docker.from_env(timeout=120)
            client.ping()
        except Exception as exc:
            raise Precondition(f"no Docker engine ({exc})") from None
        for image in ("ollama/ollama:0.24.0", "lanai-test/debian:bookworm"):
            if not client.images.list(name=image):
                raise Precondition(f"test image {image} is missing; build it with "
                                   "tests/images/build.sh")
        if shutil.which("lanai") is None:
            raise Precondition("the `lanai` command is not on PATH (the post-receive hook "
                               "runs it); `pip install -e .` first")
        self.root = Path(tempfile.mkdtemp(prefix="lanai-bench-pulls-"))
        project = f"lanai-bench-{uuid.uuid4().hex[:6]}"
        repo = StateRepo(self.root, MINI_STATE, {"PROJECT": project, "18000": str(free_port()),
                                                 "restarts: 2": "restarts: 100"})
        self.server = Server(self.root, repo, project, client)
        installed = self.server.lanai("hook", "install", str(repo.bare))
        if installed.returncode != 0:
            raise RuntimeError(f"lanai hook install failed: {installed.stderr.strip()}")
        self.server.start_daemon()
        head = repo.head()
        poll(lambda: self.server and self.server.status().get("applied_commit") == head, 300,
             "the first deploy", 0.2)
        poll(self.web_running, 120, "web to run")

    def web_running(self) -> bool:
        assert self.server is not None
        web = self.server.containers().get("web")
        return web is not None and web.status == "running"

    def pulling(self) -> bool:
        assert self.server is not None
        pull = (self.server.status().get("models") or {}).get("pull") or {}
        return pull.get("model") == TINY

    def heal_once(self) -> float:
        assert self.server is not None
        poll(self.web_running, 120, "web to run before the stop")
        self.server.containers()["web"].stop(timeout=10)
        stopped = time.monotonic()
        poll(self.web_running, 300, "web to run again")
        return time.monotonic() - stopped

    def start_slow_pull(self) -> None:
        assert self.server is not None
        repo = self.server.repo
        repo.replace("compose.yaml", "    init: true\n    volumes:\n      - ollama:",
                     "    init: true\n    environment:\n      OLLAMA_DOUBLE_PULL_BYTES_PER_SEC: "
                     '"50000"\n    volumes:\n      - ollama:')
        repo.write("models.yaml", MODELS)
        commit = repo.commit_push("A tiny model over a slow line")
        poll(lambda: self.server and self.server.status().get("applied_commit") == commit,
             300, "the model commit", 0.2)
        poll(self.pulling, 120, "the pull to start", 0.2)

    def cleanup(self) -> None:
        if self.server is not None:
            self.server.teardown()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)


def summary(values: list[float]) -> dict[str, float]:
    return {"median_s": round(statistics.median(values), 3), "max_s": round(max(values), 3),
            "min_s": round(min(values), 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pulls",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    bench = Bench(args.runs)
    result: dict[str, Any] = {"target_s": TARGET_S}
    code = 0
    try:
        bench.setup()
        baseline = [bench.heal_once() for _ in range(args.runs)]
        say("baseline heals: " + ", ".join(f"{s:.2f}s" for s in baseline))
        bench.start_slow_pull()
        during = []
        for _ in range(args.runs):
            during.append(bench.heal_once())
            if not bench.pulling():
                raise RuntimeError("the pull ended before the heal: slow it down")
        say("heals during the pull: " + ", ".join(f"{s:.2f}s" for s in during))
        result.update(baseline=summary(baseline), during_pull=summary(during),
                      ratio=round(statistics.median(during) / statistics.median(baseline), 2),
                      verdict="MET" if max(during) <= TARGET_S else "MISS")
    except Precondition as exc:
        say(f"cannot run: {exc}")
        code = 2
    except Exception as exc:  # the benchmark could not run; say why, clean up, exit 1
        say(f"benchmark failed: {type(exc).__name__}: {exc}")
        code = 1
    finally:
        bench.cleanup()
    if code:
        return code
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(f"heal of a stopped service (docker stop -> running), {args.runs} runs each")
        print(f"  no pull running   median {result['baseline']['median_s']:.2f}s  "
              f"max {result['baseline']['max_s']:.2f}s")
        print(f"  during a pull     median {result['during_pull']['median_s']:.2f}s  "
              f"max {result['during_pull']['max_s']:.2f}s  "
              f"(x{result['ratio']} of the baseline)")
        print(f"  target {TARGET_S:.0f}s: {result['verdict']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
